"""The forward table's state machine: delegating an instance, and the use cases the
forwarder records each peer's answer with (accepted, failed, unreachable, back).

Depends on core, model, federation.routing (its Route) and services (tx, peers,
publishing); no HTTP here: the forwarder (slapfed.peering.forwarder) calls the peers.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from ...core.sealed import shape_problem
from ...core.sla import MASTER_KEY, RELATIVE_KEYS
from ...core.states import DESTROYED, PENDING, UNKNOWN
from ...federation import routing
from ...model import Forward
from ...model.federation import (FWD_CLOSED, FWD_FORWARDED, FWD_QUEUED, FWD_REFUSED,
                                 FWD_UNREACHABLE)
from ..publishing import publish
from ..tx import clock, read, write
from .peers import open_forwards_of

log = logging.getLogger("slapfed.federation")

MAX_REMOTE_REFERENCE = 200
# A peer's contact (and the time of an unchanged summary) is recorded at most this often:
# the long poll answers every 20 s and the summary is read every 30 s, and each record
# rewrites the Peer (its summary included): an idle federation would write ~9 MB a day.
CONTACT_INTERVAL = 300.0
FIRST_RETRY = 0.5               # seconds: the first back-off after a failed call


def backoff(settings, failures: int) -> float:
    """Seconds to wait after ``failures`` failed calls in a row (>= 1): doubling from
    FIRST_RETRY, at most the master's --peer-retry-max (``settings.peer_retry_max``)."""
    return min(FIRST_RETRY * 2 ** (failures - 1), settings.peer_retry_max)


def remote_reference(here: str, requester: str, reference: str) -> str:
    """The reference this master requests an instance under at a peer: origin master,
    requester and reference, so that asking again never makes a second instance."""
    ref = f"{here}:{requester}:{reference}"
    if len(ref) <= MAX_REMOTE_REFERENCE:
        return ref
    digest = hashlib.sha256(f"{requester}\0{reference}".encode()).hexdigest()[:40]
    return f"{here}:{digest}"


def delegate(settings, app, inst, route: routing.Route, now: float) -> None:
    """Record in the forward table that ``inst`` is served by ``route.peers[0]`` (durable
    before any call to the peer: the forwarder reads it after this commit)."""
    here = settings.here
    fwd = app.forwards.get(inst.id)
    if fwd is None:
        fwd = Forward(inst.id, route.peers[0], route.peers[1:],
                      remote_reference(here, inst.requester, inst.reference), now)
        app.add_forward(fwd)
    else:                       # delegated before, then destroyed, now wanted again
        if fwd.peer != route.peers[0] and not fwd.accepted:
            app.move_forward(fwd, route.peers[0])
        fwd.set(now, state=FWD_QUEUED, reason=route.reason, attempts=0, next_attempt_at=0.0,
                fallbacks=tuple(route.peers[1:]))
        app.reopen_forward(fwd)
    fwd.set(now, reason=route.reason)
    inst.delegated = True
    inst.set_status(state=PENDING, log_tail=f"delegated to {fwd.peer}: {route.reason}",
                    promises=())
    inst.connection = {}


def converge_delegated(app, inst, now: float) -> None:
    """A delegated instance changed (parameters, state): the forwarder pushes it again.
    A destruction completes at once only if no call can have reached the peer."""
    fwd = app.forwards[inst.id]
    if inst.requested_state == DESTROYED and not fwd.contacted:
        fwd.set(now, state=FWD_CLOSED, reason="destroyed before any peer was called")
        app.close_forward(fwd)
        inst.set_status(state=DESTROYED, revision=inst.revision, log_tail="", promises=())
        return
    if not fwd.open:
        fwd.set(now, state=FWD_QUEUED, attempts=0, next_attempt_at=0.0)
        app.reopen_forward(fwd)
    elif fwd.pushed_revision < inst.revision and fwd.state != FWD_QUEUED:
        fwd.set(now, next_attempt_at=0.0)


def forwarded_sla(sla_json, here: str):
    """The SLA a peer gets: relative keys dropped (they name instances of this master),
    alternatives naming this master dropped (they were not served here)."""
    alts = sla_json if isinstance(sla_json, (list, tuple)) else [sla_json or {}]
    out = []
    for alt in alts:
        if alt.get(MASTER_KEY) == here:
            continue
        out.append({k: v for k, v in alt.items() if k not in RELATIVE_KEYS})
    if not out:
        return {}
    return out[0] if len(out) == 1 else out


