"""Pending pairing tokens: files in the master's data directory, never database rows.

Depends on the standard library only. A one-time token of a peer's (a child master's
registration, an invitation a topology file or ``peer add --invitation`` gives) lives
here between the moment this master learns it and the moment the forwarder redeems it:
one 0600 file per peer under ``DATA/peers/pending/``, removed once redeemed or replaced.
The database keeps only its SHA-256 digest, to tell which token a pending pairing is
waiting for; so neither the FileStorage, its backups nor its replicas hold a token that
could still be redeemed.
"""
from __future__ import annotations

import hashlib
import os

PENDING_DIR = ("peers", "pending")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _path(data_dir: str, name: str) -> str:
    # the name is checked already (a peer name); hashed anyway: a file name is not data
    key = hashlib.sha256(name.encode()).hexdigest()[:32]
    return os.path.join(data_dir, *PENDING_DIR, f"{key}.token")


def stash(data_dir: str | None, name: str, token: str) -> str:
    """Keep ``token`` for peer ``name`` (0600, written atomically); returns its digest.
    Without a data directory nothing can pair (the forwarder needs one): only the
    digest is returned."""
    if data_dir:
        path = _path(data_dir, name)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, token.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    return digest(token)


def take(data_dir: str | None, name: str, wanted: str) -> str | None:
    """The token kept for ``name`` if it is the one whose digest is ``wanted``."""
    if not data_dir:
        return None
    try:
        fd = os.open(_path(data_dir, name), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        token = os.read(fd, 4096).decode(errors="replace")
    finally:
        os.close(fd)
    return token if digest(token) == wanted else None


def drop(data_dir: str | None, name: str) -> None:
    if data_dir:
        try:
            os.unlink(_path(data_dir, name))
        except FileNotFoundError:
            pass
