"""The replication part of a running master (MasterRuntime.replication): its role (the
role file), the database's epoch and replicas (cached for a second), the positions its
replicas confirmed and the bounded wait of a sync write, the fence watcher of a primary
and the follower of a replica.

Depends on core (errors, replication), store.shipping, services.replication, client and
locks. Threads here are started by the master's worker and stopped with its runtime.

Sync mode, when the sync replica is gone: a write waits at most ``sync_timeout``
seconds for a sync replica to confirm it; then the primary *degrades* — it logs an
error, shows ``degraded_since`` in its status, and acknowledges writes without waiting
(asynchronous) until a sync replica has caught up with everything, which it logs too.
Refusing writes instead would turn the loss of a replica into the loss of the primary;
waiting forever, into a hung primary. The price is an RPO window while degraded, and
the status says exactly when it opened.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from ZODB.utils import z64

from ..client import MasterClient
from ..core import replication as rep
from ..core.errors import (MasterUnreachable, ReplicaDiverged, SlapfedError,
                           StorageError, Timeout)
from ..core.replication import LocalRole
from ..locks import try_exclusive_lock
from ..services import replication as svc
from ..store import shipping
from .cafiles import install_ca_material
from .local import REPLICA_DIR, RoleFile

log = logging.getLogger("slapfed.replication")

FOLLOW_WAIT = 2.0               # seconds a replica's long poll waits at its primary
FENCE_INTERVAL = 2.0            # seconds between two looks of a primary at its replicas
CA_REFRESH = 30.0               # seconds between two copies of the primary's CA records
LOCK_FILE = "replication.lock"  # elects the one process that follows / watches
URL_FILE = "master.url"


def own_url(data_dir) -> str | None:
    try:
        with open(os.path.join(data_dir, URL_FILE), encoding="utf-8") as f:
            return f.read().strip() or None
    except (FileNotFoundError, TypeError):
        return None


def replica_client(data_dir, url: str, timeout: float = 30.0) -> MasterClient:
    d = os.path.join(data_dir, REPLICA_DIR)
    return MasterClient(url, timeout=timeout, ca=os.path.join(d, "ca.crt"),
                        cert=os.path.join(d, "identity.crt"),
                        key=os.path.join(d, "identity.key"), connect_timeout=2.0)


class Replication:
    VIEW_TTL = 1.0

    def __init__(self, rt, sync_timeout: float = 5.0):
        self.rt = rt
        self.data_dir = rt.settings.data_dir
        self.roles = RoleFile(self.data_dir)
        self.sync_timeout = sync_timeout
        self._cond = threading.Condition()
        self._acks: dict[str, tuple[bytes, float]] = {}   # name -> (tid, unix time)
        self.degraded_since: float | None = None
        self._view = None
        self._view_at = 0.0
        self.follower: Follower | None = None
        self.watcher: FenceWatcher | None = None
        self._lock_fd = None
        self._own_url = None
        self._headers = None

    # -- facts ------------------------------------------------------------------------
    def role(self) -> LocalRole:
        return self.roles.get()

    def view(self) -> svc.ReplicationView:
        now = time.monotonic()
        view = self._view
        if view is None or now - self._view_at > self.VIEW_TTL:
            try:
                view = svc.replication_view(self.rt.db)
            except StorageError:          # a replica before its first transaction
                view = svc.ReplicationView(1, (), ())
            self._view, self._view_at = view, now
        return view

    def forget_view(self) -> None:
        self._view = None

    def own_url(self) -> str | None:
        """The URL this master serves at (read once it is known: it never changes while
        the master runs)."""
        if self._own_url is None:
            self._own_url = own_url(self.data_dir)
        return self._own_url

    def masters(self) -> list[str]:
        """The masters of this epoch, as a node should know them: the primary first."""
        role, view = self.role(), self.view()
        first = role.primary_url if role.role == rep.REPLICA else self.own_url()
        out = [first] if first else []
        out += [r.url for r in view.replicas if r.url and r.url not in out]
        return out

    def headers(self) -> dict:
        """The headers of every answer (made again only when the role or view changed)."""
        role, view = self.role(), self.view()
        cached = self._headers
        if cached is not None and cached[0] is role and cached[1] is view:
            return cached[2]
        out = {rep.EPOCH_HEADER: str(view.epoch), rep.ROLE_HEADER: role.state,
               rep.MASTERS_HEADER: " ".join(self.masters())}
        if self.own_url() is not None or role.role == rep.REPLICA:
            self._headers = (role, view, out)
        return out

    # -- writes -----------------------------------------------------------------------
    def check_writable(self, promoting: bool = False) -> None:
        role = self.role()
        if promoting and role.role == rep.REPLICA and role.fenced_epoch is None:
            return
        if role.role == rep.PRIMARY and role.fenced_epoch is None:
            return
        rep.check_writable(role, self.view().epoch, role.primary_url)

    def acknowledge(self, name: str, tid: bytes) -> None:
        """Replica ``name`` holds every transaction up to ``tid`` durably (it asked for
        the ones after it)."""
        now = time.time()
        with self._cond:
            prev = self._acks.get(name, (z64, 0.0))[0]
            self._acks[name] = (max(prev, tid), now)
            self._cond.notify_all()
        if self.degraded_since is not None and name in self.view().sync_replicas:
            last = self.rt.db.lastTransaction() or z64
            if tid >= last:
                log.warning("sync replication restored: replica %s holds every transaction "
                            "(degraded for %.1fs)", name, now - self.degraded_since,
                            extra={"replica": name})
                self.degraded_since = None

    def acks(self) -> dict:
        with self._cond:
            return dict(self._acks)

    def forget_acks(self, name: str) -> None:
        """Replica ``name`` is another one now (it registered at another URL): it has
        confirmed nothing yet; its lag is known again at its first request."""
        with self._cond:
            self._acks.pop(name, None)

    def committed(self, tid: bytes) -> None:
        """Hold a write's answer until a sync replica confirms ``tid`` (bounded: see the
        module's doc)."""
        if self.role().role != rep.PRIMARY:
            return
        sync = self.view().sync_replicas
        if not sync or self.degraded_since is not None:
            return
        deadline = time.monotonic() + self.sync_timeout
        with self._cond:
            while not any(self._acks.get(n, (z64,))[0] >= tid for n in sync):
                left = deadline - time.monotonic()
                if left <= 0 or self.rt.stopping.is_set():
                    break
                self._cond.wait(left)
            else:
                return
        # Before answering without a replica: was the sync replica promoted? Then this
        # master is fenced, and the write must not be acknowledged (its client writes
        # again, to the new primary).
        if check_fence(self):
            self.check_writable()
        if self.degraded_since is None:
            self.degraded_since = time.time()
            log.error("SYNC REPLICATION DEGRADED: no sync replica (%s) confirmed transaction "
                      "%s within %gs; writes are acknowledged without a replica until one "
                      "catches up", ", ".join(sync), tid.hex(), self.sync_timeout,
                      extra={"replicas": list(sync), "tid": tid.hex()})

    # -- the threads ------------------------------------------------------------------
    def start(self) -> None:
        """Follow the primary (a replica) or watch the replicas for a larger epoch (a
        primary), in the one process of the data directory that takes the lock."""
        if not self.data_dir:
            return
        fd = try_exclusive_lock(os.path.join(self.data_dir, LOCK_FILE))
        if fd is None:
            return
        self._lock_fd = fd
        role = self.role()
        if role.role == rep.REPLICA:
            self.follower = Follower(self)
            self.follower.start()
        elif role.fenced_epoch is None:
            self.start_watcher()

    def start_watcher(self) -> None:
        if self.watcher is None and self.rt.ca is not None:
            self.watcher = FenceWatcher(self)
            self.watcher.start()

    def request_stop(self) -> None:
        """The threads stop at their next step (the master is stopping)."""
        for t in (self.follower, self.watcher):
            if t is not None:
                t._stop.set()

    def stop(self) -> None:
        for t in (self.follower, self.watcher):
            if t is not None:
                t.stop()
        self.follower = self.watcher = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- status -----------------------------------------------------------------------
    def lags(self) -> dict:
        """Each replica's lag in seconds, as this primary's acknowledgements say (None:
        not known yet, or this master is no primary). Cheap: no storage is read beyond
        the last transaction id, unlike ``status``."""
        if self.role().role != rep.PRIMARY:
            return {}
        last_time = shipping.tid_time(self.rt.db.lastTransaction() or z64)
        out = {}
        for name, (tid, _seen) in self.acks().items():
            lag = None if tid is None else rep.lag_seconds(last_time,
                                                           shipping.tid_time(tid))
            out[name] = None if lag is None or lag == float("inf") else round(lag, 3)
        return out

    def status(self) -> dict:
        role, view = self.role(), self.view()
        last = self.rt.db.lastTransaction() or z64
        last_time = shipping.tid_time(last)
        replicas = []
        acks = self.acks()
        for r in view.replicas:
            tid, seen = acks.get(r.name, (None, None))
            entry = {**r.to_json(), "confirmed_tid": None if tid is None else tid.hex(),
                     "last_seen": seen, "lag_seconds": None,
                     "transactions_behind": None, "bytes_behind": None}
            if tid is not None and role.role == rep.PRIMARY:
                entry["lag_seconds"] = rep.lag_seconds(last_time, shipping.tid_time(tid))
                try:
                    behind = shipping.read_after(self.rt.db.storage, tid, 10_000, 1 << 30)
                    entry["transactions_behind"] = len(behind.transactions)
                    entry["bytes_behind"] = behind.size
                except SlapfedError:
                    pass
            replicas.append(entry)
        return {"role": role.state, "name": role.name or self.rt.settings.here,
                "epoch": view.epoch, "epochs": view.to_json()["epochs"],
                "primary_url": role.primary_url if role.role == rep.REPLICA
                else self.own_url(),
                "fenced_by": role.fenced_by, "fenced_epoch": role.fenced_epoch,
                "sync": role.sync, "last_tid": last.hex(),
                "sync_timeout": self.sync_timeout, "degraded_since": self.degraded_since,
                "replicas": replicas,
                "follower": self.follower.status() if self.follower is not None else None}


