"""Who is calling and may they: the client certificate → an Identity, then ONE guard per route
(action + resource loader) handed to ca.policy before the view runs.

Depends on Flask, ca (authority, identity, policy), core and services.authz. Nothing here
decides a permission: ca.policy does; this module gathers the facts and asks it.

Where the certificate comes from: the WSGI environ key ``slapfed.peer_certificate``
(DER bytes), filled by ``PeerCertificate`` from the TLS socket gunicorn
(``gunicorn.socket``) or werkzeug (``werkzeug.socket``) put in the environ; the Flask test
client sets the key itself. Development mode (``insecure`` settings): no certificate is read,
every caller acts as the local administrator ``admin/local`` with authorization skipped, and a
request's ``requester`` comes from its body, as before identities existed.
"""
from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flask import g, request

from ..ca import identity as ids
from ..ca import policy
from ..ca.authority import CertificateAuthority
from ..ca.errors import CANotInitialized
from ..ca.policy import ComputerFacts, PartitionFacts, ReplicaFacts
from ..core.errors import Forbidden, InternalError, InvalidInput, NotFound, SlapfedError
from ..core.wire import ComputerRegistration, InstanceRequest, TokenCreation
from ..services import authz
from ..services.tx import read
from . import slapform
from .request import connection, json_body, runtime, settings

PEER_CERT_ENVIRON = "slapfed.peer_certificate"
INSECURE_IDENTITY = ids.admin("local")
DEFAULT_CA_NAME = "slapfed master"

log = logging.getLogger("slapfed.master.auth")


