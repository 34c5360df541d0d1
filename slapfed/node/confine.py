"""Files inside a partition directory, touched by the node (root) without trusting them.

Depends on the standard library only. A partition's directory belongs to its unix user,
who may plant symlinks, FIFOs or huge files in it. Everything the node reads or writes
there goes through these helpers: each path component below the partition directory is
opened with O_NOFOLLOW (relative to the directory above it), reads take regular files
only (opened non-blocking, size capped), writes are atomic (a fresh temporary file,
renamed in the same directory) and given the partition user as owner. The partition
directory itself lies in the node's own (root-owned) partitions directory, so its user
cannot replace it. With ``base`` None the helpers act on plain paths (the node's own
files), still refusing a symlink as the last component.

Also the privilege drop shared by every process run as a partition user.
"""
from __future__ import annotations

import os
import pwd
import stat

from ..core.record import Record

MAX_READ = 4 * 1024 * 1024        # bytes the node reads of any file a partition wrote
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """A path that is not where it should be (outside its base, or through a symlink)."""


class Credentials(Record):
    """The unix identity of a partition user: name, uid, gid, supplementary groups."""

    name: str
    uid: int
    gid: int
    groups: tuple = ()
    home: str = "/"

    @classmethod
    def of(cls, name: str, home: str | None = None) -> "Credentials":
        """Look ``name`` up (KeyError when no such user)."""
        entry = pwd.getpwnam(name)
        try:
            groups = tuple(os.getgrouplist(name, entry.pw_gid))
        except OSError:
            groups = (entry.pw_gid,)
        return cls(name, entry.pw_uid, entry.pw_gid, groups, home or entry.pw_dir)

    def drop(self) -> None:
        """Become this user for good (in a child process): supplementary groups, gid,
        then uid (real, effective and saved), so that nothing can be regained."""
        os.setgroups(list(self.groups))
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)

    def environment(self, base: dict | None = None) -> dict:
        """What a process of this user starts with: ``base`` (default: the node's clean
        environment, never root's whole one) plus HOME, USER and LOGNAME."""
        env = dict(clean_environment() if base is None else base)
        env.update({"HOME": self.home, "USER": self.name, "LOGNAME": self.name})
        return env


# what a partition's processes inherit of the node's environment (root's may hold
# credentials of all sorts): the search path, the locale, the time zone
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONPATH")


