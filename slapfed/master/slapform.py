"""What a SLAP call carries, read once and checked: its form (POST,
``application/x-www-form-urlencoded``) or query (GET) fields, the marshal documents in
them (core.marshal) and the ``X-SlapPartition`` header; and their translation into the
wire types of the native API (core.wire), so that both protocols share one validation.

Depends on Flask (the request), core (errors, marshal, wire, states, sla) and ca.identity.
Every problem is an InvalidInput naming the SLAP field (``partition_parameter_xml``,
``filter_xml``, ...), never the native one.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from flask import g, request

from ..ca import identity as ids
from ..core import marshal
from ..core.errors import Forbidden, InvalidInput, UnsupportedMediaType
from ..core.sla import HOST_KEY
from ..core.states import DEFAULT_SOFTWARE_TYPE, REQUESTED_STATES, STARTED
from ..core.wire import (
    ComputerRegistration, InstanceRename, InstanceRequest, SoftwareRelease, Supply,
    check_connection,
)
from ..services.slap_render import slap_texts

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_FIELD = 2 * 1024 * 1024          # one form or query value (a computer's whole layout)
PARTITION_HEADER_RE = re.compile(
    r"^X-SlapPartition computer_id=([A-Za-z0-9][A-Za-z0-9_.-]{0,63}), "
    r"computer_partition_id=([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\Z")
NONE_TEXT = "None"                    # how the stock client sends a Python None

# SLAP filter keys that mean something else in slapfed's SLA (core.sla): the rest is
# passed as given, so an unknown key is refused with the list of known ones.
FILTER_KEYS = {"instance_guid": HOST_KEY}

# Native field -> the SLAP field it came from, to name problems as the caller sent them.
REQUEST_FIELDS = {"reference": "partition_reference", "software_url": "software_release",
                  "software_type": "software_type", "parameters": "partition_parameter_xml",
                  "sla": "filter_xml", "state": "state", "shared": "shared_xml"}
# First SLAP partitions' ports (they get their own addresses; ports only need a range).
SLAP_PORT_BASE = 10000
SLAP_PORT_COUNT = 100


def _fields():
    """The form (POST) or query (GET) fields, as one dict of strings."""
    cached = g.get("slap_fields")
    if cached is not None:
        return cached
    if request.method == "POST":
        given = request.headers.get("Content-Type", "")
        if request.content_length and request.mimetype != FORM_MEDIA_TYPE:
            raise UnsupportedMediaType(
                f"SLAP calls send their fields as {FORM_MEDIA_TYPE}, not "
                f"{given[:80]!r}", [{"field": "Content-Type",
                                     "problem": f"must be {FORM_MEDIA_TYPE}"}])
        source = request.form
    else:
        source = request.args
    out = {}
    for key in source:
        values = source.getlist(key)
        if len(values) != 1:
            raise InvalidInput(f"invalid SLAP call: field {key[:64]!r} is given "
                               f"{len(values)} times",
                               [{"field": key[:64], "problem": "is given more than once"}])
        if len(values[0]) > MAX_FIELD:
            raise InvalidInput(f"invalid SLAP call: field {key[:64]!r} is longer than "
                               f"{MAX_FIELD} characters",
                               [{"field": key[:64], "problem": f"longer than {MAX_FIELD}"}])
        out[key] = values[0]
    g.slap_fields = out
    return out


def text(name: str, required: bool = True, default: str | None = None) -> str | None:
    """A plain field; the stock client's ``None`` text counts as absent."""
    value = _fields().get(name)
    if value is None or value == NONE_TEXT:
        if required and default is None:
            raise InvalidInput(f"invalid SLAP call: {name} is required",
                               [{"field": name, "problem": "is required"}])
        return default
    return value


def document(name: str, required: bool = True, default=None):
    """A field holding a marshal document, decoded (core.marshal's limits)."""
    cache = g.setdefault("slap_documents", {})
    if name in cache:
        return cache[name]
    raw = text(name, required=required)
    value = default if raw is None else marshal.loads(raw, name)
    cache[name] = value
    return value


def identifier(name: str) -> str:
    value = text(name)
    if not ids.ID_RE.match(value):
        raise InvalidInput(f"invalid SLAP call: {name} {value[:64]!r} is not an id",
                           [{"field": name, "problem": f"must match {ids.ID_RE.pattern}"}])
    return value


def optional_identifier(name: str) -> str | None:
    """An id field the caller may leave out (or send as the stock client's ``None``)."""
    return None if text(name, required=False) is None else identifier(name)


