"""Use cases of federation: peers, the delegation policy, routing a request, and the
forward table the forwarder works through (one transaction each).

Depends on core, model, federation.routing (pure) and services (tx, render, placement).
No HTTP here: the forwarder (slapfed.federation.forwarder) calls peers and records
what they answered through these use cases.
"""
from __future__ import annotations

import hashlib
import threading
import time
import weakref
from dataclasses import dataclass

from ..core.errors import Conflict, InvalidInput, NoCapacity, NotFound
from ..core.provenance import DEFAULT_MAX_DEPTH
from ..core.sla import MASTER_KEY, RELATIVE_KEYS, parse_sla
from ..core.states import DESTROYED, PENDING, UNKNOWN
from ..federation import routing
from ..model import Forward, Peer
from ..model.federation import (FWD_CLOSED, FWD_FORWARDED, FWD_QUEUED, FWD_REFUSED,
                                FWD_UNREACHABLE)
from . import render
from .tx import COMMITTED, clock, read, write

MAX_REMOTE_REFERENCE = 200
DEFAULT_RETRY_MAX = 30.0          # seconds: the longest back-off between two attempts
FIRST_RETRY = 0.5
# A peer's contact (and the time of an unchanged summary) is recorded at most this often:
# the long poll answers every 20 s and the summary is read every 30 s, and each record
# rewrites the Peer (its summary included): an idle federation would write ~9 MB a day.
CONTACT_INTERVAL = 300.0


# -- per-database settings --------------------------------------------------------------
@dataclass
class FederationSettings:
    here: str = "master"
    max_depth: int = DEFAULT_MAX_DEPTH
    retry_max: float = DEFAULT_RETRY_MAX


_settings: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_settings_lock = threading.Lock()


def configure(db, here: str | None = None, max_depth: int | None = None,
              retry_max: float | None = None) -> FederationSettings:
    with _settings_lock:
        s = _settings.get(db)
        if s is None:
            s = _settings[db] = FederationSettings()
    if here:
        s.here = here
    if max_depth:
        s.max_depth = max_depth
    if retry_max:
        s.retry_max = float(retry_max)
    return s


def settings_of(db) -> FederationSettings:
    return configure(db)


def _settings_app(app) -> FederationSettings:
    return settings_of(app._p_jar.db())


def backoff(db, failures: int) -> float:
    """Seconds to wait after ``failures`` failed calls in a row (>= 1): doubling from
    FIRST_RETRY, at most the master's --peer-retry-max."""
    return min(FIRST_RETRY * 2 ** (failures - 1), settings_of(db).retry_max)


# -- peers ------------------------------------------------------------------------------
def forward_counts(app) -> dict[str, dict[str, int]]:
    """peer -> {forward state: how many open forwards}, in one pass over the table."""
    out: dict[str, dict[str, int]] = {}
    for iid in app.open_forwards:
        fwd = app.forwards[iid]
        states = out.setdefault(fwd.peer, {})
        states[fwd.state] = states.get(fwd.state, 0) + 1
    return out


def peer_json(app, peer, counts: dict | None = None) -> dict:
    """A peer as the API shows it; ``counts`` (forward_counts) when listing many."""
    if counts is None:
        counts = forward_counts(app)
    counts = counts.get(peer.name, {})
    summary = peer.summary or {}
    return {"name": peer.name, "url": peer.url, "origin": peer.origin, "paired": peer.paired,
            "principal": peer.principal, "trust": peer.trust, "cost": peer.cost,
            "latency_ms": peer.latency_ms, "site": peer.site,
            "last_contact": render.iso(peer.last_contact),
            "last_error": peer.last_error, "last_error_at": render.iso(peer.last_error_at),
            "link": "down" if peer.last_error else ("up" if peer.last_contact else "unknown"),
            "forwards": counts,
            "pending_forwards": sum(n for s, n in counts.items()
                                    if s in (FWD_QUEUED, FWD_UNREACHABLE, FWD_REFUSED)),
            "summary": {"localities": list(summary.get("localities") or ()),
                        "software": list(summary.get("software") or ()),
                        "reach": [r.get("master") for r in summary.get("reach") or ()],
                        "at": render.iso(peer.summary_at)},
            "instance": peer.instance_id,
            "added_at": render.iso(peer.added_at)}


