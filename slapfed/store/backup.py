"""Backups of a master's data directory as one unit, their verification and restore.

Depends on ZODB (repozo, FileStorage) and the standard library. A backup repository
(REPO) holds secrets (the CA's private key): every directory is 0700, every file 0600.

Layout of REPO::

    lock                 flock: one backup (or restore read) of this repository at a time
    zodb/                a repozo repository: compressed full (.fsz) and incremental
                         (.deltafsz) copies of the FileStorage, its .dat chain, .index files
    objects/xx/<sha256>  every other file of DATA, gzip-compressed, named by the sha256 of
                         its content (a file unchanged since the last backup is not copied)
    manifests/<id>.json  one per backup, written last and atomically: its time, the ZODB
                         transaction id it holds, the repozo chain it needs (with sha256),
                         and the DATA files (path, sha256, size, mode)

A backup without its manifest does not exist: restore only reads manifests, and the next
backup removes what a failed one left behind. The ZODB is copied first, then the files
(the CA last): a certificate the ZODB knows of is always in the backup.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import gzip
import hashlib
import json
import os
import shutil
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import BackupCorrupt, Conflict, InvalidInput, NotFound, StorageError

FORMAT = 1
FILESTORAGE_NAME = "master.fs"
ZODB_DIR = "zodb"
OBJECTS_DIR = "objects"
MANIFESTS_DIR = "manifests"
REPO_LOCK = "lock"
MAINTENANCE_LOCK = "maintenance.lock"   # in DATA: a backup and a pack never overlap
TOPOLOGY_RECORD = "topology.json"       # in DATA: the topology files `master serve` read
TOPOLOGY_COPIES = "topology"            # in a restored DATA: copies of those files
# What DATA holds that a restored master does not need: it is made again at start.
SKIP_NAMES = {"master.url", "master.pid", "zeo.address", "zeo.pid", "forwarder.lock",
              MAINTENANCE_LOCK, "pack-request.json", "pack-result.json", "lock"}
SKIP_DIRS = {"tls"}                     # the server key and certificate, re-issued at start
SKIP_SUFFIXES = (".tmp", ".log", ".lock")
DIR_MODE, FILE_MODE = 0o700, 0o600


@dataclass
class BackupResult:
    id: str
    time: str
    kind: str                 # full | incremental | unchanged (no new transaction)
    tid: str | None
    zodb_bytes: int           # bytes of FileStorage this backup copied
    files: int                # DATA files recorded
    new_objects: int          # of which copied now (the others were unchanged)
    seconds: float
    manifest: str

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RestoreResult:
    id: str
    time: str
    tid: str | None
    data_dir: str
    files: int
    url: str | None
    topology: list = field(default_factory=list)
    master_name: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        return dict(self.__dict__)


# -- small helpers --------------------------------------------------------------------
def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(value: str, field_name: str = "at") -> dt.datetime:
    """An ISO 8601 time; naive times are UTC. InvalidInput names the field."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--{field_name} {value!r} is not an ISO 8601 time (e.g. "
                           "2025-01-31T12:00:00Z)",
                           [{"field": field_name, "problem": "not an ISO 8601 time"}]) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def private_dir(path) -> Path:
    p = Path(path)
    p.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(p, DIR_MODE)
    return p


