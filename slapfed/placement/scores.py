"""Ranking plugins: each scores a feasible computer in [0, 1]; the pipeline weighs them.

Pure; depends on topology.locality and placement.context/snapshot. A plugin has a
``name``, ``score(view, ctx)`` and may ``propose(ctx, ids, k)`` extra candidates worth
scoring (closeness proposes computers near its targets, which a ring sample could miss).
"""
from __future__ import annotations

from ..core.sla import SAME
from ..topology.locality import LEVELS, distance
from .context import Context
from .snapshot import ComputerView


class Score:
    name = ""

    def score(self, view: ComputerView, ctx: Context) -> float:
        raise NotImplementedError

    def propose(self, ctx: Context, ids, k: int) -> list:
        return []


class Closeness(Score):
    """Closer to the requester is better: to the parent instance's computer, and to the
    instances the SLA wants to be near (same_* keys). 1 = same host, 0 = nothing shared;
    the mean over every target; 0 for all when there is no target."""

    name = "closeness"

    def targets(self, ctx: Context) -> list:
        out = []
        for cid in ctx.request.near:
            view = ctx.snapshot.get(cid)
            if view is not None:
                out.append(view)
        for rel in ctx.alternative.relative:
            if rel.mode == SAME:
                view = ctx.anchor_view(rel.reference)
                if view is not None:
                    out.append(view)
        return out

    def score(self, view, ctx):
        targets = self.targets(ctx)
        if not targets:
            return 0.0
        top = len(LEVELS)
        here = view.locality
        return sum((top - distance(here, t.locality)) / top for t in targets) / len(targets)

    def propose(self, ctx, ids, k):
        snap = ctx.snapshot
        out = []
        for target in self.targets(ctx):
            for level in LEVELS[:3]:     # host, LAN, country: continents are large enough
                near = snap.at_level(level, getattr(target, level))
                if near:
                    out += snap.ring_sample(near if ids is None else ids & near,
                                            ctx.request.seed, k)
        return out


class Spread(Score):
    """Emptier computers are better: the share of their partitions still free."""

    name = "spread"

    def score(self, view, ctx):
        return (view.total - view.used) / view.total if view.total else 0.0


def registry() -> dict:
    return {p.name: p for p in (Closeness(), Spread())}


SCORES = registry()
