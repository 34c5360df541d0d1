"""The desired-state read of a node: what its computer should have, cached per serial.

Depends on services.tx/render/computers and ZODB. The serial is read on the request's
connection (an unchanged read, If-None-Match, costs one attribute read). A changed
one is rendered by a DesiredStateRenderer: one dedicated connection whose object
cache stays warm, and per-partition encoded entries reused while the hosted
instance's revision is unchanged; the bytes are kept per (computer, serial).
"""
from __future__ import annotations

import threading
import zlib

import transaction

from . import lease_marks, render
from .computers import CONTACT_INTERVAL, get_computer
from .tx import app_root, clock, write


# A document at least this long is also kept gzip-compressed, for the clients that take
# it so (the stock SLAP client and the node do): 2,000 partitions' SLAP document of
# 3.8 MB becomes 134 KB. Level 3: nearly level 6's ratio at half its time.
GZIP_MIN_BYTES = 16 * 1024
GZIP_LEVEL = 3


def gzip_bytes(body: bytes, level: int = GZIP_LEVEL) -> bytes:
    """``body`` as a gzip stream (no file name, no time: the same bytes every time)."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(body) + packer.flush()


def _native_partition_text(app, comp, p, inst) -> str:
    return render.desired_partition_text(app, p, inst)


class DesiredStateRenderer:
    """Renders and caches desired-state documents for one DB (a runtime owns one).

    The document's format is given by two functions: ``partition_text(app, comp,
    partition, instance or None)`` encodes one partition entry, ``assemble(app, comp,
    serial, entries)`` the whole document (bytes); by default the native JSON document
    (services.render), services.slap_render gives the SLAP one. Both are functions of
    what bumps the computer's serial (entries: of the hosted instance's revision)."""

    def __init__(self, db, partition_text=None, assemble=None, read=None):
        self._db = db
        self._partition_text = partition_text or _native_partition_text
        self._assemble = assemble or render.desired_state_bytes
        # ``read(reader)``: runs ``reader(app)`` where the objects are likely loaded
        # already (services.tx.Writer.read: the writer's warm connection); by default
        # on this renderer's own connection, which loads whatever others changed
        self._read = read or self._read_own
        self._tm = transaction.TransactionManager()
        self._conn = None
        self._lock = threading.Lock()
        self._documents: dict[str, tuple[int, bytes]] = {}
        # (computer, partition) -> (partition facts, instance id, (revision, recipient),
        # encoded entry)
        self._partitions: dict[tuple, tuple] = {}
        self._gzipped: dict[str, tuple[int, bytes]] = {}

    def compressed(self, computer_id: str, serial: int, body: bytes) -> bytes | None:
        """``body`` (the computer's document at ``serial``, as ``document`` gave it)
        gzip-compressed, once per serial; None when it is too short to be worth it."""
        if len(body) < GZIP_MIN_BYTES:
            return None
        entry = self._gzipped.get(computer_id)
        if entry is not None and entry[0] == serial:
            return entry[1]
        packed = gzip_bytes(body)
        self._gzipped[computer_id] = (serial, packed)
        return packed

    def cached(self, computer_id: str, serial: int) -> bytes | None:
        entry = self._documents.get(computer_id)
        return entry[1] if entry is not None and entry[0] == serial else None

    def document(self, computer_id: str, serial: int) -> tuple[int, bytes]:
        """(serial, bytes) of the computer's document at ``serial`` or newer."""
        body = self.cached(computer_id, serial)
        if body is not None:
            return serial, body
        with self._lock:
            body = self.cached(computer_id, serial)     # rendered while this one waited
            if body is not None:
                return serial, body
            return self._read(lambda app: self._render(app, computer_id))

    def _render(self, app, computer_id: str) -> tuple[int, bytes]:
        comp = get_computer(app, computer_id)
        current = comp.serial
        body = self.cached(computer_id, current)
        if body is None:
            body = self._assemble(app, comp, current, self._partition_texts(app, comp))
            self._documents[computer_id] = (current, body)
        return current, body

    def _read_own(self, reader):
        if self._conn is None:
            self._conn = self._db.open(self._tm)
        self._tm.begin()
        try:
            return reader(app_root(self._conn))
        finally:
            self._tm.abort()

    def _partition_texts(self, app, comp):
        instances = app.instances
        cache = self._partitions
        cid = comp.id
        for p in comp.partitions.values():
            iid = p.instance_id
            inst = None if iid is None else instances[iid]
            facts = (p.address, p.port_base, p.port_count, p.moved_instance, p.wipe)
            # the recipient changes without a revision (a renewed certificate)
            revision = (0, None) if inst is None else (inst.revision, inst.recipient)
            if inst is not None and inst.shared_ids:     # so do its shared instances'
                revision += (render.shared_recipients_key(app, inst),)
            key = (cid, p.id)
            hit = cache.get(key)
            if hit is not None and hit[0] == facts and hit[1] == iid and hit[2] == revision:
                yield hit[3]
                continue
            text = self._partition_text(app, comp, p, inst)
            cache[key] = (facts, iid, revision, text)
            yield text

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._tm.abort()
                self._conn.close()
                self._conn = None


def desired_state(rt, computer_id: str, known_serials=(),
                  renderer: DesiredStateRenderer | None = None,
                  conn=None, renew: bool = True) -> tuple[int, bytes | None]:
    """(serial, document bytes), or (serial, None) when serial is in ``known_serials``.

    The serial is read on ``conn`` (the request's connection; else one of the runtime's
    DB); a changed document is rendered by ``renderer`` (e.g. ``rt.renderer``; None:
    rendered here). Renews the computer's lease (``rt.leases``, no database write) unless
    ``renew`` is False (the reader is not its node), and records the node's contact in
    the database at most every CONTACT_INTERVAL seconds (a write use case of ``rt``),
    and at once when its lease was recorded out (services.lease_marks: it is back).
    Raises NotFound."""
    if conn is None:
        own = rt.db.open()
        try:
            return desired_state(rt, computer_id, known_serials, renderer, own, renew)
        finally:
            own.close()
    tm = conn.transaction_manager
    tm.begin()
    try:
        comp = get_computer(app_root(conn), computer_id)
        now = clock()
        if renew:
            rt.leases.renew(computer_id)
        if renew and (comp.last_contact is None or now - comp.last_contact >= CONTACT_INTERVAL
                      or comp.lease_recorded_out):
            tm.abort()
            write(rt, lambda app: _record_contact(rt, app, computer_id, now))
            tm.begin()
            comp = get_computer(app_root(conn), computer_id)
        serial = comp.serial
        if serial in known_serials:
            return serial, None
        if renderer is None:
            app = app_root(conn)
            texts = (render.desired_partition_text(
                app, p, None if p.instance_id is None else app.instances[p.instance_id])
                for p in comp.partitions.values())
            return serial, render.desired_state_bytes(app, comp, serial, texts)
    finally:
        tm.abort()
    serial, body = renderer.document(computer_id, serial)
    return (serial, None) if serial in known_serials else (serial, body)


def _record_contact(rt, app, computer_id: str, now: float) -> None:
    """The node's contact (at most every CONTACT_INTERVAL) and, when its lease was
    recorded out, its return: one transaction."""
    comp = get_computer(app, computer_id)
    if comp.last_contact is None or now - comp.last_contact >= CONTACT_INTERVAL:
        comp.last_contact = now
    lease_marks.renewed(rt, comp, now)