def _forwards_of(app, peer_name: str):
    for iid in app.open_forwards:
        fwd = app.forwards[iid]
        if fwd.peer == peer_name:
            yield fwd


def save_peer(conn, name: str, url: str, ca_certificate: str, *, credentials: str | None,
              principal: str | None = None, origin: str = "cli", trust: str | None = None,
              cost: float | None = None, latency_ms: float | None = None,
              site: str | None = None, summary: dict | None = None,
              pairing_token: str | None = None) -> tuple[bool, dict]:
    """Create or update peer ``name``; returns (created, peer JSON)."""
    def use_case(app):
        now = clock()
        if name == _settings_app(app).here:
            raise InvalidInput(f"{name!r} is this master's own name; a master is not its "
                               "own peer", [{"field": "name", "problem": "is this master"}])
        peer = app.peers.get(name)
        created = peer is None
        if created:
            peer = app.peers[name] = Peer(name, url, ca_certificate, now)
        changes = {"url": url, "ca_certificate": ca_certificate, "origin": origin}
        if credentials is not None:
            changes["credentials"] = credentials
            changes["pairing_token"] = None
        if pairing_token is not None and peer.credentials is None:
            changes["pairing_token"] = pairing_token
        for key, value in (("principal", principal), ("trust", trust), ("cost", cost),
                           ("latency_ms", latency_ms), ("site", site)):
            if value is not None:
                changes[key] = value
        if summary is not None:
            changes["summary"] = summary
            changes["summary_at"] = now
            changes["last_contact"] = now
        peer.update(**changes)
        return created, peer_json(app, peer)

    return write(conn, use_case)


def declare_peers(conn, declared: list[dict]) -> None:
    """Apply what the topology files say of this master's peers (master start): a link
    with an invitation for this master makes the peer (origin ``topology``), paired by
    the forwarder; a link to a known peer sets its trust, latency, cost and site. A peer
    paired already keeps its credentials (an invitation is used once). Nothing is
    written when nothing changed."""
    if not declared:
        return

    def use_case(app):
        now = clock()
        here = _settings_app(app).here
        for d in declared:
            name = d["name"]
            peer = app.peers.get(name)
            if name == here or (peer is None and not d.get("token")):
                continue
            if peer is None:
                peer = app.peers[name] = Peer(name, d["url"], d["ca_certificate"], now)
                peer.origin = "topology"
            changes = {k: d[k] for k in ("trust", "latency_ms", "cost", "site")
                       if d.get(k) is not None}
            if d.get("token") and not peer.paired:
                changes.update(url=d["url"], ca_certificate=d["ca_certificate"],
                               pairing_token=d["token"])
            peer.update(**changes)

    write(conn, use_case)


def update_peer(conn, name: str, changes: dict) -> dict:
    """Change what this master knows of peer ``name``'s link (trust, cost, latency,
    site); its credentials and origin stay. Raises NotFound."""
    def use_case(app):
        peer = _peer(app, name)
        peer.update(**changes)
        return peer_json(app, peer)

    return write(conn, use_case)


def list_peers(conn) -> list[dict]:
    def query(app):
        counts = forward_counts(app)
        return [peer_json(app, p, counts) for p in app.peers.values()]
    return read(conn, query)


def show_peer(conn, name: str) -> dict:
    return read(conn, lambda app: peer_json(app, _peer(app, name)))


def remove_peer(conn, name: str) -> dict:
    """Forget a peer; Conflict while instances are still delegated to it."""
    def use_case(app):
        peer = _peer(app, name)
        busy = sum(1 for _ in _forwards_of(app, name))
        if busy:
            raise Conflict(f"peer {name} still serves {busy} delegated instance(s); destroy "
                           "them first (or wait until their destruction completes)")
        out = peer_json(app, peer)
        del app.peers[name]
        return out

    return write(conn, use_case)


