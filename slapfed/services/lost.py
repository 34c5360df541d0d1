"""Use cases of lost computers: the verdict that moves their instances, wiping what moved.

Depends on core, model and services.tx/render/instances/placement. Unreachability alone
never moves anything (a computer whose lease ran out is only ``unknown``): ``lost`` is
an administrator's verdict (or the master's ``rebuild_after`` policy, see
``declare_expired_lost``). A lost computer gets nothing placed on it; each instance it
hosted is placed again elsewhere under its own SLA, keeping its id and reference; its
old partition is recorded as moved, its data left where it is until an administrator
wipes it (the node sets it aside meanwhile: node.plan's Quarantine). A child master
(an instance that published replicas) is not placed again empty: it is rebuilt from a
replica, whose partition (data, CA, address and port) it takes over; one without a
replica to rebuild from is not placed again, and says so. One write transaction per use
case.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import Conflict, InvalidInput, NoCapacity, NotFound, SlapfedError
from ..core.sealed import PENDING as SECRET_PENDING
from ..core.sealed import is_sealed
from ..core.sla import parse_sla
from ..core.states import DESTROYED, ERASED, FAILED, PENDING, STARTED
from . import lease_marks, placement, render
from .computers import get_computer
from .federation.peers import open_forwards_of, peer_json
from .instances import _converge, _document_changed, host_gone
from .tx import clock, write

# Where an instance that could not be placed again says why.
NOT_REBUILT = ("computer {cid} was declared lost ({why}) and no other partition fits "
               "{ref}: {problem}; request it again once one does")
REBUILT = "moved from computer {cid} (declared lost: {why}) to {where}"
# A child master rebuilt from its replica, and that replica (see _rebuild_from_replica).
FROM_REPLICA = ("rebuilt from its replica {rep} after computer {cid} was declared lost "
                "({why}): it takes over {where}, the replica's data, CA, address and "
                "port, and its node promotes that replica to the primary (a new epoch) "
                "as it starts the master there")
REPLICA_TAKEN = ("promoted: its partition {where} now serves its primary {ref} (computer "
                 "{cid} was declared lost); it is placed again, as a new replica, once "
                 "{ref} requests it with a new invitation")
# A moved instance whose secret parameters were sealed to its old partition.
RESEAL = ("; its secret parameters ({names}) were sealed to its old partition: they "
          "wait for {who} to seal them to the new one")
NO_REPLICA = ("child master {ref} ran on computer {cid}, declared lost ({why}), and no "
              "replica can take over ({problems}): it is not placed again empty, which "
              "would make a new CA that its nodes and clients do not trust; restore it "
              "from a backup, or request it again to start it anew, empty")


class _DryRun(SlapfedError):
    """Carries a dry run's answer out of its transaction, which is then undone."""

    code = "dry_run"

    def __init__(self, answer: dict):
        super().__init__("dry run")
        self.answer = answer


@dataclass(frozen=True)
class Move:
    """What became of one instance of a lost computer."""

    instance: str
    reference: str
    partition: str
    outcome: str                 # moved | not_placed | destroyed
    to: dict | None = None       # {"computer", "partition"} when moved
    reason: str = ""

    def to_json(self) -> dict:
        return {"instance": self.instance, "reference": self.reference,
                "partition": self.partition, "outcome": self.outcome, "to": self.to,
                "reason": self.reason or None}


MOVED, NOT_PLACED, DESTROYED_HERE = "moved", "not_placed", "destroyed"
REBUILT_FROM_REPLICA = "rebuilt"

# What a child master publishes of its replicas (profiles/master, replicas=N): for each,
# replica-K = the reference of the instance it requested for it; and what that replica
# instance publishes of itself (role, url).
REPLICA_KEY = re.compile(r"replica-([0-9]{1,2})\Z")
REPLICA_ROLE = "replica"
SYNC_MODE = "sync"


# -- use cases ------------------------------------------------------------------
def _write_or_try(rt, use_case, dry_run: bool) -> dict:
    """Run ``use_case`` in one write transaction; with ``dry_run``, run it the same way
    and undo it (the answer says what would have happened, marked ``dry_run``)."""
    if not dry_run:
        return write(rt, use_case)

    def then_undo(app):
        raise _DryRun(use_case(app))
    try:
        write(rt, then_undo)
    except _DryRun as done:
        return {**done.answer, "dry_run": True}
    raise AssertionError("a dry run's use case returned without its answer")


