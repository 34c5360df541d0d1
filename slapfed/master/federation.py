"""Routes of federation: peers (pairing), the delegation policy, and what peers ask of
this master — its summary, and the long poll of the instances they delegated here.

Depends on Flask, core (wire, errors), services (federation use cases) and
peering.peers (pairing talks to the peer). Forwarding itself runs in the forwarder
(slapfed.peering.forwarder), started by the app.
"""
from __future__ import annotations

import logging
import re

from flask import Blueprint, jsonify, request

from ..core.errors import InvalidInput
from ..core.states import ORIGIN_CLI
from ..core.wire import LostVerdict, PeerAddition, PeerUpdate
from ..peering.peers import check_peer_url, pair
from ..services import federation as fed
from ..services.lost import declare_peer_lost as declare_lost_peer
from .. import logs
from .access import principal as caller
from .request import connection, json_body, runtime, settings
from .auth import current_identity

blueprint = Blueprint("federation", __name__)
MAX_WAIT = 60.0         # what a client may ask (the document's maximum)
# decimal seconds, as a JSON number is written (an exponent too: 1e-05); no sign but
# that of -0.0, no hex, no inf/nan (the range check refuses what overflows)
WAIT_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")
log = logging.getLogger("slapfed.master.federation")


def kick_forwarder() -> None:
    """Tell this process's forwarder (if it runs here) to look at the table now."""
    runtime().kick_forwarder()


@blueprint.get("/peers")
def list_peers():
    return jsonify({"peers": fed.list_peers(connection())})


@blueprint.get("/peers/<name>")
def show_peer(name):
    return jsonify(fed.show_peer(connection(), name))


@blueprint.post("/peers")
def add_peer():
    """Pair with a peer: redeem its token there (this master makes the key), check the
    identity it got, read the peer's summary, then record the peer. Without a token,
    only an already paired peer's link facts (trust, cost, ...) are updated."""
    body = PeerAddition.from_json(json_body())
    check_peer_url(settings().outbound, body.url)
    credentials = principal = summary = None
    if body.token:
        p = pair(settings().data_dir, body.name, body.url,
                 body.ca_certificate, body.token, outbound=settings().outbound)
        credentials, principal, summary = p.credentials, p.principal, p.summary
    else:
        known = {p["name"]: p for p in fed.list_peers(connection())}
        if not (known.get(body.name) or {}).get("paired"):
            raise InvalidInput(f"peer {body.name} is not paired yet: give the one-time "
                               "token it issued for this master (slapfed peer invite on it)",
                               [{"field": "token", "problem": "is required to pair"}])
    created, out = fed.save_peer(runtime(), body.name, body.url, body.ca_certificate,
                                 credentials=credentials, principal=principal, origin=ORIGIN_CLI,
                                 trust=body.trust, cost=body.cost, latency_ms=body.latency_ms,
                                 site=body.site, summary=summary)
    kick_forwarder()
    log.info("peer %s at %s %s by %s (trust %s)", body.name, logs.redact_url(body.url),
             f"paired as {principal}" if body.token else "link facts updated", caller(),
             out.get("trust"), extra={"peer": body.name, "url": logs.redact_url(body.url),
                                      "paired": bool(body.token)})
    return jsonify(out), 201 if created else 200


@blueprint.patch("/peers/<name>")
def update_peer(name):
    """Change a peer's link facts (trust, cost, latency_ms, site); e.g. trust a child
    master a person owns, or stop delegating to a peer (observe)."""
    body = PeerUpdate.from_json(json_body())
    out = fed.update_peer(runtime(), name, body.changes())
    log.info("peer %s: %s changed by %s", name, ", ".join(sorted(body.changes())), caller(),
             extra={"peer": name})
    return jsonify(out)


@blueprint.delete("/peers/<name>")
def remove_peer(name):
    out = fed.remove_peer(runtime(), name)
    log.info("peer %s removed by %s", name, caller(), extra={"peer": name})
    return jsonify(out)


@blueprint.post("/peers/<name>/lost")
def declare_peer_lost(name):
    """Admins: the verdict that a peer is lost; what it served for us goes to a fallback
    peer or comes back here (services.lost)."""
    body = LostVerdict.from_json(json_body())
    reason = body.reason or f"declared lost by {caller()}"
    out = declare_lost_peer(runtime(), name, reason, dry_run=body.dry_run)
    if not body.dry_run:
        log.warning("peer %s declared lost by %s: %d delegated instance(s) moved, %d "
                    "orphan(s) recorded", name, caller(), len(out["moves"]),
                    len(out["peer"]["orphans"]), extra={"peer": name})
        kick_forwarder()
    return jsonify(out)


@blueprint.get("/federation/policy")
def show_policy():
    return jsonify(fed.show_policy(connection()))


@blueprint.put("/federation/policy")
def set_policy():
    return jsonify(fed.set_policy(runtime(), json_body()))


@blueprint.get("/federation/summary")
def summary():
    identity = current_identity()
    asker = identity.name if identity is not None and identity.role == "master" else None
    return jsonify(fed.summary(connection(), settings(), asker))


@blueprint.get("/federation/changes")
def changes():
    """Long poll: the instances the calling master requested here that changed after
    ``since`` (a cursor from a previous answer; none = all), waiting up to ``wait``
    seconds (at most 60) for one, and never longer than this master's long poll limit
    (``master serve --long-poll-max``): a longer wait is shortened to it."""
    args = request.args
    problems = [{"field": k, "problem": "unknown parameter (known: since, wait)"}
                for k in args if k not in ("since", "wait")]
    problems += [{"field": k, "problem": "given more than once"}
                 for k in ("since", "wait") if len(args.getlist(k)) > 1]
    try:
        raw = args.get("wait", "0")
        if not WAIT_RE.match(raw):
            raise ValueError
        wait = float(raw)
        if not 0 <= wait <= MAX_WAIT:
            raise ValueError
    except ValueError:
        problems.append({"field": "wait", "problem": f"must be a number of seconds in "
                                                     f"0..{MAX_WAIT:g}"})
    if problems:
        raise InvalidInput(f"invalid parameters: {problems[0]['field']} "
                           f"{problems[0]['problem']}", problems)
    since = fed.check_cursor(args.get("since"))
    requester = current_identity().principal
    rt = runtime()
    wait = min(wait, rt.settings.long_poll_max)
    rt.metrics.long_polls.inc()
    try:
        cursor, items = fed.wait_changes(rt, requester, since, wait, rt.stopping,
                                         conn=connection())
    finally:
        rt.metrics.long_polls.dec()
    return jsonify({"cursor": cursor, "instances": items})
