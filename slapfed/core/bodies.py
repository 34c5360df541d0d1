"""Request bodies: bytes → one JSON object within documented limits, or InvalidInput.

Depends on core.errors only (pure: no Flask, no I/O). Every check that could recurse is
done first and iteratively, so no body can reach a recursive decoder, validator or hash
deeper than ``MAX_DEPTH`` levels:

1. the body is UTF-8 text (JSON over HTTP is UTF-8);
2. it nests at most ``MAX_DEPTH`` arrays/objects, counted on the raw text with strings
   blanked out, and holds at most ``MAX_VALUES`` values — before decoding;
3. it is JSON (no ``NaN``/``Infinity``: they are not JSON, and could not be answered);
4. it is an object, not an array, a string, a number or null;
5. no string and no key anywhere holds a lone surrogate (``"\\ud800"`` decodes to a
   str that cannot be encoded, hashed or stored as text): every field is named.
"""
from __future__ import annotations

import json
import re

from .errors import InvalidInput

MAX_DEPTH = 32           # arrays/objects inside one another, the body itself being 1
MAX_VALUES = 100_000     # objects, arrays, strings, numbers, booleans and nulls in all
MAX_PROBLEMS = 20        # surrogate problems listed (the count is in the message)

# A JSON string, or an unterminated one up to the end of the text: possessive, so that
# every quote is looked at once (a failed match would otherwise be retried from each
# later quote: quadratic on hostile input).
_STRING = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\Z)', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE = re.compile("[\ud800-\udfff]")

_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number",
          bool: "a boolean", type(None): "null"}


def printable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes (for messages)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def nesting(text: str) -> int:
    """How deeply arrays and objects nest in JSON ``text`` (0: a scalar), ignoring
    brackets inside strings. Iterative; for malformed text, the depth of what was open."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = deepest = 0
    for c in brackets:
        if c in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif depth:
            depth -= 1
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def decode_object(data: bytes, max_depth: int = MAX_DEPTH,
                  max_values: int = MAX_VALUES) -> dict:
    """The JSON object ``data`` holds. Raises InvalidInput (field ``body``, or the
    fields holding lone surrogates) when it is empty, not UTF-8, nested deeper than
    ``max_depth``, holds more than ``max_values`` values, is not JSON, or is not an
    object."""
    if not data.strip():
        raise InvalidInput("the request body is empty; send a JSON object",
                           [{"field": "body", "problem": "is required"}])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON (not UTF-8: {exc.reason} "
                           f"at byte {exc.start})",
                           [{"field": "body", "problem": "malformed JSON: not UTF-8"}]) from None
    _check_size(text, max_depth, max_values)
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:   # JSONDecodeError, NaN/Infinity, too many digits
        raise InvalidInput(f"the request body is not valid JSON ({exc})",
                           [{"field": "body", "problem": f"malformed JSON: {exc}"}]) from None
    if not isinstance(doc, dict):
        kind = _KINDS.get(type(doc), type(doc).__name__)
        raise InvalidInput(f"the request body must be a JSON object, not {kind}",
                           [{"field": "body", "problem": f"must be an object, not {kind}"}])
    _check_values(doc, max_values)
    return doc


def _check_size(text: str, max_depth: int, max_values: int) -> None:
    """Depth and (a lower bound of) the number of values, on the raw text."""
    blanked = _STRING.sub('""', text)
    containers = blanked.count("[") + blanked.count("{")
    if containers > max_values:
        _too_many(max_values)
    if containers > max_depth:
        depth = nesting(blanked)
        if depth > max_depth:
            raise InvalidInput(
                f"the request body nests arrays and objects {depth} levels deep; the limit "
                f"is {max_depth} levels (max_depth)",
                [{"field": "body", "problem": f"nested {depth} levels deep (limit: "
                                              f"max_depth = {max_depth})"}])


def _too_many(max_values: int):
    raise InvalidInput(f"the request body holds more than {max_values} values; the limit "
                       f"is {max_values} (max_values)",
                       [{"field": "body", "problem": f"more than {max_values} values "
                                                     f"(limit: max_values = {max_values})"}])


def _check_values(doc: dict, max_values: int) -> None:
    """Count the values and find lone surrogates in keys and strings, iteratively."""
    problems: list[dict] = []
    found = 0
    count = 0
    todo: list[tuple[object, str]] = [(doc, "")]
    while todo:
        value, path = todo.pop()
        count += 1
        if count > max_values:
            _too_many(max_values)
        if isinstance(value, str):
            if _SURROGATE.search(value):
                found += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append({"field": path or "body",
                                     "problem": "holds a lone surrogate (not a character: "
                                                "invalid Unicode)"})
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{printable(key)}" if path else printable(key)
                if _SURROGATE.search(key):
                    found += 1
                    if len(problems) < MAX_PROBLEMS:
                        problems.append({"field": name,
                                         "problem": "the key holds a lone surrogate (not a "
                                                    "character: invalid Unicode)"})
                todo.append((item, name))
        elif isinstance(value, list):
            todo.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    if problems:
        problems.sort(key=lambda d: d["field"])
        more = f" (and {found - len(problems)} more)" if found > len(problems) else ""
        raise InvalidInput(f"invalid Unicode in the request body: {problems[0]['field']} "
                           f"holds a lone surrogate{more}", problems)
