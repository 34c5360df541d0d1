"""Use cases on computers: register, supply/unsupply releases, node reports, listing.

Depends on core, model and services.tx/render/instances. Each write use case is ONE
transaction (retried on conflict) on the writer of the runtime it is given (``rt``,
services.runtime.Runtime); reads take a connection (or the runtime). Serials bump exactly when a computer's
desired-state document changes. Every call of a node (its registration, reports and
desired-state reads) renews its computer's lease (``rt.leases``), outside the database;
when the lease was recorded out, the same transaction records it back (lease_marks).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..core import claims, paging
from ..core.errors import Conflict, FactNotOwned, NotFound, ReportRefused
from ..core.states import (
    AVAILABLE, BUILDING, DESTROYED, FAILED, INSTALLED, STARTED, STOPPED,
)
from ..core.wire import MAX_LOG_TAIL, ComputerRegistration, PartitionReport, \
    SoftwareReport, Supply, software_hash
from ..model import Computer
from . import lease_marks, placement, render
from .publishing import publish
from .instances import _set_requested_state, host_gone
from .tx import clock, read, write

# A node's contact is recorded at most this often by reads and unchanged reports, so that
# an idle node costs the master (almost) no writes: each one rewrites the Computer record.
CONTACT_INTERVAL = 300.0


@dataclass(frozen=True)
class NodeClaim:
    """A registration sent by the node itself (its computer certificate), not an admin:
    ``proposed`` is the body as the node sent it, ``declared`` what the topology files
    declare of the computer (None: nothing). See core.claims for what a node owns."""

    proposed: ComputerRegistration
    declared: claims.ComputerFacts | None = None


def registration_facts(reg: ComputerRegistration) -> claims.ComputerFacts:
    return claims.ComputerFacts(host=reg.host, lan=reg.lan, country=reg.country,
                                continent=reg.continent, labels=dict(reg.labels),
                                capabilities=tuple(reg.capabilities),
                                partitions={p.id: tuple(p.capabilities)
                                            for p in reg.partitions})


def recorded_facts(comp) -> claims.ComputerFacts:
    return claims.ComputerFacts(labels=dict(comp.labels),
                                capabilities=tuple(comp.capabilities),
                                partitions={pid: tuple(p.capabilities)
                                            for pid, p in comp.partitions.items()},
                                **comp.locality)


def register_computer(rt, reg: ComputerRegistration,
                      node: NodeClaim | None = None) -> tuple[bool, dict]:
    """Create or update a computer; known partitions are kept, new ones added.

    ``reg`` is the registration completed from the topology. Sent by an admin (``node``
    None), it sets the computer's facts. Sent by the node itself, it may describe a
    computer the master does not know yet, but afterwards only add partitions: a fact it
    would change raises FactNotOwned (403) naming every such field, and nothing is
    written. Returns (created, computer JSON)."""
    def use_case(app):
        now = clock()
        comp = app.computers.get(reg.id)
        created = comp is None
        facts = registration_facts(reg)
        if node is not None:
            recorded = None if created else recorded_facts(comp)
            problems = claims.node_fact_problems(
                recorded, node.declared, registration_facts(node.proposed),
                [p.id for p in node.proposed.partitions])
            if problems:
                raise FactNotOwned(f"computer {reg.id} may not change what an administrator "
                                   f"owns: {_fields(problems)} (ask an administrator: "
                                   f"slapfed computer set)", problems)
            if recorded is not None:
                facts = claims.settled_facts(recorded, facts)
        if created:
            comp = Computer(reg.id, now)
            app.add_computer(comp)
        moved = comp.update_locality(facts.locality(), facts.labels, facts.capabilities)
        added = [comp.add_partition(p.id, p.address, p.port_base, p.port_count,
                                    facts.partitions.get(p.id, p.capabilities))
                 for p in reg.partitions]
        if any(added) and not created:
            comp.bump_serial()
        if created or moved or any(added):
            placement.touch(rt.placement, app, comp)
        comp.last_contact = now
        if node is not None:
            lease_marks.renewed(rt, comp)
        return created, render.computer_json(comp, rt.leases)

    return write(rt, use_case)


def set_computer_facts(rt, computer_id: str, changes: dict, complete=None) -> dict:
    """An administrator changes a computer's facts (``changes``: any of
    core.claims.FACT_FIELDS; a locality of None clears it). ``complete`` (optional) fills
    and checks the result against the topology files: facts -> facts, raising
    InvalidInput. Raises NotFound. Placement sees the new facts at once."""
    def use_case(app):
        comp = get_computer(app, computer_id)
        current = recorded_facts(comp)
        merged = replace(current, **{k: v for k, v in changes.items()
                                     if k in claims.FACT_FIELDS})
        if complete is not None:
            merged = complete(computer_id, merged)
        if comp.update_locality(merged.locality(), dict(merged.labels),
                                tuple(merged.capabilities)):
            placement.touch(rt.placement, app, comp)
        return render.computer_json(comp, rt.leases)

    return write(rt, use_case)


def _fields(problems: list[dict]) -> str:
    return ", ".join(p["field"] for p in problems)


def list_computers(conn, leases=None) -> list[dict]:
    """Every computer; with the master's ``leases``, each with its lease."""
    return read(conn, lambda app: [render.computer_json(c, leases)
                                   for c in app.computers.values()])


