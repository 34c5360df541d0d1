"""Placement on the master: the writer's in-memory snapshot, anchors of relative SLA keys, and place/explain steps.

Depends on core, model objects (through their attributes) and placement (pure); runs
inside use cases on the writer connection (services.tx). The snapshot belongs to the
runtime's writer (its PlacementState, ``rt.placement``, passed to every step here): write
use cases keep it current (``touch``) inside their transaction, an undo journal reverts
it when the transaction aborts, and a persistent counter (App.placement_changes, a
BTrees.Length) tells when another process changed the database under it, which rebuilds
it.
"""
from __future__ import annotations

from dataclasses import replace

from ..core.errors import InvalidInput, NoCapacity
from ..core.sla import Sla, parse_sla
from ..core.states import AVAILABLE, DESTROYED
from ..placement import Anchor, ComputerView, PipelineConfig, PlacementRequest, build, decide
from ..placement.pipeline import DEFAULT
from ..placement.snapshot import FREE_SAMPLE
from .trees import tree_instances, tree_root

# How often a stale choice (its partition taken under the snapshot) is decided again
# before the whole snapshot is rebuilt.
RETRIES = 3

class PlacementState:
    """What a runtime's writer keeps for placement: the snapshot and the configuration."""

    def __init__(self, config: PipelineConfig = DEFAULT, here: str | None = None,
                 leases=None):
        self.config = config
        self.here = here           # this master's name: SLA alternatives naming it fit here
        self.leases = leases       # services.leases.Leases: computers not heard from
        self.snapshot = None
        self.txn = None            # the transaction the journal belongs to
        self.built_in_txn = False  # the snapshot was (re)built inside that transaction
        self.rebuilds = 0
        self.on_decision = None    # (placement.Decision) -> None, told of every decision

    # -- transaction hooks ----------------------------------------------------------
    def _finish(self, committed: bool) -> None:
        if self.txn is None:
            return
        self.txn = None
        snap = self.snapshot
        if snap is None:
            return
        if committed:
            snap.commit()
        elif self.built_in_txn:
            self.snapshot = None          # it saw writes that are now undone
        else:
            snap.rollback()
        self.built_in_txn = False

    def after_commit(self, status: bool) -> None:
        self._finish(bool(status))

    def after_abort(self) -> None:
        self._finish(False)


# -- building views and the snapshot --------------------------------------------------
def view_of(comp) -> ComputerView:
    """The placement view of a persistent Computer (reads only what placement needs)."""
    view = _view_of(comp)
    return replace(view, lost=True) if comp.lost else view


def _view_of(comp) -> ComputerView:
    releases = frozenset(h for h, sw in comp.software.items() if sw.state == AVAILABLE)
    broken = frozenset(h for h, sw in comp.software.items() if sw.broken)
    locality = comp.locality
    if not comp.capabilities and not comp.partition_tags:
        free_count = comp.free_count()
        total = len(comp.partitions)
        return ComputerView(comp.id, locality["host"], locality["lan"], locality["country"],
                            locality["continent"], dict(comp.labels), frozenset(), frozenset(),
                            True, releases, broken, comp.free_partition_ids(FREE_SAMPLE),
                            free_count,
                            {}, total, total - free_count)
    tags, free = comp.partition_tags, comp.free
    parts = ((pid, tags.get(pid, ()), pid not in free) for pid in comp.partitions.keys())
    return ComputerView.of(comp.id, locality=locality, labels=comp.labels,
                           capabilities=comp.capabilities, releases=releases, partitions=parts,
                           broken=broken)


def snapshot_of(state: PlacementState, app):
    """The writer's snapshot, current for this transaction (rebuilt when another
    process changed the database). Only call it from a use case (services.tx.write)."""
    jar = app._p_jar
    txn = jar.transaction_manager.get()
    snap = state.snapshot
    if state.txn is not txn:
        state.txn = txn
        state.built_in_txn = False
        txn.addAfterCommitHook(lambda status: state.after_commit(status))
        txn.addAfterAbortHook(state.after_abort)
        counter = app.placement_changes()
        if snap is None or snap.version != counter:
            snap = state.snapshot = build((view_of(c) for c in app.computers.values()), counter)
            state.built_in_txn = True
            state.rebuilds += 1
        snap.begin()
    return snap


def touch(state: PlacementState, app, comp) -> None:
    """Record that ``comp`` changed in ways placement sees (partitions, supplies,
    locality, labels, capabilities): refresh its view and bump the shared counter."""
    snap = snapshot_of(state, app)
    snap.put(view_of(comp))
    snap.bump()
    app.placement_changed()


# -- relative keys: who is "db-1"? ------------------------------------------------------
def find_related(app, requester: str, parent_id: str | None, reference: str):
    """The instance ``reference`` names: the requester's own, else one of the instance
    tree the request belongs to (through its parent), else None."""
    inst = app.find_instance(requester, reference)
    if inst is not None or parent_id is None:
        return inst
    parent = app.instances.get(parent_id)
    if parent is None:
        return None
    return next((node for node in tree_instances(app, tree_root(app, parent))
                 if node.reference == reference), None)


def instances_naming(app, inst) -> list:
    """The live instances (other than ``inst``) whose SLA names ``inst`` by its reference,
    i.e. whose relative keys find_related resolves to it: among its requester's
    instances and its instance tree (where find_related looks)."""
    candidates = dict.fromkeys(app.instance_ids_of(inst.requester))
    candidates.update((node.id, None) for node in tree_instances(app, tree_root(app, inst)))
    out = []
    for iid in candidates:
        other = app.instances.get(iid)
        if other is None or other.id == inst.id or not other.sla \
                or other.requested_state == DESTROYED:
            continue
        if inst.reference in parse_sla(other.sla, "sla", problems=[]).references and \
                find_related(app, other.requester, other.parent, inst.reference) is inst:
            out.append(other)
    return out


