"""The facts authorization decides on, read from the model: instances, requests, partitions.

Depends on core, model (through services.tx) and ca.policy's fact types; decides nothing
itself (ca.policy does) and writes nothing.
"""
from __future__ import annotations

from ..ca.identity import PARTITION, Identity
from ..ca.policy import InstanceFacts, Placement
from ..core.errors import Forbidden, NotFound
from ..core.wire import InstanceRequest, evolve
from .tx import read


def _placement(inst) -> Placement | None:
    if inst is None or inst.partition_id is None:
        return None
    return Placement(inst.computer_id, inst.partition_id)


def facts_of(app, inst) -> InstanceFacts:
    """The facts of a stored instance (its owner is recorded on it: no walk up the tree)."""
    parent = app.instances.get(inst.parent) if inst.parent is not None else None
    return InstanceFacts(requester=inst.requester, root_requester=inst.owner, id=inst.id,
                         parent=inst.parent, placement=_placement(inst),
                         parent_placement=_placement(parent))


def instance_facts(conn, instance_id: str) -> InstanceFacts:
    """Raises NotFound."""
    def query(app):
        inst = app.instances.get(instance_id)
        if inst is None:
            raise NotFound(f"no instance with id {instance_id!r}")
        return facts_of(app, inst)
    return read(conn, query)


def hosted_instance_id(app, computer_id: str, partition_id: str) -> str | None:
    comp = app.computers.get(computer_id)
    part = None if comp is None else comp.partitions.get(partition_id)
    return None if part is None else part.instance_id


def resolve_request(conn, identity: Identity, req: InstanceRequest,
                    body_requester: str | None) -> tuple[InstanceRequest, InstanceFacts]:
    """The request as the master will record it, and the facts to authorize it on.
    ``conn`` is a connection, or a callable returning one (opened only when needed).

    The requester is the caller's principal (``person/alice``, ``master/b``); for a
    partition it is the instance the partition hosts, and the parent defaults to that
    instance. A body ``requester`` naming anyone else is refused (Forbidden), as is a
    partition that hosts no instance.

    A person, admin or peer asking without a parent needs no read: whatever it finds
    under (its principal, reference) it requested itself, in a tree it owns (a child in
    someone else's tree needs a parent, which the policy checks), so the facts are
    known without opening the database on this hot path."""
    if identity.role != PARTITION and req.parent is None:
        requester = identity.principal
        if body_requester is not None and body_requester != requester:
            raise Forbidden(f"requester {body_requester!r} is not who the certificate "
                            f"speaks for ({requester}); leave the requester out")
        resolved = evolve(req, requester=requester, parent=None)
        return resolved, InstanceFacts(requester=requester, root_requester=requester,
                                       parent=None, parent_placement=None)

    def query(app):
        parent_id = req.parent
        if identity.role == PARTITION:
            own = hosted_instance_id(app, identity.computer, identity.partition)
            if own is None:
                raise Forbidden(f"{identity.principal} hosts no instance, so it may not "
                                f"request one")
            requester, parent_id = own, parent_id or own
        else:
            requester = identity.principal
        if body_requester is not None and body_requester != requester:
            raise Forbidden(f"requester {body_requester!r} is not who the certificate "
                            f"speaks for ({requester}); leave the requester out")
        resolved = evolve(req, requester=requester, parent=parent_id)
        existing = app.find_instance(requester, req.reference)
        if existing is not None:
            return resolved, facts_of(app, existing)
        parent = app.instances.get(parent_id) if parent_id is not None else None
        owner = parent.owner if parent is not None else requester
        return resolved, InstanceFacts(requester=requester, root_requester=owner,
                                       parent=parent_id, parent_placement=_placement(parent))
    return read(conn() if callable(conn) else conn, query)


def visible_instance_filter(identity: Identity, can) -> callable:
    """A ``(app, inst) -> bool`` keeping what ``can(identity, facts)`` allows."""
    return lambda app, inst: can(identity, facts_of(app, inst))
