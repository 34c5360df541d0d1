"""Instances: the promise made by one request, with its placement and observed status.

Depends on core.states and persistent. Values are immutable (dicts and tuples are
replaced as a whole, never mutated in place), so assignment marks the object changed.
"""
from __future__ import annotations

from persistent import Persistent

from ..core.states import DESTROYED, PENDING, STARTED, UNKNOWN

EMPTY_STATUS = {"state": PENDING, "revision": 0, "reported_at": None, "log_tail": "",
                "promises": ()}


class Instance(Persistent):
    """One instance, identified by (requester, reference).

    ``revision`` bumps on every change of parameters, requested state, software
    type or release (and of the shared instances it hosts), so a node knows when to
    re-instantiate. A placed instance has ``computer_id``/``partition_id``; a shared
    one has ``host_id`` instead.
    """

    id = None
    requester = None
    root_requester = None    # requester of the tree's root (its owner); None before generation 3
    reference = None
    parent = None
    children = ()
    software_url = None
    software_hash = None
    software_type = None
    parameters = {}
    sla = {}                 # wire shape: one object, or a list of objects (alternatives)
    requested_state = STARTED
    shared = False
    revision = 1
    computer_id = None
    partition_id = None
    last_placement = None    # (computer id, partition id) it left (usage reported late)
    host_id = None           # shared instances: the instance hosting them
    shared_ids = ()          # hosts: ids of the shared instances attached, in id order
    status = EMPTY_STATUS
    connection = {}
    created_at = None
    updated_at = None
    child_master = None      # {"name", "url", "ca_certificate"}: the master it runs, once registered
    provenance = ()          # masters the request crossed, this one last; () before recursion
    delegated = False        # served by a peer master (its row is in App.forwards)
    restore_from = None      # the backup location it published before its computer was
                             # lost: its new node restores from there before starting it
    takes_over = None        # id of the instance whose partition (and data) it took over
                             # (a child master rebuilt from its replica): its node keeps
                             # that data rather than wiping the partition
    children_moved = 0       # how many times an instance it requested moved to another
                             # partition (its computer was lost): its node runs its
                             # buildout again each time, to hand that child what it needs
                             # there (a child master's replica: a new invitation)
    open_to = ()             # hosts: who else may attach shared instances (core.sharing);
                             # () = the owner only, ("*",) = everyone
    recipient = None         # {"certificate" (PEM), "fingerprint"}: the requester's own
                             # certificate, which its node seals secret connection
                             # parameters to; None: none known (nothing secret is published)

    def __init__(self, iid: str, requester: str, reference: str, software_url: str,
                 software_hash: str, software_type: str, parameters: dict, sla: dict,
                 requested_state: str, shared: bool, parent: str | None, now: float,
                 root_requester: str | None = None):
        self.id = iid
        self.requester = requester
        self.root_requester = root_requester or requester
        self.reference = reference
        self.software_url = software_url
        self.software_hash = software_hash
        self.software_type = software_type
        self.parameters = dict(parameters)
        self.sla = [dict(a) for a in sla] if isinstance(sla, (list, tuple)) else dict(sla)
        self.requested_state = requested_state
        self.shared = shared
        self.parent = parent
        self.created_at = now
        self.updated_at = now

    @property
    def owner(self) -> str:
        """Whose tree this instance belongs to (the root's requester)."""
        return self.root_requester or self.requester

    @property
    def placed(self) -> bool:
        return self.partition_id is not None

    @property
    def attached(self) -> bool:
        return self.host_id is not None

    @property
    def awaits_host(self) -> bool:
        """A shared instance served here, wanted, and attached to no host."""
        return (self.shared and not self.attached and not self.delegated
                and self.requested_state != DESTROYED)

    def touch(self, now: float) -> None:
        self.updated_at = now

    def bump_revision(self, now: float) -> None:
        self.revision += 1
        self.updated_at = now

    def set_status(self, **changes) -> None:
        status = dict(self.status)
        status.update(changes)
        if status["state"] != UNKNOWN:
            # what a peer last reported of a delegated instance it shows unknown
            status.pop("reported_state", None)
        self.status = status

    def place(self, computer_id: str, partition_id: str) -> None:
        self.computer_id = computer_id
        self.partition_id = partition_id

    def unplace(self) -> None:
        if self.partition_id is not None:      # usage reports of its last interval there
            self.last_placement = (self.computer_id, self.partition_id)
        self.computer_id = None
        self.partition_id = None

    def add_child(self, child_id: str) -> None:
        if child_id not in self.children:
            self.children = tuple(self.children) + (child_id,)

    def attach_shared(self, shared_id: str) -> bool:
        if shared_id in self.shared_ids:
            return False
        self.shared_ids = tuple(sorted(set(self.shared_ids) | {shared_id}))
        return True

    def detach_shared(self, shared_id: str) -> bool:
        if shared_id not in self.shared_ids:
            return False
        self.shared_ids = tuple(i for i in self.shared_ids if i != shared_id)
        return True
