"""Forgetting destroyed instances once their retention period is over (master serve
--destroyed-retention), from the master's maintenance loop.

Depends on core (states, retention), model and services.tx. One read finds the
candidates; they are forgotten in bounded batches, one write transaction per batch,
each instance checked again inside it. What is forgotten: the instance object, its
entries in the master's instance indexes (by requester and reference, hosts by release,
shared instances awaiting a host), its id in its parent's list of children, and its
closed forward row when it was delegated. Nothing else is touched: partition records
keep what they hold, and whatever other records are keyed by the instance's id (usage,
statements) stays.
"""
from __future__ import annotations

from ..core.errors import Fenced, ReadOnly
from ..core.retention import BATCH, MAX_BATCHES
from ..core.states import DESTROYED
from .tx import clock, read, write


def forgettable(app, inst, before: float) -> bool:
    """Destruction is complete (nothing runs, nothing is attached or hosted, no forward
    under way, no child left) and the instance last changed before ``before``."""
    if inst.requested_state != DESTROYED or inst.status.get("state") != DESTROYED:
        return False
    if inst.placed or inst.attached or inst.shared_ids or inst.child_master is not None:
        return False
    if inst.delegated and inst.id in app.open_forwards:
        return False
    if any(c in app.instances for c in inst.children):
        return False             # its children go first (they are listed under it)
    changed = inst.updated_at if inst.updated_at is not None else inst.created_at
    return changed is not None and changed <= before


def purge_destroyed(rt, retention: float, now: float | None = None, batch: int = BATCH,
                    max_batches: int = MAX_BATCHES) -> list[str]:
    """Forget the destroyed instances older than ``retention`` seconds: at most
    ``batch`` × ``max_batches`` of them this call, one transaction per batch. Returns
    their ids. A replica or a fenced primary forgets nothing (its primary does)."""
    if not retention or retention <= 0:
        return []
    before = (clock() if now is None else now) - retention

    def candidates(app):
        out = []
        for iid, inst in app.instances.items():
            if forgettable(app, inst, before):
                out.append(iid)
                if len(out) >= batch * max_batches:
                    break
        return out

    try:
        check = getattr(rt, "check_writable", None)
        if check is not None:
            check()
    except (ReadOnly, Fenced):
        return []
    found = read(rt.db, candidates)
    done: list[str] = []
    for start in range(0, len(found), batch):
        ids = found[start:start + batch]

        def use_case(app, ids=ids):
            gone = []
            for iid in ids:
                inst = app.instances.get(iid)
                if inst is not None and forgettable(app, inst, before):
                    forget(app, inst)
                    gone.append(iid)
            return gone
        try:
            done.extend(write(rt, use_case,
                              note=f"{len(ids)} destroyed instance(s) forgotten"))
        except (ReadOnly, Fenced):
            break
    return done


def forget(app, inst) -> None:
    """Remove a destroyed instance and its index entries (no commit)."""
    iid = inst.id
    key = (inst.requester, inst.reference)
    if app.by_request.get(key) == iid:
        del app.by_request[key]
    app.unindex_release(inst)
    app.forget_awaiting(inst)
    parent = app.instances.get(inst.parent) if inst.parent is not None else None
    if parent is not None and iid in parent.children:
        parent.children = tuple(c for c in parent.children if c != iid)
    fwd = app.forwards.get(iid)
    if fwd is not None:
        app.drop_forward(fwd)
    del app.instances[iid]
