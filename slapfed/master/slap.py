"""SLAP, the protocol of SlapOS' stock client and nodes (slapos.core), as one more adapter
over the master's use cases: mounted under ``/slap/``, so that ``master_url =
https://<master>/slap/`` in slapos.cfg points stock tools at slapfed.

Depends on Flask, core (marshal, wire, states, claims), services (the same use cases as
/api/v1, and services.slap_render) and the sibling modules (slapform reads the calls,
auth guards them with ca.policy's table, instances/computers share their helpers).
Every call is placed, delegated, authorized, recorded and logged exactly as its native
twin; answers are marshal documents the stock client's whitelisting decoder accepts,
or short texts it ignores. Errors keep the one JSON error body and its statuses (the
client reads only the status); a request not placed yet is answered 408, which the
stock client reads as "not ready, ask again"; a delegated one is answered from the end
of its delegation chain once the peers report its partition.
"""
from __future__ import annotations

import logging
import time
from xml.sax.saxutils import escape, quoteattr

from flask import Blueprint, Response, g, jsonify, url_for

from .. import services
from ..ca import identity as ids, policy
from ..ca.identity import COMPUTER
from ..ca.keys import generate_key, private_key_pem
from ..core import claims, marshal
from ..core.errors import NotFound
from ..core.states import BUILDING, DESTROYED, FAILED, INSTALLED, STARTED, STOPPED
from ..core.wire import SoftwareReport, software_hash
from ..services import accounting, authz, slap_render
from ..services.computers import get_computer
from ..services.tx import read
from . import auth, slapform
from .access import principal
from .auth import authority, current_identity, insecure
from .computers import register_proposed
from .federation import kick_forwarder
from .instances import bounded, log_outcome
from .request import connection, document_response, runtime

blueprint = Blueprint("slap", __name__)
SLAP_PREFIX = "/slap"
XML_MEDIA_TYPE = "application/xml"
NOT_READY = 408
PARTITION_CERTIFICATE_DAYS = 90
KEY_REUSE_MARGIN = 7 * 86400          # seconds of validity left below which a pair is renewed
log = logging.getLogger("slapfed.master.slap")


@blueprint.before_request
def _refuse_browsers():
    slapform.refuse_browsers()


def _xml(value) -> Response:
    return Response(marshal.dumps(value), mimetype=XML_MEDIA_TYPE)


def _done(text: str = "OK") -> Response:
    return Response(text, mimetype="text/plain")


def _reporter() -> str:
    """A node's certificate reports as the node; a partition's as the partition."""
    identity = current_identity()
    if insecure() or identity is None or identity.role == COMPUTER:
        return claims.NODE
    return claims.PARTITION


# -- users and instances: request, supply ---------------------------------------------
@blueprint.post("/requestComputerPartition")
def request_computer_partition():
    """An open order (a person) or a partition's request of a child: the one verb."""
    slap_req = slapform.instance_request()
    req = g.get("instance_request")
    if req is None:       # development mode: no guard ran, the caller is who it says
        req, _facts = authz.resolve_request(connection, current_identity(),
                                            slap_req.request, None)
    # one write: without a state the instance keeps its own; the SLAP answer is read
    # in the same transaction, as the instance stands once requested
    created, body, answer = services.request_instance_answered(
        runtime(), bounded(req), keep_state=not slap_req.state_given,
        answer=slap_render.request_answer)
    if body.get("delegation") is not None:
        kick_forwarder()
    log_outcome("requested over SLAP" if created else "requested again over SLAP", body)
    if answer is None:
        return Response(f"instance {body['reference']!r} is not placed yet "
                        f"({(body.get('status') or {}).get('state')}); ask again",
                        status=NOT_READY, mimetype="text/plain")
    return _xml(answer)


@blueprint.post("/supplySupply")
def supply_supply():
    cid, supply = slapform.supply()
    services.supply(runtime(), cid, supply)
    return _done()


@blueprint.get("/getSoftwareReleaseListFromSoftwareProduct")
def get_software_release_list_from_software_product():
    """SlapOS' product aliases (master serve --product): a product's release, or the
    releases of the product a release belongs to, best first; [] when there is none."""
    name, url = slapform.product_query()
    products = runtime().settings.products
    return _xml(products.releases_of(name) if name is not None
                else products.releases_like(url))


# -- nodes: what to do ----------------------------------------------------------------
def _full_information(field: str = "computer_id") -> Response:
    cid = slapform.identifier(field)
    identity = current_identity()
    renew = insecure() or identity is None or identity.role == COMPUTER
    rt = runtime()
    serial, body = services.desired_state(rt, cid, (), rt.slap_renderer, conn=connection(),
                                          renew=renew)
    return document_response(rt.slap_renderer, cid, serial, body, XML_MEDIA_TYPE)


