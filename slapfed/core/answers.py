"""The JSON bodies the master answers, declared once as pydantic models.

Depends on pydantic, core.states, core.leases, core.fields and (for DelegationPolicy,
on first use) core.wire. The master's OpenAPI
document takes its response schemas from these models (master.openapi); the client
and the node agent check the answers they read against them (:func:`check`), so that
an answer the document does not describe fails where it is read, naming the field.
Every model refuses fields it does not declare: a new field is declared here first.

Cheap to import (the CLI checks one answer per command): no ``from __future__ import
annotations`` here (pydantic would evaluate every annotation string again), and every
model defers building its validator until it first validates (``defer_build``).
"""
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, WithJsonSchema

from .errors import InvalidInput
from .leases import LEASE_STATES
from .states import (
    FORWARD_STATES, MOVED_REPORT_STATES, INSTANCE_STATUSES, LOCALITY_LEVELS, PEER_ORIGINS, REQUESTED_STATES,
    SOFTWARE_STATUSES, SUPPLY_STATES, TRUST_LEVELS,
)
from .fields import IDENTITY_ROLES, OPEN_TO_SCHEMA, REPLICA_MODES, SLA_SCHEMA


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


def Enum(values):
    return Literal[tuple(values)]


Iso = Optional[Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]]
Obj = dict[str, Any]
Sla = Annotated[Any, WithJsonSchema(SLA_SCHEMA)]
Names = list[str]


def described(text: str, kind=str):
    return Annotated[kind, Field(description=text)]


