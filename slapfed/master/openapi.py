"""The OpenAPI 3.1 description of /api/v1, kept next to the routes it describes.

Depends on core (states, wire limits) and ca.identity (the names of each role). A test checks that every route of the
app appears here with the same methods, and that every documented route exists.
"""
from __future__ import annotations

import functools

from .. import __version__
from ..ca import identity as ids
from ..core import bodies
from ..core.sharing import EVERYONE, MAX_OPEN_TO, PRINCIPAL_RE
from ..core import wire
from ..core.provenance import NAME_RE as MASTER_NAME_RE
from ..core.sla import (
    ABSOLUTE_KEYS, CAPABILITY_KEY, HOST_KEY, LABEL_PREFIX, MASTER_KEY, MAX_ALTERNATIVES,
    MAX_REFERENCE, MAX_REFERENCES_PER_KEY, MAX_VALUE, NAME_RE as SLA_NAME_RE, RELATIVE_KEYS,
)
from ..model.federation import FORWARD_STATES
from ..core.leases import LEASE_STATES
from ..core.states import (
    LOCALITY_LEVELS, MOVED_REPORT_STATES, PEER_ORIGINS, TRUST_LEVELS,
    INSTANCE_STATUSES, PARTITION_REPORT_STATES, REQUESTED_STATES, SOFTWARE_REPORT_STATES,
    SOFTWARE_STATUSES, SUPPLY_STATES,
)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict, required=(), additional=False) -> dict:
    out = {"type": "object", "properties": properties, "additionalProperties": additional}
    if required:
        out["required"] = list(required)
    return out


STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
INT = {"type": "integer"}
ISO = {"type": ["string", "null"], "format": "date-time"}
ANY_OBJ = {"type": "object", "additionalProperties": True}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _enum(values) -> dict:
    return {"type": "string", "enum": list(values)}


LEASE = _obj({"state": {**_enum(LEASE_STATES), "description":
                         "live: its node called within the lease; expired: it did not, and "
                         "the computer and its instances show unknown (nothing is "
                         "destroyed, moved or freed; no new instance goes there); none: "
                         "its node never called"},
              "expires_at": {**ISO, "description": "when the lease runs (or ran) out"},
              "interval": {"type": "number", "description": "the lease, in seconds"}},
             ["state", "expires_at", "interval"])


# -- request constraints: what core.wire and core.sla refuse, as JSON Schema --------------
# A field left out and a field given as null are the same to the server (the default),
# hence the nullable optional fields; strings are never empty unless said otherwise.
def _pat(regex) -> str:
    """A Python pattern of core (anchored ^...\\Z) as a JSON Schema (ECMA 262) one."""
    return regex.pattern.replace(r"\Z", "$")


NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"   # core.cfgvalue.text_problem


def _text(max_len: int = wire.MAX_TEXT, pattern: str | None = NO_CONTROL,
          nullable: bool = True, min_len: int = 1, **extra) -> dict:
    out = {"type": ["string", "null"] if nullable else "string", "minLength": min_len,
           "maxLength": max_len, **extra}
    if pattern:
        out["pattern"] = pattern
    return out


def _nullable(schema: dict) -> dict:
    kind = schema["type"]
    out = {**schema, "type": [kind, "null"] if isinstance(kind, str) else kind}
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


ID_REQ = _text(64, _pat(wire.ID_RE), nullable=False)
MASTER_NAME_REQ = _text(64, _pat(MASTER_NAME_RE), nullable=False)
# absolute paths and http(s)/file URLs of visible ASCII, without '$' (no '${', no
# trailing '$': a node's buildout extends the release); the server also takes other
# printable characters
SOFTWARE_URL_REQ = _text(wire.MAX_URL, r"^(?:/[!-#%-~]*|(?:https?|file)://[!-#%-~]+)$",
                         nullable=False, description="absolute path or http(s):// or "
                         "file:// URL of a software release (buildout profile)")
HTTPS_URL_REQ = _text(wire.MAX_URL, r"^https://[!-~]+$", nullable=False)
PEM_CERT_REQ = {"type": "string", "maxLength": wire.MAX_PEM,
                "pattern": r"^\s*-----BEGIN CERTIFICATE-----", "description": "PEM text"}
CSR_REQ = {"type": "string", "minLength": 1, "maxLength": wire.MAX_PEM,
           "description": "PEM text of a certificate signing request"}
CAPS_REQ = {"type": ["array", "null"], "maxItems": wire.MAX_CAPABILITIES,
            "items": {"type": "string", "pattern": _pat(SLA_NAME_RE)},
            "description": "capability names; a tagged computer or partition only hosts "
                           "instances whose SLA asks for one of them"}
LABELS_REQ = {"type": ["object", "null"], "propertyNames": {"pattern": NO_CONTROL},
              "additionalProperties": _text(nullable=False)}
SOFTWARE_TYPE_REQ = _text(64, _pat(wire.SOFTWARE_TYPE_RE))
# instance parameters become buildout options on a node: plain identifiers, none ending
# in '-', not 'recipe' (core.cfgvalue.key_problem)
OPTION_NAME = r"^[A-Za-z_](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_.])?$"
PARAMETER_NAME = _pat(wire.PARAMETER_KEY_RE)
INSTANCE_PARAMETERS = {"type": ["object", "null"], "default": {},
                       "propertyNames": {"pattern": OPTION_NAME, "not": {"const": "recipe"}}}
CONNECTION_REQ = {"type": ["object", "null"], "propertyNames": {"pattern": PARAMETER_NAME}}


CAPS = {"type": "array", "items": STR, "description": "capability names; a tagged computer "
        "or partition only hosts instances whose SLA asks for one of them"}
_REF = {"type": "string", "minLength": 1, "maxLength": MAX_REFERENCE}
_SLA_VALUE = {"type": "string", "minLength": 1, "maxLength": MAX_VALUE}
_SLA_NAME = {**_SLA_VALUE, "pattern": _pat(SLA_NAME_RE)}
_REFS = {"oneOf": [_REF, {"type": "array", "items": _REF, "minItems": 1,
                          "maxItems": MAX_REFERENCES_PER_KEY}],
         "description": "reference(s) of other instances of the same requester or "
                        "instance tree"}
SLA_ALTERNATIVE = {
    "type": "object",
    "description": "Conditions that must all hold: absolute keys, labels as "
                   f"'{LABEL_PREFIX}KEY', relative keys naming other instances; "
                   "host_instance (shared requests): the id of the host to attach to, "
                   "which must be open to the requester. Unknown keys are refused.",
    "properties": {**{k: _SLA_NAME if k in (CAPABILITY_KEY, MASTER_KEY, HOST_KEY)
                      else _SLA_VALUE for k in ABSOLUTE_KEYS},
                   **{k: _REFS for k in RELATIVE_KEYS}},
    "patternProperties": {"^" + LABEL_PREFIX.replace(".", "\\.")
                          + _pat(SLA_NAME_RE)[1:]: _SLA_VALUE},
    "additionalProperties": False}