def write_private_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) through a temporary file, fsync'd, renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path, wait: float | None = None, what: str = "a backup"):
    """Hold an exclusive flock on ``path`` (created 0600). ``wait`` None: block; 0: fail
    at once; else give up after ``wait`` seconds. Conflict when it is held elsewhere."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise Conflict(f"{what} is already running ({path} is locked); try "
                                   "again once it is done") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


# -- the repository -------------------------------------------------------------------
def manifests(repo) -> list[dict]:
    """Every complete backup of ``repo``, oldest first (unreadable manifests raise)."""
    mdir = Path(repo) / MANIFESTS_DIR
    if not mdir.is_dir():
        return []
    found = []
    for path in sorted(mdir.glob("*.json")):
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise BackupCorrupt(f"backup manifest {path} is unreadable: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or "id" not in doc:
            raise BackupCorrupt(f"backup manifest {path} is not a slapfed backup manifest")
        found.append(doc)
    found.sort(key=lambda d: d["time"])
    return found


def pick(repo, at: dt.datetime | None = None) -> dict:
    """The latest backup at or before ``at`` (the latest of all without it); NotFound."""
    docs = manifests(repo)
    if not docs:
        raise NotFound(f"{repo} holds no backup (no manifest in {Path(repo) / MANIFESTS_DIR})")
    if at is None:
        return docs[-1]
    eligible = [d for d in docs if parse_time(d["time"]) <= at]
    if not eligible:
        raise NotFound(f"{repo} holds no backup at or before {iso(at)} (the first is "
                       f"{docs[0]['time']})")
    return eligible[-1]


def _repozo_options(repo_zodb: Path, fs_path: str | None, mode: str, **extra):
    from ZODB.scripts import repozo
    argv = {"backup": ["-B", "-z", "-Q", "-f", fs_path], "recover": ["-R", "-w"],
            "verify": ["-V"]}[mode]
    options = repozo.parseargs([*argv, "-r", str(repo_zodb)])
    for key, value in extra.items():
        setattr(options, key, value)
    return options


def _stamp(t: tuple) -> str:
    return "%04d-%02d-%02d-%02d-%02d-%02d" % t


def _parse_stamp(stamp: str) -> tuple:
    return tuple(int(x) for x in stamp.split("-"))


def _data_files(zdir: Path) -> list[str]:
    from ZODB.scripts.repozo import is_data_file
    return sorted(f for f in os.listdir(zdir) if is_data_file(f)) if zdir.is_dir() else []


def _dat_lines(zdir: Path, full_name: str) -> list[list[str]]:
    dat = zdir / (os.path.splitext(full_name)[0] + ".dat")
    try:
        return [line.split() for line in dat.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _clean_leftovers(repo: Path, docs: list[dict]) -> None:
    """Remove repozo files no manifest names (a backup that died before its manifest),
    and their lines in the .dat chains, so that they never join a restored chain."""
    zdir = repo / ZODB_DIR
    named = {link["file"] for d in docs for link in d["zodb"]["chain"]}
    for name in _data_files(zdir):
        if name in named:
            continue
        root = os.path.splitext(name)[0]
        for ext in (os.path.splitext(name)[1], ".index"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(zdir / (root + ext))
        if name.endswith((".fs", ".fsz")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(zdir / (root + ".dat"))
    for dat in zdir.glob("*.dat") if zdir.is_dir() else ():
        lines = [ln for ln in dat.read_text().splitlines() if ln.strip()]
        kept = [ln for ln in lines if os.path.basename(ln.split()[0]) in named]
        if kept != lines:
            if kept:
                write_private_atomically(dat, ("\n".join(kept) + "\n").encode())
            else:
                dat.unlink()


def last_tid_at(fs_path: str, end: int) -> str | None:
    """The id of the transaction that ends at byte ``end`` of a FileStorage (hex)."""
    if end <= 4:
        return None
    with open(fs_path, "rb") as f:
        f.seek(end - 8)
        tlen = struct.unpack(">Q", f.read(8))[0]
        f.seek(end - 8 - tlen)
        return f.read(8).hex()


def _data_entries(data_dir: Path) -> list[Path]:
    """The files of DATA a restored master needs (relative paths), sorted, CA last."""
    out = []
    for dirpath, dirnames, filenames in os.walk(data_dir):
        rel_dir = Path(dirpath).relative_to(data_dir)
        dirnames[:] = sorted(d for d in dirnames
                             if not (rel_dir == Path(".") and d in SKIP_DIRS)
                             and not os.path.islink(os.path.join(dirpath, d)))
        for name in filenames:
            rel = rel_dir / name
            if rel_dir == Path(".") and (name == FILESTORAGE_NAME
                                         or name.startswith(FILESTORAGE_NAME + ".")):
                continue
            if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES) or name.startswith("."):
                continue
            full = Path(dirpath) / name
            if full.is_symlink() or not full.is_file():
                continue
            out.append(rel)
    return sorted(out, key=lambda p: (p.parts[0] == "ca", str(p)))


def _store_object(repo: Path, content: bytes) -> tuple[str, bool]:
    digest = hashlib.sha256(content).hexdigest()
    odir = private_dir(repo / OBJECTS_DIR / digest[:2])
    path = odir / digest
    if path.exists():
        return digest, False
    write_private_atomically(path, gzip.compress(content, compresslevel=6, mtime=0))
    # verify what was written: it decompresses to the same content
    if hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() != digest:
        path.unlink()
        raise StorageError(f"backup object {path} does not read back as written")
    return digest, True


def _read_object(repo: Path, digest: str, what: str) -> bytes:
    path = repo / OBJECTS_DIR / digest[:2] / digest
    try:
        content = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise BackupCorrupt(f"backup file {path} ({what}) is missing") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BackupCorrupt(f"backup file {path} ({what}) is damaged: {exc}") from None
    if hashlib.sha256(content).hexdigest() != digest:
        raise BackupCorrupt(f"backup file {path} ({what}) is damaged: its content does not "
                            "match the sha256 its manifest records")
    return content


def _topology_record(data_dir: Path) -> dict:
    try:
        doc = json.loads((data_dir / TOPOLOGY_RECORD).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _topology_sources(record: dict) -> list[str]:
    """The topology files ``master serve`` was started with, and the invitation files
    they name (absolute paths)."""
    paths = [p for p in record.get("files") or () if isinstance(p, str)]
    extra = []
    try:
        from ..topology import files as topology_files
        topo = topology_files.load(paths) if paths else None
        for link in topo.links if topo else ():
            extra.extend(link.invitations)
    except Exception:                   # a file changed since: copy what it names still
        pass
    return list(dict.fromkeys(paths + [p for p in extra if isinstance(p, str)]))


# -- backup ---------------------------------------------------------------------------
def filestorage_path(data_dir, storage: str | None = None) -> str:
    """The FileStorage file to back up: <DATA>/master.fs (also what --start-zeo serves) or
    the file of a file:// URI. A remote ZEO storage is refused: back it up where it lives."""
    from . import parse_storage_uri
    spec = parse_storage_uri(storage, str(data_dir))
    if spec.kind != "file":
        raise InvalidInput(
            f"cannot back up {spec.describe()}: the backup reads the FileStorage file "
            "itself; run `slapfed master backup` on the machine of the ZEO server, with "
            "--storage file:///path/of/its.fs (a master started with --start-zeo is backed "
            "up with --data alone)", [{"field": "storage", "problem": "remote ZEO storage"}])
    return spec.path


