"""Processes a partition left behind: found by PID in /proc, stopped by PID.

Depends on the standard library only. supervisord stops the processes it started, but
not what those started in their own process groups once it is killed itself (a nested
node's supervisord killed after its stop timeout leaves its services running, orphaned).
A process belongs to a partition when its working directory or its program lies inside
the partition's directory, or when it runs as the partition's own unix user; partitions' directories never overlap, so nothing of another
partition, of the node or of its supervisord is ever touched. Processes with a
controlling terminal (someone's shell in the partition's directory) are left alone.
"""
from __future__ import annotations

import logging
import os
import signal
import time

log = logging.getLogger("slapfed.node")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _uids(base: str) -> set[int]:
    try:
        with open(os.path.join(base, "status")) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return {int(u) for u in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def descendants(pid: int, proc: str = "/proc") -> set[int]:
    """``pid`` and every process below it (children, their children...), from the
    parent PIDs in /proc."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return {pid}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "stat")) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(children.get(p, ()))
    return out


def processes_under(root: str, proc: str = "/proc", uid: int | None = None) -> list[int]:
    """PIDs of the processes whose working directory or program (the executable, or
    the script an interpreter runs) is inside ``root``, or (``uid``: the partition's
    own unix user) that run as that user wherever they are; never this process, never
    a zombie."""
    root = os.path.realpath(root)
    me = os.getpid()
    found = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        base = os.path.join(proc, entry)
        paths = []
        for link in ("cwd", "exe"):
            try:
                paths.append(os.readlink(os.path.join(base, link)))
            except OSError:
                pass
        try:
            with open(os.path.join(base, "cmdline"), "rb") as f:
                argv = f.read().split(b"\0")[:2]
            paths += [os.fsdecode(a) for a in argv if a.startswith(b"/")]
        except OSError:
            pass
        mine = uid is not None and uid != 0 and uid in _uids(base)
        if (mine or any(_inside(p, root) for p in paths)) and not _has_terminal(base) \
                and _alive(int(entry)):         # a zombie runs nothing any more
            found.append(int(entry))
    return sorted(found)


def _has_terminal(base: str) -> bool:
    try:
        with open(os.path.join(base, "stat")) as f:
            return int(f.read().rsplit(")", 1)[1].split()[4]) != 0     # tty_nr
    except (OSError, IndexError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_leftovers(root: str, grace: float = 5.0, user: str | None = None,
                   spare: set | frozenset = frozenset(), why: str = "after its services stopped"
                   ) -> list[int]:
    """SIGTERM every process left inside ``root`` (and, with ``user``, every process of
    the partition's unix user), except the PIDs in ``spare`` (a running supervisord's
    own services), then SIGKILL those still there after ``grace`` seconds; returns
    their PIDs (logged: a partition should leave none)."""
    uid = None
    if user:
        import pwd

        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            uid = None
    pids = [p for p in processes_under(root, uid=uid) if p not in spare]
    if not pids:
        return []
    log.warning("partition %s left %d process(es) running %s: %s; stopping them",
                root, len(pids), why, ", ".join(map(str, pids)))
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        live = [p for p in pids if _alive(p)]
        for pid in live:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while any(_alive(p) for p in live) and time.monotonic() < deadline:
            time.sleep(0.02)
    return pids


def stop_orphans(partitions, supervisord_pid: int | None = None, grace: float = 5.0
                 ) -> dict[str, list[int]]:
    """Stop what each partition runs outside the node's supervisord: ``partitions`` are
    (partition id, directory, unix user or None) triples; the processes of a running
    supervisord (``supervisord_pid``) and of everything below it are spared. After a
    supervisord was killed, its services live on as orphans (holding their ports): they
    must go before a new supervisord starts them again. Returns {partition id: PIDs
    stopped} for the partitions that had some."""
    spare = descendants(supervisord_pid) if supervisord_pid else set()
    stopped = {}
    for pid, path, user in partitions:
        if not os.path.isdir(path):
            continue
        found = stop_leftovers(path, grace=grace, user=user, spare=spare,
                               why="outside the node's supervisord (orphans)")
        if found:
            stopped[pid] = found
    return stopped
