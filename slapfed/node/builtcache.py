"""The shared cache of built releases: one archive of a release's installed software
directory per (release, profile files, software buildout, path, platform), written
after a successful install and unpacked instead of building when present.

Depends on slapfed.core.builtcache (what is decided) and the standard library. Layout
of the cache directory ``DIR`` (``node format --shared-cache DIR``, possibly shared by
several nodes): ``DIR/built/<key>/`` holds ``software.tar.gz`` and ``manifest.json``
(the archive's sha256 and size, and the facts of the key), written last. An entry is
made complete in ``DIR/built/.tmp-*`` and renamed into place as a whole: a rename onto
an entry already there fails, so of two nodes filling one entry the first wins and the
other drops its copy; a reader never sees half an entry.

Nothing read from the cache is trusted: the manifest must be this install's (key, path,
facts); the archive is opened once, without following a symbolic link, and its sha256
checked against the manifest before any member is looked at; the members are checked
(slapfed.core.builtcache.members_problems) before any is written; extraction happens
beside the software directory and is renamed into place only once complete. An entry
that fails any check is moved aside and removed, and the release is built as if there
were no cache (the new build then fills the entry again). Whoever can write the cache
can still give nodes software of their choosing, as with the download cache: it belongs
on storage only the nodes' operators can write.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.metadata
import logging
import os
import platform
import re
import shutil
import socket
import stat
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass

from ..core import builtcache as core
from ..core.builtcache import ARCHIVE, MANIFEST, Member

log = logging.getLogger("slapfed.node")

MAX_FILES = 20000              # a release directory larger than this is not cached
MAX_BYTES = 256 * 1024 * 1024
LEFTOVER_AGE = 3600.0          # seconds after which a .tmp-/.trash- left by a dead node goes
CHUNK = 1 << 20


class NotCacheable(Exception):
    """This release, or what its install made, cannot go into the cache (the reason)."""


@dataclass(frozen=True)
class Outcome:
    """What the cache did for one install: ``hit`` (unpacked), or why not (``note``)."""

    hit: bool
    note: str
    built_seconds: float = 0.0


def built_dir(cache: str) -> str:
    return os.path.join(cache, "built")


def entry_dir(cache: str, key: str) -> str:
    return os.path.join(built_dir(cache), key)


# -- the key's facts ---------------------------------------------------------------------

_EXTENDS = re.compile(r"extends\s*\+?=(.*)\Z")
_SECTION = re.compile(r"\[\s*([^\]]+?)\s*\]")


def _extends_of(text: str) -> list[str]:
    """The profiles a buildout file's [buildout] section extends (its own syntax: an
    option continues on lines that start with whitespace)."""
    out, section, taking = [], None, False
    for line in text.splitlines():
        if line[:1] in (" ", "\t"):
            if taking:
                out += line.split()
            continue
        taking = False
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        m = _SECTION.match(stripped)
        if m:
            section = m.group(1)
            continue
        if section == "buildout":
            m = _EXTENDS.match(stripped)
            if m:
                out += m.group(1).split()
                taking = True
    return out


def _local(location: str) -> str:
    if location.startswith("file://"):
        return location[len("file://"):]
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", location):
        raise NotCacheable(f"it extends or is a remote profile ({location}); only a release "
                           "made of local files can be keyed by their contents")
    return location


def release_digest(location: str) -> str:
    """sha256 over every file of the release's directory (names, symbolic links' targets,
    contents) and every local profile its software.cfg extends, transitively; NotCacheable
    for a remote profile, a missing one, or a release directory too large to digest."""
    path = os.path.abspath(_local(location))
    top = os.path.dirname(path)
    digest, files, total = hashlib.sha256(), 0, 0
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames + [d for d in dirnames
                                        if os.path.islink(os.path.join(dirpath, d))]):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, top)
            files += 1
            if files > MAX_FILES:
                raise NotCacheable(f"its directory {top} holds more than {MAX_FILES} files")
            if os.path.islink(full):
                digest.update(b"L" + rel.encode() + b"\0" + os.readlink(full).encode() + b"\0")
                continue
            try:
                st = os.stat(full)
                if not stat.S_ISREG(st.st_mode):
                    continue
                total += st.st_size
                if total > MAX_BYTES:
                    raise NotCacheable(f"its directory {top} holds more than "
                                       f"{MAX_BYTES >> 20} MB")
                digest.update(b"F" + rel.encode() + b"\0" + _file_sha256(full) + b"\0")
            except OSError as exc:
                raise NotCacheable(f"cannot read {full}: {exc.strerror}") from None
    # profiles it extends outside its own directory, transitively
    seen, todo = {path}, [path]
    while todo:
        current = todo.pop()
        try:
            with open(current, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeError) as exc:
            raise NotCacheable(f"cannot read profile {current}: {exc}") from None
        for ext in _extends_of(text):
            target = os.path.normpath(os.path.join(os.path.dirname(current), _local(ext)))
            if target in seen:
                continue
            seen.add(target)
            todo.append(target)
            if not (target + os.sep).startswith(top + os.sep):
                try:
                    digest.update(b"E" + target.encode() + b"\0" + _file_sha256(target)
                                  + b"\0")
                except OSError as exc:
                    raise NotCacheable(f"cannot read profile {target}: "
                                       f"{exc.strerror}") from None
    return digest.hexdigest()


def _file_sha256(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.digest()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


def platform_facts() -> dict:
    """What a build depends on besides its profiles: the interpreter (its path too, which
    scripts embed), the machine, the C library, zc.buildout's and slapfed's versions."""
    return {"python": sys.version, "executable": sys.executable,
            "cache_tag": sys.implementation.cache_tag, "machine": platform.machine(),
            "system": platform.system(), "libc": " ".join(platform.libc_ver()),
            "zc.buildout": _version("zc.buildout"), "slapfed": _version("slapfed")}


def facts(url: str, location: str, software_dir: str, software_cfg: str) -> dict:
    """The facts keying a release's built software directory (NotCacheable: none).
    ``software_cfg`` is the generated software buildout (with the directory, the download
    cache), rendered the same way whether the node is online or not."""
    return {"url": url, "profiles": release_digest(location), "software_dir": software_dir,
            "software_cfg": hashlib.sha256(software_cfg.encode()).hexdigest(),
            "platform": platform_facts()}


# -- reading an entry ----------------------------------------------------------------------

def _kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "dir"
    if info.isreg():
        return "file"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "FIFO"
    return "member of another type"


def _discard(cache: str, key: str, why: str) -> None:
    """Move entry ``key`` aside (one rename: a reader holding its files keeps them) and
    remove it."""
    log.warning("built-part cache: entry %s ignored and removed: %s", key[:16], why)
    aside = os.path.join(built_dir(cache), f".trash-{key}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(entry_dir(cache, key), aside)
    except OSError:
        return                       # gone already (another node did it)
    shutil.rmtree(aside, ignore_errors=True)


def _read_small(path: str, limit: int = 1 << 20) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError("not a regular file")
        return fh.read(limit)


def unpack(cache: str, key: str, software_dir: str, entry_facts: dict) -> Outcome:
    """Put entry ``key`` in place as ``software_dir`` if it is there and sound; a miss
    (with the reason) otherwise, having removed an entry that is not sound."""
    where = entry_dir(cache, key)
    if not os.path.isdir(where) or os.path.islink(where):
        return Outcome(False, "no entry yet")
    try:
        raw = _read_small(os.path.join(where, MANIFEST))
    except OSError as exc:
        # entries are renamed into place whole, manifest included: this one was damaged
        _discard(cache, key, f"its manifest cannot be read: {exc.strerror or exc}")
        return Outcome(False, "entry ignored: no manifest")
    manifest = core.read_manifest(raw, key, software_dir, entry_facts)
    if isinstance(manifest, str):
        _discard(cache, key, manifest)
        return Outcome(False, f"entry ignored: {manifest}")
    try:
        fd = os.open(os.path.join(where, ARCHIVE), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        _discard(cache, key, f"its archive cannot be opened: {exc.strerror}")
        return Outcome(False, "entry ignored: no archive")
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        h = hashlib.sha256()
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
        if not stat.S_ISREG(st.st_mode) or st.st_size != manifest.size or \
                h.hexdigest() != manifest.sha256:
            _discard(cache, key, "its archive does not match the sha256 of its manifest")
            return Outcome(False, "entry ignored: its archive does not match its manifest")
        fh.seek(0)
        parent = os.path.dirname(software_dir)
        staging = os.path.join(parent, f".unpack-{os.path.basename(software_dir)}-"
                                       f"{uuid.uuid4().hex[:8]}")
        try:
            problems = _extract(fh, staging, software_dir)
        except (OSError, tarfile.TarError, EOFError, gzip.BadGzipFile, ValueError) as exc:
            problems = [f"unreadable archive: {exc}"]
        if problems:
            shutil.rmtree(staging, ignore_errors=True)
            _discard(cache, key, "; ".join(problems[:5]))
            return Outcome(False, "entry refused: " + "; ".join(problems[:3]))
    old = os.path.join(parent, f".old-{os.path.basename(software_dir)}-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(software_dir, old)
    os.rename(staging, software_dir)
    shutil.rmtree(old, ignore_errors=True)
    return Outcome(True, f"unpacked entry {key[:16]} (built in {manifest.built_seconds:.1f} s "
                         f"by {manifest.built_by or 'a node'})", manifest.built_seconds)


def _extract(fh, staging: str, software_dir: str) -> list[str]:
    """Check every member, then write them below ``staging`` (created here); the
    problems found ([]: all written)."""
    with tarfile.open(fileobj=fh, mode="r:gz") as tar:
        infos = tar.getmembers()
        problems = core.members_problems(
            [Member(i.name, _kind(i), i.linkname if i.issym() else "") for i in infos],
            software_dir)
        if problems:
            return problems
        os.mkdir(staging, 0o700)
        dirs = []
        for info in infos:
            target = os.path.join(staging, info.name.rstrip("/"))
            mode = info.mode & 0o777           # never setuid, setgid or sticky
            if info.isdir():
                os.makedirs(target, 0o700, exist_ok=True)
                dirs.append((target, mode, info.mtime))
                continue
            os.makedirs(os.path.dirname(target), 0o700, exist_ok=True)
            if info.issym():
                os.symlink(info.linkname, target)
                continue
            src = tar.extractfile(info)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
                os.fchmod(out.fileno(), mode)
            os.utime(target, (info.mtime, info.mtime), follow_symlinks=False)
        for target, mode, mtime in reversed(dirs):
            os.chmod(target, mode | 0o700)
            os.utime(target, (mtime, mtime))
        os.chmod(staging, 0o755)
    return []


# -- writing an entry ----------------------------------------------------------------------

class _Hashing:
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, fh):
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def _walk(software_dir: str):
    """(relative name, lstat, link target) of everything below ``software_dir``, parents
    first, in name order; NotCacheable for what an archive may not hold."""
    out = []
    for dirpath, dirnames, filenames in os.walk(software_dir):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, software_dir)
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d not in links]
        for name in sorted(dirnames + filenames + links):
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            st = os.lstat(full)
            link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
            out.append((rel, st, link))
    members = [Member(rel, "dir" if stat.S_ISDIR(st.st_mode) else "file"
                      if stat.S_ISREG(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode)
                      else "special file", link) for rel, st, link in out]
    problems = core.members_problems(members, software_dir)
    if problems:
        raise NotCacheable("the installed software holds " + "; ".join(problems[:3]))
    return out


def _sweep(cache: str) -> None:
    """Remove what dead nodes left half-written or aside, once old enough."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(built_dir(cache)):
            if entry.name.startswith((".tmp-", ".trash-")):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > LEFTOVER_AGE:
                        shutil.rmtree(entry.path, ignore_errors=True)


