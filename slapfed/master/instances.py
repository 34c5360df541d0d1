"""Routes of instances: request (the one verb), explain (dry run), list, show, change state, destroy.

Depends on Flask, core (wire, errors, states) and services.
"""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from .. import services
from ..core import paging, provenance
from ..core.states import INSTANCE_STATUSES, REQUESTED_STATES
from ..core.wire import ChildMasterRegistration, StateChange, evolve
from ..peering.peers import check_peer_url
from .access import principal
from .request import connection, json_body, runtime, settings
from .auth import instance_filter, instance_request
from .federation import kick_forwarder
from .pages import page_args

blueprint = Blueprint("instances", __name__)
log = logging.getLogger("slapfed.master.instances")

LIST_FILTERS = ("requester", "reference", "state", "status")
# paging and the destroyed ones (core.paging): page size, cursor, all=1 shows destroyed
LIST_PAGING = ("limit", "cursor", "all")
ALL_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def bounded(req):
    """The request with this master appended to its provenance. The chain is the one the
    request carries, else this master's own ancestry (``ANCESTRY``: the masters above it,
    root first). Raises RecursionRefused (too deep: ``MAX_DEPTH``; or a loop)."""
    s = settings()
    chain = req.provenance or s.ancestry
    return evolve(req, provenance=provenance.extend(chain, s.here, s.max_depth))


def caller_recipient(req) -> dict | None:
    """The caller's own certificate as the recipient of the secrets of the instances it
    requests ({"certificate", "fingerprint"}): only when a person or an administrator
    requests for itself, or a partition for the instance it hosts, over mutual TLS, with a P-256 key (what values are
    sealed to); else None. A peer master forwarding a delegation is not the requester:
    sealing to its key would let that master read them, so nothing is sealed to it (the
    requester's certificate travels with the forward: forwarded_recipient)."""
    from ..ca.identity import ADMIN, PARTITION, PERSON
    from ..ca.seal import recipient_from_der
    from .auth import PEER_CERT_ENVIRON, current_identity, insecure

    identity = current_identity()
    der = None if insecure() else request.environ.get(PEER_CERT_ENVIRON)
    if not der or identity is None or identity.role not in (PERSON, ADMIN, PARTITION):
        return None
    # a partition requests as the instance it hosts (the guard resolved that); the
    # others as themselves (an admin asking for someone else is not that someone)
    if identity.role != PARTITION and identity.principal != req.requester:
        return None
    return recipient_from_der(der)


# -- sealing through delegation -----------------------------------------------------------
def forwarded_recipient(req) -> dict | None:
    """The recipient a forwarded request names ({"certificate", "fingerprint",
    "instance"}), checked; None when it names none.

    Sealing to a key gives its holder the secret, so only a peer master, forwarding a
    delegation over mutual TLS, may name one: it applies to that one instance, which
    the peer itself requests here (its requester is the peer), so the worst a peer can
    do with it is expose the secrets of the delegations it relays (which it serves, or
    could withhold, anyway); it never reaches anyone else's instances. Anyone else
    naming a recipient is refused: a person's or a partition's is its own certificate.
    The certificate must hold a P-256 key and match the fingerprint given."""
    from ..ca.identity import MASTER
    from ..ca.seal import recipient_from_pem
    from ..core.errors import InvalidInput
    from .auth import current_identity, insecure

    if req.recipient is None:
        return None
    identity = current_identity()
    if insecure() or identity is None or identity.role != MASTER:
        raise InvalidInput(
            "invalid request: only a peer master forwarding a delegation names a "
            "recipient (yours is the certificate you call with)",
            [{"field": "recipient", "problem": "only a peer master may name one"}])
    rec = recipient_from_pem(req.recipient.certificate)
    if rec is None:
        raise InvalidInput("invalid request: the recipient is not a certificate holding a "
                           "P-256 key", [{"field": "recipient.certificate",
                                          "problem": "not a P-256 certificate"}])
    if rec["fingerprint"] != req.recipient.fingerprint:
        raise InvalidInput("invalid request: the recipient's fingerprint is not its "
                           "certificate's", [{"field": "recipient.fingerprint",
                                              "problem": "does not match the certificate"}])
    return {**rec, "instance": req.recipient.instance}


