"""Wire types: the JSON bodies the master accepts, declared once as pydantic dataclasses.

Depends on pydantic, core.errors, core.fields (the patterns, limits and schemas it
shares with code that must not load pydantic), core.cfgvalue, core.sla, core.sharing,
core.provenance and core.states. Each type is at once the schema of its body (the OpenAPI
document is generated from these declarations, master.apidoc), its validator and the
frozen value object the services receive. ``Type.from_json(body)`` (or :func:`parse`) validates a
decoded body: pydantic collects *every* problem, and they are raised as one
InvalidInput whose details are ``{"field": ..., "problem": ...}`` items, fields dotted
(``partitions[0].address``); unknown fields are refused, never ignored. A field given
as ``null`` is the same as a field left out (its default).

Scalars are checked by pydantic itself (strict types: a string is never a number, a
boolean never an integer; JSON's one number type makes ``2.0`` the integer 2); the
small languages of the bodies -- SLA terms (core.sla), instance parameters that become
buildout options (core.cfgvalue), open_to (core.sharing), provenance chains
(core.provenance) -- are checked by their own modules and declare their JSON Schema
beside their validator. Patterns are anchored at both ends and never accept a trailing
line break (``\\Z`` in Python, ``$`` for pydantic's regex engine and JSON Schema, which
mean the same there).
"""
from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
import typing
from dataclasses import asdict, field
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError, WithJsonSchema,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from . import cfgvalue, sealed
from .errors import InvalidInput
from .provenance import NAME_RE as MASTER_NAME_RE, check_chain
from .sharing import parse_open_to
from .sla import HOST_KEY, MAX_ALTERNATIVES, NAME_RE as SLA_NAME_RE, is_capability_name, parse_sla
from .states import (
    TRUST_LEVELS, AVAILABLE, DEFAULT_SOFTWARE_TYPE, MOVED_REPORT_STATES,
    PARTITION_REPORT_STATES, REQUESTED_STATES, SOFTWARE_REPORT_STATES, STARTED,
    SUPPLY_STATES,
)

from .fields import (  # noqa: F401 - also read from here; core.fields needs no pydantic
    ID_RE, IDENTITY_ROLES, MAX_LOG_TAIL, OPEN_TO_SCHEMA, PARAMETER_KEY_RE, REPLICA_MODES,
    SLA_ALTERNATIVE_SCHEMA, SLA_SCHEMA, SOFTWARE_TYPE_RE, ecma, software_hash,
)
HTTPS_URL_RE = re.compile(r"^https://\S+\Z")
URL_RE = re.compile(r"^(https?|file)://\S+\Z")
MAX_REFERENCE = 200
MAX_URL = 2048
MAX_TEXT = 256
MAX_PARAMETERS_BYTES = 256 * 1024
MAX_CAPABILITIES = 32
MAX_PEM = 16 * 1024          # a CSR of any accepted key type fits easily
MAX_HOSTS = 16
REVOCATION_REASONS = ("unspecified", "key_compromise", "ca_compromise",    # RFC 5280 names,
                      "affiliation_changed", "superseded",                 # as in ca.authority
                      "cessation_of_operation", "privilege_withdrawn")


# -- problems: what pydantic found, in slapfed's words ---------------------------------
def problem(text: str) -> PydanticCustomError:
    """The error a validator raises for one problem of its own value."""
    return PydanticCustomError("slapfed_problem", "{problem}", {"problem": text})


def problems(items: list[dict]) -> PydanticCustomError:
    """The error a validator raises for several problems found inside its value (each
    ``field`` relative to it: ``""``, ``".key"`` or ``"[i]"``)."""
    return PydanticCustomError("slapfed_problems", "{first}",
                               {"first": items[0]["problem"], "problems": items})


# control characters, line/paragraph separators (core.cfgvalue.text_problem)
NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"
_KIND = {dict: "dict", list: "list", str: "str", int: "int", float: "float", bool: "bool",
         type(None): "NoneType"}


def _json_text(value) -> str:
    return json.dumps(value, default=str)[:40]