def declare_lost(rt, computer_id: str, reason: str, dry_run: bool = False) -> dict:
    """The verdict: computer ``computer_id`` is lost. Returns {"computer", "moves"}.

    Each instance it hosts is placed again elsewhere (its SLA, different_* constraints
    to the rest of its tree included, instances named by others' SLAs first), pending
    there with no connection parameters until its new node publishes them; one that
    fits nowhere is ``failed`` with the reason and stays unplaced (requesting it again
    retries); one being destroyed is destroyed at once. Declaring a lost computer lost
    again moves what is still there (nothing, usually) and keeps the first verdict.
    ``dry_run`` answers the same and writes nothing. Raises NotFound."""
    def use_case(app):
        now = clock()
        comp = get_computer(app, computer_id)
        comp.declare_lost(now, reason)
        placement.touch(rt.placement, app, comp)
        moves = [m.to_json() for m in _move_all(rt, app, comp, now)]
        return {"computer": render.computer_json(comp, rt.leases), "moves": moves}

    return _write_or_try(rt, use_case, dry_run)


def wipe(rt, computer_id: str, partition_id: str | None = None) -> dict:
    """An administrator lets the node erase the data set aside of the instances that
    moved away from ``computer_id`` (one partition, or all); the node erases it and
    reports, which frees those partitions. Wiping a whole lost computer also returns it
    to service (placeable again). Raises NotFound, Conflict (the partition holds no
    moved instance's data)."""
    def use_case(app):
        comp = get_computer(app, computer_id)
        if partition_id is not None:
            part = comp.partitions.get(partition_id)
            if part is None:
                raise NotFound(f"computer {computer_id} has no partition {partition_id!r}")
            if part.moved_instance is None:
                held = (f"hosts instance {part.instance_id}" if part.instance_id
                        else "is free")
                raise Conflict(f"partition {partition_id} of computer {computer_id} {held}: "
                               "it holds no data of an instance that moved away; nothing "
                               "to wipe")
            comp.allow_wipe(partition_id)
        else:
            for pid in comp.moved_partition_ids():
                comp.allow_wipe(pid)
            if comp.lost:
                comp.clear_lost()
                placement.touch(rt.placement, app, comp)
        return render.computer_json(comp, rt.leases)

    return write(rt, use_case)


def report_moved(rt, computer_id: str, partition_id: str, instance_id: str,
                 state: str) -> dict:
    """The node's word on a moved partition: ``quarantined`` (the instance's services
    are stopped and its data set aside) or ``erased`` (wiped, as an administrator let
    it: the partition is free again). Raises NotFound, Conflict (the partition did not
    host that instance, or its erasure was not allowed)."""
    def use_case(app):
        comp = get_computer(app, computer_id)
        lease_marks.renewed(rt, comp)
        part = comp.partitions.get(partition_id)
        if part is None:
            raise NotFound(f"computer {computer_id} has no partition {partition_id!r}")
        if part.moved_instance != instance_id:
            raise Conflict(f"partition {partition_id} of computer {computer_id} holds no "
                           f"moved instance {instance_id} (stale report?)")
        if state == ERASED:
            if not part.wipe:
                raise Conflict(f"partition {partition_id} of computer {computer_id}: no "
                               "administrator allowed erasing the data of instance "
                               f"{instance_id} (slapfed computer wipe)")
            comp.wiped(partition_id)
            placement.touch(rt.placement, app, comp)
        else:
            comp.note_quarantined(partition_id)
        return render.partition_json(part)

    return write(rt, use_case)


def declare_expired_lost(rt, after: float, now: float | None = None) -> list[str]:
    """The ``rebuild_after`` policy: every computer whose lease has been out for
    ``after`` seconds (and that is not lost yet) is declared lost, each in its own
    transaction. Returns their ids. Nothing is read from the lease table but the lease
    files' times (no write while nothing expires)."""
    now = rt.leases.clock() if now is None else now     # the lease table's own clock
    overdue = []
    for cid in sorted(rt.leases.expired_ids(now)):
        renewed = rt.leases.renewed_at(cid)
        if renewed is None or now - (renewed + rt.leases.interval) < after:
            continue
        overdue.append(cid)
    declared = []
    for cid in overdue:
        why = f"lease out for over {after:g} s (rebuild_after)"
        try:
            answer = _declare_if_not_lost(rt, cid, why)
        except NotFound:
            continue
        if answer:
            declared.append(cid)
    return declared


