"""The client's check of the master's answers, without pydantic at run time.

Depends on core.errors and core.answer_schemas (generated: the validation schemas of
the models of core.answers, as pydantic compiles them, written out as data by
``answers.compiled_source()``; a test keeps the file equal to what the models give).
Importing pydantic and building a model's validator costs a command-line run more
than the rest of its start-up; this module reads the same schemas and applies them as
pydantic does in its default (lax) mode to decoded JSON: the same fields required, the
same types, the same bounds and patterns, the same coercions (an integer given as
``"2"``...), the same messages. A model the generator could not write out as data
(one with validator functions: DelegationPolicy) is checked by pydantic itself
(``answers.check``), imported then.

A field the model does not know is tolerated (see ``answers.check``).
"""
from __future__ import annotations

import math
import re

from .answer_schemas import ANSWERS, MODELS
from .errors import InvalidInput

_I64 = 2 ** 63
_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?")
_FLOAT_TEXT = re.compile(r"[+-]?(?:(?:[0-9]+(?:_[0-9]+)*)?\.?[0-9]*(?:[eE][+-]?[0-9]+)?|"
                         r"inf|infinity|nan)", re.IGNORECASE)
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_PATTERNS: dict = {}


def check(name: str, data, what: str = "answer"):
    """``data`` (an answer read from a master) when the answer model ``name`` of
    core.answers describes it; InvalidInput naming the fields otherwise. Returns
    ``data`` itself, untouched."""
    schema = ANSWERS.get(name)
    if schema is None:                 # not written out as data: pydantic checks it
        from . import answers
        return answers.check(getattr(answers, name), data, what)
    errors: list = []
    _check(schema, data, (), errors)
    if errors:
        details = [{"field": ".".join(str(p) for p in loc) or "body", "problem": msg}
                   for loc, msg in errors]
        raise InvalidInput(f"the master's {what} does not match its API ({name}): "
                           f"{details[0]['field']} {details[0]['problem']}", details)
    return data


def _check(schema: dict, value, loc: tuple, errors: list) -> None:
    kind = schema["type"]
    if kind == "model":
        model = MODELS[schema["name"]]
        if not isinstance(value, dict):
            errors.append((loc, "Input should be a valid dictionary or instance of "
                                f"{model['name']}"))
            return
        for keys, field, required in model["fields"]:
            key = next((k for k in keys if k in value), None)
            if key is not None:
                _check(field, value[key], (*loc, key), errors)
            elif required:
                errors.append(((*loc, keys[0]), "Field required"))
    elif kind == "nullable":
        if value is not None:
            _check(schema["schema"], value, loc, errors)
    elif kind == "str":
        if not isinstance(value, str):
            errors.append((loc, "Input should be a valid string"))
        elif "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            errors.append((loc, f"String should match pattern '{schema['pattern']}'"))
    elif kind in ("int", "float"):
        number, problem = (_int if kind == "int" else _float)(value)
        if problem:
            errors.append((loc, problem))
        else:
            _bounds(schema, number, loc, errors)
    elif kind == "bool":
        problem = _bool(value)
        if problem:
            errors.append((loc, problem))
    elif kind == "literal":
        expected = schema["expected"]
        if not any(_same(value, e) for e in expected):
            shown = [repr(e) for e in expected]
            said = shown[0] if len(shown) == 1 else \
                f"{', '.join(shown[:-1])} or {shown[-1]}"
            errors.append((loc, f"Input should be {said}"))
    elif kind == "list":
        if not isinstance(value, list):
            errors.append((loc, "Input should be a valid list"))
            return
        for i, item in enumerate(value):
            _check(schema["items_schema"], item, (*loc, i), errors)
    elif kind == "dict":
        if not isinstance(value, dict):
            errors.append((loc, "Input should be a valid dictionary"))
            return
        for key, item in value.items():
            if "keys_schema" in schema:
                _check(schema["keys_schema"], key, (*loc, key, "[key]"), errors)
            if "values_schema" in schema:
                _check(schema["values_schema"], item, (*loc, key), errors)
    elif kind != "any":
        raise ValueError(f"answer schema of unknown type {kind!r}")


def _pattern(pattern: str):
    """pydantic matches with Rust's regex, whose ``$`` ends the text only (Python's
    also matches before a final newline)."""
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        text = pattern[:-1] + r"\Z" if pattern.endswith("$") and \
            not pattern.endswith("\\$") else pattern
        compiled = _PATTERNS[pattern] = re.compile(text)
    return compiled


def _same(value, expected) -> bool:
    if isinstance(expected, str) or isinstance(value, str):
        return type(value) is type(expected) and value == expected
    return isinstance(value, (int, float)) and value == expected


def _int(value):
    if isinstance(value, int):
        return int(value), None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, "Input should be a finite number"
        if value != int(value):
            return None, "Input should be a valid integer, got a number with a fractional part"
        if not -_I64 <= value < _I64:
            return None, "Unable to parse input string as an integer, exceeded maximum size"
        return int(value), None
    if isinstance(value, str):
        text = value.strip()
        if _INT_TEXT.fullmatch(text):
            return int(text.partition(".")[0]), None
        return None, "Input should be a valid integer, unable to parse string as an integer"
    return None, "Input should be a valid integer"


def _float(value):
    if isinstance(value, (int, float)):
        return float(value), None
    if isinstance(value, str):
        text = value.strip()
        if _FLOAT_TEXT.fullmatch(text) and any(c.isalnum() for c in text):
            try:
                return float(text), None
            except ValueError:
                pass
        return None, "Input should be a valid number, unable to parse string as a number"
    return None, "Input should be a valid number"


def _bool(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if value in (0, 1):
            return None
        return "Input should be a valid boolean, unable to interpret input" \
            if isinstance(value, int) and -_I64 <= value < _I64 else \
            "Input should be a valid boolean"
    if isinstance(value, str):
        if value.lower() in _TRUE | _FALSE:
            return None
        return "Input should be a valid boolean, unable to interpret input"
    return "Input should be a valid boolean"


def _bounds(schema: dict, number, loc: tuple, errors: list) -> None:
    for key, ok, said in (("ge", lambda n, b: n >= b, "greater than or equal to"),
                          ("gt", lambda n, b: n > b, "greater than"),
                          ("le", lambda n, b: n <= b, "less than or equal to"),
                          ("lt", lambda n, b: n < b, "less than")):
        if key in schema and not ok(number, schema[key]):
            errors.append((loc, f"Input should be {said} {schema[key]}"))
