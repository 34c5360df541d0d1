"""End to end, a hung peer: two real masters on loopback over mutual TLS, a delegating
a release to b. b's processes are stopped (SIGSTOP: b still accepts connections, the
kernel completes the handshakes, but nothing answers). a shows the link ``down`` and the
instance b accepted ``unknown`` within HUNG_BOUND seconds (its forwarder probes a peer it
long-polls: peering.forwarder PROBE_INTERVAL + PROBE_TIMEOUT), and converges back once
b runs again (SIGCONT); nothing is moved, duplicated or destroyed meanwhile.
"""
import os
import signal
import time

import pytest
from conftest import computer_body
from test_federation_e2e import Master, pair, wait_instance

from slapfed.ca import identity as ids
from slapfed.peering.forwarder import PROBE_INTERVAL, PROBE_TIMEOUT
from slapfed.procs import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RELEASE = "/srv/releases/hung/software.cfg"
# the probe's period and timeout, plus one forwarder cycle and a margin for a loaded box
HUNG_BOUND = PROBE_INTERVAL + PROBE_TIMEOUT + 3.0


def link_of(a: Master, peer: str) -> str:
    return {p["name"]: p for p in a.admin.list_peers()}[peer]["link"]


def signal_group(master: Master, sig) -> None:
    """Send ``sig`` to the master's process group (the gunicorn arbiter and its
    workers, which we started in their own session)."""
    os.killpg(master.proc.pid, sig)


@pytest.fixture
def ab(tmp_path):
    masters = {n: Master(tmp_path, n, 246 + i) for i, n in enumerate("ab")}
    stopped = []
    try:
        for m in masters.values():
            m.start()
            m.admin = m.client(ids.admin("ops"), "ops")
        b = masters["b"]
        b.admin.register_computer(computer_body("b-comp", 2))
        b.admin.supply("b-comp", RELEASE)
        pair(masters["a"], b)
        yield masters["a"], b, masters["a"].client(ids.person("alice"), "alice"), stopped
    finally:
        for m in stopped:
            try:
                signal_group(m, signal.SIGCONT)
            except ProcessLookupError:
                pass
        for m in masters.values():
            m.stop()


def test_a_hung_peer_is_down_and_its_instances_unknown_within_seconds(ab):
    a, b, alice, stopped = ab
    a.admin.set_policy({"rules": [{"release": "*/hung/*", "to": ["b"], "fallback": False,
                                   "when": "always"}]})
    alice.request("hung", RELEASE)
    accepted = wait_instance(alice, "hung", lambda i: i["delegation"]["accepted"],
                             timeout=30, what="hung accepted by b")
    remote_id = accepted["delegation"]["remote_id"]
    wait_for(lambda: link_of(a, "b") == "up", 30, "a sees b up")

    stopped.append(b)
    signal_group(b, signal.SIGSTOP)
    t0 = time.monotonic()
    lost = wait_instance(alice, "hung", lambda i: i["status"]["state"] == "unknown",
                         timeout=30, what="hung unknown while b is stopped")
    to_unknown = time.monotonic() - t0
    wait_for(lambda: link_of(a, "b") == "down", 30, "a sees b down")
    to_down = time.monotonic() - t0
    print(f"\nhung peer: instance unknown after {to_unknown:.2f} s, link down after "
          f"{to_down:.2f} s (bound {HUNG_BOUND:g} s)")
    assert to_unknown < HUNG_BOUND and to_down < HUNG_BOUND
    assert "peer b" in lost["status"]["log_tail"]
    assert lost["delegation"]["peer"] == "b" and lost["delegation"]["remote_id"] == remote_id

    signal_group(b, signal.SIGCONT)
    stopped.remove(b)
    t1 = time.monotonic()
    back = wait_instance(alice, "hung", lambda i: i["status"]["state"] == "pending"
                         and i["delegation"]["state"] == "forwarded",
                         timeout=30, what="hung known again")
    wait_for(lambda: link_of(a, "b") == "up", 30, "a sees b up again")
    print(f"hung peer: known again {time.monotonic() - t1:.2f} s after SIGCONT")
    assert back["delegation"]["remote_id"] == remote_id
    held = [i for i in b.admin.list_instances(requester="master/a")]
    assert [i["id"] for i in held] == [remote_id]