def _declare_if_not_lost(rt, cid: str, why: str) -> bool:
    def use_case(app):
        comp = get_computer(app, cid)
        if comp.lost:
            return False
        renewed = rt.leases.renewed_at(cid)
        if renewed is not None and not rt.leases.lease(cid).expired:
            return False             # its node came back meanwhile
        now = clock()
        comp.declare_lost(now, why)
        placement.touch(rt.placement, app, comp)
        _move_all(rt, app, comp, now)
        return True

    return write(rt, use_case)


def declare_peer_lost(rt, name: str, reason: str, dry_run: bool = False) -> dict:
    """The verdict: peer ``name`` is lost. Returns {"peer", "moves"}.

    Nothing is delegated to it any more (routing no longer sees it). Each instance
    delegated to it loses its forward and is served again as the delegation policy
    routes it now: a fallback peer, or here; one being destroyed is destroyed at once
    (nothing to wait for); one that fits nowhere is failed with the reason. Every
    instance the peer may have been asked to run is recorded on the peer as an orphan,
    to destroy there if it ever comes back. ``dry_run`` answers the same and writes
    nothing. Raises NotFound."""
    def use_case(app):
        now = clock()
        peer = app.peers.get(name)
        if peer is None:
            raise NotFound(f"no peer master named {name!r}")
        if peer.lost_at is None:
            peer.lost_at, peer.lost_reason = now, reason
        moves = []
        for fwd in list(open_forwards_of(app, name)):
            if fwd.contacted:
                peer.orphans = tuple(peer.orphans) + ({
                    "instance": fwd.instance_id, "remote_reference": fwd.remote_reference,
                    "remote_id": fwd.remote_id, "at": render.iso(now)},)
            app.drop_forward(fwd)
            inst = app.instances.get(fwd.instance_id)
            if inst is not None:
                moves.append(_rehome(rt, app, inst, name, peer.lost_reason, now).to_json())
        return {"peer": peer_json(app, peer), "moves": moves}

    return _write_or_try(rt, use_case, dry_run)


# -- steps (no transaction handling below this line) -----------------------------
def _rehome(rt, app, inst, peer: str, why: str, now: float) -> Move:
    """An instance whose peer was declared lost: served again as routing decides now."""
    inst.delegated = False
    inst.connection = {}              # what the lost peer published no longer holds
    if inst.requested_state == DESTROYED:
        inst.set_status(state=DESTROYED, revision=inst.revision, log_tail="", promises=())
        inst.touch(now)
        return Move(inst.id, inst.reference, "", DESTROYED_HERE)
    try:
        _converge(rt, app, inst, now)
    except (NoCapacity, InvalidInput) as exc:
        text = (f"peer {peer} was declared lost ({why}) and nothing else serves "
                f"{inst.reference}: {exc.message}; request it again once something does")
        inst.set_status(state=FAILED, revision=inst.revision, log_tail=text, promises=())
        inst.touch(now)
        return Move(inst.id, inst.reference, "", NOT_PLACED, reason=text)
    came = f"came back from peer {peer} (declared lost: {why})"
    if inst.delegated:
        fwd = app.forwards.get(inst.id)
        to = fwd.peer if fwd is not None else "?"
        inst.set_status(log_tail=f"delegated to {to} after peer {peer} was declared lost "
                                 f"({why})")
        return Move(inst.id, inst.reference, "", MOVED, to={"peer": to})
    if inst.placed:
        inst.set_status(state=PENDING, log_tail=f"{came}; placed on {inst.computer_id}/"
                                                f"{inst.partition_id}", promises=())
        inst.touch(now)
        return Move(inst.id, inst.reference, "", MOVED,
                    to={"computer": inst.computer_id, "partition": inst.partition_id})
    if inst.attached:
        return Move(inst.id, inst.reference, "", MOVED, to={"host": inst.host_id})
    return Move(inst.id, inst.reference, "", NOT_PLACED, reason=inst.status["log_tail"])



