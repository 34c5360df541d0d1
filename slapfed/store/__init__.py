"""Opening the master's ZODB database from a storage URI, evolved to the latest generation.

Depends on model (through generations), ZODB and ZEO. URIs: ``file`` (default:
<data dir>/master.fs), ``file:///abs/path.fs``, ``zeo://host:port``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import ZODB
from ZODB.FileStorage import FileStorage

from ..core.errors import InvalidInput, StorageError
from .generations import LATEST_GENERATION, current_generation, evolve

FILESTORAGE_NAME = "master.fs"
# Objects kept per connection: a 5000-partition desired state touches ~10k objects.
DEFAULT_CACHE_SIZE = 200_000
DEFAULT_POOL_SIZE = 32


@dataclass(frozen=True)
class StorageSpec:
    kind: str                  # "file" or "zeo"
    path: str | None = None    # FileStorage path
    address: tuple | None = None  # ZEO (host, port)

    def describe(self) -> str:
        if self.kind == "file":
            return f"file://{self.path}"
        return f"zeo://{self.address[0]}:{self.address[1]}"


def parse_storage_uri(uri: str | None, data_dir: str | None) -> StorageSpec:
    """Turn a storage URI into a StorageSpec; InvalidInput explains a bad one."""
    if uri in (None, "", "file"):
        if not data_dir:
            raise InvalidInput("the default FileStorage needs a data directory (--data)",
                               [{"field": "data", "problem": "is required"}])
        return StorageSpec("file", path=os.path.join(os.path.abspath(data_dir),
                                                     FILESTORAGE_NAME))
    if uri.startswith("file://"):
        path = uri[len("file://"):]
        if not path.startswith("/"):
            raise InvalidInput(f"storage URI {uri!r} must name an absolute path "
                               "(file:///abs/path.fs)",
                               [{"field": "storage", "problem": "file path is not absolute"}])
        return StorageSpec("file", path=path)
    if uri.startswith("zeo://"):
        rest = uri[len("zeo://"):].rstrip("/")
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidInput(f"storage URI {uri!r} must look like zeo://host:port",
                               [{"field": "storage", "problem": "bad zeo address"}])
        return StorageSpec("zeo", address=(host.strip("[]"), int(port)))
    raise InvalidInput(f"unknown storage URI {uri!r} (use file, file:///abs/path.fs "
                       "or zeo://host:port)",
                       [{"field": "storage", "problem": "unknown scheme"}])


def open_storage(spec: StorageSpec, wait_timeout: float = 30.0):
    """Open the raw storage; StorageError says what was tried."""
    import zc.lockfile
    from ZEO.Exceptions import ClientDisconnected

    try:
        if spec.kind == "file":
            os.makedirs(os.path.dirname(spec.path), exist_ok=True)
            return FileStorage(spec.path)
        from ZEO.ClientStorage import ClientStorage
        # server_sync: a transaction starts from the server's latest state, so a write
        # answered by one worker is visible to the next request served by another.
        return ClientStorage(spec.address, wait_timeout=wait_timeout, server_sync=True)
    except zc.lockfile.LockError:
        raise StorageError(f"cannot open storage {spec.describe()}: another process holds "
                           "it (a FileStorage admits one process; use ZEO for several)") from None
    except ClientDisconnected as exc:
        raise StorageError(f"cannot open storage {spec.describe()}: no ZEO server answered "
                           f"within {wait_timeout:g}s ({exc})") from None
    except (OSError, ZODB.POSException.POSError) as exc:
        raise StorageError(f"cannot open storage {spec.describe()}: {exc}") from None


def open_db(uri: str | None = None, data_dir: str | None = None, *, evolve_schema=True,
            pool_size: int = DEFAULT_POOL_SIZE, cache_size: int = DEFAULT_CACHE_SIZE):
    """Open a ZODB DB for ``uri`` and apply missing evolve steps (one transaction).

    Raises InvalidInput (bad URI) or StorageError (cannot open, or too new)."""
    spec = parse_storage_uri(uri, data_dir)
    storage = open_storage(spec)
    db = ZODB.DB(storage, pool_size=pool_size, cache_size=cache_size)
    try:
        if evolve_schema:
            evolve(db)
    except BaseException:
        db.close()
        raise
    return db


def generation_of(db) -> int:
    conn = db.open()
    try:
        return current_generation(conn.root())
    finally:
        conn.transaction_manager.abort()
        conn.close()


__all__ = ["open_db", "parse_storage_uri", "StorageSpec", "evolve", "generation_of",
           "LATEST_GENERATION", "FILESTORAGE_NAME"]