def where_runs(app, inst) -> tuple[str | None, str]:
    """(computer id, why not) of an instance: its own partition's computer, or for a
    shared instance its host's."""
    if inst.requested_state == DESTROYED:
        return None, "is being destroyed"
    if inst.placed:
        return inst.computer_id, ""
    if inst.attached:
        host = app.instances.get(inst.host_id)
        if host is not None and host.placed:
            return host.computer_id, ""
    return None, "is not placed"


def anchors_for(app, requester: str, parent_id: str | None, sla: Sla, own_id=None) -> dict:
    """Resolve every reference ``sla`` names. InvalidInput lists the unknown ones."""
    anchors, problems = {}, []
    for ref in sla.references:
        other = find_related(app, requester, parent_id, ref)
        if other is None or other.id == own_id:
            for i, alt in enumerate(sla.alternatives):
                prefix = "sla" if len(sla.alternatives) == 1 else f"sla[{i}]"
                for rel in alt.relative:
                    if rel.reference == ref:
                        problems.append({"field": f"{prefix}.{rel.key}", "problem": (
                            f"no other instance {ref!r} of requester {requester!r}"
                            + (" or of its instance tree" if parent_id else ""))})
            continue
        computer, why = where_runs(app, other)
        anchors[ref] = Anchor(ref, computer, why)
    if problems:
        raise InvalidInput(f"invalid sla: {problems[0]['field']} {problems[0]['problem']}",
                           problems)
    return anchors


def request_of(state: PlacementState, app, inst) -> PlacementRequest:
    """The pure placement request of a persistent instance (anchors resolved)."""
    sla = parse_sla(inst.sla, "sla", inst.reference)
    near = ()
    if inst.parent is not None:
        parent = app.instances.get(inst.parent)
        if parent is not None:
            computer, _why = where_runs(app, parent)
            near = (computer,) if computer else ()
    return PlacementRequest(inst.reference, inst.software_hash, sla, inst.requester,
                            anchors_for(app, inst.requester, inst.parent, sla, inst.id), near,
                            state.here, expired_leases(state))


def expired_leases(state: PlacementState) -> frozenset:
    """The computers whose lease ran out now: placement puts nothing new there."""
    return frozenset() if state.leases is None else state.leases.expired_ids()


# -- deciding and committing --------------------------------------------------------------
def _still_fits(app, decision, capability) -> bool:
    comp = app.computers.get(decision.computer)
    if comp is None:
        return False
    part = comp.partitions.get(decision.partition)
    if part is None or part.instance_id is not None:
        return False
    effective = set(comp.capabilities) | set(part.capabilities)
    if (capability is None and effective) or (capability is not None
                                              and capability not in effective):
        return False
    return True


def place(state: PlacementState, app, inst):
    """Decide where ``inst`` goes and allocate it there. Raises NoCapacity (with the
    per-plugin breakdown) or InvalidInput (an SLA naming an unknown instance).

    The snapshot may be stale about one computer; the choice is checked against the
    database inside this transaction and decided again if it no longer holds."""
    request = request_of(state, app, inst)
    for attempt in range(RETRIES + 1):
        snap = snapshot_of(state, app)
        if attempt == RETRIES:      # last resort: a snapshot from scratch
            state.snapshot = None
            state.txn = None
            snap = snapshot_of(state, app)
        decision = decide(snap, request, state.config)
        if state.on_decision is not None:
            state.on_decision(decision)
        decision.raise_if_refused()
        alt = request.sla.alternatives[decision.alternative]
        if _still_fits(app, decision, alt.get("capability")):
            comp = app.computers[decision.computer]
            comp.allocate(decision.partition, inst.id)
            inst.place(decision.computer, decision.partition)
            touch(state, app, comp)
            return decision
        comp = app.computers.get(decision.computer)
        if comp is None:
            snap.remove(decision.computer)
        else:
            snap.put(view_of(comp))      # refresh what was stale, then decide again
    raise NoCapacity(f"no partition fits {inst.reference}: the placement snapshot kept "
                     "disagreeing with the database; try again")


def explain(state: PlacementState, app, requester: str, reference: str, software_hash: str,
            sla_json, parent_id: str | None) -> dict:
    """The decision placement would make for a request, with every refusal; writes
    nothing. Raises InvalidInput (unknown parent or relative reference)."""
    sla = parse_sla(sla_json, "sla", reference)
    existing = app.find_instance(requester, reference)
    near = ()
    if parent_id is not None:
        parent = app.instances.get(parent_id)
        if parent is None:
            raise InvalidInput(f"invalid request: parent {parent_id!r} is not an instance",
                               [{"field": "parent", "problem": f"no instance with id "
                                                              f"{parent_id!r}"}])
        computer, _why = where_runs(app, parent)
        near = (computer,) if computer else ()
    own = existing.id if existing is not None else None
    request = PlacementRequest(reference, software_hash, sla, requester,
                               anchors_for(app, requester, parent_id, sla, own), near,
                               state.here, expired_leases(state))
    decision = decide(snapshot_of(state, app), request, state.config, explain=True)
    out = decision.to_json()
    out["requester"] = requester
    out["instance"] = None if existing is None else existing.id
    out["current"] = None if existing is None or not existing.placed else {
        "computer": existing.computer_id, "partition": existing.partition_id}
    out["anchors"] = {ref: {"computer": a.computer, "why": a.why or None}
                      for ref, a in request.anchors.items()}
    return out