def _move_all(rt, app, comp, now: float) -> list[Move]:
    hosted = [(pid, app.instances[p.instance_id]) for pid, p in comp.partitions.items()
              if p.instance_id is not None]
    return [_move(rt, app, comp, pid, inst, now) for pid, inst in _anchors_first(hosted)]


def _anchors_first(hosted: list) -> list:
    """Instances whose SLA names no other instance first, then by how many they name:
    an instance that others keep apart from (different_*) lands before them, so that
    their constraints are judged against where it runs now."""
    def refs(inst) -> int:
        try:
            return len(parse_sla(inst.sla, "sla", inst.reference).references)
        except SlapfedError:
            return 0
    return sorted(hosted, key=lambda item: (refs(item[1]), item[0]))


def _move(rt, app, comp, pid: str, inst, now: float) -> Move:
    source, problems, master = None, [], is_child_master(inst)
    if inst.requested_state != DESTROYED and master:
        source, problems = replica_to_rebuild_from(rt, app, comp, inst)
    comp.move_out(pid)
    inst.unplace()
    inst.takes_over = None
    backup = inst.connection.get("backup")
    if isinstance(backup, str) and backup:
        inst.restore_from = backup  # where its data were backed up: restored from there
    inst.connection = {}            # the old node's parameters no longer hold
    held, inst.shared_ids = inst.shared_ids, ()
    for sid in held:
        shared = app.instances.get(sid)
        if shared is not None:
            host_gone(rt, app, shared, now)
    why = comp.lost_reason or "lost"
    if inst.requested_state == DESTROYED:
        inst.set_status(state=DESTROYED, revision=inst.revision, log_tail="", promises=())
        inst.touch(now)
        return Move(inst.id, inst.reference, pid, DESTROYED_HERE)
    if source is not None:
        return _rebuild_from_replica(rt, app, comp, pid, inst, source, why, now)
    if master:
        text = NO_REPLICA.format(ref=inst.reference, cid=comp.id, why=why,
                                 problems="; ".join(problems) or "it has none")
        inst.set_status(state=FAILED, revision=inst.revision, log_tail=text, promises=())
        inst.touch(now)
        return Move(inst.id, inst.reference, pid, NOT_PLACED, reason=text)
    try:
        _converge(rt, app, inst, now)
    except (NoCapacity, InvalidInput) as exc:
        text = NOT_REBUILT.format(cid=comp.id, why=why, ref=inst.reference,
                                  problem=exc.message)
        inst.set_status(state=FAILED, revision=inst.revision, log_tail=text, promises=())
        inst.touch(now)
        return Move(inst.id, inst.reference, pid, NOT_PLACED, reason=text)
    if inst.placed:
        where = {"computer": inst.computer_id, "partition": inst.partition_id}
        resealed = _secrets_pending(inst)
        parent = _tell_parent(app, inst, now)
        text = REBUILT.format(cid=comp.id, why=why,
                              where=f"{inst.computer_id}/{inst.partition_id}")
        if resealed:
            text += RESEAL.format(names=", ".join(resealed),
                                  who=f"its requester {parent.reference}"
                                  if parent is not None else "its requester")
        inst.set_status(state=PENDING, log_tail=text, promises=())
        inst.touch(now)
        return Move(inst.id, inst.reference, pid, MOVED, to=where)
    if inst.delegated:
        fwd = app.forwards.get(inst.id)
        to = {"peer": fwd.peer} if fwd is not None else None
        return Move(inst.id, inst.reference, pid, MOVED, to=to,
                    reason="delegated to a peer")
    return Move(inst.id, inst.reference, pid, NOT_PLACED, reason=inst.status["log_tail"])


def _secrets_pending(inst) -> list[str]:
    """A moved instance's secret parameters were sealed to the partition it left, whose
    key its new partition does not hold: each becomes pending (core.sealed.PENDING), so
    that its new node has the new partition certified and builds nothing until its
    requester seals them again (``request --secret``; a recipe that requested it, when
    its buildout runs again: ``_tell_parent``). Returns their names."""
    names = sorted(k for k, v in inst.parameters.items() if is_sealed(v))
    if names:
        inst.parameters = {k: SECRET_PENDING if k in names else v
                           for k, v in inst.parameters.items()}
    return names


