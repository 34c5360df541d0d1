"""Who may do what: every authorization decision of a master, in one table, pure.

Depends on slapfed.core.errors and slapfed.ca.identity only: no I/O, no Flask, no model.
The web layer gathers the facts of a resource, then calls ``authorize`` before acting.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

from ..core.errors import Forbidden, Unauthenticated
from .identity import ADMIN, COMPUTER, MASTER, PARTITION, PERSON, REPLICA, ROLES, Identity

# -- actions: one per API operation (and the federation's to come) ---------------------
HEALTH = "health"                                  # GET /health
OPENAPI = "openapi"                                # GET /openapi.json
READ_METRICS = "read_metrics"                      # GET /metrics (Prometheus text format)
WHOAMI = "whoami"                                  # who does the master think I am
REQUEST_INSTANCE = "request_instance"              # POST /instances
LIST_INSTANCES = "list_instances"                  # GET /instances (filtered by READ_INSTANCE)
READ_INSTANCE = "read_instance"                    # GET /instances/<id>
CHANGE_INSTANCE_STATE = "change_instance_state"    # PUT /instances/<id>/state
DESTROY_INSTANCE = "destroy_instance"              # DELETE /instances/<id>
REGISTER_COMPUTER = "register_computer"            # POST /computers
LIST_COMPUTERS = "list_computers"                  # GET /computers (filtered by READ_COMPUTER)
READ_COMPUTER = "read_computer"                    # GET /computers/<id>
SET_COMPUTER_FACTS = "set_computer_facts"          # PATCH /computers/<id>
SUPPLY_SOFTWARE = "supply_software"                # POST /computers/<id>/software
UNSUPPLY_SOFTWARE = "unsupply_software"            # DELETE /computers/<id>/software/<hash>
READ_DESIRED_STATE = "read_desired_state"          # GET /computers/<id>/desired-state
REPORT_SOFTWARE = "report_software"                # PUT /computers/<id>/software/<hash>/status
REPORT_PARTITION = "report_partition"              # PUT /computers/<id>/partitions/<pid>/status
RENAME_INSTANCE = "rename_instance"                # SLAP softwareInstanceRename
READ_PRODUCTS = "read_products"                    # SLAP getSoftwareReleaseListFromSoftwareProduct
DECLARE_LOST = "declare_computer_lost"              # POST /computers/<id>/lost
DECLARE_PEER_LOST = "declare_peer_lost"            # POST /peers/<name>/lost
WIPE_COMPUTER = "wipe_computer"                    # POST /computers/<id>/wipe
REPORT_MOVED = "report_moved_partition"            # PUT /computers/<id>/partitions/<pid>/moved
READ_TOPOLOGY = "read_topology"                    # GET /topology
ISSUE_CERTIFICATE = "issue_certificate"
CERTIFY_PARTITION = "certify_partition"            # a node gets its partition's CSR signed
REVOKE_CERTIFICATE = "revoke_certificate"
LIST_CERTIFICATES = "list_certificates"
CREATE_TOKEN = "create_token"                      # one-time registration token for a computer
REDEEM_TOKEN = "redeem_token"                      # a node trades its token for a certificate
REGISTER_CHILD_MASTER = "register_child_master"    # PUT /instances/<id>/child-master
REGISTER_PEER = "register_peer"                    # POST/DELETE /peers, PUT /federation/policy
LIST_PEERS = "list_peers"                          # GET /peers, GET /federation/policy
READ_SUMMARY = "read_federation_summary"           # GET /federation/summary
FOLLOW_DELEGATIONS = "follow_delegations"          # GET /federation/changes (long poll)
INVITE_REPLICA = "invite_replica"                  # POST /replication/invitations
REGISTER_REPLICA = "register_replica"              # PUT /replication/replicas/<name>
FOLLOW_TRANSACTIONS = "follow_transactions"        # GET /replication/transactions (long poll)
READ_CA_MATERIAL = "read_ca_material"              # GET /replication/ca
READ_REPLICATION = "read_replication"              # GET /replication/status
PROMOTE = "promote"                                # POST /replication/promotion
# accounting
REPORT_USAGE = "report_usage"                      # POST /computers/<id>/usage
READ_STATEMENT = "read_statement"                  # GET /statements
READ_USAGE = "read_usage"                          # GET /instances/<id>/usage
READ_PRICES = "read_prices"                        # GET /accounting/prices
SET_PRICES = "set_prices"                          # PUT /accounting/prices
READ_PEER_USAGE = "read_peer_usage"                # GET /federation/usage (a peer's feed)


# -- the facts a decision needs --------------------------------------------------------
class Placement(NamedTuple):
    computer: str
    partition: str


@dataclass(frozen=True)
class InstanceFacts:
    """An instance (or the instance a request would create or update).

    ``requester`` is what the master records: a principal (``person/alice``,
    ``master/b``) for a root, the parent instance's id for a child requested by a
    partition. ``root_requester`` is the requester of the tree's root: the tree's owner."""

    requester: str
    root_requester: str
    id: str | None = None
    parent: str | None = None
    placement: Placement | None = None
    parent_placement: Placement | None = None   # where the parent instance runs


@dataclass(frozen=True)
class ComputerFacts:
    id: str


@dataclass(frozen=True)
class PartitionFacts:
    computer: str
    partition: str


@dataclass(frozen=True)
class ReplicaFacts:
    name: str                     # the replica a registration speaks of


@dataclass(frozen=True)
class StatementFacts:
    owner: str                    # whose usage (a principal: person/alice, master/b)


@dataclass(frozen=True)
class CertificateFacts:
    identity: Identity            # whom the certificate speaks for


# -- predicates: each says in one line what it grants ----------------------------------
Predicate = Callable[[Identity, object], bool]


def anything(identity: Identity, resource) -> bool:
    """anything"""
    return True


def in_own_tree(identity: Identity, facts: InstanceFacts) -> bool:
    """only instance trees it requested"""
    return facts.root_requester == identity.principal


def own_instance_or_child(identity: Identity, facts: InstanceFacts) -> bool:
    """only its own instance and the children it requested"""
    return _here(identity) in (facts.placement, facts.parent_placement)


def own_instance(identity: Identity, facts: InstanceFacts) -> bool:
    """only the instance it hosts"""
    return facts.placement is not None and facts.placement == _here(identity)


def own_child(identity: Identity, facts: InstanceFacts) -> bool:
    """only the children its own instance requested"""
    return facts.parent_placement == _here(identity)


def placed_on_own_computer(identity: Identity, facts: InstanceFacts) -> bool:
    """only instances placed on its own computer"""
    return facts.placement is not None and facts.placement.computer == identity.computer


def own_computer(identity: Identity, facts: ComputerFacts) -> bool:
    """only its own computer"""
    return facts.id == identity.computer


def partition_of_own_computer(identity: Identity, facts: PartitionFacts) -> bool:
    """only partitions of its own computer"""
    return facts.computer == identity.computer


def own_partition(identity: Identity, facts: PartitionFacts) -> bool:
    """only its own partition"""
    return Placement(facts.computer, facts.partition) == _here(identity)


def own_certificate(identity: Identity, facts: CertificateFacts) -> bool:
    """only its own certificates"""
    return facts.identity == identity


def own_statement(identity: Identity, facts: StatementFacts) -> bool:
    """only its own usage (a peer: what its delegations used here)"""
    return facts.owner == identity.principal


def own_replica(identity: Identity, facts: ReplicaFacts) -> bool:
    """only itself"""
    return identity.role == REPLICA and identity.name == facts.name


def _here(identity: Identity) -> Placement | None:
    if identity.role != PARTITION:
        return None
    return Placement(identity.computer, identity.partition)


# -- the table -------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    action: str
    doc: str                                    # the rule, in one line
    resource: type | None = None                # the facts the action is decided on
    public: bool = False                        # no certificate needed at all
    grants: dict[str, Predicate] | None = None  # role -> what that role may touch


def _every_role(predicate: Predicate = anything) -> dict[str, Predicate]:
    return dict.fromkeys(ROLES, predicate)


def _every_party(predicate: Predicate = anything) -> dict[str, Predicate]:
    """Every role but a replica's: a replica reads the transaction stream and nothing else."""
    return {role: predicate for role in ROLES if role != REPLICA}