def _name(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@functools.lru_cache(maxsize=256)
def _known(cls, loc) -> tuple[str, ...]:
    """The fields of the wire type found at ``loc`` inside ``cls``."""
    for part in loc:
        if isinstance(part, int):
            continue
        info = cls.__pydantic_fields__.get(part)
        nested = _dataclass_in(info.annotation) if info is not None else None
        if nested is None:
            break
        cls = nested
    return tuple(cls.__pydantic_fields__)


def _dataclass_in(hint):
    if hasattr(hint, "__pydantic_fields__"):
        return hint
    for arg in typing.get_args(hint):
        found = _dataclass_in(arg)
        if found is not None:
            return found
    return None


def _kind(value) -> str:
    return _KIND.get(type(value)) or type(value).__name__


def _pattern_problem(cls, loc, value, ctx):
    if ctx.get("pattern") == NO_CONTROL:
        return cfgvalue.text_problem(value)
    return f"{value!r} does not match {ctx.get('pattern')}"


def _choices(cls, loc, value, ctx):
    choices = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
    return f"must be one of {choices}, got {value!r}"


def _unknown(cls, loc, value, ctx):
    known = _known(cls, tuple(loc[:-1]))
    return f"unknown field (known: {', '.join(known)})" if known else \
        "unknown field (this object has none)"


def _required(*_):
    return "is required"


def _object_expected(cls, loc, value, ctx):
    return f"must be a JSON object, got {_kind(value)}"


def _array_expected(cls, loc, value, ctx):
    return f"must be a JSON array, got {_kind(value)}"


def _integer_expected(cls, loc, value, ctx):
    return f"must be an integer, got {_json_text(value)}"


# pydantic's error types -> the problem, in slapfed's words (cls, loc, input, ctx)
_WORDS = {
    "slapfed_problem": lambda cls, loc, value, ctx: ctx["problem"],
    "missing": _required, "missing_keyword_argument": _required,
    "missing_argument": _required,
    "extra_forbidden": _unknown, "unexpected_keyword_argument": _unknown,
    "dataclass_type": _object_expected, "dataclass_args_type": _object_expected,
    "model_type": _object_expected, "dict_type": _object_expected,
    "list_type": _array_expected, "tuple_type": _array_expected,
    "string_type": lambda cls, loc, value, ctx: f"must be a string, got {_kind(value)}",
    "string_unicode": lambda *_: "must not contain lone surrogates",
    "string_too_short": lambda *_: "must not be empty",
    "string_too_long": lambda cls, loc, value, ctx:
        f"is {len(value)} characters long, the limit is {ctx['max_length']}",
    "string_pattern_mismatch": _pattern_problem,
    "literal_error": _choices,
    "bool_type": lambda cls, loc, value, ctx:
        f"must be true or false, got {_json_text(value)}",
    "int_type": _integer_expected, "int_from_float": _integer_expected,
    "int_parsing": _integer_expected,
    "greater_than_equal": lambda cls, loc, value, ctx: f"must be >= {ctx['ge']}, got {value}",
    "less_than_equal": lambda cls, loc, value, ctx: f"must be <= {ctx['le']}, got {value}",
    "too_short": lambda cls, loc, value, ctx: "must not be empty"
        if ctx.get("min_length", 1) <= 1 else
        f"has {ctx.get('actual_length')} items, at least {ctx.get('min_length')} are needed",
    "too_long": lambda cls, loc, value, ctx:
        f"has {ctx.get('actual_length')} items, the limit is {ctx.get('max_length')}",
}


def _describe(cls, err: dict) -> list[dict]:
    """One pydantic error as slapfed details (``{"field", "problem"}`` items)."""
    kind, loc, ctx = err["type"], err["loc"], err.get("ctx") or {}
    name = _name(loc)
    if kind == "slapfed_problems":
        return [{"field": (name + p["field"]) if name else (p["field"].lstrip(".") or "body"),
                 "problem": p["problem"]} for p in ctx["problems"]]
    words = _WORDS.get(kind)
    text = words(cls, loc, err.get("input"), ctx) if words else err["msg"]
    return [{"field": name or "body", "problem": text}]


def parse(cls, body: Any):
    """``body`` (decoded JSON) as wire type ``cls``; InvalidInput listing every problem."""
    try:
        return _adapter(cls).validate_python(body)
    except ValidationError as exc:
        details = [d for err in exc.errors(include_url=False) for d in _describe(cls, err)]
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    raise InvalidInput(f"invalid {cls.WHAT}: {first['field']} {first['problem']}{more}",
                       details)


_ADAPTERS: dict = {}


def _adapter(cls) -> TypeAdapter:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def json_schemas(types, ref_template: str) -> dict:
    """{name: JSON Schema} of the wire ``types`` and of everything they refer to."""
    _, defs = TypeAdapter.json_schemas([(t, "validation", _adapter(t)) for t in types],
                                       ref_template=ref_template)
    return defs.get("$defs", {})


# -- the field types ---------------------------------------------------------------------
def _integral(value):
    """JSON has one number type: 2.0 is the integer 2."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _drop_nulls(cls, data):
    """A field given as null is a field left out (its default); an unknown one stays,
    to be refused."""
    if isinstance(data, dict) and None in data.values():
        known = cls.__pydantic_fields__
        return {k: v for k, v in data.items() if v is not None or k not in known}
    return data


def Text(max_len: int = MAX_TEXT, pattern: str | None = NO_CONTROL, min_len: int = 1,
         **extra):
    """A string; ``pattern`` (default: no control characters) in pydantic's syntax."""
    return Annotated[str, Strict(), Field(min_length=min_len, max_length=max_len,
                                          pattern=pattern, **extra)]


def Int(minimum=None, maximum=None, **extra):
    # the constraints first: then they are the schema's minimum and maximum
    return Annotated[int, Field(ge=minimum, le=maximum, **extra), BeforeValidator(_integral),
                     Strict()]


Bool = Annotated[bool, Strict()]
Id = Text(64, ecma(ID_RE))
# what names an instance within its requester's: a request's, a rename's
Reference = Text(MAX_REFERENCE)
MasterName = Text(64, ecma(MASTER_NAME_RE))
SoftwareType = Text(64, ecma(SOFTWARE_TYPE_RE))
LogTail = Text(MAX_LOG_TAIL, None, 0)


def Choice(values):
    return Literal[tuple(values)]


def _software_url(value):
    if not isinstance(value, str):
        return value                      # the string type says what is wrong
    if value and not (value.startswith("/") or URL_RE.match(value)):
        raise problem(f"must be an absolute path or an http(s):// or file:// URL, got "
                      f"{value!r}")
    if value and (any(c.isspace() for c in value) or not cfgvalue.is_plain(value)):
        raise problem("must be one word of printable characters, without '${' and not "
                      f"ending in '$' (a node's buildout extends it), got {value!r}")
    return value


# absolute paths and http(s)/file URLs of visible ASCII, without '$' (no '${', no
# trailing '$': a node's buildout extends the release); the server also takes other
# printable characters
SoftwareUrl = Annotated[
    str, BeforeValidator(_software_url), Strict(), Field(min_length=1, max_length=MAX_URL,
                                                         pattern=NO_CONTROL),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_URL,
                    "pattern": r"^(?:/[!-#%-~]*|(?:https?|file)://[!-#%-~]+)$",
                    "description": "absolute path or http(s):// or file:// URL of a "
                                   "software release (buildout profile)"})]
