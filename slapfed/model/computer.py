"""Computers, their partitions and the software releases supplied to them.

Depends on core.states and persistent/BTrees. A partition is its own persistent
object so that two transactions allocating it conflict on it (and one retries).
"""
from __future__ import annotations

from BTrees.Length import Length
from BTrees.OOBTree import OOBTree, OOTreeSet
from persistent import Persistent

from ..core.states import AVAILABLE, LOCALITY_LEVELS as LOCALITY_KEYS, PENDING


class Partition(Persistent):
    """A slot on a computer hosting at most one instance."""

    id = None
    address = None
    port_base = 0
    port_count = 0
    instance_id = None
    capabilities = ()        # tags: only requests asking one of them land here
    # An instance moved away from this partition (its computer was declared lost): its
    # data may still be on the node, so the partition is not free until it is wiped.
    moved_instance = None    # id of the instance that was here
    quarantined = False      # the node confirmed it set that instance's data aside
    wipe = False             # an administrator let the node erase that data
    # {"certificate" (PEM), "fingerprint"}: the partition's own certificate, as this
    # master last issued it; what a requester seals secret parameters to (None: none yet)
    recipient = None

    def __init__(self, pid: str, address: str, port_base: int, port_count: int,
                 capabilities: tuple = ()):
        self.id = pid
        self.address = address
        self.port_base = port_base
        self.port_count = port_count
        if capabilities:
            self.capabilities = tuple(capabilities)


class SoftwareRelease(Persistent):
    """A release supplied to one computer: desired state and what the node observed."""

    url = None
    hash = None
    state = AVAILABLE          # desired: available | destroyed
    status = PENDING           # observed: pending | building | installed | failed | destroyed
    failed_installs = 0        # failures since the last successful install
    log_tail = ""
    software_types = ()
    reported_at = None

    def __init__(self, url: str, software_hash: str, state: str = AVAILABLE):
        self.url = url
        self.hash = software_hash
        self.state = state

    @property
    def broken(self) -> bool:
        """Its install failed, and has not succeeded since (a retry may be under way):
        placement sends it no new instance."""
        return self.state == AVAILABLE and self.failed_installs > 0


