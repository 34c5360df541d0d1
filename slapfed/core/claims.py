"""What a node or a partition may claim, decided from what the master recorded: the facts
of a computer (locality, labels, capabilities) and the state a partition report gives.

Depends on core.states only; pure (no I/O, no model): the services read the recorded
facts, call these rules, and write nothing when a rule answers with problems.

Who owns what:

- A computer's facts (``FACT_FIELDS``) belong to the administrator (``PATCH
  /computers/<id>``, ``slapfed computer set``, or an admin's ``POST /computers``) and to
  the topology files. A node's *first* registration describes the computer (the admin
  who issued its token vouched for whoever formats it; an admin who wants them fixed
  declares the computer first, in a topology file or by registering it). Afterwards a
  node's registration may add partitions, and repeat the facts or leave them out, but
  never change them: no moving itself, no new label or capability for itself, none for
  a new partition beyond the computer's own capabilities.
- A partition report claims a state; which states it may claim depends on the state the
  requester asked for (``CLAIMABLE``). ``destroyed`` is claimed only when destruction
  is requested, and only by the node (it is the one that wipes the partition).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .states import DESTROYED, FAILED, LOCALITY_LEVELS, STARTED, STOPPED

LOCALITY_FIELDS = LOCALITY_LEVELS
FACT_FIELDS = LOCALITY_FIELDS + ("labels", "capabilities")


@dataclass(frozen=True)
class ComputerFacts:
    """A computer's facts. In a proposal, ``None`` locality, empty labels and empty
    capabilities mean "says nothing about it"; ``partitions`` maps partition id to
    its capabilities."""

    host: str | None = None
    lan: str | None = None
    country: str | None = None
    continent: str | None = None
    labels: dict = field(default_factory=dict)
    capabilities: tuple = ()
    partitions: dict = field(default_factory=dict)

    def locality(self) -> dict:
        return {k: getattr(self, k) for k in LOCALITY_FIELDS}


def _shown(value) -> str:
    if isinstance(value, (tuple, list, set, frozenset)):
        return "[" + ", ".join(sorted(value)) + "]" if value else "none"
    return "unset" if value is None else repr(value)


def _not_owned(name: str, recorded, proposed, why: str) -> dict:
    return {"field": name, "problem": f"is {_shown(recorded)} ({why}); a node may not "
                                      f"change it to {_shown(proposed)}",
            "recorded": recorded if not isinstance(recorded, tuple) else list(recorded),
            "proposed": proposed if not isinstance(proposed, tuple) else list(proposed)}


def node_fact_problems(recorded: ComputerFacts | None, declared: ComputerFacts | None,
                       proposed: ComputerFacts, partition_order=()) -> list[dict]:
    """Every fact a node's registration would change although it does not own it.

    ``recorded``: what the master holds (None: the computer is not registered yet);
    ``declared``: what the topology files declare of it (None: nothing); ``proposed``:
    what the node sent, before the topology filled anything in. A value the topology
    gives is always accepted (the files own it too). ``partition_order`` lists the
    proposed partition ids in the order of the body, for field names
    (``partitions[2].capabilities``). Returns [] when the registration may proceed."""
    declared = declared or ComputerFacts()
    problems: list[dict] = []
    why = "recorded by the master; an administrator changes it"
    for name in LOCALITY_FIELDS:
        value = getattr(proposed, name)
        if value is None or recorded is None:
            continue
        if value != getattr(recorded, name) and value != getattr(declared, name):
            problems.append(_not_owned(name, getattr(recorded, name), value, why))
    for key, value in sorted(proposed.labels.items()):
        if key in declared.labels and declared.labels[key] != value:
            problems.append(_not_owned(f"labels.{key}", declared.labels[key], value,
                                       "declared by the topology files"))
        elif recorded is not None and recorded.labels.get(key) != value \
                and declared.labels.get(key) != value:
            problems.append(_not_owned(f"labels.{key}", recorded.labels.get(key), value, why))
    caps = frozenset(proposed.capabilities)
    if caps and declared.capabilities and caps != frozenset(declared.capabilities):
        problems.append(_not_owned("capabilities", tuple(sorted(declared.capabilities)),
                                   tuple(sorted(caps)), "declared by the topology files"))
    elif caps and recorded is not None and caps != frozenset(recorded.capabilities) \
            and caps != frozenset(declared.capabilities):
        problems.append(_not_owned("capabilities", tuple(sorted(recorded.capabilities)),
                                   tuple(sorted(caps)), why))
    if recorded is None:
        return problems
    allowed = frozenset(recorded.capabilities) | frozenset(declared.capabilities)
    index = {pid: i for i, pid in enumerate(partition_order)}
    for pid, part_caps in sorted(proposed.partitions.items(), key=lambda kv: index.get(kv[0], 0)):
        name = f"partitions[{index.get(pid, 0)}].capabilities"
        part_caps = frozenset(part_caps)
        if pid in recorded.partitions:
            have = frozenset(recorded.partitions[pid])
            if part_caps and part_caps != have:
                problems.append(_not_owned(name, tuple(sorted(have)), tuple(sorted(part_caps)),
                                           f"partition {pid} is recorded so"))
        elif not part_caps <= allowed:
            problems.append(_not_owned(
                name, tuple(sorted(allowed)), tuple(sorted(part_caps)),
                f"a new partition {pid} may carry only the computer's own capabilities"))
    return problems


def settled_facts(recorded: ComputerFacts, completed: ComputerFacts) -> ComputerFacts:
    """The facts a node's accepted registration leaves: what it (or the topology) said,
    where it said anything, else what was recorded. Only meaningful once
    ``node_fact_problems`` found nothing, so a value said either repeats the record or
    comes from the topology files."""
    loc = {k: getattr(completed, k) if getattr(completed, k) is not None
           else getattr(recorded, k) for k in LOCALITY_FIELDS}
    parts = {pid: (tuple(caps) if caps or pid not in recorded.partitions
                   else tuple(recorded.partitions[pid]))
             for pid, caps in completed.partitions.items()}
    return ComputerFacts(labels={**recorded.labels, **completed.labels},
                         capabilities=tuple(completed.capabilities or recorded.capabilities),
                         partitions=parts, **loc)


# -- partition reports -----------------------------------------------------------------
# requested state -> the states a report may claim. A report on an older revision tells
# what was asked then (a stopped instance being started again may still report
# ``stopped``), so started and stopped accept each other; ``destroyed`` is claimed only
# once destruction is requested (the partition is then freed), never otherwise.
CLAIMABLE: dict[str, tuple[str, ...]] = {
    STARTED: (STARTED, STOPPED, FAILED),
    STOPPED: (STARTED, STOPPED, FAILED),
    DESTROYED: (STARTED, STOPPED, FAILED, DESTROYED),
}
# On the instance's current revision, the requested state is the one the report answers.
CLAIMABLE_AT_CURRENT_REVISION: dict[str, tuple[str, ...]] = {
    STARTED: (STARTED, FAILED),
    STOPPED: (STOPPED, FAILED),
    DESTROYED: (DESTROYED, FAILED),
}
# Who may claim a state: the partition's own identity never claims ``destroyed`` (it
# cannot see its own wipe; the node destroys it and says so).
NODE, PARTITION = "node", "partition"
NODE_ONLY_CLAIMS = frozenset({DESTROYED})


@dataclass(frozen=True)
class ClaimRefusal:
    """Why a report's state is refused: ``by_owner`` False means the state fits the
    request but the reporter is not the one who may claim it."""

    requested: str
    claimed: str
    message: str
    by_owner: bool = True

    def details(self) -> list[dict]:
        return [{"field": "state", "problem": self.message, "requested": self.requested,
                 "claimed": self.claimed}]


def report_refusal(requested: str, claimed: str, current_revision: bool,
                   reporter: str = NODE) -> ClaimRefusal | None:
    """None when a report claiming ``claimed`` for an instance requested ``requested``
    may be recorded; else the refusal. ``current_revision``: the report is on the
    instance's latest revision. ``reporter``: NODE or PARTITION."""
    table = CLAIMABLE_AT_CURRENT_REVISION if current_revision else CLAIMABLE
    allowed = table.get(requested, ())
    if claimed not in allowed:
        when = "at its current revision" if current_revision else "at any revision"
        return ClaimRefusal(requested, claimed,
                            f"the instance is requested {requested}, so a report may not "
                            f"claim {claimed} {when} (may claim: {', '.join(allowed)})")
    if reporter != NODE and claimed in NODE_ONLY_CLAIMS:
        return ClaimRefusal(requested, claimed,
                            f"only the node claims {claimed} (it destroys the partition); "
                            f"a {reporter} may not", by_owner=False)
    return None