@blueprint.get("/getFullComputerInformation")
def get_full_computer_information():
    """The whole node view in one document, cached per computer serial."""
    return _full_information()


@blueprint.get("/getComputerInformation")
def get_computer_information():
    return _full_information()


@blueprint.get("/registerComputerPartition")
def register_computer_partition():
    """One partition, with what its instance published (read live)."""
    cid = slapform.identifier("computer_reference")
    pid = slapform.identifier("computer_partition_reference")

    def query(app):
        comp = get_computer(app, cid)
        p = comp.partitions.get(pid)
        if p is None:
            raise NotFound(f"computer {cid} has no partition {pid!r}")
        inst = None if p.instance_id is None else app.instances[p.instance_id]
        return slap_render.partition_object(app, cid, p, inst, connection=True)
    return _xml(read(connection(), query))


@blueprint.get("/getComputerPartitionCertificate")
def get_computer_partition_certificate():
    """A stock node (one with a certificate repository, as every node over https has)
    fetches its partition's key and certificate: a fresh key, made here, certified as
    that partition by this master's CA and handed to the node over its mutual-TLS
    connection (the node runs the partition, so it holds its key anyway). The pair is
    kept in memory only, per partition and hosted instance, and handed again while
    valid for a week more: a stock node asks on every run."""
    cid = slapform.identifier("computer_id")
    pid = slapform.identifier("computer_partition_id")

    def hosted(app):
        p = get_computer(app, cid).partitions.get(pid)
        if p is None:
            raise NotFound(f"computer {cid} has no partition {pid!r}")
        return p.instance_id
    key_of = (cid, pid, read(connection(), hosted))
    rt = runtime()
    with rt.slap_keys_lock:
        pair = rt.slap_keys.get(key_of)
        if pair is None or pair[2] < time.time() + KEY_REUSE_MARGIN:
            key = generate_key()
            record = authority().issue(ids.partition(cid, pid), key.public_key(),
                                       days=PARTITION_CERTIFICATE_DAYS)
            pair = (record.certificate_pem, private_key_pem(key),
                    time.time() + PARTITION_CERTIFICATE_DAYS * 86400)
            for old in [k for k in rt.slap_keys if k[:2] == key_of[:2]]:
                del rt.slap_keys[old]          # another instance there now: not its pair
            rt.slap_keys[key_of] = pair
            log.info("partition %s of computer %s certified over SLAP for %s (serial %s)",
                     pid, cid, principal(), record.serial,
                     extra={"computer": cid, "partition": pid})
    return _xml({"certificate": pair[0], "key": pair[1]})


@blueprint.post("/loadComputerConfigurationFromXML")
def load_computer_configuration_from_xml():
    """``slapos node format``: register the computer and its partitions."""
    register_proposed(slapform.computer_registration())
    return _done()


# -- nodes: what happened -------------------------------------------------------------
def _software_report(status: str, log_field: str | None = None) -> Response:
    cid = slapform.identifier("computer_id")
    h = software_hash(slapform.text("url"))
    log_tail = slapform.text(log_field, required=False, default="") if log_field else ""
    services.report_software(runtime(), cid, h, SoftwareReport(status, log_tail[-65536:]))
    return _done()


@blueprint.post("/buildingSoftwareRelease")
def building_software_release():
    return _software_report(BUILDING)


@blueprint.post("/availableSoftwareRelease")
def available_software_release():
    return _software_report(INSTALLED)


@blueprint.post("/softwareReleaseError")
def software_release_error():
    return _software_report(FAILED, "error_log")


@blueprint.post("/destroyedSoftwareRelease")
def destroyed_software_release():
    return _software_report(DESTROYED)


def _partition_report(state: str, log_field: str | None = None) -> Response:
    cid = slapform.identifier("computer_id")
    pid = slapform.identifier("computer_partition_id")
    log_tail = slapform.text(log_field, required=False, default="") if log_field else ""
    services.report_hosted(runtime(), cid, pid, state, log_tail, _reporter())
    return _done()


@blueprint.post("/startedComputerPartition")
def started_computer_partition():
    return _partition_report(STARTED)


@blueprint.post("/stoppedComputerPartition")
def stopped_computer_partition():
    return _partition_report(STOPPED)


@blueprint.post("/destroyedComputerPartition")
def destroyed_computer_partition():
    """The node wiped the partition: it is freed once destruction was requested."""
    return _partition_report(DESTROYED)


@blueprint.post("/softwareInstanceError")
def software_instance_error():
    if slapform.text("slave_reference", required=False) is not None:
        # a host's error about one shared instance: shown by the host's own reports
        slapform.identifier("computer_id")
        return _done("Ignored")
    return _partition_report(FAILED, "error_log")