OPEN_TO = {"type": "array", "maxItems": MAX_OPEN_TO, "default": [],
           "items": {"type": "string", "pattern": f"{PRINCIPAL_RE.pattern}|^[*]$"},
           "description": "non-shared instances: who else may attach shared instances to "
                          "this one: [] its owner only (the requester of its tree's root), "
                          f"principals (person/NAME, master/PEER), or [\"{EVERYONE}\"] "
                          "everyone; requesting again replaces it, and shared instances no "
                          "longer allowed are detached"}
SLA = {"oneOf": [SLA_ALTERNATIVE, {"type": "array", "items": SLA_ALTERNATIVE, "minItems": 1,
                                   "maxItems": MAX_ALTERNATIVES}],
       "description": "one alternative, or alternatives tried in order "
                      "([{\"continent\": \"europe\"}, {}] = Europe, else anywhere)"}


SCHEMAS = {
    "Error": _obj({"error": _obj({
        "code": STR, "message": STR,
        "details": {"type": "array", "items": {}},
        "request_id": {"type": "string", "description": "the id of the request this "
                       "answers, as in the X-Request-Id response header and the master's "
                       "access log"}}, ["code", "message", "details"])},
        ["error"]),
    "Health": _obj({"status": _enum(["ok"]), "generation": INT, "version": STR, "name": STR,
                    "role": {**_enum(["primary", "replica", "fenced"]), "description":
                             "what this master is: the primary of its epoch, a read-only "
                             "replica, or a primary fenced by a larger epoch"},
                    "epoch": {"type": "integer", "minimum": 1, "description":
                              "grows by one at each promotion"}},
                   ["status", "generation", "version"]),
    "PartitionSpec": _obj({"id": ID_REQ,
                           "address": {"type": "string", "anyOf": [{"format": "ipv4"},
                                                                   {"format": "ipv6"}],
                                       "description": "an IPv4 or IPv6 address"},
                           "port_base": {"type": "integer", "minimum": 1, "maximum": 65535},
                           "port_count": {"type": ["integer", "null"], "minimum": 1,
                                          "maximum": 65535, "default": 10},
                           "capabilities": CAPS_REQ},
                          ["id", "address", "port_base"]),
    "ComputerRegistration": _obj({
        "id": ID_REQ, **{k: _text() for k in LOCALITY_LEVELS},
        "labels": LABELS_REQ, "capabilities": CAPS_REQ,
        "partitions": {"type": ["array", "null"], "items": _ref("PartitionSpec"),
                       "description": "each partition id at most once"}}, ["id"]),
    "ComputerUpdate": {**_obj({**{k: _text() for k in LOCALITY_LEVELS},
                               "labels": LABELS_REQ, "capabilities": CAPS_REQ}),
                       "minProperties": 1},
    "Partition": _obj({"id": STR, "address": STR, "port_base": INT, "port_count": INT,
                       "instance": {"type": ["string", "null"],
                                    "description": "id of the hosted instance"},
                       "capabilities": CAPS,
                       "moved": {"oneOf": [{"type": "null"}, _ref("MovedPartition")]}},
                      ["id", "address", "port_base", "port_count", "instance",
                       "capabilities", "moved"]),
    "MovedPartition": _obj({
        "instance": {**STR, "description": "the instance that moved away (its computer "
                                           "was declared lost)"},
        "quarantined": {"type": "boolean", "description": "its node set the instance's "
                                                          "data aside (kept)"},
        "wipe": {"type": "boolean", "description": "an admin let the node erase them "
                                                   "(slapfed computer wipe)"}},
        ["instance", "quarantined", "wipe"]),
    "LostMark": _obj({"at": ISO, "reason": STR}, ["at", "reason"]),
    "LostVerdict": _obj({"reason": _text(), "dry_run": {"type": ["boolean", "null"]}}),
    "WipeRequest": _obj({"partition": _text(64, _pat(wire.ID_RE))}),
    "MovedReport": _obj({"instance_id": ID_REQ, "state": _enum(MOVED_REPORT_STATES)},
                        ["instance_id", "state"]),
    "Move": _obj({"instance": STR, "reference": STR, "partition": STR,
                  "outcome": _enum(("moved", "not_placed", "destroyed")),
                  "to": {"type": ["object", "null"], "additionalProperties": STR,
                         "description": "where it went: computer and partition, or peer"},
                  "reason": NSTR},
                 ["instance", "reference", "partition", "outcome", "to", "reason"]),
    "LostAnswer": _obj({"computer": _ref("Computer"),
                        "moves": {"type": "array", "items": _ref("Move")},
                        "dry_run": {"type": "boolean"}}, ["computer", "moves"]),
    "Software": _obj({"url": STR, "hash": STR, "state": _enum(SUPPLY_STATES),
                      "status": _enum(SOFTWARE_STATUSES), "log_tail": STR,
                      "software_types": {"type": "array", "items": STR},
                      "reported_at": ISO,
                      "failed_installs": {"type": "integer", "minimum": 0,
                                          "description": "failed installs since the last "
                                          "successful one; above 0, placement sends no new "
                                          "instance of it here"}},
                     ["url", "hash", "state", "status", "log_tail", "software_types",
                      "reported_at", "failed_installs"]),
    "Computer": _obj({"id": STR, "host": NSTR, "lan": NSTR, "country": NSTR,
                      "continent": NSTR, "labels": STR_MAP, "capabilities": CAPS,
                      "last_contact": ISO, "serial": INT, "lease": LEASE,
                      "lost": {"oneOf": [{"type": "null"}, _ref("LostMark")],
                               "description": "the verdict that it is lost: nothing is "
                                              "placed there, what it hosted moved"},
                      "partitions": {"type": "array", "items": _ref("Partition")},
                      "software": {"type": "array", "items": _ref("Software")}},
                     ["id", "host", "lan", "country", "continent", "labels", "capabilities",
                      "last_contact", "serial", "lease", "lost", "partitions", "software"]),
    "ComputerList": _obj({"computers": {"type": "array", "items": _ref("Computer")}},
                         ["computers"]),
    "Supply": _obj({"url": SOFTWARE_URL_REQ,
                    "state": {**_nullable(_enum(SUPPLY_STATES)), "default": "available"}},
                   ["url"]),
    "SoftwareReport": _obj({
        "status": _enum(SOFTWARE_REPORT_STATES),
        "log_tail": _text(wire.MAX_LOG_TAIL, None, min_len=0),
        "software_types": {"type": ["array", "null"],
                           "items": {"type": "string",
                                     "pattern": _pat(wire.SOFTWARE_TYPE_RE)}}}, ["status"]),
    "PromiseResult": _obj({"name": _text(nullable=False), "ok": {"type": ["boolean", "null"]},
                           "message": _text(wire.MAX_LOG_TAIL, None, min_len=0)},
                          ["name"]),
    "PartitionReport": _obj({
        "instance_id": ID_REQ, "revision": {"type": "integer", "minimum": 0},
        "state": _enum(PARTITION_REPORT_STATES),
        "log_tail": _text(wire.MAX_LOG_TAIL, None, min_len=0), "connection": CONNECTION_REQ,
        "promises": {"type": ["array", "null"], "items": _ref("PromiseResult")},
        "shared_connections": {
            "type": ["object", "null"], "propertyNames": {"pattern": _pat(wire.ID_RE)},
            "additionalProperties": {**CONNECTION_REQ, "type": "object"},
            "description": "connection parameters the host instance published for its "
                           "shared instances, by shared instance id; each becomes that "
                           "shared instance's connection (ids it does not host are "
                           "ignored)"}},
        ["instance_id", "revision", "state"]),
    "SharedInstanceEntry": _obj({"id": STR, "reference": STR, "parameters": ANY_OBJ},
                                ["id", "reference", "parameters"]),
    "DesiredInstance": _obj({
        "id": STR, "reference": STR, "requester": STR, "software_url": STR,
        "software_hash": STR, "software_type": STR, "parameters": ANY_OBJ,
        "requested_state": _enum(REQUESTED_STATES), "revision": INT,
        "shared_instances": {"type": "array", "items": _ref("SharedInstanceEntry")},
        "provenance": {"type": "array", "items": STR,
                       "description": "masters its request crossed, the last one placed it"},
        "restore_from": {**STR, "description": "the backup location it published before "
                                               "its computer was lost: the node runs its "
                                               "restore steps with it before its first "
                                               "start here"}},
        ["id", "reference", "requester", "software_url", "software_hash", "software_type",
         "parameters", "requested_state", "revision", "shared_instances", "provenance"]),
    "DesiredPartition": _obj({
        "id": STR, "address": STR, "port_base": INT, "port_count": INT,
        "instance": {"oneOf": [{"type": "null"}, _ref("DesiredInstance")]},
        "moved": _obj({"instance": STR, "wipe": {"type": "boolean"}},
                      ["instance", "wipe"])},
        ["id", "address", "port_base", "port_count", "instance"]),
    "DesiredState": _obj({
        "computer": STR, "serial": INT,
        "software": {"type": "array", "items": _obj({"url": STR, "hash": STR,
                                                      "state": _enum(SUPPLY_STATES)},
                                                     ["url", "hash", "state"])},
        "partitions": {"type": "array", "items": _ref("DesiredPartition")}},
        ["computer", "serial", "software", "partitions"]),
    "InstanceRequest": {**_obj({
        "reference": _text(MAX_REFERENCE, nullable=False),
        "software_url": SOFTWARE_URL_REQ,
        "software_type": {**SOFTWARE_TYPE_REQ, "default": "default"},
        "parameters": INSTANCE_PARAMETERS,
        "sla": {"anyOf": [{"type": "null"}, SLA], "description": SLA["description"]},
        "state": {**_nullable(_enum(REQUESTED_STATES)), "default": "started"},
        "shared": {"type": ["boolean", "null"], "default": False},
        "requester": {**_text(), "default": "anonymous"},
        "parent": {**_text(64, _pat(wire.ID_RE)), "description": "id of the parent instance"},
        "provenance": {"type": ["array", "null"], "default": [],
                       "items": {"type": "string", "pattern": _pat(MASTER_NAME_RE)},
                       "description": "masters the request already crossed, root first"},
        "open_to": {**OPEN_TO, "type": ["array", "null"]}},
        ["reference", "software_url"]),
        # open_to is for hosts, host_instance for shared requests
        "if": {"properties": {"shared": {"const": True}}, "required": ["shared"]},
        "then": {"properties": {"open_to": {"type": ["array", "null"], "maxItems": 0}}},
        "else": {"properties": {"sla": {"not": {"anyOf": [
            {"type": "object", "required": [HOST_KEY]},
            {"type": "array", "contains": {"type": "object", "required": [HOST_KEY]}}]}}}},
        "description": "relative SLA keys must name other existing instances of the "
                       "requester (or of its tree), never the one requested, and must "
                       "not contradict each other"},
    "StateChange": _obj({"state": _enum(REQUESTED_STATES)}, ["state"]),
    "Placement": _obj({"computer": STR, "partition": STR, "address": STR, "port_base": INT,
                       "port_count": INT,
                       "locality": {**_obj({k: NSTR for k in LOCALITY_LEVELS},
                                           list(LOCALITY_LEVELS)),
                                    "description": "the computer's locality"},
                       "release": {**_obj({"status": _enum(SOFTWARE_STATUSES),
                                           "reported_at": ISO, "failed_installs": INT,
                                           "reason": NSTR},
                                          ["status", "reported_at", "failed_installs",
                                           "reason"]),
                                   "description": "the instance's release on that "
                                   "computer, as its node last reported it (reason: the "
                                   "last line of a failed install's log)"}},
                      ["computer", "partition", "address", "port_base", "port_count",
                       "locality", "release"]),
    "InstanceStatus": _obj({
        "state": _enum(INSTANCE_STATUSES),
        "revision": {"type": "integer", "description": "revision the node last reported on"},
        "reported_at": ISO, "log_tail": STR,
        "reported_state": {**_enum(INSTANCE_STATUSES), "description":
                           "only while the state is unknown because its computer's lease "
                           "ran out: the state last reported (shown again once its node "
                           "calls); log_tail says since when"},
        "promises": {"type": "array", "items": _ref("PromiseResult")}},
        ["state", "revision", "reported_at", "log_tail", "promises"]),
    "Instance": _obj({
        "id": STR, "reference": STR, "requester": STR, "parent": NSTR,
        "children": {"type": "array", "items": STR}, "software_url": STR,
        "software_hash": STR, "software_type": STR, "parameters": ANY_OBJ,
        "sla": SLA, "requested_state": _enum(REQUESTED_STATES),
        "shared": {"type": "boolean"}, "revision": INT,
        "placement": {"oneOf": [{"type": "null"}, _ref("Placement")]},
        "host_instance": {"type": ["string", "null"],
                          "description": "shared instances: id of the hosting instance"},
        "shared_instances": {"type": "array", "items": STR,
                             "description": "hosts: ids of the shared instances attached"},
        "open_to": OPEN_TO,
        "status": _ref("InstanceStatus"), "connection": ANY_OBJ,
        "provenance": {"type": "array", "items": STR,
                       "description": "masters its request crossed, this one last"},
        "child_master": {"oneOf": [{"type": "null"}, _ref("ChildMasterRegistration")],
                         "description": "the master this instance runs, once registered"},
        "delegation": {"oneOf": [{"type": "null"}, _ref("Delegation")],
                       "description": "delegated instances: the peer serving it and the "
                                      "chain beyond"},
        "created_at": ISO, "updated_at": ISO},
        ["id", "reference", "requester", "parent", "children", "software_url",
         "software_hash", "software_type", "parameters", "sla", "requested_state", "shared",
         "revision", "placement", "host_instance", "shared_instances", "open_to", "status",
         "connection", "provenance", "child_master", "delegation", "created_at",
         "updated_at"]),
    "Delegation": _obj({
        "peer": STR, "state": _enum(FORWARD_STATES), "reason": STR,
        "remote_reference": {"type": "string", "description": "origin master, requester "
                             "and reference: asking again never duplicates"},
        "remote_id": NSTR, "accepted": {"type": "boolean"}, "attempts": INT,
        "next_attempt_at": ISO, "fallbacks": {"type": "array", "items": STR},
        "chain": {"type": "array", "items": ANY_OBJ,
                  "description": "masters beyond this one, then the computer"},
        "updated_at": ISO},
        ["peer", "state", "reason", "remote_reference", "chain"]),
    "ChildMasterRegistration": _obj({"name": MASTER_NAME_REQ, "url": HTTPS_URL_REQ,
                                     "ca_certificate": PEM_CERT_REQ,
                                     "pairing_token": {
                                         **_text(256), "description":
                                         "a one-time token of the child's CA for "
                                         "master/<this master>: the parent pairs with the "
                                         "child as a peer (origin child)"}},
                                    ["name", "url", "ca_certificate"]),
    "InstanceList": _obj({"instances": {"type": "array", "items": _ref("Instance")}},
                         ["instances"]),
    "Refusal": _obj({"plugin": STR, "reason": STR, "count": INT,
                     "sample": {"type": "array", "items": STR,
                                "description": "a few of the computers refused"}},
                    ["plugin", "reason", "count"]),
    "Ranked": _obj({"computer": STR, "score": {"type": "number"},
                    "scores": {"type": "object", "additionalProperties": {"type": "number"}}},
                   ["computer", "score", "scores"]),
    "PlacementAttempt": _obj({
        "alternative": INT, "sla": STR, "candidates": INT, "feasible": INT, "scored": INT,
        "refusals": {"type": "array", "items": _ref("Refusal")},
        "top": {"type": "array", "items": _ref("Ranked")}},
        ["alternative", "sla", "candidates", "feasible", "scored", "refusals", "top"]),
    "PlacementDecision": _obj({
        "reference": STR, "requester": STR, "placed": {"type": "boolean"},
        "computer": NSTR, "partition": NSTR,
        "alternative": {"type": ["integer", "null"],
                        "description": "index of the SLA alternative that matched"},
        "message": STR,
        "attempts": {"type": "array", "items": _ref("PlacementAttempt")},
        "instance": {"type": ["string", "null"],
                     "description": "id of the existing instance of requester+reference"},
        "current": {"oneOf": [{"type": "null"},
                              _obj({"computer": STR, "partition": STR},
                                   ["computer", "partition"])],
                    "description": "where the existing instance runs (a repeated request "
                                   "keeps it there)"},
        "anchors": {"type": "object", "additionalProperties": _obj(
            {"computer": NSTR, "why": NSTR}, ["computer", "why"]),
            "description": "where the instances named by relative keys run"},
        "route": {**_obj({"kind": _enum(("local", "delegate")),
                          "peers": {"type": "array", "items": STR,
                                    "description": "delegate: the peer to call, then the "
                                                   "fallbacks in order"},
                          "reason": STR,
                          "considered": {"type": "array", "items": _obj(
                              {"peer": STR, "verdict": STR}, ["peer", "verdict"])}},
                         ["kind", "peers", "reason", "considered"]),
                  "description": "where the request would be served: here, or delegated "
                                 "to a peer master"}},
        ["reference", "requester", "placed", "computer", "partition", "alternative",
         "message", "attempts", "instance", "current", "anchors", "route"]),
}

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


