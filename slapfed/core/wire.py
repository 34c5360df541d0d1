"""Wire types: the JSON bodies the master accepts, parsed into frozen value objects.

Depends on core.errors and core.states only. Parsing collects *every* problem and
raises one InvalidInput whose details are ``{"field": ..., "problem": ...}`` items;
unknown fields are refused, never ignored. Master and node share only these types.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from . import cfgvalue
from .errors import InvalidInput
from .provenance import NAME_RE as MASTER_NAME_RE, check_chain
from .sharing import parse_open_to
from .sla import HOST_KEY, is_capability_name, parse_sla
from .states import (
    LOCALITY_LEVELS, TRUST_LEVELS, MOVED_REPORT_STATES,
    AVAILABLE, DEFAULT_SOFTWARE_TYPE, PARTITION_REPORT_STATES, REQUESTED_STATES,
    SOFTWARE_REPORT_STATES, STARTED, SUPPLY_STATES,
)

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
SOFTWARE_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
PARAMETER_KEY_RE = re.compile(r"^" + cfgvalue.KEY_RE.pattern + r"\Z")  # + key_problem
HTTPS_URL_RE = re.compile(r"^https://\S+\Z")
URL_RE = re.compile(r"^(https?|file)://\S+\Z")
MAX_REFERENCE = 200
MAX_URL = 2048
MAX_TEXT = 256
MAX_LOG_TAIL = 64 * 1024
MAX_PARAMETERS_BYTES = 256 * 1024
MAX_CAPABILITIES = 32


def software_hash(url: str) -> str:
    """The key of a software release on disk and in routes: stable for a URL."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


