"""The delegation policy and routing a request: serve it here or delegate it to a peer.

Depends on core.sla, federation.routing (the pure decision) and services.tx.
"""
from __future__ import annotations

from ...core.sla import parse_sla
from ...core.states import DEFAULT_TRUST
from ...federation import routing
from ..tx import read, write


# -- the delegation policy ----------------------------------------------------------------
def policy_of(app) -> routing.Policy:
    raw = app.federation_policy
    if not raw:
        return routing.DEFAULT_POLICY
    return routing.parse_policy(raw)


def set_policy(rt, doc) -> dict:
    """Replace the delegation policy (validated first: nothing is written when wrong)."""
    policy = routing.parse_policy(doc)
    stored = policy.to_json()

    def use_case(app):
        if app.federation_policy != stored:
            app.federation_policy = stored
        return stored

    return write(rt, use_case)


def show_policy(conn) -> dict:
    return read(conn, lambda app: policy_of(app).to_json())


# -- routing a request --------------------------------------------------------------------
def peer_views(app) -> list[routing.PeerView]:
    views = []
    for peer in app.peers.values():
        if peer.lost:
            continue                  # declared lost: nothing is delegated there
        views.append(routing.PeerView.from_summary(
            peer.name, peer.summary, paired=peer.paired, trust=peer.trust or DEFAULT_TRUST,
            cost=peer.cost or 0.0, latency_ms=peer.latency_ms, unreachable=peer.last_error))
    return views


def route_request(settings, app, software_url: str, software_type: str, shared: bool,
                  sla_json, chain, local_fit) -> routing.Route:
    """Where a request is served (``settings``: this master's name and depth limit)."""
    s = settings
    if not len(app.peers):
        return routing.Route(routing.LOCAL, (), "served here (no peers)")
    sla = parse_sla(sla_json, "sla")
    req = routing.RouteRequest(software_url, software_type, shared, sla, tuple(chain),
                               s.max_depth)
    return routing.route(req, s.here, policy_of(app), peer_views(app), local_fit)

