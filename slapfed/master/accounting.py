"""Routes of accounting: a node's usage reports, statements, an instance's usage, the
price list.

Depends on Flask, core.wire and services.accounting; who may read what is ca.policy's
(master.auth gathers the facts: the statement's owner, the instance's tree).
"""
from __future__ import annotations

import logging

from flask import Blueprint, g, jsonify, request

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
