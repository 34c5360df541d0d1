"""Accounting on the node, the reading part: one pass over /proc for every partition
user, a bounded walk of the partitions' directories, the instances' usage-files.

Depends on the standard library, node.confine (the usage-file is the tenant's: read
without following a symlink, capped) and node.usage (the values it fills).

Why /proc and not cgroups: partitions run as their own unix users, so a partition's
processes are those of its user; a cgroup per partition would need the node's
supervisord to place each service in one, and where cgroup v2 is mounted beside v1
(hybrid hosts) its cpu and memory controllers are not available there. One pass over
/proc serves every partition: a process directory's owner (one stat) tells whether it
belongs to a partition user, and only those have their stat line read.
"""
from __future__ import annotations

import os
import stat

from . import confine
from .usage import MAX_READ, FileCursor, FileLines, Proc, parse_lines

PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def parse_stat(data: bytes, uid: int) -> Proc | None:
    """A Proc of one /proc/<pid>/stat line (None when it is not one). The command name,
    which its process chooses, is skipped up to the last ')'."""
    try:
        pid = int(data[:data.index(b" ")])
        rest = data[data.rindex(b")") + 2:].split()
        return Proc(pid, int(rest[19]), uid, int(rest[1]), int(rest[11]) + int(rest[12]),
                    int(rest[13]) + int(rest[14]), int(rest[21]) * PAGE)
    except (ValueError, IndexError):
        return None


def scan_processes(uids, proc: str = "/proc") -> dict:
    """{(pid, start): Proc} of every process whose owner is in ``uids``, in one pass."""
    out = {}
    wanted = frozenset(uids)
    if not wanted:
        return out
    try:
        entries = os.scandir(proc)
    except OSError:
        return out
    with entries:
        for entry in entries:
            name = entry.name
            if not name.isdigit():
                continue
            try:
                uid = entry.stat(follow_symlinks=False).st_uid
                if uid not in wanted:
                    continue
                fd = os.open(f"{proc}/{name}/stat", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    data = os.read(fd, 4096)
                finally:
                    os.close(fd)
            except OSError:            # the process ended meanwhile
                continue
            p = parse_stat(data, uid)
            if p is not None:
                out[p.key] = p
    return out


# -- disk --------------------------------------------------------------------------------

MAX_DEPTH = 64          # directories deeper than this below a partition are not walked
MAX_LINKS = 100_000     # hard-linked files remembered per walk (beyond: each counted)


class _Walk:
    """A walk of one partition directory in steps: blocks used (st_blocks, so a sparse
    file counts what it holds), never through a symlink (each directory opened
    O_NOFOLLOW relative to its parent, and checked to be the one listed), never into
    another filesystem (a mount point below is left out), each hard-linked file once."""

    def __init__(self, path: str):
        fd = os.open(path, _DIR)
        st = os.fstat(fd)
        self.dev = st.st_dev
        self.used = st.st_blocks * 512
        self.links: set = set()
        self.stack = [(fd, os.scandir(fd))]

    @property
    def done(self) -> bool:
        return not self.stack

    def advance(self, budget: int) -> int:
        """Look at up to ``budget`` entries; returns how many it looked at."""
        seen = 0
        while self.stack and seen < budget:
            fd, entries = self.stack[-1]
            try:
                entry = next(entries, None)
            except OSError:
                entry = None
            if entry is None:
                self._pop()
                continue
            seen += 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != self.dev:
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                key = st.st_ino
                if key in self.links:
                    continue
                if len(self.links) < MAX_LINKS:
                    self.links.add(key)
            self.used += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode) and len(self.stack) < MAX_DEPTH:
                try:
                    child = os.open(entry.name, _DIR, dir_fd=fd)
                except OSError:
                    continue
                cst = os.fstat(child)
                if (cst.st_dev, cst.st_ino) != (st.st_dev, st.st_ino):
                    os.close(child)    # replaced between the listing and the open
                    continue
                self.stack.append((child, os.scandir(child)))
        return seen

    def _pop(self) -> None:
        fd, entries = self.stack.pop()
        entries.close()
        os.close(fd)

    def close(self) -> None:
        while self.stack:
            self._pop()


class DiskWalker:
    """Walks the partitions' directories one after the other, ``budget`` entries per
    step at most (one walk open at a time, so its open descriptors are bounded by
    MAX_DEPTH): a partition's figure is known once its walk completes."""

    def __init__(self, budget: int = 5000):
        self.budget = budget
        self.current: tuple[str, _Walk] | None = None
        self.after: str | None = None         # the last partition whose walk began

    def step(self, partitions: dict) -> dict:
        """One step over ``partitions`` ({id: directory}): {id: bytes used} of the walks
        that completed in it (each partition at most once per step)."""
        done: dict = {}
        left = self.budget
        begun: set = set()
        while left > 0 and partitions:
            if self.current is not None and self.current[0] not in partitions:
                self.current[1].close()
                self.current = None
            if self.current is None:
                order = sorted(partitions)
                nxt = next((p for p in order if self.after is None or p > self.after),
                           order[0])
                if nxt in begun or nxt in done:
                    break
                self.after = nxt
                begun.add(nxt)
                try:
                    self.current = (nxt, _Walk(partitions[nxt]))
                except OSError:
                    continue
            pid, walk = self.current
            left -= max(1, walk.advance(left))
            if walk.done:
                done[pid] = walk.used
                self.current = None
        return done

    def close(self) -> None:
        if self.current is not None:
            self.current[1].close()
            self.current = None


# -- the instance's usage-file -------------------------------------------------------------

MAX_BACKLOG = 16 * MAX_READ     # unread bytes beyond this are skipped (and counted)


def read_usage_file(path: str, base: str, cursor: FileCursor):
    """(FileLines, the new cursor, bytes skipped) of what the instance appended to its
    usage-file since ``cursor``: through confine (no symlink, regular file only), at
    most MAX_READ bytes per call; a file that is absent gives nothing (and keeps the
    cursor)."""
    skipped = [0]

    def start_for(dev, ino, size):
        start, skip = cursor.start_for(dev, ino, size, MAX_BACKLOG)
        skipped[0] = skip
        return start

    got = confine.read_span(path, base, start_for, MAX_READ)
    if got is None:
        return FileLines(), cursor, 0
    data, dev, ino, _size, start = got
    lines = parse_lines(data)
    return lines, FileCursor(dev, ino, start + lines.consumed), skipped[0]
