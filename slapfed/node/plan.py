"""The node's pure planner: desired state (from the master) + local state -> actions.

Depends on core.states only (plus hashlib, imported when a digest is made, and json).
No I/O, no clock: the caller passes ``now``. The agent applies the actions in order,
one partition at a time; ``--dry-run`` prints them.

Rules (the whole policy lives here):
- a release is installed when supplied (state available) or used by a live instance;
  a failed install is retried only after a backoff; a release unsupplied (destroyed)
  is removed (once) after every partition action;
- a partition gets actions only when its (instance id, revision) changed, or when its
  last attempt failed and the backoff elapsed (or the release it waited for is now
  installed);
- a partition whose release failed is reported failed with the release's log tail,
  once per revision (and again after each retry of the release);
- a partition that now holds another instance (or none) is wiped first, unless the new
  one takes over the previous one's data (``takes_over``: a child master rebuilt from
  its replica, in the replica's partition);
- but a partition whose instance moved away (its computer was declared lost, the
  document says ``moved``) is never wiped: its services are stopped and its directory
  set aside in the quarantine, kept, until the master lets the node erase it (``wipe``).

Installs are slow (minutes); the rest is quick. ``split_on_installs`` says which of a
partition's actions need a release still being installed (they wait for it), so that
the agent can run installs apart and never hold other partitions up.
"""
from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Iterable

from ..core.states import (
    AVAILABLE, DEFAULT_SOFTWARE_TYPE, DESTROYED, ERASED, FAILED, INSTALLED, QUARANTINED,
    STARTED, STOPPED,
)
from ..core.record import Factory, Record

# -- local state ---------------------------------------------------------------------


class SoftwareRecord(Record):
    """What the node knows of one release it tried to install."""

    url: str
    status: str                       # INSTALLED, FAILED or DESTROYED (removed)
    attempts: int = 0                 # consecutive failed attempts
    last_attempt: float = 0.0
    log_tail: str = ""
    software_types: tuple[str, ...] = ()


class PartitionRecord(Record):
    """What the node last applied to one partition (and what it observed)."""

    instance_id: str | None = None
    revision: int = 0
    state: str = DESTROYED            # STARTED, STOPPED, DESTROYED or FAILED (observed);
                                      # QUARANTINED or ERASED once its instance moved away
    digest: str | None = None         # digest of the applied configuration, None if none
    software_hash: str | None = None
    attempts: int = 0                 # consecutive failed attempts of this revision
    last_attempt: float = 0.0
    blocked_on: str | None = None     # failed because this release failed
    log_tail: str = ""
    sealed_for: str | None = None     # fingerprint of the recipient its secrets were last
                                      # sealed to (node.sealing; None: none given)


class LocalState(Record):
    software: dict = Factory(dict)       # hash -> SoftwareRecord
    partitions: dict = Factory(dict)     # pid -> PartitionRecord

    def to_json(self) -> dict:
        # vars() rather than asdict(): the records hold only flat values (asdict is slow)
        software = {}
        for h, r in self.software.items():
            software[h] = dict(vars(r), software_types=list(r.software_types))
        return {"version": 1, "software": software,
                "partitions": {p: dict(vars(r)) for p, r in self.partitions.items()}}

    @classmethod
    def from_json(cls, data: dict | None) -> "LocalState":
        data = data or {}
        software = {}
        for h, r in (data.get("software") or {}).items():
            r = dict(r)
            r["software_types"] = tuple(r.get("software_types") or ())
            software[h] = SoftwareRecord(**r)
        partitions = {p: PartitionRecord(**r) for p, r in (data.get("partitions") or {}).items()}
        return cls(software, partitions)


class Backoff(Record):
    """Delay before retrying after ``attempts`` consecutive failures."""

    base: float = 10.0
    factor: float = 2.0
    cap: float = 600.0

    def delay(self, attempts: int) -> float:
        if attempts <= 0:
            return 0.0
        return min(self.cap, self.base * self.factor ** (attempts - 1))

    def due(self, attempts: int, last_attempt: float, now: float) -> bool:
        return now >= last_attempt + self.delay(attempts)


# -- desired state, as read from the master's document -------------------------------


class Slot(Record):
    """A partition as the master sees it."""

    id: str
    address: str
    port_base: int
    port_count: int