def _json(schema_name: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema_name)}}}


def _body(schema_name: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema_name)}}}


def _errors(*codes) -> dict:
    return {c: {"$ref": f"#/components/responses/E{c}"} for c in codes}


def _path_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": STR,
            "description": description}


CID = _path_param("cid", "computer id")
PID = _path_param("pid", "partition id")
HASH = _path_param("software_hash", "software hash (sha256 of the URL, 32 hex digits)")
IID = _path_param("iid", "instance id")


def _op(summary: str, responses: dict, body: str | None = None, parameters=(),
        op_id: str | None = None, public: bool = False) -> dict:
    """One operation. Every one may answer 414 and 431 (a request line or headers too
    long for the server), 500 (internal_error) and 503 (storage_error, master_stopping); a guarded one (not ``public``) 401 and 403; one with a body 400,
    413 and 415. ``public``: no client certificate needed (``security: []``)."""
    out = {"summary": summary, "operationId": op_id, "responses": dict(responses)}
    if body:
        out["requestBody"] = _body(body)
    out["responses"].update(_errors(*_implied_errors(body is not None, public)))
    if public:
        out["security"] = []
    if parameters:
        out["parameters"] = list(parameters)
    return out


def _implied_errors(has_body: bool, public: bool) -> tuple:
    codes = ("400", "413", "415") if has_body else ()
    return codes + (() if public else ("401", "403")) + ("414", "431", "500", "503")


