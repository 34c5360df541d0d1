"""The role a data directory plays, in ``<data>/replication.json``: written when a
replica is set up, promoted, or a primary is fenced; read by every process of the master
(a stat per request, parsed again only when the file changed).

Depends on core.replication and the standard library.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ..core.replication import LocalRole

ROLE_FILE = "replication.json"
REPLICA_DIR = "replica"         # <data>/replica: the replica's identity at its primary


def role_path(data_dir) -> Path:
    return Path(data_dir) / ROLE_FILE


def read_role(data_dir) -> LocalRole:
    """The recorded role (a primary when nothing is recorded, or without a data dir)."""
    if not data_dir:
        return LocalRole()
    try:
        with open(role_path(data_dir), encoding="utf-8") as f:
            return LocalRole.from_json(json.load(f))
    except (FileNotFoundError, ValueError):
        return LocalRole()


def write_role(data_dir, role: LocalRole) -> None:
    """Record ``role`` atomically and durably (a fence must survive a crash)."""
    path = role_path(data_dir)
    tmp = path.with_name(f".{ROLE_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(role.to_json(), f)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class RoleFile:
    """``read_role`` for a process answering many requests: parsed again only when the
    file's modification time or size changed."""

    def __init__(self, data_dir):
        self.data_dir = data_dir
        self._path = str(role_path(data_dir)) if data_dir else None
        self._stamp = None
        self._role = LocalRole()
        self._lock = threading.Lock()

    def get(self) -> LocalRole:
        if self._path is None:
            return self._role
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:          # the common case: unchanged, no lock
            return self._role
        with self._lock:
            if stamp != self._stamp:
                self._role = read_role(self.data_dir) if stamp else LocalRole()
                self._stamp = stamp
            return self._role

    def set(self, role: LocalRole) -> None:
        write_role(self.data_dir, role)
        with self._lock:
            self._stamp = None
