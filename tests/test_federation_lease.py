"""End to end, the node serving a delegated instance dies: two real masters on loopback
over mutual TLS, a delegating hello to b (`--lease 2`), b running it on a real node.
b's node agent is killed (SIGKILL, by PID): within the lease plus a poll (and the
moment b's maintenance records the run out, and b's long poll answers a), a shows its
instance ``unknown``, with what was last reported and when b last heard from its node;
nothing is moved, duplicated or destroyed. The agent started again: a shows it
``started`` again, served by the same instance at b."""
import os
import signal
import time

import pytest
from test_federation_e2e import HELLO, Master, pair, started, wait_instance

from slapfed.ca import identity as ids
from slapfed.procs import Proc, slapfed_argv, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LEASE = 2.0
POLL = 0.3              # the node agent's --interval (Master.start_node)
# the lease and a poll, b's maintenance period and lease scan (0.5 + 1 s), b's long poll
# re-reading (0.1 s) and a's apply, and a margin for a loaded machine
UNKNOWN_BOUND = LEASE + POLL + 1.5 + 3.0


@pytest.fixture
def ab(tmp_path):
    masters = {n: Master(tmp_path, n, 226 + i) for i, n in enumerate("ab")}
    a, b = masters["a"], masters["b"]
    b.args = ("--lease", str(LEASE))
    try:
        for m in masters.values():
            m.start()
            m.admin = m.client(ids.admin("ops"), "ops")
        b.start_node()
        pair(a, b)
        a.admin.set_policy({"rules": [{"release": "*/profiles/hello/*", "to": ["b"],
                                       "fallback": False, "when": "always"}]})
        yield a, b, a.client(ids.person("alice"), "alice")
    finally:
        b.stop_node()
        for m in masters.values():
            m.stop()


def test_a_delegated_instance_shows_unknown_at_the_origin_when_the_peers_node_dies(ab):
    a, b, alice = ab
    alice.request("far-hello", HELLO)
    done = wait_instance(alice, "far-hello", started, timeout=150,
                         what="far-hello started at a")
    remote_id = done["delegation"]["remote_id"]
    assert done["delegation"]["chain"][1]["computer"] == "b-node"

    os.kill(b.node_proc.pid, signal.SIGKILL)
    t0 = time.monotonic()
    wait_for(lambda: not b.node_proc.alive(), 10, "b's node agent to die")
    lost = wait_instance(alice, "far-hello", lambda i: i["status"]["state"] == "unknown",
                         timeout=30, what="far-hello unknown at a")
    to_unknown = time.monotonic() - t0
    print(f"\nb's node agent killed: a shows its delegated instance unknown after "
          f"{to_unknown:.2f} s (lease {LEASE:g} s, node polling every {POLL:g} s)")
    assert to_unknown < UNKNOWN_BOUND
    status = lost["status"]
    assert status["reported_state"] == "started"
    assert status["log_tail"].startswith("computer b-node last seen 20"), status
    assert f"lease {LEASE:g} s ran out; last reported started" in status["log_tail"]
    # nothing moved, duplicated or destroyed: a still delegates it to the same instance
    assert lost["delegation"]["peer"] == "b" and lost["delegation"]["remote_id"] == remote_id
    assert lost["delegation"]["state"] == "forwarded"
    at_b = b.admin.list_instances(requester="master/a")
    assert [i["id"] for i in at_b] == [remote_id]
    assert at_b[0]["placement"]["computer"] == "b-node"
    assert b.admin.show_computer("b-node")["lease"]["ran_out_at"]

    # the agent starts again: a shows it started again
    b.node_proc = Proc(slapfed_argv("node", "run", "--root", str(b.node_root), "--interval",
                                    str(POLL)), b.base / "b-node-again.log")
    t1 = time.monotonic()
    back = wait_instance(alice, "far-hello", started, timeout=60,
                         what="far-hello started again at a")
    print(f"b's node agent back: a shows it started after {time.monotonic() - t1:.2f} s")
    assert "reported_state" not in back["status"] or back["status"]["reported_state"] is None
    assert back["delegation"]["remote_id"] == remote_id
    assert back["connection"] == done["connection"]
    assert len(b.admin.list_instances(requester="master/a")) == 1
    lease = b.admin.show_computer("b-node")["lease"]
    assert lease["state"] == "live" and lease["ran_out_at"] is None and lease["back_at"]