# -- the forwarder's use cases ------------------------------------------------------------
@dataclass(frozen=True)
class Push:
    """One call the forwarder owes a peer: request ``body`` there for ``instance_id``."""

    instance_id: str
    peer: str
    revision: int
    contacted: bool
    body: dict
    recipient: str | None = None     # fingerprint of the recipient the body names


def due_pushes(rt, now: float | None = None, limit: int = 256) -> tuple[list[Push], float | None]:
    """Forwards whose peer has not accepted the instance's current revision and whose
    next attempt is due; and when the next one falls due (None: nothing waits)."""
    def query(app):
        t = clock() if now is None else now
        here = rt.settings.here
        due, next_at = [], None
        for iid in app.open_forwards:
            fwd = app.forwards[iid]
            inst = app.instances.get(iid)
            if inst is None or (fwd.accepted and fwd.pushed_revision >= inst.revision
                                and fwd.pushed_recipient == _fingerprint(inst)):
                continue
            if fwd.next_attempt_at > t:
                next_at = fwd.next_attempt_at if next_at is None else min(next_at,
                                                                         fwd.next_attempt_at)
                continue
            if len(due) < limit:
                due.append(Push(iid, fwd.peer, inst.revision, fwd.contacted,
                                _push_body(inst, fwd, here), _fingerprint(inst)))
        return due, next_at

    return read(rt, query)


def _push_body(inst, fwd, here: str) -> dict:
    body = {"reference": fwd.remote_reference, "software_url": inst.software_url,
            "software_type": inst.software_type, "parameters": dict(inst.parameters),
            "sla": forwarded_sla(inst.sla, here), "state": inst.requested_state,
            "shared": inst.shared, "provenance": list(inst.provenance)}
    recipient = forwarded_recipient(inst)
    if recipient is not None:
        body["recipient"] = recipient
    return body


# -- sealing through delegation -----------------------------------------------------------
def forwarded_recipient(inst) -> dict | None:
    """The recipient a forward of ``inst`` carries: its requester's certificate, bound
    to the instance's id here when this master is the origin; the one a peer forwarded
    here, unchanged, when it is relayed further (never this master's own, nor another)."""
    rec = inst.recipient
    if not isinstance(rec, dict) or not rec.get("certificate") or not rec.get("fingerprint"):
        return None
    return {"certificate": rec["certificate"], "fingerprint": rec["fingerprint"],
            "instance": rec.get("instance") or inst.id}


def _fingerprint(inst) -> str | None:
    rec = inst.recipient
    return rec.get("fingerprint") if isinstance(rec, dict) else None


def mark_contacted(rt, instance_id: str, peer: str) -> None:
    """Before the first call: from now on the peer may hold the instance."""
    def use_case(app):
        fwd = app.forwards.get(instance_id)
        if fwd is not None and fwd.peer == peer and not fwd.contacted:
            fwd.contacted = True
    write(rt, use_case)


def record_accepted(rt, instance_id: str, peer: str, revision: int, remote: dict,
                    recipient: str | None = None) -> None:
    """The peer accepted revision ``revision`` (with the recipient of fingerprint
    ``recipient``); apply what it answered."""
    def use_case(app):
        now = clock()
        fwd = app.forwards.get(instance_id)
        inst = app.instances.get(instance_id)
        if fwd is None or inst is None or fwd.peer != peer:
            return
        fwd.set(now, accepted=True, contacted=True, attempts=0, next_attempt_at=0.0,
                pushed_revision=max(fwd.pushed_revision, revision), state=FWD_FORWARDED,
                reason=f"accepted by {peer}", fallbacks=(), pushed_recipient=recipient)
        _contact(app, peer, now)
        _apply_remote(app, inst, fwd, remote, now, set())
    write(rt, use_case)


