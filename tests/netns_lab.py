"""Network namespaces for failure tests: hosts the test creates, links it cuts and impairs.

A ``Lab`` (the ``netns`` fixture of conftest.py) creates named network namespaces
(``ip netns add``, names made from the test run's PID and a counter) and point-to-point
links between the root namespace and one of them, each on its own /30 of 10.213.0.0/16
that the lab assigns (10.213.<pid % 256>.<4k+1> on the root side, <4k+2> inside): no
traffic ever goes to an address the lab did not assign on an interface it created.

- ``lab.namespace(label)`` -> Namespace: loopback up; ``ns.proc(argv, log)`` runs a
  process inside (``ip netns exec``, which execs: the PID tracked is the program's),
  ``ns.call(fn)`` runs a Python callable in a thread that joined the namespace (to reach
  a service listening on the namespace's loopback, for instance).
- ``lab.link(ns)`` -> a veth pair: ``cut()`` sets the namespace's end down (a partition:
  nothing crosses, the root side keeps its address), ``heal()`` sets it up again;
  ``impair(loss=, delay_ms=)`` puts netem on both ends.
- ``lab.link(ns, impairable=True)``: the same veth pair when the kernel has netem; on a
  kernel without it (``tc`` answers "unknown qdisc"), a pair of TUN devices joined by a
  userspace forwarder in this process that drops and delays each packet, each direction
  independently — the same loss and delay, the same cut (every packet dropped) and heal.
  ``link.kind`` says which one the test got.

Teardown (even on failure): the processes started with ``ns.proc`` are stopped by PID
(SIGTERM, then SIGKILL), then any process still inside a lab namespace (its children:
a supervisord, services) by PID as ``ip netns pids`` lists them; links are deleted, TUN
descriptors closed, namespaces deleted. ``Lab.available()`` says why a machine cannot
run these tests (not root, no ``ip``/``tc``, ``ip netns add`` refused) for a skip.
"""
from __future__ import annotations

import fcntl
import heapq
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

from slapfed.procs import Proc, stop_pid