def backup(data_dir, repo, *, storage: str | None = None, full: bool = False,
           wait: float | None = 60.0, clock=utcnow) -> BackupResult:
    """Back up DATA into REPO as one point in time, verify it, then write its manifest.

    Works while the master runs. Raises InvalidInput (no master data there), Conflict
    (another backup or a pack holds the lock), StorageError/BackupCorrupt."""
    started = time.monotonic()
    data_dir, repo = Path(data_dir).resolve(), Path(repo).resolve()
    fs_path = filestorage_path(data_dir, storage)
    if not os.path.isfile(fs_path):
        raise InvalidInput(f"{data_dir} holds no master data ({fs_path} does not exist)",
                           [{"field": "data", "problem": "no FileStorage"}])
    if repo == data_dir or data_dir in repo.parents:
        raise InvalidInput("the backup repository must lie outside the data directory",
                           [{"field": "to", "problem": "inside the data directory"}])
    private_dir(repo)
    for sub in (ZODB_DIR, OBJECTS_DIR, MANIFESTS_DIR):
        private_dir(repo / sub)
    with file_lock(repo / REPO_LOCK, wait, f"a backup into {repo}"), \
            file_lock(data_dir / MAINTENANCE_LOCK, wait, f"a backup or pack of {data_dir}"):
        return _backup_locked(data_dir, repo, fs_path, full, clock, started)