HttpsUrl = Text(MAX_URL, ecma(HTTPS_URL_RE))


def _pem_certificate(value):
    if isinstance(value, str) and value and \
            not value.lstrip().startswith("-----BEGIN CERTIFICATE-----"):
        raise problem("must be a PEM certificate")
    return value


PemCertificate = Annotated[
    str, BeforeValidator(_pem_certificate), Strict(), Field(min_length=1, max_length=MAX_PEM),
    WithJsonSchema({"type": "string", "maxLength": MAX_PEM,
                    "pattern": r"^\s*-----BEGIN CERTIFICATE-----", "description": "PEM text"})]
Csr = Text(MAX_PEM, None, description="PEM text of a certificate signing request")


def _parameter_object(params, options: bool) -> list[dict]:
    out = []
    for key, value in params.items():
        problem_ = cfgvalue.key_problem(key) if options else (
            None if PARAMETER_KEY_RE.match(key)
            else f"parameter name must match {PARAMETER_KEY_RE.pattern}")
        if problem_:
            out.append({"field": f".{key}", "problem": f"parameter name {key!r} {problem_}"
                        if options else problem_})
        if not (value is None or isinstance(value, (dict, list, str, int, float, bool))):
            out.append({"field": f".{key}", "problem": "must be a JSON value"})
        elif (sealed.parameter_problem if options else sealed.shape_problem)(value):
            # a relay cannot open a sealed value, but refuses one that is not one
            out.append({"field": f".{key}", "problem": sealed.shape_problem(value)})
    if params and len(json.dumps(params, default=str)) > MAX_PARAMETERS_BYTES:
        out.append({"field": "", "problem": f"is larger than {MAX_PARAMETERS_BYTES} bytes"})
    return out


def _object(value, what: str = "a JSON object") -> dict:
    if not isinstance(value, dict):
        raise problem(f"must be {what}, got {_KIND.get(type(value), type(value).__name__)}")
    return value


def _options(value):
    found = _parameter_object(_object(value), options=True)
    if found:
        raise problems(found)
    return value


def _connection(value):
    found = _parameter_object(_object(value), options=False)
    if found:
        raise problems(found)
    return value


# instance parameters become buildout options on a node: plain identifiers, none ending
# in '-', not 'recipe' (core.cfgvalue.key_problem)
OPTION_NAME = r"^[A-Za-z_](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9_.])?$"
Parameters = Annotated[dict, BeforeValidator(_options), WithJsonSchema(
    {"type": "object", "propertyNames": {"pattern": OPTION_NAME, "not": {"const": "recipe"}},
     "description": "instance parameters (any JSON values); the names become buildout "
                    "options on a node"})]
Connection = Annotated[dict, BeforeValidator(_connection), WithJsonSchema(
    {"type": "object", "propertyNames": {"pattern": ecma(PARAMETER_KEY_RE)}})]


def check_connection(params: Any, name: str = "connection") -> dict:
    """Connection parameters as an instance publishes them (the checks of
    PartitionReport's ``connection``); InvalidInput naming ``name``."""
    try:
        return _connection(params)
    except PydanticCustomError as exc:
        ctx = exc.context or {}
        details = ([{"field": name + p["field"], "problem": p["problem"]}
                    for p in ctx["problems"]] if "problems" in ctx
                   else [{"field": name, "problem": ctx.get("problem", exc.message())}])
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    raise InvalidInput(f"invalid {name}: {details[0]['field']} {details[0]['problem']}{more}",
                       details)


def _shared_connections(value):
    found, out = [], {}
    for sid, params in _object(value).items():
        if not ID_RE.match(sid):
            found.append({"field": f".{sid}", "problem": f"instance id must match "
                                                         f"{ID_RE.pattern}"})
            continue
        if not isinstance(params, dict):
            found.append({"field": f".{sid}", "problem": "must be a JSON object of connection "
                          f"parameters, got {_KIND.get(type(params), type(params).__name__)}"})
            continue
        mine = _parameter_object(params, options=False)
        found += [{**p, "field": f".{sid}{p['field']}"} for p in mine]
        if not mine:
            out[sid] = params
    if found:
        raise problems(found)
    return out


SharedConnections = Annotated[dict, BeforeValidator(_shared_connections), WithJsonSchema(
    {"type": "object", "propertyNames": {"pattern": ecma(ID_RE)},
     "additionalProperties": {"type": "object",
                              "propertyNames": {"pattern": ecma(PARAMETER_KEY_RE)}},
     "description": "connection parameters the host instance published for its shared "
                    "instances, by shared instance id; each becomes that shared instance's "
                    "connection (ids it does not host are ignored)"})]


def _labels(value):
    found, out = [], {}
    for key, item in _object(value).items():
        if cfgvalue.text_problem(key):
            found.append({"field": f".{key}", "problem": f"key {key!r} "
                                                         f"{cfgvalue.text_problem(key)}"})
        elif not isinstance(item, str) or not item or len(item) > MAX_TEXT:
            found.append({"field": f".{key}", "problem": "must be a non-empty string of at "
                                                         f"most {MAX_TEXT} characters"})
        elif cfgvalue.text_problem(item):
            found.append({"field": f".{key}", "problem": cfgvalue.text_problem(item)})
        else:
            out[key] = item
    if found:
        raise problems(found)
    return out