def refuse_browsers() -> None:
    """A SLAP write takes a form, which any web page may make a browser send: a call
    that says it comes from a page (``Origin``, or a cross-site ``Sec-Fetch-Site``) is
    refused. The stock client sends neither."""
    if request.method != "POST":
        return
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if origin is not None or site not in (None, "same-origin", "none"):
        raise Forbidden("SLAP calls are not taken from web pages (the request carries "
                        "Origin or Sec-Fetch-Site)",
                        [{"field": "Origin", "problem": "SLAP clients send none"}])


# -- the caller ------------------------------------------------------------------------
def partition_header() -> tuple[str, str] | None:
    """(computer, partition) named by ``Authorization: X-SlapPartition ...``, or None."""
    header = request.headers.get("Authorization")
    if header is None or not header.startswith("X-SlapPartition"):
        return None
    m = PARTITION_HEADER_RE.match(header)
    if m is None:
        raise InvalidInput("invalid X-SlapPartition header: expected 'X-SlapPartition "
                           "computer_id=<id>, computer_partition_id=<id>'",
                           [{"field": "Authorization", "problem": "malformed X-SlapPartition"}])
    return m.group(1), m.group(2)


def speaking_for(identity: ids.Identity, trust_header: bool = False) -> ids.Identity:
    """Who a SLAP call speaks for: a node's certificate plus an ``X-SlapPartition``
    header naming one of that computer's partitions speaks for that partition (stock
    instances call with their node's certificate); a partition certificate for itself.
    A header naming another computer, or sent with anyone else's certificate, is
    Forbidden. ``trust_header`` (development mode, no certificates): the header alone."""
    if identity is None and not trust_header:
        return None               # the policy refuses it: no certificate at all
    named = partition_header()
    if named is None:
        return identity
    computer, partition = named
    if trust_header:
        return ids.partition(computer, partition)
    if identity.role == ids.COMPUTER and identity.computer == computer:
        return ids.partition(computer, partition)
    if identity.role == ids.PARTITION and (identity.computer, identity.partition) == named:
        return identity
    raise Forbidden(f"{identity.principal} may not speak for partition {partition} of "
                    f"computer {computer}: only that computer's node certificate or the "
                    "partition's own may",
                    [{"field": "Authorization", "problem": "names a partition the "
                                                           "certificate does not hold"}])


# -- translations into the native wire types -------------------------------------------
@dataclass(frozen=True)
class SlapRequest:
    """requestComputerPartition: the native request, and whether a state was given
    (without one, an existing instance keeps its requested state)."""

    request: InstanceRequest
    state_given: bool


def instance_request() -> SlapRequest:
    """requestComputerPartition's fields as an InstanceRequest (core.wire's checks)."""
    cached = g.get("slap_request")
    if cached is not None:
        return cached
    params = document("partition_parameter_xml", required=False, default={})
    filters = document("filter_xml", required=False, default={})
    state = document("state", required=False, default=None)
    shared = document("shared_xml", required=False, default=False)
    problems = []
    for name, value, kind in (("partition_parameter_xml", params, dict),
                              ("filter_xml", filters, dict), ("shared_xml", shared, bool)):
        if not isinstance(value, kind):
            problems.append({"field": name, "problem": f"must be a {kind.__name__}, got "
                                                       f"{type(value).__name__}"})
    if state is not None and state not in REQUESTED_STATES:
        problems.append({"field": "state", "problem": f"must be one of "
                                                      f"{', '.join(REQUESTED_STATES)}"})
    if problems:
        raise InvalidInput(f"invalid request: {problems[0]['field']} "
                           f"{problems[0]['problem']}", problems)
    body = {"reference": text("partition_reference"),
            "software_url": text("software_release"),
            "software_type": text("software_type", required=False,
                                  default=DEFAULT_SOFTWARE_TYPE),
            "parameters": _json_values(params, "partition_parameter_xml"),
            "sla": sla_of(filters), "state": state or STARTED, "shared": shared}
    try:
        req = InstanceRequest.from_json(body)
    except InvalidInput as exc:
        raise _renamed(exc, REQUEST_FIELDS) from None
    g.slap_request = SlapRequest(req, state is not None)
    return g.slap_request


def sla_of(filters: dict) -> dict:
    """A SLAP ``filter_kw`` as slapfed's SLA (core.sla); values are strings there."""
    return {FILTER_KEYS.get(str(k), str(k)): v if isinstance(v, (str, list)) else str(v)
            for k, v in filters.items()}


def _json_values(params: dict, name: str) -> dict:
    """Marshal values as JSON values: tuples become lists, keys must be strings."""
    def convert(value, where):
        if isinstance(value, (list, tuple)):
            return [convert(v, where) for v in value]
        if isinstance(value, set):
            return [convert(v, where) for v in sorted(value, key=repr)]
        if isinstance(value, dict):
            return {_key(k, where): convert(v, f"{where}.{k}") for k, v in value.items()}
        return value

    def _key(k, where):
        if not isinstance(k, str):
            raise InvalidInput(f"invalid {name}: {where} has a key that is not a string",
                               [{"field": where, "problem": "keys must be strings"}])
        return k
    return convert(params, name)