def _peer(app, name: str):
    peer = app.peers.get(name)
    if peer is None:
        raise NotFound(f"no peer master named {name!r}")
    return peer


def peer_credentials(conn) -> dict:
    """name -> (url, credentials directory) of every paired peer (for the forwarder)."""
    return read(conn, lambda app: {p.name: (p.url, p.credentials) for p in app.peers.values()
                                   if p.credentials})


def pending_pairings(conn) -> list[tuple[str, str, str, str]]:
    """(name, url, ca_certificate, token) of peers waiting to be paired (child masters)."""
    return read(conn, lambda app: [(p.name, p.url, p.ca_certificate, p.pairing_token)
                                   for p in app.peers.values()
                                   if p.credentials is None and p.pairing_token])


def adopt_child(app, inst, reg, now: float) -> None:
    """The master ``inst`` runs registered with a one-time token for this master: make it
    a peer (origin ``child``) that the forwarder pairs with. A child of an admin's tree is
    trusted to serve delegations; a person's child master is only observed (its capacity
    is its owner's, not the federation's).

    Raises Conflict when another peer (not this instance's child) holds the name."""
    if reg.name == _settings_app(app).here:
        raise Conflict(f"a child master cannot take its parent's name {reg.name!r}")
    peer = app.peers.get(reg.name)
    if peer is not None and not (peer.origin == "child" and peer.instance_id == inst.id):
        raise Conflict(f"a peer master named {reg.name!r} is already known here "
                       f"(origin {peer.origin}); name the child master otherwise")
    owner = inst.root_requester or inst.requester
    created = peer is None
    if created:
        peer = app.peers[reg.name] = Peer(reg.name, reg.url, reg.ca_certificate, now)
        peer.origin = "child"
        peer.instance_id = inst.id
        peer.trust = "delegate" if owner.startswith("admin/") else "observe"
    if peer.url != reg.url or peer.ca_certificate != reg.ca_certificate:
        # the child moved or was rebuilt: what was paired before no longer holds
        peer.url, peer.ca_certificate = reg.url, reg.ca_certificate
        peer.credentials = None
    if peer.credentials is None and peer.pairing_token != reg.pairing_token:
        peer.pairing_token = reg.pairing_token


def forget_child(app, inst) -> None:
    """The instance running a child master is being destroyed: forget that peer, unless
    instances are still delegated to it (they show why once it stops answering)."""
    for name, peer in list(app.peers.items()):
        if peer.origin == "child" and peer.instance_id == inst.id \
                and not any(True for _ in _forwards_of(app, name)):
            del app.peers[name]


def complete_pairing(conn, name: str, token: str, credentials: str, principal: str,
                     summary: dict) -> bool:
    """The forwarder redeemed peer ``name``'s pending ``token``: record the credentials,
    unless the peer changed meanwhile (forgotten, or given another token)."""
    def use_case(app):
        now = clock()
        peer = app.peers.get(name)
        if peer is None or peer.pairing_token != token:
            return False
        peer.credentials, peer.principal, peer.pairing_token = credentials, principal, None
        peer.summary, peer.summary_at = summary, now
        peer.contact(now)
        return True
    return write(conn, use_case)


def record_pairing_failure(conn, name: str, reason: str) -> None:
    def use_case(app):
        peer = app.peers.get(name)
        if peer is not None:
            peer.failed(reason, clock())
    write(conn, use_case)


# -- the delegation policy ----------------------------------------------------------------
def policy_of(app) -> routing.Policy:
    raw = app.federation_policy
    if not raw:
        return routing.DEFAULT_POLICY
    return routing.parse_policy(raw)


def set_policy(conn, doc) -> dict:
    """Replace the delegation policy (validated first: nothing is written when wrong)."""
    policy = routing.parse_policy(doc)
    stored = policy.to_json()

    def use_case(app):
        if app.federation_policy != stored:
            app.federation_policy = stored
        return stored

    return write(conn, use_case)