class InstanceSpec(Record):
    _not_compared = ("restore_from", "takes_over")
    _not_hashed = ("parameters", "shared_instances")     # (dicts and lists)

    id: str
    reference: str
    software_url: str
    software_hash: str
    software_type: str
    requested_state: str
    revision: int
    parameters: Any = Factory(dict)
    shared_instances: Any = Factory(list)
    provenance: tuple = ()          # the masters the request crossed, root first
    # where the instance's data were backed up before its computer was lost: the node
    # runs its restore steps with it before the first start on a new partition
    restore_from: str | None = None
    # the instance whose partition, data included, this one took over (never wiped)
    takes_over: str | None = None
    # how many times an instance it requested moved (a lost computer): a new count runs
    # its buildout again, though its parameters are the same
    children_moved: int = 0

    @classmethod
    def from_json(cls, raw: dict) -> "InstanceSpec":
        return cls(
            id=raw["id"], reference=raw.get("reference") or raw["id"],
            software_url=raw["software_url"], software_hash=raw["software_hash"],
            software_type=raw.get("software_type") or DEFAULT_SOFTWARE_TYPE,
            requested_state=raw.get("requested_state") or STARTED,
            revision=int(raw.get("revision") or 0),
            parameters=dict(raw.get("parameters") or {}),
            shared_instances=list(raw.get("shared_instances") or []),
            provenance=tuple(raw.get("provenance") or ()),
            restore_from=raw.get("restore_from") if isinstance(raw.get("restore_from"), str)
            else None,
            takes_over=raw.get("takes_over") if isinstance(raw.get("takes_over"), str)
            else None,
            children_moved=raw["children_moved"] if isinstance(raw.get("children_moved"), int)
            and not isinstance(raw.get("children_moved"), bool) else 0)

    def digest(self) -> str:
        """Identifies what a buildout run depends on (not the requested state)."""
        import hashlib

        facts = [self.id, self.reference, self.software_url, self.software_type,
                 self.parameters, self.shared_instances, self.provenance]
        if self.children_moved:             # (absent when 0: digests made before hold)
            facts.append(self.children_moved)
        payload = json.dumps(facts, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        return {"id": self.id, "reference": self.reference, "software_url": self.software_url,
                "software_hash": self.software_hash, "software_type": self.software_type,
                "requested_state": self.requested_state, "revision": self.revision,
                "parameters": self.parameters, "shared_instances": self.shared_instances,
                "provenance": list(self.provenance)}


# -- actions --------------------------------------------------------------------------


class Action(Record):
    """Base of the value objects a plan is made of; ``partition`` is None for releases."""

    def to_json(self) -> dict:
        out = {"action": type(self).__name__}
        for k, v in self.__dict__.items():
            out[k] = v.to_json() if hasattr(v, "to_json") else v.as_dict() \
                if isinstance(v, Record) else v
        return out


class InstallSoftware(Action):
    partition: ClassVar[None] = None
    software_hash: str
    url: str

    def describe(self) -> str:
        return f"install release {self.url} ({self.software_hash})"


class RemoveSoftware(Action):
    partition: ClassVar[None] = None
    software_hash: str
    url: str

    def describe(self) -> str:
        return f"remove release {self.url} ({self.software_hash})"


class Destroy(Action):
    """Stop the partition's services, remove its group, wipe its directory.

    ``report`` is false when wiping an instance the master no longer places here."""

    partition: str
    instance_id: str | None
    revision: int
    report: bool = True

    def describe(self) -> str:
        why = "" if self.report else " (no longer placed here)"
        return f"{self.partition}: destroy {self.instance_id}{why}"


class Quarantine(Action):
    """The partition's instance moved away: stop its services and set its directory
    aside (kept, never deleted); the partition is left empty."""

    partition: str
    instance_id: str | None
    revision: int

    def describe(self) -> str:
        return f"{self.partition}: quarantine {self.instance_id} (it moved to another computer)"


class Erase(Action):
    """Erase the quarantined data of an instance that moved away (an administrator
    allowed it); the master then frees the partition."""

    partition: str
    instance_id: str

    def describe(self) -> str:
        return f"{self.partition}: erase the quarantined data of {self.instance_id}"


class Instantiate(Action):
    partition: str
    slot: Slot
    instance: InstanceSpec

    def describe(self) -> str:
        i = self.instance
        return (f"{self.partition}: instantiate {i.id} ({i.reference!r}) revision {i.revision}"
                f" type {i.software_type} of {i.software_url}")


class Start(Action):
    partition: str
    instance: InstanceSpec

    def describe(self) -> str:
        return f"{self.partition}: start {self.instance.id} revision {self.instance.revision}"


class Stop(Action):
    partition: str
    instance: InstanceSpec

    def describe(self) -> str:
        return f"{self.partition}: stop {self.instance.id} revision {self.instance.revision}"


class ReportFailed(Action):
    """Nothing to run: tell the master this revision failed (its release failed)."""

    partition: str
    instance: InstanceSpec
    software_hash: str
    log_tail: str

    def describe(self) -> str:
        return (f"{self.partition}: report {self.instance.id} revision "
                f"{self.instance.revision} failed (release {self.instance.software_url} "
                f"failed to install)")


class Plan(Record):
    actions: tuple = ()

    def __bool__(self) -> bool:
        return bool(self.actions)

    def __len__(self) -> int:
        return len(self.actions)

    def __iter__(self):
        return iter(self.actions)

    def describe(self) -> list[str]:
        return [a.describe() for a in self.actions]

    def installs(self) -> set[str]:
        """The hashes of the releases this plan installs."""
        return {a.software_hash for a in self.actions if isinstance(a, InstallSoftware)}

    def to_json(self) -> list[dict]:
        return [a.to_json() for a in self.actions]


def by_partition(actions: Iterable[Action]) -> list[tuple[str | None, list[Action]]]:
    """Consecutive actions grouped by partition (None: a release action, alone)."""
    groups: list[tuple[str | None, list[Action]]] = []
    for action in actions:
        pid = action.partition
        if pid is not None and groups and groups[-1][0] == pid:
            groups[-1][1].append(action)
        else:
            groups.append((pid, [action]))
    return groups


def needs_release(action: Action) -> str | None:
    """The hash of the release an action runs (instantiate, start, stop), else None
    (destroy, report: they never wait for an install)."""
    if isinstance(action, (Instantiate, Start, Stop)):
        return action.instance.software_hash
    return None


def split_on_installs(block: list[Action], installing: set[str] | frozenset
                      ) -> tuple[list[Action], list[Action], str | None]:
    """One partition's actions split in two: those that may run now, and those from
    the first one needing a release in ``installing`` on (they wait for that install,
    and are planned again once it is done); plus the hash waited for (None: no wait)."""
    for i, action in enumerate(block):
        h = needs_release(action)
        if h is not None and h in installing:
            return list(block[:i]), list(block[i:]), h
    return list(block), [], None


# -- the planner ----------------------------------------------------------------------

_NUM = re.compile(r"(\d+)")


def _natural(pid: str):
    return [int(t) if t.isdigit() else t for t in _NUM.split(pid)]


def _slot(raw: dict) -> Slot:
    return Slot(raw["id"], raw.get("address", ""), int(raw.get("port_base") or 0),
                int(raw.get("port_count") or 0))


def _live(record: PartitionRecord | None) -> bool:
    """Does the partition (as far as we know) hold something to wipe?"""
    return record is not None and record.instance_id is not None and \
        record.state not in (DESTROYED, QUARANTINED, ERASED)


def _failed_since(sw: SoftwareRecord | None, rec: PartitionRecord) -> bool:
    """Did the release fail again after the partition was last reported failed for it
    (a retry installed apart, while the partition waited)? Then it is reported again."""
    return sw is not None and sw.status == FAILED and sw.last_attempt > rec.last_attempt


def plan(desired: dict, local: LocalState, now: float, backoff: Backoff = Backoff()) -> Plan:
    """The ordered actions bringing the node from ``local`` to ``desired``."""
    parts = sorted(desired.get("partitions") or [], key=lambda p: _natural(p["id"]))
    specs = {p["id"]: InstanceSpec.from_json(p["instance"]) if p.get("instance") else None
             for p in parts}

    # 1. releases: wanted = supplied as available, or used by a live instance.
    wanted: dict[str, str] = {}
    unwanted: dict[str, str] = {}
    for sw in desired.get("software") or []:
        (wanted if sw.get("state", AVAILABLE) == AVAILABLE else unwanted)[sw["hash"]] = sw["url"]
    for spec in specs.values():
        if spec is not None and spec.requested_state != DESTROYED:
            wanted.setdefault(spec.software_hash, spec.software_url)
            unwanted.pop(spec.software_hash, None)

    installs = []
    retried: set[str] = set()
    for h, url in sorted(wanted.items()):
        rec = local.software.get(h)
        if rec is None:
            installs.append(InstallSoftware(h, url))
        elif rec.status != INSTALLED and backoff.due(rec.attempts, rec.last_attempt, now):
            installs.append(InstallSoftware(h, url))
            retried.add(h)
    pending_install = {a.software_hash for a in installs}

    # 2. partitions, in natural order of their ids.
    partition_actions: list[Action] = []
    for raw in parts:
        pid = raw["id"]
        spec = specs[pid]
        rec = local.partitions.get(pid)
        moved = raw.get("moved")
        if spec is None and isinstance(moved, dict) and moved.get("instance"):
            partition_actions.extend(_plan_moved(pid, moved, rec))
            continue
        partition_actions.extend(_plan_partition(pid, _slot(raw), spec, rec, local,
                                                 pending_install, retried, now, backoff))

    # 3. removals, once no partition action may still need the release.
    removals = [RemoveSoftware(h, url) for h, url in sorted(unwanted.items())
                if getattr(local.software.get(h), "status", None) != DESTROYED]
    return Plan(tuple(installs + partition_actions + removals))


def _plan_moved(pid: str, moved: dict, rec: PartitionRecord | None) -> list[Action]:
    """A partition whose instance moved away: quarantine what still runs there; erase
    the quarantine once allowed (once: an erased record is not erased again)."""
    out: list[Action] = []
    iid = str(moved["instance"])
    if _live(rec):
        out.append(Quarantine(pid, rec.instance_id, rec.revision))
    if moved.get("wipe") is True and not (rec is not None and rec.instance_id == iid
                                          and rec.state == ERASED):
        out.append(Erase(pid, iid))
    return out


def _plan_partition(pid, slot, spec, rec, local, pending_install, retried, now, backoff):
    out: list[Action] = []
    if spec is None:
        if _live(rec):
            out.append(Destroy(pid, rec.instance_id, rec.revision, report=False))
        return out

    same = rec is not None and rec.instance_id == spec.id
    taking_over = rec is not None and spec.takes_over is not None \
        and rec.instance_id == spec.takes_over
    if not same and _live(rec) and not taking_over:  # reassigned: wipe the previous tenant
        out.append(Destroy(pid, rec.instance_id, rec.revision, report=False))
        rec = None

    if spec.requested_state == DESTROYED:
        if same and rec.revision == spec.revision and rec.state == DESTROYED:
            return out
        if same and rec.revision == spec.revision and rec.state == FAILED \
                and not backoff.due(rec.attempts, rec.last_attempt, now):
            return out
        out.append(Destroy(pid, spec.id, spec.revision, report=True))
        return out

    current = same and rec.revision == spec.revision
    if current and rec.state == spec.requested_state:
        return out                                     # applied and healthy: nothing to do
    if current and rec.state == FAILED:
        if rec.blocked_on is not None:
            sw = local.software.get(rec.blocked_on)
            unblocked = (sw is not None and sw.status == INSTALLED) or \
                rec.blocked_on in pending_install or _failed_since(sw, rec)
            if not unblocked:
                return out
        elif not backoff.due(rec.attempts, rec.last_attempt, now):
            return out

    sw = local.software.get(spec.software_hash)
    if spec.software_hash not in pending_install and (sw is None or sw.status != INSTALLED):
        # the release failed and is not retried now: report, once per revision
        if current and rec.state == FAILED and rec.blocked_on == spec.software_hash \
                and not _failed_since(sw, rec):
            return out
        out.append(ReportFailed(pid, spec, spec.software_hash, sw.log_tail if sw else ""))
        return out

    applied = (same and rec.digest == spec.digest() and rec.state in (STARTED, STOPPED)
               and spec.software_hash not in pending_install)
    if not applied:
        out.append(Instantiate(pid, slot, spec))
    out.append(Start(pid, spec) if spec.requested_state == STARTED else Stop(pid, spec))
    return out