class _Fields:
    """Reads a JSON object field by field, collecting problems instead of raising."""

    def __init__(self, body: Any, what: str, allowed: tuple[str, ...], prefix: str = ""):
        self.problems: list[dict] = []
        self.prefix = prefix
        if not isinstance(body, dict):
            self.body = {}
            self.problem("", f"{what} must be a JSON object, got {type(body).__name__}")
            return
        self.body = body
        for key in body:
            if key not in allowed:
                self.problem(key, f"unknown field (known: {', '.join(allowed)})")

    def problem(self, name: str, problem: str) -> None:
        fname = f"{self.prefix}{name}" if name else (self.prefix.rstrip(".") or "body")
        self.problems.append({"field": fname, "problem": problem})

    def string(self, name, *, required=False, default=None, max_len=MAX_TEXT, pattern=None,
               choices=None, allow_empty=False):
        if name not in self.body or self.body[name] is None:
            if required:
                self.problem(name, "is required")
            return default
        value = self.body[name]
        if not isinstance(value, str):
            self.problem(name, f"must be a string, got {type(value).__name__}")
            return default
        if not value and not allow_empty:
            self.problem(name, "must not be empty")
            return default
        if len(value) > max_len:
            self.problem(name, f"is {len(value)} characters long, the limit is {max_len}")
            return default
        problem = cfgvalue.text_problem(value) if max_len <= MAX_URL else None
        if problem:
            self.problem(name, problem)
            return default
        if choices is not None and value not in choices:
            self.problem(name, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        if pattern is not None and not pattern.match(value):
            self.problem(name, f"{value!r} does not match {pattern.pattern}")
            return default
        return value

    def boolean(self, name, default=False):
        if name not in self.body or self.body[name] is None:
            return default
        value = self.body[name]
        if not isinstance(value, bool):
            self.problem(name, f"must be true or false, got {json.dumps(value)[:40]}")
            return default
        return value

    def integer(self, name, *, required=False, default=None, minimum=None, maximum=None):
        if name not in self.body or self.body[name] is None:
            if required:
                self.problem(name, "is required")
            return default
        value = self.body[name]
        if isinstance(value, float) and value.is_integer():
            value = int(value)      # JSON has one number type: 2.0 is the integer 2
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(name, f"must be an integer, got {json.dumps(value)[:40]}")
            return default
        if minimum is not None and value < minimum:
            self.problem(name, f"must be >= {minimum}, got {value}")
            return default
        if maximum is not None and value > maximum:
            self.problem(name, f"must be <= {maximum}, got {value}")
            return default
        return value

    def obj(self, name, default=None):
        if name not in self.body or self.body[name] is None:
            return {} if default is None else default
        value = self.body[name]
        if not isinstance(value, dict):
            self.problem(name, f"must be a JSON object, got {type(value).__name__}")
            return {} if default is None else default
        return value

    def array(self, name):
        if name not in self.body or self.body[name] is None:
            return []
        value = self.body[name]
        if not isinstance(value, list):
            self.problem(name, f"must be a JSON array, got {type(value).__name__}")
            return []
        return value

    def raise_if_any(self, what: str) -> None:
        if self.problems:
            n = len(self.problems)
            first = self.problems[0]
            more = f" (and {n - 1} more)" if n > 1 else ""
            raise InvalidInput(
                f"invalid {what}: {first['field']} {first['problem']}{more}", self.problems)


def _check_software_url(f: _Fields, name: str, required=True):
    url = f.string(name, required=required, max_len=MAX_URL)
    if url is not None and not (url.startswith("/") or URL_RE.match(url)):
        f.problem(name, f"must be an absolute path or an http(s):// or file:// URL, got {url!r}")
        return None
    if url is not None and (any(c.isspace() for c in url) or not cfgvalue.is_plain(url)):
        f.problem(name, "must be one word of printable characters, without '${' and not "
                        f"ending in '$' (a node's buildout extends it), got {url!r}")
        return None
    return url


def _check_parameters(f: _Fields, name: str, options: bool = False) -> dict:
    """``options``: the keys become buildout option names on a node (instance
    parameters), so they must be plain identifiers (core.cfgvalue.key_problem)."""
    return _check_parameter_object(f, name, f.obj(name), options)


def check_connection(params: Any, name: str = "connection") -> dict:
    """Connection parameters as an instance publishes them (the checks of
    PartitionReport's ``connection``); InvalidInput naming ``name``."""
    f = _Fields({name: params}, name, (name,))
    out = _check_parameters(f, name)
    f.raise_if_any(name)
    return out


def _check_parameter_object(f: _Fields, name: str, params: dict, options: bool = False) -> dict:
    for key, value in params.items():
        problem = cfgvalue.key_problem(key) if options else (
            None if PARAMETER_KEY_RE.match(key)
            else f"parameter name must match {PARAMETER_KEY_RE.pattern}")
        if problem:
            f.problem(f"{name}.{key}", f"parameter name {key!r} {problem}" if options
                      else problem)
        if isinstance(value, (dict, list)) or value is None:
            continue
        if not isinstance(value, (str, int, float, bool)):
            f.problem(f"{name}.{key}", "must be a JSON value")
    if params and len(json.dumps(params)) > MAX_PARAMETERS_BYTES:
        f.problem(name, f"is larger than {MAX_PARAMETERS_BYTES} bytes")
    return params


def _check_shared_connections(f: _Fields, name: str) -> dict:
    """{shared instance id: connection parameters}, each checked like ``connection``."""
    out = {}
    for sid, params in f.obj(name).items():
        if not ID_RE.match(sid):
            f.problem(f"{name}.{sid}", f"instance id must match {ID_RE.pattern}")
            continue
        if not isinstance(params, dict):
            f.problem(f"{name}.{sid}", f"must be a JSON object of connection parameters, "
                                       f"got {type(params).__name__}")
            continue
        before = len(f.problems)
        _check_parameter_object(f, f"{name}.{sid}", params)
        if len(f.problems) == before:
            out[sid] = params
    return out


def _check_string_map(f: _Fields, name: str, keys: tuple[str, ...] | None = None) -> dict:
    raw = f.obj(name)
    out = {}
    for key, value in raw.items():
        if keys is not None and key not in keys:
            f.problem(f"{name}.{key}", f"unknown {name} key (known: {', '.join(keys)})")
            continue
        if cfgvalue.text_problem(key):
            f.problem(f"{name}.{key}", f"key {key!r} {cfgvalue.text_problem(key)}")
            continue
        if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
            f.problem(f"{name}.{key}", f"must be a non-empty string of at most {MAX_TEXT} characters")
            continue
        if cfgvalue.text_problem(value):
            f.problem(f"{name}.{key}", cfgvalue.text_problem(value))
            continue
        out[key] = value
    return out


@dataclass(frozen=True)
class InstanceRequest:
    """``POST /api/v1/instances``: the one verb.

    ``sla`` keeps the normal wire shape (core.sla): one object, or an array of at most
    MAX_ALTERNATIVES objects tried in order; ``sla_terms()`` parses it. ``open_to``
    (non-shared requests; core.sharing): who else may attach shared instances to this
    one — () the owner only, principals, or ("*",) everyone."""

    reference: str
    software_url: str
    software_type: str = DEFAULT_SOFTWARE_TYPE
    parameters: dict = field(default_factory=dict)
    sla: dict | list = field(default_factory=dict)
    state: str = STARTED
    shared: bool = False
    requester: str = "anonymous"
    parent: str | None = None
    provenance: tuple = ()      # the masters this request crossed, first to last
    open_to: tuple = ()         # who may attach shared instances to it, besides its owner

    FIELDS = ("reference", "software_url", "software_type", "parameters", "sla", "state",
              "shared", "requester", "parent", "provenance", "open_to")

    @classmethod
    def from_json(cls, body: Any) -> "InstanceRequest":
        f = _Fields(body, "request", cls.FIELDS)
        reference = f.string("reference", required=True, max_len=MAX_REFERENCE)
        url = _check_software_url(f, "software_url")
        stype = f.string("software_type", default=DEFAULT_SOFTWARE_TYPE, pattern=SOFTWARE_TYPE_RE)
        params = _check_parameters(f, "parameters", options=True)
        terms = parse_sla(f.body.get("sla"), "sla", reference, f.problems)
        sla = terms.to_json()
        state = f.string("state", default=STARTED, choices=REQUESTED_STATES)
        shared = f.boolean("shared")
        open_to = parse_open_to(f.body.get("open_to"), "open_to", f.problems)
        if open_to and shared:
            f.problem("open_to", "only a non-shared instance hosts shared ones; leave "
                                 "open_to out of a shared request")
        if not shared and any(alt.host for alt in terms.alternatives):
            f.problem(f"sla.{HOST_KEY}", "names a host to attach to, which only a shared "
                                         "request does")
        requester = f.string("requester", default="anonymous", max_len=MAX_TEXT)
        parent = f.string("parent", pattern=ID_RE)
        problems, provenance = check_chain(f.body.get("provenance"))
        f.problems.extend(problems)
        f.raise_if_any("request")
        return cls(reference, url, stype, params, sla, state, shared, requester, parent,
                   provenance, open_to)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.FIELDS}
        out["provenance"] = list(self.provenance)
        out["open_to"] = list(self.open_to)
        return out

    def sla_terms(self):
        """The parsed SLA (core.sla.Sla); InvalidInput when it was built invalid."""
        return parse_sla(self.sla, "sla", self.reference)


