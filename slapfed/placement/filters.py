"""Feasibility plugins: each turns the SLA (or a fact of supply) into terms that keep or refuse computers.

Pure; depends on core.sla, topology.locality and placement.context/snapshot. A plugin
has a ``name`` and ``terms(ctx)``; each term carries the human ``reason`` of its
refusals, ``fits(view)`` for one computer and ``narrow(snapshot, ids)`` for a whole set
at once through the snapshot's indexes (``ids`` None = every computer). Both must agree
(a property test checks it). ``fits(view, ctx)`` on the plugin returns the first reason.
"""
from __future__ import annotations

from ..core.sla import (CAPABILITY_KEY, DIFFERENT, LABEL_PREFIX, LEVELS, MASTER_KEY, PIN_KEY,
                        SAME, Relative)
from ..topology.locality import shares
from .context import Context
from .snapshot import ComputerView, Snapshot

REASON_RELEASE = "release not supplied"
REASON_CAPACITY = "capacity"
REASON_TAGGED = "capability tags"
REASON_LEASE = "lease expired"
REASON_LOST = "computer lost"
REASON_BROKEN = "release failed to install"


def _keep(ids, base: set) -> set:
    """``ids`` ∩ ``base`` (``ids`` None = every computer). Never mutates either."""
    return base if ids is None else ids & base


def _drop(snapshot: Snapshot, ids, base: set) -> set:
    return (snapshot.all_ids if ids is None else ids) - base


class Term:
    reason = ""

    def fits(self, view: ComputerView) -> bool:
        raise NotImplementedError

    def narrow(self, snapshot: Snapshot, ids):
        raise NotImplementedError


class Filter:
    """Base of feasibility plugins."""

    name = ""

    def terms(self, ctx: Context) -> list:
        raise NotImplementedError

    def fits(self, view: ComputerView, ctx: Context) -> str | None:
        for term in self.terms(ctx):
            if not term.fits(view):
                return term.reason
        return None


# -- computer_guid: an explicit pin ---------------------------------------------------
class _PinTerm(Term):
    def __init__(self, cid: str):
        self.cid = cid
        self.reason = f"{PIN_KEY}={cid}"

    def fits(self, view):
        return view.id == self.cid

    def narrow(self, snapshot, ids):
        present = self.cid in snapshot.views and (ids is None or self.cid in ids)
        return {self.cid} if present else set()


class PinFilter(Filter):
    name = PIN_KEY

    def terms(self, ctx):
        cid = ctx.alternative.get(PIN_KEY)
        return [] if cid is None else [_PinTerm(cid)]


# -- master: another master's wish is never served here --------------------------------
class _ElsewhereTerm(Term):
    def __init__(self, master: str):
        self.reason = f"{MASTER_KEY}={master}"

    def fits(self, view):
        return False

    def narrow(self, snapshot, ids):
        return set()


class MasterFilter(Filter):
    """An alternative naming another master (federation delegates it there) fits no
    computer of this one; naming this master is no condition at all."""

    name = MASTER_KEY

    def terms(self, ctx):
        name = ctx.alternative.get(MASTER_KEY)
        return [] if name is None or name == ctx.request.here else [_ElsewhereTerm(name)]


# -- host / lan / country / continent ---------------------------------------------------
class _LevelTerm(Term):
    def __init__(self, level: str, value: str):
        self.level, self.value = level, value
        self.reason = f"{level}={value}"

    def fits(self, view):
        return getattr(view, self.level) == self.value

    def narrow(self, snapshot, ids):
        return _keep(ids, snapshot.at_level(self.level, self.value))


class LevelFilter(Filter):
    def __init__(self, level: str):
        self.level = self.name = level

    def terms(self, ctx):
        value = ctx.alternative.get(self.level)
        return [] if value is None else [_LevelTerm(self.level, value)]


# -- label.KEY=VALUE --------------------------------------------------------------------
class _LabelTerm(Term):
    def __init__(self, key: str, value: str):
        self.key, self.value = key, value
        self.reason = f"{LABEL_PREFIX}{key}={value}"

    def fits(self, view):
        return view.labels.get(self.key) == self.value

    def narrow(self, snapshot, ids):
        return _keep(ids, snapshot.with_label(self.key, self.value))


class LabelFilter(Filter):
    name = "label"

    def terms(self, ctx):
        return [_LabelTerm(k, v) for k, v in ctx.alternative.labels]


# -- capability: tagged computers/partitions host only what asks for them -----------------
class _CapabilityTerm(Term):
    def __init__(self, capability: str | None):
        self.capability = capability
        self.reason = REASON_TAGGED if capability is None else f"{CAPABILITY_KEY}={capability}"

    def fits(self, view):
        if self.capability is None:
            return view.has_untagged
        return self.capability in view.tagged

    def narrow(self, snapshot, ids):
        if self.capability is None:
            return _keep(ids, snapshot.untagged)
        return _keep(ids, snapshot.with_capability(self.capability))


class CapabilityFilter(Filter):
    """``capability=X`` keeps computers with a partition tagged X (directly or through
    the computer); without it, computers whose partitions are all tagged are refused."""

    name = CAPABILITY_KEY

    def terms(self, ctx):
        return [_CapabilityTerm(ctx.capability)]