SUBNET = "10.213"
CLONE_NEWNET = 0x40000000


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _setns(fd: int) -> None:
    """Join the network namespace open on ``fd`` (this thread only)."""
    if hasattr(os, "setns"):                       # Python 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Namespace:
    def __init__(self, lab: "Lab", name: str):
        self.lab, self.name = lab, name
        self.procs: list[Proc] = []

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def proc(self, argv: list[str], log: Path, **kw) -> Proc:
        p = Proc(self.argv(argv), log, **kw)
        self.procs.append(p)
        return p

    def run(self, argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(argv), capture_output=True, text=True,
                              timeout=timeout, **kw)

    def call(self, fn, *args, timeout: float = 30):
        """fn(*args) in a thread that joined this namespace: its sockets are inside."""
        out: dict = {}

        def inside():
            try:
                fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
                try:
                    _setns(fd)
                finally:
                    os.close(fd)
                out["value"] = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                out["error"] = exc
        t = threading.Thread(target=inside, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError(f"{fn!r} in namespace {self.name} took over {timeout:g} s")
        if "error" in out:
            raise out["error"]
        return out["value"]

    def pids(self) -> list[int]:
        done = ip("netns", "pids", self.name, check=False)
        return [int(p) for p in done.stdout.split() if p.isdigit()]


class VethLink:
    """A veth pair: ``outer`` in the root namespace (``outer_ip``), ``inner`` in ``ns``."""

    kind = "veth"

    def __init__(self, lab: "Lab", ns: Namespace, index: int):
        self.ns = ns
        self.outer, self.inner = lab.ifname(index, "o"), lab.ifname(index, "i")
        self.outer_ip, self.inner_ip = lab.addresses(index)
        ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        ip("link", "set", self.inner, "netns", ns.name)
        ip("addr", "add", f"{self.outer_ip}/30", "dev", self.outer)
        ip("-n", ns.name, "addr", "add", f"{self.inner_ip}/30", "dev", self.inner)
        ip("link", "set", self.outer, "up")
        ip("-n", ns.name, "link", "set", self.inner, "up")

    def cut(self) -> None:
        ip("-n", self.ns.name, "link", "set", self.inner, "down")

    def heal(self) -> None:
        ip("-n", self.ns.name, "link", "set", self.inner, "up")

    def _tc(self, inside: bool, *args: str) -> subprocess.CompletedProcess:
        argv = ["tc", *(("-n", self.ns.name) if inside else ()), "qdisc", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)

    def try_netem(self) -> bool:
        """Whether this kernel has netem (tried on this link, then removed)."""
        done = self._tc(False, "add", "dev", self.outer, "root", "netem", "delay", "0ms")
        if done.returncode != 0:
            return False
        self._tc(False, "del", "dev", self.outer, "root")
        return True

    def impair(self, loss: float = 0.0, delay_ms: float = 0.0) -> None:
        for inside, dev in ((False, self.outer), (True, self.inner)):
            done = self._tc(inside, "replace", "dev", dev, "root", "netem",
                            "loss", f"{loss:g}%", "delay", f"{delay_ms:g}ms")
            if done.returncode != 0:
                raise RuntimeError(f"tc netem on {dev}: {done.stderr.strip()}")

    def close(self) -> None:
        ip("link", "del", self.outer, check=False)     # deletes both ends


TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class TunLink:
    """Two TUN devices (one in the root namespace, one in ``ns``) whose packets this
    process carries across, dropping each with probability ``loss`` % and holding it
    ``delay_ms`` ms, in each direction; cut() drops everything."""

    kind = "tun"

    def __init__(self, lab: "Lab", ns: Namespace, index: int):
        self.ns = ns
        self.outer, self.inner = lab.ifname(index, "o"), lab.ifname(index, "i")
        self.outer_ip, self.inner_ip = lab.addresses(index)
        self.loss, self.delay, self.blackhole = 0.0, 0.0, False
        self.dropped = self.carried = 0
        self._rng = random.Random(index)
        self._fds: list[int] = []
        self._stop = threading.Event()
        self._fds.append(_open_tun(self.outer))
        self._fds.append(_open_tun(self.inner))
        ip("link", "set", self.inner, "netns", ns.name)
        ip("addr", "add", self.outer_ip, "peer", self.inner_ip, "dev", self.outer)
        ip("-n", ns.name, "addr", "add", self.inner_ip, "peer", self.outer_ip, "dev", self.inner)
        ip("link", "set", self.outer, "up")
        ip("-n", ns.name, "link", "set", self.inner, "up")
        self._thread = threading.Thread(target=self._carry, daemon=True,
                                        name=f"tun-link {self.outer}")
        self._thread.start()

    def cut(self) -> None:
        self.blackhole = True

    def heal(self) -> None:
        self.blackhole = False

    def impair(self, loss: float = 0.0, delay_ms: float = 0.0) -> None:
        self.loss, self.delay = float(loss), float(delay_ms) / 1000.0
        self.dropped = self.carried = 0          # counted from here on

    def _carry(self) -> None:
        outer, inner = self._fds
        other = {outer: inner, inner: outer}
        due: list[tuple[float, int, int, bytes]] = []     # (when, seq, fd, packet)
        seq = 0
        while not self._stop.is_set():
            wait = 0.05 if not due else max(0.0, min(0.05, due[0][0] - time.monotonic()))
            try:
                ready, _, _ = select.select([outer, inner], [], [], wait)
            except (OSError, ValueError):
                return
            now = time.monotonic()
            for fd in ready:
                try:
                    packet = os.read(fd, 65536)
                except OSError:
                    continue
                if self.blackhole or self._rng.random() * 100.0 < self.loss:
                    self.dropped += 1
                    continue
                seq += 1
                heapq.heappush(due, (now + self.delay, seq, other[fd], packet))
            while due and due[0][0] <= time.monotonic():
                _, _, fd, packet = heapq.heappop(due)
                if self.blackhole:
                    self.dropped += 1
                    continue
                try:
                    os.write(fd, packet)
                    self.carried += 1
                except OSError:
                    self.dropped += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for fd in self._fds:            # the last descriptor closed removes the device
            os.close(fd)
        self._fds = []


class Lab:
    def __init__(self, tag: str | None = None):
        self.tag = tag or str(os.getpid())
        self.namespaces: list[Namespace] = []
        self.links: list = []
        self._netem: bool | None = None

    @staticmethod
    def available() -> str | None:
        """None when this machine can run the lab, else why not."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        for tool in ("ip", "tc"):
            if shutil.which(tool) is None:
                return f"no `{tool}` (iproute2) on this machine"
        probe = f"sfprobe-{os.getpid()}"
        done = ip("netns", "add", probe, check=False)
        if done.returncode != 0:
            return f"`ip netns add` refused: {done.stderr.strip()}"
        ip("netns", "del", probe, check=False)
        return None

    def ifname(self, index: int, side: str) -> str:
        return f"sf{int(self.tag) % 10**7}{side}{index}"[:15]

    def addresses(self, index: int) -> tuple[str, str]:
        third = int(self.tag) % 256
        if index >= 63:
            raise RuntimeError("a lab has at most 63 links")
        return f"{SUBNET}.{third}.{4 * index + 1}", f"{SUBNET}.{third}.{4 * index + 2}"

    def namespace(self, label: str) -> Namespace:
        name = f"slapfed-{self.tag}-{len(self.namespaces)}-{label}"
        ip("netns", "add", name)
        ns = Namespace(self, name)
        self.namespaces.append(ns)
        ip("-n", name, "link", "set", "lo", "up")
        return ns

    def link(self, ns: Namespace, impairable: bool = False):
        index = len(self.links)
        link = VethLink(self, ns, index)
        if impairable:
            if self._netem is None:
                self._netem = link.try_netem()
            if not self._netem:
                link.close()
                link = TunLink(self, ns, index)
        self.links.append(link)
        return link

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            for p in reversed(ns.procs):
                p.stop()
            for pid in ns.pids():           # what they left inside: stopped by PID
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            for pid in ns.pids():
                stop_pid(pid, timeout=5)
        for link in reversed(self.links):
            link.close()
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns.name, check=False)
        self.links, self.namespaces = [], []
