"""Use cases of replication on the master's database: the epoch and who held each one,
the replicas a primary knows of, recording a replica, and promotion (a new epoch).

Depends on core (errors, replication) and services.tx. The epoch lives in the database
(App.epoch), so that it is replicated with everything else and only grows.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import InvalidInput
from ..core.replication import MODES
from .tx import read, write

URL_MAX = 300                   # core.wire.REPLICA_URL_MAX


@dataclass(frozen=True)
class ReplicaRecord:
    name: str
    url: str | None
    mode: str

    def to_json(self) -> dict:
        return {"name": self.name, "url": self.url, "mode": self.mode}


@dataclass(frozen=True)
class ReplicationView:
    """What the database says of replication: the epoch, its history, the replicas."""

    epoch: int
    epochs: tuple                     # ((epoch, primary name, unix time), ...)
    replicas: tuple                   # ReplicaRecord, by name

    @property
    def sync_replicas(self) -> tuple:
        return tuple(r.name for r in self.replicas if r.mode == "sync")

    def to_json(self) -> dict:
        return {"epoch": self.epoch,
                "epochs": [{"epoch": e, "primary": n, "at": t} for e, n, t in self.epochs],
                "replicas": [r.to_json() for r in self.replicas]}


def _view(app) -> ReplicationView:
    return ReplicationView(app.epoch, tuple(app.epochs),
                           tuple(ReplicaRecord(*r) for r in app.replicas))


def replication_view(conn) -> ReplicationView:
    """The replication facts of the database (``conn``: a connection, DB or runtime)."""
    return read(conn, _view)


def check_replica(name, url, mode) -> None:
    """InvalidInput naming each bad field of a replica's registration."""
    from ..ca.identity import PRINCIPAL_NAME_RE
    problems = []
    if not isinstance(name, str) or not PRINCIPAL_NAME_RE.match(name):
        problems.append({"field": "name", "problem": f"must match {PRINCIPAL_NAME_RE.pattern}"})
    if url is not None and (not isinstance(url, str) or len(url) > URL_MAX
                            or not url.startswith(("https://", "http://"))
                            or not (url.isascii() and url.isprintable())
                            or any(c.isspace() for c in url)):
        # visible ASCII only: every answer carries it in its Slapfed-Masters header
        problems.append({"field": "url", "problem": "must be an http(s) URL of visible "
                                                    "ASCII characters"})
    if mode not in MODES:
        problems.append({"field": "mode", "problem": f"must be one of {', '.join(MODES)}"})
    if problems:
        raise InvalidInput(f"invalid replica registration: {problems[0]['field']} "
                           f"{problems[0]['problem']}", problems)


def record_replica(rt, name: str, url: str | None, mode: str) -> ReplicationView:
    """Record (or update) replica ``name`` at ``url`` in ``mode``: one write, none when
    nothing changed. Raises InvalidInput."""
    check_replica(name, url, mode)
    entry = (name, url, mode)
    current = replication_view(rt)
    if any((r.name, r.url, r.mode) == entry for r in current.replicas):
        return current

    def use_case(app):
        kept = tuple(r for r in app.replicas if r[0] != name)
        app.replicas = tuple(sorted(kept + (entry,)))
        return _view(app)
    # the replica registering is not following yet: this write must not wait for it
    return write(rt, use_case, note=f"replica {name} registered", wait_replicas=False)


def promote(rt, name: str, now: float) -> ReplicationView:
    """Make this database's master (``name``) the primary of a new epoch: one more than
    the current one, recorded with who holds it; ``name`` is no longer a replica."""
    def use_case(app):
        epoch = app.epoch + 1
        app.epoch = epoch
        app.epochs = tuple(app.epochs) + ((epoch, name, now),)
        app.replicas = tuple(r for r in app.replicas if r[0] != name)
        return _view(app)
    return write(rt, use_case, note=f"{name} promoted", wait_replicas=False,
                 promoting=True)