class _Thread:
    name = "replication"

    def __init__(self, repl: Replication):
        self.repl = repl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"slapfed-{self.name}",
                                        daemon=True)

    def start(self):
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self):
        raise NotImplementedError


class FenceWatcher(_Thread):
    """A primary asks each replica it knows of (its /health, verified against its own
    CA) for its epoch; one that answers as a primary of a larger epoch fences this one
    (recorded in the role file: it stays fenced across restarts)."""

    name = "fence-watcher"

    def _run(self):
        while not self._stop.is_set():
            try:
                if check_fence(self.repl):
                    return
            except Exception:  # noqa: BLE001 - a bad answer must not end the watch
                log.exception("fence watch failed; trying again")
            self._stop.wait(FENCE_INTERVAL)


def check_fence(repl: Replication) -> bool:
    """Look once; True when this master is (now) fenced."""
    role = repl.role()
    if role.fenced_epoch is not None:
        return True
    if role.role != rep.PRIMARY:
        return False
    view = repl.view()
    ca = os.path.join(str(repl.rt.ca.directory), "ca.crt") if repl.rt.ca else None
    for r in view.replicas:
        if not r.url:
            continue
        health = peek_health(r.url, ca)
        if health is not None and rep.fences(view.epoch, health.get("epoch"),
                                             health.get("role")):
            fence(repl, health["epoch"], r.url)
            return True
    return False