Labels = Annotated[dict, BeforeValidator(_labels), WithJsonSchema(
    {"type": "object", "propertyNames": {"pattern": NO_CONTROL},
     "additionalProperties": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT,
                              "pattern": NO_CONTROL}})]


def _capabilities(value):
    """A list of capability names (core.sla.NAME_RE), sorted, without repeats."""
    if not isinstance(value, (list, tuple)):
        raise problem(f"must be a JSON array, got "
                      f"{_KIND.get(type(value), type(value).__name__)}")
    if len(value) > MAX_CAPABILITIES:
        raise problem(f"has {len(value)} capabilities, the limit is {MAX_CAPABILITIES}")
    found = [{"field": f"[{i}]", "problem": f"{cap!r} is not a capability name "
              "(letters, digits, _ . : - ; at most 64)"}
             for i, cap in enumerate(value) if not is_capability_name(cap)]
    if found:
        raise problems(found)
    return tuple(sorted(set(value)))


Capabilities = Annotated[tuple, BeforeValidator(_capabilities), WithJsonSchema(
    {"type": "array", "maxItems": MAX_CAPABILITIES,
     "items": {"type": "string", "pattern": ecma(SLA_NAME_RE)},
     "description": "capability names; a tagged computer or partition only hosts "
                    "instances whose SLA asks for one of them"})]


def _provenance(value):
    found, chain = check_chain(value, "")
    if found:
        raise problems(found)
    return chain


Provenance = Annotated[tuple, BeforeValidator(_provenance), WithJsonSchema(
    {"type": "array", "items": {"type": "string", "pattern": ecma(MASTER_NAME_RE)},
     "description": "masters the request already crossed, root first"})]


def _open_to(value):
    found: list = []
    out = parse_open_to(list(value) if isinstance(value, tuple) else value, "", found)
    if found:
        raise problems(found)
    return out


OpenTo = Annotated[tuple, BeforeValidator(_open_to), WithJsonSchema(OPEN_TO_SCHEMA)]



def _sla(value, info):
    found: list = []
    reference = info.data.get("reference") if info.data else None
    terms = parse_sla(value, "", reference, found)
    if found:
        raise problems(found)
    return terms.to_json()


SlaTerms = Annotated[Any, BeforeValidator(_sla), WithJsonSchema(SLA_SCHEMA)]


def _finite(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise problem("must be a finite number >= 0")
    return float(value)


Finite = Annotated[float, BeforeValidator(_finite),
                   WithJsonSchema({"type": "number", "minimum": 0})]


def _ip_address(value):
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise problem(f"{value!r} is not an IP address") from None
    return value


IpAddress = Annotated[str, BeforeValidator(_ip_address), Strict(), WithJsonSchema(
    {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
     "description": "an IPv4 or IPv6 address"})]

WIRE = ConfigDict(extra="forbid", defer_build=True)
_NULLS = model_validator(mode="before")(classmethod(_drop_nulls))


def wire_type(what: str, **schema):
    """A frozen pydantic dataclass refusing unknown fields; ``what`` names it in errors;
    ``schema``: what its JSON Schema says besides its fields (rules across fields)."""
    def decorate(cls):
        cls.WHAT = what
        config = ConfigDict(WIRE, json_schema_extra=schema) if schema else WIRE
        cls = dataclass(frozen=True, config=config)(cls)
        cls.from_json = classmethod(parse)
        return cls
    return decorate


def evolve(obj, **changes):
    """A copy of the validated wire object ``obj`` with ``changes``: values the master
    computed itself (the caller's principal, an id read from its database, the
    provenance chain it extended), so they are not validated again, which
    ``dataclasses.replace`` would do at the cost of a whole new validation. A name that
    is not a field raises TypeError, as ``replace`` does."""
    unknown = set(changes) - set(obj.__dataclass_fields__)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__, **changes)
    return new


# -- sealing through delegation: the recipient a forwarded request carries ------------
FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}\Z")


@wire_type("recipient")
class ForwardedRecipient:
    """Whom the secrets of a delegated instance are sealed to: the certificate of the
    requester at the master it asked (the origin), its SHA-256 and the id the instance
    has there (what the values are bound to). Only a peer master forwarding a delegation
    names one, and only the one it was given (master.instances.forwarded_recipient)."""

    certificate: PemCertificate
    fingerprint: Annotated[Text(64, ecma(FINGERPRINT_RE)), Field(
        description="SHA-256 of the certificate (lowercase hex)")]
    instance: Annotated[Id, Field(description="the instance's id at the origin master: "
                                              "its secrets are bound to it")]

    FIELDS = ("certificate", "fingerprint", "instance")

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}


# -- the bodies ------------------------------------------------------------------------
@wire_type(
    "request",
    # open_to is for hosts, host_instance for shared requests
    **{"if": {"properties": {"shared": {"const": True}}, "required": ["shared"]},
       "then": {"properties": {"open_to": {"anyOf": [{"type": "null"}, {"maxItems": 0}]}}},
       "else": {"properties": {"sla": {"not": {"anyOf": [
           {"type": "object", "required": [HOST_KEY]},
           {"type": "array", "contains": {"type": "object", "required": [HOST_KEY]}}]}}}},
       "description": "relative SLA keys must name other existing instances of the "
                      "requester (or of its tree), never the one requested, and must not "
                      "contradict each other"})
