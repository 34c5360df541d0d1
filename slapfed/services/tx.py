"""Transactions for use cases: one write transaction each, retried on conflict.

Depends on core.errors, model and transaction/ZODB. Writes of a runtime
(services.runtime: one per master process) are serialised (FileStorage is single-process
anyway) and run on its ONE dedicated writer connection, whose object cache therefore
stays warm; concurrent use cases are committed in groups (one fsync for many). Conflicts
with other processes (ZEO) are retried with a short back-off.
"""
from __future__ import annotations

import random
import threading
import time
from collections import deque
from contextvars import ContextVar

import transaction
from ZODB.Connection import Connection
from ZODB.DB import DB
from transaction.interfaces import TransientError

from ..core.errors import Conflict, StorageError
from ..model import ROOT_KEY

MAX_ATTEMPTS = 20
# What asked for the writes of this context (the web layer sets "PUT /api/v1/... by
# admin/root" per request): the note of a write that brings none of its own, so that a
# transaction says where it came from (a rejoining primary's set-aside list shows it).
ACTION: ContextVar[str | None] = ContextVar("slapfed_action", default=None)


def clock() -> float:
    return time.time()


def app_root(conn):
    """The App root of a connection; StorageError when the storage was never evolved."""
    app = conn.root().get(ROOT_KEY)
    if app is None or app.computers is None:
        raise StorageError("the storage has no slapfed root yet; run `slapfed master migrate`")
    return app


class _Pending:
    """One use case waiting in a writer's queue, and its outcome once committed."""

    __slots__ = ("use_case", "note", "done", "result", "error", "tid")

    def __init__(self, use_case, note):
        self.use_case = use_case
        self.note = note
        self.done = False
        self.result = None
        self.error = None
        self.tid = None         # the storage's last transaction once committed


