"""What one placement decision is asked: the request, its resolved anchors, and per-alternative context.

Pure; depends on core.sla and placement.snapshot. The master resolves every reference an
SLA names into an Anchor (where that instance runs, or why it runs nowhere) before
calling the pipeline, so plugins never look anything up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.sla import ANYWHERE, Alternative, Sla
from .snapshot import RING, ComputerView, Snapshot, ring_rank


@dataclass(frozen=True)
class Anchor:
    """Another instance named by a relative SLA key: the computer it runs on, or why
    it runs on none (``why`` reads after its reference: "is not placed")."""

    reference: str
    computer: str | None = None
    why: str = "is not placed"


@dataclass(frozen=True)
class PlacementRequest:
    """One instance to place: ``near`` lists computers it should preferably be close to
    (its parent's); ``anchors`` resolves every reference the SLA names."""

    reference: str
    software_hash: str
    sla: Sla = ANYWHERE
    requester: str = "anonymous"
    anchors: dict = field(default_factory=dict)       # reference -> Anchor
    near: tuple = ()                                    # computer ids
    here: str | None = None                             # this master's name (SLA key master)
    expired: frozenset = frozenset()                    # computers whose lease ran out

    @property
    def seed(self) -> int:
        """The ring position of this request: replayable, different per reference."""
        return ring_rank(f"{self.requester}\0{self.reference}")


@dataclass(frozen=True)
class Context:
    """The request seen through one SLA alternative, over one snapshot."""

    request: PlacementRequest
    alternative: Alternative
    snapshot: Snapshot

    @property
    def capability(self) -> str | None:
        return self.alternative.get("capability")

    def anchor(self, reference: str) -> Anchor:
        return self.request.anchors.get(reference) or Anchor(reference, None, "is unknown")

    def anchor_view(self, reference: str) -> ComputerView | None:
        anchor = self.anchor(reference)
        return None if anchor.computer is None else self.snapshot.get(anchor.computer)

    def tie_break(self, cid: str) -> int:
        """Smaller wins among equal scores: the distance on the ring from the seed."""
        return (self.snapshot.rank.get(cid, 0) - self.request.seed) % RING
