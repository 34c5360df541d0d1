"""A data directory rejoining as a replica of a new primary: a fenced (or replaced)
former primary, or a replica whose primary was replaced. Its history must be a prefix
of the new primary's; what it committed that the new primary never got (writes it
acknowledged in async mode, after its replica last read) is moved aside — the whole old
storage and a readable list of those transactions in ``DATA/diverged/<time>/`` — and
never merged: an operator decides what to do with them.

Depends on core (errors, replication), ca.identity, enrol, store.shipping and the
replication modules (local, runtime, setup). The search for the common prefix is
core.replication.common_prefix; here are the files and the calls to the primary.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core import replication as rep
from ..core.errors import Conflict, MasterUnreachable, ReplicaDiverged, StorageError
from ..core.replication import LocalRole
from .local import REPLICA_DIR, read_role, write_role

log = logging.getLogger("slapfed.replication")

DIVERGED_DIR = "diverged"       # DATA/diverged/<time>/: what a rejoin set aside
ASIDE_LIST = "transactions.json"
ASIDE_STORAGE = "master.fs"     # the whole storage as it was before the rejoin


@dataclass(frozen=True)
class RejoinResult:
    data_dir: str
    primary: str
    name: str
    role_before: str                  # primary | fenced | replica
    epoch_before: int
    primary_epoch: int | None
    transactions: int                 # in the data directory before
    common_tid: str | None            # the last one the new primary holds too
    set_aside: tuple = ()             # TIDs (hex) moved aside
    aside_dir: str | None = None
    dry_run: bool = False
    notes: tuple = field(default=())  # each set-aside transaction's note, oldest first

    def to_json(self) -> dict:
        return {"data_dir": self.data_dir, "primary": self.primary, "name": self.name,
                "role_before": self.role_before, "epoch_before": self.epoch_before,
                "primary_epoch": self.primary_epoch, "transactions": self.transactions,
                "common_tid": self.common_tid, "set_aside": list(self.set_aside),
                "aside_dir": self.aside_dir, "dry_run": self.dry_run,
                "notes": list(self.notes)}

    def text(self) -> str:
        head = (f"{self.data_dir} ({self.role_before}, epoch {self.epoch_before}) "
                f"{'would rejoin' if self.dry_run else 'rejoined'} as replica {self.name} "
                f"of {self.primary} (epoch {self.primary_epoch}): "
                f"{self.transactions - len(self.set_aside)} of {self.transactions} "
                f"transaction(s) in common, up to {self.common_tid or '-'}")
        if not self.set_aside:
            return head + "; nothing set aside"
        where = ("would be moved to DATA/diverged/" if self.dry_run
                 else f"moved aside to {self.aside_dir}")
        lines = [head, f"{len(self.set_aside)} transaction(s) the new primary never got "
                       f"{where} (never merged):"]
        lines += [f"  {tid} {note}" for tid, note in zip(self.set_aside, self.notes)]
        return "\n".join(lines)


def _local_history(fs_path: str) -> list:
    """[(tid, position of its header)] of the FileStorage file, oldest first."""
    from ZODB.FileStorage import FileIterator
    if not os.path.exists(fs_path):
        return []
    it = FileIterator(fs_path)
    try:
        return [(txn.tid, txn._tpos) for txn in it]
    finally:
        it.close()


def _local_transactions(fs_path: str, start: bytes) -> list:
    """The wire form (store.shipping) of the file's transactions from ``start`` on."""
    from ZODB.FileStorage import FileIterator

    from ..store.shipping import encode_transaction
    it = FileIterator(fs_path, start=start)
    try:
        return [encode_transaction(txn)[0] for txn in it]
    finally:
        it.close()


def _epoch_of(fs_path: str) -> int:
    """The epoch the storage records; StorageError when a running master holds it."""
    from ZODB import DB

    from ..services.replication import replication_view
    from ..store import StorageSpec, open_storage
    if not os.path.exists(fs_path):
        return 1
    try:
        storage = open_storage(StorageSpec(kind="file", path=fs_path))
    except StorageError as exc:
        raise StorageError(f"{exc.message}: stop that master before it rejoins") from None
    db = DB(storage)
    try:
        return replication_view(db).epoch
    except StorageError:
        return 1
    finally:
        db.close()