# -- same_* / different_* against another instance ---------------------------------------
class _RelativeTerm(Term):
    def __init__(self, rel: Relative, anchor_view: ComputerView | None, why: str):
        self.rel = rel
        self.anchor = anchor_view
        self.reason = str(rel) if anchor_view is not None else f"{rel}: {rel.reference} {why}"

    def fits(self, view):
        if self.anchor is None:
            return False
        if self.rel.mode == DIFFERENT and view.id == self.anchor.id:
            return False          # the anchor's own computer is on its host, known or not
        same = shares(view.locality, self.anchor.locality, self.rel.level)
        return same if self.rel.mode == SAME else not same

    def narrow(self, snapshot, ids):
        if self.anchor is None:
            return set()
        # sharing a level = sharing it or any level nested in it (topology.locality)
        near: set = set()
        for level in LEVELS[:LEVELS.index(self.rel.level) + 1]:
            near = near | snapshot.at_level(level, getattr(self.anchor, level))
        if self.rel.mode == SAME:
            return _keep(ids, near)
        # different_*: never the anchor's own computer, even when its locality is unknown
        # (unknown never counts as "same", but one computer is one host)
        return _drop(snapshot, ids, near | {self.anchor.id})


class RelativeFilter(Filter):
    def __init__(self, mode: str, level: str):
        assert mode in (SAME, DIFFERENT) and level in LEVELS
        self.mode, self.level = mode, level
        self.name = f"{mode}_{level}"

    def terms(self, ctx):
        out = []
        for rel in ctx.alternative.relative:
            if rel.mode == self.mode and rel.level == self.level:
                anchor = ctx.anchor(rel.reference)
                out.append(_RelativeTerm(rel, ctx.anchor_view(rel.reference), anchor.why))
        return out


# -- the release must be supplied -------------------------------------------------------
class _ReleaseTerm(Term):
    reason = REASON_RELEASE

    def __init__(self, software_hash: str):
        self.software_hash = software_hash

    def fits(self, view):
        return self.software_hash in view.releases

    def narrow(self, snapshot, ids):
        return _keep(ids, snapshot.supplied(self.software_hash))


class ReleaseFilter(Filter):
    """Supplied only: placement never installs a release on its own (a supply is an
    operator's decision, with its cost in disk and time)."""

    name = "release"

    def terms(self, ctx):
        return [_ReleaseTerm(ctx.request.software_hash)]


# -- ...and its install must not have failed there ---------------------------------------
class _InstallTerm(Term):
    reason = REASON_BROKEN

    def __init__(self, software_hash: str):
        self.software_hash = software_hash

    def fits(self, view):
        return self.software_hash not in view.broken

    def narrow(self, snapshot, ids):
        broken = snapshot.broken(self.software_hash)
        return _drop(snapshot, ids, broken) if broken else (
            snapshot.all_ids if ids is None else ids)


class InstallFilter(Filter):
    """A computer whose install of the release failed gets no instance of it: the
    instance would only fail there. It is placeable again once the node reports the
    release installed (the node retries with back-off)."""

    name = "install"

    def terms(self, ctx):
        return [_InstallTerm(ctx.request.software_hash)]


# -- a free partition fit for the request -----------------------------------------------
class _CapacityTerm(Term):
    reason = REASON_CAPACITY

    def __init__(self, capability: str | None):
        self.capability = capability

    def fits(self, view):
        return bool(view.free_for(self.capability))

    def narrow(self, snapshot, ids):
        return _keep(ids, snapshot.with_free(self.capability))


class CapacityFilter(Filter):
    name = "capacity"

    def terms(self, ctx):
        return [_CapacityTerm(ctx.capability)]


# -- a computer whose node is heard from ------------------------------------------------
class _LeaseTerm(Term):
    reason = REASON_LEASE

    def __init__(self, expired: frozenset):
        self.expired = expired

    def fits(self, view):
        return view.id not in self.expired

    def narrow(self, snapshot, ids):
        return _drop(snapshot, ids, self.expired) if self.expired else (
            snapshot.all_ids if ids is None else ids)


class LeaseFilter(Filter):
    """Nothing new goes to a computer whose lease ran out (its node is not heard from):
    what it already hosts stays there."""

    name = "lease"

    def terms(self, ctx):
        expired = ctx.request.expired
        return [_LeaseTerm(frozenset(expired))] if expired else []


# -- a computer not declared lost ---------------------------------------------------------
class _NotLostTerm(Term):
    reason = REASON_LOST

    def fits(self, view):
        return not view.lost

    def narrow(self, snapshot, ids):
        return _drop(snapshot, ids, snapshot.lost) if snapshot.lost else (
            snapshot.all_ids if ids is None else ids)


class LostFilter(Filter):
    """Nothing goes to a computer declared lost (an operator's verdict, or the master's
    rebuild_after policy): what it hosted was placed again elsewhere."""

    name = "lost"

    def terms(self, ctx):
        return [_NotLostTerm()]


def registry() -> dict:
    """Every filter plugin by name."""
    plugins = [MasterFilter(), PinFilter(), *(LevelFilter(level) for level in LEVELS), LabelFilter(),
               CapabilityFilter(),
               *(RelativeFilter(mode, level) for mode in (SAME, DIFFERENT) for level in LEVELS),
               ReleaseFilter(), InstallFilter(), CapacityFilter(), LeaseFilter(),
               LostFilter()]
    return {p.name: p for p in plugins}


FILTERS = registry()