class PeerCertificate:
    """WSGI middleware: put the TLS peer's certificate (DER) into the environ.

    When the request came over a TLS socket, that socket is the only source (a value
    already in the environ is replaced, so nothing upstream can forge it)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
        if isinstance(sock, ssl.SSLSocket):
            try:
                environ[PEER_CERT_ENVIRON] = sock.getpeercert(binary_form=True)
            except (ValueError, ssl.SSLError):
                environ[PEER_CERT_ENVIRON] = None
        elif sock is not None:
            environ.pop(PEER_CERT_ENVIRON, None)   # plain socket: nobody proved anything
        return self.wsgi_app(environ, start_response)


# -- set-up -----------------------------------------------------------------------------
def open_authority(settings) -> CertificateAuthority | None:
    """The master's CA (``settings``: services.runtime.MasterSettings): ``ca_dir``, else
    ``data_dir``/ca, created on first start and named after the master. None without
    either (allowed in development mode only)."""
    directory = settings.ca_dir or (
        str(Path(settings.data_dir) / "ca") if settings.data_dir else None)
    if directory is None:
        return None
    try:
        return CertificateAuthority(directory)
    except CANotInitialized:
        name = settings.name or DEFAULT_CA_NAME
        return CertificateAuthority.init(directory, f"{name} CA"[:ids.CN_MAX])


def install(app, rt) -> None:
    """Open the CA (into the runtime ``rt``), wrap the WSGI app, and guard every route (a
    route without a guard is a programming error, refused here rather than served open)."""
    rt.ca = open_authority(rt.settings)
    if rt.ca is None and not rt.settings.insecure:
        raise InvalidInput("a master needs its certificate authority: give DATA_DIR or "
                           "CA_DIR, or INSECURE for development mode",
                           [{"field": "CA_DIR", "problem": "is required"}])
    unguarded = sorted(e for e in app.view_functions if e != "static" and e not in GUARDS)
    if unguarded:
        raise InternalError(f"routes without an authorization guard: {', '.join(unguarded)}")
    app.wsgi_app = PeerCertificate(app.wsgi_app)
    app.before_request(_guard_request)


def authority() -> CertificateAuthority:
    """The CA; CANotInitialized when this master runs without one (development mode)."""
    ca = runtime().ca
    if ca is None:
        raise CANotInitialized("this master runs in development mode without a certificate "
                               "authority (start it with --data)")
    return ca


def insecure() -> bool:
    return settings().insecure


def current_identity() -> ids.Identity | None:
    return g.get("identity")


def _authenticate() -> ids.Identity | None:
    """The identity the peer certificate proves; None without one. Raises the CA's
    Unauthenticated errors (expired, revoked, foreign, ...) for a bad one."""
    if insecure():
        return INSECURE_IDENTITY
    der = request.environ.get(PEER_CERT_ENVIRON)
    if not der:
        return None
    return authority().verify(bytes(der))


# -- the guard of each route ----------------------------------------------------------
Loader = Callable[[ids.Identity, dict], object]


@dataclass(frozen=True)
class Guard:
    action: str
    load: Loader | None = None      # (identity, view args) -> the facts to decide on
    # (identity, development mode) -> who the call speaks for (SLAP's X-SlapPartition)
    speaks_for: Callable | None = None


def _guard_request() -> None:
    guard = GUARDS.get(request.endpoint)
    if guard is None:            # no route matched: let Flask answer 404/405
        return
    if insecure():
        g.identity = (INSECURE_IDENTITY if guard.speaks_for is None
                      else guard.speaks_for(INSECURE_IDENTITY, True))
        return
    rule = policy.RULES[guard.action]
    try:
        identity = _authenticate()
    except SlapfedError:
        if not rule.public:
            raise
        identity = None          # public routes serve anyone, even a bad certificate
    if guard.speaks_for is not None:
        identity = guard.speaks_for(identity, False)
    g.identity = identity
    policy.admit(identity, guard.action)
    if guard.load is not None:
        facts = guard.load(identity, request.view_args or {})
        try:
            policy.authorize(identity, guard.action, facts)
        except Forbidden:
            _hide_unreadable_instance(identity, facts)
            raise
    elif not rule.public:
        policy.authorize(identity, guard.action)


def _hide_unreadable_instance(identity, facts) -> None:
    """An instance the caller may not even read is answered as one that does not exist
    (404, the same words), so that a refusal never tells whether an id is in use."""
    if isinstance(facts, policy.InstanceFacts) and facts.id is not None \
            and not policy.can(identity, policy.READ_INSTANCE, facts):
        raise NotFound(f"no instance with id {facts.id!r}")


# -- loaders ----------------------------------------------------------------------------
def _instance(identity, args):
    return authz.instance_facts(connection(), args["iid"])


def _instance_request(identity, args):
    body = json_body()
    req = InstanceRequest.from_json(body)
    given = body.get("requester") if isinstance(body, dict) else None
    resolved, facts = authz.resolve_request(connection, identity, req, given)
    g.instance_request = resolved
    return facts


def instance_request() -> InstanceRequest:
    """The request as the master records it: resolved by the guard (requester = the
    caller), or, in development mode, as the body says."""
    req = g.get("instance_request")
    return req if req is not None else InstanceRequest.from_json(json_body())


def _computer(identity, args):
    return ComputerFacts(args["cid"])


def _registered_computer(identity, args):
    return ComputerFacts(ComputerRegistration.from_json(json_body()).id)


def _partition(identity, args):
    return PartitionFacts(args["cid"], args["pid"])


def _existing_partition(identity, args):
    def query(app):
        comp = app.computers.get(args["cid"])
        if comp is None or args["pid"] not in comp.partitions:
            raise NotFound(f"computer {args['cid']!r} has no partition {args['pid']!r}")
    read(connection(), query)
    return PartitionFacts(args["cid"], args["pid"])


def _token_computer(identity, args):
    body = TokenCreation.from_json(json_body())
    return ComputerFacts(body.computer or f"master:{body.master}")


def _replica(identity, args):
    return ReplicaFacts(args["name"])


def _certificate(identity, args):
    record = authority().show(args["serial"])
    return policy.CertificateFacts(record.identity)


# -- accounting -------------------------------------------------------------------------
def statement_owner() -> str | None:
    """Whose statement the query asks for: owner=, else master/<peer> for peer=, else
    the caller's own."""
    args = request.args
    if args.get("peer") is not None and args.get("owner") is None:
        return f"master/{args['peer']}"
    if args.get("owner") is not None:
        return args["owner"]
    identity = current_identity()
    return None if identity is None else identity.principal


def _statement(identity, args):
    owner = statement_owner()
    g.statement_owner = owner
    return policy.StatementFacts(owner or "")


