"""Leases: whether a computer's node is still heard from, decided from times alone.

Pure; depends on nothing. A node renews its computer's lease at every desired-state
read and report; once ``interval`` seconds pass without a renewal the lease has run
out, and what the master knows of that computer is shown ``unknown`` (never destroyed,
moved or freed). A computer whose node never renewed (None) has no lease: nothing is
known to have stopped.
"""
from __future__ import annotations

from .record import Record

LIVE = "live"          # renewed less than ``interval`` seconds ago
EXPIRED = "expired"    # not renewed for ``interval`` seconds: its node is not heard from
NONE = "none"          # never renewed (a computer registered ahead of its node)
LEASE_STATES = (LIVE, EXPIRED, NONE)

DEFAULT_LEASE = 30.0   # seconds; a node polls every 2 s by default


class Lease(Record):
    """A computer's lease at one moment: ``state``, when it was last renewed and when it
    runs (or ran) out (epoch seconds; None without a renewal)."""

    state: str
    renewed_at: float | None
    expires_at: float | None
    interval: float

    @property
    def expired(self) -> bool:
        return self.state == EXPIRED


def lease_at(now: float, renewed_at: float | None, interval: float) -> Lease:
    """The lease of a computer last renewed at ``renewed_at``, seen at ``now``. A lease
    renewed exactly ``interval`` seconds ago has run out."""
    if renewed_at is None:
        return Lease(NONE, None, None, interval)
    expires_at = renewed_at + interval
    return Lease(LIVE if now < expires_at else EXPIRED, renewed_at, expires_at, interval)


# -- transitions: what the master records of a lease (one write each) ---------------------
# A lease running out is not a change of the database; but a peer master that delegated
# an instance here only learns of what changed there. So the master records, on the
# computer, when its lease was seen run out and when its node came back: one write per
# transition, never one per poll.
RAN_OUT = "ran_out"    # the lease ran out and nothing records it yet: record it
BACK = "back"          # it is recorded out, and the node was heard from: clear it


def transition(recorded_out: bool, lease: Lease) -> str | None:
    """What to record of a computer's lease seen as ``lease``, its computer recording it
    out or not (``recorded_out``): RAN_OUT, BACK, or None (nothing: the record already
    says it). A computer with no lease (never renewed, or its lease table lost) changes
    nothing: only a renewal proves its node is back."""
    if lease.state == EXPIRED and not recorded_out:
        return RAN_OUT
    if lease.state == LIVE and recorded_out:
        return BACK
    return None