def _tree_owners(**more: Predicate) -> dict[str, Predicate]:
    return {PERSON: in_own_tree, ADMIN: in_own_tree, MASTER: in_own_tree, **more}


RULES: dict[str, Rule] = {r.action: r for r in (
    Rule(HEALTH, "anyone, even without a certificate", public=True),
    Rule(OPENAPI, "anyone, even without a certificate", public=True),
    Rule(REDEEM_TOKEN, "anyone holding a registration token (the token is the credential)",
         public=True),
    Rule(WHOAMI, "every authenticated party", grants=_every_role()),
    Rule(READ_METRICS, "admins only (counts of requests, placements and forwards by "
         "peer)", grants={ADMIN: anything}),
    Rule(REQUEST_INSTANCE, "people, admins and peers in their own trees; a partition adds "
         "children to its own instance", InstanceFacts,
         grants=_tree_owners(**{PARTITION: own_child})),
    Rule(READ_PRODUCTS, "whoever may request an instance: people, admins, peers and "
         "partitions (what SlapOS' product.NAME stands for, before any request)",
         grants={PERSON: anything, ADMIN: anything, MASTER: anything, PARTITION: anything}),
    Rule(LIST_INSTANCES, "every authenticated party but a replica; each item is then "
         "filtered by read_instance", grants=_every_party()),
    Rule(READ_INSTANCE, "owners read their trees, a partition its instance and children, a "
         "node what runs on it, an admin everything", InstanceFacts,
         grants=_tree_owners(**{ADMIN: anything, PARTITION: own_instance_or_child,
                                COMPUTER: placed_on_own_computer})),
    Rule(CHANGE_INSTANCE_STATE, "owners change their trees; a partition its children",
         InstanceFacts, grants=_tree_owners(**{PARTITION: own_child})),
    Rule(DESTROY_INSTANCE, "owners destroy in their trees; a partition its children",
         InstanceFacts, grants=_tree_owners(**{PARTITION: own_child})),
    Rule(REGISTER_CHILD_MASTER, "the partition hosting a child master registers it as the "
         "master its own instance runs; an admin any", InstanceFacts,
         grants={ADMIN: anything, PARTITION: own_instance}),
    Rule(REGISTER_COMPUTER, "an admin registers any computer; a node re-registers itself "
         "(its certificate came from an admin's token), adding partitions but changing none "
         "of the facts an admin owns (core.claims)", ComputerFacts,
         grants={ADMIN: anything, COMPUTER: own_computer}),
    Rule(SET_COMPUTER_FACTS, "admins only (a computer's locality, labels and capabilities)",
         ComputerFacts, grants={ADMIN: anything}),
    Rule(LIST_COMPUTERS, "every authenticated party but a replica; each item is then "
         "filtered by read_computer", grants=_every_party()),
    Rule(READ_COMPUTER, "a node reads its own computer; an admin every computer",
         ComputerFacts, grants={ADMIN: anything, COMPUTER: own_computer}),
    Rule(SUPPLY_SOFTWARE, "admins only", ComputerFacts, grants={ADMIN: anything}),
    Rule(UNSUPPLY_SOFTWARE, "admins only", ComputerFacts, grants={ADMIN: anything}),
    Rule(READ_DESIRED_STATE, "a node reads its own; an admin any", ComputerFacts,
         grants={ADMIN: anything, COMPUTER: own_computer}),
    Rule(REPORT_SOFTWARE, "a node reports on its own computer only", ComputerFacts,
         grants={COMPUTER: own_computer}),
    Rule(REPORT_PARTITION, "a node reports its own partitions; a partition itself (to "
         "publish its connection parameters); the state claimed must fit the state "
         "requested, and only the node claims destroyed (core.claims)", PartitionFacts,
         grants={COMPUTER: partition_of_own_computer, PARTITION: own_partition}),
    Rule(RENAME_INSTANCE, "a partition renames the instance it hosts, or a shared instance "
         "of the same owner attached to it (its node speaks for it with X-SlapPartition)",
         PartitionFacts, grants={PARTITION: own_partition}),
    Rule(DECLARE_LOST, "admins only (the verdict that moves what a computer hosts)",
         ComputerFacts, grants={ADMIN: anything}),
    Rule(DECLARE_PEER_LOST, "admins only (the verdict that moves what a peer serves for "
         "this master)", grants={ADMIN: anything}),
    Rule(WIPE_COMPUTER, "admins only (lets a node erase the data of instances that moved "
         "away)", ComputerFacts, grants={ADMIN: anything}),
    Rule(REPORT_MOVED, "a node reports its own partitions whose instance moved away "
         "(quarantined, or erased once an admin allowed it)", PartitionFacts,
         grants={COMPUTER: partition_of_own_computer}),
    Rule(READ_TOPOLOGY, "admins and peer masters (the live part names every placement)",
         grants={ADMIN: anything, MASTER: anything}),
    Rule(ISSUE_CERTIFICATE, "admins only", grants={ADMIN: anything}),
    Rule(CERTIFY_PARTITION, "a node has the keys of its own partitions certified (the key "
         "is made in the partition; a stock SLAP node is handed one the master made); "
         "an admin any", PartitionFacts,
         grants={ADMIN: anything, COMPUTER: partition_of_own_computer}),
    Rule(REVOKE_CERTIFICATE, "an admin, or the certificate's own holder (a key it lost "
         "control of)", CertificateFacts, grants={**_every_role(own_certificate), ADMIN: anything}),
    Rule(LIST_CERTIFICATES, "admins only", grants={ADMIN: anything}),
    Rule(CREATE_TOKEN, "admins only", ComputerFacts, grants={ADMIN: anything}),
    Rule(REGISTER_PEER, "admins only", grants={ADMIN: anything}),
    Rule(LIST_PEERS, "admins only", grants={ADMIN: anything}),
    Rule(READ_SUMMARY, "admins and peer masters (where this master's computers are, what "
         "they are supplied)", grants={ADMIN: anything, MASTER: anything}),
    Rule(FOLLOW_DELEGATIONS, "peer masters, each answered with the instances it requested "
         "only", grants={MASTER: anything}),
    Rule(INVITE_REPLICA, "admins only (a one-time token for a replica master)",
         grants={ADMIN: anything}),
    Rule(REGISTER_REPLICA, "a replica registers itself (its URL and mode); an admin any",
         ReplicaFacts, grants={ADMIN: anything, REPLICA: own_replica}),
    Rule(FOLLOW_TRANSACTIONS, "replicas only (every committed transaction, as stored)",
         grants={REPLICA: anything}),
    Rule(READ_CA_MATERIAL, "replicas only (the CA's key and records, so that a promoted "
         "replica goes on signing as the same CA)", grants={REPLICA: anything}),
    Rule(READ_REPLICATION, "admins only (role, epoch, replicas and their lag)",
         grants={ADMIN: anything}),
    Rule(PROMOTE, "admins only (a replica becomes the primary at a new epoch)",
         grants={ADMIN: anything}),
    # accounting
    Rule(REPORT_USAGE, "a node reports the usage of its own computer's partitions only",
         ComputerFacts, grants={COMPUTER: own_computer}),
    Rule(READ_STATEMENT, "a person reads its own statements, a peer master what its "
         "delegations used here, an admin everyone's", StatementFacts,
         grants={PERSON: own_statement, MASTER: own_statement, ADMIN: anything}),
    Rule(READ_USAGE, "owners read the usage of their trees (destroyed instances too), an "
         "admin everything", InstanceFacts,
         grants=_tree_owners(**{ADMIN: anything})),
    Rule(READ_PRICES, "people, peers and admins (what statements are priced at)",
         grants={PERSON: anything, MASTER: anything, ADMIN: anything}),
    Rule(SET_PRICES, "admins only (the price list statements use)",
         grants={ADMIN: anything}),
    Rule(READ_PEER_USAGE, "peer masters, each answered with the usage of the instances it "
         "requested here only (its own feed)", grants={MASTER: anything}),
)}