def page_computers(conn, leases=None, after: str | None = None,
                   limit: int = paging.DEFAULT_LIMIT,
                   keep=None) -> tuple[list[dict], str | None]:
    """One page of computers in id order, after id ``after``: (computers, the id to
    resume after or None at the end). ``keep(body)``, when given, says which of them
    the caller may read."""
    def query(app):
        found = (app.computers.items() if after is None
                 else app.computers.items(min=after, excludemin=True))

        def shown(comp):
            body = render.computer_json(comp, leases)
            return body if keep is None or keep(body) else None
        return paging.take(found, limit, shown)

    return read(conn, query)


def show_computer(conn, computer_id: str, leases=None) -> dict:
    return read(conn, lambda app: render.computer_json(get_computer(app, computer_id),
                                                       leases))


def supply(rt, computer_id: str, request: Supply) -> dict:
    """Ask a computer to install (available) or remove (destroyed) a release.

    Raises NotFound, Conflict (removing a release that live instances use)."""
    h = software_hash(request.url)
    if request.state == DESTROYED:
        return unsupply(rt, computer_id, h)

    def use_case(app):
        comp = get_computer(app, computer_id)
        sw, changed = comp.supply(request.url, h, AVAILABLE)
        if changed:
            app.note_supplied(h, comp.id)
            placement.touch(rt.placement, app, comp)
        return render.software_json(sw)

    return write(rt, use_case)


def unsupply(rt, computer_id: str, h: str) -> dict:
    """Set a supplied release's desired state to destroyed (by software hash)."""
    def use_case(app):
        comp = get_computer(app, computer_id)
        sw = get_software(comp, h)
        users = [inst.reference for inst in _instances_on(app, comp)
                 if inst.software_hash == h and inst.requested_state != DESTROYED]
        if users:
            shown = ", ".join(sorted(users)[:5]) + (", ..." if len(users) > 5 else "")
            raise Conflict(f"release {sw.url} is used by {len(users)} instance(s) on computer "
                           f"{comp.id} ({shown}); destroy them first",
                           [{"instance": ref} for ref in sorted(users)])
        sw, changed = comp.supply(sw.url, h, DESTROYED)
        if changed:
            placement.touch(rt.placement, app, comp)
        return render.software_json(sw)

    return write(rt, use_case)


def report_software(rt, computer_id: str, h: str, report: SoftwareReport) -> dict:
    """Record a node's install outcome; status destroyed removes the release."""
    def use_case(app):
        now = clock()
        comp = get_computer(app, computer_id)
        sw = get_software(comp, h)
        _contact(comp, now)
        lease_marks.renewed(rt, comp)
        if report.status == DESTROYED:
            body = render.software_json(sw)
            body.update(status=DESTROYED, log_tail=report.log_tail,
                        software_types=list(report.software_types),
                        reported_at=render.iso(now))
            comp.remove_software(h)
            app.note_unsupplied(h, comp.id)
            placement.touch(rt.placement, app, comp)
            return body
        was_broken = sw.broken
        sw.status = report.status
        if report.status == FAILED:
            sw.failed_installs += 1
        elif report.status == INSTALLED:
            sw.failed_installs = 0
        if report.status != BUILDING:         # a retry keeps the last failure's reason
            sw.log_tail = report.log_tail
            sw.software_types = tuple(report.software_types)
        sw.reported_at = now
        if was_broken != sw.broken:
            placement.touch(rt.placement, app, comp)     # placeable again, or no more
        return render.software_json(sw)

    return write(rt, use_case)


