"""Use cases of a lease's transitions: recording on a computer that its lease ran out,
and that its node came back.

Depends on core.leases and services.tx. Renewals stay out of the database (one utime per
poll, services.leases); a transition is written once, on the Computer: so a peer master
that delegated an instance here learns of it through the change feed it long-polls
(services.federation.peer_api: an instance is reported when it or its computer moved).

- The run out is noticed by the master's maintenance (``record_ran_out``, once a second,
  by the one process owning the data directory's maintenance): one transaction for every
  computer newly found out, none while nothing runs out. The value written is the
  lease's own end, the same whoever writes it, and a computer already recorded out is
  left alone: two processes noticing the same expiry (ZEO clients) write it once (the
  second conflicts, runs again, finds it recorded and writes nothing).
- The return is noticed on the renewal path (desired-state reads, reports): when the
  computer is recorded out, the same transaction (a report's) or one transaction (a
  read's) clears it.

Nothing here destroys, moves or frees anything: a computer recorded out is only shown
``unknown``, here and at the peers.
"""
from __future__ import annotations

from ..core.leases import RAN_OUT, transition
from .tx import clock, read, write


def record_ran_out(rt, now: float | None = None) -> list[str]:
    """Record on each computer whose lease ran out (``rt.leases``, seen at ``now``, by
    default the lease table's clock) that it did, in one transaction; returns their ids
    (empty, and nothing written, when none newly ran out)."""
    return record_out(rt, ran_out_unrecorded(rt, now))


def ran_out_unrecorded(rt, now: float | None = None) -> list[str]:
    """The computers whose lease ran out and that do not record it yet (a read; the
    lease table is scanned at most every services.leases.SCAN_TTL seconds)."""
    now = rt.leases.clock() if now is None else now
    expired = rt.leases.expired_ids(now)
    if not expired:
        return []
    return read(rt, lambda app: sorted(cid for cid in expired if cid in app.computers
                                       and not app.computers[cid].lease_recorded_out))


def record_out(rt, candidates) -> list[str]:
    """One transaction recording each of ``candidates`` out whose lease (read again:
    its node may have called since) ran out and that does not record it yet; returns
    those recorded (none: nothing written)."""
    candidates = list(candidates)
    if not candidates:
        return []

    def use_case(app):
        done = []
        for cid in candidates:
            comp = app.computers.get(cid)
            if comp is None:
                continue
            lease = rt.leases.lease(cid)
            if transition(comp.lease_recorded_out, lease) == RAN_OUT \
                    and comp.record_lease_out(lease.expires_at):
                done.append(cid)
        return done

    return write(rt, use_case)


def renewed(rt, comp, now: float | None = None) -> bool:
    """A step of a write use case: ``comp``'s node called. Renews its lease (no write)
    and, when its lease is recorded out, records it back (in the caller's
    transaction); returns whether it did."""
    rt.leases.renew(comp.id)
    if not comp.lease_recorded_out:
        return False
    return comp.record_lease_back(clock() if now is None else now)
