"""The simple placement policy: absolute SLA filters, release supplied, free capacity.

Pure; depends on core.errors and core.states. Every refused computer records one
reason, so NoCapacity always says why ("3 computers refused by lan=lan-b, ...").
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from ..core.errors import NoCapacity
from ..core.states import SLA_LOCALITY_KEYS

REASON_RELEASE = "release not supplied"
REASON_CAPACITY = "capacity"


@dataclass(frozen=True)
class Candidate:
    """What placement may know about one computer (a read-only snapshot)."""

    id: str
    locality: dict = field(default_factory=dict)   # host/lan/country/continent -> str|None
    labels: dict = field(default_factory=dict)
    releases: frozenset = frozenset()              # hashes of releases supplied (available)
    free_partitions: tuple = ()                    # free partition ids (a sample, id order)
    free_count: int = 0                            # how many partitions are free in total


@dataclass(frozen=True)
class Choice:
    computer: str
    partition: str


def sla_refusal(computer_id: str, locality: dict, sla: dict) -> str | None:
    """The first absolute SLA key a computer does not satisfy, as ``key=wanted``."""
    wanted = sla.get("computer_guid")
    if wanted is not None and computer_id != wanted:
        return f"computer_guid={wanted}"
    for key in SLA_LOCALITY_KEYS:
        wanted = sla.get(key)
        if wanted is not None and locality.get(key) != wanted:
            return f"{key}={wanted}"
    return None


def refusal(candidate: Candidate, software_hash: str, sla: dict) -> str | None:
    """Why ``candidate`` cannot host the instance, or None when it can.

    Stages run in a fixed order, cheapest and most explicit first: the requester's
    SLA (an explicit wish), then the release (a fact of supply), then capacity."""
    reason = sla_refusal(candidate.id, candidate.locality, sla)
    if reason is not None:
        return reason
    if software_hash not in candidate.releases:
        return REASON_RELEASE
    if candidate.free_count <= 0 or not candidate.free_partitions:
        return REASON_CAPACITY
    return None


def place(reference: str, software_hash: str, sla: dict, candidates) -> Choice:
    """Pick a partition: the fitting computer with the most free partitions (ties: id).

    Within it, the partition is chosen among the sampled free ids by a hash of the
    reference, so a decision is replayable and concurrent writers rarely collide.
    Raises NoCapacity explaining every refusal."""
    fitting = []
    refused = Counter()
    details = []
    for candidate in candidates:
        reason = refusal(candidate, software_hash, sla)
        if reason is None:
            fitting.append(candidate)
        else:
            refused[reason] += 1
            details.append({"computer": candidate.id, "reason": reason})
    if not fitting:
        raise NoCapacity(explain(reference, refused), details)
    best = min(fitting, key=lambda c: (-c.free_count, c.id))
    digest = hashlib.sha256(reference.encode("utf-8")).digest()
    index = int.from_bytes(digest[:4], "big") % len(best.free_partitions)
    return Choice(best.id, best.free_partitions[index])


def explain(reference: str, refused: Counter) -> str:
    if not refused:
        return f"no partition fits {reference}: no computer is registered"
    parts = []
    for n, (reason, count) in enumerate(sorted(refused.items(), key=lambda kv: (-kv[1], kv[0]))):
        noun = ("computer" if count == 1 else "computers") + " refused " if n == 0 else ""
        parts.append(f"{count} {noun}by {reason}")
    return f"no partition fits {reference}: " + ", ".join(parts)