def report_partition(rt, computer_id: str, partition_id: str,
                     report: PartitionReport, reporter: str = claims.NODE) -> dict:
    """Record what a node (``reporter`` NODE) or the partition itself (PARTITION)
    observed of a partition's instance.

    Raises NotFound, Conflict (the partition does not host that instance, or the
    report is ahead of the instance's revision), ReportRefused (409: the state claimed
    is ruled out by the state requested, core.claims.CLAIMABLE) and FactNotOwned (403:
    a partition claiming its own destruction); a refused report writes nothing. A
    destroyed report of an instance whose requested state is destroyed frees the
    partition. ``shared_connections`` become the connection parameters of the shared
    instances the host holds. A connection that changed (the instance's own, or a shared
    instance's) redeploys the instance that requested it, as publish_connection does."""
    def use_case(app):
        return _apply_report(rt, app, computer_id, partition_id, report, reporter)

    return write(rt, use_case)


def report_hosted(rt, computer_id: str, partition_id: str, state: str, log_tail: str = "",
                  reporter: str = claims.NODE) -> dict | None:
    """A report that names the partition only (SLAP: started, stopped, destroyed,
    error): on the instance it hosts at that moment, at that instance's current revision,
    or the one before when the current revision rules the claim out (a node stopping an
    instance whose destruction it has not carried out yet). A report that says again
    what the status already says writes nothing. A destroyed report on a
    partition that hosts nothing any more is already true: None, nothing written.
    Raises as report_partition does (NotFound: no such partition; Conflict: it hosts
    no instance)."""
    def use_case(app):
        comp = get_computer(app, computer_id)
        partition = comp.partitions.get(partition_id)
        if partition is None:
            raise NotFound(f"computer {computer_id} has no partition {partition_id!r}")
        if partition.instance_id is None:
            if state == DESTROYED:
                if reporter == claims.NODE:
                    lease_marks.renewed(rt, comp)
                return None
            raise Conflict(f"partition {partition_id} of computer {computer_id} hosts no "
                           f"instance; there is nothing to report {state} on")
        inst = app.instances[partition.instance_id]
        revision = inst.revision
        if state not in claims.CLAIMABLE_AT_CURRENT_REVISION[inst.requested_state] \
                and revision > 0:
            revision -= 1
        report = PartitionReport(inst.id, revision, state, log_tail[-MAX_LOG_TAIL:])
        status = inst.status
        if (status["state"], status["revision"], status["log_tail"]) == \
                (state, revision, report.log_tail) and state != DESTROYED:
            # said again (a stock node reports started on every run): nothing new
            if reporter == claims.NODE:
                lease_marks.renewed(rt, comp)
            _contact(comp, clock())
            return render.instance_json(app, inst, rt.leases)
        return _apply_report(rt, app, computer_id, partition_id, report, reporter)

    return write(rt, use_case)


def publish_connection(rt, computer_id: str, partition_id: str, connection: dict,
                       shared_id: str | None = None) -> dict:
    """The instance a partition hosts publishes its connection parameters, or those of
    one of the shared instances it holds (``shared_id``); an unchanged value writes
    nothing. A changed one redeploys, in the same transaction, the instance that
    requested the one published for, when a partition here runs it (services.publishing).
    Raises NotFound (no such partition, or the instance holds no such shared
    instance) and Conflict (the partition hosts no instance, or it is destroyed)."""
    def use_case(app):
        inst, shared = hosted(app, computer_id, partition_id, shared_id, Conflict(
            f"partition {partition_id} of computer {computer_id} hosts no instance; it "
            "has no connection parameters to publish"))
        target = inst if shared is None else shared
        if target.requested_state == DESTROYED:
            raise Conflict(f"instance {target.reference!r} is being destroyed; it publishes "
                           "nothing more")
        publish(app, target, connection, clock())
        return render.instance_json(app, target, rt.leases)

    return write(rt, use_case)


