"""The OpenAPI 3.1 description of /api/v1, generated from the routes and the wire types.

Depends on Flask, core.wire (the request bodies), core.answers (the response bodies),
ca.identity (the names of each role) and the blueprints. The paths come from the blueprints' URL rules; each route declares
here, in OPERATIONS (keyed by its endpoint), its operationId, summary, request body type,
answers and the errors it may give; the schemas are the wire types' JSON Schema
(pydantic). Building the document fails when a route has no declaration or a
declaration no route, so the document cannot leave a route out.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from flask import Flask

from .. import __version__
from ..ca import identity as ids
from ..core import answers as A, bodies, wire
from ..core.states import INSTANCE_STATUSES, REQUESTED_STATES

API_PREFIX = "/api/v1"
REF = "#/components/schemas/{model}"
IDENTITY_ROLES = wire.IDENTITY_ROLES
REVOCATION_REASONS = wire.REVOCATION_REASONS

ERROR_TEXT = {
    "400": "invalid_input: malformed JSON or invalid fields (details list every problem); "
           f"a body must be one JSON object, nested at most {bodies.MAX_DEPTH} levels deep, "
           f"holding at most {bodies.MAX_VALUES} values and no lone surrogate; "
           "outbound_refused: a URL this master would call resolves only outside the "
           "networks it may connect to (master serve --outbound-allow), or does not "
           "resolve (details name the field)",
    "401": "unauthenticated (no client certificate) or a refused certificate: "
           "certificate_expired, certificate_revoked, foreign_certificate, "
           "invalid_certificate_signature, no_identity, bad_certificate, invalid_token, "
           "token_expired",
    "403": "forbidden: the policy refuses this identity this action on this resource",
    "404": "not_found",
    "405": "method_not_allowed",
    "409": "conflict, no_capacity (details explain the refusals), recursion_refused "
           "(the chain of masters is too long or loops), read_only (this master is a "
           "replica: details name the primary), fenced (a larger epoch was promoted "
           "elsewhere) or replica_diverged",
    "413": "payload_too_large",
    "414": "uri_too_long: the request line (method, path and query) is longer than "
           "4094 bytes",
    "415": "unsupported_media_type: a request body must be sent as Content-Type: "
           "application/json (optionally with charset=utf-8)",
    "422": "unknown_software_type",
    "431": "header_fields_too_large: more than 100 request header fields, or one "
           "longer than 8190 bytes",
    "500": "internal_error",
    "503": "storage_error, or master_stopping (the master shuts down: ask again)",
}

STR = {"type": "string"}
_ROLE_HEADER = {"type": "string", "enum": list(A.MASTER_ROLES)}
# Rules of other layers than core (which the wire types cannot import), added to the
# generated schemas: each role's names (ca.identity.identity_problems).
_PRINCIPAL_NAME = wire.ecma(ids.PRINCIPAL_NAME_RE)
_ROLE_NAMES = {"person": _PRINCIPAL_NAME, "admin": _PRINCIPAL_NAME,
               "master": _PRINCIPAL_NAME, "replica": _PRINCIPAL_NAME,
               "computer": wire.ecma(ids.ID_RE),
               "partition": wire.ecma(ids.ID_RE)[:-1] + "/" + wire.ecma(ids.ID_RE)[1:]}
RULES = {"CertificateIssue": {
    "allOf": [{"if": {"properties": {"role": {"const": role}}},
               "then": {"properties": {"name": {"pattern": pattern}}}}
              for role, pattern in _ROLE_NAMES.items()],
    "description": "name: a computer id for a computer, <computer>/<partition> for a "
                   "partition, a principal name for the other roles"}}
# what every answer says of replication (a node and a client learn from them)
REPLICATION_HEADERS = {
    "Slapfed-Epoch": {"schema": {"type": "string", "pattern": "^[0-9]+$"},
                      "description": "the epoch of the master answering"},
    "Slapfed-Role": {"schema": _ROLE_HEADER,
                     "description": "what the master answering is"},
    "Slapfed-Masters": {"schema": STR, "description": "the URLs of the masters of this "
                                                      "epoch, separated by spaces"}}
# the path variables of the routes
PATH_VARIABLES = {
    "cid": ("computer id", STR),
    "pid": ("partition id", STR),
    "software_hash": ("software hash (sha256 of the URL, 32 hex digits)", STR),
    "iid": ("instance id", STR),
    "serial": ("certificate serial (hexadecimal, ':' separators allowed)",
               {"type": "string", "pattern": "^(?:0[xX])?[0-9a-fA-F:]*[0-9a-fA-F]$"}),
    "name": ("peer master name", STR),
}
# routes whose variable of a common name means something else there
_REPLICA_NAME = {"name": {"type": "string", "pattern": wire.ecma(ids.PRINCIPAL_NAME_RE),
                          "description": "replica name"}}


@dataclass(frozen=True)
class Op:
    """What a route answers: ``answers`` {status: (model or None, description)};
    ``errors``: the error statuses it gives besides those every route may (414 and 431:
    a request line or headers too long for the server; 500, 503; 401 and 403 unless
    ``public``; 400, 413 and 415 with a ``body``); ``variables``: path variables whose
    schema differs from PATH_VARIABLES' here (a ``description`` in it describes the
    variable)."""

    op_id: str
    summary: str
    answers: dict
    errors: tuple = ()
    body: type | None = None
    public: bool = False
    parameters: tuple = ()
    responses: dict = field(default_factory=dict)    # raw OpenAPI responses, verbatim
    variables: dict = field(default_factory=dict)    # {path variable: schema}


def _enum(values) -> dict:
    return {"type": "string", "enum": list(values)}


OPERATIONS = {
    "meta.health": Op("health", "Liveness and schema generation",
                      {"200": (A.Health, "the master is up")}, public=True),
    "meta.openapi": Op("openapi", "This document", {}, public=True, responses={"200": {
        "description": "OpenAPI 3.1 document",
        "content": {"application/json": {"schema": {"type": "object"}}}}}),
    "computers.register": Op(
        "register_computer",
        "Register a computer (idempotent: known partitions are kept, new ones added). An "
        "admin sets its locality, labels and capabilities; the node itself describes it at "
        "its first registration only, and afterwards may add partitions but change none of "
        "those facts (403 fact_not_owned, naming each field)",
        {"201": (A.Computer, "registered"), "200": (A.Computer, "already known, updated")},
        ("400", "403", "413"), body=wire.ComputerRegistration),
    "computers.list_all": Op("list_computers", "List computers",
                             {"200": (A.ComputerList, "every computer")}),
    "computers.show": Op("show_computer", "Show a computer",
                         {"200": (A.Computer, "the computer")}, ("404",)),
    "computers.set_facts": Op(
        "set_computer_facts", "Change a computer's locality, labels or capabilities "
        "(admins; only the fields given change, a null locality clears it)",
        {"200": (A.Computer, "the computer")}, ("400", "403", "404"),
        body=wire.ComputerUpdate.BODY),
    "computers.supply": Op(
        "supply", "Supply a release to a computer (state destroyed asks the node to remove "
        "it)", {"200": (A.Software, "the release on this computer")}, ("400", "404", "409"),
        body=wire.Supply),
    "computers.unsupply": Op(
        "unsupply", "Ask the node to remove a release (desired state destroyed); 409 while "
        "instances on this computer still use it",
        {"200": (A.Software, "the release, now desired destroyed")}, ("404", "409")),
    "computers.report_software": Op(
        "report_software", "Node report of a release install (status destroyed removes the "
        "release)", {"200": (A.Software, "recorded")}, ("400", "404"),
        body=wire.SoftwareReport),
    "computers.desired_state": Op(
        "desired_state", "What the computer should have; 304 when If-None-Match holds its "
        "serial", {"200": (A.DesiredState, "the desired state")}, ("404",),
        parameters=({"name": "If-None-Match", "in": "header", "required": False,
                     "schema": STR,
                     "description": 'serial the node has, as "<serial>" (or *)'},),
        responses={"304": {"description": "unchanged since the serial given in "
                                          "If-None-Match",
                           "headers": {"ETag": {"schema": STR}}}}),
    "computers.report_partition": Op(
        "report_partition",
        "Node report of a partition's instance; state destroyed (of an instance whose "
        "requested state is destroyed) frees the partition. The state claimed must fit the "
        "state requested (409 report_refused, e.g. destroyed for an instance requested "
        "started); only the node claims destroyed (403 fact_not_owned for the partition's "
        "own identity)", {"200": (A.Instance, "the instance, with the recorded status")},
        ("400", "403", "404", "409"), body=wire.PartitionReport),
    "computers.declare_lost": Op(
        "declare_computer_lost",
        "Declare a computer lost (admins): nothing is placed there any more; each instance "
        "it hosts is placed again elsewhere under its own SLA, keeping its id and "
        "reference, pending with no connection parameters until its new node publishes "
        "them; one that fits nowhere is failed with the reason; its old partition is "
        "recorded as moved (not free until wiped). dry_run: the same answer, nothing "
        "written", {"200": (A.LostAnswer, "the computer and what became of each instance")},
        ("400", "404", "409"), body=wire.LostVerdict),
    "computers.wipe": Op(
        "wipe_computer",
        "Let the node erase the data it set aside of instances that moved away (admins; "
        "one partition, or every one: that also returns a lost computer to service). "
        "The partitions are free once the node reports them erased",
        {"200": (A.Computer, "the computer")}, ("400", "404", "409"), body=wire.WipeRequest),
    "computers.report_moved": Op(
        "report_moved_partition",
        "Node report of a partition whose instance moved away: quarantined (services "
        "stopped, data set aside) or erased (only once an admin allowed it: the "
        "partition is then free)", {"200": (A.Partition, "the partition")},
        ("400", "403", "404", "409"), body=wire.MovedReport),
    "instances.request_instance": Op(
        "request_instance", "Request an instance (idempotent on requester + reference)",
        {"201": (A.Instance, "created"), "200": (A.Instance, "existing; changes applied")},
        ("400", "409", "413", "422"), body=wire.InstanceRequest),
    "instances.list_instances": Op(
        "list_instances", "List instances matching every filter given",
        {"200": (A.InstanceList, "matching instances")}, ("400",), parameters=(
            {"name": "requester", "in": "query", "schema": STR},
            {"name": "reference", "in": "query", "schema": STR},
            {"name": "state", "in": "query", "schema": _enum(REQUESTED_STATES),
             "description": "requested state"},
            {"name": "status", "in": "query", "schema": _enum(INSTANCE_STATUSES),
             "description": "observed state (status.state)"})),
    "instances.explain_placement": Op(
        "explain_placement",
        "Explain a request without making it: the placement decision, candidates and "
        "refusals per plugin, per SLA alternative. Writes nothing; nothing fitting is a 200 "
        "with placed=false",
        {"200": (A.PlacementDecision, "the decision and its explanation")},
        ("400", "409", "413", "422"), body=wire.InstanceRequest),
    "instances.show": Op("show_instance", "Show an instance",
                         {"200": (A.Instance, "the instance")}, ("404",)),
    "instances.destroy": Op("destroy_instance", "Destroy an instance (requested state "
                            "destroyed)", {"200": (A.Instance, "the instance")}, ("404",)),
    "instances.register_child_master": Op(
        "register_child_master",
        "The partition hosting the instance registers the master it runs (recursion): the "
        "parent then knows it as a child master", {"200": (A.Instance, "the instance")},
        ("400", "401", "403", "404", "409"), body=wire.ChildMasterRegistration),
    "instances.change_state": Op(
        "change_state", "Change the requested state (started on a destroyed instance places "
        "it again)", {"200": (A.Instance, "the instance")}, ("400", "404", "409"),
        body=wire.StateChange),
    "topology.show": Op(
        "show_topology", "The topology files this master was started with (--topology) and "
        "its live state: computers with locality and partitions, instances with placement",
        {"200": (A.TopologyView, "the topology and the live state")}),
    "identity.whoami": Op("whoami", "Who the master thinks the caller is (from its client "
                          "certificate)", {"200": (A.WhoAmI, "the caller's identity")},
                          ("401",)),
    "identity.redeem_token": Op(
        "redeem_token", "Public: a node trades a one-time registration token and the CSR of "
        "a key it made for its computer certificate (and the CA certificate)",
        {"201": (A.IssuedCertificate, "issued")}, ("400", "401"), body=wire.TokenRedemption,
        public=True),
    "identity.certify_partition": Op(
        "certify_partition", "A node has the key its partition generated certified as that "
        "partition", {"201": (A.IssuedCertificate, "issued")}, ("400", "401", "403", "404"),
        body=wire.CertificateSigning, variables={
            "cid": {"type": "string", "pattern": wire.ecma(ids.ID_RE)},
            "pid": {"type": "string", "pattern": wire.ecma(ids.ID_RE)}}),
    "identity.list_certificates": Op(
        "list_certificates", "Every certificate this master's CA issued (admins; public "
        "material only)", {"200": (A.CertificateList, "the certificates")}, ("401", "403")),
    "identity.issue_certificate": Op(
        "issue_certificate", "Certify a CSR as an identity (admins)",
        {"201": (A.IssuedCertificate, "issued")}, ("400", "401", "403"),
        body=wire.CertificateIssue),
    "identity.revoke_certificate": Op(
        "revoke_certificate", "Revoke a certificate (admins, or its own holder); refused "
        "from the next request on", {"200": (A.Certificate, "revoked")},
        ("400", "401", "403", "404"), body=wire.Revocation),
    "identity.create_token": Op(
        "create_token", "A one-time registration token for a computer (admins); shown once",
        {"201": (A.Token, "the token")}, ("400", "401", "403"), body=wire.TokenCreation),
    "federation.list_peers": Op("list_peers", "The peer masters, with the state of each "
                                "link (admins)", {"200": (A.PeerList, "peers")},
                                ("401", "403")),
    "federation.add_peer": Op(
        "add_peer", "Pair with a peer master: redeem its one-time token there (admins)",
        {"200": (A.Peer, "updated"), "201": (A.Peer, "paired")},
        ("400", "401", "403", "503"), body=wire.PeerAddition),
    "federation.show_peer": Op("show_peer", "One peer (admins)", {"200": (A.Peer, "the peer")},
                               ("401", "403", "404")),
    "federation.update_peer": Op(
        "update_peer", "Change a peer's link facts: trust, cost, latency_ms, site (admins); "
        "the fields given change, nothing else", {"200": (A.Peer, "updated")},
        ("400", "401", "403", "404"), body=wire.PeerUpdate),
    "federation.remove_peer": Op(
        "remove_peer", "Forget a peer that serves no delegated instance (admins)",
        {"200": (A.Peer, "forgotten")}, ("401", "403", "404", "409")),
    "federation.declare_peer_lost": Op(
        "declare_peer_lost",
        "Declare a peer lost (admins): nothing is delegated there any more; each instance "
        "delegated to it goes to a fallback peer or comes back here, as the delegation "
        "policy routes it (one being destroyed is destroyed at once); what the peer may "
        "still run is recorded as orphans. `DELETE /peers/{name}` then works",
        {"200": (A.PeerLostAnswer, "the peer and what became of each instance")},
        ("400", "401", "403", "404"), body=wire.LostVerdict),
    "federation.show_policy": Op("show_policy", "The delegation policy (admins)",
                                 {"200": (A.DelegationPolicy, "the policy")}, ("401", "403")),
    "federation.set_policy": Op(
        "set_policy", "Replace the delegation policy (admins); validated, nothing written "
        "when invalid", {"200": (A.DelegationPolicy, "the policy")}, ("400", "401", "403"),
        body=wire.DelegationPolicy),
    "federation.summary": Op(
        "federation_summary", "What this master offers its peers (admins and peer masters)",
        {"200": (A.FederationSummary, "the summary")}, ("401", "403")),
    "federation.changes": Op(
        "federation_changes",
        "Long poll: the instances the calling peer master requested here that changed after "
        "cursor `since` (none: all), waiting up to `wait` seconds (at most 60, and never "
        "longer than the master's own limit, master serve --long-poll-max: a longer wait "
        "is shortened to it)",
        {"200": (A.Changes, "changed instances and the next cursor")},
        ("400", "401", "403"), parameters=(
            {"name": "since", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": "^(?:[0-9a-fA-F]{16})?$"}},
            {"name": "wait", "in": "query", "required": False,
             "schema": {"type": "number", "minimum": 0, "maximum": 60},
             "description": "seconds to wait for a change (default 0: answer at once); the "
                            "master may answer sooner, with no change"})),
    "replication.invite": Op(
        "invite_replica", "A one-time token with which replica NAME enrols here (admins); "
        "shown once", {"201": (A.ReplicaToken, "the token")}, ("400", "401", "403", "409"),
        body=wire.ReplicaInvitation),
    "replication.register_replica": Op(
        "register_replica", "A replica records where it serves and its mode (itself; "
        "admins any)", {"200": (A.Replica, "recorded")}, ("400", "401", "403", "409"),
        body=wire.ReplicaRegistration, variables=_REPLICA_NAME),
    "replication.transactions": Op(
        "replication_transactions",
        "Long poll (replicas): the transactions committed after `after`, as stored, "
        "waiting up to `wait` seconds (at most 60); asking confirms `after` is held",
        {"200": (A.Transactions, "a batch (more: others follow)")},
        ("400", "401", "403", "409"), parameters=(
            {"name": "after", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{16}$"},
             "description": "the last transaction the replica holds (default: none)"},
            {"name": "wait", "in": "query", "required": False,
             "schema": {"type": "number", "minimum": 0, "maximum": 60},
             "description": "seconds to wait for a transaction (default 0)"})),
    "replication.ca": Op(
        "replication_ca", "The CA's key, certificate, issued certificates and revocations "
        "(replicas only)", {"200": (A.CAMaterial, "the CA files")}, ("401", "403")),
    "replication.status": Op(
        "replication_status", "Role, epoch, replicas with their lag, the last backup "
        "(admins)", {"200": (A.ReplicationStatus, "the status")}, ("401", "403")),
    "replication.promote": Op(
        "promote", "Make this replica the primary at a new epoch (admins)",
        {"200": (A.Promoted, "promoted")}, ("400", "401", "403", "409"),
        body=wire.Promotion),
}

# -- accounting (master.accounting) ------------------------------------------------------
_YEAR_MONTH = "(?:19[7-9][0-9]|[2-9][0-9]{3})-(?:0[1-9]|1[0-2])"
_DAY = {"type": "string", "pattern": f"^{_YEAR_MONTH}-(?:0[1-9]|[12][0-9]|3[01])$"}
OPERATIONS.update({
    "accounting.report_usage": Op(
        "report_usage",
        "A node's usage report for one interval (that computer's node only): each "
        "partition's instance must be (or recently have been) that partition's; a bad "
        "entry refuses the whole report (400 naming the field), nothing written. The "
        "report id is kept: the same id again answers accepted false, duplicate true and "
        "changes nothing. An open incident repeated across reports is merged on "
        "(instance, kind, name, start)",
        {"200": (A.UsageAck, "recorded, or a duplicate")}, ("400", "403", "404", "413"),
        body=wire.UsageReport),
    "accounting.statement": Op(
        "statement",
        "The usage of an owner (default: the caller; peer=P: what peer P's delegations "
        "used here) over a month or a day, in lines grouped by release, software type, "
        "where it ran (and requester), with incidents, and amounts when a price list is "
        "set. A person reads its own, a peer its own, an admin everyone's",
        {"200": (A.Statement, "the statement")}, ("400", "403"), parameters=(
            {"name": "owner", "in": "query", "required": False,
             "schema": {"type": "string", "minLength": 1, "maxLength": 200},
             "description": "a principal, e.g. person/alice"},
            {"name": "peer", "in": "query", "required": False,
             "schema": {"type": "string", "minLength": 1, "maxLength": 64},
             "description": "a peer master's name (owner master/<peer>)"},
            {"name": "period", "in": "query", "required": True,
             "schema": {"type": "string", "pattern":
                        f"^{_YEAR_MONTH}(?:-(?:0[1-9]|[12][0-9]|3[01]))?$"},
             "description": "a month YYYY-MM or a day YYYY-MM-DD (UTC)"},
            {"name": "group", "in": "query", "required": False, "schema": STR,
             "description": "comma-separated dimensions among release, software_type, "
                            "where, requester (default release,software_type,where)"})),
    "accounting.instance_usage": Op(
        "instance_usage",
        "One instance's usage per day (and where it ran), totals and incidents; a "
        "destroyed instance's history stays readable by its owner",
        {"200": (A.InstanceUsage, "its usage")}, ("400", "404"), parameters=(
            {"name": "since", "in": "query", "required": False, "schema": _DAY,
             "description": "first day (default: 29 days ago)"},
            {"name": "until", "in": "query", "required": False, "schema": _DAY,
             "description": "last day, inclusive (default: today)"})),
    "accounting.show_prices": Op(
        "show_prices", "The price list statements use (none set: no currency, no prices)",
        {"200": (A.PriceListAnswer, "the price list")}),
    "accounting.set_prices": Op(
        "set_prices", "Replace the price list (admins): prices per release (or * for "
        "every other) and resource, in one currency",
        {"200": (A.PriceListAnswer, "the price list")}, ("400",), body=wire.PriceListBody),
    "accounting.usage_feed": Op(
        "usage_feed",
        "A peer master pulls the usage of the instances it requested here (its own feed: "
        "one entry per instance and interval, numbered in the order recorded), after "
        "cursor `since`; it records each entry once, with the cursor, and asks again with "
        "the answer's cursor while `more`. Asking after `since` acknowledges every entry "
        "up to it: those are trimmed 7 days later",
        {"200": (A.UsageFeed, "entries after the cursor")}, ("400", "401", "403"),
        parameters=(
            {"name": "since", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0, "maximum": 2 ** 62},
             "description": "the cursor of the previous answer (default 0: from the start)"},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
             "description": "entries at most (default 500)"})),
})


# -- lists that scale: the paging parameters of the list routes (core.paging) ------------
from dataclasses import replace as _replace  # noqa: E402

from ..core import paging as _paging  # noqa: E402

PAGE_PARAMETERS = (
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": _paging.MAX_LIMIT},
     "description": f"items per page (default {_paging.DEFAULT_LIMIT}, at most "
                    f"{_paging.MAX_LIMIT})"},
    {"name": "cursor", "in": "query", "required": False,
     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$",
                "maxLength": _paging.MAX_CURSOR_LENGTH},
     "description": "the 'next' of the previous page, unchanged (opaque); absent: the "
                    "first page"})
_PAGED = ("; paged: `limit` items per page in a stable order, `next` is the cursor of the "
          "next page or null (400 names a bad limit or cursor)")
for _endpoint, _extra, _summary in (
        ("instances.list_instances", (
            {"name": "all", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
             "description": "1: destroyed instances too (default: left out, unless "
                            "state is given)"},),
         "List instances matching every filter given, by id (by reference when a "
         "requester is given); destroyed ones only with all=1 or state"),
        ("computers.list_all", (), "List computers, by id"),
        ("topology.show", (),
         "The topology files this master was started with (--topology) and its live "
         "state: computers with locality and partitions, instances with placement, "
         "computers then instances; peers and replicas (with this master's role and "
         "epoch) on the first page")):
    _op = OPERATIONS[_endpoint]
    OPERATIONS[_endpoint] = _replace(
        _op, summary=_summary + _PAGED,
        parameters=tuple(_op.parameters) + PAGE_PARAMETERS + _extra,
        errors=tuple(dict.fromkeys(tuple(_op.errors) + ("400",))))


def _ref(model) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _content(model, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes) -> dict:
    return {c: {"$ref": f"#/components/responses/E{c}"} for c in codes}


def _implied_errors(has_body: bool, public: bool) -> tuple:
    codes = ("400", "413", "415") if has_body else ()
    return codes + (() if public else ("401", "403")) + ("414", "431", "500", "503")


def _operation(op: Op, variables: list[str]) -> dict:
    out = {"summary": op.summary, "operationId": op.op_id, "responses": {}}
    for status, (model, description) in op.answers.items():
        out["responses"][status] = _content(model, description)
    out["responses"].update(op.responses)
    for status, response in out["responses"].items():
        if status.startswith(("2", "3")):
            out["responses"][status] = {**response, "headers": {
                **response.get("headers", {}), **REPLICATION_HEADERS}}
    if op.op_id == "desired_state":
        out["responses"]["200"]["headers"]["ETag"] = {
            "schema": STR, "description": 'the serial, as "<serial>"'}
    out["responses"].update(_errors(*op.errors, *_implied_errors(op.body is not None,
                                                                 op.public)))
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": _ref(op.body)}}}
    if op.public:
        out["security"] = []
    params = []
    for v in variables:
        schema = dict(op.variables.get(v, PATH_VARIABLES[v][1]))
        params.append({"name": v, "in": "path", "required": True,
                       "description": schema.pop("description", PATH_VARIABLES[v][0]),
                       "schema": schema})
    params += list(op.parameters)
    if params:
        out["parameters"] = params
    return out


def _openapi_path(rule: str) -> tuple[str, list[str]]:
    """/api/v1/computers/<cid>/software/<path:h> -> (/computers/{cid}/software/{h}, [...])"""
    variables = [m.group(1) for m in _VARIABLE.finditer(rule)]
    text = _VARIABLE.sub(lambda m: "{" + m.group(1) + "}", rule)
    return text[len(API_PREFIX):], variables


_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _routes() -> Flask:
    """An app holding the master's routes only (no runtime): what the document reads."""
    from . import accounting, computers, federation, identity, instances, meta, replication
    from . import topology
    app = Flask("slapfed.master.openapi")
    for module in (meta, identity, computers, instances, topology, federation, replication,
                   accounting):
        app.register_blueprint(module.blueprint, url_prefix=API_PREFIX)
    return app


