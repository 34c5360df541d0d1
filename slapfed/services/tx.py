"""Transactions for use cases: one write transaction each, retried on conflict.

Depends on core.errors, model and transaction/ZODB. Writes in one process are
serialised (FileStorage is single-process anyway) and run on ONE dedicated writer
connection per database, whose object cache therefore stays warm: every commit
comes from it, so nothing it holds is invalidated by the other writers of this
process. Conflicts with other processes (ZEO) are retried with a short back-off.
"""
from __future__ import annotations

import random
import threading
import time
import weakref

import transaction
from transaction.interfaces import TransientError

from ..core.errors import Conflict, StorageError
from ..model import ROOT_KEY

MAX_ATTEMPTS = 10
# Guards the registry of writers; each writer has its own lock serialising its writes.
WRITE_LOCK = threading.Lock()
_writers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def clock() -> float:
    return time.time()


def app_root(conn):
    """The App root of a connection; StorageError when the storage was never evolved."""
    app = conn.root().get(ROOT_KEY)
    if app is None or app.computers is None:
        raise StorageError("the storage has no slapfed root yet; run `slapfed master migrate`")
    return app


class Writer:
    """The one connection of a database that write use cases of this process run on."""

    def __init__(self, db):
        self.lock = threading.Lock()
        self.tm = transaction.TransactionManager()
        self.conn = db.open(self.tm)

    def close(self) -> None:
        with self.lock:
            self.tm.abort()
            self.conn.close()


def writer_of(db) -> Writer:
    with WRITE_LOCK:
        writer = _writers.get(db)
        if writer is None or writer.conn.opened is None:
            writer = _writers[db] = Writer(db)
        return writer


def close_writer(db) -> None:
    """Close the writer connection of ``db`` (before closing the DB)."""
    with WRITE_LOCK:
        writer = _writers.pop(db, None)
    if writer is not None:
        writer.close()


def write(conn, use_case, note: str | None = None, attempts: int = MAX_ATTEMPTS):
    """Run ``use_case(app)`` in one transaction and commit; retry on transient conflicts.

    ``conn`` only names the database: the use case runs on its writer connection.
    Typed errors raised by the use case abort the transaction (nothing is written)
    and propagate. Raises Conflict when every attempt conflicted."""
    writer = writer_of(conn.db())
    tm = writer.tm
    with writer.lock:
        for attempt in range(1, attempts + 1):
            tm.begin()
            try:
                result = use_case(app_root(writer.conn))
                if note:
                    tm.get().note(note)
                tm.commit()
                return result
            except TransientError:
                tm.abort()
                if attempt == attempts:
                    raise Conflict(f"the database stayed busy: {attempts} attempts conflicted "
                                   "with concurrent writers; try again") from None
                time.sleep(random.uniform(0, 0.002 * attempt))
            except BaseException:
                tm.abort()
                raise
    raise AssertionError("unreachable")


def read(conn, query):
    """Run ``query(app)`` on a fresh snapshot, then abort (nothing is ever written)."""
    tm = conn.transaction_manager
    tm.begin()
    try:
        return query(app_root(conn))
    finally:
        tm.abort()
