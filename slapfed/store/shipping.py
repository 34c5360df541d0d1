"""Shipping committed transactions from one storage to another, byte for byte: reading a
primary's transactions after a TID (``storage.iterator``) and applying them on a replica
with the storage's restore interface (``tpc_begin`` with the primary's TID, ``restore``
per record, ``tpc_vote``, ``tpc_finish``), so that both storages hold the same TIDs.

Depends on ZODB and the standard library. The records are the primary's pickles as
stored; a replica never unpickles them here (ZODB does when it loads an object), and it
only takes them from its primary over mutual TLS (master.replication).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

from ZODB.Connection import TransactionMetaData
from ZODB.POSException import POSError
from ZODB.utils import z64

from ..core.errors import InvalidInput, ReplicaDiverged, StorageError

ZERO_TID = z64.hex()
DEFAULT_MAX_TRANSACTIONS = 500
DEFAULT_MAX_BYTES = 4 * 1024 * 1024


def tid_hex(tid: bytes | None) -> str:
    return (tid or z64).hex()


def parse_tid(value, field: str = "after") -> bytes:
    """A TID from its 16 hex digits; InvalidInput naming ``field`` otherwise."""
    if not isinstance(value, str) or len(value) != 16:
        raise InvalidInput(f"{field} must be a transaction id of 16 hex digits",
                           [{"field": field, "problem": "must be 16 hex digits"}])
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidInput(f"{field} must be a transaction id of 16 hex digits",
                           [{"field": field, "problem": "must be 16 hex digits"}]) from None


def tid_time(tid: bytes | None) -> float | None:
    """The unix time a TID stands for (TIDs are timestamps); None for no transaction."""
    if not tid or tid == z64:
        return None
    from ZODB.TimeStamp import TimeStamp
    return TimeStamp(tid).timeTime()


@dataclass(frozen=True)
class Batch:
    transactions: list          # wire dicts (encode_transaction), oldest first
    last_tid: bytes             # the storage's last committed transaction when read
    more: bool                  # more transactions follow the batch
    size: int                   # bytes of record data in the batch
    behind: int = 0             # transactions after the batch (counted up to BEHIND_CAP)
    behind_bytes: int = 0       # their bytes of record data


BEHIND_CAP = 10_000


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def encode_transaction(txn) -> tuple[dict, int]:
    """A transaction of ``storage.iterator()`` as its wire dict, and its data size."""
    records, size = [], 0
    for rec in txn:
        data = rec.data
        size += len(data or b"")
        records.append({"oid": rec.oid.hex(), "data": _b64(data),
                        "data_txn": rec.data_txn.hex() if rec.data_txn else None})
    ext = getattr(txn, "extension_bytes", b"") or b""
    return ({"tid": txn.tid.hex(), "status": txn.status,
             "user": _b64(txn.user or b""), "description": _b64(txn.description or b""),
             "extension": _b64(ext), "records": records}, size)


def read_after(storage, after: bytes, max_transactions: int = DEFAULT_MAX_TRANSACTIONS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> Batch:
    """The committed transactions of ``storage`` after TID ``after`` (at most
    ``max_transactions``, and stopping once ``max_bytes`` of data were read), and how
    many follow the batch (counted, not read out, up to BEHIND_CAP). Raises
    StorageError when the storage cannot be iterated."""
    last = storage.lastTransaction() or z64
    if last < after:
        raise ReplicaDiverged(f"the replica is at transaction {after.hex()}, after this storage's "
                       f"last one ({last.hex()}): it followed another primary",
                       [{"field": "after", "problem": "not in this storage's history"}])
    if last == after:
        return Batch([], last, False, 0)
    out, size, more = [], 0, False
    behind = behind_bytes = 0
    try:
        it = storage.iterator(after if after != z64 else None)
        try:
            first = True
            for txn in it:
                if first and after != z64:
                    first = False
                    if txn.tid != after:
                        raise ReplicaDiverged(
                            f"the replica is at transaction {after.hex()}, which this "
                            "storage never committed: it followed another primary (or "
                            "this one's history was packed or restored)",
                            [{"field": "after", "problem": "not in this storage's history"}])
                    continue
                first = False
                if txn.tid > last:
                    break
                if more or len(out) >= max_transactions or size >= max_bytes:
                    more = True
                    if behind >= BEHIND_CAP:
                        break
                    behind += 1
                    behind_bytes += sum(len(r.data or b"") for r in txn)
                    continue
                body, n = encode_transaction(txn)
                out.append(body)
                size += n
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
    except (POSError, OSError, ValueError) as exc:
        raise StorageError(f"cannot read the transactions after {after.hex()}: {exc}") \
            from None
    return Batch(out, last, more, size, behind, behind_bytes)


def _bytes(value, what: str) -> bytes:
    if value is None:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raise InvalidInput(f"transaction {what} is not base64",
                           [{"field": what, "problem": "not base64"}]) from None


def decode_transaction(body) -> tuple[bytes, str, TransactionMetaData, list]:
    """(tid, status, metadata, [(oid, data, data_txn)]) of a wire transaction;
    InvalidInput when it is malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise InvalidInput("a shipped transaction must be an object with records",
                           [{"field": "transactions", "problem": "malformed"}])
    tid = parse_tid(body.get("tid"), "tid")
    status = body.get("status", " ")
    if status not in (" ", "p", "u"):
        raise InvalidInput(f"transaction {tid.hex()}: unknown status {status!r}",
                           [{"field": "status", "problem": "must be ' ', 'p' or 'u'"}])
    meta = TransactionMetaData(_bytes(body.get("user"), "user"),
                               _bytes(body.get("description"), "description"),
                               _bytes(body.get("extension"), "extension"))
    records = []
    for rec in body["records"]:
        if not isinstance(rec, dict):
            raise InvalidInput("a shipped record must be an object",
                               [{"field": "records", "problem": "malformed"}])
        oid = parse_tid(rec.get("oid"), "oid")
        data = None if rec.get("data") is None else _bytes(rec["data"], "data")
        data_txn = None if rec.get("data_txn") is None else parse_tid(rec["data_txn"],
                                                                       "data_txn")
        records.append((oid, data, data_txn))
    return tid, status, meta, records