def hosted(app, computer_id: str, partition_id: str, shared_id: str | None,
           nothing_hosted: Exception) -> tuple:
    """(the instance partition ``partition_id`` of ``computer_id`` hosts, the shared
    instance ``shared_id`` attached to it or None when not asked): what a partition's
    SLAP calls act on. Raises NotFound (no such computer or partition, no such shared
    instance attached there: field ``slave_reference``) and ``nothing_hosted`` when the
    partition hosts no instance."""
    comp = get_computer(app, computer_id)
    partition = comp.partitions.get(partition_id)
    if partition is None:
        raise NotFound(f"computer {computer_id} has no partition {partition_id!r}")
    if partition.instance_id is None:
        raise nothing_hosted
    inst = app.instances[partition.instance_id]
    if shared_id is None:
        return inst, None
    if shared_id not in inst.shared_ids:
        raise NotFound(f"instance {inst.reference!r} (partition {partition_id}) holds no "
                       f"shared instance {shared_id!r}",
                       [{"field": "slave_reference", "problem": "not held here"}])
    return inst, app.instances[shared_id]


def record_partition_certificate(rt, computer_id: str, partition_id: str,
                                 recipient: dict) -> None:
    """Keep the certificate just issued to a partition ({"certificate", "fingerprint"}):
    its instance's requester seals secret parameters to it. Raises NotFound."""
    def use_case(app):
        partition = get_computer(app, computer_id).partitions.get(partition_id)
        if partition is None:
            raise NotFound(f"computer {computer_id} has no partition {partition_id!r}")
        if partition.recipient != recipient:
            partition.recipient = dict(recipient)
            inst = None if partition.instance_id is None else \
                app.instances.get(partition.instance_id)
            if inst is not None:
                # its instance shows the certificate: a peer that delegated it here
                # reads it in the change feed (and its requester seals to it)
                inst.touch(clock())

    write(rt, use_case)


def _apply_report(rt, app, computer_id: str, partition_id: str, report: PartitionReport,
                  reporter: str) -> dict:
    now = clock()
    comp = get_computer(app, computer_id)
    if reporter == claims.NODE:
        lease_marks.renewed(rt, comp)
    partition = comp.partitions.get(partition_id)
    if partition is None:
        raise NotFound(f"computer {computer_id} has no partition {partition_id!r}")
    if partition.instance_id != report.instance_id:
        hosted = (f"hosts instance {partition.instance_id}" if partition.instance_id
                  else "hosts no instance")
        raise Conflict(f"partition {partition_id} of computer {computer_id} {hosted}, "
                       f"not {report.instance_id} (stale report?)")
    inst = app.instances[report.instance_id]
    if report.revision > inst.revision:
        raise Conflict(f"report on revision {report.revision} of instance "
                       f"{inst.reference!r}, which is only at revision {inst.revision}")
    refusal = claims.report_refusal(inst.requested_state, report.state,
                                    report.revision == inst.revision, reporter)
    if refusal is not None:
        klass = ReportRefused if refusal.by_owner else FactNotOwned
        raise klass(f"report on instance {inst.reference!r} (partition {partition_id} of "
                    f"computer {computer_id}) refused: {refusal.message}",
                    refusal.details())
    _contact(comp, now)
    inst.set_status(state=report.state, revision=report.revision, reported_at=now,
                    log_tail=report.log_tail,
                    promises=tuple(p.to_json() for p in report.promises))
    redeployed: set = set()          # one new revision per requester, however many publish
    if report.connection:
        publish(app, inst, report.connection, now, redeployed)
    if report.shared_connections:
        _publish_shared(app, inst, report.shared_connections, now, redeployed)
    if report.state == DESTROYED and inst.requested_state == DESTROYED:
        _free(rt, app, comp, inst, now)
    elif report.revision == inst.revision and report.state in (STARTED, STOPPED, FAILED):
        _relay_to_shared(app, inst, report.state, now)
    return render.instance_json(app, inst, rt.leases)