def show_policy(conn) -> dict:
    return read(conn, lambda app: policy_of(app).to_json())


# -- routing a request --------------------------------------------------------------------
def peer_views(app) -> list[routing.PeerView]:
    views = []
    for peer in app.peers.values():
        views.append(routing.PeerView.from_summary(
            peer.name, peer.summary, paired=peer.paired, trust=peer.trust or "delegate",
            cost=peer.cost or 0.0, latency_ms=peer.latency_ms, unreachable=peer.last_error))
    return views


def route_request(app, software_url: str, software_type: str, shared: bool, sla_json,
                  chain, local_fit) -> routing.Route:
    s = _settings_app(app)
    if not len(app.peers):
        return routing.Route(routing.LOCAL, (), "served here (no peers)")
    sla = parse_sla(sla_json, "sla")
    req = routing.RouteRequest(software_url, software_type, shared, sla, tuple(chain),
                               s.max_depth)
    return routing.route(req, s.here, policy_of(app), peer_views(app), local_fit)


def remote_reference(here: str, requester: str, reference: str) -> str:
    """The reference this master requests an instance under at a peer: origin master,
    requester and reference, so that asking again never makes a second instance."""
    ref = f"{here}:{requester}:{reference}"
    if len(ref) <= MAX_REMOTE_REFERENCE:
        return ref
    digest = hashlib.sha256(f"{requester}\0{reference}".encode()).hexdigest()[:40]
    return f"{here}:{digest}"


def delegate(app, inst, route: routing.Route, now: float) -> None:
    """Record in the forward table that ``inst`` is served by ``route.peers[0]`` (durable
    before any call to the peer: the forwarder reads it after this commit)."""
    here = _settings_app(app).here
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


def due_pushes(conn, now: float | None = None, limit: int = 256) -> tuple[list[Push], float | None]:
    """Forwards whose peer has not accepted the instance's current revision and whose
    next attempt is due; and when the next one falls due (None: nothing waits)."""
    def query(app):
        t = clock() if now is None else now
        here = _settings_app(app).here
        due, next_at = [], None
        for iid in app.open_forwards:
            fwd = app.forwards[iid]
            inst = app.instances.get(iid)
            if inst is None or (fwd.accepted and fwd.pushed_revision >= inst.revision):
                continue
            if fwd.next_attempt_at > t:
                next_at = fwd.next_attempt_at if next_at is None else min(next_at,
                                                                         fwd.next_attempt_at)
                continue
            if len(due) < limit:
                due.append(Push(iid, fwd.peer, inst.revision, fwd.contacted,
                                _push_body(inst, fwd, here)))
        return due, next_at

    return read(conn, query)


def _push_body(inst, fwd, here: str) -> dict:
    return {"reference": fwd.remote_reference, "software_url": inst.software_url,
            "software_type": inst.software_type, "parameters": dict(inst.parameters),
            "sla": forwarded_sla(inst.sla, here), "state": inst.requested_state,
            "shared": inst.shared, "provenance": list(inst.provenance)}


def mark_contacted(conn, instance_id: str, peer: str) -> None:
    """Before the first call: from now on the peer may hold the instance."""
    def use_case(app):
        fwd = app.forwards.get(instance_id)
        if fwd is not None and fwd.peer == peer and not fwd.contacted:
            fwd.contacted = True
    write(conn, use_case)


def record_accepted(conn, instance_id: str, peer: str, revision: int, remote: dict) -> None:
    """The peer accepted revision ``revision``; apply what it answered."""
    def use_case(app):
        now = clock()
        fwd = app.forwards.get(instance_id)
        inst = app.instances.get(instance_id)
        if fwd is None or inst is None or fwd.peer != peer:
            return
        fwd.set(now, accepted=True, contacted=True, attempts=0, next_attempt_at=0.0,
                pushed_revision=max(fwd.pushed_revision, revision), state=FWD_FORWARDED,
                reason=f"accepted by {peer}", fallbacks=())
        _contact(app, peer, now)
        _apply_remote(app, inst, fwd, remote, now)
    write(conn, use_case)