def startup_fence_check(data_dir, view, ca_path: str) -> bool:
    """Before a primary serves: does a replica it knows of answer as the primary of a
    larger epoch? Then this data directory is fenced (recorded). True when fenced."""
    from .local import read_role, write_role
    role = read_role(data_dir)
    if role.fenced_epoch is not None:
        return True
    if role.role != rep.PRIMARY:
        return False
    ca = ca_path if os.path.exists(ca_path) else None
    for r in view.replicas:
        health = peek_health(r.url, ca) if r.url else None
        if health is not None and rep.fences(view.epoch, health.get("epoch"),
                                             health.get("role")):
            write_role(data_dir, LocalRole(role.role, role.name, role.primary_url,
                                           role.sync, fenced_epoch=health["epoch"],
                                           fenced_by=r.url))
            log.error("FENCED at start: %s is the primary at epoch %d, this master held "
                      "epoch %d: it refuses every write", r.url, health["epoch"], view.epoch)
            return True
    return False


def peek_health(url: str, ca: str | None, timeout: float = 2.0) -> dict | None:
    try:
        return MasterClient(url, timeout=timeout, ca=ca, connect_timeout=timeout).health()
    except (SlapfedError, ValueError):
        return None


def fence(repl: Replication, epoch: int, by: str) -> None:
    role = repl.role()
    repl.roles.set(LocalRole(role.role, role.name, role.primary_url, role.sync,
                             fenced_epoch=epoch, fenced_by=by))
    log.error("FENCED: %s is the primary at epoch %d, this master held epoch %d: it "
              "refuses every write from now on", by, epoch, repl.view().epoch,
              extra={"epoch": epoch, "by": by})