# -- steps ------------------------------------------------------------------------
def bang_computer(rt, computer_id: str) -> int:
    """Something broke on a whole computer (SLAP's computerBang, ``slapos node bang``):
    every instance it hosts and is not destroyed gets a new revision, in one
    transaction, so that its node deploys them all again. The number banged; raises
    NotFound."""
    def use_case(app):
        now, banged = clock(), 0
        comp = get_computer(app, computer_id)
        for p in comp.partitions.values():
            inst = None if p.instance_id is None else app.instances.get(p.instance_id)
            if inst is not None and inst.requested_state != DESTROYED:
                inst.bump_revision(now)
                banged += 1
        if banged:
            comp.bump_serial()
        return banged

    return write(rt, use_case)


def keep_only_requested_children(rt, computer_id: str, partition_id: str,
                                 references) -> list[str]:
    """SLAP's updateComputerPartitionRelatedInstanceList: the instance on that partition
    last requested only ``references``; each of its children named otherwise is
    destroyed as change_state does, in one transaction. The ids destroyed; raises
    NotFound when no instance lives there."""
    def use_case(app):
        p = get_computer(app, computer_id).partitions.get(partition_id)
        inst = None if p is None or p.instance_id is None else app.instances.get(p.instance_id)
        if inst is None:
            raise NotFound(f"no instance on partition {partition_id!r} of {computer_id!r}")
        now, gone = clock(), []
        for cid in inst.children:
            child = app.instances.get(cid)
            if child is None or child.reference in references \
                    or child.requested_state == DESTROYED:
                continue
            _set_requested_state(rt, app, child, DESTROYED, now)
            gone.append(child.id)
        return gone

    return write(rt, use_case)


def get_computer(app, computer_id: str):
    comp = app.computers.get(computer_id)
    if comp is None:
        raise NotFound(f"no computer with id {computer_id!r}")
    return comp


def get_software(comp, h: str):
    sw = comp.software.get(h)
    if sw is None:
        raise NotFound(f"computer {comp.id} is not supplied any release with hash {h!r}")
    return sw


def _contact(comp, now: float) -> None:
    if comp.last_contact is None or now - comp.last_contact >= CONTACT_INTERVAL:
        comp.last_contact = now


def _instances_on(app, comp):
    for p in comp.partitions.values():
        if p.instance_id is not None:
            yield app.instances[p.instance_id]


def _free(rt, app, comp, inst, now: float) -> None:
    comp.release(inst.partition_id)
    placement.touch(rt.placement, app, comp)
    inst.unplace()
    inst.connection = {}
    inst.touch(now)
    held, inst.shared_ids = inst.shared_ids, ()
    for sid in held:
        host_gone(rt, app, app.instances[sid], now)


def _relay_to_shared(app, host, state: str, now: float) -> None:
    """A host that applied its latest revision has applied its shared instances too;
    a running host refuses one of them by publishing an ``error`` for it: that one is
    failed, with the host's reason."""
    for sid in host.shared_ids:
        shared = app.instances[sid]
        if shared.requested_state == DESTROYED:
            continue
        own, log_tail = state, ""
        refused = shared.connection.get("error") if state == STARTED else None
        if refused:
            own = FAILED
            log_tail = f"host instance {host.reference} cannot serve it: {refused}"
        if shared.status["state"] != own or shared.status["revision"] != shared.revision \
                or shared.status["log_tail"] != log_tail:
            shared.set_status(state=own, revision=shared.revision, reported_at=now,
                              log_tail=log_tail, promises=())


def _publish_shared(app, host, connections: dict, now: float, redeployed: set) -> None:
    """Give each shared instance attached to ``host`` the connection parameters the host
    published for it; ids the host does not hold are ignored, and an unchanged value
    is not written again. A changed one redeploys the shared instance's requester when
    a partition here runs it (as SlapOS redeploys the partition that requested it)."""
    for sid in host.shared_ids:
        params = connections.get(sid)
        if params is None:
            continue
        shared = app.instances[sid]
        if shared.requested_state != DESTROYED:
            publish(app, shared, params, now, redeployed)
