"""End to end, federation fallback: three real masters on loopback over mutual TLS; a is
paired with b and with c, and a's delegation policy sends a release to b, then c.

- with ``fallback = true``, a request made while b is down is delegated to c (exactly
  one instance there, under the deterministic remote reference), and b never gets it;
- with ``fallback = false``, it waits for b (pending, saying b is unreachable), never
  reaches c, and converges at b once b is back;
- once b accepted an instance, a later outage of b never moves it to c: it shows
  ``unknown`` until b answers again, then converges at b with no duplicate.

b and c run no node: each has one registered computer, so a forwarded request is placed
there and stays pending (what is asserted is a's forward table and the peers' records).
"""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import computer_body
from test_federation_e2e import Master, pair, wait_instance

from slapfed.ca import identity as ids
from slapfed.procs import wait_for

pytestmark = pytest.mark.timeout(240)

ALICE = "person/alice"


def release(name: str) -> str:
    return f"/srv/releases/fallback-{name}/software.cfg"


def remote_reference(reference: str) -> str:
    return f"a:{ALICE}:{reference}"


def held_at(master: Master, reference: str) -> list[dict]:
    """The instances ``master`` holds for a under the remote reference of ``reference``."""
    return [i for i in master.admin.list_instances(requester="master/a")
            if i["reference"] == remote_reference(reference)]


def up(master: Master) -> None:
    """(Re)start ``master`` and wait until it answers."""
    if master.proc is None:
        master.start()
    wait_for(lambda: _answers(master), 30, f"master {master.name} answering",
             proc=master.proc)


def _answers(master: Master) -> bool:
    try:
        return master.admin.health() is not None
    except Exception:  # noqa: BLE001 - still starting
        return False


