"""Routes of computers: registration, supply, desired state and node reports.

Depends on Flask, core.wire and services; bodies are parsed with core.wire.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from .. import logs
from ..ca.identity import COMPUTER, PARTITION
from ..core import claims, paging
from ..core.wire import (ComputerRegistration, ComputerUpdate, LostVerdict, MovedReport,
                         PartitionReport, SoftwareReport, Supply, WipeRequest)
from .. import services
from ..services.computers import NodeClaim
from .access import principal
from .pages import page_args
from .request import connection, document_response, json_body, runtime
from .auth import current_identity, insecure, visible_computers
from .topology import complete_facts, complete_registration, declared_facts

blueprint = Blueprint("computers", __name__)
log = logging.getLogger("slapfed.master.computers")


@blueprint.post("/computers")
def register():
    """An admin registers (and describes) any computer; a node registers itself, and
    after its first registration may only add partitions (core.claims)."""
    created, body = register_proposed(ComputerRegistration.from_json(json_body()))
    return jsonify(body), 201 if created else 200


def register_proposed(proposed: ComputerRegistration) -> tuple[bool, dict]:
    """Register ``proposed`` as the caller may: completed from the topology files, and
    as a node's own claim when the caller is a node (also for SLAP's
    loadComputerConfigurationFromXML). Returns (created, computer JSON)."""
    reg = complete_registration(proposed)
    identity = current_identity()
    node = (NodeClaim(proposed, declared_facts(proposed.id))
            if identity is not None and identity.role == COMPUTER else None)
    created, body = services.register_computer(runtime(), reg, node)
    log.info("computer %s %s by %s: %d partition(s)", reg.id,
             "registered" if created else "registered again", principal(),
             len(body.get("partitions") or ()),
             extra={"computer": reg.id, "new": created,
                    "partitions": len(body.get("partitions") or ())})
    return created, body


@blueprint.patch("/computers/<cid>")
def set_facts(cid):
    """Admins: change a computer's locality, labels or capabilities (the facts its node
    may not change itself)."""
    body = ComputerUpdate.from_json(json_body())
    return jsonify(services.set_computer_facts(runtime(), cid, body.changes,
                                               complete=complete_facts))


@blueprint.get("/computers")
def list_all():
    """One page of the computers the caller may read, by id, with ``next``: the cursor
    of the next page, or null (core.paging)."""
    limit, after = page_args(request.args, "computers")
    found, last = services.page_computers(connection(), runtime().leases, after, limit,
                                          keep=lambda body: bool(visible_computers([body])))
    return jsonify({"computers": found,
                    "next": None if last is None else paging.make_cursor("computers", last)})


@blueprint.get("/computers/<cid>")
def show(cid):
    return jsonify(services.show_computer(connection(), cid, runtime().leases))


@blueprint.post("/computers/<cid>/software")
def supply(cid):
    body = Supply.from_json(json_body())
    answer = services.supply(runtime(), cid, body)
    url = logs.redact_url(body.url)
    log.info("release %s %s on computer %s by %s", url, body.state, cid, principal(),
             extra={"computer": cid, "software_url": url, "state": body.state})
    return jsonify(answer)


@blueprint.delete("/computers/<cid>/software/<software_hash>")
def unsupply(cid, software_hash):
    answer = services.unsupply(runtime(), cid, software_hash)
    log.info("release %s withdrawn from computer %s by %s", software_hash, cid, principal(),
             extra={"computer": cid, "software_hash": software_hash})
    return jsonify(answer)


@blueprint.put("/computers/<cid>/software/<software_hash>/status")
def report_software(cid, software_hash):
    report = SoftwareReport.from_json(json_body())
    return jsonify(services.report_software(runtime(), cid, software_hash, report))


@blueprint.put("/computers/<cid>/partitions/<pid>/status")
def report_partition(cid, pid):
    report = PartitionReport.from_json(json_body())
    identity = current_identity()
    reporter = (claims.PARTITION if identity is not None and identity.role == PARTITION
                else claims.NODE)
    return jsonify(services.report_partition(runtime(), cid, pid, report, reporter))


@blueprint.post("/computers/<cid>/lost")
def declare_lost(cid):
    """Admins: the verdict that a computer is lost; what it hosts is placed again
    elsewhere (services.lost)."""
    body = LostVerdict.from_json(json_body())
    reason = body.reason or f"declared lost by {principal()}"
    answer = services.declare_lost(runtime(), cid, reason, dry_run=body.dry_run)
    if not body.dry_run:
        moves = answer["moves"]
        log.warning("computer %s declared lost by %s: %d instance(s) moved, %d not placed",
                    cid, principal(), sum(1 for m in moves if m["outcome"] == "moved"),
                    sum(1 for m in moves if m["outcome"] == "not_placed"),
                    extra={"computer": cid, "instances": len(moves)})
    return jsonify(answer)


@blueprint.post("/computers/<cid>/wipe")
def wipe(cid):
    """Admins: let the node erase the data kept of instances that moved away."""
    body = WipeRequest.from_json(json_body())
    answer = services.wipe_computer(runtime(), cid, body.partition)
    log.warning("computer %s: wipe of %s allowed by %s", cid,
                f"partition {body.partition}" if body.partition else "every moved partition",
                principal(), extra={"computer": cid, "partition": body.partition})
    return jsonify(answer)


@blueprint.put("/computers/<cid>/partitions/<pid>/moved")
def report_moved(cid, pid):
    """The node: a partition whose instance moved away is quarantined, or erased."""
    report = MovedReport.from_json(json_body())
    answer = services.report_moved(runtime(), cid, pid, report.instance_id, report.state)
    log.info("computer %s partition %s: data of moved instance %s %s", cid, pid,
             report.instance_id, report.state,
             extra={"computer": cid, "partition": pid, "instance": report.instance_id,
                    "state": report.state})
    return jsonify(answer)


@blueprint.get("/computers/<cid>/desired-state")
def desired_state(cid):
    known = parse_if_none_match(request.headers.get("If-None-Match", ""))
    rt = runtime()
    identity = current_identity()
    # the node's own read renews its lease; an administrator's look does not
    renew = insecure() or identity is None or identity.role == COMPUTER
    serial, body = services.desired_state(rt, cid, known, rt.renderer, conn=connection(),
                                          renew=renew)
    etag = f'"{serial}"'
    if body is None:
        return Response(status=304, headers={"ETag": etag, "Vary": "Accept-Encoding"})
    return document_response(rt.renderer, cid, serial, body, "application/json", etag)


class _AnySerial:
    """``If-None-Match: *``: the node has whatever the current serial is."""

    def __contains__(self, _serial) -> bool:
        return True


ANY_SERIAL = _AnySerial()


def parse_if_none_match(header: str):
    """The serials a node already has: ``"5"``, ``W/"5"``, lists; ``*`` matches any."""
    header = header.strip()
    if header == "*":
        return ANY_SERIAL
    serials = set()
    for item in header.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        item = item.strip('"')
        if item.isdigit():
            serials.add(int(item))
    return serials
