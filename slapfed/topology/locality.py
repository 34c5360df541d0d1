"""Locality of computers: how close two of them are (same host, LAN, country, continent).

Pure; depends on core.states (the levels). A locality is a mapping with the keys of LEVELS (values may be
None when unknown). Unknown never counts as "same".
"""
from __future__ import annotations

from ..core.states import LOCALITY_LEVELS as LEVELS   # nested sites, innermost first
NONE = "none"


def relation(a: dict, b: dict) -> str:
    """The innermost level ``a`` and ``b`` share ("host", "lan", "country", "continent"),
    or "none". Levels are nested, so sharing a LAN implies sharing its country."""
    for level in LEVELS:
        va, vb = a.get(level), b.get(level)
        if va is not None and va == vb:
            return level
    return NONE


def shares(a: dict, b: dict, level: str) -> bool:
    """True when ``a`` and ``b`` are in the same ``level`` (or in a nested, closer one)."""
    rel = relation(a, b)
    return rel != NONE and LEVELS.index(rel) <= LEVELS.index(level)


def distance(a: dict, b: dict) -> int:
    """0 for the same host, 1 same LAN, 2 same country, 3 same continent, 4 otherwise."""
    rel = relation(a, b)
    return len(LEVELS) if rel == NONE else LEVELS.index(rel)