def link_of(a: Master, peer: str) -> str:
    return {p["name"]: p for p in a.admin.list_peers()}[peer]["link"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("fallback")
    masters = {n: Master(base, n, 240 + i) for i, n in enumerate("abc")}
    try:
        for m in masters.values():
            m.start()
            m.admin = m.client(ids.admin("ops"), "ops")
        for name in "bc":
            m = masters[name]
            m.admin.register_computer(computer_body(f"{name}-comp", 4))
            for scenario in ("ordered", "strict", "sticky"):
                m.admin.supply(f"{name}-comp", release(scenario))
        pair(masters["a"], masters["b"])
        pair(masters["a"], masters["c"])
        alice = masters["a"].client(ids.person("alice"), "alice")
        yield {"m": masters, "alice": alice}
    finally:
        with ThreadPoolExecutor(len(masters)) as pool:     # each stop waits for its own
            list(pool.map(Master.stop, masters.values()))


@pytest.fixture
def abc(world):
    """The three masters, all running at the start of the test (a test stopping b
    and failing leaves it stopped; the next one starts it again)."""
    masters = world["m"]
    for m in masters.values():
        up(m)
    return masters["a"], masters["b"], masters["c"]


def test_ordered_fallback_goes_to_c_while_b_is_down(world, abc):
    a, b, c = abc
    alice = world["alice"]
    a.admin.set_policy({"rules": [{"release": "*/fallback-ordered/*", "to": ["b", "c"],
                                   "fallback": True, "when": "always"}]})
    b.stop()
    inst = alice.request("ordered", release("ordered"), parameters={"n": "1"})
    # routed to b first, c kept as the fallback
    assert inst["delegation"]["peer"] == "b" and inst["delegation"]["fallbacks"] == ["c"]
    assert inst["delegation"]["remote_reference"] == remote_reference("ordered")
    done = wait_instance(alice, "ordered", lambda i: i["delegation"]["accepted"],
                         timeout=30, what="ordered accepted")
    d = done["delegation"]
    assert d["peer"] == "c" and d["state"] == "forwarded" and d["fallbacks"] == []
    assert d["reason"] == "accepted by c"
    assert done["status"]["state"] == "pending"
    at_c = held_at(c, "ordered")
    assert len(at_c) == 1 and at_c[0]["id"] == d["remote_id"]
    assert at_c[0]["parameters"] == {"n": "1"}
    assert at_c[0]["placement"]["computer"] == "c-comp"
    # b comes back: a sees it up again at once (well before a long poll's 20 s, though
    # b holds nothing of a's), and b never got the instance
    up(b)
    wait_for(lambda: link_of(a, "b") == "up", 10, "a sees b up again")
    assert held_at(b, "ordered") == []
    # asking again duplicates nothing anywhere
    again = alice.request("ordered", release("ordered"), parameters={"n": "1"})
    assert again["id"] == done["id"] and again["delegation"]["peer"] == "c"
    # a change flows to c, where the instance already is, and not to b
    changed = alice.request("ordered", release("ordered"), parameters={"n": "2"})
    assert changed["id"] == done["id"] and changed["revision"] > done["revision"]
    wait_for(lambda: [i["parameters"] for i in held_at(c, "ordered")] == [{"n": "2"}], 30,
             "the change reaching c")
    assert held_at(b, "ordered") == []
    assert alice.find("ordered")["delegation"]["peer"] == "c"


def test_no_fallback_waits_for_b_then_converges_there(world, abc):
    a, b, c = abc
    alice = world["alice"]
    a.admin.set_policy({"rules": [{"release": "*/fallback-strict/*", "to": ["b", "c"],
                                   "fallback": False, "when": "always"}]})
    b.stop()
    inst = alice.request("strict", release("strict"))
    assert inst["delegation"]["peer"] == "b" and inst["delegation"]["fallbacks"] == []
    # several failed attempts later it still waits for b, saying why
    waiting = wait_instance(alice, "strict", lambda i: i["delegation"]["attempts"] >= 3,
                            timeout=30, what="strict retried at b")
    d = waiting["delegation"]
    assert d["peer"] == "b" and d["state"] == "unreachable" and not d["accepted"]
    assert d["reason"].startswith("peer b unreachable:")
    assert waiting["status"]["state"] == "pending"
    assert "peer b unreachable" in waiting["status"]["log_tail"]
    assert held_at(c, "strict") == []
    # b comes back on the same address: the instance converges there
    up(b)
    done = wait_instance(alice, "strict", lambda i: i["delegation"]["accepted"],
                         timeout=30, what="strict accepted by b")
    d = done["delegation"]
    assert d["peer"] == "b" and d["state"] == "forwarded" and d["attempts"] == 0
    at_b = held_at(b, "strict")
    assert len(at_b) == 1 and at_b[0]["id"] == d["remote_id"]
    assert held_at(c, "strict") == []


def test_accepted_instance_never_moves_during_an_outage(world, abc):
    a, b, c = abc
    alice = world["alice"]
    a.admin.set_policy({"rules": [{"release": "*/fallback-sticky/*", "to": ["b", "c"],
                                   "fallback": True, "when": "always"}]})
    inst = alice.request("sticky", release("sticky"), parameters={"n": "1"})
    assert inst["delegation"]["fallbacks"] == ["c"]
    first = wait_instance(alice, "sticky", lambda i: i["delegation"]["accepted"],
                          timeout=30, what="sticky accepted by b")
    assert first["delegation"]["peer"] == "b" and first["delegation"]["fallbacks"] == []
    remote_id = first["delegation"]["remote_id"]
    b.stop()
    lost = wait_instance(alice, "sticky", lambda i: i["status"]["state"] == "unknown",
                         timeout=30, what="sticky unknown while b is down")
    assert "peer b unreachable" in lost["status"]["log_tail"]
    # a change while b is down: a must push again, and every attempt fails
    changed = alice.request("sticky", release("sticky"), parameters={"n": "2"})
    assert changed["revision"] > first["revision"]
    failing = wait_instance(alice, "sticky", lambda i: i["delegation"]["attempts"] >= 3,
                            timeout=30, what="sticky's change retried at b")
    d = failing["delegation"]
    assert d["peer"] == "b" and d["accepted"] and d["state"] == "unreachable"
    assert failing["status"]["state"] == "unknown"
    assert held_at(c, "sticky") == []
    # b is back: the change reaches the same instance there; c still holds nothing
    t0 = time.monotonic()
    up(b)
    wait_for(lambda: [i["parameters"] for i in held_at(b, "sticky")] == [{"n": "2"}], 30,
             "the change reaching b")
    back = wait_instance(alice, "sticky", lambda i: i["status"]["state"] == "pending"
                         and i["delegation"]["state"] == "forwarded",
                         timeout=30, what="sticky known again")
    assert back["delegation"]["peer"] == "b" and back["delegation"]["remote_id"] == remote_id
    assert [i["id"] for i in held_at(b, "sticky")] == [remote_id]
    assert held_at(c, "sticky") == []
    assert time.monotonic() - t0 < 30