def _renamed(exc: InvalidInput, names: dict) -> InvalidInput:
    details = []
    for d in exc.details:
        field = str(d.get("field", ""))
        head, dot, rest = field.partition(".")
        if head in names:
            field = names[head] + dot + rest
        details.append({**d, "field": field})
    first = details[0] if details else {"field": "body", "problem": exc.message}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return InvalidInput(f"invalid SLAP call: {first['field']} {first.get('problem')}{more}",
                        details)


def supply() -> tuple[str, Supply]:
    """supplySupply: (computer id, Supply)."""
    cid = identifier("computer_id")
    state = text("state", required=False, default="available")
    try:
        return cid, Supply.from_json({"url": text("url"), "state": state})
    except InvalidInput as exc:
        raise _renamed(exc, {"url": "url", "state": "state"}) from None


def connection() -> dict:
    """setComputerPartitionConnectionXml's parameters, checked as native ones are."""
    value = document("connection_xml")
    if not isinstance(value, dict):
        raise InvalidInput("invalid connection_xml: must be a dictionary",
                           [{"field": "connection_xml", "problem": "must be a dictionary"}])
    return check_connection(slap_texts(_json_values(value, "connection_xml")),
                            "connection_xml")


def new_name() -> str:
    """softwareInstanceRename's ``new_name``: checked as a request's reference is (core.wire
    InstanceRename), every problem named ``new_name``."""
    try:
        return InstanceRename.from_json({"reference": text("new_name")}).reference
    except InvalidInput as exc:
        raise _renamed(exc, {"reference": "new_name"}) from None


PRODUCT_FIELDS = ("software_product_reference", "software_release_url")


def product_query() -> tuple[str | None, str | None]:
    """getSoftwareReleaseListFromSoftwareProduct: (product name, None) or (None, release
    URL), exactly one given; the name checked as an id, the URL as a request's release."""
    name = text(PRODUCT_FIELDS[0], required=False)
    url = text(PRODUCT_FIELDS[1], required=False)
    if (name is None) == (url is None):
        said = "not both" if name is not None else "one of them"
        raise InvalidInput(f"invalid SLAP call: give {PRODUCT_FIELDS[0]} or "
                           f"{PRODUCT_FIELDS[1]}, {said}",
                           [{"field": f, "problem": f"exactly one of {', '.join(PRODUCT_FIELDS)}"
                                                    " must be given"} for f in PRODUCT_FIELDS])
    if name is not None:
        return identifier(PRODUCT_FIELDS[0]), None
    try:
        return None, SoftwareRelease.from_json({"url": url}).url
    except InvalidInput as exc:
        raise _renamed(exc, {"url": PRODUCT_FIELDS[1]}) from None


MAX_RELATED = 1000                    # references one partition may say it still requests


def related_references() -> frozenset[str]:
    """updateComputerPartitionRelatedInstanceList's ``instance_reference_xml``: the
    references the partition's last deployment requested (a list of strings)."""
    value = document("instance_reference_xml")
    if not isinstance(value, (list, tuple)) or len(value) > MAX_RELATED \
            or not all(isinstance(v, str) and 0 < len(v) <= 256 for v in value):
        raise InvalidInput(
            "invalid instance_reference_xml: must be a list of at most "
            f"{MAX_RELATED} references (texts of 1 to 256 characters)",
            [{"field": "instance_reference_xml",
              "problem": f"must be a list of at most {MAX_RELATED} texts of 1-256 characters"}])
    return frozenset(value)


def computer_registration() -> ComputerRegistration:
    """loadComputerConfigurationFromXML's computer (``slapos node format``): its
    reference, and each partition's reference and first address (IPv4 first)."""
    layout = document("xml")
    if not isinstance(layout, dict):
        raise InvalidInput("invalid xml: must be a dictionary describing the computer",
                           [{"field": "xml", "problem": "must be a dictionary"}])
    problems = []
    parts = layout.get("partition_list") or []
    if not isinstance(parts, (list, tuple)):
        problems.append({"field": "xml.partition_list", "problem": "must be a list"})
        parts = []
    partitions = []
    for i, part in enumerate(parts):
        where = f"xml.partition_list[{i}]"
        if not isinstance(part, dict):
            problems.append({"field": where, "problem": "must be a dictionary"})
            continue
        addresses = [a.get("addr") for a in (part.get("address_list") or [])
                     if isinstance(a, dict) and isinstance(a.get("addr"), str)]
        address = _first_address(addresses)
        if address is None:
            problems.append({"field": f"{where}.address_list",
                             "problem": "holds no IP address"})
            continue
        partitions.append({"id": part.get("reference"), "address": address,
                           "port_base": SLAP_PORT_BASE + SLAP_PORT_COUNT * i % 50000,
                           "port_count": SLAP_PORT_COUNT})
    if problems:
        raise InvalidInput(f"invalid xml: {problems[0]['field']} {problems[0]['problem']}",
                           problems)
    try:
        return ComputerRegistration.from_json({"id": layout.get("reference"),
                                               "partitions": partitions})
    except InvalidInput as exc:
        details = [{**d, "field": _layout_field(str(d.get("field", "")))}
                   for d in exc.details]
        raise InvalidInput(f"invalid xml: {details[0]['field']} {details[0]['problem']}",
                           details) from None