PATHS = {
    "/health": {"get": _op("Liveness and schema generation",
                           {"200": _json("Health", "the master is up")},
                           op_id="health", public=True)},
    "/openapi.json": {"get": _op("This document", {"200": {
        "description": "OpenAPI 3.1 document",
        "content": {"application/json": {"schema": {"type": "object"}}}}},
        op_id="openapi", public=True)},
    "/computers": {
        "post": _op("Register a computer (idempotent: known partitions are kept, new ones "
                    "added). An admin sets its locality, labels and capabilities; the node "
                    "itself describes it at its first registration only, and afterwards "
                    "may add partitions but change none of those facts (403 "
                    "fact_not_owned, naming each field)",
                    {"201": _json("Computer", "registered"),
                     "200": _json("Computer", "already known, updated"),
                     **_errors("400", "403", "413")}, body="ComputerRegistration",
                    op_id="register_computer"),
        "get": _op("List computers", {"200": _json("ComputerList", "every computer")},
                   op_id="list_computers")},
    "/computers/{cid}": {"get": _op("Show a computer",
                                    {"200": _json("Computer", "the computer"),
                                     **_errors("404")}, parameters=[CID],
                                    op_id="show_computer"),
                         "patch": _op("Change a computer's locality, labels or capabilities "
                                      "(admins; only the fields given change, a null "
                                      "locality clears it)",
                                      {"200": _json("Computer", "the computer"),
                                       **_errors("400", "403", "404")},
                                      body="ComputerUpdate", parameters=[CID],
                                      op_id="set_computer_facts")},
    "/computers/{cid}/software": {"post": _op(
        "Supply a release to a computer (state destroyed asks the node to remove it)",
        {"200": _json("Software", "the release on this computer"),
         **_errors("400", "404", "409")}, body="Supply", parameters=[CID], op_id="supply")},
    "/computers/{cid}/software/{software_hash}": {"delete": _op(
        "Ask the node to remove a release (desired state destroyed); 409 while instances "
        "on this computer still use it",
        {"200": _json("Software", "the release, now desired destroyed"),
         **_errors("404", "409")}, parameters=[CID, HASH], op_id="unsupply")},
    "/computers/{cid}/software/{software_hash}/status": {"put": _op(
        "Node report of a release install (status destroyed removes the release)",
        {"200": _json("Software", "recorded"), **_errors("400", "404")},
        body="SoftwareReport", parameters=[CID, HASH], op_id="report_software")},
    "/computers/{cid}/desired-state": {"get": {
        "summary": "What the computer should have; 304 when If-None-Match holds its serial",
        "operationId": "desired_state",
        "parameters": [CID, {"name": "If-None-Match", "in": "header", "required": False,
                             "schema": STR,
                             "description": 'serial the node has, as "<serial>" (or *)'}],
        "responses": {
            "200": {**_json("DesiredState", "the desired state"),
                    "headers": {"ETag": {"schema": STR,
                                         "description": 'the serial, as "<serial>"'}}},
            "304": {"description": "unchanged since the serial given in If-None-Match",
                    "headers": {"ETag": {"schema": STR}}},
            **_errors("404", *_implied_errors(False, False))}}},
    "/computers/{cid}/lost": {"post": _op(
        "Declare a computer lost (admins): nothing is placed there any more; each instance "
        "it hosts is placed again elsewhere under its own SLA, keeping its id and "
        "reference, pending with no connection parameters until its new node publishes "
        "them; one that fits nowhere is failed with the reason; its old partition is "
        "recorded as moved (not free until wiped). dry_run: the same answer, nothing "
        "written",
        {"200": _json("LostAnswer", "the computer and what became of each instance"),
         **_errors("400", "404", "409")}, body="LostVerdict", parameters=[CID],
        op_id="declare_computer_lost")},
    "/computers/{cid}/wipe": {"post": _op(
        "Let the node erase the data it set aside of instances that moved away (admins; "
        "one partition, or every one: that also returns a lost computer to service). "
        "The partitions are free once the node reports them erased",
        {"200": _json("Computer", "the computer"), **_errors("400", "404", "409")},
        body="WipeRequest", parameters=[CID], op_id="wipe_computer")},
    "/computers/{cid}/partitions/{pid}/moved": {"put": _op(
        "Node report of a partition whose instance moved away: quarantined (services "
        "stopped, data set aside) or erased (only once an admin allowed it: the "
        "partition is then free)",
        {"200": _json("Partition", "the partition"), **_errors("400", "403", "404", "409")},
        body="MovedReport", parameters=[CID, PID], op_id="report_moved_partition")},
    "/computers/{cid}/partitions/{pid}/status": {"put": _op(
        "Node report of a partition's instance; state destroyed (of an instance whose "
        "requested state is destroyed) frees the partition. The state claimed must fit "
        "the state requested (409 report_refused, e.g. destroyed for an instance "
        "requested started); only the node claims destroyed (403 fact_not_owned for the "
        "partition's own identity)",
        {"200": _json("Instance", "the instance, with the recorded status"),
         **_errors("400", "403", "404", "409")}, body="PartitionReport",
        parameters=[CID, PID],
        op_id="report_partition")},
    "/instances": {
        "post": _op("Request an instance (idempotent on requester + reference)",
                    {"201": _json("Instance", "created"),
                     "200": _json("Instance", "existing; changes applied"),
                     **_errors("400", "409", "413", "422")}, body="InstanceRequest",
                    op_id="request_instance"),
        "get": {"summary": "List instances matching every filter given",
                "operationId": "list_instances",
                "parameters": [
                    {"name": "requester", "in": "query", "schema": STR},
                    {"name": "reference", "in": "query", "schema": STR},
                    {"name": "state", "in": "query", "schema": _enum(REQUESTED_STATES),
                     "description": "requested state"},
                    {"name": "status", "in": "query", "schema": _enum(INSTANCE_STATUSES),
                     "description": "observed state (status.state)"}],
                "responses": {"200": _json("InstanceList", "matching instances"),
                              **_errors("400", *_implied_errors(False, False))}}},
    "/placements": {"post": _op(
        "Explain a request without making it: the placement decision, candidates and "
        "refusals per plugin, per SLA alternative. Writes nothing; nothing fitting is a "
        "200 with placed=false",
        {"200": _json("PlacementDecision", "the decision and its explanation"),
         **_errors("400", "409", "413", "422")}, body="InstanceRequest",
        op_id="explain_placement")},
    "/instances/{iid}": {
        "get": _op("Show an instance", {"200": _json("Instance", "the instance"),
                                        **_errors("404")}, parameters=[IID],
                   op_id="show_instance"),
        "delete": _op("Destroy an instance (requested state destroyed)",
                      {"200": _json("Instance", "the instance"), **_errors("404")},
                      parameters=[IID], op_id="destroy_instance")},
    "/instances/{iid}/child-master": {"put": _op(
        "The partition hosting the instance registers the master it runs (recursion): "
        "the parent then knows it as a child master",
        {"200": _json("Instance", "the instance"), **_errors("400", "401", "403", "404", "409")},
        body="ChildMasterRegistration", parameters=[IID], op_id="register_child_master")},
    "/instances/{iid}/state": {"put": _op(
        "Change the requested state (started on a destroyed instance places it again)",
        {"200": _json("Instance", "the instance"), **_errors("400", "404", "409")},
        body="StateChange", parameters=[IID], op_id="change_state")},
}


