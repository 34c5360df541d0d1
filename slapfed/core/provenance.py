"""Provenance: the chain of masters a request crossed, and the depth limit that bounds recursion.

Depends on core.errors only; pure (no I/O). A master extends the chain with its own name
before acting on a request and refuses a chain that is already too long or loops.
"""
from __future__ import annotations

import re

from .errors import InvalidInput, RecursionRefused

DEFAULT_MAX_DEPTH = 8
DEFAULT_MASTER_NAME = "master"      # a master started without a name
MAX_CHAIN = 64                      # longest chain accepted on the wire, whatever the limit
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def check_chain(value, field: str = "provenance") -> tuple[list[dict], tuple[str, ...]]:
    """Validate a chain from the wire: (problems, chain). Every problem is listed."""
    if value is None:
        return [], ()
    if not isinstance(value, (list, tuple)):
        return [{"field": field, "problem": f"must be a JSON array of master names, got "
                                            f"{type(value).__name__}"}], ()
    if len(value) > MAX_CHAIN:
        return [{"field": field, "problem": f"has {len(value)} masters, the limit is "
                                            f"{MAX_CHAIN}"}], ()
    problems = [{"field": f"{field}[{i}]", "problem": f"{name!r} is not a master name "
                                                      f"({NAME_RE.pattern})"}
                for i, name in enumerate(value)
                if not isinstance(name, str) or not NAME_RE.match(name)]
    return problems, (() if problems else tuple(value))


def extend(chain, name: str, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[str, ...]:
    """The chain with ``name`` (this master) appended.

    Raises RecursionRefused when the chain already holds ``max_depth`` masters (nesting
    deeper would exceed the limit) or already holds ``name`` (the request came back)."""
    chain = tuple(chain)
    shown = " -> ".join(chain + (name,))
    details = [{"field": "provenance", "chain": list(chain), "master": name,
                "max_depth": max_depth}]
    if name in chain:
        raise RecursionRefused(
            f"master {name} refuses a request that already crossed it (a loop): {shown}",
            [{**details[0], "problem": "loop"}])
    if len(chain) >= max_depth:
        raise RecursionRefused(
            f"master {name} refuses a request nested {len(chain)} masters deep "
            f"(limit {max_depth}): {shown}; raise --max-depth or request closer to the root",
            [{**details[0], "problem": "too_deep"}])
    return chain + (name,)


def check_max_depth(value) -> int:
    """A depth limit: an integer >= 1. Raises InvalidInput."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"the depth limit must be an integer >= 1, got {value!r}",
                           [{"field": "max_depth", "problem": "must be an integer >= 1"}])
    return value