def _identity(data_dir: str, inv: dict, dry_run: bool) -> None:
    """Enrol as the invitation's replica, unless DATA/replica already holds that very
    identity. Another one (this directory was a replica under another name, before its
    own promotion) is moved aside first."""
    from ..ca import identity as ids
    from ..ca.authority import load_certificate
    from ..ca.errors import BadCertificate, NoIdentity
    from ..enrol import enrol
    ident = Path(data_dir) / REPLICA_DIR
    wanted = ids.replica(inv["for"]).principal
    cert = ident / "identity.crt"
    if cert.exists():
        try:
            if ids.identity_of(load_certificate(cert.read_bytes())).principal == wanted:
                return
        except (BadCertificate, NoIdentity, ValueError):
            pass
        ident.rename(ident.with_name(f"{REPLICA_DIR}.previous-{int(time.time())}"))
    elif ident.exists():
        shutil.rmtree(ident)
    enrol(inv["url"], inv["ca_certificate"], inv["token"], ident)
    log.info("rejoin: enrolled as %s at %s%s", wanted, inv["url"],
             " (dry run: the invitation is spent, no data changed)" if dry_run else "")


def _health(inv: dict) -> dict | None:
    from .runtime import peek_health
    fd, ca = tempfile.mkstemp(prefix=".rejoin-ca.", suffix=".crt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(inv["ca_certificate"])
        return peek_health(inv["url"].rstrip("/"), ca, timeout=5.0)
    finally:
        os.unlink(ca)


def _note(body: dict) -> str:
    try:
        return base64.b64decode(body.get("description") or "").decode("utf-8", "replace")
    except ValueError:
        return ""


def _pickle_class(data_b64) -> str | None:
    from ZODB.utils import get_pickle_metadata
    if data_b64 is None:
        return None
    try:
        module, name = get_pickle_metadata(base64.b64decode(data_b64))
    except Exception:  # noqa: BLE001 - a label for a reader, never a decision
        return None
    return f"{module}.{name}"


def _set_aside(data_dir: str, fs_path: str, cut_at: int, divergent: list,
               facts: dict) -> str:
    """Write DATA/diverged/<time>/ (the list, then the whole old storage) and leave
    ``fs_path`` holding the file's first ``cut_at`` bytes: the common history. Each
    step is durable before the next; the old file is moved, never rewritten."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = Path(data_dir) / DIVERGED_DIR / stamp
    n = 1
    while aside.exists():
        n += 1
        aside = Path(data_dir) / DIVERGED_DIR / f"{stamp}-{n}"
    aside.mkdir(mode=0o700, parents=True)
    doc = {**facts, "how": (
        "these transactions were committed by this master and never reached the new "
        "primary; they were not merged. master.fs here is the whole storage as it was "
        "(open it read-only with ZODB); each record below is as stored (base64 pickle)."),
        "transactions": [{
            "tid": body["tid"], "note": _note(body),
            "time": _iso(body["tid"]),
            "records": [{"oid": r["oid"], "class": _pickle_class(r["data"]),
                         "data": r["data"]} for r in body["records"]]}
            for body in divergent]}
    listing = aside / ASIDE_LIST
    fd = os.open(listing, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    old = aside / ASIDE_STORAGE
    os.rename(fs_path, old)
    for suffix in (".index", ".tmp"):
        if os.path.exists(fs_path + suffix):
            os.rename(fs_path + suffix, str(old) + suffix)
    tmp = fs_path + ".rejoin"
    with open(old, "rb") as src, open(tmp, "wb") as dst:
        left = cut_at
        while left > 0:
            chunk = src.read(min(left, 1 << 20))
            if not chunk:
                raise StorageError(f"{old} ended before byte {cut_at}")
            dst.write(chunk)
            left -= len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, fs_path)
    dfd = os.open(os.path.dirname(fs_path), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return str(aside)


def _iso(tid_hex: str) -> str | None:
    from ..store.shipping import tid_time
    t = tid_time(bytes.fromhex(tid_hex))
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def rejoin(data_dir: str, invitation_path: str, fs_path: str, sync: bool = False,
           dry_run: bool = False) -> RejoinResult:
    """Make ``data_dir`` a replica of the invitation's primary, keeping the history the
    two share and moving aside what only this directory holds. With ``dry_run`` only
    the identity is made (the invitation's token is spent); no data changes.

    Raises InvalidInput (the invitation), StorageError (a running master holds the
    storage), Conflict (the invitation's master is not the primary of a larger epoch),
    ReplicaDiverged (no history in common, or a shared TID with other contents) and the
    primary's typed errors (MasterUnreachable...)."""
    from ..store.shipping import ZERO_TID
    from .runtime import replica_client
    from .setup import read_invitation
    inv = read_invitation(invitation_path)
    primary = inv["url"].rstrip("/")
    local = read_role(data_dir)
    epoch = _epoch_of(fs_path)
    health = _health(inv)
    if health is None:
        raise MasterUnreachable(f"the new primary {primary} does not answer: a data "
                                "directory rejoins only a primary it can compare with")
    refusal = rep.rejoin_refusal(local, epoch, health)
    if refusal:
        raise Conflict(f"{data_dir} cannot rejoin {primary}: {refusal}",
                       [{"field": "replica_of", "problem": refusal}])
    _identity(data_dir, inv, dry_run)
    client = replica_client(data_dir, primary, timeout=30.0)
    history = _local_history(fs_path)
    tids = [tid for tid, _ in history]

    def held(tid: bytes) -> bool:
        try:
            client.replication_transactions(tid.hex(), 0)
            return True
        except ReplicaDiverged:
            return False
    k = rep.common_prefix(tids, held)
    if tids and k < 0:
        raise ReplicaDiverged(
            f"{data_dir} and {primary} hold no transaction in common (the primary's "
            "history was restored or packed, or it never followed this one): serve a "
            "replica from a fresh data directory instead",
            [{"field": "replica_of", "problem": "no history in common"}])
    if k >= 0:
        # the same TID must hold the same records at both (TIDs are times: check)
        after = tids[k - 1].hex() if k > 0 else ZERO_TID
        theirs = client.replication_transactions(after, 0)["transactions"][:1]
        mine = _local_transactions(fs_path, tids[k])[:1]
        if [t["records"] for t in theirs] != [t["records"] for t in mine]:
            raise ReplicaDiverged(
                f"transaction {tids[k].hex()} holds other records at {primary}: serve a "
                "replica from a fresh data directory instead",
                [{"field": "replica_of", "problem": "a shared TID with other contents"}])
    divergent = _local_transactions(fs_path, tids[k + 1]) if k + 1 < len(tids) else []
    facts = {"data_dir": data_dir, "primary": primary,
             "primary_epoch": health.get("epoch"), "epoch_before": epoch,
             "role_before": local.state,
             "common_tid": tids[k].hex() if k >= 0 else None}
    aside = None
    if not dry_run:
        if divergent:
            aside = _set_aside(data_dir, fs_path, history[k + 1][1], divergent, facts)
            log.error("rejoin: %d transaction(s) %s committed and %s never got were moved "
                      "aside to %s (not merged)", len(divergent), data_dir, primary, aside,
                      extra={"set_aside": len(divergent), "aside": aside})
        write_role(data_dir, LocalRole(rep.REPLICA, name=inv["for"], primary_url=primary,
                                       sync=sync))
        log.warning("rejoin: %s (%s at epoch %d) is now replica %s of %s", data_dir,
                    local.state, epoch, inv["for"], primary)
    try:
        primary_epoch = int(health.get("epoch"))
    except (TypeError, ValueError):
        primary_epoch = None
    return RejoinResult(data_dir=data_dir, primary=primary, name=inv["for"],
                        role_before=local.state, epoch_before=epoch,
                        primary_epoch=primary_epoch, transactions=len(tids),
                        common_tid=facts["common_tid"],
                        set_aside=tuple(b["tid"] for b in divergent), aside_dir=aside,
                        dry_run=dry_run, notes=tuple(_note(b) for b in divergent))


def needs_rejoin(data_dir: str, fs_path: str, invitation_primary: str) -> bool:
    """Whether serving ``data_dir`` as a replica of ``invitation_primary`` must first
    rejoin: its storage holds transactions and it is no replica of that primary (a
    primary's history: promoted, fenced, or replaced while it was down; or a replica of
    another primary)."""
    try:
        if os.path.getsize(fs_path) <= len(b"FS21"):
            return False
    except OSError:
        return False
    role = read_role(data_dir)
    if role.role == rep.PRIMARY:
        return True
    return (role.primary_url or "").rstrip("/") != invitation_primary.rstrip("/")