class Follower(_Thread):
    """A replica's loop: ask the primary for the transactions after its last one (a long
    poll, which also confirms that one), apply them with their TIDs, again."""

    name = "replica-follower"

    def __init__(self, repl: Replication):
        super().__init__(repl)
        role = repl.role()
        self.primary = role.primary_url
        self.replica_name = role.name
        self.mode = rep.SYNC if role.sync else rep.ASYNC
        self._status = {"primary": self.primary, "name": self.replica_name,
                        "mode": self.mode, "connected": False, "last_contact": None,
                        "applied_tid": None, "primary_last_tid": None, "more": False,
                        "transactions_behind": None, "bytes_behind": None,
                        "lag_seconds": None, "last_error": None, "stopped": None}

    def status(self) -> dict:
        return dict(self._status)

    def _run(self):
        db = self.repl.rt.db
        client = replica_client(self.repl.data_dir, self.primary, timeout=FOLLOW_WAIT + 10)
        registered = False
        backoff = 0.1
        ca_due = time.monotonic() + CA_REFRESH       # copied once at set-up already
        while not self._stop.is_set():
            if self.repl.role().role != rep.REPLICA:
                break
            try:
                if not registered:
                    client.register_replica(self.replica_name,
                                            own_url(self.repl.data_dir), self.mode)
                    registered = True
                if time.monotonic() >= ca_due and self.repl.rt.ca is not None:
                    # revocations and certificates issued at the primary since
                    install_ca_material(self.repl.rt.ca.directory,
                                        client.replication_ca()["files"])
                    ca_due = time.monotonic() + CA_REFRESH
                after = db.storage.lastTransaction() or z64
                answer = client.replication_transactions(after.hex(), FOLLOW_WAIT)
                if self._stop.is_set() or self.repl.role().role != rep.REPLICA:
                    break
                applied = shipping.apply_transactions(db, answer["transactions"])
                if applied is not None:
                    self.repl.forget_view()
                mine = db.storage.lastTransaction() or z64
                primary_last = bytes.fromhex(answer["last_tid"])
                self._status.update(
                    connected=True, last_contact=time.time(), applied_tid=mine.hex(),
                    primary_last_tid=primary_last.hex(), more=bool(answer.get("more")),
                    transactions_behind=int(answer.get("behind") or 0),
                    bytes_behind=int(answer.get("behind_bytes") or 0),
                    last_error=None,
                    lag_seconds=rep.lag_seconds(shipping.tid_time(primary_last),
                                                shipping.tid_time(mine))
                    if primary_last > mine else 0.0)
                backoff = 0.1
            except ReplicaDiverged as exc:
                self._status.update(connected=False, last_error=exc.message,
                                    stopped=time.time())
                log.error("replica %s stops following %s: %s", self.replica_name,
                          self.primary, exc.message)
                return
            except (MasterUnreachable, Timeout, SlapfedError) as exc:
                registered = registered and isinstance(exc, (MasterUnreachable, Timeout))
                self._status.update(connected=False, last_error=str(exc))
                log.warning("replica %s: the primary %s: %s (again in %.1fs)",
                            self.replica_name, self.primary, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:  # noqa: BLE001 - the follower must outlive a bad answer
                log.exception("replica %s: following %s failed", self.replica_name,
                              self.primary)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
        self._status.update(stopped=time.time())