def publish(cache: str, key: str, software_dir: str, entry_facts: dict,
            built_seconds: float) -> str:
    """Archive ``software_dir`` as entry ``key`` (unless one is there already); what was
    done, in words. NotCacheable when the software directory cannot be archived."""
    where = entry_dir(cache, key)
    if os.path.exists(where):
        return "an entry is there already"
    members = _walk(software_dir)
    os.makedirs(built_dir(cache), 0o755, exist_ok=True)
    _sweep(cache)
    tmp = os.path.join(built_dir(cache), f".tmp-{key[:16]}-{uuid.uuid4().hex[:12]}")
    os.mkdir(tmp, 0o755)
    try:
        with open(os.path.join(tmp, ARCHIVE), "wb") as raw:
            sink = _Hashing(raw)
            with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=1, mtime=0) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for rel, st, link in members:
                    info = tarfile.TarInfo(rel)
                    info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
                    if stat.S_ISDIR(st.st_mode):
                        info.type = tarfile.DIRTYPE
                        tar.addfile(info)
                    elif stat.S_ISLNK(st.st_mode):
                        info.type, info.linkname = tarfile.SYMTYPE, link
                        tar.addfile(info)
                    else:
                        with open(os.path.join(software_dir, rel), "rb") as src:
                            info.size = os.fstat(src.fileno()).st_size
                            tar.addfile(info, src)
            raw.flush()
            os.fsync(raw.fileno())
        manifest = core.Manifest(key, software_dir, sink.sha.hexdigest(), sink.size,
                                 entry_facts, round(built_seconds, 3), socket.gethostname())
        with open(os.path.join(tmp, MANIFEST + ".tmp"), "w", encoding="utf-8") as fh:
            fh.write(manifest.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(os.path.join(tmp, MANIFEST + ".tmp"), os.path.join(tmp, MANIFEST))
        try:
            os.rename(tmp, where)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return "another node stored it first"
        return f"stored as entry {key[:16]} ({sink.size} bytes)"
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