# -- topology (the files the master was started with, plus its live state) ----------
_TOPO_SITE = _obj({"name": STR, "level": _enum(["continent", "country", "lan", "host"]),
                   "parent": NSTR, "description": STR},
                  ["name", "level", "parent", "description"])
_TOPO_MASTER = _obj({"name": STR, "url": NSTR, "site": STR, "description": STR},
                    ["name", "url", "site", "description"])
_LOCALITY = _obj({k: NSTR for k in LOCALITY_LEVELS}, list(LOCALITY_LEVELS))
_TOPO_COMPUTER = _obj({"id": STR, "site": STR, "master": NSTR, "labels": STR_MAP,
                       "capabilities": {"type": "array", "items": STR},
                       "partitions": {"type": ["integer", "null"]}, "description": STR,
                       "locality": _LOCALITY},
                      ["id", "site", "master", "labels", "capabilities", "partitions",
                       "description", "locality"])
_TOPO_LINK = _obj({"from": STR, "to": STR, "latency_ms": {"type": "number"},
                   "cost": {"type": "number"},
                   "trust": _enum(TRUST_LEVELS), "description": STR,
                   "invitations": {"type": "array", "items": STR,
                                   "description": "invitation files pairing its ends"}},
                  ["from", "to", "latency_ms", "cost", "trust", "description"])
_LIVE_COMPUTER = _obj({"id": STR, "host": NSTR, "lan": NSTR, "country": NSTR,
                       "continent": NSTR, "labels": STR_MAP,
                       "capabilities": {"type": "array", "items": STR}, "last_contact": ISO,
                       "lease": LEASE,
                       "partitions": {"type": "array", "items": _ref("Partition")}},
                      ["id", "host", "lan", "country", "continent", "labels", "capabilities",
                       "last_contact", "lease", "partitions"])
_LIVE_INSTANCE = _obj({
    "id": STR, "reference": STR, "requester": STR, "parent": NSTR,
    "children": {"type": "array", "items": STR}, "shared": {"type": "boolean"},
    "host_instance": NSTR, "software_url": STR, "software_type": STR,
    "requested_state": _enum(REQUESTED_STATES), "state": _enum(INSTANCE_STATUSES),
    "reason": {**NSTR, "description": "why the state is unknown (its computer's lease "
                                      "ran out), else null"},
    "placement": {"oneOf": [{"type": "null"}, _obj(
        {"computer": STR, "partition": STR, "address": STR},
        ["computer", "partition", "address"])]},
    "delegation": {"oneOf": [{"type": "null"}, _ref("Delegation")]}},
    ["id", "reference", "requester", "parent", "children", "shared", "host_instance",
     "software_url", "software_type", "requested_state", "state", "reason", "placement",
     "delegation"])
