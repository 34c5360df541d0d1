"""The read-only picture placement decides on: one ComputerView per computer, plus indexes.

Pure; depends on nothing but the standard library. The pipeline only reads a Snapshot;
its owner (the master's writer) keeps a MutableSnapshot current by replacing whole
views, with an undo journal so that an aborted transaction leaves no trace.
"""
from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field

from ..core.states import LOCALITY_LEVELS as LEVELS
RING = 1 << 64
# How many free partition ids a view keeps per bucket (untagged, or per capability).
FREE_SAMPLE = 16


def ring_rank(text: str) -> int:
    """A stable 64-bit position on the sampling ring (same everywhere, every run)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class ComputerView:
    """What placement may know about one computer. Never mutated: replaced as a whole.

    ``free`` samples the free partitions that carry no capability (with their count in
    ``free_count``); ``free_tagged`` maps a capability to (sample, count) of the free
    partitions tagged with it, directly or through the computer."""

    id: str
    host: str | None = None
    lan: str | None = None
    country: str | None = None
    continent: str | None = None
    labels: dict = field(default_factory=dict)
    capabilities: frozenset = frozenset()     # the computer's own tags
    tagged: frozenset = frozenset()           # every capability of it or of a partition
    has_untagged: bool = True                 # some partition carries no capability
    releases: frozenset = frozenset()         # hashes of the releases supplied (available)
    broken: frozenset = frozenset()           # ...of those, the ones whose install failed
    free: tuple = ()
    free_count: int = 0
    free_tagged: dict = field(default_factory=dict)   # capability -> (sample, count)
    total: int = 0                            # partitions
    used: int = 0                             # partitions hosting an instance
    lost: bool = False                        # declared lost: nothing is placed there

    @property
    def locality(self) -> dict:
        return {"host": self.host, "lan": self.lan, "country": self.country,
                "continent": self.continent}

    def free_for(self, capability: str | None) -> tuple:
        """Sampled free partition ids fit for a request asking ``capability`` (or none)."""
        if capability is None:
            return self.free if self.free_count > 0 else ()
        sample, count = self.free_tagged.get(capability, ((), 0))
        return sample if count > 0 else ()

    @classmethod
    def of(cls, cid: str, *, locality: dict | None = None, labels: dict | None = None,
           capabilities=(), releases=(), partitions=(), broken=()) -> "ComputerView":
        """Build a view from plain facts: ``partitions`` is an iterable of
        (pid, capabilities, used) in partition id order."""
        caps = frozenset(capabilities)
        free, free_count, tagged_free, tagged, untagged, total, used = [], 0, {}, set(caps), False, 0, 0
        for pid, pcaps, is_used in partitions:
            total += 1
            effective = caps | frozenset(pcaps)
            tagged |= effective
            if not effective:
                untagged = True
            if is_used:
                used += 1
                continue
            if not effective:
                free_count += 1
                if len(free) < FREE_SAMPLE:
                    free.append(pid)
            for cap in effective:
                sample, count = tagged_free.get(cap, ((), 0))
                if len(sample) < FREE_SAMPLE:
                    sample = sample + (pid,)
                tagged_free[cap] = (sample, count + 1)
        if total == 0:
            untagged = not caps
        loc = locality or {}
        return cls(cid, loc.get("host"), loc.get("lan"), loc.get("country"),
                   loc.get("continent"), dict(labels or {}), caps, frozenset(tagged), untagged,
                   frozenset(releases), frozenset(broken), tuple(free), free_count,
                   tagged_free, total, used)


_EMPTY: frozenset = frozenset()


class Snapshot:
    """Read-only queries over the views: by id, by level value, label, capability,
    release, free capacity, and a ring order for seeded sampling.

    Index values are sets owned by the snapshot: callers combine them with ``&``/``-``
    into new sets and never mutate them."""

    def __init__(self):
        self.views: dict[str, ComputerView] = {}
        self.all_ids: set = set()
        self.by_level: dict[str, dict[str, set]] = {level: {} for level in LEVELS}
        self.by_label: dict[tuple, set] = {}
        self.by_capability: dict[str, set] = {}
        self.untagged: set = set()
        self.by_release: dict[str, set] = {}
        self.by_broken: dict[str, set] = {}
        self.free_untagged: set = set()
        self.free_by_capability: dict[str, set] = {}
        self.lost: set = set()                # computers declared lost
        self._ranks: list[int] = []           # sorted ring positions
        self._ring_ids: list[str] = []        # computer id at each position
        self.rank: dict[str, int] = {}
        self.version = 0

    # -- queries ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.views)

    def get(self, cid: str) -> ComputerView | None:
        return self.views.get(cid)

    def at_level(self, level: str, value) -> set:
        return self.by_level[level].get(value, _EMPTY) if value is not None else _EMPTY

    def with_label(self, key: str, value: str) -> set:
        return self.by_label.get((key, value), _EMPTY)

    def with_capability(self, capability: str) -> set:
        return self.by_capability.get(capability, _EMPTY)

    def supplied(self, software_hash: str) -> set:
        return self.by_release.get(software_hash, _EMPTY)

    def broken(self, software_hash: str) -> set:
        """Computers whose install of the release failed."""
        return self.by_broken.get(software_hash, _EMPTY)

    def with_free(self, capability: str | None) -> set:
        if capability is None:
            return self.free_untagged
        return self.free_by_capability.get(capability, _EMPTY)

    def ring_sample(self, ids, seed: int, k: int) -> list:
        """Up to ``k`` ids of ``ids`` (a set, or None for every computer) in ring order
        from ``seed``: the same for the same state and seed, whatever the history."""
        n_ids = len(self.views) if ids is None else len(ids)
        if n_ids == 0 or k <= 0:
            return []
        if ids is not None and n_ids <= max(4 * k, 256):
            rank = self.rank
            return sorted(ids, key=lambda c: (rank[c] - seed) % RING)[:k]
        out = []
        ranks, ring_ids = self._ranks, self._ring_ids
        n = len(ranks)
        start = bisect.bisect_left(ranks, seed)
        for step in range(n):
            cid = ring_ids[(start + step) % n]
            if ids is None or cid in ids:
                out.append(cid)
                if len(out) >= k:
                    break
        return out


class MutableSnapshot(Snapshot):
    """The owner's side: ``put`` replaces a view, ``remove`` drops one; both keep every
    index right and, while a journal is open, record how to undo themselves."""

    def __init__(self):
        super().__init__()
        self._journal: list | None = None

    # -- journal ----------------------------------------------------------------
    @property
    def journaling(self) -> bool:
        return self._journal is not None

    def begin(self) -> None:
        """Start recording changes (idempotent while one is open)."""
        if self._journal is None:
            self._journal = [("version", self.version)]

    def commit(self) -> None:
        """Keep the changes recorded since begin()."""
        self._journal = None

    def rollback(self) -> None:
        """Undo every change recorded since begin(), newest first."""
        journal, self._journal = self._journal, None
        for kind, value in reversed(journal or ()):
            if kind == "version":
                self.version = value
            else:
                cid, old = value
                if old is None:
                    self._remove(cid)
                else:
                    self._put(old)

    def bump(self) -> None:
        self.version += 1

    # -- changes ----------------------------------------------------------------
    def put(self, view: ComputerView) -> None:
        if self._journal is not None:
            self._journal.append(("view", (view.id, self.views.get(view.id))))
        self._put(view)

    def remove(self, cid: str) -> None:
        if cid not in self.views:
            return
        if self._journal is not None:
            self._journal.append(("view", (cid, self.views[cid])))
        self._remove(cid)

    def _put(self, view: ComputerView, ring: bool = True) -> None:
        old = self.views.get(view.id)
        if old is None:
            self.all_ids.add(view.id)
            rank = self.rank[view.id] = ring_rank(view.id)
            if ring:
                i = bisect.bisect_left(self._ranks, rank)
                self._ranks.insert(i, rank)
                self._ring_ids.insert(i, view.id)
        else:
            self._unindex(old)
        self.views[view.id] = view
        self._index(view)

    def _remove(self, cid: str) -> None:
        old = self.views.pop(cid)
        self._unindex(old)
        self.all_ids.discard(cid)
        rank = self.rank.pop(cid)
        i = bisect.bisect_left(self._ranks, rank)
        while self._ring_ids[i] != cid:
            i += 1
        del self._ranks[i]
        del self._ring_ids[i]

    def _entries(self, v: ComputerView):
        """(index dict, key) pairs a view is filed under."""
        for level in LEVELS:
            value = getattr(v, level)
            if value is not None:
                yield self.by_level[level], value
        for item in v.labels.items():
            yield self.by_label, item
        for cap in v.tagged:
            yield self.by_capability, cap
        for h in v.releases:
            yield self.by_release, h
        for h in v.broken:
            yield self.by_broken, h
        for cap, (_sample, count) in v.free_tagged.items():
            if count > 0:
                yield self.free_by_capability, cap

    def _index(self, v: ComputerView) -> None:
        for index, key in self._entries(v):
            ids = index.get(key)
            if ids is None:
                ids = index[key] = set()
            ids.add(v.id)
        if v.has_untagged:
            self.untagged.add(v.id)
        if v.free_count > 0:
            self.free_untagged.add(v.id)
        if v.lost:
            self.lost.add(v.id)

    def _unindex(self, v: ComputerView) -> None:
        for index, key in self._entries(v):
            ids = index.get(key)
            if ids is not None:
                ids.discard(v.id)
                if not ids:
                    del index[key]
        self.untagged.discard(v.id)
        self.free_untagged.discard(v.id)
        self.lost.discard(v.id)


def build(views, version: int = 0) -> MutableSnapshot:
    """A snapshot of ``views`` (any iterable of ComputerView)."""
    snap = MutableSnapshot()
    for view in views:
        snap._put(view, ring=False)
    ring = sorted((rank, cid) for cid, rank in snap.rank.items())
    snap._ranks = [rank for rank, _cid in ring]
    snap._ring_ids = [cid for _rank, cid in ring]
    snap.version = version
    return snap
