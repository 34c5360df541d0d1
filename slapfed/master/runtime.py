"""The master's runtime (MasterRuntime): the one object that owns what a running master
holds — its typed settings, its DB, the single writer and the placement state (through
services.runtime.Runtime), the desired-state renderer, the CA, the topology it was
started with, the forwarder — and its life: the requests it is answering, and whether
it is stopping. The app factory builds it; views reach it through master.request.

Depends on services (the runtime of the use cases), peering (the forwarder), replication
(the role, sync waits, the follower or fence watcher), core.errors and the CA and
topology values it is handed. A stopping app answers its requests in
flight before closing its DB.
"""
from __future__ import annotations

import json
import logging
import threading
import time

from ..core import errors
from ..metrics import MasterMetrics
from ..peering.forwarder import Forwarder
from ..services.federation.peers import forward_counts
from ..replication.runtime import Replication
from ..services.runtime import MasterSettings, Runtime
from ..services.tx import read

EXTENSION = "slapfed"

log = logging.getLogger("slapfed.master")


class MasterRuntime(Runtime):
    """What an app owns: the use cases' runtime (settings, DB, writer, placement state,
    renderer), the DB itself when it opened it (``owns_db``), its CA (``ca``: None in
    development mode without one), its topology (``topology``: master.topology's
    MasterTopology), its forwarder (None unless it runs in this process) and the
    partition key pairs it handed to stock SLAP nodes (``slap_keys``: master.slap's, in
    memory only, so that a node asking again on every run gets the same pair).

    Stopping comes in two steps. ``begin_stop`` (on the server's SIGTERM/SIGINT) makes
    long polls answer at once with what they have; ``close`` then waits (at most
    ``DRAIN_TIMEOUT`` seconds) for the requests still being answered before closing the
    DB under them. A request the DB was closed under answers 503 ``master_stopping``."""

    DRAIN_TIMEOUT = 5.0

    def __init__(self, db, settings: MasterSettings, owns_db: bool):
        super().__init__(db, settings)
        self.owns_db = owns_db
        self.ca = None
        self.topology = None
        self.forwarder = None
        self.slap_keys: dict = {}
        self.slap_keys_lock = threading.Lock()
        self.stopping = threading.Event()
        self.closed = False
        self._active = 0
        self._idle = threading.Condition()
        self.metrics = MasterMetrics()
        self.writer.on_commit = self.metrics.commit
        self.placement.on_decision = self.metrics.placement
        self.metrics.gauges(self._scraped)
        self.replication = Replication(self, settings.sync_timeout)

    def _scraped(self):
        """The gauges only the database knows, read at each scrape."""
        if self.closed:
            return []
        out = [("slapfed_master_storage_bytes", "Size of the master's storage.",
                {(): float(self.db.storage.getSize())}, ())]
        counts = read(self.db, forward_counts)
        out.append(("slapfed_master_forwards_open", "Open forwards (delegations under "
                    "way or served), by peer and state.",
                    {(peer, state): float(n) for peer, states in counts.items()
                     for state, n in states.items()}, ("peer", "state")))
        expired = self.leases.expired_ids()
        total = read(self.db, lambda app: len(app.computers))
        out.append(("slapfed_master_computers", "Computers, by lease (live: heard from "
                    "within its lease; expired: not).",
                    {("expired",): float(len(expired)),
                     ("live",): float(max(0, total - len(expired)))}, ("lease",)))
        return out

    # -- replication (services.tx.write asks) ----------------------------------------
    def check_writable(self, promoting: bool = False) -> None:
        """ReadOnly on a replica, Fenced on a primary that saw a larger epoch."""
        self.replication.check_writable(promoting)

    def committed(self, tid: bytes) -> None:
        """Hold a write's answer until a sync replica has ``tid`` (bounded)."""
        self.replication.committed(tid)

    # -- the forwarder ----------------------------------------------------------------
    def start_forwarder(self):
        """Run the forwarder in this process unless another process of the same data
        directory already does (gunicorn workers elect one with a file lock)."""
        fwd = Forwarder(self)
        if fwd.start():
            self.forwarder = fwd
        return fwd

    def kick_forwarder(self) -> None:
        """Tell this process's forwarder (if it runs here) to look at the table now."""
        fwd = self.forwarder
        if fwd is not None:
            fwd.kick()

    # -- requests in flight (counted by RequestCounter) ------------------------------
    def enter(self) -> bool:
        """A request starts; False (not counted) once the app is closed."""
        with self._idle:
            if self.closed:
                return False
            self._active += 1
            return True

    def leave(self) -> None:
        with self._idle:
            self._active -= 1
            if not self._active:
                self._idle.notify_all()

    def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the requests in flight; how many are left."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            return self._active

    # -- stopping -------------------------------------------------------------------
    def begin_stop(self) -> None:
        """Long polls answer now (with what they have) instead of waiting."""
        self.stopping.set()
        self.writer.wake()
        self.replication.request_stop()

    def close(self) -> None:
        self.begin_stop()
        left = self.drain(self.DRAIN_TIMEOUT)
        if left:
            log.warning("closing the master with %d request(s) still being answered "
                        "after %gs: they answer 503 master_stopping", left,
                        self.DRAIN_TIMEOUT)
        with self._idle:
            self.closed = True
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        self.replication.stop()
        Runtime.close(self)
        if self.owns_db:
            self.db.close()


class RequestCounter:
    """WSGI middleware: counts the requests the app is answering (so that closing waits
    for them) and answers 503 ``master_stopping`` once the app is closed."""

    def __init__(self, wsgi_app, state: MasterRuntime):
        self.wsgi_app = wsgi_app
        self.state = state

    def __call__(self, environ, start_response):
        if not self.state.enter():
            err = errors.MasterStopping("the master is stopping; ask again once it is back")
            start_response(f"{err.http_status} SERVICE UNAVAILABLE",
                           [("Content-Type", "application/json"), ("Retry-After", "1")])
            return [json.dumps(err.to_json()).encode()]
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            self.state.leave()


def runtime_of(app) -> MasterRuntime:
    """The runtime of a master app (KeyError once close_app released it)."""
    return app.extensions[EXTENSION]
