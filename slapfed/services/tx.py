"""Transactions for use cases: one write transaction each, retried on conflict.

Depends on core.errors, model and transaction/ZODB. Writes in one process are
serialised by a process-wide lock (FileStorage is single-process anyway); conflicts
with other processes (ZEO) are retried with a short randomised back-off.
"""
from __future__ import annotations

import random
import threading
import time

from transaction.interfaces import TransientError

from ..core.errors import Conflict, StorageError
from ..model import ROOT_KEY

WRITE_LOCK = threading.Lock()
MAX_ATTEMPTS = 10


def clock() -> float:
    return time.time()


def app_root(conn):
    """The App root of a connection; StorageError when the storage was never evolved."""
    app = conn.root().get(ROOT_KEY)
    if app is None or app.computers is None:
        raise StorageError("the storage has no slapfed root yet; run `slapfed master migrate`")
    return app


def write(conn, use_case, note: str | None = None, attempts: int = MAX_ATTEMPTS):
    """Run ``use_case(app)`` in one transaction and commit; retry on transient conflicts.

    Typed errors raised by the use case abort the transaction (nothing is written)
    and propagate. Raises Conflict when every attempt conflicted."""
    tm = conn.transaction_manager
    with WRITE_LOCK:
        for attempt in range(1, attempts + 1):
            tm.begin()
            try:
                result = use_case(app_root(conn))
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