class ErrorDetail(BaseModel):
    """One problem: the field it concerns and what is wrong (some carry more facts)."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    field: Optional[str] = None
    problem: Optional[str] = None


class ErrorInfo(Answer):
    code: str
    message: str
    details: list[ErrorDetail]
    request_id: Optional[described(
        "the id of the request this answers, as in the X-Request-Id response header and "
        "the master's access log")] = None


class Error(Answer):
    error: ErrorInfo


MASTER_ROLES = ("primary", "replica", "fenced")     # core.replication.LocalRole.state


class Health(Answer):
    status: Literal["ok"]
    generation: int
    version: str
    name: Optional[str] = None
    role: Optional[described("what this master is: the primary of its epoch, a read-only "
                             "replica, or a primary fenced by a larger epoch",
                             Enum(MASTER_ROLES))] = None
    epoch: Optional[described("grows by one at each promotion",
                              Annotated[int, Field(ge=1)])] = None


class Lease(Answer):
    state: described("live: its node called within the lease; expired: it did not, and the "
                     "computer and its instances show unknown (nothing is destroyed, moved "
                     "or freed; no new instance goes there); none: its node never called",
                     Enum(LEASE_STATES))
    expires_at: described("when the lease runs (or ran) out", Iso)
    interval: described("the lease, in seconds", float)
    # the lease's transitions as the master recorded them (one write each; the peers
    # that delegated instances here learn them through their long poll)
    ran_out_at: described("when the lease ran out, as recorded once the master saw it "
                          "(cleared when its node calls again)", Iso) = None
    back_at: described("when its node was last heard from again after its lease had run "
                       "out", Iso) = None


class MovedPartition(Answer):
    instance: described("the instance that moved away (its computer was declared lost)")
    quarantined: described("its node set the instance's data aside (kept)", bool)
    wipe: described("an admin let the node erase them (slapfed computer wipe)", bool)


class Partition(Answer):
    id: str
    address: str
    port_base: int
    port_count: int
    instance: described("id of the hosted instance", Optional[str])
    capabilities: Names
    moved: described("the data of an instance that moved away, kept here until wiped "
                     "(the partition is not free meanwhile)", Optional[MovedPartition])


class LostMark(Answer):
    at: Iso
    reason: str


class Software(Answer):
    url: str
    hash: str
    state: Enum(SUPPLY_STATES)
    status: Enum(SOFTWARE_STATUSES)
    log_tail: str
    software_types: Names
    reported_at: Iso
    failed_installs: described("failed installs since the last successful one; above 0, "
                               "placement sends no new instance of it here",
                               Annotated[int, Field(ge=0)])


class Computer(Answer):
    id: str
    host: Optional[str]
    lan: Optional[str]
    country: Optional[str]
    continent: Optional[str]
    labels: dict[str, str]
    capabilities: Names
    last_contact: Iso
    serial: int
    lease: Lease
    lost: described("the verdict that it is lost: nothing is placed there, what it hosted "
                    "moved", Optional[LostMark])
    partitions: list[Partition]
    software: list[Software]


class ComputerList(Answer):
    computers: list[Computer]
    next: described("the cursor of the next page (give it back as ?cursor=), or null "
                    "after the last page", Optional[str])


class Move(Answer):
    instance: str
    reference: str
    partition: described("the partition it had on the lost computer (\"\" for a peer)")
    outcome: Enum(("moved", "not_placed", "destroyed", "rebuilt"))
    to: described("where it went: computer and partition, a host instance, or a peer; "
                  "rebuilt (a child master): the partition of its replica (``from``)",
                  Optional[dict[str, str]])
    reason: Optional[str]


class LostAnswer(Answer):
    computer: Computer
    moves: list[Move]
    dry_run: Optional[described("true: what would move; nothing was written",
                                bool)] = None


class SharedInstanceEntry(Answer):
    id: str
    reference: str
    parameters: Obj


class Recipient(Answer):
    certificate: described("PEM certificate of the requester: the node seals the "
                           "instance's secret connection parameters to its key")
    fingerprint: described("SHA-256 of that certificate (hex): when it changes, the node "
                           "seals them again")
    instance: Optional[described(
        "an instance delegated here: its id at the master its requester asked, which its "
        "secrets are bound to (absent: its own id)")] = None


class DesiredInstance(Answer):
    id: str
    reference: str
    requester: str
    software_url: str
    software_hash: str
    software_type: str
    parameters: Obj
    requested_state: Enum(REQUESTED_STATES)
    revision: int
    shared_instances: list[SharedInstanceEntry]
    provenance: described("masters its request crossed, the last one placed it", Names)
    restore_from: Optional[described(
        "the backup location it published before its computer was lost: the node runs "
        "its restore steps with it before its first start here")] = None
    takes_over: Optional[described(
        "the instance whose partition it took over, data included (a child master "
        "rebuilt from its replica): the node keeps that data, never wipes it")] = None
    children_moved: Optional[described(
        "how many times an instance it requested moved to another partition (its "
        "computer was lost): each time, the node runs its buildout again", int)] = None
    recipient: Optional[described("whom secret connection parameters are sealed to "
                                  "(absent: nobody known, none is published)",
                                  Recipient)] = None


class DesiredMoved(Answer):
    instance: described("the instance that moved away: its services stay stopped, its "
                        "data set aside")
    wipe: described("an admin let the node erase its data", bool)


class DesiredPartition(Answer):
    id: str
    address: str
    port_base: int
    port_count: int
    instance: Optional[DesiredInstance]
    moved: Optional[described("only on a partition whose instance moved away",
                              DesiredMoved)] = None


class DesiredSoftware(Answer):
    url: str
    hash: str
    state: Enum(SUPPLY_STATES)


class DesiredState(Answer):
    computer: str
    serial: int
    software: list[DesiredSoftware]
    partitions: list[DesiredPartition]


class Locality(Answer):
    host: Optional[str]
    lan: Optional[str]
    country: Optional[str]
    continent: Optional[str]


assert tuple(Locality.model_fields) == LOCALITY_LEVELS


class ReleaseState(Answer):
    status: Enum(SOFTWARE_STATUSES)
    reported_at: Iso
    failed_installs: int
    reason: Optional[str]


class Placement(Answer):
    computer: str
    partition: str
    address: str
    port_base: int
    port_count: int
    locality: described("the computer's locality", Locality)
    release: described("the instance's release on that computer, as its node last "
                       "reported it (reason: the last line of a failed install's log)",
                       ReleaseState)
    recipient: Optional[described("the partition's own certificate: what secret "
                                  "parameters are sealed to (null until its node had it "
                                  "issued)", Recipient)] = None


class Promise(Answer):
    name: str
    ok: bool
    message: str


class InstanceStatus(Answer):
    state: Enum(INSTANCE_STATUSES)
    revision: described("revision the node last reported on", int)
    reported_at: Iso
    log_tail: str
    reported_state: Optional[described(
        "only while the state is unknown because its computer's lease ran out: the state "
        "last reported (shown again once its node calls); log_tail says since when",
        Enum(INSTANCE_STATUSES))] = None
    promises: list[Promise]


class ChildMaster(Answer):
    name: str
    url: str
    ca_certificate: str


class Delegation(Answer):
    peer: str
    state: Enum(FORWARD_STATES)
    reason: str
    remote_reference: described("origin master, requester and reference: asking again "
                                "never duplicates")
    remote_id: Optional[str] = None
    accepted: Optional[bool] = None
    attempts: Optional[int] = None
    next_attempt_at: Iso = None
    fallbacks: Optional[Names] = None
    chain: described("masters beyond this one, then the computer", list[Obj])
    updated_at: Iso = None


class LivePlacement(Answer):
    computer: str
    partition: str
    address: str


class Instance(Answer):
    id: str
    reference: str
    requester: str
    parent: Optional[str]
    children: Names
    software_url: str
    software_hash: str
    software_type: str
    parameters: Obj
    sla: Sla
    requested_state: Enum(REQUESTED_STATES)
    shared: bool
    revision: int
    placement: Optional[Placement]
    host_instance: described("shared instances: id of the hosting instance", Optional[str])
    host_placement: Optional[described(
        "shared instances: where the hosting instance runs (what a SLAP client is "
        "answered for it), null until it is placed", LivePlacement)] = None
    shared_instances: described("hosts: ids of the shared instances attached", Names)
    open_to: Annotated[Names, WithJsonSchema({**OPEN_TO_SCHEMA, "default": []})]
    status: InstanceStatus
    connection: Obj
    provenance: described("masters its request crossed, this one last", Names)
    child_master: described("the master this instance runs, once registered",
                            Optional[ChildMaster])
    delegation: described("delegated instances: the peer serving it and the chain beyond",
                          Optional[Delegation])
    created_at: Iso
    updated_at: Iso


class InstanceList(Answer):
    instances: list[Instance]
    next: described("the cursor of the next page (give it back as ?cursor=), or null "
                    "after the last page", Optional[str])


class Refusal(Answer):
    plugin: str
    reason: str
    count: int
    sample: Optional[described("a few of the computers refused", Names)] = None


class Ranked(Answer):
    computer: str
    score: float
    scores: dict[str, float]


class PlacementAttempt(Answer):
    alternative: int
    sla: str
    candidates: int
    feasible: int
    scored: int
    refusals: list[Refusal]
    top: list[Ranked]


class Where(Answer):
    computer: str
    partition: str


class Anchor(Answer):
    computer: Optional[str]
    why: Optional[str]


class Considered(Answer):
    peer: str
    verdict: str


class Route(Answer):
    kind: Literal["local", "delegate"]
    peers: described("delegate: the peer to call, then the fallbacks in order", Names)
    reason: str
    considered: list[Considered]


class PlacementDecision(Answer):
    reference: str
    requester: str
    placed: bool
    computer: Optional[str]
    partition: Optional[str]
    alternative: described("index of the SLA alternative that matched", Optional[int])
    message: str
    attempts: list[PlacementAttempt]
    instance: described("id of the existing instance of requester+reference", Optional[str])
    current: described("where the existing instance runs (a repeated request keeps it "
                       "there)", Optional[Where])
    anchors: described("where the instances named by relative keys run", dict[str, Anchor])
    route: described("where the request would be served: here, or delegated to a peer "
                     "master", Route)


# -- topology --------------------------------------------------------------------------
class TopoSite(Answer):
    name: str
    level: Literal["continent", "country", "lan", "host"]
    parent: Optional[str]
    description: str


class TopoMaster(Answer):
    name: str
    url: Optional[str]
    site: str
    description: str


class TopoComputer(Answer):
    id: str
    site: str
    master: Optional[str]
    labels: dict[str, str]
    capabilities: Names
    partitions: Optional[int]
    description: str
    locality: Locality


class TopoLink(Answer):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)
    from_: str = Field(alias="from")
    to: str
    latency_ms: float
    cost: float
    trust: Enum(TRUST_LEVELS)
    description: str
    invitations: Optional[described("invitation files pairing its ends", Names)] = None


class TopologyFiles(Answer):
    files: Names
    sites: list[TopoSite]
    masters: list[TopoMaster]
    computers: list[TopoComputer]
    links: list[TopoLink]


class LiveComputer(Answer):
    id: str
    host: Optional[str]
    lan: Optional[str]
    country: Optional[str]
    continent: Optional[str]
    labels: dict[str, str]
    capabilities: Names
    last_contact: Iso
    lease: Lease
    partitions: list[Partition]


class LiveInstance(Answer):
    id: str
    reference: str
    requester: str
    parent: Optional[str]
    children: Names
    shared: bool
    host_instance: Optional[str]
    software_url: str
    software_type: str
    requested_state: Enum(REQUESTED_STATES)
    state: Enum(INSTANCE_STATUSES)
    reason: described("why the state is unknown (its computer's lease ran out), else null",
                      Optional[str])
    placement: Optional[LivePlacement]
    delegation: Optional[Delegation]


# -- replication in the topology (a child master's replicas; this master's epochs) --------
class LiveChildReplica(Answer):
    name: Optional[str]
    reference: str
    instance: str
    url: described("the URL the replica published (null until it has)", Optional[str])
    mode: Optional[str]
    computer: Optional[str]
    state: Enum(INSTANCE_STATUSES)


class LiveEpoch(Answer):
    epoch: int
    primary: str
    at: Iso


class LiveReplica(Answer):
    name: str
    url: Optional[str]
    mode: Enum(REPLICA_MODES)
    lag_seconds: described("how far the replica is behind this primary, in seconds, as "
                           "its last confirmation says (null: not known yet)",
                           Optional[float]) = None


class LiveReplication(Answer):
    role: Optional[described("what this master is: primary, replica or fenced",
                             Enum(MASTER_ROLES))] = None
    epoch: int
    epochs: list[LiveEpoch]
    replicas: list[LiveReplica]


class LiveMaster(Answer):
    name: str
    url: str
    instance: str
    reference: str
    replicas: Optional[described("the replicas its instance requested (replicas=N)",
                                 list[LiveChildReplica])] = None


class LivePeer(Answer):
    name: str
    url: str
    origin: Optional[str] = None
    trust: Optional[str] = None
    paired: bool
    link: Literal["up", "down", "unknown"]
    last_contact: Iso = None
    last_error: Optional[str] = None
    pending_forwards: int
    forwards: int
    latency_ms: Optional[float] = None
    site: Optional[str] = None
    instance: Optional[str] = None


class Live(Answer):
    master: Optional[str]
    computers: list[LiveComputer]
    instances: list[LiveInstance]
    masters: list[LiveMaster]
    peers: list[LivePeer]
    replication: Optional[described("this master's role, epoch, who held each epoch, and "
                                    "its replicas", LiveReplication)] = None


class TopologyView(Answer):
    master: described("this master's name in the topology files", Optional[str])
    topology: TopologyFiles
    live: Live
    next: described("the cursor of the next page (give it back as ?cursor=), or null "
                    "after the last page", Optional[str])


# -- identities and certificates ---------------------------------------------------------
class Identity(Answer):
    role: Enum(IDENTITY_ROLES)
    name: str
    uri: str
    computer: Optional[str] = None
    partition: Optional[str] = None


class PresentedCertificate(Answer):
    serial: str
    not_before: Iso
    not_after: Iso
    fingerprint: str


class WhoAmI(Answer):
    identity: Identity
    principal: str
    development_mode: bool
    certificate: described("the certificate the caller presented; null in development "
                           "mode", Optional[PresentedCertificate])


Pem = described("PEM text")


class Certificate(Answer):
    serial: str
    identity: Identity
    not_before: Iso
    not_after: Iso
    fingerprint: str
    hosts: Names
    revoked: bool
    revocation: Optional[Obj] = None


class IssuedCertificate(Certificate):
    certificate: Pem
    ca_certificate: Pem


class CertificateList(Answer):
    certificates: list[Certificate]


class Token(Answer):
    computer: Optional[str] = None
    master: Optional[str] = None
    principal: Optional[str] = None
    token: str
    ca_certificate: Optional[Pem] = None


# -- federation --------------------------------------------------------------------------
class Orphan(Answer):
    instance: str
    remote_reference: str
    remote_id: Optional[str]
    at: Iso


class PeerUsage(Answer):
    cursor: described("the last entry of its feed recorded here", int)
    head: described("its feed's newest entry when it last answered", int)
    recorded: int
    skipped: described("entries refused (invalid, or of no instance delegated there)", int)
    last_problem: str
    pulled_at: Iso = None


class Peer(Answer):
    name: str
    url: str
    origin: Optional[Enum(PEER_ORIGINS)] = None
    paired: bool
    principal: Optional[str] = None
    trust: Optional[str] = None
    cost: Optional[float] = None
    latency_ms: Optional[float] = None
    site: Optional[str] = None
    last_contact: Iso = None
    last_error: Optional[str] = None
    last_error_at: Iso = None
    link: Literal["up", "down", "unknown"]
    forwards: described("open forwards by state", dict[str, int])
    pending_forwards: int
    summary: Optional[Obj] = None
    added_at: Iso = None
    instance: Optional[described("child masters: the instance running it")] = None
    lost: Optional[described("the verdict that it is lost: nothing is delegated there",
                             LostMark)] = None
    orphans: Optional[described("instances of ours it may still run since the verdict, "
                                "to destroy there if it ever comes back",
                                list[Orphan])] = None
    usage: Optional[described("its usage feed as recorded here (what our delegations "
                              "used there): none read yet when absent", PeerUsage)] = None


class PeerLostAnswer(Answer):
    peer: Peer
    moves: list[Move]
    dry_run: Optional[described("true: what would move; nothing was written",
                                bool)] = None


class PeerList(Answer):
    peers: list[Peer]


class FederationSummary(Answer):
    name: str
    localities: list[dict[str, str]]
    software: Names
    hosting: list[Names]
    capabilities: Names
    free_partitions: int
    reach: list[Obj]


class Changes(Answer):
    cursor: str
    instances: list[Instance]


# -- replication -------------------------------------------------------------------------
Tid = Annotated[str, Field(pattern="^[0-9a-f]{16}$")]
Base64 = Optional[Annotated[str, WithJsonSchema({"type": "string",
                                                 "contentEncoding": "base64"})]]


class ReplicaToken(Answer):
    name: str
    principal: str
    token: str
    ca_certificate: Pem
    primary: described("this master's name", Optional[str])
    epoch: int


class Replica(Answer):
    name: str
    url: Optional[str]
    mode: Enum(REPLICA_MODES)
    epoch: int


class ShippedRecord(Answer):
    oid: Tid
    data: Base64
    data_txn: Optional[Tid]


class ShippedTransaction(Answer):
    tid: Tid
    status: Enum((" ", "p", "u"))
    user: Base64
    description: Base64
    extension: Base64
    records: list[ShippedRecord]


class Transactions(Answer):
    transactions: list[ShippedTransaction]
    last_tid: described("the last transaction committed here", Tid)
    more: described("others follow this batch", bool)
    behind: described("transactions after this batch (counted up to 10000)",
                      Annotated[int, Field(ge=0)])
    behind_bytes: described("their bytes of record data", Annotated[int, Field(ge=0)])
    epoch: int


class CAMaterial(Answer):
    files: described("{path in the CA directory: text}", dict[str, str])


class EpochRecord(Answer):
    epoch: int
    primary: str
    at: described("unix time", float)


class ReplicaState(Answer):
    name: str
    url: Optional[str]
    mode: Enum(REPLICA_MODES)
    confirmed_tid: described("the last transaction it confirmed holding", Optional[Tid])
    last_seen: described("unix time", Optional[float])
    lag_seconds: Optional[float]
    transactions_behind: Optional[int]
    bytes_behind: Optional[int]


class FollowerState(Answer):
    primary: str
    name: Optional[str]
    mode: Enum(REPLICA_MODES)
    connected: bool
    last_contact: described("unix time", Optional[float])
    applied_tid: Optional[Tid]
    primary_last_tid: Optional[Tid]
    more: bool
    transactions_behind: Optional[int]
    bytes_behind: Optional[int]
    lag_seconds: Optional[float]
    last_error: Optional[str]
    stopped: described("unix time it stopped following", Optional[float])


class LastBackup(Answer):
    repository: str
    id: Optional[str]
    time: Iso
    tid: Optional[str] = None
    age_seconds: Optional[float]


class ReplicationStatus(Answer):
    role: Enum(MASTER_ROLES)
    name: Optional[str]
    epoch: int
    epochs: list[EpochRecord]
    primary_url: described("a replica's primary; a primary's own URL", Optional[str])
    fenced_by: Optional[str]
    fenced_epoch: Optional[int]
    sync: described("a replica: it follows in sync mode", bool)
    last_tid: Tid
    sync_timeout: described("seconds a write waits for the sync replicas", float)
    degraded_since: described("unix time the sync replicas stopped confirming (writes "
                              "no longer wait)", Optional[float])
    replicas: list[ReplicaState]
    follower: described("a replica: how it follows its primary", Optional[FollowerState])
    last_backup: described("with master serve --backup-to: the newest backup",
                           Optional[LastBackup])


class Promoted(Answer):
    role: Literal["primary"]
    name: str
    epoch: int
    previous_primary: described("the primary it followed", Optional[str])


_ANSWERS = (Error, Health, Computer, ComputerList, Software, DesiredState, Instance,
            InstanceList, PlacementDecision, TopologyView, WhoAmI, Certificate,
            IssuedCertificate, CertificateList, Token, Peer, PeerList, "DelegationPolicy",
            FederationSummary, Changes, LostAnswer, PeerLostAnswer, ReplicaToken, Replica,
            Transactions, CAMaterial, ReplicationStatus, Promoted)


def __getattr__(name):
    """``DelegationPolicy`` (a wire type that is also an answer) and ``ANSWERS`` (every
    answer model) import core.wire, which the CLI's answers never need, when first read.
    A block adding answer models extends ``_ANSWERS``."""
    if name in ("DelegationPolicy", "ANSWERS"):
        from .wire import DelegationPolicy
        globals().update(DelegationPolicy=DelegationPolicy, ANSWERS=tuple(
            DelegationPolicy if m == "DelegationPolicy" else m for m in _ANSWERS))
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_ADAPTERS: dict = {}


def check(model: type[BaseModel], data: Any, what: str = "answer") -> Any:
    """``data`` (an answer read from a master) when ``model`` describes it; InvalidInput
    naming the fields otherwise. Returns ``data`` itself, untouched.

    A field the model does not know is tolerated here: a newer master (a peer, a primary
    upgraded first) may add fields, and whoever reads the answer uses only those it
    knows. A field missing, of the wrong type or out of its range is refused. (The
    document itself declares no extra field: the masters' own tests check that a master
    sends none.)"""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    try:
        adapter.validate_python(data)
    except ValidationError as exc:
        errors = [e for e in exc.errors(include_url=False) if e["type"] != "extra_forbidden"]
        if not errors:
            return data
        details = [{"field": ".".join(str(p) for p in e["loc"]) or "body",
                    "problem": e["msg"]} for e in errors]
        raise InvalidInput(f"the master's {what} does not match its API ({model.__name__}): "
                           f"{details[0]['field']} {details[0]['problem']}", details) from None
    return data


# -- accounting (core.accounting): usage reports, statements, the price list ---------------
class UsageAck(Answer):
    accepted: described("the report was recorded now", bool)
    duplicate: described("a report of this id was accepted before: nothing was written",
                         bool)


Amount = Optional[Annotated[str, Field(description="a decimal, in the currency")]]


class Where(Answer):
    kind: described("computer: measured here; peer: the instance was delegated to that "
                    "peer (its usage there)", Literal["computer", "peer"])
    name: str


class UsageQuantityAnswer(Answer):
    resource: str
    kind: Literal["counter", "peak", "gauge"]
    unit: str
    quantity: float
    amount: Amount = None


class IncidentTotals(Answer):
    count: int
    seconds: described("incident time inside the period (an open incident counts until "
                       "the end of the last report repeating it)", int)


class StatementLine(Answer):
    release: Optional[str] = None
    software_type: Optional[str] = None
    where: Optional[Where] = None
    requester: Optional[str] = None
    instances: described("instances that reported usage in this group and period", int)
    usage: list[UsageQuantityAnswer]
    incidents: IncidentTotals
    amount: Amount = None


class StatementTotals(Answer):
    usage: list[UsageQuantityAnswer]
    incidents: IncidentTotals
    amount: Amount = None


class Statement(Answer):
    owner: described("whose usage: the owner of the instance trees (a person, or "
                     "master/<peer> for what a peer's delegations used here)", str)
    period: str
    start: Iso
    end: Iso
    group: list[str]
    currency: Optional[str] = None
    lines: list[StatementLine]
    totals: StatementTotals


class UsageDay(Answer):
    day: str
    where: Optional[Where] = None
    usage: list[UsageQuantityAnswer]


class UsageIncidentAnswer(Answer):
    kind: str
    name: str
    start: Iso
    end: Iso
    detail: str
    seconds: int


class InstanceUsage(Answer):
    instance_id: str
    reference: str
    owner: str
    requester: str
    release: str
    software_type: str
    destroyed: described("the instance is destroyed (its history stays)", bool)
    since: str
    until: str
    days: list[UsageDay]
    totals: list[UsageQuantityAnswer]
    incidents: list[UsageIncidentAnswer]


class PriceAnswer(Answer):
    release: str
    resource: str
    price: str
    per: str


class PriceListAnswer(Answer):
    currency: Optional[str] = None
    precision: Optional[int] = None
    prices: list[PriceAnswer]


_ANSWERS = _ANSWERS + (UsageAck, Statement, InstanceUsage, PriceListAnswer)


# -- usage across delegation: a peer's usage feed (GET /federation/usage) ------------------
class FeedQuantity(Answer):
    resource: str
    quantity: float


class FeedIncident(Answer):
    kind: str
    name: str
    start: Iso
    end: Iso = None
    detail: str = ""


class FeedEntry(Answer):
    seq: described("its place in the feed: 1, 2, 3... (the cursor)", int)
    id: described("stable: the computer, report and instance that measured it, or the "
                  "peer and entry it was relayed from", str)
    instance_id: described("the instance here", str)
    reference: str
    root: described("the instance is the one the peer requested (not one made under it)",
                    bool)
    root_reference: described("the reference the peer requested the tree's root under",
                              str)
    release: str
    software_type: str
    where: Where
    start: Iso
    end: Iso
    usage: list[FeedQuantity]
    incidents: list[FeedIncident]


class UsageFeed(Answer):
    master: described("this master's name", str)
    owner: described("whose feed: the calling peer (master/<name>)", str)
    cursor: described("ask again with since=cursor", int)
    last: described("the feed's newest sequence (less than the asker's cursor: the feed "
                    "went back, read it again from 0)", int)
    more: described("more entries follow the cursor", bool)
    first: described("the oldest entry still kept: entries the asker recorded are "
                     "trimmed after a while (a cursor before it lost what lies between)",
                     int)
    entries: list[FeedEntry]


_ANSWERS = _ANSWERS + (UsageFeed,)


# -- the models as data, for the client's check without pydantic (core.answer_check) -------
class NotData(Exception):
    """A model's validation schema holds more than core.answer_check applies."""


