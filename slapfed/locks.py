"""Advisory file locks that elect one process among those sharing a data directory.

Depends on the standard library only, so any layer may use it."""
from __future__ import annotations

import fcntl
import os


def try_exclusive_lock(path, mode: int = 0o600) -> int | None:
    """Take an exclusive flock on ``path`` (created with ``mode``) without waiting: the
    open file descriptor, held for as long as the caller keeps it open, or None when
    another process holds the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