def _usage_instance(identity, args):
    """The instance's facts; from the ledger when the instance record is gone (its usage
    history outlives it)."""
    from ..services.accounting import owner_of_usage
    try:
        return authz.instance_facts(connection(), args["iid"])
    except NotFound:
        found = owner_of_usage(connection(), args["iid"])
        if found is None:
            raise
        return policy.InstanceFacts(requester=found[0], root_requester=found[1],
                                    id=args["iid"])


ACCOUNTING_GUARDS: dict[str, Guard] = {
    "accounting.report_usage": Guard(policy.REPORT_USAGE, lambda i, a: ComputerFacts(a["cid"])),
    "accounting.statement": Guard(policy.READ_STATEMENT, _statement),
    "accounting.instance_usage": Guard(policy.READ_USAGE, _usage_instance),
    "accounting.show_prices": Guard(policy.READ_PRICES),
    "accounting.set_prices": Guard(policy.SET_PRICES),
    "accounting.usage_feed": Guard(policy.READ_PEER_USAGE),
}


# -- SLAP (master.slap): the same actions, facts read from the call's fields -----------
def _slap_computer(field):
    return lambda identity, args: ComputerFacts(slapform.identifier(field))


def _slap_partition(identity, args):
    return PartitionFacts(slapform.identifier("computer_id"),
                          slapform.identifier("computer_partition_id"))


def _slap_registration(identity, args):
    return ComputerFacts(slapform.computer_registration().id)


def _slap_instance_request(identity, args):
    resolved, facts = authz.resolve_request(connection, identity,
                                            slapform.instance_request().request, None)
    g.instance_request = resolved
    return facts


def _slap_speaker(identity, development):
    return slapform.speaking_for(identity, trust_header=development)


_SLAP_NODE_SOFTWARE = ("building_software_release", "available_software_release",
                       "software_release_error", "destroyed_software_release",
                       "use_computer", "computer_bang")
_SLAP_NODE_PARTITION = ("started_computer_partition", "stopped_computer_partition",
                        "destroyed_computer_partition", "software_instance_error",
                        "software_instance_bang", "set_computer_partition_connection_xml",
                        "update_computer_partition_related_instance_list")
SLAP_GUARDS: dict[str, Guard] = {
    "slap.request_computer_partition": Guard(policy.REQUEST_INSTANCE, _slap_instance_request,
                                             _slap_speaker),
    # product aliases: whoever may request an instance (a node for one of its partitions)
    "slap.get_software_release_list_from_software_product": Guard(
        policy.READ_PRODUCTS, speaks_for=_slap_speaker),
    "slap.supply_supply": Guard(policy.SUPPLY_SOFTWARE, _slap_computer("computer_id")),
    "slap.get_full_computer_information": Guard(policy.READ_DESIRED_STATE,
                                                _slap_computer("computer_id")),
    "slap.get_computer_information": Guard(policy.READ_DESIRED_STATE,
                                           _slap_computer("computer_id")),
    "slap.register_computer_partition": Guard(policy.READ_DESIRED_STATE,
                                              _slap_computer("computer_reference")),
    "slap.get_computer_partition_certificate": Guard(policy.CERTIFY_PARTITION,
                                                     _slap_partition),
    "slap.load_computer_configuration_from_xml": Guard(policy.REGISTER_COMPUTER,
                                                       _slap_registration),
    # an instance renames itself (or a shared instance it hosts): its node speaks for it
    "slap.software_instance_rename": Guard(policy.RENAME_INSTANCE, _slap_partition,
                                           _slap_speaker),
    # the navigator of `slapos service list` / `computer list`: who asks, then the
    # instances and computers it may read (filtered per item, as on /api/v1)
    "slap.get_hateoas_url": Guard(policy.WHOAMI),
    "slap.hateoas_root": Guard(policy.WHOAMI),
    "slap.hateoas_search": Guard(policy.LIST_INSTANCES),
    "slap.hateoas_traverse": Guard(policy.LIST_INSTANCES),   # then read_* per document
    **{f"slap.{name}": Guard(policy.REPORT_SOFTWARE, _slap_computer("computer_id"))
       for name in _SLAP_NODE_SOFTWARE},
    **{f"slap.{name}": Guard(policy.REPORT_PARTITION, _slap_partition)
       for name in _SLAP_NODE_PARTITION},
}