class InstanceRequest:
    """``POST /api/v1/instances``: the one verb.

    ``sla`` keeps the normal wire shape (core.sla): one object, or an array of at most
    MAX_ALTERNATIVES objects tried in order; ``sla_terms()`` parses it. ``open_to``
    (non-shared requests; core.sharing): who else may attach shared instances to this
    one — () the owner only, principals, or ("*",) everyone."""

    reference: Reference
    software_url: SoftwareUrl
    software_type: Optional[SoftwareType] = DEFAULT_SOFTWARE_TYPE
    parameters: Optional[Parameters] = field(default_factory=dict)
    sla: Optional[SlaTerms] = field(default_factory=dict)
    state: Optional[Choice(REQUESTED_STATES)] = STARTED
    shared: Optional[Bool] = False
    requester: Optional[Text()] = "anonymous"
    parent: Optional[Annotated[Id, Field(description="id of the parent instance")]] = None
    provenance: Optional[Provenance] = ()  # the masters this request crossed, first to last
    open_to: Optional[OpenTo] = ()        # who may attach shared instances to it, besides its owner
    recipient: Optional[Annotated[ForwardedRecipient, Field(
        description="a peer master forwarding a delegation: whom the instance's secrets "
                    "are sealed to (the requester at the origin); refused from anyone "
                    "else")]] = None

    FIELDS = ("reference", "software_url", "software_type", "parameters", "sla", "state",
              "shared", "requester", "parent", "provenance", "open_to", "recipient")

    _nulls = _NULLS

    @model_validator(mode="after")
    def _consistent(self):
        if self.open_to and self.shared:
            raise problems([{"field": "open_to", "problem": "only a non-shared instance hosts "
                             "shared ones; leave open_to out of a shared request"}])
        if not self.shared and any(HOST_KEY in alt for alt in (
                self.sla if isinstance(self.sla, list) else [self.sla])):
            raise problems([{"field": f"sla.{HOST_KEY}", "problem": "names a host to attach "
                             "to, which only a shared request does"}])
        return self

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.FIELDS}
        out["provenance"] = list(self.provenance)
        out["open_to"] = list(self.open_to)
        if self.recipient is None:
            del out["recipient"]
        else:
            out["recipient"] = self.recipient.to_json()
        return out

    def sla_terms(self):
        """The parsed SLA (core.sla.Sla); InvalidInput when it was built invalid."""
        return parse_sla(self.sla, "sla", self.reference)


@wire_type("rename")
class InstanceRename:
    """An instance's new reference (SLAP's softwareInstanceRename), checked as a
    request's reference is: the name its requester asks for it by from then on."""

    reference: Reference


@wire_type("child master registration")
class ChildMasterRegistration:
    """``PUT /api/v1/instances/<id>/child-master``: the master an instance runs, as it
    registers with the master that placed the instance (its parent)."""

    name: MasterName
    url: HttpsUrl
    ca_certificate: PemCertificate
    pairing_token: Optional[Annotated[Text(256), Field(
        description="a one-time token of the child's CA for master/<this master>: the "
                    "parent pairs with the child as a peer (origin child)")]] = None

    FIELDS = ("name", "url", "ca_certificate", "pairing_token")
    RECORD = ("name", "url", "ca_certificate")     # what the parent shows of it
    MAX_PEM = MAX_PEM

    def to_json(self) -> dict:
        """The registration as the parent records and shows it (never the token)."""
        return {k: getattr(self, k) for k in self.RECORD}


@wire_type("state change")
class StateChange:
    """``PUT /api/v1/instances/<id>/state``."""

    state: Choice(REQUESTED_STATES)


@wire_type("partition")
class PartitionSpec:
    """A partition as a node declares it; a tagged partition (``capabilities``) only
    hosts instances whose SLA asks for one of its capabilities."""

    id: Id
    address: IpAddress
    port_base: Int(1, 65535)
    port_count: Optional[Int(1, 65535)] = 10
    capabilities: Optional[Capabilities] = ()

    FIELDS = ("id", "address", "port_base", "port_count", "capabilities")

    _nulls = _NULLS

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.FIELDS}
        out["capabilities"] = list(self.capabilities)
        return out


@wire_type("computer")
class ComputerRegistration:
    """``POST /api/v1/computers``: a node declares itself and its partitions.

    ``capabilities`` tag the whole computer: it then only hosts instances whose SLA
    asks for one of them (``capability=gpu``)."""

    id: Id
    host: Optional[Text()] = None
    lan: Optional[Text()] = None
    country: Optional[Text()] = None
    continent: Optional[Text()] = None
    labels: Optional[Labels] = field(default_factory=dict)
    partitions: Optional[Annotated[tuple[PartitionSpec, ...], Field(
        description="each partition id at most once")]] = ()
    capabilities: Optional[Capabilities] = ()

    FIELDS = ("id", "host", "lan", "country", "continent", "labels", "partitions",
              "capabilities")

    _nulls = _NULLS

    @model_validator(mode="after")
    def _once(self):
        seen, found = set(), []
        for i, part in enumerate(self.partitions):
            if part.id in seen:
                found.append({"field": f"partitions[{i}].id",
                              "problem": f"partition {part.id!r} is declared twice"})
            seen.add(part.id)
        if found:
            raise problems(found)
        return self

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.FIELDS}
        out["partitions"] = [p.to_json() for p in self.partitions]
        out["capabilities"] = list(self.capabilities)
        return out


@wire_type("computer update", minProperties=1)
class ComputerFactsBody:
    """The body of ``PATCH /api/v1/computers/<id>`` (see ComputerUpdate)."""

    host: Optional[Text()] = None
    lan: Optional[Text()] = None
    country: Optional[Text()] = None
    continent: Optional[Text()] = None
    labels: Optional[Labels] = None
    capabilities: Optional[Capabilities] = None

    @model_validator(mode="before")
    @classmethod
    def _at_least_one(cls, data):
        if isinstance(data, dict) and not data:
            raise problems([{"field": "body", "problem": "give at least one of "
                             f"{', '.join(ComputerUpdate.FIELDS)}"}])
        return data