# core schema type -> the keys it may carry, all applied by core.answer_check
_DATA_KEYS = {"str": {"pattern"}, "int": {"ge", "gt", "le", "lt"},
              "float": {"ge", "gt", "le", "lt"}, "bool": set(), "any": set(),
              "literal": {"expected"}, "nullable": {"schema"}, "list": {"items_schema"},
              "dict": {"keys_schema", "values_schema"}}
_MODEL_CONFIG = {"extra_fields_behavior", "title", "validate_by_alias", "validate_by_name"}


def _as_data(schema: dict, refs: dict, models: dict) -> dict:
    """``schema`` (a pydantic core schema) in core.answer_check's terms, each model
    put in ``models`` by name; NotData for anything it does not apply."""
    kind = schema["type"]
    if kind == "definitions":
        refs.update((d["ref"], d) for d in schema["definitions"])
        return _as_data(schema["schema"], refs, models)
    if kind == "definition-ref":
        return _as_data(refs[schema["schema_ref"]], refs, models)
    if kind == "model":
        fields, config = schema["schema"], schema.get("config", {})
        if fields["type"] != "model-fields" or fields.get("computed_fields") or \
                schema.get("custom_init") or schema.get("root_model") or \
                set(config) - _MODEL_CONFIG or \
                set(fields) - {"type", "fields", "model_name", "computed_fields"}:
            raise NotData(f"model {schema['cls'].__name__}")
        name = fields["model_name"]
        keys = models.setdefault(None, {})      # class -> its key (two may share a name)
        key = keys.get(schema["cls"])
        if key is None:
            taken = {k for k in models if k is not None}
            key = keys[schema["cls"]] = next(k for k in (name, *(f"{name}#{i}" for i in
                                                                  range(2, 99)))
                                             if k not in taken)
            models[key] = None                  # a model inside itself: a reference
            compiled = []
            for field_name, field in fields["fields"].items():
                alias = field.get("validation_alias", field_name)
                # the names it is read under (populate_by_name: its alias, then its name)
                keys = list(dict.fromkeys(
                    ([alias] if config.get("validate_by_alias", True) else []) +
                    ([field_name] if config.get("validate_by_name") or
                     "validation_alias" not in field else [])))
                if field["type"] != "model-field" or not isinstance(alias, str) or \
                        set(field) - {"type", "schema", "metadata", "validation_alias",
                                      "serialization_alias"}:
                    raise NotData(f"{name}.{field_name}")
                inner = field["schema"]
                required = inner["type"] != "default"
                if not required:
                    if set(inner) - {"type", "schema", "default", "default_factory"}:
                        raise NotData(f"{name}.{field_name}")
                    inner = inner["schema"]
                compiled.append([keys, _as_data(inner, refs, models), required])
            models[key] = {"name": name, "fields": compiled}
        return {"type": "model", "name": key}
    extra = set(schema) - _DATA_KEYS.get(kind, {"?"}) - {"type", "metadata"}
    if kind not in _DATA_KEYS or extra or "ref" in schema:
        raise NotData(f"a {kind} schema ({', '.join(sorted(extra))})")
    out = {"type": kind}
    for key in sorted(_DATA_KEYS[kind] & set(schema)):
        value = schema[key]
        out[key] = _as_data(value, refs, models) if isinstance(value, dict) else \
            list(value) if isinstance(value, (list, tuple)) else value
    return out