def generate(app: Flask | None = None) -> dict:
    """The document of ``app``'s /api/v1 routes (default: the master's blueprints),
    generated once per process for a given set of routes. Raises LookupError when a
    route and OPERATIONS disagree."""
    rules = tuple((r.rule, r.endpoint, tuple(sorted(r.methods - {"HEAD", "OPTIONS"})))
                  for r in (app or _routes()).url_map.iter_rules()
                  if r.rule.startswith(API_PREFIX + "/"))
    return _generate(rules)


@functools.lru_cache(maxsize=4)
def _generate(rules: tuple) -> dict:
    paths: dict = {}
    seen = set()
    for rule in rules:
        text, endpoint, methods = rule
        op = OPERATIONS.get(endpoint)
        if op is None:
            raise LookupError(f"the route {text} ({endpoint}) declares no operation in "
                              "master.openapi.OPERATIONS")
        seen.add(endpoint)
        template, variables = _openapi_path(text)
        for method in methods:
            paths.setdefault(template, {})[method.lower()] = _operation(op, variables)
    unused = set(OPERATIONS) - seen
    if unused:
        raise LookupError(f"operations declared for no route: {', '.join(sorted(unused))}")
    models = {op.body for op in OPERATIONS.values() if op.body is not None}
    models |= {m for op in OPERATIONS.values() for m, _ in op.answers.values()}
    models.add(A.Error)
    schemas = wire.json_schemas(sorted(models, key=lambda m: m.__name__), REF)
    for name, rules in RULES.items():
        schemas[name] = {**schemas[name], **rules}
    return {
        "openapi": "3.1.0",
        "info": {"title": "slapfed master API", "version": __version__,
                 "description": "Every error answers {\"error\": {\"code\", \"message\", "
                                "\"details\", \"request_id\"}} with the status of its "
                                "code; every answer carries an X-Request-Id header (the "
                                "caller's, when sane, else a new one)."},
        "servers": [{"url": API_PREFIX}],
        "security": [{"mutualTLS": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"mutualTLS": {
                "type": "mutualTLS",
                "description": "every call presents a client certificate issued by this "
                               "master's CA (a person, admin, computer, partition or peer "
                               "master identity), except the operations marked security: "
                               "[] (health, this document, token redemption). A master "
                               "in development mode (--insecure-http) asks for none and "
                               "treats every caller as its administrator."}},
            "schemas": schemas,
            "responses": {f"E{code}": _content(A.Error, text)
                          for code, text in ERROR_TEXT.items()},
        },
    }


def openapi_document() -> dict:
    """The master's document (what every master serves at /api/v1/openapi.json)."""
    return generate()
