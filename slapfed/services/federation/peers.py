"""Use cases of peers: the peer masters this one knows, their pairing, child masters
becoming peers, and what the API shows of each (one transaction each).

Depends on core, model and services (tx, render); nothing here calls a peer. Write use
cases take the runtime (``rt``); steps inside other use cases take the settings.
"""
from __future__ import annotations

from ...core.errors import Conflict, InvalidInput, NotFound
from ...core.states import (ORIGIN_CHILD, ORIGIN_CLI, ORIGIN_TOPOLOGY, TRUST_DELEGATE,
                            TRUST_OBSERVE)
from ...model import Peer
from ...model.federation import FWD_QUEUED, FWD_REFUSED, FWD_UNREACHABLE
from .. import render
from . import pending
from ..tx import clock, read, write


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
            "lost": None if not peer.lost else {"at": render.iso(peer.lost_at),
                                                "reason": peer.lost_reason},
            "orphans": [dict(o) for o in peer.orphans],
            "added_at": render.iso(peer.added_at),
            **_usage_json(app, peer.name)}


def _usage_json(app, name: str) -> dict:
    """How far its usage feed is recorded here (services.accounting.record_peer_usage)."""
    ledger = app.ledger
    state = ledger.peer_state(name) if ledger is not None else None
    if state is None:
        return {}
    return {"usage": {"cursor": state.cursor, "head": state.head, "recorded": state.recorded,
                      "skipped": state.skipped, "last_problem": state.last_problem,
                      "pulled_at": render.iso(state.pulled_at)}}


def open_forwards_of(app, peer_name: str):
    for iid in app.open_forwards:
        fwd = app.forwards[iid]
        if fwd.peer == peer_name:
            yield fwd


def save_peer(rt, name: str, url: str, ca_certificate: str, *, credentials: str | None,
              principal: str | None = None, origin: str = ORIGIN_CLI, trust: str | None = None,
              cost: float | None = None, latency_ms: float | None = None,
              site: str | None = None, summary: dict | None = None,
              pairing_token: str | None = None) -> tuple[bool, dict]:
    """Create or update peer ``name``; returns (created, peer JSON)."""
    def use_case(app):
        now = clock()
        if name == rt.settings.here:
            raise InvalidInput(f"{name!r} is this master's own name; a master is not its "
                               "own peer", [{"field": "name", "problem": "is this master"}])
        peer = app.peers.get(name)
        created = peer is None
        if created:
            peer = app.peers[name] = Peer(name, url, ca_certificate, now)
        changes = {"url": url, "ca_certificate": ca_certificate, "origin": origin}
        if credentials is not None:
            changes.update(credentials=credentials, pairing_token=None, pairing_digest=None)
        if pairing_token is not None and peer.credentials is None:
            changes.update(pairing_token=None, pairing_digest=pending.stash(
                rt.settings.data_dir, name, pairing_token))
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

    return write(rt, use_case)


def declare_peers(rt, declared: list[dict]) -> None:
    """Apply what the topology files say of this master's peers (master start): a link
    with an invitation for this master makes the peer (origin ``topology``), paired by
    the forwarder; a link to a known peer sets its trust, latency, cost and site. A peer
    paired already keeps its credentials (an invitation is used once). Nothing is
    written when nothing changed."""
    if not declared:
        return

    def use_case(app):
        now = clock()
        here = rt.settings.here
        for d in declared:
            name = d["name"]
            peer = app.peers.get(name)
            if name == here or (peer is None and not d.get("token")):
                continue
            if peer is None:
                peer = app.peers[name] = Peer(name, d["url"], d["ca_certificate"], now)
                peer.origin = ORIGIN_TOPOLOGY
            changes = {k: d[k] for k in ("trust", "latency_ms", "cost", "site")
                       if d.get(k) is not None}
            if d.get("token") and not peer.paired:
                changes.update(url=d["url"], ca_certificate=d["ca_certificate"],
                               pairing_token=None, pairing_digest=pending.stash(
                                   rt.settings.data_dir, name, d["token"]))
            peer.update(**changes)

    write(rt, use_case)


def update_peer(rt, name: str, changes: dict) -> dict:
    """Change what this master knows of peer ``name``'s link (trust, cost, latency,
    site); its credentials and origin stay. Raises NotFound."""
    def use_case(app):
        peer = _peer(app, name)
        peer.update(**changes)
        return peer_json(app, peer)

    return write(rt, use_case)


def list_peers(conn) -> list[dict]:
    def query(app):
        counts = forward_counts(app)
        return [peer_json(app, p, counts) for p in app.peers.values()]
    return read(conn, query)


def show_peer(conn, name: str) -> dict:
    return read(conn, lambda app: peer_json(app, _peer(app, name)))