@dataclass(frozen=True)
class ChildMasterRegistration:
    """``PUT /api/v1/instances/<id>/child-master``: the master an instance runs, as it
    registers with the master that placed the instance (its parent)."""

    name: str
    url: str
    ca_certificate: str
    pairing_token: str | None = None   # a one-time token of the child's CA for the parent

    FIELDS = ("name", "url", "ca_certificate", "pairing_token")
    RECORD = ("name", "url", "ca_certificate")     # what the parent shows of it
    MAX_PEM = 16 * 1024

    @classmethod
    def from_json(cls, body: Any) -> "ChildMasterRegistration":
        f = _Fields(body, "child master registration", cls.FIELDS)
        name = f.string("name", required=True, pattern=MASTER_NAME_RE)
        url = f.string("url", required=True, max_len=MAX_URL, pattern=HTTPS_URL_RE)
        pem = f.string("ca_certificate", required=True, max_len=cls.MAX_PEM)
        if pem is not None and not pem.lstrip().startswith("-----BEGIN CERTIFICATE-----"):
            f.problem("ca_certificate", "must be a PEM certificate")
        token = f.string("pairing_token", max_len=256)
        f.raise_if_any("child master registration")
        return cls(name, url, pem, token or None)

    def to_json(self) -> dict:
        """The registration as the parent records and shows it (never the token)."""
        return {k: getattr(self, k) for k in self.RECORD}


@dataclass(frozen=True)
class StateChange:
    """``PUT /api/v1/instances/<id>/state``."""

    state: str

    @classmethod
    def from_json(cls, body: Any) -> "StateChange":
        f = _Fields(body, "state change", ("state",))
        state = f.string("state", required=True, choices=REQUESTED_STATES)
        f.raise_if_any("state change")
        return cls(state)