ACTIONS = tuple(RULES)


# -- deciding --------------------------------------------------------------------------
def authorize(identity: Identity | None, action: str, resource=None) -> None:
    """Allow, or raise: Unauthenticated (401) when no identity was proven and the action
    is not public; Forbidden (403) when this identity may not do it to this resource.
    A wrong resource type or an unknown action is a programming error (TypeError,
    KeyError) and never an allowance."""
    rule = _rule(action, resource)
    if rule.public:
        return
    if identity is None:
        raise Unauthenticated(f"{action.replace('_', ' ')} needs a client certificate issued "
                              f"by this master's certificate authority")
    grant = (rule.grants or {}).get(identity.role)
    if grant is None:
        roles = ", ".join(r for r in ROLES if r in (rule.grants or {}))
        raise Forbidden(f"{identity.principal} may not {action.replace('_', ' ')}: "
                        f"a {identity.role} never may (allowed: {roles or 'nobody'})")
    if not grant(identity, resource):
        raise Forbidden(f"{identity.principal} may not {action.replace('_', ' ')} "
                        f"({describe(resource)}): a {identity.role} may touch {grant.__doc__}")


def admit(identity: Identity | None, action: str) -> None:
    """The part of ``authorize`` that needs no resource: public actions pass, a missing
    identity is Unauthenticated, a role the action never grants is Forbidden. The web
    layer calls it before loading a resource, so that a refusal never depends on whether
    the resource exists; ``authorize`` then decides on the resource's facts."""
    rule = RULES[action]
    if rule.public:
        return
    if identity is None:
        raise Unauthenticated(f"{action.replace('_', ' ')} needs a client certificate issued "
                              f"by this master's certificate authority")
    if identity.role not in (rule.grants or {}):
        roles = ", ".join(r for r in ROLES if r in (rule.grants or {}))
        raise Forbidden(f"{identity.principal} may not {action.replace('_', ' ')}: "
                        f"a {identity.role} never may (allowed: {roles or 'nobody'})")


