"""The paging parameters of the master's list routes (``limit``, ``cursor``), read from
a request's query string.

Depends on core.paging and core.errors only.
"""
from __future__ import annotations

from ..core import paging
from ..core.errors import InvalidInput


def page_args(args, kind: str, parts: int = 1, known=("limit", "cursor"),
              extra: list | tuple = (), noun: str = "parameter"):
    """(limit, key to resume after) of a list request; InvalidInput naming every bad or
    unknown parameter (after the unknown ones, ``extra``: the problems the route found
    in its own filters)."""
    problems = [{"field": k, "problem": f"unknown {noun} (known: {', '.join(known)})"}
                for k in args if k not in known]
    problems.extend(extra)
    limit = after = None
    try:
        limit = paging.parse_limit(args.get("limit"))
    except InvalidInput as exc:
        problems.extend(exc.details)
    try:
        after = paging.read_cursor(args.get("cursor"), kind, parts=parts)
    except InvalidInput as exc:
        problems.extend(exc.details)
    if problems:
        first = problems[0]
        raise InvalidInput(f"invalid {noun}s: {first['field']} {first['problem']}",
                           problems)
    return limit, after