def clean_environment() -> dict:
    env = {k: os.environ[k] for k in KEPT_ENVIRONMENT if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def credentials(user: str | None, home: str | None = None) -> Credentials | None:
    """Credentials of ``user`` (None for None: the node's own user)."""
    return None if not user else Credentials.of(user, home)


def owner_ids(user: str | None) -> tuple[int, int] | None:
    if not user:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


# -- walking below a base without following symlinks ---------------------------------------


def _parts(base: str, path: str) -> list[str]:
    base = os.path.abspath(base)
    path = os.path.abspath(path)
    rel = os.path.relpath(path, base)
    if rel == "." or rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
        raise UnsafePath(f"{path} is not inside {base}")
    return rel.split(os.sep)


def _open_dir(base: str, parts: list[str], create: bool = False, mode: int = 0o700,
              owner: tuple[int, int] | None = None, trusted_base_link: bool = False) -> int:
    """An fd of the directory base/parts..., every component opened O_NOFOLLOW; with
    ``create``, missing directories are made (``mode``, ``owner``)."""
    fd = os.open(base, _DIR_FLAGS if trusted_base_link is False else
                 _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for name in parts:
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    pass
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                os.chmod(nfd, mode)   # exact, whatever the umask
                if owner is not None:
                    os.fchown(nfd, *owner)
            except OSError as exc:
                if exc.errno in (20, 40):     # ENOTDIR, ELOOP: not a directory, or a symlink
                    raise UnsafePath(exc.errno, f"{name} below {base} is not a directory "
                                                f"(a symlink or a file)") from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def makedirs(base: str, path: str, mode: int = 0o755, owner: tuple[int, int] | None = None
             ) -> None:
    """Create ``path`` (and what is missing above it) below ``base``."""
    os.close(_open_dir(base, _parts(base, path), create=True, mode=mode, owner=owner))


def _split(base: str | None, path: str):
    if base is None:
        directory, name = os.path.split(os.path.abspath(path))
        return directory, [], name
    parts = _parts(base, path)
    return base, parts[:-1], parts[-1]


def _open_regular(path: str, base: str | None):
    """(fd, stat) of regular file ``path`` opened read-only without following a symlink
    on the way or at the end, or None; the caller closes fd."""
    try:
        top, parts, name = _split(base, path)
        dfd = _open_dir(top, parts, trusted_base_link=base is None)
    except OSError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def read_bytes(path: str, base: str | None = None, limit: int = MAX_READ) -> bytes | None:
    """The content of regular file ``path`` (at most ``limit`` bytes: the last ones), or
    None when it is absent, not a regular file, or reached through a symlink."""
    opened = _open_regular(path, base)
    if opened is None:
        return None
    fd, st = opened
    try:
        if st.st_size > limit:
            os.lseek(fd, st.st_size - limit, os.SEEK_SET)
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_span(path: str, base: str | None, start_for, limit: int = MAX_READ):
    """Read regular file ``path`` from an offset on (the way read_bytes opens it: no
    symlink, nothing but a regular file): ``start_for(dev, ino, size)`` says where to
    start, knowing which file it is and how long. Returns (data (at most ``limit``
    bytes), dev, ino, size, start), or None when there is no such regular file."""
    opened = _open_regular(path, base)
    if opened is None:
        return None
    fd, st = opened
    try:
        start = max(0, min(int(start_for(st.st_dev, st.st_ino, st.st_size)), st.st_size))
        data = os.pread(fd, min(limit, st.st_size - start), start) if st.st_size > start \
            else b""
        return data, st.st_dev, st.st_ino, st.st_size, start
    except OSError:
        return None
    finally:
        os.close(fd)


def write_bytes(path: str, data: bytes, base: str | None = None, mode: int = 0o600,
                owner: tuple[int, int] | None = None, dir_mode: int = 0o700) -> None:
    """Write ``path`` atomically (a new temporary file renamed over it): a symlink or
    anything else in its place is replaced, never followed. Missing directories below
    ``base`` are created (``dir_mode``, ``owner``)."""
    top, parts, name = _split(base, path)
    dfd = _open_dir(top, parts, create=base is not None, mode=dir_mode, owner=owner,
                    trusted_base_link=base is None)
    tmp = f".{name}.tmp-{os.getpid()}"
    try:
        with _suppress_missing():
            os.unlink(tmp, dir_fd=dfd)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=dfd)
        try:
            os.fchmod(fd, mode)
            if owner is not None:
                os.fchown(fd, *owner)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with _suppress_missing():
            os.unlink(tmp, dir_fd=dfd)
        raise
    finally:
        os.close(dfd)


def append_text(path: str, text: str, base: str | None = None, mode: int = 0o600,
                owner: tuple[int, int] | None = None) -> None:
    """Append to ``path`` (created when absent), never through a symlink, never to
    anything but a regular file (a FIFO there is left alone)."""
    top, parts, name = _split(base, path)
    dfd = _open_dir(top, parts, create=base is not None, owner=owner,
                    trusted_base_link=base is None)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_NONBLOCK | os.O_CLOEXEC, mode, dir_fd=dfd)
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{path} is not a regular file")
        if owner is not None and st.st_uid == 0 and os.geteuid() == 0:
            os.fchown(fd, *owner)
        os.write(fd, text.encode("utf-8", "replace"))
    finally:
        os.close(fd)


class _suppress_missing:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is not None and issubclass(kind, FileNotFoundError)


def chown_tree(path: str, uid: int, gid: int) -> None:
    """Give everything under directory ``path`` (itself included) to uid:gid without
    ever following a symlink (os.fwalk opens each directory relative to its parent and
    checks it is the one listed)."""
    dfd = os.open(path, _DIR_FLAGS)
    try:
        os.fchown(dfd, uid, gid)
    finally:
        os.close(dfd)
    for _root, dirs, files, rootfd in os.fwalk(path, follow_symlinks=False):
        for name in dirs + files:
            try:
                os.chown(name, uid, gid, dir_fd=rootfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