def can(identity: Identity | None, action: str, resource=None) -> bool:
    """``authorize`` as a boolean (for filtering lists)."""
    try:
        authorize(identity, action, resource)
    except (Unauthenticated, Forbidden):
        return False
    return True


def visible(identity: Identity | None, action: str, items: Iterable[tuple[object, object]]):
    """The items whose facts ``identity`` may ``action`` (e.g. READ_INSTANCE); ``items``
    are (item, facts) pairs, the items are yielded."""
    for item, facts in items:
        if can(identity, action, facts):
            yield item


def describe(resource) -> str:
    if isinstance(resource, InstanceFacts):
        return f"instance {resource.id or '(new)'} of {resource.root_requester}'s tree"
    if isinstance(resource, ComputerFacts):
        return f"computer {resource.id}"
    if isinstance(resource, PartitionFacts):
        return f"partition {resource.partition} of computer {resource.computer}"
    if isinstance(resource, CertificateFacts):
        return f"a certificate of {resource.identity.principal}"
    if isinstance(resource, ReplicaFacts):
        return f"replica {resource.name}"
    if isinstance(resource, StatementFacts):
        return f"the usage of {resource.owner}"
    return "this"


def describe_policy() -> list[dict]:
    """The whole table, for documentation: action, rule, and what each role may touch."""
    out = []
    for rule in RULES.values():
        grants = {role: (rule.grants[role].__doc__ if role in (rule.grants or {}) else None)
                  for role in ROLES}
        out.append({"action": rule.action, "rule": rule.doc, "public": rule.public,
                    "grants": {r: g for r, g in grants.items() if g is not None}})
    return out


def _rule(action: str, resource) -> Rule:
    try:
        rule = RULES[action]
    except KeyError:
        raise KeyError(f"no authorization rule for action {action!r}") from None
    if rule.resource is not None and not isinstance(resource, rule.resource):
        raise TypeError(f"{action} is decided on {rule.resource.__name__}, "
                        f"got {type(resource).__name__}")
    return rule
