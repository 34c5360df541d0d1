"""The App root object: the containers every use case starts from, and their indexes.

Depends on persistent/BTrees and the sibling model classes. Containers are created by
the store's evolve steps (class-level defaults are None until then).
"""
from __future__ import annotations

import uuid

from BTrees.Length import Length
from BTrees.OOBTree import OOBTree, OOTreeSet
from persistent import Persistent

ROOT_KEY = "slapfed"

# The largest string we compare tuple keys against when scanning a key range.
_HIGH = "\U0010ffff"


class App(Persistent):
    """Root of the master's data; ``generation`` records the applied evolve steps."""

    generation = 0
    computers = None       # OOBTree: computer id -> Computer
    instances = None       # OOBTree: instance id -> Instance
    by_request = None      # OOBTree: (requester, reference) -> instance id
    hosts_by_release = None  # OOTreeSet of (software_hash, software_type, instance id), non-shared
    supplied = None          # OOTreeSet of (software_hash, computer id), any desired state
    placement_changes = None  # Length: bumped by every change placement snapshots depend on
    peers = None             # OOBTree: peer master name -> Peer
    forwards = None          # OOBTree: instance id -> Forward (the forward table)
    open_forwards = None     # OOTreeSet of instance ids whose forward is not closed
    forward_refs = None      # OOBTree: (peer, remote reference) -> instance id
    federation_policy = ()   # the delegation rules, as validated JSON objects
    awaiting_host = None     # OOTreeSet of (software_hash, software_type, instance id):
                             # shared instances served here that no host holds yet
    # Replication (class-level defaults: a database from before replicas has epoch 1,
    # no replica, and is its own primary).
    epoch = 1                # grows by one at each promotion; never goes down
    epochs = ()              # ((epoch, primary name, unix time), ...): who held each epoch
    replicas = ()            # ((name, url, mode), ...) sorted by name: the replicas known
                             # to the primary of the current epoch (mode: sync | async)
    ledger = None            # model.accounting.Ledger: usage, statements, the price list

    def create_containers(self) -> None:
        """Create the root containers that do not exist yet (idempotent)."""
        if self.computers is None:
            self.computers = OOBTree()
        if self.instances is None:
            self.instances = OOBTree()
        if self.by_request is None:
            self.by_request = OOBTree()
        if self.hosts_by_release is None:
            self.hosts_by_release = OOTreeSet()
        if self.supplied is None:
            self.supplied = OOTreeSet()
            for comp in self.computers.values():
                for h in comp.software.keys():
                    self.supplied.add((h, comp.id))
        if self.placement_changes is None:
            self.placement_changes = Length(0)
        if self.peers is None:
            self.peers = OOBTree()
        if self.forwards is None:
            self.forwards = OOBTree()
            self.open_forwards = OOTreeSet()
            self.forward_refs = OOBTree()
        if self.ledger is None:
            from .accounting import Ledger
            self.ledger = Ledger()
        if self.awaiting_host is None:
            self.awaiting_host = OOTreeSet()
            for inst in self.instances.values():
                if inst.awaits_host:
                    self.awaiting_host.add(_release_key(inst))

    # -- the forward table ----------------------------------------------------------
    def add_forward(self, fwd) -> None:
        self.forwards[fwd.instance_id] = fwd
        self.open_forwards.add(fwd.instance_id)
        self.forward_refs[(fwd.peer, fwd.remote_reference)] = fwd.instance_id

    def move_forward(self, fwd, peer: str) -> None:
        """Point ``fwd`` at another peer (a fallback), keeping the indexes right."""
        self.forward_refs.pop((fwd.peer, fwd.remote_reference), None)
        fwd.peer = peer
        self.forward_refs[(peer, fwd.remote_reference)] = fwd.instance_id

    def drop_forward(self, fwd) -> None:
        """Forget a forward (its peer was declared lost: the instance is served again
        here or by another peer, under a new forward)."""
        self.close_forward(fwd)
        self.forward_refs.pop((fwd.peer, fwd.remote_reference), None)
        self.forwards.pop(fwd.instance_id, None)

    def close_forward(self, fwd) -> None:
        if fwd.instance_id in self.open_forwards:
            self.open_forwards.remove(fwd.instance_id)

    def reopen_forward(self, fwd) -> None:
        self.open_forwards.add(fwd.instance_id)

    # -- computers --------------------------------------------------------------
    def add_computer(self, computer) -> None:
        self.computers[computer.id] = computer

    # -- the supply index: which computers know a release --------------------------
    def note_supplied(self, software_hash: str, computer_id: str) -> None:
        self.supplied.add((software_hash, computer_id))

    def note_unsupplied(self, software_hash: str, computer_id: str) -> None:
        if (software_hash, computer_id) in self.supplied:
            self.supplied.remove((software_hash, computer_id))

    def computer_ids_supplied(self, software_hash: str):
        """Ids of the computers a release was supplied to (any desired state), in order."""
        for _h, cid in self.supplied.keys(min=(software_hash,), max=(software_hash, _HIGH)):
            yield cid

    def placement_changed(self) -> None:
        self.placement_changes.change(1)

    # -- instances --------------------------------------------------------------
    def new_instance_id(self) -> str:
        """A fresh random id; random so that concurrent writers never race on a counter."""
        while True:
            iid = "i-" + uuid.uuid4().hex[:16]
            if iid not in self.instances:
                return iid

    def add_instance(self, instance) -> None:
        key = (instance.requester, instance.reference)
        if key in self.by_request:
            raise ValueError(f"{key!r} is already indexed")
        self.instances[instance.id] = instance
        self.by_request[key] = instance.id
        self.index_release(instance)

    def rename_instance(self, instance, reference: str) -> None:
        """Give ``instance`` another reference: indexed under (its requester,
        ``reference``) instead. The caller checked the key: free, or held by an instance
        it lets go of (a destroyed one, which keeps its record, reached by id)."""
        old = (instance.requester, instance.reference)
        if self.by_request.get(old) == instance.id:
            del self.by_request[old]
        self.by_request[(instance.requester, reference)] = instance.id
        instance.reference = reference

    def find_instance(self, requester: str, reference: str):
        iid = self.by_request.get((requester, reference))
        return None if iid is None else self.instances[iid]

    def instance_ids_of(self, requester: str):
        """Instance ids of one requester, in reference order."""
        for _key, iid in self.by_request.items(min=(requester,), max=(requester, _HIGH)):
            yield iid

    def references_of(self, requester: str, after: str | None = None):
        """(reference, instance id) of one requester's instances in reference order,
        after reference ``after`` when given (paging)."""
        low = (requester,) if after is None else (requester, after)
        for (_r, ref), iid in self.by_request.items(min=low, max=(requester, _HIGH),
                                                   excludemin=after is not None):
            yield ref, iid

    # -- the release index, used to find hosts of shared instances ---------------
    def index_release(self, instance) -> None:
        if not instance.shared:
            self.hosts_by_release.add(
                (instance.software_hash, instance.software_type, instance.id))

    def unindex_release(self, instance) -> None:
        if not instance.shared:
            key = (instance.software_hash, instance.software_type, instance.id)
            if key in self.hosts_by_release:
                self.hosts_by_release.remove(key)

    # -- shared instances waiting for a host (attached when one opens to them) ----
    def note_awaiting(self, instance) -> None:
        """Index ``instance`` as waiting for a host, or not, as its state says."""
        key = _release_key(instance)
        if instance.awaits_host:
            if key not in self.awaiting_host:
                self.awaiting_host.add(key)
        elif key in self.awaiting_host:
            self.awaiting_host.remove(key)

    def forget_awaiting(self, instance) -> None:
        key = _release_key(instance)
        if key in self.awaiting_host:
            self.awaiting_host.remove(key)

    def instance_ids_awaiting(self, software_hash: str, software_type: str) -> list:
        """Ids of the shared instances of one release and type waiting for a host."""
        low = (software_hash, software_type)
        high = (software_hash, software_type, _HIGH)
        return [iid for _h, _t, iid in self.awaiting_host.keys(min=low, max=high)]

    def instance_ids_of_release(self, software_hash: str, software_type: str):
        """Ids of the non-shared instances of one release and type, in id order."""
        low = (software_hash, software_type)
        high = (software_hash, software_type, _HIGH)
        for _h, _t, iid in self.hosts_by_release.keys(min=low, max=high):
            yield iid


def _release_key(instance) -> tuple:
    return (instance.software_hash, instance.software_type, instance.id)