SCHEMAS["TopologyView"] = _obj({
    "master": {"type": ["string", "null"],
               "description": "this master's name in the topology files"},
    "topology": _obj({"files": {"type": "array", "items": STR},
                      "sites": {"type": "array", "items": _TOPO_SITE},
                      "masters": {"type": "array", "items": _TOPO_MASTER},
                      "computers": {"type": "array", "items": _TOPO_COMPUTER},
                      "links": {"type": "array", "items": _TOPO_LINK}},
                     ["files", "sites", "masters", "computers", "links"]),
    "live": _obj({"master": NSTR,
                  "computers": {"type": "array", "items": _LIVE_COMPUTER},
                  "instances": {"type": "array", "items": _LIVE_INSTANCE},
                  "masters": {"type": "array", "items": _obj(
                      {"name": STR, "url": STR, "instance": STR, "reference": STR},
                      ["name", "url", "instance", "reference"])},
                  "peers": {"type": "array", "items": _obj(
                      {"name": STR, "url": STR, "origin": STR, "trust": STR,
                       "paired": {"type": "boolean"}, "link": _enum(("up", "down", "unknown")),
                       "last_contact": ISO, "last_error": NSTR, "pending_forwards": INT,
                       "forwards": INT, "latency_ms": {"type": ["number", "null"]},
                       "site": NSTR, "instance": NSTR},
                      ["name", "url", "paired", "link", "pending_forwards", "forwards"])}},
                 ["master", "computers", "instances", "masters", "peers"])},
    ["master", "topology", "live"])
PATHS["/topology"] = {"get": _op(
    "The topology files this master was started with (--topology) and its live state: "
    "computers with locality and partitions, instances with placement",
    {"200": _json("TopologyView", "the topology and the live state")},
    op_id="show_topology")}


# -- identities and certificates (master.identity) ----------------------------------------
_IDENTITY = _obj({"role": _enum(("person", "admin", "computer", "partition", "master",
                                  "replica")),
                  "name": STR, "uri": STR, "computer": STR, "partition": STR},
                 ["role", "name", "uri"])
_CERT_FIELDS = {"serial": STR, "identity": _IDENTITY, "not_before": ISO, "not_after": ISO,
                "fingerprint": STR, "hosts": {"type": "array", "items": STR},
                "revoked": {"type": "boolean"}, "revocation": ANY_OBJ}
_CERT_REQUIRED = ["serial", "identity", "not_before", "not_after", "fingerprint", "hosts",
                  "revoked"]
PEM = {"type": "string", "description": "PEM text"}
IDENTITY_ROLES = ("person", "admin", "computer", "partition", "master",
                  "replica")   # ca.identity.ROLES
_PRINCIPAL_NAME = _pat(ids.PRINCIPAL_NAME_RE)
_ROLE_NAMES = {"person": _PRINCIPAL_NAME, "admin": _PRINCIPAL_NAME,
               "master": _PRINCIPAL_NAME, "replica": _PRINCIPAL_NAME,
               "computer": _pat(ids.ID_RE),
               "partition": _pat(ids.ID_RE)[:-1] + "/" + _pat(ids.ID_RE)[1:]}
REVOCATION_REASONS = ("unspecified", "key_compromise", "ca_compromise",    # RFC 5280 names,
                      "affiliation_changed", "superseded",                 # as in ca.authority
                      "cessation_of_operation", "privilege_withdrawn")
SCHEMAS.update({
    "Identity": _IDENTITY,
    "WhoAmI": _obj({"identity": _IDENTITY, "principal": STR,
                    "development_mode": {"type": "boolean"},
                    "certificate": {"oneOf": [{"type": "null"}, _obj(
                        {"serial": STR, "not_before": ISO, "not_after": ISO,
                         "fingerprint": STR}, ["serial", "not_before", "not_after",
                                               "fingerprint"])],
                        "description": "the certificate the caller presented; null in "
                                       "development mode"}},
                   ["identity", "principal", "development_mode", "certificate"]),
    "Certificate": _obj(_CERT_FIELDS, _CERT_REQUIRED),
    "IssuedCertificate": _obj({**_CERT_FIELDS, "certificate": PEM, "ca_certificate": PEM},
                              _CERT_REQUIRED + ["certificate", "ca_certificate"]),
    "CertificateList": _obj({"certificates": {"type": "array", "items": _ref("Certificate")}},
                            ["certificates"]),
    "TokenRedemption": _obj({"token": _text(256, nullable=False), "csr": CSR_REQ},
                            ["token", "csr"]),
    "CertificateSigning": _obj({"csr": CSR_REQ}, ["csr"]),
    "CertificateIssue": {**_obj({"role": _enum(IDENTITY_ROLES),
                              "name": _text(200, nullable=False), "csr": CSR_REQ,
                              "days": {"type": ["integer", "null"], "minimum": 1,
                                       "maximum": 3650},
                              "hosts": {"type": ["array", "null"], "maxItems": wire.MAX_HOSTS,
                                        "items": {"type": "string", "minLength": 1,
                                                  "maxLength": 253}}},
                                ["role", "name", "csr"]),
                         # each role's names (ca.identity.identity_problems)
                         "allOf": [{"if": {"properties": {"role": {"const": role}}},
                                    "then": {"properties": {"name": {"pattern": pattern}}}}
                                   for role, pattern in _ROLE_NAMES.items()],
                         "description": "name: a computer id for a computer, "
                                        "<computer>/<partition> for a partition, a "
                                        "principal name for the other roles"},
    "Revocation": _obj({"reason": {**_nullable(_enum(REVOCATION_REASONS)),
                                   "default": "unspecified"}}),
    "TokenCreation": {**_obj({"computer": _text(64, _pat(wire.ID_RE)),
                              "master": _text(64, _pat(MASTER_NAME_RE)),
                              "ttl": {"type": ["integer", "null"], "minimum": 1,
                                      "maximum": 30 * 24 * 3600}}),
                      "oneOf": [{"properties": {name: {"type": "string"}}, "required": [name]}
                                for name in ("computer", "master")],
                      "description": "exactly one of computer (a node) and master (a peer)"},
    "Token": _obj({"computer": STR, "master": STR, "principal": STR, "token": STR,
                   "ca_certificate": PEM}, ["token"]),
})
SERIAL = {**_path_param("serial", "certificate serial (hexadecimal, ':' separators "
                                  "allowed)"),
          "schema": {"type": "string", "pattern": "^(?:0[xX])?[0-9a-fA-F:]*[0-9a-fA-F]$"}}
