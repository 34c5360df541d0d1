"""Renaming an instance (SLAP's softwareInstanceRename, which SlapOS' resilient stacks
call at takeover): the same instance under another reference within its requester's, in
one write transaction.

Depends on core, model objects (through their attributes) and services (tx, computers,
instances, placement, render, trees). What shows the name follows it: the renamed
instance gets a new revision (its partition shows ``instance_title``; a shared one's host
shows its ``slave_title``, so the host gets one too), and when it is the root of its tree
so does every descendant with a partition (each shows ``root_instance_title``), with the
serials of their computers, so that no desired-state document cached per revision
(services.desired) still shows the old name. What is keyed by id does not move: the
children (their requester is the instance's id), the forward table (a delegated instance
keeps the remote reference its peer knows it by: renaming is local), usage records and
certificates. The old reference is free at once: requesting it makes a new instance, as
in SlapOS.
"""
from __future__ import annotations

from ..core import sharing
from ..core.errors import Conflict, Forbidden, NotFound, ReferenceTaken
from ..core.sla import parse_sla
from ..core.states import DESTROYED
from . import placement, render
from .computers import hosted
from .instances import _document_changed, _get
from .trees import tree_instances, tree_root
from .tx import clock, write


def rename_instance(rt, instance_id: str, reference: str) -> tuple[str, dict]:
    """Rename instance ``instance_id`` to ``reference`` (a valid reference: checked by
    core.wire.InstanceRename). Returns (its reference before, instance JSON); renaming
    to the same reference answers without writing. Raises NotFound, ReferenceTaken (its
    requester has another live instance of that reference), Conflict (it is destroyed,
    a peer master requested it, or an SLA names it)."""
    def use_case(app):
        return _rename(rt, app, _get(app, instance_id), reference)

    return write(rt, use_case)


def rename_hosted(rt, computer_id: str, partition_id: str, reference: str,
                  shared_id: str | None = None) -> tuple[str, dict]:
    """SLAP's softwareInstanceRename: the instance partition ``partition_id`` of
    ``computer_id`` hosts, or the shared instance ``shared_id`` attached to it (of the
    same owner), renamed as rename_instance does. Raises NotFound (no such computer or
    partition, nothing hosted there, no such shared instance attached there: field
    ``slave_reference``), Forbidden (a shared instance of another owner), and what
    rename_instance raises."""
    def use_case(app):
        inst, shared = hosted(app, computer_id, partition_id, shared_id, NotFound(
            f"partition {partition_id} of computer {computer_id} hosts no instance: "
            "there is nothing to rename"))
        if shared is not None:
            if shared.owner != inst.owner:
                raise Forbidden(f"shared instance {shared_id} attached to {inst.reference!r} "
                                "belongs to another owner: a host renames only its own "
                                "owner's shared instances",
                                [{"field": "slave_reference",
                                  "problem": "is of another owner than its host"}])
            inst = shared
        return _rename(rt, app, inst, reference)

    return write(rt, use_case)


# -- steps (no transaction handling below this line) -----------------------------
def _rename(rt, app, inst, new: str) -> tuple[str, dict]:
    old = inst.reference
    if new != old:
        _check(app, inst, new)
        app.rename_instance(inst, new)      # a destroyed instance holding it lets it go
        _show_new_name(app, inst, clock())
    return old, render.instance_json(app, inst, rt.leases)


def _check(app, inst, new: str) -> None:
    """Why ``inst`` may not be renamed ``new``, raised; nothing is written before."""
    old = inst.reference
    if inst.requested_state == DESTROYED:
        raise Conflict(f"instance {old!r} is destroyed: it keeps its name")
    if inst.requester.startswith(sharing.PEER_ROLE + "/"):
        peer = inst.requester.partition("/")[2]
        raise Conflict(f"instance {old!r} was delegated here by master {peer}, which asks "
                       "for it by that reference: renamed here, it would no longer be the "
                       f"instance {peer} asks for")
    holder = app.find_instance(inst.requester, new)
    if holder is not None and holder.id != inst.id and holder.requested_state != DESTROYED:
        raise ReferenceTaken(
            f"cannot rename instance {old!r} to {new!r}: its requester already has an "
            f"instance {new!r} ({holder.id}); choose another name",
            [{"field": "new_name", "problem": f"is the reference of instance {holder.id}"}])
    naming = placement.instances_naming(app, inst)
    if naming:
        raise Conflict(
            f"instance {old!r} is named by the SLA of "
            f"{', '.join(repr(o.reference) for o in naming[:5])}"
            f"{' and more' if len(naming) > 5 else ''}: renamed, their SLA would name "
            f"another instance or none; request them without naming {old!r} first",
            [{"instance": o.id, "reference": o.reference, "problem": f"its sla names {old!r}"}
             for o in naming])
    if new in parse_sla(inst.sla, "sla", problems=[]).references:
        raise Conflict(f"instance {old!r} names {new!r} in its own SLA: it cannot take that "
                       "name", [{"field": "new_name", "problem": "is named by its own sla"}])


def _show_new_name(app, inst, now: float) -> None:
    """New revisions (and computer serials) for whatever shows the renamed instance's
    name: itself, and every placed descendant when it is its tree's root."""
    if inst.delegated:
        inst.touch(now)          # nothing here shows it; its peer knows it by its remote
    else:                        # reference, which stays: nothing is pushed again
        inst.bump_revision(now)
        _document_changed(app, inst, now)
    if tree_root(app, inst) is not inst:
        return
    for node in tree_instances(app, inst, limit=None):
        if node is not inst and node.placed:     # its partition shows root_instance_title
            node.bump_revision(now)
            _document_changed(app, node, now)
