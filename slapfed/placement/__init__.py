"""Placement: choose a computer and partition for an instance from a read-only snapshot.

Pure (depends on core only): no I/O, no ZODB, no Flask. ``simple`` is the first
policy; a later filter/score plugin pipeline replaces it behind the same call.
"""
from .simple import Candidate, Choice, place

__all__ = ["Candidate", "Choice", "place"]