@dataclass(frozen=True, config=ConfigDict(defer_build=True))
class ComputerUpdate:
    """``PATCH /api/v1/computers/<id>`` (admins): the computer's facts, which a node may
    not change itself. Only the fields given change; a locality of ``null`` clears it,
    ``labels`` and ``capabilities`` replace the whole set (``null``: none)."""

    changes: dict

    FIELDS = ("host", "lan", "country", "continent", "labels", "capabilities")
    BODY = ComputerFactsBody

    @classmethod
    def from_json(cls, body: Any) -> "ComputerUpdate":
        facts = parse(ComputerFactsBody, body)
        changes = {k: getattr(facts, k) for k in cls.FIELDS if k in body}
        if "labels" in changes and changes["labels"] is None:
            changes["labels"] = {}
        if "capabilities" in changes and changes["capabilities"] is None:
            changes["capabilities"] = ()
        return cls(changes)


@wire_type("lost verdict")
class LostVerdict:
    """``POST /api/v1/computers/<id>/lost`` and ``POST /api/v1/peers/<name>/lost``
    (admins): the computer (the peer) is lost; what it hosts (serves) goes elsewhere.
    ``reason`` is recorded with the verdict; ``dry_run`` answers what would move and
    writes nothing."""

    reason: Optional[Text(MAX_TEXT, NO_CONTROL, 0)] = ""
    dry_run: Optional[Bool] = False

    FIELDS = ("reason", "dry_run")

    _nulls = _NULLS


@wire_type("wipe request")
class WipeRequest:
    """``POST /api/v1/computers/<id>/wipe`` (admins): let the node erase the data kept of
    instances that moved away (``partition``: that one only; none: every one)."""

    partition: Optional[Annotated[Id, Field(description="the partition to wipe; none: "
                                                          "every one")]] = None


@wire_type("moved report")
class MovedReport:
    """``PUT /api/v1/computers/<id>/partitions/<pid>/moved``: the node's word on a
    partition whose instance moved away: quarantined (set aside) or erased."""

    instance_id: Annotated[Id, Field(description="the instance that moved away")]
    state: Choice(MOVED_REPORT_STATES)

    def to_json(self) -> dict:
        return {"instance_id": self.instance_id, "state": self.state}


@wire_type("supply")
class Supply:
    """``POST /api/v1/computers/<id>/software``: supply (or unsupply) a release."""

    url: SoftwareUrl
    state: Optional[Choice(SUPPLY_STATES)] = AVAILABLE

    _nulls = _NULLS


@wire_type("product alias")
class ProductAlias:
    """``master serve --product NAME=URL``: SlapOS' ``product.NAME`` stands for the release
    ``url`` (core.products); ``name`` is an id, ``url`` a release a request may name."""

    name: Id
    url: SoftwareUrl


@wire_type("software release")
class SoftwareRelease:
    """A release named by its URL alone, checked as a request's ``software_url`` (what
    SLAP's ``getSoftwareReleaseListFromSoftwareProduct`` asks the products of)."""

    url: SoftwareUrl


def _types(value):
    if isinstance(value, (list, tuple)):
        return tuple(sorted(set(v for v in value if isinstance(v, str)))) \
            if all(isinstance(v, str) and SOFTWARE_TYPE_RE.match(v) for v in value) else value
    return value


@wire_type("software report")
class SoftwareReport:
    """``PUT /api/v1/computers/<id>/software/<hash>/status``: the node's install outcome."""

    status: Choice(SOFTWARE_REPORT_STATES)
    log_tail: Optional[LogTail] = ""
    software_types: Optional[Annotated[tuple[SoftwareType, ...],
                                       BeforeValidator(_types)]] = ()

    _nulls = _NULLS


@wire_type("promise")
class PromiseResult:
    name: Text()
    ok: Optional[Bool] = False
    message: Optional[LogTail] = ""

    _nulls = _NULLS

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "message": self.message}


@wire_type("partition report")
class PartitionReport:
    """``PUT /api/v1/computers/<id>/partitions/<pid>/status``: what the node observed.

    ``shared_connections`` (optional): the connection parameters a host instance
    published for each of its shared instances, by shared instance id."""

    instance_id: Id
    revision: Int(0)
    state: Choice(PARTITION_REPORT_STATES)
    log_tail: Optional[LogTail] = ""
    connection: Optional[Connection] = field(default_factory=dict)
    promises: Optional[tuple[PromiseResult, ...]] = ()
    shared_connections: Optional[SharedConnections] = field(default_factory=dict)

    FIELDS = ("instance_id", "revision", "state", "log_tail", "connection", "promises",
              "shared_connections")

    _nulls = _NULLS

    def to_json(self) -> dict:
        out = {k: getattr(self, k) for k in self.FIELDS}
        out["promises"] = [p.to_json() for p in self.promises]
        return out


# -- identity and certificates ------------------------------------------------------
@wire_type("certificate signing request")
class CertificateSigning:
    """``POST /computers/<cid>/partitions/<pid>/certificate``: a partition's CSR (PEM)."""

    csr: Csr


@wire_type("token redemption")
class TokenRedemption:
    """``POST /node-certificates``: a node trades its one-time token and CSR for a certificate."""

    token: Text(256)
    csr: Csr


@wire_type("certificate")
class CertificateIssue:
    """``POST /certificates`` (admins): certify a CSR as ``role``/``name``."""

    role: Annotated[Text(32), WithJsonSchema({"type": "string",
                                              "enum": list(IDENTITY_ROLES)})]
    name: Text(200)
    csr: Csr
    days: Optional[Int(1, 3650)] = None
    hosts: Optional[Annotated[tuple[Text(253, None), ...],
                              Field(max_length=MAX_HOSTS)]] = ()

    _nulls = _NULLS