def record_failure(rt, instance_id: str, peer: str, reason: str, unreachable: bool) -> None:
    """A call to the peer failed: back off, try the next fallback peer when the
    instance was never accepted anywhere, and say why on the instance. Nothing is
    destroyed or forgotten."""
    def use_case(app):
        now = clock()
        fwd = app.forwards.get(instance_id)
        inst = app.instances.get(instance_id)
        if fwd is None or inst is None or fwd.peer != peer:
            return
        if unreachable:
            _peer_failed(app, peer, reason, now)
        if not fwd.accepted and fwd.fallbacks:
            nxt, rest = fwd.fallbacks[0], fwd.fallbacks[1:]
            app.move_forward(fwd, nxt)
            fwd.set(now, fallbacks=rest, attempts=0, next_attempt_at=0.0, state=FWD_QUEUED,
                    contacted=False, reason=f"{peer} failed ({reason}); falling back to {nxt}")
            inst.set_status(log_tail=f"delegated to {nxt} after {peer} failed: {reason}")
            return
        attempts = fwd.attempts + 1
        delay = backoff(rt.settings, attempts)
        state = FWD_UNREACHABLE if unreachable else FWD_REFUSED
        what = "unreachable" if unreachable else "refused it"
        text = f"peer {peer} {what}: {reason}; attempt {attempts}, next in {delay:.1f} s"
        fwd.set(now, attempts=attempts, next_attempt_at=now + delay, state=state, reason=text)
        status_state = inst.status["state"]
        if fwd.accepted and unreachable and status_state != DESTROYED:
            status_state = UNKNOWN
        if inst.status["state"] != status_state or inst.status["log_tail"] != text:
            inst.set_status(state=status_state, log_tail=text)
    write(rt, use_case)


def peer_unreachable(rt, peer: str, reason: str) -> None:
    """The peer stopped answering: what it serves is unknown until it answers again."""
    def use_case(app):
        now = clock()
        _peer_failed(app, peer, reason, now)
        text = f"peer {peer} unreachable: {reason}; its state will be read again when it answers"
        for fwd in list(open_forwards_of(app, peer)):
            inst = app.instances.get(fwd.instance_id)
            if inst is None or not fwd.accepted or inst.status["state"] in (DESTROYED, UNKNOWN):
                continue
            inst.set_status(state=UNKNOWN, log_tail=text)
    write(rt, use_case)


def peer_back(rt, peer: str) -> None:
    """The peer answers again: every forward waiting on it is due now."""
    def use_case(app):
        now = clock()
        _contact(app, peer, now)
        for fwd in open_forwards_of(app, peer):
            if fwd.next_attempt_at > now:
                fwd.next_attempt_at = now
    write(rt, use_case)


def apply_changes(rt, peer: str, items: list[dict]) -> int:
    """Apply the instances a peer reported changed (its long-poll answer); returns how
    many local instances changed. A relayed connection that changed redeploys the local
    instance that requested it (services.publishing), once however many of its
    children changed."""
    def use_case(app):
        now = clock()
        _contact(app, peer, now)
        changed, redeployed = 0, set()
        for remote in items:
            iid = app.forward_refs.get((peer, remote.get("reference")))
            fwd = None if iid is None else app.forwards.get(iid)
            inst = None if iid is None else app.instances.get(iid)
            if fwd is None or inst is None or fwd.peer != peer:
                continue
            changed += _apply_remote(app, inst, fwd, remote, now, redeployed)
        return changed
    return write(rt, use_case)


def store_summary(rt, peer: str, summary: dict) -> None:
    def use_case(app):
        now = clock()
        p = app.peers.get(peer)
        if p is None:
            return
        changed = p.summary != summary
        if changed:
            p.summary = summary
        # an unchanged summary read again is not a change: its time is recorded at most
        # every CONTACT_INTERVAL (an idle federation writes (almost) nothing)
        if changed or p.summary_at is None or now - p.summary_at >= CONTACT_INTERVAL:
            p.summary_at = now
        _contact(app, peer, now)
    write(rt, use_case)


def _contact(app, peer: str, now: float) -> None:
    p = app.peers.get(peer)
    if p is not None and (p.last_error is not None or p.last_contact is None
                          or now - p.last_contact >= CONTACT_INTERVAL):
        p.contact(now)


def _peer_failed(app, peer: str, reason: str, now: float) -> None:
    p = app.peers.get(peer)
    if p is not None and p.last_error != reason:
        p.failed(reason, now)