def _backup_locked(data_dir, repo, fs_path, full, clock, started) -> BackupResult:
    from ZODB.scripts import repozo
    docs = manifests(repo)
    _clean_leftovers(repo, docs)
    zdir = repo / ZODB_DIR
    before = set(_data_files(zdir))
    now = clock()
    # repozo names files by the second: never reuse (or go back before) a stamp
    stamp_t = now.utctimetuple()[:6]
    taken = sorted(before)
    if taken and _stamp(stamp_t) <= os.path.splitext(taken[-1])[0]:
        last = dt.datetime(*_parse_stamp(os.path.splitext(taken[-1])[0]))
        stamp_t = (last + dt.timedelta(seconds=1)).timetuple()[:6]
    options = _repozo_options(zdir, fs_path, "backup", test_now=stamp_t, full=full)
    try:
        repozo.do_backup(options)
    except (repozo.RepozoError, OSError) as exc:
        raise StorageError(f"backing up {fs_path} failed: {exc}") from None
    created = sorted(set(_data_files(zdir)) - before)
    prev = docs[-1] if docs else None
    if created:
        name = created[-1]
        kind = "full" if name.endswith((".fs", ".fsz")) else "incremental"
        full_name = name if kind == "full" else prev["zodb"]["chain"][0]["file"]
        chain = [] if kind == "full" else list(prev["zodb"]["chain"])
        lines = {os.path.basename(ln[0]): ln for ln in _dat_lines(zdir, full_name)}
        if name not in lines:
            raise StorageError(f"repozo wrote {name} but no line of its chain (.dat)")
        _, start, end, md5 = lines[name]
        root = os.path.splitext(name)[0]
        for produced in (name, root + ".dat", root + ".index"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(zdir / produced, FILE_MODE)
        chain.append({"file": name, "sha256": sha256_file(zdir / name), "start": int(start),
                      "end": int(end), "md5": md5, "index": root + ".index",
                      "index_sha256": sha256_file(zdir / (root + ".index"))})
        # verify: repozo re-reads every file of the chain against its .dat
        try:
            repozo.do_verify(_repozo_options(zdir, None, "verify", date=root))
        except (repozo.RepozoError, OSError) as exc:
            raise BackupCorrupt(f"the backup just written does not verify: {exc}") from None
        zodb_bytes = int(end) - int(start)
    elif prev is not None:
        kind, chain, zodb_bytes = "unchanged", list(prev["zodb"]["chain"]), 0
    else:
        raise StorageError(f"repozo wrote no backup of {fs_path}")
    end = chain[-1]["end"]
    tid = last_tid_at(fs_path, end) if kind != "unchanged" else prev["zodb"]["tid"]
    # the files, after the ZODB (the CA last): nothing the ZODB names can be missing
    files, new_objects = [], 0
    for rel in _data_entries(data_dir):
        full_path = data_dir / rel
        try:
            content = full_path.read_bytes()
            mode = os.stat(full_path).st_mode & 0o777
        except FileNotFoundError:       # removed while we walked: not part of this point
            continue
        digest, fresh = _store_object(repo, content)
        new_objects += fresh
        files.append({"path": rel.as_posix(), "sha256": digest, "size": len(content),
                      "mode": mode})
    record = _topology_record(data_dir)
    topology = []
    for src in _topology_sources(record):
        try:
            content = Path(src).read_bytes()
        except OSError:
            continue
        digest, fresh = _store_object(repo, content)
        new_objects += fresh
        role = "topology" if src in (record.get("files") or ()) else "invitation"
        topology.append({"source": src, "role": role, "sha256": digest,
                         "size": len(content)})
    url = None
    with contextlib.suppress(OSError):
        url = (data_dir / "master.url").read_text().strip() or None
    ident = now.strftime("%Y%m%dT%H%M%S.%fZ")
    if prev is not None and ident <= prev["id"]:
        ident = prev["id"][:-1] + "1Z"   # clocks that repeat: still a later, unique id
    manifest = {
        "format": FORMAT, "id": ident, "time": iso(now), "kind": kind,
        "parent": prev["id"] if prev else None, "source": str(data_dir),
        "master": {"url": url or (prev or {}).get("master", {}).get("url"),
                   "name": record.get("name")},
        "zodb": {"file": os.path.basename(fs_path), "tid": tid, "size": end,
                 "stamp": os.path.splitext(chain[-1]["file"])[0], "chain": chain},
        "files": files, "topology": topology,
    }
    path = repo / MANIFESTS_DIR / f"{ident}.json"
    write_private_atomically(path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return BackupResult(ident, manifest["time"], kind, tid, zodb_bytes, len(files), new_objects,
                        round(time.monotonic() - started, 4), str(path))


# -- verify ---------------------------------------------------------------------------
def verify(repo, at: dt.datetime | None = None, every: bool = False) -> list[dict]:
    """Check backups against their manifests: every byte of the ZODB chain (sha256, and
    repozo's md5 of the uncompressed content) and every DATA file. Returns one summary
    per backup checked; BackupCorrupt names the first damaged file."""
    repo = Path(repo).resolve()
    docs = manifests(repo) if every else [pick(repo, at)]
    if not docs:
        raise NotFound(f"{repo} holds no backup")
    checked = set()
    out = []
    for doc in docs:
        _verify_chain(repo, doc, checked)
        for entry in doc["files"] + doc.get("topology", []):
            if entry["sha256"] not in checked:
                _read_object(repo, entry["sha256"], entry.get("path") or entry["source"])
                checked.add(entry["sha256"])
        out.append({"id": doc["id"], "time": doc["time"], "kind": doc["kind"],
                    "tid": doc["zodb"]["tid"], "ok": True})
    return out


def _verify_chain(repo: Path, doc: dict, checked: set) -> None:
    from ZODB.scripts.repozo import get_checksum_and_size_of_gzipped_file
    zdir = repo / ZODB_DIR
    for link in doc["zodb"]["chain"]:
        if link["sha256"] in checked:
            continue
        for name, digest in ((link["file"], link["sha256"]),
                             (link["index"], link["index_sha256"])):
            path = zdir / name
            try:
                got = sha256_file(path)
            except FileNotFoundError:
                raise BackupCorrupt(f"backup {doc['id']}: {path} is missing") from None
            if got != digest:
                raise BackupCorrupt(f"backup {doc['id']}: {path} is damaged (its sha256 is "
                                    f"not the one its manifest records)")
        try:
            md5, size = get_checksum_and_size_of_gzipped_file(str(zdir / link["file"]), False)
        except (OSError, EOFError) as exc:
            raise BackupCorrupt(f"backup {doc['id']}: {zdir / link['file']} is damaged: "
                                f"{exc}") from None
        if md5 != link["md5"] or size != link["end"] - link["start"]:
            raise BackupCorrupt(f"backup {doc['id']}: {zdir / link['file']} is damaged "
                                "(its content does not match its checksum)")
        checked.add(link["sha256"])


# -- restore --------------------------------------------------------------------------
def restore(repo, data_dir, at: dt.datetime | None = None) -> RestoreResult:
    """Rebuild a master's data directory from the backup at (or last before) ``at``.

    The directory must not exist or be empty; the restore is written beside it and
    renamed into place, so a failed restore leaves nothing. Raises InvalidInput (a
    non-empty directory), NotFound (no such backup), BackupCorrupt (a damaged file)."""
    started = time.monotonic()
    repo, target = Path(repo).resolve(), Path(data_dir).resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInput(f"refusing to restore into {target}: it is not an empty "
                           "directory (restore into a new one)",
                           [{"field": "data", "problem": "not empty"}])
    if not (repo / MANIFESTS_DIR).is_dir():
        raise NotFound(f"{repo} is not a backup repository (no {MANIFESTS_DIR}/)")
    doc = pick(repo, at)
    work = target.with_name(f".{target.name}.restore-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    private_dir(work)
    try:
        _verify_chain(repo, doc, set())
        _recover_zodb(repo, doc, work)
        for entry in doc["files"]:
            rel = Path(entry["path"])
            if rel.is_absolute() or ".." in rel.parts:
                raise BackupCorrupt(f"backup {doc['id']} names a file outside the data "
                                    f"directory: {entry['path']!r}")
            content = _read_object(repo, entry["sha256"], entry["path"])
            dest = work / rel
            for parent in reversed(rel.parents[:-1]):
                private_dir(work / parent)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.chmod(dest, entry["mode"] & 0o777)
        topology = _restore_topology(repo, doc, work, target)
        if doc["master"].get("name") or topology:
            write_private_atomically(work / TOPOLOGY_RECORD, json.dumps(
                {"files": topology, "name": doc["master"].get("name")}).encode())
        if target.exists():
            target.rmdir()
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return RestoreResult(doc["id"], doc["time"], doc["zodb"]["tid"], str(target),
                         len(doc["files"]), doc["master"].get("url"), topology,
                         doc["master"].get("name"), round(time.monotonic() - started, 4))


def _recover_zodb(repo: Path, doc: dict, work: Path) -> None:
    from ZODB.scripts import repozo
    zodb = doc["zodb"]
    chain_names = [link["file"] for link in zodb["chain"]]
    out = work / zodb.get("file", FILESTORAGE_NAME)
    # recover exactly this chain (repozo picks files by name up to the date; a file no
    # manifest names must not slip in)
    options = _repozo_options(repo / ZODB_DIR, None, "recover", date=zodb["stamp"],
                              output=str(out))
    picked = [os.path.basename(p) for p in repozo.find_files(options)]
    if picked != chain_names:
        raise BackupCorrupt(f"backup {doc['id']}: the ZODB chain in {repo / ZODB_DIR} is not "
                            f"the one its manifest records ({picked} instead of {chain_names})")
    try:
        repozo.do_recover(options)
    except (repozo.RepozoError, OSError) as exc:
        raise BackupCorrupt(f"backup {doc['id']}: recovering the ZODB failed: {exc}") from None
    for produced in (out, Path(f"{out}.index")):
        if produced.exists():
            os.chmod(produced, FILE_MODE)
    if out.stat().st_size != zodb["size"] or last_tid_at(str(out), zodb["size"]) != zodb["tid"]:
        raise BackupCorrupt(f"backup {doc['id']}: the recovered ZODB does not end at "
                            f"transaction {zodb['tid']}")


def _restore_topology(repo: Path, doc: dict, work: Path, target: Path) -> list[str]:
    """Copies of the topology files under <DATA>/topology/, at their original absolute
    paths (so that relative invitation paths still resolve); returns the restored paths
    of the topology files themselves (to pass to `master serve --topology`)."""
    entries = doc.get("topology") or []
    if not entries:
        return []
    served = []
    for entry in entries:
        src = Path(entry["source"])
        rel = Path(*src.parts[1:]) if src.is_absolute() else src
        if ".." in rel.parts:
            raise BackupCorrupt(f"backup {doc['id']} names a bad topology path {src}")
        content = _read_object(repo, entry["sha256"], str(src))
        dest = work / TOPOLOGY_COPIES / rel
        for parent in reversed((Path(TOPOLOGY_COPIES) / rel).parents[:-1]):
            private_dir(work / parent)
        write_private_atomically(dest, content)
        if entry.get("role") == "topology":
            served.append(str(target / TOPOLOGY_COPIES / rel))
    return served