GUARDS: dict[str, Guard] = {
    "meta.health": Guard(policy.HEALTH),
    "meta.openapi": Guard(policy.OPENAPI),
    "metrics.metrics": Guard(policy.READ_METRICS),
    "identity.whoami": Guard(policy.WHOAMI),
    "identity.redeem_token": Guard(policy.REDEEM_TOKEN),
    "identity.certify_partition": Guard(policy.CERTIFY_PARTITION, _existing_partition),
    "identity.list_certificates": Guard(policy.LIST_CERTIFICATES),
    "identity.issue_certificate": Guard(policy.ISSUE_CERTIFICATE),
    "identity.revoke_certificate": Guard(policy.REVOKE_CERTIFICATE, _certificate),
    "identity.create_token": Guard(policy.CREATE_TOKEN, _token_computer),
    "instances.request_instance": Guard(policy.REQUEST_INSTANCE, _instance_request),
    "instances.explain_placement": Guard(policy.REQUEST_INSTANCE, _instance_request),
    "instances.list_instances": Guard(policy.LIST_INSTANCES),
    "instances.show": Guard(policy.READ_INSTANCE, _instance),
    "instances.change_state": Guard(policy.CHANGE_INSTANCE_STATE, _instance),
    "instances.destroy": Guard(policy.DESTROY_INSTANCE, _instance),
    "instances.register_child_master": Guard(policy.REGISTER_CHILD_MASTER, _instance),
    "computers.register": Guard(policy.REGISTER_COMPUTER, _registered_computer),
    "computers.list_all": Guard(policy.LIST_COMPUTERS),
    "computers.show": Guard(policy.READ_COMPUTER, _computer),
    "computers.set_facts": Guard(policy.SET_COMPUTER_FACTS, _computer),
    "computers.supply": Guard(policy.SUPPLY_SOFTWARE, _computer),
    "computers.unsupply": Guard(policy.UNSUPPLY_SOFTWARE, _computer),
    "computers.report_software": Guard(policy.REPORT_SOFTWARE, _computer),
    "computers.report_partition": Guard(policy.REPORT_PARTITION, _partition),
    "computers.desired_state": Guard(policy.READ_DESIRED_STATE, _computer),
    "computers.declare_lost": Guard(policy.DECLARE_LOST, _computer),
    "computers.wipe": Guard(policy.WIPE_COMPUTER, _computer),
    "computers.report_moved": Guard(policy.REPORT_MOVED, _partition),
    "topology.show": Guard(policy.READ_TOPOLOGY),
    "federation.list_peers": Guard(policy.LIST_PEERS),
    "federation.show_peer": Guard(policy.LIST_PEERS),
    "federation.add_peer": Guard(policy.REGISTER_PEER),
    "federation.remove_peer": Guard(policy.REGISTER_PEER),
    "federation.declare_peer_lost": Guard(policy.DECLARE_PEER_LOST),
    "federation.update_peer": Guard(policy.REGISTER_PEER),
    "federation.show_policy": Guard(policy.LIST_PEERS),
    "federation.set_policy": Guard(policy.REGISTER_PEER),
    "federation.summary": Guard(policy.READ_SUMMARY),
    "federation.changes": Guard(policy.FOLLOW_DELEGATIONS),
    **SLAP_GUARDS,
    "replication.invite": Guard(policy.INVITE_REPLICA),
    "replication.register_replica": Guard(policy.REGISTER_REPLICA, _replica),
    "replication.transactions": Guard(policy.FOLLOW_TRANSACTIONS),
    "replication.ca": Guard(policy.READ_CA_MATERIAL),
    "replication.status": Guard(policy.READ_REPLICATION),
    "replication.promote": Guard(policy.PROMOTE),
    **ACCOUNTING_GUARDS,
}


# -- filtering lists --------------------------------------------------------------------
def instance_filter():
    """``(app, inst) -> bool`` for services.list_instances; None in development mode."""
    if insecure():
        return None
    identity = current_identity()
    return authz.visible_instance_filter(
        identity, lambda who, facts: policy.can(who, policy.READ_INSTANCE, facts))


def visible_computers(items: list[dict]) -> list[dict]:
    if insecure():
        return items
    return list(policy.visible(current_identity(), policy.READ_COMPUTER,
                               ((c, ComputerFacts(c["id"])) for c in items)))
