"""Replication's decisions, pure: what a master's role lets it do, whether an epoch
fences it, which master a node or client may follow, and how far behind a replica is.

Depends on core.errors only: no clock (times are given), no I/O.
"""
from __future__ import annotations


from .errors import Fenced, ReadOnly
from .record import Record

PRIMARY = "primary"
REPLICA = "replica"
ROLES = (PRIMARY, REPLICA)

SYNC = "sync"
ASYNC = "async"
MODES = (SYNC, ASYNC)

EPOCH_HEADER = "Slapfed-Epoch"          # every answer: the epoch of the master answering
MASTERS_HEADER = "Slapfed-Masters"      # every answer: the masters of that epoch (URLs)
ROLE_HEADER = "Slapfed-Role"            # every answer: primary | replica | fenced


class LocalRole(Record):
    """What a data directory is: a primary (possibly fenced by a larger epoch it saw) or
    a replica of ``primary_url`` known there as ``name``."""

    role: str = PRIMARY
    name: str | None = None             # a replica's name at its primary
    primary_url: str | None = None      # a replica's primary
    sync: bool = False                  # a replica's mode
    fenced_epoch: int | None = None     # a larger epoch this primary saw...
    fenced_by: str | None = None        # ...and the master holding it

    @property
    def state(self) -> str:
        """primary | replica | fenced: what ``Slapfed-Role`` and status say."""
        if self.fenced_epoch is not None:
            return "fenced"
        return self.role

    def to_json(self) -> dict:
        return {"role": self.role, "name": self.name, "primary_url": self.primary_url,
                "sync": self.sync, "fenced_epoch": self.fenced_epoch,
                "fenced_by": self.fenced_by}

    @classmethod
    def from_json(cls, doc) -> "LocalRole":
        if not isinstance(doc, dict) or doc.get("role") not in ROLES:
            return cls()
        epoch = doc.get("fenced_epoch")
        return cls(role=doc["role"], name=doc.get("name"), primary_url=doc.get("primary_url"),
                   sync=bool(doc.get("sync")),
                   fenced_epoch=epoch if isinstance(epoch, int) else None,
                   fenced_by=doc.get("fenced_by"))


def check_writable(role: LocalRole, epoch: int, primary: str | None) -> None:
    """Raise what refuses a write on a master playing ``role`` at ``epoch``: Fenced once a
    larger epoch was seen, ReadOnly on a replica (naming its primary ``primary``)."""
    if role.fenced_epoch is not None:
        raise Fenced(f"this master was the primary at epoch {epoch}, but "
                     f"{role.fenced_by or 'another master'} was promoted at epoch "
                     f"{role.fenced_epoch}: it refuses every write; write to "
                     f"{role.fenced_by or 'the new primary'}",
                     [{"field": "epoch", "problem": f"{epoch} < {role.fenced_epoch}"},
                      {"field": "primary", "problem": role.fenced_by or "unknown"}])
    if role.role == REPLICA:
        where = primary or role.primary_url or "its primary"
        raise ReadOnly(f"this master is a read-only replica; write to the primary at "
                       f"{where}",
                       [{"field": "primary", "problem": where}])


def fences(my_epoch: int, their_epoch, their_role) -> bool:
    """Whether a master at ``my_epoch`` must stop writing, having heard of a primary
    (``their_role`` primary, not fenced itself) at ``their_epoch``."""
    return (isinstance(their_epoch, int) and not isinstance(their_epoch, bool)
            and their_role == PRIMARY and their_epoch > my_epoch)


def acceptable(health, highest_epoch: int) -> bool:
    """Whether a master answering ``health`` (its /health document) may be followed by a
    party that has seen ``highest_epoch``: a primary, not fenced, at an epoch at least as
    large."""
    if not isinstance(health, dict):
        return False
    epoch = health.get("epoch", 1)
    return (health.get("role", PRIMARY) == PRIMARY and isinstance(epoch, int)
            and epoch >= highest_epoch)


def candidates(current: str, configured: str | None, learned) -> list[str]:
    """The masters to try when ``current`` stops answering: the others first (learned,
    then the one configured), ``current`` last; each URL once."""
    out = []
    for url in [*(learned or ()), configured, current]:
        if url and url not in out and url != current:
            out.append(url)
    out.append(current)
    return out


def lag_seconds(primary_time: float | None, replica_time: float | None) -> float:
    """Seconds of commits a replica lacks: the primary's last commit time minus the
    replica's last (0 when it has them all)."""
    if primary_time is None or replica_time is None:
        return 0.0 if primary_time is None else float("inf")
    return max(0.0, primary_time - replica_time)


def parse_masters(value) -> tuple[str, ...]:
    """The URLs of a ``Slapfed-Masters`` header (space separated; junk dropped)."""
    if not isinstance(value, str):
        return ()
    return tuple(u for u in value.split()
                 if u.startswith(("https://", "http://")) and len(u) < 300)[:16]


def parse_epoch(value) -> int | None:
    try:
        epoch = int(value)
    except (TypeError, ValueError):
        return None
    return epoch if 0 < epoch < 2 ** 62 else None


# -- a former primary rejoining -----------------------------------------------------------
def common_prefix(local_tids, held) -> int:
    """The index in ``local_tids`` (a data directory's TIDs, oldest first) of the last
    one the new primary also holds, -1 when it holds none. ``held(tid)`` asks the
    primary. Its history holds a prefix of ours (a replica got ours in order, then added
    its own), so "held" is true up to some index and false after it: a binary search
    asks about log2(n) TIDs."""
    lo, hi = -1, len(local_tids) - 1          # held(local_tids[lo]) is known true (or lo=-1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if held(local_tids[mid]):
            lo = mid
        else:
            hi = mid - 1
    return lo


def rejoin_refusal(local: LocalRole, my_epoch: int, primary_health) -> str | None:
    """Why a data directory playing ``local`` at ``my_epoch`` may not rejoin as a replica
    of the master answering ``primary_health`` (None: it may). A former primary rejoins
    only the primary of a larger epoch: never one it could still be ahead of."""
    if local.role != PRIMARY:
        return None
    if not isinstance(primary_health, dict):
        return "the invitation's master does not answer"
    their = primary_health.get("epoch")
    if primary_health.get("role", PRIMARY) != PRIMARY:
        return (f"the invitation's master is not a primary (it answers as "
                f"{primary_health.get('role')})")
    if not isinstance(their, int) or isinstance(their, bool) or their <= my_epoch:
        return (f"this data directory is a primary at epoch {my_epoch} and the invitation's "
                f"master is at epoch {their}: only a primary promoted after it (a larger "
                "epoch) may take it back as a replica")
    return None
