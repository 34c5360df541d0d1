"""The node survives itself: a killed supervisord leaves no orphan behind (the agent
stops them by PID before starting services again, and so does `slapfed node stop`),
and a slow release install never holds up the actions on other partitions. Real
master process, real node agent process, real supervisord, real buildout runs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import xmlrpc.client
from pathlib import Path

import pytest

from slapfed.client import MasterClient
from slapfed.node.layout import Paths, format_node, load_config
from slapfed.node.leftovers import processes_under
from slapfed.node.supervisor import Supervisor
from slapfed.procs import Proc, pid_alive, slapfed_argv, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")


def get(url, timeout=3):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def answers(url) -> bool:
    try:
        return bool(get(url))
    except OSError:
        return False


class Node:
    """A formatted node root whose agent runs as a real `slapfed node run` process."""

    def __init__(self, root: Path, url: str, computer: str, partitions: int = 1):
        self.root = root
        self.config = format_node(str(root), url, computer, partitions)
        self.client = MasterClient(url, requester="alice")
        self.client.register_computer(self.config.registration())
        self.paths = Paths(str(root))
        self.sup = Supervisor(self.paths)
        self.agent: Proc | None = None
        self.runs = 0

    def start_agent(self) -> Proc:
        self.runs += 1
        self.agent = Proc(slapfed_argv("node", "run", "--root", str(self.root),
                                       "--interval", "0.2", "-v"),
                          self.root.parent / f"agent-{self.runs}.log")
        return self.agent

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None

    def log(self) -> str:
        return "".join((self.root.parent / f"agent-{i}.log").read_text()
                       for i in range(1, self.runs + 1))

    def state(self, instance_id: str) -> dict:
        return self.client.show(instance_id)["status"] or {}

    def service_pid(self, pid: str, program: str) -> int | None:
        try:
            info = self.sup.rpc.getProcessInfo(f"{pid}:{pid}_{program}")
        except (OSError, xmlrpc.client.Error):       # not running (yet)
            self.sup._reset()
            return None
        return info["pid"] if info["statename"] in ("STARTING", "RUNNING") else None

    def partition_processes(self, pid: str) -> list[int]:
        part = load_config(str(self.root)).partition(pid)
        import pwd
        return processes_under(self.paths.partition(pid).path,
                               uid=pwd.getpwnam(part.user).pw_uid if part.user else None)

    def cleanup(self) -> None:
        self.stop_agent()
        subprocess.run(slapfed_argv("node", "stop", "--root", str(self.root)),
                       capture_output=True, timeout=60)


@pytest.fixture
def node(tmp_path, master_server):
    made = []

    def make(computer: str, partitions: int = 1) -> Node:
        made.append(Node(tmp_path / f"node-{len(made)}", master_server(), computer,
                         partitions))
        return made[-1]

    yield make
    for n in made:
        n.cleanup()


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().replace(b"\0", b" ").decode()
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read().rsplit(")", 1)[1].split()[:2]
        return f"{pid} {stat} {argv}"
    except OSError:
        return f"{pid} (gone)"


def kill9_supervisord(node: Node) -> None:
    pid = node.sup.pid()
    assert pid and pid_alive(pid)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 10, "supervisord to die")
    node.sup._reset()


def test_a_killed_supervisord_leaves_no_orphan_and_the_instance_comes_back(node):
    n = node("survive-sup")
    n.client.supply("survive-sup", HELLO)
    inst = n.client.request("hello-survive", HELLO)
    n.start_agent()
    wait_for(lambda: n.state(inst["id"]).get("state") == "started", 120,
             "hello to start", proc=n.agent)
    shown = n.client.show(inst["id"])
    pid, url = shown["placement"]["partition"], shown["connection"]["url"]
    assert answers(url)
    first = n.service_pid(pid, "web")
    assert first

    # 1. supervisord killed under a running agent: it is revived, the orphan stopped
    kill9_supervisord(n)
    assert pid_alive(first)                       # what supervisord leaves: an orphan
    wait_for(lambda: n.service_pid(pid, "web") not in (None, first), 30,
             "the service to run again under a new supervisord", proc=n.agent)
    assert not pid_alive(first)
    wait_for(lambda: answers(url), 10, "hello to answer on its port again")
    assert f"stopped 1 orphaned process(es) left outside supervisord: {first}" in n.log()

    # 2. agent stopped, supervisord killed, agent started again: the same
    second = n.service_pid(pid, "web")
    n.stop_agent()
    kill9_supervisord(n)
    assert pid_alive(second)
    n.start_agent()
    wait_for(lambda: n.service_pid(pid, "web") not in (None, second), 30,
             "the service to run again after the agent restarted", proc=n.agent)
    assert not pid_alive(second)
    wait_for(lambda: answers(url), 10, "hello to answer on its port again")
    assert n.state(inst["id"])["state"] == "started"
    # only the service is left (a promise the restarted agent runs to confirm the
    # partition may still be finishing: it ends by itself)
    service = n.service_pid(pid, "web")
    try:
        wait_for(lambda: n.partition_processes(pid) == [service], 10,
                 "only the service to run in the partition")
    except RuntimeError:
        left = n.partition_processes(pid)
        raise AssertionError([describe(p) for p in left]) from None

    # 3. `node stop` after another kill -9 leaves nothing of the partition running
    third = n.service_pid(pid, "web")
    n.stop_agent()
    kill9_supervisord(n)
    assert pid_alive(third)
    done = subprocess.run(slapfed_argv("node", "stop", "--root", str(n.root), "--json"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["orphans"] == {pid: [third]}
    assert not pid_alive(third)
    assert n.partition_processes(pid) == []
    assert not answers(url)


def gated_release(directory: Path) -> tuple[str, Path]:
    """A copy of hello whose install blocks on reading a FIFO (the gate) until the test
    writes to it: an install that lasts exactly as long as the test wants."""
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    gate = directory / "gate"
    os.mkfifo(gate, 0o600)
    hello = REPO / "profiles" / "hello"
    (directory / "instance-default.cfg").write_text(
        (hello / "instance-default.cfg").read_text())
    text = (hello / "software.cfg").read_text().replace(
        "parts =\n    hello-web", "parts =\n    gate\n    hello-web")
    assert "    gate\n" in text
    text += f"\n[gate]\nrecipe = slapfed:file\nsource = {gate}\n" \
            "path = ${buildout:directory}/gate.txt\n"
    (directory / "software.cfg").write_text(text)
    return str(directory / "software.cfg"), gate


def install_blocked_on(gate: Path) -> int | None:
    """A write end of the gate once the install reads it (it is then blocked there)."""
    try:
        return os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


def program_state(n: Node, pid: str, program: str) -> str | None:
    try:
        return n.sup.rpc.getProcessInfo(f"{pid}:{pid}_{program}")["statename"]
    except (OSError, xmlrpc.client.Error):
        n.sup._reset()
        return None


def test_a_slow_install_holds_up_no_other_partition(node, tmp_path):
    n = node("survive-install", partitions=2)
    slow, gate = gated_release(tmp_path / "slow-release")
    n.client.supply("survive-install", HELLO)
    a = n.client.request("hello-fast", HELLO)
    n.start_agent()
    wait_for(lambda: n.state(a["id"]).get("state") == "started", 120, "hello to start",
             proc=n.agent)
    part_a = n.client.show(a["id"])["placement"]["partition"]
    assert program_state(n, part_a, "web") in ("STARTING", "RUNNING")

    n.client.supply("survive-install", slow)
    b = n.client.request("hello-slow", slow)
    writer = wait_for(lambda: install_blocked_on(gate), 60, "the slow install to begin",
                      proc=n.agent)
    try:
        # while the slow release installs: a's stop and start are applied at once
        for state, seen in (("stopped", ("STOPPED",)), ("started", ("STARTING", "RUNNING"))):
            began = time.monotonic()
            n.client.change_state(a["id"], state)
            wait_for(lambda: program_state(n, part_a, "web") in seen, 10,
                     f"hello-fast to be {state}", proc=n.agent)
            took = time.monotonic() - began
            assert took < 2.0, f"{state} took {took:.1f}s during an install"
            wait_for(lambda: n.state(a["id"]).get("state") == state, 10,
                     f"the master to see hello-fast {state}")
        assert n.state(b["id"])["state"] == "pending"      # b waits for its release
        os.write(writer, b"# the gate opened\n")
    finally:
        os.close(writer)
    wait_for(lambda: n.state(b["id"]).get("state") == "started", 120,
             "hello-slow to start once its release installed", proc=n.agent)
    shown = n.client.show(b["id"])
    assert answers(shown["connection"]["url"])
    software = {s["url"]: s["status"] for s in n.client.show_computer("survive-install")
                ["software"]}
    assert software == {HELLO: "installed", slow: "installed"}
    assert "waits for release" in n.log()