PATHS.update({
    "/whoami": {"get": _op("Who the master thinks the caller is (from its client certificate)",
                           {"200": _json("WhoAmI", "the caller's identity"),
                            **_errors("401")}, op_id="whoami")},
    "/node-certificates": {"post": _op(
        "Public: a node trades a one-time registration token and the CSR of a key it made "
        "for its computer certificate (and the CA certificate)",
        {"201": _json("IssuedCertificate", "issued"), **_errors("400", "401")},
        body="TokenRedemption", op_id="redeem_token", public=True)},
    "/computers/{cid}/partitions/{pid}/certificate": {"post": _op(
        "A node has the key its partition generated certified as that partition",
        {"201": _json("IssuedCertificate", "issued"), **_errors("400", "401", "403", "404")},
        body="CertificateSigning", parameters=(
            {**CID, "schema": {"type": "string", "pattern": _pat(ids.ID_RE)}},
            {**PID, "schema": {"type": "string", "pattern": _pat(ids.ID_RE)}}),
        op_id="certify_partition")},
    "/certificates": {
        "get": _op("Every certificate this master's CA issued (admins; public material only)",
                   {"200": _json("CertificateList", "the certificates"),
                    **_errors("401", "403")}, op_id="list_certificates"),
        "post": _op("Certify a CSR as an identity (admins)",
                    {"201": _json("IssuedCertificate", "issued"),
                     **_errors("400", "401", "403")},
                    body="CertificateIssue", op_id="issue_certificate")},
    "/certificates/{serial}/revocation": {"post": _op(
        "Revoke a certificate (admins, or its own holder); refused from the next request on",
        {"200": _json("Certificate", "revoked"), **_errors("400", "401", "403", "404")},
        body="Revocation", parameters=(SERIAL,), op_id="revoke_certificate")},
    "/tokens": {"post": _op(
        "A one-time registration token for a computer (admins); shown once",
        {"201": _json("Token", "the token"), **_errors("400", "401", "403")},
        body="TokenCreation", op_id="create_token")},
})


NAME = _path_param("name", "peer master name")
_LINK_FACTS = {"trust": _nullable(_enum(TRUST_LEVELS)),
               "cost": {"type": ["number", "null"], "minimum": 0},
               "latency_ms": {"type": ["number", "null"], "minimum": 0},
               "site": _text(64, _pat(wire.ID_RE))}
SCHEMAS.update({
    "PeerAddition": _obj({
        "name": MASTER_NAME_REQ, "url": {**HTTPS_URL_REQ, "description": "https URL of the peer"},
        "ca_certificate": PEM_CERT_REQ,
        "token": {**_text(), "description": "the one-time token the peer issued "
                                            "for this master (pairs once)"},
        **_LINK_FACTS},
        ["name", "url", "ca_certificate"]),
    "PeerUpdate": {**_obj(_LINK_FACTS, []),
                   "anyOf": [{"properties": {k: {"not": {"type": "null"}}}, "required": [k]}
                             for k in _LINK_FACTS],
                   "description": "at least one field, not null"},
    "Peer": _obj({
        "name": STR, "url": STR, "origin": _enum(PEER_ORIGINS),
        "paired": {"type": "boolean"}, "principal": NSTR, "trust": STR,
        "cost": {"type": "number"}, "latency_ms": {"type": ["number", "null"]}, "site": NSTR,
        "last_contact": ISO, "last_error": NSTR, "last_error_at": ISO,
        "link": _enum(("up", "down", "unknown")),
        "forwards": {"type": "object", "additionalProperties": INT,
                     "description": "open forwards by state"},
        "pending_forwards": INT, "summary": ANY_OBJ, "added_at": ISO,
        "instance": {"type": ["string", "null"],
                     "description": "child masters: the instance running it"},
        "lost": {"oneOf": [{"type": "null"}, _ref("LostMark")],
                 "description": "the verdict that it is lost: nothing is delegated there"},
        "orphans": {"type": "array", "items": _obj(
            {"instance": STR, "remote_reference": STR, "remote_id": NSTR, "at": ISO},
            ["instance", "remote_reference", "remote_id", "at"]),
            "description": "instances of ours it may still run since the verdict, to "
                           "destroy there if it ever comes back"}},
        ["name", "url", "paired", "link", "forwards", "pending_forwards"]),
    "PeerLostAnswer": _obj({"peer": _ref("Peer"),
                            "moves": {"type": "array", "items": _ref("Move")},
                            "dry_run": {"type": "boolean"}}, ["peer", "moves"]),
    "PeerList": _obj({"peers": {"type": "array", "items": _ref("Peer")}}, ["peers"]),
    "DelegationPolicy": _obj({
        "auto": {"type": "boolean", "default": True,
                 "description": "no local fit: delegate to a peer whose summary fits"},
        "rules": {"type": "array", "items": _obj({
            "release": {**_text(2048, None), "description": "glob on the release URL"},
            "software_type": _text(2048, None), "shared": {"type": ["boolean", "null"]},
            "when": {**_enum(("always", "no-local-fit")), "default": "always"},
            "to": {"oneOf": [MASTER_NAME_REQ, {"type": "array", "items": MASTER_NAME_REQ,
                                               "minItems": 1, "uniqueItems": True}],
                   "description": "peers, fallbacks after"},
            "fallback": {"type": ["boolean", "null"]}, "description": _text(2048, None)},
            ["to"]), "maxItems": 256}}),
    "FederationSummary": _obj({
        "name": STR, "localities": {"type": "array", "items": STR_MAP},
        "software": {"type": "array", "items": STR},
        "hosting": {"type": "array", "items": {"type": "array", "items": STR}},
        "capabilities": {"type": "array", "items": STR}, "free_partitions": INT,
        "reach": {"type": "array", "items": ANY_OBJ}},
        ["name", "localities", "software", "hosting", "capabilities", "free_partitions",
         "reach"]),
    "Changes": _obj({"cursor": STR, "instances": {"type": "array", "items": _ref("Instance")}},
                    ["cursor", "instances"]),
})
PATHS.update({
    "/peers": {
        "get": _op("The peer masters, with the state of each link (admins)",
                   {"200": _json("PeerList", "peers"), **_errors("401", "403")},
                   op_id="list_peers"),
        "post": _op("Pair with a peer master: redeem its one-time token there (admins)",
                    {"200": _json("Peer", "updated"), "201": _json("Peer", "paired"),
                     **_errors("400", "401", "403", "503")},
                    body="PeerAddition", op_id="add_peer")},
    "/peers/{name}": {
        "get": _op("One peer (admins)", {"200": _json("Peer", "the peer"),
                                         **_errors("401", "403", "404")},
                   parameters=(NAME,), op_id="show_peer"),
        "patch": _op("Change a peer's link facts: trust, cost, latency_ms, site (admins); "
                     "the fields given change, nothing else",
                     {"200": _json("Peer", "updated"), **_errors("400", "401", "403", "404")},
                     body="PeerUpdate", parameters=(NAME,), op_id="update_peer"),
        "delete": _op("Forget a peer that serves no delegated instance (admins)",
                      {"200": _json("Peer", "forgotten"), **_errors("401", "403", "404", "409")},
                      parameters=(NAME,), op_id="remove_peer")},
    "/peers/{name}/lost": {"post": _op(
        "Declare a peer lost (admins): nothing is delegated there any more; each instance "
        "delegated to it goes to a fallback peer or comes back here, as the delegation "
        "policy routes it (one being destroyed is destroyed at once); what the peer may "
        "still run is recorded as orphans. `DELETE /peers/{name}` then works",
        {"200": _json("PeerLostAnswer", "the peer and what became of each instance"),
         **_errors("400", "401", "403", "404")},
        body="LostVerdict", parameters=(NAME,), op_id="declare_peer_lost")},
    "/federation/policy": {
        "get": _op("The delegation policy (admins)",
                   {"200": _json("DelegationPolicy", "the policy"), **_errors("401", "403")},
                   op_id="show_policy"),
        "put": _op("Replace the delegation policy (admins); validated, nothing written "
                   "when invalid",
                   {"200": _json("DelegationPolicy", "the policy"),
                    **_errors("400", "401", "403")},
                   body="DelegationPolicy", op_id="set_policy")},
    "/federation/summary": {"get": _op(
        "What this master offers its peers (admins and peer masters)",
        {"200": _json("FederationSummary", "the summary"), **_errors("401", "403")},
        op_id="federation_summary")},
    "/federation/changes": {"get": _op(
        "Long poll: the instances the calling peer master requested here that changed "
        "after cursor `since` (none: all), waiting up to `wait` seconds (at most 60, and "
        "never longer than the master's own limit, master serve --long-poll-max: a "
        "longer wait is shortened to it)",
        {"200": _json("Changes", "changed instances and the next cursor"),
         **_errors("400", "401", "403")},
        parameters=({"name": "since", "in": "query", "required": False,
                     "schema": {"type": "string", "pattern": "^(?:[0-9a-fA-F]{16})?$"}},
                    {"name": "wait", "in": "query", "required": False,
                     "schema": {"type": "number", "minimum": 0, "maximum": 60},
                     "description": "seconds to wait for a change (default 0: answer "
                                    "at once); the master may answer sooner, with no "
                                    "change"}),
        op_id="federation_changes")},
})