def _apply_remote(app, inst, fwd, remote: dict, now: float, redeployed: set) -> int:
    """Mirror the peer's view of the instance here: status, connection, chain. The
    connection is published here as the instance's own (services.publishing): a change
    redeploys the local instance that requested it (``redeployed``: those already
    redeployed by the use case)."""
    status = remote.get("status") or {}
    state = status.get("state", PENDING)
    converged = (status.get("revision") == remote.get("revision")
                 and fwd.pushed_revision >= inst.revision)
    chain = _chain_of(fwd.peer, remote)
    changes = 0
    if fwd.remote_id != remote.get("id"):
        fwd.remote_id = remote.get("id")
    if tuple(fwd.chain) != chain:
        fwd.chain = chain
        changes += 1
    new_status = dict(inst.status)
    new_status.update(state=state, log_tail=status.get("log_tail") or "",
                      promises=tuple(dict(p) for p in status.get("promises") or ()))
    # unknown at the peer because the computer serving it is not heard from there (its
    # lease ran out): what was last reported, as the peer shows it (its log_tail says
    # since when); gone once the peer shows a state again
    new_status.pop("reported_state", None)
    if state == UNKNOWN and status.get("reported_state"):
        new_status["reported_state"] = status["reported_state"]
    if converged:
        new_status["revision"] = inst.revision
    if new_status != inst.status:
        new_status["reported_at"] = now
        inst.status = new_status
        changes += 1
    connection = relayed_connection(fwd.peer, inst.id, remote.get("connection"))
    if publish(app, inst, connection, now, redeployed):
        changes += 1
    if converged and state == DESTROYED and inst.requested_state == DESTROYED:
        fwd.set(now, state=FWD_CLOSED, reason=f"destroyed at {fwd.peer}")
        app.close_forward(fwd)
        changes += 1
    elif fwd.state in (FWD_UNREACHABLE, FWD_REFUSED) and fwd.accepted \
            and fwd.pushed_revision >= inst.revision:
        fwd.set(now, state=FWD_FORWARDED, reason=f"accepted by {fwd.peer}", attempts=0)
    if changes:
        inst.touch(now)
    return 1 if changes else 0


def relayed_connection(peer: str, instance_id: str, connection) -> dict:
    """The connection parameters a peer reports for a delegated instance, as this master
    keeps and relays them: sealed values stay the sealed text (nobody on the chain can
    open them), and a value that claims to be sealed but is not of the shape is left
    out, logged with the peer and parameter it came from (core.sealed.shape_problem):
    it would not open anywhere, and nothing else of the instance is held up by it."""
    if not isinstance(connection, dict):
        return {}
    out = {}
    for key, value in connection.items():
        why = shape_problem(value)
        if why is None:
            out[key] = value
            continue
        log.warning("peer %s reported connection parameter %r of instance %s as a %s: "
                    "left out", peer, key, instance_id, why,
                    extra={"peer": peer, "instance": instance_id, "parameter": key})
    return out


def _chain_of(peer: str, remote: dict) -> tuple:
    hop = {"master": peer}
    delegation = remote.get("delegation")
    if delegation:
        return (hop,) + tuple(dict(c) for c in delegation.get("chain") or ())
    place = remote.get("placement")
    if place:
        loc = place.get("locality") or {}
        end = {"computer": place.get("computer"), "partition": place.get("partition"),
               **{k: v for k, v in loc.items() if v}}
        if isinstance(place.get("address"), str):
            end["address"] = place["address"]       # a SLAP answer's ip_list at the origin
        if isinstance(place.get("recipient"), dict):
            # the partition's certificate: the requester at the origin seals secret
            # parameters to it (slapfed request --secret through delegation)
            end["recipient"] = dict(place["recipient"])
        return (hop, end)
    host = remote.get("host_instance")
    if host:
        end = {"host_instance": host}
        where = remote.get("host_placement")
        if isinstance(where, dict):
            # where the far host runs: a SLAP answer for the shared instance at the origin
            end.update((k, where[k]) for k in ("computer", "partition", "address")
                       if isinstance(where.get(k), str))
        return (hop, end)
    return (hop,)

