"""End to end, a network partition between a node and its master: a real master (mutual
TLS, ``--lease 3``) in the root network namespace on an address of a veth link, a real
node agent, its supervisord and hello's service inside their own network namespace on
the other end. The link is cut (the node's end set down): the computer and instance
show ``unknown`` within the lease and a poll, hello keeps running untouched (same PID)
for as long as the partition lasts, nothing is destroyed, moved or freed at the master.
The link healed: the instance is ``started`` again within a lease, nothing restarted."""
import json
import time
import urllib.request

import pytest
from conftest import mtls_master_and_node, slapfed_cli
from test_e2e_lease import HELLO

from slapfed.procs import pid_alive, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

COMPUTER = "netns-node"
LEASE = 3.0
POLL = 0.3            # the harness's node --interval
MARGIN = 2.0          # a loaded machine
HOLD = 2 * LEASE      # how long the partition is watched once the master shows unknown


def get(url, timeout=5):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


# How the partition is made: the node's end of a veth set down (new connections fail at
# once), or every packet dropped (silent: calls in flight wait for their timeouts).
PARTITIONS = {
    "link-down": (False, lambda link: link.cut(), lambda link: link.heal()),
    "silent": (True, lambda link: link.impair(loss=100), lambda link: link.impair(loss=0)),
}


@pytest.mark.parametrize("how", sorted(PARTITIONS))
def test_a_partitioned_node_shows_unknown_keeps_running_and_converges_back(
        netns, tmp_path_factory, how):
    impairable, cut, heal = PARTITIONS[how]
    base = tmp_path_factory.mktemp("netns-node")
    ns = netns.namespace("node")
    link = netns.link(ns, impairable=impairable)
    with mtls_master_and_node(base, COMPUTER, partitions=2, address_octet=244,
                              master_args=("--lease", str(LEASE)),
                              listen_host=link.outer_ip, node_ns=ns) as fed:
        client, admin, node = fed["client"], fed["admin"], fed["node"]
        assert fed["url"].startswith(f"https://{link.outer_ip}:")

        def state():
            return client.find("hello-netns")["status"]["state"]

        def lease():
            return admin.show_computer(COMPUTER)["lease"]["state"]

        wait_for(lambda: lease() == "live", 60, "the node's first poll", proc=node)
        slapfed_cli("supply", HELLO, "--computer", COMPUTER, env=fed["admin_env"])
        inst = json.loads(slapfed_cli("request", "hello-netns", HELLO, "--wait", "120",
                                      "--json", env=fed["env"]).stdout)
        assert inst["status"]["state"] == "started"
        url = inst["connection"]["url"]
        service_pid = ns.call(get, url)["pid"]        # hello answers inside the namespace
        partitions = admin.show_computer(COMPUTER)["partitions"]
        assert lease() == "live"

        # the partition: the node's end of the link goes down
        cut(link)
        t0 = time.monotonic()
        wait_for(lambda: state() == "unknown" and lease() == "expired",
                 LEASE + 15, "unknown after the lease")
        to_unknown = time.monotonic() - t0
        assert to_unknown < LEASE + POLL + MARGIN, to_unknown
        shown = client.find("hello-netns")
        assert shown["status"]["reported_state"] == "started"
        assert f"computer {COMPUTER} last seen" in shown["status"]["log_tail"]

        # for as long as it lasts: nothing destroyed, moved or freed; hello untouched
        while time.monotonic() - t0 < to_unknown + HOLD:
            shown = client.find("hello-netns")
            assert shown["status"]["state"] == "unknown"
            assert shown["requested_state"] == "started"
            assert shown["placement"] == inst["placement"]
            assert admin.show_computer(COMPUTER)["partitions"] == partitions
            assert ns.call(get, url)["pid"] == service_pid
            assert node.alive()
            time.sleep(0.5)
        assert [i["id"] for i in client.list_instances()] == [inst["id"]]

        # healed: started again within a lease, nothing restarted
        heal(link)
        t1 = time.monotonic()
        wait_for(lambda: state() == "started" and lease() == "live", LEASE + 30,
                 "started again after the partition healed", proc=node)
        to_started = time.monotonic() - t1
        print(f"\nnode partitioned ({how}, {link.kind} link): unknown after "
              f"{to_unknown:.2f} s (lease {LEASE:g} s, "
              f"node polling every {POLL:g} s); watched {HOLD:g} s more with hello "
              f"untouched; healed: started again after {to_started:.2f} s")
        assert to_started < LEASE + MARGIN, to_started
        assert ns.call(get, url)["pid"] == service_pid and pid_alive(service_pid)
        back = client.find("hello-netns")
        assert back["placement"] == inst["placement"]
        assert back["status"].get("reported_state") is None
        assert [i["id"] for i in client.list_instances()] == [inst["id"]]
