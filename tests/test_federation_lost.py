"""End to end, a peer that is gone: three real masters on loopback over mutual TLS; a is
paired with b and c, and a's delegation policy sends a release to b, then c. b accepts
an instance, then b is stopped for good: the instance shows ``unknown`` and nothing
moves. The verdict (`slapfed peer lost b`, here through the API): the instance is delegated to c (same id and reference at a,
one instance at c), the instance b may still hold is recorded as an orphan, a destroy
of an instance b held completes at a at once, and `slapfed peer remove b` works.

b and c run no node: each has one registered computer, so a forwarded request is placed
there and stays pending (what is asserted is a's forward table and the peers' records).
"""
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import computer_body
from test_federation_e2e import Master, pair, wait_instance

from slapfed.ca import identity as ids
from slapfed.procs import wait_for

pytestmark = pytest.mark.timeout(240)

RELEASE = "/srv/releases/peer-lost/software.cfg"


@pytest.fixture
def abc(tmp_path_factory):
    base = tmp_path_factory.mktemp("peerlost")
    masters = {n: Master(base, n, 212 + i) for i, n in enumerate("abc")}
    try:
        for m in masters.values():
            m.start()
            m.admin = m.client(ids.admin("ops"), "ops")
        for name in "bc":
            masters[name].admin.register_computer(computer_body(f"{name}-comp", 4))
            masters[name].admin.supply(f"{name}-comp", RELEASE)
        pair(masters["a"], masters["b"])
        pair(masters["a"], masters["c"])
        yield masters, masters["a"].client(ids.person("alice"), "alice")
    finally:
        with ThreadPoolExecutor(len(masters)) as pool:
            list(pool.map(Master.stop, masters.values()))


def test_a_lost_peers_delegations_go_to_the_fallback_and_it_can_be_removed(abc):
    masters, alice = abc
    a, b, c = masters["a"], masters["b"], masters["c"]
    a.admin.set_policy({"rules": [{"release": "*/peer-lost/*", "to": ["b", "c"],
                                   "fallback": True, "when": "always"}]})
    inst = alice.request("kept", RELEASE, parameters={"n": "1"})
    doomed = alice.request("doomed", RELEASE)
    for ref in ("kept", "doomed"):
        wait_instance(alice, ref, lambda i: i["delegation"]["accepted"], timeout=30,
                      what=f"{ref} accepted by b")
    assert alice.find("kept")["delegation"]["peer"] == "b"
    b.stop()
    wait_instance(alice, "kept", lambda i: i["status"]["state"] == "unknown", timeout=30,
                  what="kept unknown while b is gone")
    destroying = alice.destroy(doomed["id"])
    assert destroying["status"]["state"] != "destroyed"     # b may hold it: it waits

    out = a.admin.declare_peer_lost("b", "b's site burnt")
    moves = {m["reference"]: m for m in out["moves"]}
    assert moves["doomed"]["outcome"] == "destroyed"
    assert moves["kept"]["to"] == {"peer": "c"}
    assert sorted(o["instance"] for o in out["peer"]["orphans"]) == sorted(
        [inst["id"], doomed["id"]])
    assert alice.show(doomed["id"])["status"]["state"] == "destroyed"
    done = wait_instance(alice, "kept", lambda i: i["delegation"]["accepted"], timeout=30,
                         what="kept accepted by c")
    assert done["id"] == inst["id"] and done["reference"] == "kept"
    assert done["delegation"]["peer"] == "c"
    at_c = [i for i in c.admin.list_instances(requester="master/a")
            if i["reference"] == done["delegation"]["remote_reference"]]
    assert len(at_c) == 1 and at_c[0]["parameters"] == {"n": "1"}
    # nothing new goes to b, and b can be forgotten
    assert alice.request("new", RELEASE)["delegation"]["peer"] == "c"
    a.admin.remove_peer("b")
    wait_for(lambda: "b" not in {p["name"] for p in a.admin.list_peers()}, 5, "b forgotten")
