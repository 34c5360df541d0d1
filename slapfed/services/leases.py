"""The lease table of a master: when each computer's node was last heard from.

Depends on core.leases. Renewals are kept out of the database on purpose: a node
renews at every poll, and a write per poll would grow the storage's history for
nothing. ``FileLeases`` keeps one empty file per computer under a directory (the
master's ``<data>/leases``) and touches its modification time: one ``utime`` per poll,
no history, shared by every process of the master on this machine (gunicorn workers,
ZEO clients of one host) and kept across restarts. ``MemoryLeases`` is the table of a
master without a data directory (development, tests): one process, forgotten at exit.
"""
from __future__ import annotations

import base64
import os
import threading
import time

from ..core.leases import DEFAULT_LEASE, Lease, lease_at

# How long a table read of every lease (placement's expired set) is reused.
SCAN_TTL = 1.0


class Leases:
    """When each computer's lease was last renewed; ``lease`` tells its state."""

    def __init__(self, interval: float = DEFAULT_LEASE, clock=time.time):
        self.interval = float(interval)
        self.clock = clock
        self._scan_lock = threading.Lock()
        self._scan: tuple[float, dict] | None = None

    # -- what a store implements ----------------------------------------------------
    def renew(self, computer_id: str, now: float | None = None) -> None:
        """Record a call of the computer's node (at ``now``, default the clock's)."""
        now = self.clock() if now is None else now
        self._store(computer_id, now)
        with self._scan_lock:         # this process's scan sees its own renewals at once
            if self._scan is not None:
                self._scan[1][computer_id] = now

    def _store(self, computer_id: str, now: float) -> None:
        raise NotImplementedError

    def renewed_at(self, computer_id: str) -> float | None:
        raise NotImplementedError

    def _read_all(self) -> dict:
        raise NotImplementedError

    # -- reading --------------------------------------------------------------------
    def lease(self, computer_id: str, now: float | None = None) -> Lease:
        now = self.clock() if now is None else now
        return lease_at(now, self.renewed_at(computer_id), self.interval)

    def expired_ids(self, now: float | None = None) -> frozenset:
        """The computers whose lease has run out (the whole table, read at most every
        SCAN_TTL seconds: another process's renewal may be seen that much later)."""
        now = self.clock() if now is None else now
        with self._scan_lock:
            if self._scan is None or abs(now - self._scan[0]) >= SCAN_TTL:
                self._scan = (now, self._read_all())
            table = self._scan[1]
        return frozenset(cid for cid, at in table.items()
                         if lease_at(now, at, self.interval).expired)


class MemoryLeases(Leases):
    """The lease table of one process."""

    def __init__(self, interval: float = DEFAULT_LEASE, clock=time.time):
        super().__init__(interval, clock)
        self._table: dict[str, float] = {}

    def _store(self, computer_id: str, now: float) -> None:
        self._table[computer_id] = now

    def renewed_at(self, computer_id: str) -> float | None:
        return self._table.get(computer_id)

    def _read_all(self) -> dict:
        return dict(self._table)


def file_name(computer_id: str) -> str:
    """A computer id as a file name: never a path, whatever the id holds (URL-safe
    base64 of its UTF-8 bytes, no padding)."""
    return base64.urlsafe_b64encode(computer_id.encode("utf-8")).decode("ascii").rstrip("=")


def computer_of(name: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


class FileLeases(Leases):
    """The lease table in a directory: one empty file per computer, renewed by touching
    its modification time."""

    def __init__(self, directory: str, interval: float = DEFAULT_LEASE, clock=time.time):
        super().__init__(interval, clock)
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def _path(self, computer_id: str) -> str:
        return os.path.join(self.directory, file_name(computer_id))

    def _store(self, computer_id: str, now: float) -> None:
        path = self._path(computer_id)
        try:
            os.utime(path, (now, now))
        except FileNotFoundError:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
            os.utime(path, (now, now))

    def renewed_at(self, computer_id: str) -> float | None:
        try:
            return os.stat(self._path(computer_id)).st_mtime
        except (FileNotFoundError, OSError):
            return None

    def _read_all(self) -> dict:
        table = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return table
        for entry in entries:
            cid = computer_of(entry.name)
            if cid is None:
                continue
            try:
                table[cid] = entry.stat().st_mtime
            except FileNotFoundError:
                continue
        return table


def open_leases(data_dir: str | None, interval: float = DEFAULT_LEASE) -> Leases:
    """The lease table of a master: files under ``<data_dir>/leases``, or in memory
    without a data directory."""
    if data_dir:
        return FileLeases(os.path.join(data_dir, "leases"), interval)
    return MemoryLeases(interval)