def _layout_field(native: str) -> str:
    """``partitions[2].id`` -> ``xml.partition_list[2].reference``."""
    head, dot, rest = native.partition(".")
    if head == "id":
        return "xml.reference"
    if head.startswith("partitions["):
        head = "partition_list" + head[len("partitions"):]
        rest = "reference" if rest == "id" else rest
    return f"xml.{head}{dot}{rest}"


def _first_address(addresses) -> str | None:
    valid = []
    for a in addresses:
        try:
            valid.append(ipaddress.ip_address(a))
        except ValueError:
            continue
    valid.sort(key=lambda a: a.version)
    return str(valid[0]) if valid else None


# -- the HATEOAS search the stock `slapos service list` / `slapos computer list` make ---
_QUOTED = r'"([^"\\\x00-\x1f]{1,256})"'
HATEOAS_QUERIES = {
    "instance_tree": re.compile(r'portal_type:"Instance Tree" AND validation_state:validated'
                                rf"(?: AND title:={_QUOTED})?\Z"),
    "compute_node": re.compile(r'portal_type:"Compute Node" AND validation_state:validated'
                               rf"(?: AND title:={_QUOTED})?(?: AND reference:={_QUOTED})?\Z"),
}
HATEOAS_MAX_LIMIT = 1000
HATEOAS_DEFAULT_LIMIT = 40            # what the stock navigator asks when it asks nothing


@dataclass(frozen=True)
class HateoasSearch:
    kind: str                          # a key of HATEOAS_QUERIES
    title: str | None
    reference: str | None
    limit: int


def hateoas_search() -> HateoasSearch:
    """The query, its select_list ignored (rows carry the fields the stock client reads)
    and its limit (at most HATEOAS_MAX_LIMIT). Only the exact queries the stock client
    writes are understood; any other is an InvalidInput naming ``query``."""
    args = request.args
    query = args.get("query", "")
    if len(args.getlist("query")) != 1 or len(query) > 1024:
        raise InvalidInput("invalid SLAP search: give one query of at most 1024 characters",
                           [{"field": "query", "problem": "one value, at most 1024 characters"}])
    for kind, pattern in HATEOAS_QUERIES.items():
        found = pattern.match(query)
        if found:
            break
    else:
        raise InvalidInput(
            "invalid SLAP search: only the queries of `slapos service list` and `slapos "
            f"computer list` are answered, not {query[:120]!r}",
            [{"field": "query", "problem": "is not an Instance Tree or Compute Node query"}])
    raw = args.get("limit", str(HATEOAS_DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= HATEOAS_MAX_LIMIT:
        raise InvalidInput(f"invalid SLAP search: limit must be 1 to {HATEOAS_MAX_LIMIT}",
                           [{"field": "limit", "problem": f"must be 1 to {HATEOAS_MAX_LIMIT}"}])
    groups = found.groups()
    return HateoasSearch(kind, groups[0], groups[1] if len(groups) > 1 else None, int(raw))


HATEOAS_KEY_RE = re.compile(r"(instance_tree|compute_node)/([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\Z")
HATEOAS_VIEW = "slaposjs_view"        # the one view the stock navigator asks for


def hateoas_document() -> tuple[str, str]:
    """(kind, id) of a traverse: ``relative_url`` as search rows give it
    (``instance_tree/ID`` or ``compute_node/ID``) and ``view`` HATEOAS_VIEW."""
    args = request.args
    key, view = args.get("relative_url", ""), args.get("view", HATEOAS_VIEW)
    found = HATEOAS_KEY_RE.match(key) if len(args.getlist("relative_url")) == 1 else None
    if found is None:
        raise InvalidInput(
            "invalid SLAP traverse: relative_url must be instance_tree/ID or "
            f"compute_node/ID, not {key[:80]!r}",
            [{"field": "relative_url", "problem": "must be instance_tree/ID or compute_node/ID"}])
    if view != HATEOAS_VIEW:
        raise InvalidInput(f"invalid SLAP traverse: the only view is {HATEOAS_VIEW}",
                           [{"field": "view", "problem": f"must be {HATEOAS_VIEW}"}])
    return found.group(1), found.group(2)