class Computer(Persistent):
    """A machine running a node agent, with its locality and partitions.

    ``serial`` bumps on every change of the computer's desired-state document;
    it and the free-partition count are ``Length`` objects so that concurrent
    allocations on one computer resolve instead of conflicting on a counter.
    """

    id = None
    host = None
    lan = None
    country = None
    continent = None
    labels = {}              # replaced as a whole, never mutated in place
    capabilities = ()        # tags of the whole computer (a tuple, replaced as a whole)
    partition_tags = {}      # partition id -> capabilities, tagged partitions only (replaced)
    partitions = None        # OOBTree: partition id -> Partition
    free = None              # OOTreeSet of free partition ids
    free_count = None        # Length
    software = None          # OOBTree: software hash -> SoftwareRelease
    serial_counter = None    # Length
    last_contact = None      # epoch seconds of the last desired-state read or report
    created_at = None
    lost_at = None           # epoch seconds of the verdict "lost" (None: not lost)
    lost_reason = ""         # who or what declared it lost, and why

    @property
    def lost(self) -> bool:
        """Declared lost: placement puts nothing here, what it hosted moved elsewhere."""
        return self.lost_at is not None

    def declare_lost(self, now: float, reason: str) -> bool:
        """Mark the computer lost; False when it already was (the first verdict stays)."""
        if self.lost_at is not None:
            return False
        self.lost_at = now
        self.lost_reason = reason
        self.bump_serial()
        return True

    def clear_lost(self) -> None:
        if self.lost_at is not None:
            self.lost_at = None
            self.lost_reason = ""
            self.bump_serial()

    # -- the lease's transitions (renewals themselves are kept out of the database) ----
    lease_out_at = None      # epoch seconds its lease ran out, once the master saw it
    lease_back_at = None     # epoch seconds its node was heard from after the last one

    @property
    def lease_recorded_out(self) -> bool:
        return self.lease_out_at is not None

    def record_lease_out(self, ran_out_at: float) -> bool:
        """Its lease ran out at ``ran_out_at`` (the lease's end, the same for every
        process that sees it); False when that is already recorded (nothing written)."""
        if self.lease_out_at is not None:
            return False
        self.lease_out_at = ran_out_at
        return True

    def record_lease_back(self, now: float) -> bool:
        """Its node was heard from again; False when its lease was not recorded out."""
        if self.lease_out_at is None:
            return False
        self.lease_out_at = None
        self.lease_back_at = now
        return True

    def __init__(self, cid: str, now: float):
        self.id = cid
        self.partitions = OOBTree()
        self.free = OOTreeSet()
        self.free_count = Length(0)
        self.software = OOBTree()
        self.serial_counter = Length(1)
        self.created_at = now

    # -- locality ---------------------------------------------------------------
    @property
    def locality(self) -> dict:
        return {k: getattr(self, k) for k in LOCALITY_KEYS}

    def update_locality(self, locality: dict, labels: dict, capabilities: tuple = ()) -> bool:
        """Set locality, labels and capabilities; True when anything changed."""
        changed = False
        if tuple(self.capabilities) != tuple(capabilities):
            self.capabilities = tuple(capabilities)
            changed = True
        for key in LOCALITY_KEYS:
            if getattr(self, key) != locality.get(key):
                setattr(self, key, locality.get(key))
                changed = True
        if dict(self.labels) != labels:
            self.labels = dict(labels)
            changed = True
        return changed

    # -- serial -----------------------------------------------------------------
    @property
    def serial(self) -> int:
        return self.serial_counter()

    def bump_serial(self) -> None:
        self.serial_counter.change(1)

    # -- partitions -------------------------------------------------------------
    def add_partition(self, pid: str, address: str, port_base: int, port_count: int,
                      capabilities: tuple = ()) -> bool:
        """Add a partition unless it exists (existing ones are kept, their capabilities
        updated); True if added or its capabilities changed."""
        existing = self.partitions.get(pid)
        if existing is not None:
            return self.tag_partition(existing, capabilities)
        self.partitions[pid] = Partition(pid, address, port_base, port_count, capabilities)
        self.free.add(pid)
        self.free_count.change(1)
        if capabilities:
            self.partition_tags = {**self.partition_tags, pid: tuple(capabilities)}
        return True

    def tag_partition(self, partition: "Partition", capabilities: tuple) -> bool:
        """Set a partition's capabilities; True when they changed."""
        capabilities = tuple(capabilities)
        if tuple(partition.capabilities) == capabilities:
            return False
        partition.capabilities = capabilities
        tags = dict(self.partition_tags)
        if capabilities:
            tags[partition.id] = capabilities
        else:
            tags.pop(partition.id, None)
        self.partition_tags = tags
        return True

    def free_partition_ids(self, limit: int) -> tuple:
        """Up to ``limit`` free partition ids, in id order."""
        out = []
        for pid in self.free:
            out.append(pid)
            if len(out) >= limit:
                break
        return tuple(out)

    def allocate(self, pid: str, instance_id: str) -> "Partition":
        """Give the free partition ``pid`` to an instance (ValueError if it is not free)."""
        partition = self.partitions[pid]
        if partition.instance_id is not None:
            raise ValueError(f"partition {pid} already hosts {partition.instance_id}")
        partition.instance_id = instance_id
        self.free.remove(pid)
        self.free_count.change(-1)
        self.bump_serial()
        return partition

    def release(self, pid: str) -> None:
        """Free a partition (no-op when already free)."""
        partition = self.partitions[pid]
        if partition.instance_id is None:
            return
        partition.instance_id = None
        self.free.add(pid)
        self.free_count.change(1)
        self.bump_serial()

    def move_out(self, pid: str) -> str:
        """The partition's instance moved elsewhere: the partition keeps its id as moved
        (its data may still be on the node) and stays out of the free set until wiped.
        Returns the instance id (ValueError when the partition hosts none)."""
        partition = self.partitions[pid]
        iid = partition.instance_id
        if iid is None:
            raise ValueError(f"partition {pid} hosts no instance")
        partition.instance_id = None
        partition.moved_instance = iid
        partition.quarantined = False
        partition.wipe = False
        self.bump_serial()
        return iid

    def hand_over(self, pid: str, from_iid: str, to_iid: str) -> None:
        """The partition of instance ``from_iid`` now hosts ``to_iid``, keeping its data
        (a child master's primary takes over its replica's partition). ValueError when
        the partition does not host ``from_iid``."""
        partition = self.partitions[pid]
        if partition.instance_id != from_iid:
            raise ValueError(f"partition {pid} hosts {partition.instance_id}, not {from_iid}")
        partition.instance_id = to_iid
        self.bump_serial()

    def moved_partition_ids(self) -> tuple:
        return tuple(pid for pid, p in self.partitions.items()
                     if p.moved_instance is not None)

    def allow_wipe(self, pid: str) -> bool:
        """Let the node erase a moved partition's data; False when already allowed."""
        partition = self.partitions[pid]
        if partition.moved_instance is None or partition.wipe:
            return False
        partition.wipe = True
        self.bump_serial()
        return True

    def note_quarantined(self, pid: str) -> bool:
        partition = self.partitions[pid]
        if partition.moved_instance is None or partition.quarantined:
            return False
        partition.quarantined = True
        return True

    def wiped(self, pid: str) -> None:
        """The node erased a moved partition's data: the partition is free again."""
        partition = self.partitions[pid]
        if partition.moved_instance is None:
            return
        partition.moved_instance = None
        partition.quarantined = False
        partition.wipe = False
        if partition.instance_id is None and pid not in self.free:
            self.free.add(pid)
            self.free_count.change(1)
        self.bump_serial()

    # -- software ---------------------------------------------------------------
    def available_release_hashes(self) -> frozenset:
        return frozenset(h for h, sw in self.software.items() if sw.state == AVAILABLE)

    def supply(self, url: str, software_hash: str, state: str):
        """Set the desired state of a release; returns (release, changed)."""
        sw = self.software.get(software_hash)
        if sw is None:
            sw = SoftwareRelease(url, software_hash, state)
            self.software[software_hash] = sw
            self.bump_serial()
            return sw, True
        if sw.state != state:
            sw.state = state          # the observed status stays until the node reports
            self.bump_serial()
            return sw, True
        return sw, False

    def remove_software(self, software_hash: str) -> None:
        if software_hash in self.software:
            del self.software[software_hash]
            self.bump_serial()