@blueprint.post("/instances")
def request_instance():
    req = bounded(instance_request())
    forwarded = forwarded_recipient(req)
    created, body = services.request_instance(runtime(), req, caller_recipient(req),
                                              forwarded=forwarded)
    if body.get("delegation") is not None:
        kick_forwarder()
    log_outcome("requested" if created else "requested again", body)
    return jsonify(body), 201 if created else 200


@blueprint.post("/placements")
def explain_placement():
    """The decision POST /instances would make, with its explanation; writes nothing."""
    return jsonify(services.explain_request(runtime(), bounded(instance_request())))


@blueprint.get("/instances")
def list_instances():
    """One page of the instances matching every filter, in a stable order (by id; by
    reference within one requester), with ``next``: the cursor of the next page, or
    null. Destroyed instances are left out unless ``all=1`` or ``state`` is given."""
    args = request.args
    problems = []
    state, status = args.get("state"), args.get("status")
    if state is not None and state not in REQUESTED_STATES:
        problems.append({"field": "state",
                         "problem": f"must be one of {', '.join(REQUESTED_STATES)}"})
    if status is not None and status not in INSTANCE_STATUSES:
        problems.append({"field": "status",
                         "problem": f"must be one of {', '.join(INSTANCE_STATUSES)}"})
    every = ALL_VALUES.get(args.get("all", "0").lower())
    if every is None:
        problems.append({"field": "all", "problem": "must be 1 or 0 (true or false)"})
    requester = args.get("requester")
    limit, after = page_args(args, services.page_order(requester),
                             known=LIST_FILTERS + LIST_PAGING, extra=problems, noun="filter")
    found, last = services.page_instances(
        connection(), requester=requester, reference=args.get("reference"), state=state,
        status=status, allow=instance_filter(), leases=runtime().leases, after=after,
        limit=limit, hide_destroyed=not every)
    return jsonify({"instances": found, "next": None if last is None else
                    paging.make_cursor(services.page_order(requester), last)})


@blueprint.get("/instances/<iid>")
def show(iid):
    return jsonify(services.show_instance(connection(), iid, runtime().leases))


@blueprint.put("/instances/<iid>/state")
def change_state(iid):
    change = StateChange.from_json(json_body())
    body = services.change_state(runtime(), iid, change.state)
    if body.get("delegation") is not None:
        kick_forwarder()
    log_outcome(f"set to {change.state}", body)
    return jsonify(body)


@blueprint.put("/instances/<iid>/child-master")
def register_child_master(iid):
    """The partition of instance <iid> registers the master it runs (recursion). Its URL
    is one this master will call (to pair with it, then as a peer): refused when it lies
    outside the outbound policy."""
    reg = ChildMasterRegistration.from_json(json_body())
    check_peer_url(settings().outbound, reg.url)
    body = services.register_child_master(runtime(), iid, reg)
    log.info("instance %s registered its child master (by %s)", iid, principal(),
             extra={"instance": iid})
    return jsonify(body)


@blueprint.delete("/instances/<iid>")
def destroy(iid):
    body = services.destroy_instance(runtime(), iid)
    if body.get("delegation") is not None:
        kick_forwarder()
    log_outcome("destruction requested", body)
    return jsonify(body)


def where(body: dict) -> str:
    """Where an instance (its JSON) stands: placed, delegated, hosted or waiting."""
    delegation = body.get("delegation")
    if delegation:
        return f"delegated to {delegation.get('peer')} ({delegation.get('state')})"
    placement = body.get("placement")
    if placement:
        return f"placed on {placement.get('computer')}/{placement.get('partition')}"
    if body.get("host_instance"):
        return f"hosted by instance {body['host_instance']}"
    return f"not placed ({(body.get('status') or {}).get('state')})"


def log_outcome(what: str, body: dict) -> None:
    """One line per instance change: which instance, of whom, by whom, and where it is
    now (never its parameters: they may hold the requester's secrets)."""
    log.info("instance %s (%r of %s) %s by %s: %s", body.get("id"), body.get("reference"),
             body.get("requester"), what, principal(), where(body),
             extra={"instance": body.get("id"), "reference": body.get("reference"),
                    "requester": body.get("requester"), "action": what,
                    "outcome": where(body)})
