"""Routes of accounting: a node's usage reports, statements, an instance's usage, the
price list.

Depends on Flask, core.wire and services.accounting; who may read what is ca.policy's
(master.auth gathers the facts: the statement's owner, the instance's tree).
"""
from __future__ import annotations

import logging

from flask import Blueprint, g, jsonify, request

from ..core.errors import SlapfedError
from ..core.wire import PriceListBody, UsageReport
from ..services import accounting
from .access import principal
from .auth import statement_owner
from .request import connection, json_body, runtime

blueprint = Blueprint("accounting", __name__)
log = logging.getLogger("slapfed.master.accounting")


@blueprint.post("/computers/<cid>/usage")
def report_usage(cid):
    """A node's usage report for one interval; the same report id again changes
    nothing (answered accepted false, duplicate true)."""
    report = UsageReport.from_json(json_body())
    answer = accounting.ingest(runtime(), cid, report)
    log.info("computer %s usage report %s: %s (%d partition(s))", cid, report.report_id,
             "accepted" if answer["accepted"] else "duplicate", len(report.partitions),
             extra={"computer": cid, "report_id": report.report_id,
                    "duplicate": answer["duplicate"]})
    return jsonify(answer)


@blueprint.get("/statements")
def statement():
    owner, period, group = accounting.parse_statement_query(
        request.args.to_dict(), g.get("statement_owner") or statement_owner())
    return jsonify(accounting.statement(connection(), owner, period, group))


@blueprint.get("/instances/<iid>/usage")
def instance_usage(iid):
    args = request.args
    unknown = [k for k in args if k not in ("since", "until")]
    if unknown:
        from ..core.errors import InvalidInput
        raise InvalidInput(f"invalid usage query: {unknown[0]} is not a parameter "
                           "(known: since, until)",
                           [{"field": k, "problem": "unknown parameter (known: since, until)"}
                            for k in unknown])
    return jsonify(accounting.instance_usage(connection(), iid, args.get("since"),
                                             args.get("until")))


@blueprint.get("/accounting/prices")
def show_prices():
    return jsonify(accounting.show_prices(connection()))


@blueprint.put("/accounting/prices")
def set_prices():
    body = PriceListBody.from_json(json_body())
    answer = accounting.set_prices(runtime(), body)
    log.info("price list set by %s: %d price(s) in %s", principal(), len(answer["prices"]),
             answer["currency"], extra={"prices": len(answer["prices"])})
    return jsonify(answer)


@blueprint.get("/federation/usage")
def usage_feed():
    """A peer master pulls the usage of the instances it requested here: the entries of
    its feed after ``since`` (the cursor of its previous answer; 0: from the start), at
    most ``limit``. The peer records what it got, and its cursor, itself; its asking
    after ``since`` acknowledges the entries up to it."""
    since, limit = accounting.parse_feed_query(_single(request.args))
    from .auth import current_identity
    identity = current_identity()
    owner = identity.principal if identity is not None else ""
    answer = accounting.usage_feed(connection(), runtime().settings.here, owner, since,
                                   limit)
    if since > 0 and owner:
        # asking after ``since`` says the peer recorded every entry up to it: those are
        # trimmed once old enough (services.accounting.acknowledge_feed)
        try:
            accounting.acknowledge_feed(runtime(), owner, since)
        except SlapfedError as exc:      # best effort (a read-only replica): asked again
            log.info("usage feed of %s: acknowledgement of %d not recorded: %s", owner,
                     since, exc.message, extra={"owner": owner, "error": exc.code})
    return jsonify(answer)


def _single(args) -> dict:
    """The query's parameters, each given once (InvalidInput naming one given twice)."""
    from ..core.errors import InvalidInput
    twice = [k for k in args if len(args.getlist(k)) > 1]
    if twice:
        raise InvalidInput(f"invalid usage feed query: {twice[0]} given more than once",
                           [{"field": k, "problem": "given more than once"} for k in twice])
    return args.to_dict()