def compiled_answers() -> tuple[dict, dict]:
    """({model name: schema}, {model key: its fields}) for core.answer_schemas: every
    model of this module whose validation is data (the others are checked by pydantic;
    a wire type among the answers has validator functions)."""
    answers, models = {}, {}
    for model in [m for m in globals().values() if isinstance(m, type) and
                  issubclass(m, BaseModel) and m.__module__ == __name__ and
                  m not in (BaseModel, Answer)]:
        model.model_rebuild(force=True)
        found = {**models, None: dict(models.get(None, {}))}    # kept if it is data
        try:
            answers[model.__name__] = _as_data(model.__pydantic_core_schema__, {}, found)
        except NotData:
            continue
        models = found
    models.pop(None, None)
    return answers, models


def compiled_source() -> str:
    """The text of slapfed/core/answer_schemas.py (``make answer-schemas`` writes it)."""
    answers, models = compiled_answers()
    lines = ['"""The answer models of core.answers as data, for core.answer_check.',
             "",
             "Generated by core.answers.compiled_source() (make answer-schemas); do not edit:",
             "tests/test_answer_check.py fails when the models and this file differ.",
             '"""', "", "MODELS = {"]
    lines += [f"    {name!r}: {fields!r}," for name, fields in sorted(models.items())]
    lines += ["}", "", "ANSWERS = {"]
    lines += [f"    {name!r}: {schema!r}," for name, schema in sorted(answers.items())]
    lines += ["}", ""]
    return "\n".join(lines)