def record_failure(conn, instance_id: str, peer: str, reason: str, unreachable: bool) -> None:
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
        delay = backoff(app._p_jar.db(), attempts)
        state = FWD_UNREACHABLE if unreachable else FWD_REFUSED
        what = "unreachable" if unreachable else "refused it"
        text = f"peer {peer} {what}: {reason}; attempt {attempts}, next in {delay:.1f} s"
        fwd.set(now, attempts=attempts, next_attempt_at=now + delay, state=state, reason=text)
        status_state = inst.status["state"]
        if fwd.accepted and unreachable and status_state != DESTROYED:
            status_state = UNKNOWN
        if inst.status["state"] != status_state or inst.status["log_tail"] != text:
            inst.set_status(state=status_state, log_tail=text)
    write(conn, use_case)


def peer_unreachable(conn, peer: str, reason: str) -> None:
    """The peer stopped answering: what it serves is unknown until it answers again."""
    def use_case(app):
        now = clock()
        _peer_failed(app, peer, reason, now)
        text = f"peer {peer} unreachable: {reason}; its state will be read again when it answers"
        for fwd in list(_forwards_of(app, peer)):
            inst = app.instances.get(fwd.instance_id)
            if inst is None or not fwd.accepted or inst.status["state"] in (DESTROYED, UNKNOWN):
                continue
            inst.set_status(state=UNKNOWN, log_tail=text)
    write(conn, use_case)


def peer_back(conn, peer: str) -> None:
    """The peer answers again: every forward waiting on it is due now."""
    def use_case(app):
        now = clock()
        _contact(app, peer, now)
        for fwd in _forwards_of(app, peer):
            if fwd.next_attempt_at > now:
                fwd.next_attempt_at = now
    write(conn, use_case)


def apply_changes(conn, peer: str, items: list[dict]) -> int:
    """Apply the instances a peer reported changed (its long-poll answer); returns how
    many local instances changed."""
    def use_case(app):
        now = clock()
        _contact(app, peer, now)
        changed = 0
        for remote in items:
            iid = app.forward_refs.get((peer, remote.get("reference")))
            fwd = None if iid is None else app.forwards.get(iid)
            inst = None if iid is None else app.instances.get(iid)
            if fwd is None or inst is None or fwd.peer != peer:
                continue
            changed += _apply_remote(app, inst, fwd, remote, now)
        return changed
    return write(conn, use_case)


def store_summary(conn, peer: str, summary: dict) -> None:
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
    write(conn, use_case)


def _contact(app, peer: str, now: float) -> None:
    p = app.peers.get(peer)
    if p is not None and (p.last_error is not None or p.last_contact is None
                          or now - p.last_contact >= CONTACT_INTERVAL):
        p.contact(now)


def _peer_failed(app, peer: str, reason: str, now: float) -> None:
    p = app.peers.get(peer)
    if p is not None and p.last_error != reason:
        p.failed(reason, now)


def _apply_remote(app, inst, fwd, remote: dict, now: float) -> int:
    """Mirror the peer's view of the instance here: status, connection, chain."""
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
    if converged:
        new_status["revision"] = inst.revision
    if new_status != inst.status:
        new_status["reported_at"] = now
        inst.status = new_status
        changes += 1
    connection = remote.get("connection") or {}
    if connection != inst.connection:
        inst.connection = dict(connection)
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


def _chain_of(peer: str, remote: dict) -> tuple:
    hop = {"master": peer}
    delegation = remote.get("delegation")
    if delegation:
        return (hop,) + tuple(dict(c) for c in delegation.get("chain") or ())
    place = remote.get("placement")
    if place:
        loc = place.get("locality") or {}
        return (hop, {"computer": place.get("computer"), "partition": place.get("partition"),
                      **{k: v for k, v in loc.items() if v}})
    host = remote.get("host_instance")
    if host:
        return (hop, {"host_instance": host})
    return (hop,)


