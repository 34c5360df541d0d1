"""Packing a master's ZODB, and the maintenance thread of a running master (scheduled
backups, scheduled packs, packs asked for by `slapfed master pack`).

Depends on ZODB/ZEO, store and store.backup. A FileStorage is held by the one process
that serves it, so a pack of a running master is done by that process: `master pack`
drops a request file in DATA (pack-request.json) that the maintenance thread answers
(pack-result.json); with --start-zeo it packs through the ZEO server. A pack and a
backup of one data directory never overlap (DATA/maintenance.lock).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InvalidInput, SlapfedError, StorageError, Timeout
from ..locks import try_exclusive_lock
from . import backup as bk

DEFAULT_PACK_KEEP = 86400.0        # history kept by a pack: one day
DEFAULT_PACK_EVERY = 86400.0       # automatic pack: daily
REQUEST_FILE = "pack-request.json"
RESULT_FILE = "pack-result.json"
OWNER_LOCK = "maintenance-owner.lock"   # held by the one worker that runs maintenance
LAST_PACK_FILE = "pack.json"            # {"packed_at": epoch seconds}: survives restarts
POLL = 0.25                              # how often the thread looks for a pack request

log = logging.getLogger("slapfed.store.maintenance")


@dataclass
class PackResult:
    packed_to: float            # history before this time (epoch seconds) was removed
    keep: float
    size_before: int | None
    size_after: int | None
    seconds: float
    via: str                    # "direct", "master" (the running master) or "zeo"

    def to_json(self) -> dict:
        return dict(self.__dict__)


def check_keep(keep: float, field: str = "keep") -> float:
    if keep is None or keep < 0:
        raise InvalidInput(f"--{field.replace('_', '-')} must be a number of seconds >= 0",
                           [{"field": field, "problem": "must be >= 0"}])
    return float(keep)


def _size(path: str | None) -> int | None:
    try:
        return os.path.getsize(path) if path else None
    except OSError:
        return None


def pack_db(db, data_dir: str | None, keep: float, fs_path: str | None = None,
            via: str = "direct", wait: float | None = 600.0) -> PackResult:
    """Pack an open DB: remove the history older than ``keep`` seconds (and what nothing
    reaches any more). Holds DATA/maintenance.lock so that no backup reads meanwhile."""
    keep = check_keep(keep)
    started = time.monotonic()
    before = _size(fs_path)
    lock = (bk.file_lock(Path(data_dir) / bk.MAINTENANCE_LOCK, wait,
                         f"a backup or pack of {data_dir}") if data_dir
            else contextlib.nullcontext())
    packed_to = time.time() - keep
    with lock:
        db.pack(t=packed_to)
        with contextlib.suppress(FileNotFoundError):
            if fs_path:
                os.unlink(fs_path + ".old")     # the pre-pack copy FileStorage keeps
    if data_dir:
        bk.write_private_atomically(Path(data_dir) / LAST_PACK_FILE,
                                    json.dumps({"packed_at": time.time()}).encode())
    return PackResult(packed_to, keep, before, _size(fs_path),
                      round(time.monotonic() - started, 4), via)


def pack(data_dir: str, keep: float = DEFAULT_PACK_KEEP, storage: str | None = None,
         timeout: float = 600.0) -> PackResult:
    """`slapfed master pack`: pack the master's ZODB, running or not."""
    import ZODB

    from . import open_storage, parse_storage_uri
    keep = check_keep(keep)
    data_dir = os.path.abspath(data_dir)
    spec = parse_storage_uri(storage, data_dir)
    if spec.kind == "zeo":
        db = ZODB.DB(open_storage(spec))
        try:
            return pack_db(db, None, keep, via="zeo")
        finally:
            db.close()
    if not os.path.isfile(spec.path):
        raise InvalidInput(f"{data_dir} holds no master data ({spec.path} does not exist)",
                           [{"field": "data", "problem": "no FileStorage"}])
    try:
        storage_obj = open_storage(spec)
    except StorageError:
        # a running master holds the FileStorage: its ZEO server, or the master itself
        zeo = _zeo_address(data_dir)
        if zeo is not None:
            from ZEO.ClientStorage import ClientStorage
            db = ZODB.DB(ClientStorage(zeo, wait_timeout=30))
            try:
                return pack_db(db, data_dir, keep, spec.path, via="zeo", wait=timeout)
            finally:
                db.close()
        return ask_running_master(data_dir, keep, timeout)
    db = ZODB.DB(storage_obj)
    try:
        return pack_db(db, data_dir, keep, spec.path, wait=timeout)
    finally:
        db.close()


