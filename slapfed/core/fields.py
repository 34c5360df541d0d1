"""The patterns, limits and JSON Schemas of wire fields that code outside the master
needs too (the node agent, the buildout runner, the client, the answer models), and the
key of a software release.

Depends on the standard library and core (cfgvalue, sla, sharing) only -- never on
pydantic: a node's cycle and the CLI read these without building the wire types.
core.wire declares the bodies with them (and re-exports them: ``from slapfed.core.wire
import ID_RE`` works).
"""
from __future__ import annotations

import re

from . import cfgvalue
from .sharing import EVERYONE, MAX_OPEN_TO, PRINCIPAL_RE
from .sla import (
    ABSOLUTE_KEYS, CAPABILITY_KEY, HOST_KEY, LABEL_PREFIX, MASTER_KEY, MAX_ALTERNATIVES,
    MAX_REFERENCES_PER_KEY, MAX_VALUE, NAME_RE as SLA_NAME_RE, RELATIVE_KEYS,
    MAX_REFERENCE as SLA_MAX_REFERENCE,
)

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
SOFTWARE_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
PARAMETER_KEY_RE = re.compile(r"^" + cfgvalue.KEY_RE.pattern + r"\Z")  # + key_problem
MAX_LOG_TAIL = 64 * 1024
IDENTITY_ROLES = ("person", "admin", "computer", "partition", "master",  # ca.identity
                  "replica")                                             # .ROLES
REPLICA_MODES = ("sync", "async")      # core.replication.MODES


def software_hash(url: str) -> str:
    """The key of a software release on disk and in routes: stable for a URL."""
    import hashlib

    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


def ecma(regex: re.Pattern) -> str:
    """A Python pattern of core (anchored ^...\\Z) as pydantic's and JSON Schema's: the
    same language there, where ``$`` (no multi-line flag) is the end of the text."""
    return regex.pattern.replace(r"\Z", "$")


OPEN_TO_SCHEMA = {
    "type": "array", "maxItems": MAX_OPEN_TO,
    "items": {"type": "string", "pattern": f"{ecma(PRINCIPAL_RE)}|^[*]$"},
    "description": "non-shared instances: who else may attach shared instances to this one: "
                   "[] its owner only (the requester of its tree's root), principals "
                   f"(person/NAME, master/PEER), or [\"{EVERYONE}\"] everyone; requesting "
                   "again replaces it, and shared instances no longer allowed are detached"}

_SLA_REF = {"type": "string", "minLength": 1, "maxLength": SLA_MAX_REFERENCE}
_SLA_VALUE = {"type": "string", "minLength": 1, "maxLength": MAX_VALUE}
_SLA_NAME = {**_SLA_VALUE, "pattern": ecma(SLA_NAME_RE)}
_SLA_REFS = {"oneOf": [_SLA_REF, {"type": "array", "items": _SLA_REF, "minItems": 1,
                                  "maxItems": MAX_REFERENCES_PER_KEY}],
             "description": "reference(s) of other instances of the same requester or "
                            "instance tree"}
SLA_ALTERNATIVE_SCHEMA = {
    "type": "object",
    "description": "Conditions that must all hold: absolute keys, labels as "
                   f"'{LABEL_PREFIX}KEY', relative keys naming other instances; "
                   "host_instance (shared requests): the id of the host to attach to, "
                   "which must be open to the requester. Unknown keys are refused.",
    "properties": {**{k: _SLA_NAME if k in (CAPABILITY_KEY, MASTER_KEY, HOST_KEY)
                      else _SLA_VALUE for k in ABSOLUTE_KEYS},
                   **{k: _SLA_REFS for k in RELATIVE_KEYS}},
    "patternProperties": {"^" + LABEL_PREFIX.replace(".", "\\.")
                          + ecma(SLA_NAME_RE)[1:]: _SLA_VALUE},
    "additionalProperties": False}
SLA_SCHEMA = {"oneOf": [SLA_ALTERNATIVE_SCHEMA,
                        {"type": "array", "items": SLA_ALTERNATIVE_SCHEMA, "minItems": 1,
                         "maxItems": MAX_ALTERNATIVES}],
              "description": "one alternative, or alternatives tried in order "
                             "([{\"continent\": \"europe\"}, {}] = Europe, else anywhere)"}