TID = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
NTID = {"type": ["string", "null"], "pattern": "^[0-9a-f]{16}$"}
NUM = {"type": "number"}
NNUM = {"type": ["number", "null"]}
NINT = {"type": ["integer", "null"]}
B64 = {"type": ["string", "null"], "contentEncoding": "base64"}
REPLICA_NAME = _path_param("name", "replica name")
SCHEMAS.update({
    "ReplicaInvitation": _obj({"name": _text(64, _pat(MASTER_NAME_RE)),
                               "ttl": {"type": ["integer", "null"], "minimum": 1,
                                       "maximum": 30 * 24 * 3600}}, ["name"]),
    "ReplicaToken": _obj({"name": STR, "principal": STR, "token": STR,
                          "ca_certificate": PEM, "primary": STR, "epoch": INT},
                         ["name", "principal", "token", "ca_certificate"]),
    "ReplicaRegistration": _obj({"url": {"type": ["string", "null"], "maxLength": wire.REPLICA_URL_MAX,
                                         "pattern": wire.HTTP_URL_RE.pattern[:-2] + "$"},
                                 "mode": _enum(wire.REPLICA_MODES)}, ["mode"]),
    "Replica": _obj({"name": STR, "url": NSTR, "mode": _enum(wire.REPLICA_MODES),
                     "epoch": INT}, ["name", "mode"]),
    "ShippedTransaction": _obj({
        "tid": TID, "status": STR, "user": B64, "description": B64, "extension": B64,
        "records": {"type": "array", "items": _obj({"oid": TID, "data": B64,
                                                    "data_txn": NTID}, ["oid"])}},
        ["tid", "records"]),
    "Transactions": _obj({"transactions": {"type": "array",
                                           "items": _ref("ShippedTransaction")},
                          "last_tid": TID, "more": {"type": "boolean"},
                          "behind": {"type": "integer", "minimum": 0, "description":
                                     "transactions after this batch (counted up to 10000)"},
                          "behind_bytes": {"type": "integer", "minimum": 0},
                          "epoch": INT},
                         ["transactions", "last_tid", "more", "epoch"]),
    "CAMaterial": _obj({"files": STR_MAP}, ["files"]),
    "ReplicationStatus": _obj({
        "role": _enum(["primary", "replica", "fenced"]), "name": STR, "epoch": INT,
        "epochs": {"type": "array", "items": _obj({"epoch": INT, "primary": STR,
                                                   "at": NUM})},
        "primary_url": NSTR, "fenced_by": NSTR, "fenced_epoch": NINT,
        "sync": {"type": "boolean"}, "last_tid": TID, "sync_timeout": NUM,
        "degraded_since": NNUM,
        "replicas": {"type": "array", "items": _obj({
            "name": STR, "url": NSTR, "mode": STR, "confirmed_tid": NTID,
            "last_seen": NNUM, "lag_seconds": NNUM, "transactions_behind": NINT,
            "bytes_behind": NINT})},
        "follower": {"type": ["object", "null"], "additionalProperties": True},
        "last_backup": {"type": ["object", "null"], "additionalProperties": True}},
        ["role", "epoch", "replicas"]),
    "Promotion": _obj({}),
    "Promoted": _obj({"role": STR, "name": STR, "epoch": INT, "previous_primary": NSTR},
                     ["role", "epoch"]),
})
PATHS.update({
    "/replication/invitations": {"post": _op(
        "A one-time token with which replica NAME enrols here (admins); shown once",
        {"201": _json("ReplicaToken", "the token"), **_errors("400", "401", "403", "409")},
        body="ReplicaInvitation", op_id="invite_replica")},
    "/replication/replicas/{name}": {"put": _op(
        "A replica records where it serves and its mode (itself; admins any)",
        {"200": _json("Replica", "recorded"), **_errors("400", "401", "403", "409")},
        body="ReplicaRegistration", parameters=(REPLICA_NAME,), op_id="register_replica")},
    "/replication/transactions": {"get": _op(
        "Long poll (replicas): the transactions committed after `after`, as stored, "
        "waiting up to `wait` seconds (at most 60); asking confirms `after` is held",
        {"200": _json("Transactions", "a batch (more: others follow)"),
         **_errors("400", "401", "403", "409")},
        parameters=({"name": "after", "in": "query", "required": False,
                     "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{16}$"}},
                    {"name": "wait", "in": "query", "required": False,
                     "schema": {"type": "number", "minimum": 0, "maximum": 60}}),
        op_id="replication_transactions")},
    "/replication/ca": {"get": _op(
        "The CA's key, certificate, issued certificates and revocations (replicas only)",
        {"200": _json("CAMaterial", "the CA files"), **_errors("401", "403")},
        op_id="replication_ca")},
    "/replication/status": {"get": _op(
        "Role, epoch, replicas with their lag, the last backup (admins)",
        {"200": _json("ReplicationStatus", "the status"), **_errors("401", "403")},
        op_id="replication_status")},
    "/replication/promotion": {"post": _op(
        "Make this replica the primary at a new epoch (admins)",
        {"200": _json("Promoted", "promoted"), **_errors("400", "401", "403", "409")},
        body="Promotion", op_id="promote")},
})


@functools.lru_cache(maxsize=1)
def _document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "slapfed master API", "version": __version__,
                 "description": "Every error answers {\"error\": {\"code\", \"message\", "
                                "\"details\", \"request_id\"}} with the status of its "
                                "code; every answer carries an X-Request-Id header (the "
                                "caller's, when sane, else a new one)."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"mutualTLS": []}],
        "paths": PATHS,
        "components": {
            "securitySchemes": {"mutualTLS": {
                "type": "mutualTLS",
                "description": "every call presents a client certificate issued by this "
                               "master's CA (a person, admin, computer, partition or peer "
                               "master identity), except the operations marked security: "
                               "[] (health, this document, token redemption). A master "
                               "in development mode (--insecure-http) asks for none and "
                               "treats every caller as its administrator."}},
            "schemas": SCHEMAS,
            "responses": {f"E{code}": _json("Error", text) for code, text in ERROR_TEXT.items()},
        },
    }


def openapi_document() -> dict:
    return _document()
