"""Release installs run apart from the node loop: worker threads with their own queue.

Depends on node.buildout (install_software) and the standard library. An install takes
minutes; starting, stopping or destroying a partition takes a fraction of a second.
The agent hands InstallSoftware actions to this worker and goes on with the partitions
that do not wait for them; each worker thread drives its own buildout runner (a fork
of the agent, or a fresh interpreter), one install at a time. The worker never touches
the agent's state, its reports or supervisord: a finished install is put on a result
queue that the agent's loop drains (``collect``), so that only the loop writes
state.json and talks to the master. A release is never installed twice at once (it
stays "busy" until the loop collected its result), and at most ``workers`` installs
run in parallel. ``close`` abandons the installs under way (their process groups are
killed; nothing is recorded, so the next start installs them again).
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
import traceback
from dataclasses import dataclass

from ..logs import redact_url
from . import buildout as nb
from .layout import InstallSettings, Paths

log = logging.getLogger("slapfed.node")


@dataclass(frozen=True)
class Finished:
    """One install done: its action, its result (or the error it raised), how long."""

    action: object
    result: nb.SoftwareResult | None
    error: str = ""
    seconds: float = 0.0


class InstallWorker:
    def __init__(self, paths: Paths, make_runner, workers: int = 1,
                 settings: InstallSettings = InstallSettings()):
        if workers < 1:
            raise ValueError("an install worker needs at least one thread")
        self.paths = paths
        self.settings = settings
        self.jobs: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self._busy: dict[str, object] = {}        # hash -> action, until collected
        self._running: dict[int, int] = {}        # thread ident -> PID of its buildout run
        self._lock = threading.Lock()
        self._closing = False
        self.ready = threading.Event()            # set whenever a result is waiting
        self._threads = []
        for i in range(workers):
            runner = make_runner()
            warm = getattr(runner, "warm_up", None)
            if warm is not None:
                warm()        # here, in the loop's thread: warming up changes the cwd
            t = threading.Thread(target=self._work, args=(runner,), daemon=True,
                                 name=f"slapfed-install-{i}")
            self._threads.append((t, runner))
            t.start()

    # -- the loop's side ----------------------------------------------------------------
    def submit(self, action) -> bool:
        """Queue the install of ``action``'s release; False when that release is already
        queued, installing or waiting to be collected."""
        with self._lock:
            if self._closing or action.software_hash in self._busy:
                return False
            self._busy[action.software_hash] = action
        log.info("queued the install of release %s", redact_url(action.url))
        self.jobs.put(action)
        return True

    def busy(self) -> set[str]:
        """Hashes of the releases queued, installing or not yet collected."""
        with self._lock:
            return set(self._busy)

    def collect(self) -> list[Finished]:
        """The installs finished since the last call (the loop records and reports them);
        their releases stop being busy."""
        out = []
        while True:
            try:
                done = self.results.get_nowait()
            except queue.Empty:
                break
            out.append(done)
        with self._lock:
            for done in out:
                self._busy.pop(done.action.software_hash, None)
            if self.results.empty():
                self.ready.clear()
        return out

    def close(self, timeout: float = 10.0) -> None:
        """Abandon what is queued or running (SIGTERM, then SIGKILL, to each run's
        process group) and end the threads."""
        with self._lock:
            self._closing = True
            running = list(self._running.values())
        with contextlib.suppress(queue.Empty):
            while True:
                self.jobs.get_nowait()
        for _ in self._threads:
            self.jobs.put(None)
        for pid in running:
            log.warning("abandoning the install run %d (the agent stops); it starts again "
                        "with the agent", pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for t, runner in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                with self._lock:
                    pid = self._running.get(t.ident)
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                t.join(5.0)
            close = getattr(runner, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    # -- the threads --------------------------------------------------------------------
    def _work(self, runner) -> None:
        me = threading.get_ident()

        def spawned(pid: int) -> None:
            with self._lock:
                self._running[me] = pid
        runner.on_spawn = spawned
        while True:
            action = self.jobs.get()
            if action is None:
                return
            started = time.monotonic()
            log.info("installing release %s", redact_url(action.url))
            try:
                done = Finished(action, nb.install_software(
                    self.paths, action.url, action.software_hash, runner, self.settings),
                    seconds=time.monotonic() - started)
            except Exception as exc:  # noqa: BLE001 - becomes the release's failure
                log.exception("unexpected error installing release %s", redact_url(action.url))
                done = Finished(action, None, f"slapfed: {type(exc).__name__}: {exc}\n"
                                + traceback.format_exc(), time.monotonic() - started)
            with self._lock:
                self._running.pop(me, None)
                if self._closing:
                    continue           # abandoned: nothing recorded, installed again later
                self.results.put(done)
                self.ready.set()