def _tell_parent(app, inst, now: float):
    """The instance that requested ``inst`` (its parent, here) gets a new revision, so
    that its node runs its buildout again: whatever it handed ``inst`` for the partition
    it ran in (a child master's replica: its invitation, sealed to that partition) it
    hands again for the new one. Returns that parent (None: no parent here)."""
    parent = app.instances.get(inst.parent) if inst.parent else None
    if parent is None or parent.requested_state == DESTROYED:
        return parent
    parent.children_moved += 1
    parent.bump_revision(now)
    _document_changed(app, parent, now)
    return parent


# -- a child master rebuilt from its replica ----------------------------------------
def is_child_master(inst) -> bool:
    """Whether the instance runs a master whose data matter beyond its partition: one
    that registered with this master, or that published replicas."""
    return inst.child_master is not None or "replicas" in inst.connection


def replicas_of(app, inst) -> list:
    """The replica instances a child master published (``replica-K``: the reference it
    requested replica K under, as itself), in the order of K."""
    found = []
    for key, ref in inst.connection.items():
        m = REPLICA_KEY.match(key)
        if m and isinstance(ref, str):
            rep = app.find_instance(inst.id, ref)
            if rep is not None:
                found.append((int(m.group(1)), rep))
    return [rep for _k, rep in sorted(found, key=lambda kr: kr[0])]


def replica_refusal(rt, app, comp, rep) -> str | None:
    """Why replica instance ``rep`` cannot take over from its primary on the lost
    computer ``comp`` (None: it can)."""
    if rep.requested_state == DESTROYED:
        return f"{rep.reference} is being destroyed"
    if not rep.placed:
        return f"{rep.reference} has no partition"
    if rep.computer_id == comp.id:
        return f"{rep.reference} ran on {comp.id} too"
    host = app.computers.get(rep.computer_id)
    if host is None or host.lost:
        return f"{rep.reference}'s computer {rep.computer_id} is lost too"
    if rt.leases.lease(host.id).expired:
        return f"{rep.reference}'s computer {host.id} is silent (its lease ran out)"
    state = rep.status.get("state")
    if state != STARTED:
        return f"{rep.reference} is {state}, not started"
    if rep.connection.get("role") != REPLICA_ROLE or not rep.connection.get("url"):
        return f"{rep.reference} published no replica URL"
    return None


def replica_to_rebuild_from(rt, app, comp, inst) -> tuple:
    """(the replica instance to rebuild ``inst`` from, or None; why each other one
    cannot): the first started replica on a live computer, a sync one first (it held
    every acknowledged write)."""
    usable, problems = [], []
    for rep in replicas_of(app, inst):
        why = replica_refusal(rt, app, comp, rep)
        (problems.append(why) if why else usable.append(rep))
    usable.sort(key=lambda r: r.connection.get("mode") != SYNC_MODE)   # stable: K order
    return (usable[0] if usable else None), problems


def _rebuild_from_replica(rt, app, comp, pid: str, inst, rep, why: str,
                          now: float) -> Move:
    """``inst`` (unplaced from the lost computer) takes over the partition of its replica
    ``rep``, data included: that partition's node keeps the data (``takes_over``) and
    starts the primary's profile there, which promotes the replica (a new epoch) and
    publishes the same CA and that partition's URL; the master's nodes and clients
    follow it through the masters they learned. ``rep`` gives its partition up and is
    placed again when ``inst`` requests it with a new invitation."""
    host = app.computers[rep.computer_id]
    where = f"{host.id}/{rep.partition_id}"
    host.hand_over(rep.partition_id, rep.id, inst.id)
    inst.place(host.id, rep.partition_id)
    inst.takes_over = rep.id
    inst.set_status(state=PENDING, log_tail=FROM_REPLICA.format(
        rep=rep.reference, cid=comp.id, why=why, where=where), promises=())
    inst.touch(now)
    rep.unplace()
    rep.connection = {}
    rep.set_status(state=PENDING, log_tail=REPLICA_TAKEN.format(
        where=where, ref=inst.reference, cid=comp.id), promises=())
    rep.touch(now)
    placement.touch(rt.placement, app, host)
    return Move(inst.id, inst.reference, pid, REBUILT_FROM_REPLICA,
                to={"computer": host.id, "partition": inst.partition_id,
                    "from": rep.reference})
