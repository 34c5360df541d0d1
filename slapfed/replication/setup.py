"""Setting a replica up before it serves: its invitation, its identity at the primary
(the one-time token traded for a ``replica/NAME`` certificate), the CA material it
serves with (replication.cafiles: the same certificates work at both), and a first
catch-up straight onto its storage (before any DB could commit a root of its own).

Depends on core, enrol, client, store.shipping and the replication modules (cafiles,
local, runtime).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..core import replication as rep
from ..core.errors import InvalidInput, MasterUnreachable, Timeout
from ..core.replication import LocalRole
from ..enrol import enrol
from ..store import shipping
from .cafiles import install_ca_material
from .local import REPLICA_DIR, read_role, write_role
from .runtime import replica_client

log = logging.getLogger("slapfed.replication")

INVITATION_KEYS = ("url", "token", "ca_certificate", "for")
def read_invitation(path) -> dict:
    """The invitation `slapfed master replica invite` wrote; InvalidInput names what is
    wrong with it."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise InvalidInput(f"no invitation at {path}",
                           [{"field": "replica_of", "problem": "no such file"}]) from None
    except ValueError as exc:
        raise InvalidInput(f"the invitation {path} is not JSON ({exc})",
                           [{"field": "replica_of", "problem": "malformed JSON"}]) from None
    missing = [k for k in INVITATION_KEYS if not isinstance(doc, dict)
               or not isinstance(doc.get(k), str) or not doc.get(k)]
    if missing:
        raise InvalidInput(f"the invitation {path} lacks {', '.join(missing)} (write it with "
                           "slapfed master replica invite NAME --out FILE)",
                           [{"field": f"replica_of.{k}", "problem": "is required"}
                            for k in missing])
    return doc


def prepare_replica(data_dir: str, invitation_path: str, sync: bool, fs_path: str,
                    primary_wait: float = 0.0) -> LocalRole:
    """Everything a replica needs before it serves; returns its role. A first start
    needs the primary (the token, the CA); a restart catches up if the primary answers
    and serves what it has otherwise. A data directory holding a primary's history (or
    another primary's replica) must have rejoined first (replication.rejoin). Raises
    InvalidInput (the invitation) and the primary's typed errors on a first start."""
    inv = read_invitation(invitation_path)
    ident = Path(data_dir) / REPLICA_DIR
    first = not (ident / "identity.crt").exists()
    if first:
        _enrol_waiting(inv, ident, primary_wait)
        log.info("replica %s enrolled at %s", inv["for"], inv["url"])
    role = LocalRole(rep.REPLICA, name=inv["for"], primary_url=inv["url"].rstrip("/"),
                     sync=sync)
    write_role(data_dir, role)
    client = replica_client(data_dir, role.primary_url, timeout=30.0)
    try:
        n = install_ca_material(Path(data_dir) / "ca", client.replication_ca()["files"])
        log.info("replica %s: %d CA file(s) copied from %s", role.name, n, role.primary_url)
        applied = catch_up(fs_path, client)
        log.info("replica %s caught up with %s (%d transaction(s))", role.name,
                 role.primary_url, applied)
    except (MasterUnreachable, Timeout) as exc:
        if first:
            raise
        log.warning("replica %s: its primary %s does not answer (%s): serving what it "
                    "has, following once it is back", role.name, role.primary_url, exc)
    return role


def _enrol_waiting(inv: dict, ident: Path, wait: float) -> None:
    """Enrol at the invitation's primary, trying again for up to ``wait`` seconds while
    it does not answer (a replica deployed beside its primary may start first)."""
    import time
    deadline = time.monotonic() + max(0.0, wait)
    delay = 0.2
    while True:
        try:
            enrol(inv["url"], inv["ca_certificate"], inv["token"], ident)
            return
        except (MasterUnreachable, Timeout) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("replica %s: its primary %s does not answer yet (%s): again in "
                        "%.1fs", inv["for"], inv["url"], exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def catch_up(fs_path: str, client, wait: float = 0.0) -> int:
    """Apply the primary's transactions straight onto the FileStorage at ``fs_path`` until
    none is left; how many were applied."""
    from ZODB.FileStorage import FileStorage
    os.makedirs(os.path.dirname(fs_path), exist_ok=True)
    storage = FileStorage(fs_path)
    count = 0
    try:
        while True:
            after = shipping.tid_hex(storage.lastTransaction())
            answer = client.replication_transactions(after, wait)
            if not answer["transactions"]:
                return count
            shipping.apply_to_storage(storage, answer["transactions"])
            count += len(answer["transactions"])
    finally:
        storage.close()


def promote_in_place(data_dir: str, storage_uri: str | None) -> int | None:
    """`master serve --promote`, before the master serves: a data directory holding a
    replica (its master stopped) becomes the primary of a new epoch, recorded in its
    database under the replica's name (which leaves its own replicas), as `master
    promote` does to a running replica. Returns the new epoch; None when the directory
    holds a primary (fenced or not: a fenced one stays fenced) and nothing changed.
    A crash between the two records only promotes it again at the next start (epochs
    only grow). Raises StorageError."""
    import time
    from types import SimpleNamespace

    from ..services import replication as svc
    from ..services.tx import Writer
    from ..store import open_db
    role = read_role(data_dir)
    if role.role != rep.REPLICA or role.fenced_epoch is not None:
        return None
    db = open_db(storage_uri, data_dir, evolve_schema=False)
    try:
        writer = Writer(db)
        try:
            view = svc.promote(SimpleNamespace(writer=writer), role.name or "replica",
                               time.time())
        finally:
            writer.close()
    finally:
        db.close()
    write_role(data_dir, LocalRole(rep.PRIMARY, name=role.name))
    log.warning("replica %s promoted in place: the primary at epoch %d (it followed %s)",
                role.name, view.epoch, role.primary_url,
                extra={"epoch": view.epoch, "replica": role.name})
    return view.epoch