def _check_capabilities(f: _Fields, name: str) -> tuple:
    """A list of capability names (core.sla.NAME_RE), sorted, without repeats."""
    raw = f.array(name)
    if len(raw) > MAX_CAPABILITIES:
        f.problem(name, f"has {len(raw)} capabilities, the limit is {MAX_CAPABILITIES}")
        return ()
    out = set()
    for i, cap in enumerate(raw):
        if not is_capability_name(cap):
            f.problem(f"{name}[{i}]", f"{cap!r} is not a capability name "
                                      "(letters, digits, _ . : - ; at most 64)")
        else:
            out.add(cap)
    return tuple(sorted(out))


@dataclass(frozen=True)
class PartitionSpec:
    """A partition as a node declares it; a tagged partition (``capabilities``) only
    hosts instances whose SLA asks for one of its capabilities."""

    id: str
    address: str
    port_base: int
    port_count: int
    capabilities: tuple = ()

    FIELDS = ("id", "address", "port_base", "port_count", "capabilities")

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.FIELDS}
        out["capabilities"] = list(self.capabilities)
        return out


@dataclass(frozen=True)
class ComputerRegistration:
    """``POST /api/v1/computers``: a node declares itself and its partitions.

    ``capabilities`` tag the whole computer: it then only hosts instances whose SLA
    asks for one of them (``capability=gpu``)."""

    id: str
    host: str | None = None
    lan: str | None = None
    country: str | None = None
    continent: str | None = None
    labels: dict = field(default_factory=dict)
    partitions: tuple[PartitionSpec, ...] = ()
    capabilities: tuple = ()

    FIELDS = ("id", "host", "lan", "country", "continent", "labels", "partitions",
              "capabilities")

    @classmethod
    def from_json(cls, body: Any) -> "ComputerRegistration":
        f = _Fields(body, "computer", cls.FIELDS)
        cid = f.string("id", required=True, pattern=ID_RE)
        loc = {k: f.string(k) for k in LOCALITY_LEVELS}
        labels = _check_string_map(f, "labels")
        capabilities = _check_capabilities(f, "capabilities")
        parts = []
        seen = set()
        for i, raw in enumerate(f.array("partitions")):
            pf = _Fields(raw, "partition", PartitionSpec.FIELDS, prefix=f"partitions[{i}].")
            pid = pf.string("id", required=True, pattern=ID_RE)
            address = pf.string("address", required=True)
            if address is not None:
                try:
                    ipaddress.ip_address(address)
                except ValueError:
                    pf.problem("address", f"{address!r} is not an IP address")
            port_base = pf.integer("port_base", required=True, minimum=1, maximum=65535)
            port_count = pf.integer("port_count", default=10, minimum=1, maximum=65535)
            part_caps = _check_capabilities(pf, "capabilities")
            if pid in seen:
                pf.problem("id", f"partition {pid!r} is declared twice")
            seen.add(pid)
            f.problems.extend(pf.problems)
            if not pf.problems:
                parts.append(PartitionSpec(pid, address, port_base, port_count, part_caps))
        f.raise_if_any("computer")
        return cls(cid, labels=labels, partitions=tuple(parts), capabilities=capabilities,
                   **loc)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.FIELDS}
        out["partitions"] = [p.to_json() for p in self.partitions]
        out["capabilities"] = list(self.capabilities)
        return out


@dataclass(frozen=True)
class ComputerUpdate:
    """``PATCH /api/v1/computers/<id>`` (admins): the computer's facts, which a node may
    not change itself. Only the fields given change; a locality of ``null`` clears it,
    ``labels`` and ``capabilities`` replace the whole set."""

    changes: dict

    FIELDS = ("host", "lan", "country", "continent", "labels", "capabilities")

    @classmethod
    def from_json(cls, body: Any) -> "ComputerUpdate":
        f = _Fields(body, "computer update", cls.FIELDS)
        changes: dict = {}
        for name in LOCALITY_LEVELS:
            if name in f.body:
                value = f.string(name)
                if value is not None or f.body[name] is None:
                    changes[name] = value
        if "labels" in f.body:
            changes["labels"] = _check_string_map(f, "labels")
        if "capabilities" in f.body:
            changes["capabilities"] = _check_capabilities(f, "capabilities")
        if not f.problems and not changes:
            f.problem("body", f"give at least one of {', '.join(cls.FIELDS)}")
        f.raise_if_any("computer update")
        return cls(changes)