@wire_type("token", description="exactly one of computer (a node) and master (a peer)",
           oneOf=[{"properties": {name: {"type": "string"}}, "required": [name]}
                  for name in ("computer", "master")])
class TokenCreation:
    """``POST /tokens`` (admins): a one-time registration token for a computer, or for a
    peer master (``master``: the name it will have here)."""

    computer: Optional[Id] = None
    ttl: Optional[Int(1, 30 * 24 * 3600)] = None
    master: Optional[MasterName] = None

    @model_validator(mode="after")
    def _one(self):
        if (self.computer is None) == (self.master is None):
            raise problems([{"field": "computer",
                             "problem": "give exactly one of computer and master"}])
        return self


_LINK = ("trust", "cost", "latency_ms", "site")


@wire_type("peer")
class PeerAddition:
    """``POST /peers`` (admins): pair with a peer master — its URL, its CA certificate and
    the one-time token it gave this master — plus what this master knows of the link."""

    name: MasterName
    url: Annotated[HttpsUrl, Field(description="https URL of the peer")]
    ca_certificate: PemCertificate
    token: Optional[Annotated[Text(), Field(
        description="the one-time token the peer issued for this master (pairs once)")]] = None
    trust: Optional[Choice(TRUST_LEVELS)] = None
    cost: Optional[Finite] = None
    latency_ms: Optional[Finite] = None
    site: Optional[Id] = None

    FIELDS = ("name", "url", "ca_certificate", "token", "trust", "cost", "latency_ms", "site")
    TRUST = TRUST_LEVELS

    def __post_init__(self):
        object.__setattr__(self, "url", self.url.rstrip("/"))


@wire_type("peer update", description="at least one field, not null",
           anyOf=[{"properties": {k: {"not": {"type": "null"}}}, "required": [k]}
                  for k in _LINK])
class PeerUpdate:
    """``PATCH /peers/<name>`` (admins): what this master knows of a peer's link; only
    the fields given change."""

    trust: Optional[Choice(TRUST_LEVELS)] = None
    cost: Optional[Finite] = None
    latency_ms: Optional[Finite] = None
    site: Optional[Id] = None

    FIELDS = _LINK

    @model_validator(mode="after")
    def _some(self):
        if not any(getattr(self, k) is not None for k in _LINK):
            raise problems([{"field": "trust",
                             "problem": f"give at least one of {', '.join(_LINK)}"}])
        return self

    def changes(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS if getattr(self, k) is not None}


@wire_type("revocation")
class Revocation:
    """``POST /certificates/<serial>/revocation``."""

    reason: Optional[Annotated[Text(64), WithJsonSchema(
        {"type": "string", "enum": list(REVOCATION_REASONS)})]] = "unspecified"

    _nulls = _NULLS


# -- the delegation policy (federation.routing decides with it) ----------------------------
POLICY_WHEN = ("always", "no-local-fit")
MAX_POLICY_RULES = 256