# -- what a peer asks of this master --------------------------------------------------------
def summary(conn, asker: str | None = None) -> dict:
    """What this master offers its peers: where its computers are, what they are
    supplied, the hosts of shared instances it runs, free partitions, and what its own
    peers offer (``reach``, hops counted from here), never routing back to ``asker``."""
    def query(app):
        s = _settings_app(app)
        localities, software, caps, free = {}, set(), set(), 0
        for comp in app.computers.values():
            loc = {"host": comp.host, "lan": comp.lan, "country": comp.country,
                   "continent": comp.continent}
            localities[tuple(loc.values())] = {k: v for k, v in loc.items() if v}
            for sw in comp.software.values():
                if sw.state != DESTROYED:
                    software.add(sw.url)
            caps.update(comp.capabilities)
            for p in comp.partitions.values():
                caps.update(p.capabilities)
                if p.instance_id is None:
                    free += 1
        hosting = set()
        for h, stype, iid in app.hosts_by_release.keys():
            inst = app.instances.get(iid)
            if inst is not None and inst.placed and inst.requested_state != DESTROYED:
                hosting.add((inst.software_url, stype))
        reach = []
        for peer in app.peers.values():
            if peer.name == asker or not peer.paired or not peer.summary:
                continue
            doc = peer.summary
            reach.append({"master": peer.name, "hops": 1,
                          **{k: doc.get(k) for k in ("localities", "software", "hosting",
                                                     "capabilities", "free_partitions")}})
            for far in doc.get("reach") or ():
                if far.get("master") in (asker, s.here):
                    continue
                reach.append({**far, "hops": int(far.get("hops") or 1) + 1})
        return {"name": s.here, "localities": sorted(localities.values(),
                                                     key=lambda d: sorted(d.items())),
                "software": sorted(software), "hosting": sorted(list(h) for h in hosting),
                "capabilities": sorted(caps), "free_partitions": free,
                "reach": [r for r in reach if r["hops"] < s.max_depth]}

    return read(conn, query)


def changes(conn, requester: str, since: str | None) -> tuple[str, list[dict]]:
    """Instances of ``requester`` committed after cursor ``since`` (a transaction id,
    hex; None = all), and the new cursor. The cursor is the newest serial seen, so a
    commit after this read is never missed."""
    floor = bytes.fromhex(since) if since else b""

    def query(app):
        newest = floor
        out = []
        for iid in app.instance_ids_of(requester):
            inst = app.instances[iid]
            inst._p_activate()
            serial = inst._p_serial
            if serial > floor:
                out.append(render.instance_json(app, inst))
            if serial > newest:
                newest = serial
        return newest.hex(), out

    return read(conn, query)


def wait_changes(conn, requester: str, since: str | None, wait: float,
                 stopping: threading.Event | None = None,
                 poll: float = 0.1) -> tuple[str, list[dict]]:
    """``changes``, waiting up to ``wait`` seconds for one (a long poll). Once
    ``stopping`` is set (the master shuts down) it answers at once with what it has,
    without reading again: the database may be closing."""
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        cursor, items = changes(conn, requester, since)
        left = deadline - time.monotonic()
        if items or left <= 0 or (stopping is not None and stopping.is_set()):
            return cursor, items
        with COMMITTED:
            COMMITTED.wait(min(poll, left))
        if stopping is not None and stopping.is_set():
            return cursor, items


def wake_waiters() -> None:
    """Wake every long poll of this process now (they look at their stop event)."""
    with COMMITTED:
        COMMITTED.notify_all()


def check_cursor(value) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) != 16:
        raise InvalidInput("invalid cursor: must be the 16 hex digits a previous answer "
                           "gave", [{"field": "since", "problem": "not a cursor"}])
    if not all(c in "0123456789abcdefABCDEF" for c in value):  # bytes.fromhex skips spaces
        raise InvalidInput("invalid cursor: must be hex digits",
                           [{"field": "since", "problem": "not hex"}])
    return value