def _zeo_address(data_dir: str):
    from .zeo import ADDRESS_FILE
    try:
        text = Path(data_dir, ADDRESS_FILE).read_text().strip()
    except OSError:
        return None
    host, _, port = text.rpartition(":")
    return (host, int(port)) if port.isdigit() else None


def ask_running_master(data_dir: str, keep: float, timeout: float) -> PackResult:
    """Ask the master serving ``data_dir`` to pack (request file, answered by its
    maintenance thread) and wait for its answer."""
    ident = uuid.uuid4().hex
    request = Path(data_dir) / REQUEST_FILE
    result = Path(data_dir) / RESULT_FILE
    bk.write_private_atomically(request, json.dumps({"id": ident, "keep": keep}).encode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = json.loads(result.read_text())
        except (OSError, ValueError):
            answer = None
        if isinstance(answer, dict) and answer.get("id") == ident:
            with contextlib.suppress(FileNotFoundError):
                result.unlink()
            if answer.get("error"):
                raise StorageError(f"the master of {data_dir} could not pack: "
                                   f"{answer['error']}")
            return PackResult(**answer["result"])
        time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        request.unlink()
    raise Timeout(f"the master serving {data_dir} did not pack within {timeout:g}s (is it "
                  "a slapfed master started from this directory?)")


@dataclass
class MaintenanceOptions:
    data_dir: str
    fs_path: str | None             # the FileStorage file (None: remote ZEO)
    backup_to: str | None = None
    backup_every: float = 0.0       # 0: no scheduled backup
    pack_every: float = DEFAULT_PACK_EVERY   # 0: no automatic pack
    pack_keep: float = DEFAULT_PACK_KEEP
    retry: float = 30.0             # after a failed backup or pack
    tasks: tuple = ()               # Periodic work of the layers above (e.g. rebuild_after)


@dataclass
class Periodic:
    """Work the maintenance owner runs every ``every`` seconds (``run()``, its failures
    logged and retried at the next period): periodic policies of the master that exactly
    one process of it must run."""

    name: str
    every: float
    run: object                     # () -> None
    next_at: float = 0.0


class Maintenance:
    """One thread per master (the worker holding OWNER_LOCK): scheduled backups and packs,
    and packs asked for by `master pack`. A failure is logged and retried later; it never
    stops the master."""

    def __init__(self, db, opts: MaintenanceOptions, clock=time.time):
        self.db, self.opts, self.clock = db, opts, clock
        self._stop = threading.Event()
        self._thread = None
        self._owner_fd = None
        self.next_backup = 0.0
        self.next_pack = 0.0
        self.last_error = None
        self.backups = 0

    def start(self) -> "Maintenance":
        self._thread = threading.Thread(target=self._run, name="slapfed-maintenance",
                                        daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None

    # -- the loop ---------------------------------------------------------------
    def _owner(self) -> bool:
        if self._owner_fd is not None:
            return True
        fd = try_exclusive_lock(os.path.join(self.opts.data_dir, OWNER_LOCK))
        if fd is None:
            return False
        self._owner_fd = fd
        self._schedule_from_disk()
        return True

    def _schedule_from_disk(self) -> None:
        """After a restart: the next backup is due one period after the last one in the
        repository, the next pack one period after the last pack."""
        now = self.clock()
        if self.opts.backup_to and self.opts.backup_every > 0:
            try:
                docs = bk.manifests(self.opts.backup_to)
            except SlapfedError:
                docs = []
            last = bk.parse_time(docs[-1]["time"]).timestamp() if docs else None
            self.next_backup = now if last is None else min(now + self.opts.backup_every,
                                                            last + self.opts.backup_every)
        if self.opts.pack_every > 0:
            try:
                packed = json.loads(Path(self.opts.data_dir, LAST_PACK_FILE).read_text())
                last = float(packed["packed_at"])
            except (OSError, ValueError, KeyError, TypeError):
                last = None
            self.next_pack = now + self.opts.pack_every if last is None else min(
                now + self.opts.pack_every, last + self.opts.pack_every)

    def _run(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            wait = POLL if self._owner_fd is not None else 5.0
            try:
                if not self._owner():
                    continue
                self._answer_pack_request()
                now = self.clock()
                if self.opts.backup_to and self.opts.backup_every > 0 \
                        and now >= self.next_backup:
                    self._scheduled_backup()
                if self.opts.pack_every > 0 and now >= self.next_pack:
                    self._scheduled_pack()
                self._run_tasks(now)
            except Exception:           # never let the thread die
                log.exception("maintenance step failed")

    def _run_tasks(self, now: float) -> None:
        for task in self.opts.tasks:
            if now < task.next_at:
                continue
            task.next_at = now + task.every
            try:
                task.run()
            except Exception:           # one task's failure stops neither the others nor us
                log.exception("maintenance task %s failed; next try in %gs", task.name,
                              task.every)

    def run_once(self) -> None:
        """One pass (tests): take ownership, answer a request, run what is due."""
        if self._owner():
            self._answer_pack_request()
            self._run_tasks(self.clock())

    def _scheduled_backup(self) -> None:
        try:
            result = bk.backup(self.opts.data_dir, self.opts.backup_to, wait=0)
        except Exception as exc:
            self.last_error = str(exc)
            self.next_backup = self.clock() + min(self.opts.retry, self.opts.backup_every)
            log.error("scheduled backup of %s into %s failed (retrying in %gs): %s",
                      self.opts.data_dir, self.opts.backup_to,
                      self.next_backup - self.clock(), exc)
            return
        self.backups += 1
        self.last_error = None
        self.next_backup = self.clock() + self.opts.backup_every
        log.info("backup %s (%s, %d bytes of ZODB, tid %s) written to %s in %.2fs",
                 result.id, result.kind, result.zodb_bytes, result.tid, self.opts.backup_to,
                 result.seconds)

    def _scheduled_pack(self) -> None:
        try:
            result = pack_db(self.db, self.opts.data_dir, self.opts.pack_keep,
                             self.opts.fs_path, via="master", wait=0)
        except Exception as exc:
            self.next_pack = self.clock() + self.opts.retry
            log.error("scheduled pack of %s failed (retrying in %gs): %s",
                      self.opts.data_dir, self.opts.retry, exc)
            return
        self.next_pack = self.clock() + self.opts.pack_every
        log.info("packed %s (history before %s seconds ago removed): %s -> %s bytes",
                 self.opts.data_dir, self.opts.pack_keep, result.size_before,
                 result.size_after)

    def _answer_pack_request(self) -> None:
        request = Path(self.opts.data_dir) / REQUEST_FILE
        try:
            asked = json.loads(request.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            asked = {}
        with contextlib.suppress(FileNotFoundError):
            request.unlink()
        if not isinstance(asked, dict) or not isinstance(asked.get("id"), str):
            return
        answer = {"id": asked["id"]}
        try:
            keep = asked.get("keep")
            if isinstance(keep, bool) or not isinstance(keep, (int, float)):
                raise InvalidInput("a pack request needs keep (seconds)")
            answer["result"] = pack_db(self.db, self.opts.data_dir, keep,
                                       self.opts.fs_path, via="master").to_json()
            if self.opts.pack_every > 0:
                self.next_pack = self.clock() + self.opts.pack_every
        except Exception as exc:
            answer["error"] = str(exc)
            log.error("pack asked for by `slapfed master pack` failed: %s", exc)
        bk.write_private_atomically(Path(self.opts.data_dir) / RESULT_FILE,
                                    json.dumps(answer).encode())
