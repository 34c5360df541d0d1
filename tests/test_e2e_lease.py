"""End to end, a node agent that dies: a real master process (--lease 2) and a real node
process running hello over mutual TLS. The agent is killed (SIGKILL, by PID): within the
lease plus a poll the computer and its instance show ``unknown`` (API and CLI), and
hello's service keeps running untouched. The agent started again: the instance shows
``started`` with nothing restarted (the same service PID). Idle polls renew the lease
(its file's mtime moves) and write no transaction (master.fs does not grow)."""
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import mtls_master_and_node, slapfed_cli

from slapfed.procs import Proc, pid_alive, slapfed_argv, wait_for
from slapfed.services.leases import file_name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")
COMPUTER = "lease-node"
LEASE = 2.0
POLL = 0.3          # the harness's node --interval
# the lease, a poll, and a margin for a loaded machine
UNKNOWN_BOUND = LEASE + POLL + 2.0


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def state_of(fed, reference):
    return fed["client"].find(reference)["status"]["state"]


def lease_state(fed):
    return fed["admin"].show_computer(COMPUTER)["lease"]["state"]


def test_a_killed_agent_shows_unknown_within_the_lease_and_nothing_restarts(
        tmp_path_factory):
    base = tmp_path_factory.mktemp("lease")
    agent = None
    with mtls_master_and_node(base, COMPUTER, partitions=2, address_octet=245,
                              master_args=("--lease", str(LEASE))) as fed:
        try:
            slapfed_cli("supply", HELLO, "--computer", COMPUTER, env=fed["admin_env"])
            # the agent's first poll (its start-up may outlast the lease its node format
            # registration began): until then placement rightly refuses the computer
            registered = fed["admin"].show_computer(COMPUTER)["lease"]["expires_at"]
            wait_for(lambda: _lease_renewed_since(fed, registered), 60,
                     "the agent's first poll", proc=fed["node"])
            inst = json.loads(slapfed_cli("request", "hello-lease", HELLO, "--wait", "120",
                                          "--json", env=fed["env"]).stdout)
            assert inst["status"]["state"] == "started"
            url = inst["connection"]["url"]
            service_pid = get(url)["pid"]
            assert lease_state(fed) == "live"

            # idle polls renew the lease file and write no transaction
            storage = base / "master" / "master.fs"
            lease_file = base / "master" / "leases" / file_name(COMPUTER)
            wait_for(lambda: _stable(storage), 30, "the storage to settle")
            size = storage.stat().st_size
            seen = set()
            wait_for(lambda: seen.add(lease_file.stat().st_mtime) or len(seen) >= 4, 10,
                     "three renewals of the lease")
            assert storage.stat().st_size == size

            # the agent dies: unknown within the lease and a poll
            node = fed["node"]
            os.kill(node.pid, signal.SIGKILL)
            t0 = time.monotonic()
            wait_for(lambda: not node.alive(), 10, "the agent to die")
            wait_for(lambda: state_of(fed, "hello-lease") == "unknown"
                     and lease_state(fed) == "expired", 15, "unknown after the lease")
            elapsed = time.monotonic() - t0
            print(f"\nagent killed: computer and instance unknown after {elapsed:.2f} s "
                  f"(lease {LEASE:g} s, node polling every {POLL:g} s)")
            assert elapsed < UNKNOWN_BOUND
            shown = fed["client"].find("hello-lease")
            assert shown["status"]["reported_state"] == "started"
            assert f"computer {COMPUTER} last seen" in shown["status"]["log_tail"]
            assert shown["placement"] == inst["placement"]         # nothing moved or freed
            listed = slapfed_cli("computer", "list", env=fed["admin_env"]).stdout
            assert any(line.startswith(COMPUTER) and " unknown " in line
                       for line in listed.splitlines()), listed
            show = slapfed_cli("show", "hello-lease", env=fed["env"]).stdout
            assert "status:     unknown" in show and "lease 2 s ran out" in show, show
            assert "unknown" in slapfed_cli("list", env=fed["env"]).stdout
            # the service is untouched
            assert get(url)["pid"] == service_pid and pid_alive(service_pid)

            # the agent is back: started again, nothing restarted, and it confirms the
            # partition afresh (a report made after its start, not the old one)
            before = fed["client"].find("hello-lease")["status"]["reported_at"]
            back_at = time.time()
            agent = Proc(slapfed_argv("node", "run", "--root", str(fed["root"]),
                                      "--interval", str(POLL)), base / "node-again.log")
            t1 = time.monotonic()
            confirmed = fed["client"].wait_ready(inst["id"], 30, reported_after=back_at)
            assert confirmed["status"]["reported_at"] > before
            wait_for(lambda: state_of(fed, "hello-lease") == "started"
                     and lease_state(fed) == "live", 30, "started again", proc=agent)
            print(f"agent back: started again after {time.monotonic() - t1:.2f} s")
            assert get(url)["pid"] == service_pid
            assert fed["client"].find("hello-lease")["status"].get("reported_state") is None
        finally:
            if agent is not None:
                agent.stop()


def _lease_renewed_since(fed, expires_at) -> bool:
    lease = fed["admin"].show_computer(COMPUTER)["lease"]
    return lease["state"] == "live" and lease["expires_at"] != expires_at


def _stable(path: Path, within: float = 1.0) -> bool:
    """The file did not change for ``within`` seconds."""
    return time.time() - path.stat().st_mtime >= within