def apply_transactions(db, transactions: list) -> bytes | None:
    """Apply wire transactions (oldest first) to the storage of ``db`` with their own
    TIDs, each durably (FileStorage fsyncs at tpc_finish), and tell the DB's connections
    which objects changed. Transactions at or before the storage's last TID are skipped
    (a batch asked again). Returns the last TID applied (None: none). Raises InvalidInput
    (malformed) or StorageError (the storage refused: e.g. a TID out of order)."""
    return apply_to_storage(db.storage, transactions,
                            lambda tid, oids: _invalidate(db, tid, oids))


def apply_to_storage(storage, transactions: list, on_applied=None) -> bytes | None:
    """``apply_transactions`` on a raw storage (no DB over it yet: a replica's first
    catch-up, before a DB would commit a root of its own); ``on_applied(tid, oids)``
    after each transaction."""
    applied = None
    for body in transactions:
        tid, status, meta, records = decode_transaction(body)
        last = storage.lastTransaction() or z64
        if tid <= last:
            continue
        try:
            storage.tpc_begin(meta, tid, status)
            try:
                for oid, data, data_txn in records:
                    storage.restore(oid, tid, data, "", data_txn, meta)
                storage.tpc_vote(meta)
                storage.tpc_finish(meta)
            except BaseException:
                storage.tpc_abort(meta)
                raise
        except POSError as exc:
            raise StorageError(f"cannot apply transaction {tid.hex()}: {exc}") from None
        if on_applied is not None:
            on_applied(tid, [oid for oid, _, _ in records])
        applied = tid
    return applied


def _invalidate(db, tid: bytes, oids: list) -> None:
    """Tell the DB's open connections that ``oids`` changed at ``tid`` (they were written
    under the DB, straight to its storage). ZODB's MVCC adapter is what a storage's own
    invalidations reach; without one, every cache is dropped."""
    adapter = getattr(db, "_mvcc_storage", None)
    invalidate = getattr(adapter, "invalidate", None)
    if invalidate is not None:
        invalidate(tid, oids)
    else:
        db.invalidateCache()
