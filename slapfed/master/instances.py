"""Routes of instances: request (the one verb), explain (dry run), list, show, change state, destroy.

Depends on Flask, core (wire, errors, states) and services.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from .. import services
from ..core.errors import InvalidInput
from ..core.states import INSTANCE_STATUSES, REQUESTED_STATES
from ..core.wire import StateChange
from .app import connection, database, json_body
from .auth import instance_filter, instance_request

blueprint = Blueprint("instances", __name__)

LIST_FILTERS = ("requester", "reference", "state", "status")


@blueprint.post("/instances")
def request_instance():
    created, body = services.request_instance(database(), instance_request())
    return jsonify(body), 201 if created else 200


@blueprint.post("/placements")
def explain_placement():
    """The decision POST /instances would make, with its explanation; writes nothing."""
    return jsonify(services.explain_request(database(), instance_request()))


@blueprint.get("/instances")
def list_instances():
    args = request.args
    problems = [{"field": k, "problem": f"unknown filter (known: {', '.join(LIST_FILTERS)})"}
                for k in args if k not in LIST_FILTERS]
    state, status = args.get("state"), args.get("status")
    if state is not None and state not in REQUESTED_STATES:
        problems.append({"field": "state",
                         "problem": f"must be one of {', '.join(REQUESTED_STATES)}"})
    if status is not None and status not in INSTANCE_STATUSES:
        problems.append({"field": "status",
                         "problem": f"must be one of {', '.join(INSTANCE_STATUSES)}"})
    if problems:
        first = problems[0]
        raise InvalidInput(f"invalid filters: {first['field']} {first['problem']}", problems)
    found = services.list_instances(connection(), requester=args.get("requester"),
                                    reference=args.get("reference"), state=state,
                                    status=status, allow=instance_filter())
    return jsonify({"instances": found})


@blueprint.get("/instances/<iid>")
def show(iid):
    return jsonify(services.show_instance(connection(), iid))


@blueprint.put("/instances/<iid>/state")
def change_state(iid):
    change = StateChange.from_json(json_body())
    return jsonify(services.change_state(connection(), iid, change.state))


@blueprint.delete("/instances/<iid>")
def destroy(iid):
    return jsonify(services.destroy_instance(connection(), iid))
