"""The node's accounting adapter (node.usage_probe) on real things: processes run under
real unix uids read from the real /proc, real directory trees walked, usage-files read
through confine."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from slapfed.node.usage import FileCursor, cpu_deltas, rss_by_uid
from slapfed.node.usage_probe import (
    CLK_TCK, MAX_READ, DiskWalker, read_usage_file, scan_processes,
)

pytestmark = pytest.mark.timeout(60)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs processes as other uids")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
UID_A, UID_B = 61_001, 61_002        # no such users needed: the kernel takes the numbers

# burns SECONDS of CPU (in a child it waits for when FORK), says "burnt", then waits
BURN = r"""
import os, sys, time
seconds, fork = float(sys.argv[1]), sys.argv[2] == "fork"
def burn():
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
if fork:
    pid = os.fork()
    if pid == 0:
        burn(); os._exit(0)
    os.waitpid(pid, 0)
else:
    burn()
ballast = bytearray(int(sys.argv[3]))
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
print("burnt", flush=True)
sys.stdin.read()
"""


class Burner:
    def __init__(self, uid, seconds, fork=False, ballast=0):
        self.proc = subprocess.Popen([PY, "-c", BURN, str(seconds), "fork" if fork else "-",
                                      str(ballast)], user=uid, group=uid, extra_groups=[],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd="/", env={"PATH": "/usr/bin:/bin"})

    def wait_burnt(self):
        assert self.proc.stdout.readline().strip() == b"burnt"

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture
def burners():
    made = []

    def start(*args, **kw):
        b = Burner(*args, **kw)
        made.append(b)
        return b
    yield start
    for b in made:
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


@needs_root
def test_one_pass_tells_each_users_cpu_and_memory_and_a_reaped_child_counts_once(burners):
    before = scan_processes({UID_A, UID_B})
    a = burners(UID_A, 0.4, fork=True, ballast=40 << 20)    # the CPU is the child's
    b = burners(UID_B, 0.2)
    a.wait_burnt()
    b.wait_burnt()
    now = scan_processes({UID_A, UID_B})
    assert {p.uid for p in now.values()} == {UID_A, UID_B}
    assert all(p.uid in (UID_A, UID_B) for p in now.values())
    seconds = {uid: t / CLK_TCK for uid, t in cpu_deltas(before, now).items()}
    assert 0.35 <= seconds[UID_A] <= 0.7, seconds          # once, not twice (0.8)
    assert 0.15 <= seconds[UID_B] <= 0.45, seconds
    rss = rss_by_uid(now)
    assert rss[UID_A] >= 40 << 20 > rss[UID_B]
    # a further pass: nothing more spent, nothing counted again
    again = scan_processes({UID_A, UID_B})
    assert sum(cpu_deltas(now, again).values()) / CLK_TCK < 0.1
    a.stop()
    b.stop()
    assert scan_processes({UID_A, UID_B}) == {}


def test_no_user_no_pass():
    assert scan_processes(set()) == {}


# -- disk ------------------------------------------------------------------------------
def _blocks(path):
    return os.lstat(path).st_blocks * 512


def _tree(root, outside):
    os.makedirs(root / "a" / "b" / "c")
    (root / "a" / "one").write_bytes(b"x" * 100_000)
    (root / "a" / "b" / "two").write_bytes(b"y" * 50_000)
    os.link(root / "a" / "one", root / "a" / "b" / "one-again")       # counted once
    with open(root / "sparse", "wb") as fh:                           # holds a few blocks
        fh.seek(1 << 30)
        fh.write(b"z")
    (outside / "big").write_bytes(b"o" * 2_000_000)
    os.symlink(outside / "big", root / "a" / "link-to-big")            # never followed
    os.symlink(outside, root / "a" / "b" / "link-to-dir")
    expected = 0
    for dirpath, dirs, files in os.walk(root):
        expected += _blocks(dirpath)
        for name in dirs:                # a symlink to a directory: its own blocks only
            if os.path.islink(os.path.join(dirpath, name)):
                expected += _blocks(os.path.join(dirpath, name))
        for name in files:
            if name != "one-again":
                expected += _blocks(os.path.join(dirpath, name))
    return expected


def test_the_walk_counts_blocks_once_never_through_symlinks_in_bounded_steps(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    parts = {}
    expected = {}
    for pid in ("p0", "p1"):
        root = tmp_path / pid
        root.mkdir()
        expected[pid] = _tree(root, outside)
        parts[pid] = str(root)
    assert expected["p0"] < 1 << 20            # the sparse GiB and the 2 MB outside: out
    walker = DiskWalker(budget=3)
    seen, steps = {}, 0
    while len(seen) < 2 and steps < 100:
        seen.update(walker.step(parts))
        steps += 1
    assert seen == expected
    assert steps > 3                           # a few entries per step, not all at once
    # round and round: each completes again
    again = {}
    for _ in range(100):
        again.update(walker.step(parts))
    assert again == expected
    walker.close()


def test_a_partition_gone_mid_walk_is_dropped_and_the_others_go_on(tmp_path):
    for pid in ("p0", "p1"):
        (tmp_path / pid / "d").mkdir(parents=True)
        (tmp_path / pid / "d" / "f").write_bytes(b"1" * 10_000)
    walker = DiskWalker(budget=1)
    parts = {"p0": str(tmp_path / "p0"), "p1": str(tmp_path / "p1")}
    walker.step(parts)                          # p0 begun
    del parts["p0"]
    seen = {}
    for _ in range(20):
        seen.update(walker.step(parts))
    assert set(seen) == {"p1"}
    assert walker.step({"gone": str(tmp_path / "nope")}) == {}


@needs_root
def test_the_walk_does_not_cross_into_another_filesystem(tmp_path):
    root = tmp_path / "p0"
    (root / "mnt").mkdir(parents=True)
    (root / "f").write_bytes(b"f" * 8192)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs",
                           str(root / "mnt")], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        (root / "mnt" / "inside").write_bytes(b"i" * 4_000_000)
        seen = {}
        walker = DiskWalker()
        for _ in range(5):
            seen.update(walker.step({"p0": str(root)}))
        walker.close()
        assert seen["p0"] == _blocks(root) + _blocks(root / "f")    # not the mount point
    finally:
        subprocess.run(["umount", str(root / "mnt")], check=True)


# -- the usage-file ---------------------------------------------------------------------
def test_the_usage_file_is_read_from_its_offset_and_anew_when_replaced(tmp_path):
    part = tmp_path / "p0"
    (part / "var").mkdir(parents=True)
    path = part / "var" / "usage.jsonl"
    path.write_bytes(b'{"resource": "x-a", "quantity": 1}\n{"resource": "x-a", "qu')
    lines, cur, skipped = read_usage_file(str(path), str(part), FileCursor())
    assert [u[2] for u in lines.units] == [1.0] and skipped == 0
    with open(path, "ab") as fh:
        fh.write(b'antity": 2}\nnot json\n')
    lines, cur, _ = read_usage_file(str(path), str(part), cur)
    assert [u[2] for u in lines.units] == [2.0] and lines.bad == 1
    lines, cur2, _ = read_usage_file(str(path), str(part), cur)
    assert lines.units == [] and cur2 == cur
    os.unlink(path)                                            # rotated: a new file
    path.write_bytes(b'{"resource": "x-a", "quantity": 5}\n')
    lines, cur, _ = read_usage_file(str(path), str(part), cur)
    assert [u[2] for u in lines.units] == [5.0]


def test_a_huge_backlog_is_skipped_and_counted(tmp_path):
    part = tmp_path / "p0"
    (part / "var").mkdir(parents=True)
    line = b'{"resource": "x-a", "quantity": 1}\n'
    with open(part / "var" / "usage.jsonl", "wb") as fh:
        fh.write(line * (17 * MAX_READ // len(line) + 10))
    lines, cur, skipped = read_usage_file(str(part / "var" / "usage.jsonl"), str(part),
                                          FileCursor())
    assert skipped > 0 and len(lines.units) <= MAX_READ // len(line)


@pytest.mark.parametrize("plant", ["symlink", "fifo", "dir-symlink"])
def test_a_planted_usage_file_gives_nothing(tmp_path, plant):
    part = tmp_path / "p0"
    secret = tmp_path / "secret.jsonl"
    secret.write_bytes(b'{"resource": "x-a", "quantity": 99}\n')
    if plant == "dir-symlink":
        part.mkdir()
        os.symlink(tmp_path, part / "var")
    else:
        (part / "var").mkdir(parents=True)
        if plant == "symlink":
            os.symlink(secret, part / "var" / "usage.jsonl")
        else:
            os.mkfifo(part / "var" / "usage.jsonl")
    lines, cur, _ = read_usage_file(str(part / "var" / "usage.jsonl"), str(part),
                                    FileCursor())
    assert lines.units == [] and cur == FileCursor()