@dataclass(frozen=True)
class LostVerdict:
    """``POST /api/v1/computers/<id>/lost`` (admins): the computer is lost; what it hosts
    is placed again elsewhere. ``reason`` is recorded with the verdict; ``dry_run``
    answers what would move and writes nothing."""

    reason: str = ""
    dry_run: bool = False

    FIELDS = ("reason", "dry_run")

    @classmethod
    def from_json(cls, body: Any) -> "LostVerdict":
        f = _Fields(body, "lost verdict", cls.FIELDS)
        reason = f.string("reason", default="", allow_empty=True)
        dry_run = f.boolean("dry_run")
        f.raise_if_any("lost verdict")
        return cls(reason or "", dry_run)


@dataclass(frozen=True)
class WipeRequest:
    """``POST /api/v1/computers/<id>/wipe`` (admins): let the node erase the data kept of
    instances that moved away (``partition``: that one only)."""

    partition: str | None = None

    @classmethod
    def from_json(cls, body: Any) -> "WipeRequest":
        f = _Fields(body, "wipe request", ("partition",))
        partition = f.string("partition", pattern=ID_RE)
        f.raise_if_any("wipe request")
        return cls(partition)


@dataclass(frozen=True)
class MovedReport:
    """``PUT /api/v1/computers/<id>/partitions/<pid>/moved``: the node's word on a
    partition whose instance moved away: quarantined (set aside) or erased."""

    instance_id: str
    state: str

    @classmethod
    def from_json(cls, body: Any) -> "MovedReport":
        f = _Fields(body, "moved report", ("instance_id", "state"))
        iid = f.string("instance_id", required=True, pattern=ID_RE)
        state = f.string("state", required=True, choices=MOVED_REPORT_STATES)
        f.raise_if_any("moved report")
        return cls(iid, state)

    def to_json(self) -> dict:
        return {"instance_id": self.instance_id, "state": self.state}


@dataclass(frozen=True)
class Supply:
    """``POST /api/v1/computers/<id>/software``: supply (or unsupply) a release."""

    url: str
    state: str = AVAILABLE

    @classmethod
    def from_json(cls, body: Any) -> "Supply":
        f = _Fields(body, "supply", ("url", "state"))
        url = _check_software_url(f, "url")
        state = f.string("state", default=AVAILABLE, choices=SUPPLY_STATES)
        f.raise_if_any("supply")
        return cls(url, state)


@dataclass(frozen=True)
class SoftwareReport:
    """``PUT /api/v1/computers/<id>/software/<hash>/status``: the node's install outcome."""

    status: str
    log_tail: str = ""
    software_types: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, body: Any) -> "SoftwareReport":
        f = _Fields(body, "software report", ("status", "log_tail", "software_types"))
        status = f.string("status", required=True, choices=SOFTWARE_REPORT_STATES)
        log_tail = f.string("log_tail", default="", max_len=MAX_LOG_TAIL, allow_empty=True)
        types = []
        for i, t in enumerate(f.array("software_types")):
            if not isinstance(t, str) or not SOFTWARE_TYPE_RE.match(t):
                f.problem(f"software_types[{i}]", f"must match {SOFTWARE_TYPE_RE.pattern}")
            else:
                types.append(t)
        f.raise_if_any("software report")
        return cls(status, log_tail or "", tuple(sorted(set(types))))


@dataclass(frozen=True)
class PromiseResult:
    name: str
    ok: bool
    message: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "message": self.message}


