"""How an error reads on a terminal: its message, then one line per detail the message
does not already say. Pure: strings and dicts in, strings out.

Depends on nothing. Every error body (the master's, or one raised here) carries
``details``, a list; each is usually ``{"field", "problem"}`` and sometimes another shape
(placement refusals, shared-host refusals, recursion refusals, instances holding a
release, log lines). Each known shape has its own one-line rendering; anything else is
shown as ``key=value`` pairs. Nothing is ever printed as a Python repr, and control
characters (a node's log tail may hold terminal escapes) are shown escaped.
"""
from __future__ import annotations

import re

PREFIX = "slapfed: error: "
INDENT = "  "
MAX_DETAILS = 20
# A string detail at least this long found verbatim in the message is a repeat; a
# shorter one ("failed") may be a coincidence.
MIN_REPEAT = 12

# Keys of a {field, problem} detail whose content the field or the problem already says:
# topology files put file:line: key into ``field``; a refused fact or report says the
# recorded/proposed and requested/claimed values in its ``problem``.
_FOLDED = frozenset({"field", "problem", "file", "line", "key", "recorded", "proposed",
                     "requested", "claimed"})
_PLACEMENT = frozenset({"alternative", "sla", "plugin", "reason", "count"})
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """``text`` safe for a terminal: control characters (not tabs) shown as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def text(value) -> str:
    """A value as a person reads it: strings bare, lists comma-separated, mappings as
    ``k=v`` pairs, None as ``-``, booleans as yes/no. Never a repr."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, dict):
        return _pairs(value) or "-"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return ", ".join(text(v) for v in items) or "-"
    return str(value)


def _pairs(detail: dict, skip=frozenset()) -> str:
    """``k=v, k=v``; a list or mapping value is parenthesised so its commas stay its own."""
    def value(v):
        nested = isinstance(v, (dict, list, tuple, set, frozenset)) and len(v) > 0
        return f"({text(v)})" if nested else text(v)
    return ", ".join(f"{k}={value(v)}" for k, v in detail.items() if k not in skip)


def _count(n, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _placement(d: dict) -> str:
    """A placement refusal: one plugin's verdict on one SLA alternative."""
    alt = d["alternative"]
    where = f"[{alt + 1}] " if isinstance(alt, int) and not isinstance(alt, bool) else ""
    line = (f"{where}{text(d['sla']) or 'anywhere'}: {_count(d['count'], 'computer')} "
            f"refused by {text(d['reason'])} (plugin {text(d['plugin'])})")
    if d.get("sample"):
        line += f", e.g. {text(d['sample'])}"
    rest = _pairs(d, _PLACEMENT | {"sample"})
    return line + (f" ({rest})" if rest else "")


def _provenance(d: dict) -> str:
    """A recursion refusal: the chain of masters the request crossed, and this one."""
    chain = [text(m) for m in d.get("chain") or ()] + [text(d["master"])]
    why = {"loop": "a loop", "too_deep": "too deep"}.get(d.get("problem"),
                                                         text(d.get("problem")))
    limit = f" (limit {text(d['max_depth'])})" if d.get("max_depth") is not None else ""
    return f"{text(d.get('field') or 'provenance')}: {why}: {' -> '.join(chain)}{limit}"


def _field_problem(d: dict) -> str:
    rest = _pairs(d, _FOLDED)
    return f"{text(d['field'])}: {text(d['problem'])}" + (f" ({rest})" if rest else "")


def detail_line(detail) -> str:
    """One detail as one line (possibly several for a multi-line string)."""
    if isinstance(detail, str):
        return clean(detail.rstrip())
    if not isinstance(detail, dict):
        return clean(text(detail))
    keys = set(detail)
    if _PLACEMENT <= keys:
        line = _placement(detail)
    elif "chain" in keys and "master" in keys:
        line = _provenance(detail)
    elif {"field", "problem"} <= keys:
        line = _field_problem(detail)
    elif keys == {"reason", "count"}:               # a shared instance's refused hosts
        line = f"{text(detail['count'])} refused by {text(detail['reason'])}"
    elif keys == {"instance"}:                      # an instance holding what was asked
        line = f"instance {text(detail['instance'])}"
    elif keys == {"problem"}:
        line = text(detail["problem"])
    else:
        line = _pairs(detail) or "-"
    return clean(line)


def _mentions(message: str, word: str) -> bool:
    """Whether ``word`` appears in ``message`` as a whole word (not inside another)."""
    return bool(word) and re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w-])", message) \
        is not None


def repeats(message: str, detail) -> bool:
    """Whether ``message`` already says everything ``detail`` says."""
    if isinstance(detail, str):
        s = detail.strip()
        return len(s) >= MIN_REPEAT and s in message
    if not isinstance(detail, dict):
        return False
    keys = set(detail)
    if _PLACEMENT <= keys:
        return False                                # the plugin is only in the detail
    if "chain" in keys and "master" in keys:
        shown = " -> ".join([text(m) for m in detail.get("chain") or ()]
                            + [text(detail["master"])])
        return shown in message
    if {"field", "problem"} <= keys:
        field, problem = text(detail["field"]), text(detail["problem"])
        return (f"{field} {problem}" in message or f"{field}: {problem}" in message
                or message.endswith(": " + problem))
    if keys == {"reason", "count"}:
        return f"{text(detail['count'])} refused by {text(detail['reason'])}" in message
    if keys == {"instance"}:
        return _mentions(message, text(detail["instance"]))
    line = detail_line(detail)
    return len(line) >= MIN_REPEAT and line in message


def problem_lines(message: str, details, limit: int = MAX_DETAILS) -> list[str]:
    """The lines under the message: each detail it does not repeat, at most ``limit``."""
    shown, said = [], False
    for d in details or ():
        # A message names at most one {field, problem} (the first): others with the same
        # problem text are not repeats of it.
        pair = isinstance(d, dict) and {"field", "problem"} <= set(d) \
            and not _PLACEMENT <= set(d) and "chain" not in d
        if repeats(message, d) and not (pair and said):
            said = said or pair
            continue
        shown.append(d)
    lines = []
    for d in shown[:limit]:
        lines += [INDENT + ln for ln in detail_line(d).splitlines() or ["-"]]
    if len(shown) > limit:
        lines.append(f"{INDENT}... and {len(shown) - limit} more (--json shows them all)")
    return lines


def error_lines(message: str, details=()) -> list[str]:
    """What the CLI prints on stderr for an error: ``slapfed: error: MESSAGE`` and its
    problems, one per line."""
    return [PREFIX + clean(message)] + problem_lines(message, details)