@blueprint.post("/softwareInstanceBang")
def software_instance_bang():
    """Something broke: the partition's instance gets a new revision (redeployed)."""
    cid = slapform.identifier("computer_id")
    pid = slapform.identifier("computer_partition_id")

    def hosted(app):
        p = get_computer(app, cid).partitions.get(pid)
        return None if p is None else p.instance_id
    iid = read(connection(), hosted)
    if iid is not None:
        services.bang(runtime(), iid)
    return _done()


@blueprint.post("/softwareInstanceRename")
def software_instance_rename():
    """The instance on the partition takes another name (or, with ``slave_reference``,
    the shared instance of that id attached to it): the same instance, which its
    requester asks for by the new name from then on; the old one is free (SlapOS'
    resilient stacks swap names so at takeover). Same name: nothing is written."""
    cid = slapform.identifier("computer_id")
    pid = slapform.identifier("computer_partition_id")
    new_name = slapform.new_name()
    shared = slapform.optional_identifier("slave_reference")
    old, body = services.rename_hosted(runtime(), cid, pid, new_name, shared)
    if old != body["reference"]:
        log.info("instance %s renamed from %r to %r by %s", body["id"], old[:200],
                 body["reference"][:200], principal(),
                 extra={"computer": cid, "partition": pid, "instance": body["id"]})
    return _done()


@blueprint.post("/computerBang")
def computer_bang():
    """``slapos node bang``: every instance on the computer gets a new revision."""
    cid = slapform.identifier("computer_id")
    message = slapform.text("message", required=False, default="")
    banged = services.bang_computer(runtime(), cid)
    log.info("computer %s banged by %s: %d instances redeployed (%s)", cid, principal(),
             banged, message[:200], extra={"computer": cid})
    return _done()


@blueprint.post("/updateComputerPartitionRelatedInstanceList")
def update_computer_partition_related_instance_list():
    """After a deployment, what the partition still requests: its other children are
    destroyed (SlapOS' garbage collection of instances a profile no longer asks for)."""
    cid = slapform.identifier("computer_id")
    pid = slapform.identifier("computer_partition_id")
    gone = services.keep_only_requested_children(runtime(), cid, pid,
                                                 slapform.related_references())
    if gone:
        kick_forwarder()            # a delegated child is destroyed at its peer too
        log.info("partition %s of %s no longer requests %d instances: destroyed %s", pid,
                 cid, len(gone), ", ".join(gone), extra={"computer": cid})
    return _done()


@blueprint.post("/setComputerPartitionConnectionXml")
def set_computer_partition_connection_xml():
    """An instance publishes its connection parameters (or a shared instance's)."""
    cid = slapform.identifier("computer_id")
    pid = slapform.identifier("computer_partition_id")
    params = slapform.connection()
    shared = slapform.text("slave_reference", required=False)
    services.publish_connection(runtime(), cid, pid, params, shared)
    return _done()


@blueprint.post("/useComputer")
def use_computer():
    """A usage journal (``slapos node report``), recorded as the node's usage report
    (services.accounting.ingest_journal): priced and billed as a native one."""
    cid = slapform.identifier("computer_id")
    journal = slapform.text("use_string", required=False) or ""
    answer = accounting.ingest_journal(runtime(), cid, journal)
    if answer["movements"]:
        log.info("computer %s usage journal: %s (%d movement(s))", cid,
                 "accepted" if answer["accepted"] else "duplicate", answer["movements"],
                 extra={"computer": cid, "duplicate": answer["duplicate"]})
    return _done()


# -- HATEOAS: what `slapos service list` and `slapos computer list` read ---------------
HATEOAS_PATH = "/hateoas/"


def _hateoas_base() -> str:
    """The navigator's base URL, as the caller reached this master."""
    return url_for("slap.hateoas_root", _external=True)


@blueprint.get("/getHateoasUrl")
def get_hateoas_url():
    """Where the stock client's navigator starts (it asks once per process)."""
    return _done(_hateoas_base())


@blueprint.get(HATEOAS_PATH)
def hateoas_root():
    """The root document: the search and traverse URI templates and who is asking."""
    base = _hateoas_base()
    return jsonify({"_links": {
        "self": {"href": base},
        "raw_search": {"href": base + "search{?query,select_list*,limit}"},
        "traverse": {"href": base + "traverse{?relative_url,view}"},
        "me": {"href": f"urn:jio:get:{principal()}"}}})