@dataclass(frozen=True)
class PartitionReport:
    """``PUT /api/v1/computers/<id>/partitions/<pid>/status``: what the node observed.

    ``shared_connections`` (optional): the connection parameters a host instance
    published for each of its shared instances, by shared instance id."""

    instance_id: str
    revision: int
    state: str
    log_tail: str = ""
    connection: dict = field(default_factory=dict)
    promises: tuple[PromiseResult, ...] = ()
    shared_connections: dict = field(default_factory=dict)

    FIELDS = ("instance_id", "revision", "state", "log_tail", "connection", "promises",
              "shared_connections")

    @classmethod
    def from_json(cls, body: Any) -> "PartitionReport":
        f = _Fields(body, "partition report", cls.FIELDS)
        iid = f.string("instance_id", required=True, pattern=ID_RE)
        revision = f.integer("revision", required=True, minimum=0)
        state = f.string("state", required=True, choices=PARTITION_REPORT_STATES)
        log_tail = f.string("log_tail", default="", max_len=MAX_LOG_TAIL, allow_empty=True)
        connection = _check_parameters(f, "connection")
        promises = []
        for i, raw in enumerate(f.array("promises")):
            pf = _Fields(raw, "promise", ("name", "ok", "message"), prefix=f"promises[{i}].")
            name = pf.string("name", required=True)
            ok = pf.boolean("ok")
            msg = pf.string("message", default="", max_len=MAX_LOG_TAIL, allow_empty=True)
            f.problems.extend(pf.problems)
            if not pf.problems:
                promises.append(PromiseResult(name, ok, msg or ""))
        shared_connections = _check_shared_connections(f, "shared_connections")
        f.raise_if_any("partition report")
        return cls(iid, revision, state, log_tail or "", connection, tuple(promises),
                   shared_connections)

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.FIELDS}
        out["promises"] = [p.to_json() for p in self.promises]
        return out


# -- identity and certificates ------------------------------------------------------
MAX_PEM = 16 * 1024          # a CSR of any accepted key type fits easily
MAX_HOSTS = 16


@dataclass(frozen=True)
class CertificateSigning:
    """``POST /computers/<cid>/partitions/<pid>/certificate``: a partition's CSR (PEM)."""

    csr: str

    @classmethod
    def from_json(cls, body: Any) -> "CertificateSigning":
        f = _Fields(body, "certificate signing request", ("csr",))
        csr = f.string("csr", required=True, max_len=MAX_PEM)
        f.raise_if_any("certificate signing request")
        return cls(csr)


@dataclass(frozen=True)
class TokenRedemption:
    """``POST /node-certificates``: a node trades its one-time token and CSR for a certificate."""

    token: str
    csr: str

    @classmethod
    def from_json(cls, body: Any) -> "TokenRedemption":
        f = _Fields(body, "token redemption", ("token", "csr"))
        token = f.string("token", required=True, max_len=256)
        csr = f.string("csr", required=True, max_len=MAX_PEM)
        f.raise_if_any("token redemption")
        return cls(token, csr)


@dataclass(frozen=True)
class CertificateIssue:
    """``POST /certificates`` (admins): certify a CSR as ``role``/``name``."""

    role: str
    name: str
    csr: str
    days: int | None = None
    hosts: tuple = ()

    @classmethod
    def from_json(cls, body: Any) -> "CertificateIssue":
        f = _Fields(body, "certificate", ("role", "name", "csr", "days", "hosts"))
        role = f.string("role", required=True, max_len=32)
        name = f.string("name", required=True, max_len=200)
        csr = f.string("csr", required=True, max_len=MAX_PEM)
        days = f.integer("days", minimum=1, maximum=3650)
        hosts = f.array("hosts")
        if len(hosts) > MAX_HOSTS or not all(isinstance(h, str) and 0 < len(h) <= 253
                                             for h in hosts):
            f.problem("hosts", f"must be at most {MAX_HOSTS} host names or addresses")
            hosts = []
        f.raise_if_any("certificate")
        return cls(role, name, csr, days, tuple(hosts))


@dataclass(frozen=True)
class TokenCreation:
    """``POST /tokens`` (admins): a one-time registration token for a computer, or for a
    peer master (``master``: the name it will have here)."""

    computer: str | None
    ttl: int | None = None
    master: str | None = None

    @classmethod
    def from_json(cls, body: Any) -> "TokenCreation":
        f = _Fields(body, "token", ("computer", "master", "ttl"))
        computer = f.string("computer", pattern=ID_RE)
        master = f.string("master", pattern=MASTER_NAME_RE)
        if (computer is None) == (master is None) and not f.problems:
            f.problem("computer", "give exactly one of computer and master")
        ttl = f.integer("ttl", minimum=1, maximum=30 * 24 * 3600)
        f.raise_if_any("token")
        return cls(computer, ttl, master)