def remove_peer(rt, name: str) -> dict:
    """Forget a peer; Conflict while instances are still delegated to it."""
    def use_case(app):
        peer = _peer(app, name)
        busy = sum(1 for _ in open_forwards_of(app, name))
        if busy:
            raise Conflict(f"peer {name} still serves {busy} delegated instance(s); destroy "
                           "them first (or wait until their destruction completes)")
        out = peer_json(app, peer)
        del app.peers[name]
        return out

    out = write(rt, use_case)
    pending.drop(rt.settings.data_dir, name)
    return out


def _peer(app, name: str):
    peer = app.peers.get(name)
    if peer is None:
        raise NotFound(f"no peer master named {name!r}")
    return peer


def peer_credentials(conn) -> dict:
    """name -> (url, credentials directory) of every paired peer (for the forwarder)."""
    return read(conn, lambda app: {p.name: (p.url, p.credentials) for p in app.peers.values()
                                   if p.credentials})


def pending_pairings(rt) -> list[tuple[str, str, str, str]]:
    """(name, url, ca_certificate, token) of peers waiting to be paired (child masters,
    invitations): the tokens are read from their files in the data directory."""
    data_dir = rt.settings.data_dir
    waiting = read(rt, lambda app: [(p.name, p.url, p.ca_certificate, p.pairing_token,
                                     p.pairing_digest) for p in app.peers.values()
                                    if p.credentials is None
                                    and (p.pairing_digest or p.pairing_token)])
    out = []
    for name, url, ca_pem, legacy, wanted in waiting:
        token = legacy or pending.take(data_dir, name, wanted)
        if token:
            out.append((name, url, ca_pem, token))
    return out


def adopt_child(settings, app, inst, reg, now: float) -> None:
    """The master ``inst`` runs registered with a one-time token for this master: make it
    a peer (origin ``child``) that the forwarder pairs with. A child of an admin's tree is
    trusted to serve delegations; a person's child master is only observed (its capacity
    is its owner's, not the federation's).

    Raises Conflict when another peer (not this instance's child) holds the name."""
    if reg.name == settings.here:
        raise Conflict(f"a child master cannot take its parent's name {reg.name!r}")
    peer = app.peers.get(reg.name)
    if peer is not None and not (peer.origin == ORIGIN_CHILD and peer.instance_id == inst.id):
        raise Conflict(f"a peer master named {reg.name!r} is already known here "
                       f"(origin {peer.origin}); name the child master otherwise")
    owner = inst.root_requester or inst.requester
    created = peer is None
    if created:
        peer = app.peers[reg.name] = Peer(reg.name, reg.url, reg.ca_certificate, now)
        peer.origin = ORIGIN_CHILD
        peer.instance_id = inst.id
        peer.trust = TRUST_DELEGATE if owner.startswith("admin/") else TRUST_OBSERVE
    if peer.url != reg.url or peer.ca_certificate != reg.ca_certificate:
        # the child moved or was rebuilt: what was paired before no longer holds
        peer.url, peer.ca_certificate = reg.url, reg.ca_certificate
        peer.credentials = None
    if peer.credentials is None and peer.pairing_digest != pending.digest(reg.pairing_token):
        peer.pairing_digest = pending.stash(settings.data_dir, reg.name, reg.pairing_token)
        peer.pairing_token = None


def forget_child(app, inst) -> None:
    """The instance running a child master is being destroyed: forget that peer, unless
    instances are still delegated to it (they show why once it stops answering)."""
    for name, peer in list(app.peers.items()):
        if peer.origin == ORIGIN_CHILD and peer.instance_id == inst.id \
                and not any(True for _ in open_forwards_of(app, name)):
            del app.peers[name]


def complete_pairing(rt, name: str, token: str, credentials: str, principal: str,
                     summary: dict) -> bool:
    """The forwarder redeemed peer ``name``'s pending ``token``: record the credentials,
    unless the peer changed meanwhile (forgotten, or given another token)."""
    def use_case(app):
        now = clock()
        peer = app.peers.get(name)
        if peer is None or not (token == peer.pairing_token or
                                pending.digest(token) == peer.pairing_digest):
            return False
        peer.credentials, peer.principal = credentials, principal
        peer.pairing_token = peer.pairing_digest = None
        peer.summary, peer.summary_at = summary, now
        peer.contact(now)
        return True
    done = write(rt, use_case)
    if done:
        pending.drop(rt.settings.data_dir, name)
    return done


def record_pairing_failure(rt, name: str, reason: str) -> None:
    def use_case(app):
        peer = app.peers.get(name)
        if peer is not None:
            peer.failed(reason, clock())
    write(rt, use_case)