def _peers(value):
    """``to``: one peer name or an array of them, in order, each at most once."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(
            isinstance(p, str) and MASTER_NAME_RE.match(p) for p in names):
        raise problem("must name one or more peer masters, in order")
    if len(set(names)) != len(names):
        raise problem("names a peer twice")
    return tuple(names)


Peers = Annotated[tuple, BeforeValidator(_peers), WithJsonSchema(
    {"oneOf": [{"type": "string", "pattern": ecma(MASTER_NAME_RE)},
               {"type": "array", "items": {"type": "string", "pattern": ecma(MASTER_NAME_RE)},
                "minItems": 1, "uniqueItems": True}],
     "description": "peers, fallbacks after"})]


@wire_type("delegation policy")
class PolicyRule:
    """A rule of the delegation policy: requests it matches go to ``to`` (in order)."""

    to: Peers
    release: Optional[Annotated[Text(2048, None), Field(
        description="glob on the release URL")]] = None
    software_type: Optional[Text(2048, None)] = None
    shared: Optional[Bool] = None
    when: Choice(POLICY_WHEN) = "always"
    fallback: Optional[Bool] = None
    description: Optional[Text(2048, None, 0)] = None


@wire_type("delegation policy")
class DelegationPolicy:
    """``PUT /federation/policy`` (admins) and its answer: what a master delegates to
    its peers (the same grammar as the policy files)."""

    auto: Annotated[Bool, Field(description="no local fit: delegate to a peer whose "
                                            "summary fits")] = True
    rules: Annotated[tuple[PolicyRule, ...], Field(max_length=MAX_POLICY_RULES)] = ()


# -- replication (master.replication) ------------------------------------------------------
@wire_type("replica invitation")
class ReplicaInvitation:
    """``POST /replication/invitations`` (admins): a one-time token for replica ``name``."""

    name: MasterName
    ttl: Optional[Annotated[Int(1, 30 * 24 * 3600), Field(
        description="seconds the token is good for")]] = None


# a host name or IPv4 address (no user, no IPv6 literal), a port in range, then visible
# ASCII: the URL goes out in every answer's Slapfed-Masters header, and nodes follow it
_PORT = r"(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
HTTP_URL_RE = re.compile(r"^https?://[A-Za-z0-9._~%!$&'()*+,;=-]+(?::" + _PORT
                         + r")?(?:[/?#][!-~]*)?\Z")
REPLICA_URL_MAX = 300
ReplicaUrl = Annotated[Text(REPLICA_URL_MAX, ecma(HTTP_URL_RE)), Field(
    description="where the replica serves (a host name or IPv4 address: every answer names "
                "it in its Slapfed-Masters header)")]


@wire_type("replica registration")
class ReplicaRegistration:
    """``PUT /replication/replicas/<name>``: where a replica serves (none: nowhere a node
    may follow it), and its mode."""

    mode: Choice(REPLICA_MODES)
    url: Optional[ReplicaUrl] = None


@wire_type("promotion")
class Promotion:
    """``POST /replication/promotion`` (admins): an empty object (nothing to choose)."""


BODIES = (InstanceRequest, ChildMasterRegistration, StateChange, ComputerRegistration,
          ComputerFactsBody, Supply, SoftwareReport, PartitionReport, CertificateSigning,
          TokenRedemption, CertificateIssue, TokenCreation, PeerAddition, PeerUpdate,
          Revocation, DelegationPolicy, LostVerdict, WipeRequest, MovedReport,
          ReplicaInvitation, ReplicaRegistration, Promotion)
__all__ = ["parse", "json_schemas", "software_hash", "asdict", *(t.__name__ for t in BODIES),
           "ComputerUpdate", "PartitionSpec", "PromiseResult", "ProductAlias",
           "SoftwareRelease"]


# -- accounting: usage reports and the price list (core.accounting) -----------------------
from . import accounting as _acct  # noqa: E402 - the accounting block is self-contained

MAX_USAGE_PARTITIONS = 1024       # and at most the computer's partitions (services)
MAX_USAGE_ITEMS = 4200            # resources (and shared ids) of one partition entry
                                  # (the node's MAX_UNITS units and the measured ones)
MAX_USAGE_INCIDENTS = 64
MAX_PRICES = 1024


def _timestamp(value):
    if isinstance(value, str):
        try:
            _acct.parse_time(value)
        except ValueError as exc:
            raise problem(str(exc)) from None
    return value


Timestamp = Annotated[str, BeforeValidator(_timestamp), Strict(), WithJsonSchema(
    {"type": "string", "pattern": _acct.TIMESTAMP_RE.pattern.replace(r"\Z", "$"),
     "description": "UTC, seconds precision: YYYY-MM-DDTHH:MM:SSZ"})]
ResourceName = Annotated[Text(43, _acct.RESOURCE_PATTERN), Field(
    description="a platform resource, or an instance-defined unit x-<name>")]


@wire_type("usage item")
class UsageQuantity:
    """One resource measured over the report's interval (core.accounting.RESOURCES)."""

    resource: ResourceName
    quantity: Finite
    shared: Optional[Annotated[Id, Field(
        description="a shared instance hosted by this partition's instance: the units "
                    "are that shared instance's")]] = None

    _nulls = _NULLS


@wire_type("usage incident")
class UsageIncident:
    """A failing promise (made by the node) or an incident the instance wrote; the same
    open incident (end null) is repeated with the same start until it ends."""

    kind: Choice(_acct.INCIDENT_KINDS)
    name: Text()
    start: Timestamp
    end: Optional[Timestamp] = None
    detail: Optional[Text(_acct.MAX_DETAIL, NO_CONTROL, 0)] = ""

    _nulls = _NULLS


@wire_type("usage partition")
class UsagePartition:
    partition: Id
    instance_id: Annotated[Id, Field(description="the instance the desired state gave for "
                                                 "that partition")]
    usage: Optional[Annotated[tuple[UsageQuantity, ...],
                              Field(max_length=MAX_USAGE_ITEMS)]] = ()
    incidents: Optional[Annotated[tuple[UsageIncident, ...],
                                  Field(max_length=MAX_USAGE_INCIDENTS)]] = ()

    _nulls = _NULLS


@wire_type("usage report", description="start < end; each partition at most once; each "
                                       "resource (and shared id) at most once per partition")
class UsageReport:
    """``POST /api/v1/computers/<cid>/usage``: what a node measured over one interval."""

    report_id: Annotated[Text(128, ecma(_acct.REPORT_ID_RE)), Field(
        description="<cid>:<sequence or uuid>: the same id again is a duplicate")]
    start: Timestamp
    end: Timestamp
    partitions: Annotated[tuple[UsagePartition, ...], Field(max_length=MAX_USAGE_PARTITIONS)]


@wire_type("price")
class PriceBody:
    resource: ResourceName
    price: Annotated[Text(40, r"^[0-9]{1,15}(?:\.[0-9]{1,12})?$"), Field(
        description="a decimal, in the list's currency, for every `per` units")]
    release: Optional[Annotated[Text(MAX_URL), Field(
        description="a software release URL, or * (default) for every release without a "
                    "price of its own")]] = _acct.ANY_RELEASE
    per: Optional[Annotated[Text(40, r"^[0-9]{1,15}(?:\.[0-9]{1,12})?$"), Field(
        description="how many units the price is for (default 1), e.g. 3600 for "
                    "cpu_seconds priced per CPU hour")]] = "1"

    _nulls = _NULLS


@wire_type("price list")
class PriceListBody:
    """``PUT /api/v1/accounting/prices`` (admins): the price list statements use."""

    currency: Annotated[Text(3, ecma(_acct.CURRENCY_RE)), Field(
        description="ISO 4217 code, e.g. EUR")]
    prices: Annotated[tuple[PriceBody, ...], Field(max_length=MAX_PRICES)]
    precision: Optional[Int(0, _acct.MAX_PRECISION)] = 2

    _nulls = _NULLS


BODIES = BODIES + (UsageReport, PriceListBody)
__all__ += ["UsageReport", "UsagePartition", "UsageQuantity", "UsageIncident",
            "PriceListBody", "PriceBody"]