@blueprint.get(HATEOAS_PATH + "search")
def hateoas_search():
    """The caller's instance trees (its root instances, shared ones included, destroyed
    ones left out; in development mode everyone's) or the computers it may read, as
    the rows the stock client turns into ``slapos service list`` / ``computer list``."""
    search = slapform.hateoas_search()
    if search.kind == "instance_tree":
        identity = current_identity()
        requester = None if insecure() or identity is None else identity.principal
        readable = auth.instance_filter()
        found, _next = services.page_instances(
            connection(), requester=requester, reference=search.title,
            allow=lambda app, inst: inst.parent is None and (readable is None
                                                             or readable(app, inst)),
            leases=runtime().leases, limit=search.limit)
        rows = [{"title": i["reference"], "url_string": i["software_url"],
                 "relative_url": f"instance_tree/{i['id']}", "portal_type": "Instance Tree"}
                for i in found]
    else:
        wanted = {v for v in (search.title, search.reference) if v is not None}
        if len(wanted) > 1:         # a computer's title is its reference: both or none
            found = []
        else:
            found, _next = services.page_computers(
                connection(), runtime().leases, limit=search.limit,
                keep=lambda body: (not wanted or body["id"] in wanted)
                and bool(auth.visible_computers([body])))
        rows = [{"title": c["id"], "reference": c["id"],
                 "relative_url": f"compute_node/{c['id']}", "portal_type": "Compute Node"}
                for c in found]
    return jsonify({"_embedded": {"contents": rows}})


# SlapOS' words for a requested state, as `slapos service info` prints them
SLAP_STATES = {STARTED: "start_requested", STOPPED: "stop_requested",
               DESTROYED: "destroy_requested"}


def _form_document(portal_type: str, fields: dict) -> dict:
    """A document as the stock navigator reads one: its type and a form view whose
    ``my_*`` fields carry the values (jIO's ERP5 storage layout)."""
    view = {"form_id": {"key": "form_id", "default": portal_type.replace(" ", "") + "_view"}}
    for name, value in fields.items():
        view[f"my_{name}"] = {"type": "StringField", "key": f"field_my_{name}",
                              "default": value}
    return {"_links": {"type": {"name": portal_type}}, "_embedded": {"_view": view}}


def _instance_xml(params: dict) -> str:
    """Parameters in SlapOS' instance XML (``<instance><parameter id=K>V</parameter>``),
    which the stock client reads back as a dict of strings."""
    # a CR is written as a reference: XML readers turn a literal one into a line feed
    body = "".join(f"<parameter id={quoteattr(k)}>{escape(v, {chr(13): '&#13;'})}</parameter>"
                   for k, v in sorted(slap_render.slap_texts(params).items()))
    return f"<?xml version='1.0' encoding='utf-8'?><instance>{body}</instance>"


def _news(inst: dict) -> dict:
    """What `slapos service info` turns into a colour: #access when the node reports the
    instance's current revision in the state asked for, with no failing promise; #error
    when it failed or a promise fails; nothing otherwise (pending, converging)."""
    status = inst["status"]
    state = status.get("state")
    failing = [p for p in status.get("promises") or () if not p.get("ok", True)]
    if state == FAILED or failing:
        return {"instance": [{"text": f"#error {state}: {status.get('log_tail', '')[-200:]}"}]}
    if state == inst["requested_state"] in (STARTED, STOPPED) \
            and status.get("revision") == inst["revision"]:
        return {"instance": [{"text": f"#access instance {state}"}]}
    return {"instance": []}


@blueprint.get(HATEOAS_PATH + "traverse")
def hateoas_traverse():
    """One instance tree (its root instance: release, type, state, parameters,
    connection parameters, status) or computer, for `slapos service info` / `computer
    info`; what the caller may not read is answered as missing."""
    kind, key = slapform.hateoas_document()
    identity = current_identity()
    if kind == "instance_tree":
        facts = authz.instance_facts(connection(), key)
        if not insecure() and not policy.can(identity, policy.READ_INSTANCE, facts):
            raise NotFound(f"no instance with id {key!r}")
        inst = services.show_instance(connection(), key, runtime().leases)
        connection_list = [{"connection_key": k, "connection_value": v} for k, v in
                           sorted(slap_render.slap_texts(inst["connection"]).items())]
        return jsonify(_form_document("Instance Tree", {
            "title": inst["reference"], "url_string": inst["software_url"],
            "source_reference": inst["software_type"], "root_slave": inst["shared"],
            "slap_state": SLAP_STATES.get(inst["requested_state"], inst["requested_state"]),
            "text_content": _instance_xml(inst["parameters"]),
            "connection_parameter_list": connection_list, "news": _news(inst)}))
    if not insecure() and not policy.can(identity, policy.READ_COMPUTER,
                                         policy.ComputerFacts(key)):
        raise NotFound(f"no computer {key!r}")
    comp = services.show_computer(connection(), key, runtime().leases)
    return jsonify(_form_document("Compute Node", {"title": comp["id"], "reference": comp["id"]}))