class Writer:
    """The one connection of a database that write use cases of this process run on.

    Group commit: concurrent use cases queue up; whichever thread finds the writer idle
    becomes the leader, runs the queued use cases one after another in ONE transaction
    and commits them with one fsync, then hands over. Each use case stays atomic and
    the batch is a serial schedule: when a use case raises, the transaction is aborted,
    that use case alone gets its error (it saw exactly the effects of those before it),
    and the others run again without it. On a conflict each use case of the batch runs
    again on its own, with its own retries.
    """

    MAX_BATCH = 64

    def __init__(self, db):
        self.lock = threading.Lock()      # held while a batch runs (also by close())
        # Notified after every commit: long polls wait on it (and re-read at a short
        # interval anyway, for the commits of other processes).
        self.committed = threading.Condition()
        self.cond = threading.Condition(threading.Lock())
        self.queue: deque[_Pending] = deque()
        self.leading = False
        self.tm = transaction.TransactionManager()
        self.conn = db.open(self.tm)
        self.on_commit = None             # (seconds) -> None, told after each commit

    def close(self) -> None:
        with self.lock:
            self.tm.abort()
            self.conn.close()

    def wake(self) -> None:
        """Wake every long poll waiting on this writer's commits now."""
        with self.committed:
            self.committed.notify_all()

    def read(self, reader):
        """``reader(app)`` on this writer's connection between two batches: its cache is
        warm with everything this process wrote, so what a large read touches need not
        be loaded from the storage again. Nothing is committed (the reader must not
        modify anything: what it did is aborted); writes wait while it runs."""
        with self.lock:
            self.tm.begin()
            try:
                return reader(app_root(self.conn))
            finally:
                self.tm.abort()

    def submit(self, use_case, note: str | None, attempts: int):
        """The use case's result, once committed (see ``submit_with_tid``)."""
        return self.submit_with_tid(use_case, note, attempts)[0]

    def submit_with_tid(self, use_case, note: str | None, attempts: int):
        """(result, tid): the use case's result and the storage's last transaction right
        after its commit (its own, or a later one of another process)."""
        item = _Pending(use_case, note)
        with self.cond:
            self.queue.append(item)
        while True:
            with self.cond:
                while self.leading and not item.done:
                    self.cond.wait()
                if item.done:
                    break
                self.leading = True
                batch = [self.queue.popleft()
                         for _ in range(min(len(self.queue), self.MAX_BATCH))]
            try:
                with self.lock:
                    self._run(batch, attempts)
            finally:
                with self.cond:
                    self.leading = False
                    self.cond.notify_all()
        if item.error is not None:
            raise item.error
        return item.result, item.tid

    def _run(self, batch: list, attempts: int) -> None:
        tm = self.tm
        pending = list(batch)
        conflicts = 0
        try:
            while pending:
                tm.begin()
                failed = None
                app = app_root(self.conn)
                for i, item in enumerate(pending):
                    try:
                        item.result = item.use_case(app)
                    except BaseException as exc:  # noqa: BLE001 - handed to that caller
                        item.error = exc
                        failed = i
                        break
                if failed is not None:
                    tm.abort()
                    pending.pop(failed).done = True
                    continue
                try:
                    notes = [item.note for item in pending if item.note]
                    if notes:
                        tm.get().note("; ".join(notes))
                    began = time.monotonic()
                    tm.commit()
                    if self.on_commit is not None:
                        self.on_commit(time.monotonic() - began)
                    tid = self.conn.db().lastTransaction()
                    for item in pending:
                        item.tid = tid
                    self.wake()
                except TransientError:
                    tm.abort()
                    if len(pending) > 1:
                        # another process wrote what this batch read: run each use case
                        # on its own, so one hot object does not hold the others back
                        for item in pending:
                            self._run([item], attempts)
                        break
                    conflicts += 1
                    if conflicts >= attempts:
                        err = Conflict(f"the database stayed busy: {attempts} attempts conflicted "
                                       "with concurrent writers; try again")
                        for item in pending:
                            item.error, item.result = err, None
                        break
                    time.sleep(random.uniform(0, min(0.2, 0.001 * 2 ** conflicts)))
                    continue
                except BaseException as exc:  # noqa: BLE001 - every caller learns it
                    tm.abort()
                    for item in pending:
                        item.error, item.result = exc, None
                    break
                break
        finally:
            for item in batch:
                item.done = True


def write(rt, use_case, note: str | None = None, attempts: int = MAX_ATTEMPTS,
          wait_replicas: bool = True, promoting: bool = False):
    """Run ``use_case(app)`` atomically and commit it; retry on transient conflicts.

    Replication: the runtime first says whether this master may write at all
    (``rt.check_writable``: a replica or a fenced primary raises ReadOnly or Fenced
    before anything runs; ``promoting`` is the one write a replica makes, its promotion),
    and once committed, ``rt.committed(tid)`` holds the answer until the sync replicas
    have the transaction (unless ``wait_replicas`` is False).

    The use case runs on the writer of ``rt`` (a services.runtime.Runtime), possibly
    committed together with other concurrent use cases (group commit; see Writer).
    ``use_case`` may run more than once and must only touch the database. Typed errors
    raised by the use case undo what it did and propagate. Raises Conflict when every
    attempt conflicted."""
    check = getattr(rt, "check_writable", None)
    if check is not None:
        check(promoting)
    result, tid = rt.writer.submit_with_tid(use_case, note or ACTION.get(), attempts)
    committed = getattr(rt, "committed", None)
    if wait_replicas and committed is not None and tid is not None:
        committed(tid)
    return result


def read(conn, query):
    """Run ``query(app)`` on a fresh snapshot, then abort (nothing is ever written).
    ``conn`` is a connection (the request's), or a DB or a runtime (its DB): a pooled
    connection is then used for this read."""
    if not isinstance(conn, Connection):
        own = (conn if isinstance(conn, DB) else conn.db).open()
        try:
            return read(own, query)
        finally:
            own.close()
    tm = conn.transaction_manager
    tm.begin()
    try:
        return query(app_root(conn))
    finally:
        tm.abort()