@dataclass(frozen=True)
class PeerAddition:
    """``POST /peers`` (admins): pair with a peer master — its URL, its CA certificate and
    the one-time token it gave this master — plus what this master knows of the link."""

    name: str
    url: str
    ca_certificate: str
    token: str | None = None
    trust: str | None = None
    cost: float | None = None
    latency_ms: float | None = None
    site: str | None = None

    FIELDS = ("name", "url", "ca_certificate", "token", "trust", "cost", "latency_ms", "site")
    TRUST = TRUST_LEVELS

    @classmethod
    def from_json(cls, body: Any) -> "PeerAddition":
        f = _Fields(body, "peer", cls.FIELDS)
        name = f.string("name", required=True, pattern=MASTER_NAME_RE)
        url = f.string("url", required=True, max_len=MAX_URL, pattern=HTTPS_URL_RE)
        pem = f.string("ca_certificate", required=True, max_len=MAX_PEM)
        if pem is not None and not pem.lstrip().startswith("-----BEGIN CERTIFICATE-----"):
            f.problem("ca_certificate", "must be a PEM certificate")
        token = f.string("token", max_len=MAX_TEXT)
        link = _link_facts(f)
        f.raise_if_any("peer")
        return cls(name, url.rstrip("/"), pem, token, **link)


def _link_facts(f: _Fields) -> dict:
    """What a master knows of a link to a peer: trust, cost, latency_ms, site (each
    optional; numbers finite and >= 0)."""
    out = {"trust": f.string("trust", choices=PeerAddition.TRUST)}
    for key in ("cost", "latency_ms"):
        value = f.body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value < 0):
            f.problem(key, "must be a finite number >= 0")
            value = None
        out[key] = None if value is None else float(value)
    out["site"] = f.string("site", pattern=ID_RE)
    return out


@dataclass(frozen=True)
class PeerUpdate:
    """``PATCH /peers/<name>`` (admins): what this master knows of a peer's link; only
    the fields given change."""

    trust: str | None = None
    cost: float | None = None
    latency_ms: float | None = None
    site: str | None = None

    FIELDS = ("trust", "cost", "latency_ms", "site")

    @classmethod
    def from_json(cls, body: Any) -> "PeerUpdate":
        f = _Fields(body, "peer update", cls.FIELDS)
        link = _link_facts(f)
        if not f.problems and not any(v is not None for v in link.values()):
            f.problem("trust", f"give at least one of {', '.join(cls.FIELDS)}")
        f.raise_if_any("peer update")
        return cls(**link)

    def changes(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS if getattr(self, k) is not None}


@dataclass(frozen=True)
class Revocation:
    """``POST /certificates/<serial>/revocation``."""

    reason: str = "unspecified"

    @classmethod
    def from_json(cls, body: Any) -> "Revocation":
        f = _Fields(body, "revocation", ("reason",))
        reason = f.string("reason", default="unspecified", max_len=64)
        f.raise_if_any("revocation")
        return cls(reason)


@dataclass(frozen=True)
class ReplicaInvitation:
    """``POST /replication/invitations`` (admins): a one-time token for replica ``name``."""

    name: str
    ttl: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> "ReplicaInvitation":
        f = _Fields(body, "replica invitation", ("name", "ttl"))
        name = f.string("name", required=True, pattern=MASTER_NAME_RE)
        ttl = f.integer("ttl", minimum=1, maximum=30 * 24 * 3600)
        f.raise_if_any("replica invitation")
        return cls(name, ttl)


REPLICA_MODES = ("sync", "async")      # core.replication.MODES
HTTP_URL_RE = re.compile(r"^https?://\S+\Z")
REPLICA_URL_MAX = 300


@dataclass(frozen=True)
class ReplicaRegistration:
    """``PUT /replication/replicas/<name>``: where a replica serves, and its mode."""

    url: str | None
    mode: str

    @classmethod
    def from_json(cls, body: Any) -> "ReplicaRegistration":
        f = _Fields(body, "replica registration", ("url", "mode"))
        url = f.string("url", max_len=REPLICA_URL_MAX, pattern=HTTP_URL_RE)
        mode = f.string("mode", required=True, choices=REPLICA_MODES)
        f.raise_if_any("replica registration")
        return cls(url, mode)


@dataclass(frozen=True)
class Promotion:
    """``POST /replication/promotion`` (admins): an empty object (nothing to choose)."""

    @classmethod
    def from_json(cls, body: Any) -> "Promotion":
        f = _Fields(body, "promotion", ())
        f.raise_if_any("promotion")
        return cls()
