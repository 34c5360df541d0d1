"""Usage across delegation, end to end: three real masters on loopback over mutual TLS
(a paired with b, b with c), each forwarder pulling its peers' usage feeds. Usage
reports are posted to b (and c) as their node would (a computer certificate of their
CA); no node agent runs.

- one hop: a's statement for alice equals b's statement for peer a, to the unit,
  incidents included, marked where = peer b;
- two hops (a -> b -> c): c's usage reaches a once, relayed by b, and b's statement for
  a shows it too;
- faults: a SIGKILLed while it works through a backlog of b's feed, b SIGKILLed while
  a pulls: restarted, the totals are exact (nothing lost, nothing counted twice).
"""
import os
import signal
import sys
from pathlib import Path

import pytest

from conftest import computer_body
from slapfed.ca import identity as ids
from slapfed.procs import Proc, wait_for
from test_federation_e2e import HELLO, Master, pair

pytestmark = pytest.mark.timeout(300)

ARGS = ("--peer-usage-interval", "0.2", "--lease", "600")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("usage-feed")
    masters = {n: Master(base, n, 240 + i) for i, n in enumerate("abc")}
    try:
        for m in masters.values():
            m.args = ARGS
            m.start()
            m.admin = m.client(ids.admin("ops"), "ops")
        for name in "bc":
            m = masters[name]
            m.admin.register_computer(computer_body(f"{name}-c1", 40))
            m.admin.supply(f"{name}-c1", HELLO)
            m.node = m.client(ids.computer(f"{name}-c1"), "node")
        pair(masters["b"], masters["c"])
        pair(masters["a"], masters["b"])
        alice = masters["a"].client(ids.person("alice"), "alice")
        yield {"m": masters, "alice": alice}
    finally:
        for m in masters.values():
            m.stop()


def placed_at(master, requester, reference_suffix, timeout=30):
    """The instance ``master`` holds for ``requester`` whose reference ends with the
    suffix, once placed."""
    found = {}

    def check():
        for inst in master.admin.list_instances():
            if inst["requester"] == requester and inst["reference"].endswith(
                    reference_suffix) and inst.get("placement"):
                found.update(inst)
                return True
        return False
    wait_for(check, timeout, f"{reference_suffix} placed at {master.name}")
    return found


def report(computer, rid, day, minute, entries):
    """A usage report of ``computer``: entries (instance, usage pairs, incidents)."""
    return {"report_id": f"{computer}:{rid}", "start": f"{day}T10:{minute:02d}:00Z",
            "end": f"{day}T10:{minute + 1:02d}:00Z", "partitions": [
                {"partition": inst["placement"]["partition"], "instance_id": inst["id"],
                 "usage": [{"resource": r, "quantity": q} for r, q in usage],
                 "incidents": list(incidents)} for inst, usage, incidents in entries]}


def view(doc) -> tuple:
    return ({u["resource"]: u["quantity"] for u in doc["totals"]["usage"]},
            doc["totals"]["incidents"])


def agree(origin_read, other_read, want, timeout=60, what="statements agree"):
    """Wait until the origin's statement equals the other's and ``want``."""
    last = {}

    def check():
        try:
            last["origin"], last["other"] = view(origin_read()), view(other_read())
        except Exception as exc:  # noqa: BLE001 - a master restarting
            last["error"] = str(exc)
            return False
        return last["origin"] == last["other"] == want
    try:
        wait_for(check, timeout, what, interval=0.1)
    except Exception as exc:
        raise AssertionError(f"{what}: last seen {last}") from exc


def test_one_hop_the_origin_s_statement_equals_the_peer_s_to_the_unit(world):
    a, b, alice = world["m"]["a"], world["m"]["b"], world["alice"]
    local = alice.request("web", HELLO, sla={"master": "b"})
    remote = placed_at(b, "master/a", ":web")
    day = "2026-11-02"
    promise = {"kind": "promise", "name": "check-port", "start": f"{day}T10:00:30Z",
               "end": None, "detail": "port 8080 refused"}
    for minute in range(10):
        usage = [("cpu_seconds", 0.25 * (minute + 1)),
                 ("memory_peak_bytes", float(1_000_000 * (minute % 4 + 1))),
                 ("memory_byte_seconds", 60_000_000.0), ("disk_bytes", 4096.0 * minute),
                 ("x-requests", minute)]
        incidents = [promise] if minute < 3 else [dict(promise, end=f"{day}T10:03:30Z")] \
            if minute == 3 else []
        assert b.node.report_usage("b-c1", report("b-c1", minute, day, minute,
                                                  [(remote, usage, incidents)]))["accepted"]
    want = ({"cpu_seconds": 13.75, "memory_peak_bytes": 4_000_000.0,
             "memory_byte_seconds": 600_000_000.0, "disk_bytes": 36864.0,
             "x-requests": 45}, {"count": 1, "seconds": 180})
    agree(lambda: alice.statement(day), lambda: b.admin.statement(day, peer="a"), want)
    mine = alice.statement(day)
    assert [line["where"] for line in mine["lines"]] == [{"kind": "peer", "name": "b"}]
    assert mine["lines"][0]["instances"] == 1
    usage = alice.instance_usage(local["id"], day, day)
    assert usage["days"][0]["where"] == {"kind": "peer", "name": "b"}
    assert usage["incidents"][0]["name"] == "check-port"
    # the peer reads the same as its own statement (what its delegations used at b)
    peer_view = a.admin.statement(day, owner="person/alice")
    assert view(peer_view) == want


def test_two_hops_usage_measured_at_c_reaches_the_origin_once(world):
    a, b, c, alice = world["m"]["a"], world["m"]["b"], world["m"]["c"], world["alice"]
    alice.request("far", HELLO, sla={"master": "c"})
    at_b = placed_at_or_delegated(b, "master/a", ":far")
    at_c = placed_at(c, "master/b", ":far")
    assert at_b["delegation"]["peer"] == "c"
    day = "2026-11-03"
    for minute in range(6):
        assert c.node.report_usage("c-c1", report("c-c1", minute, day, minute, [
            (at_c, [("cpu_seconds", 1.5), ("disk_bytes", 1024.0 * (minute + 1))], [])]))[
            "accepted"]
    want = ({"cpu_seconds": 9.0, "disk_bytes": 6144.0}, {"count": 0, "seconds": 0})
    agree(lambda: alice.statement(day), lambda: c.admin.statement(day, peer="b"), want)
    agree(lambda: b.admin.statement(day, peer="a"), lambda: c.admin.statement(day, peer="b"),
          want)
    assert [line["where"] for line in alice.statement(day)["lines"]] == [
        {"kind": "peer", "name": "b"}]
    assert [line["where"] for line in b.admin.statement(day, peer="a")["lines"]] == [
        {"kind": "peer", "name": "c"}]


def placed_at_or_delegated(master, requester, suffix, timeout=30):
    found = {}

    def check():
        for inst in master.admin.list_instances():
            if inst["requester"] == requester and inst["reference"].endswith(suffix) and (
                    inst.get("placement") or inst.get("delegation")):
                found.update(inst)
                return True
        return False
    wait_for(check, timeout, f"{suffix} at {master.name}")
    return found


def kill(master):
    """SIGKILL the master's process (by PID), then reap it and its workers."""
    os.kill(master.proc.pid, signal.SIGKILL)
    master.stop()


def feed_cursor_on_disk(master, peer):
    """(cursor, head) of ``peer``'s feed in ``master``'s FileStorage, read while it is
    stopped (read only)."""
    import ZODB
    from ZODB.FileStorage import FileStorage
    db = ZODB.DB(FileStorage(str(master.data / "master.fs"), read_only=True))
    try:
        conn = db.open()
        state = conn.root()["slapfed"].ledger.peer_cursors[peer]
        out = (state.cursor, state.head)
        conn.close()
        return out
    finally:
        db.close()


class Relay:
    """tests/slow_relay.py as a process: b's TLS through it, answers at RATE bytes/s."""

    RATE = 200_000

    def __init__(self, base, target_url):
        self.base, self.target = base, target_url.split("://", 1)[1]
        self.port, self.proc = 0, None

    def start(self):
        port_file = self.base / "relay.port"
        if port_file.exists():
            port_file.unlink()
        self.proc = Proc([sys.executable, str(Path(__file__).with_name("slow_relay.py")),
                          str(self.port), self.target, str(port_file), str(self.RATE)],
                         self.base / "relay.log")
        wait_for(lambda: port_file.exists(), 10, "the relay listening", proc=self.proc)
        self.port = int(port_file.read_text())
        return f"https://127.0.0.1:{self.port}"

    def kill(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.stop()


def test_killed_mid_pull_then_restarted_totals_are_exact(world, tmp_path):
    """a pulls b's feed through a relay that slows b's answers down (a page of 500
    entries takes over a second), so that each fault lands in the middle of a backlog:
    a killed (what it had not committed is asked again), the relay killed while an
    answer b sent is on its way (lost), b killed. Totals exact afterwards."""
    a, b, alice = world["m"]["a"], world["m"]["b"], world["alice"]
    ca_pem = (b.data / "ca" / "ca.crt").read_text()
    relay = Relay(tmp_path, b.url)
    a.admin.add_peer({"name": "b", "url": relay.start(), "ca_certificate": ca_pem})
    try:
        _faults(a, b, alice, relay)
        a.admin.add_peer({"name": "b", "url": b.url, "ca_certificate": ca_pem})
    finally:
        relay.proc.stop()


def _faults(a, b, alice, relay):
    n = 32
    for k in range(n):
        alice.request(f"bulk-{k}", HELLO, sla={"master": "b"})
    remotes = [placed_at(b, "master/a", f":bulk-{k}") for k in range(n)]
    day = "2026-11-04"
    a.stop()                                   # a backlog builds up at b meanwhile
    minutes = 150                              # 150 reports x 32 instances: 4,800 entries
    for minute in range(minutes):
        body = report("b-c1", f"bulk-{minute}", day, 0,
                      [(r, [("cpu_seconds", 0.5), ("x-requests", 1)], []) for r in remotes])
        body["start"] = f"{day}T{10 + minute // 60:02d}:{minute % 60:02d}:00Z"
        body["end"] = f"{day}T{10 + minute // 60:02d}:{minute % 60:02d}:30Z"
        assert b.node.report_usage("b-c1", body)["accepted"]
    entries = minutes * n
    want = ({"cpu_seconds": 0.5 * entries, "x-requests": entries},
            {"count": 0, "seconds": 0})

    def recorded():
        try:
            return view(alice.statement(day))[0].get("x-requests", 0)
        except Exception:  # noqa: BLE001 - restarting
            return None

    # 1. a works through the backlog page by page; killed once a part is recorded
    a.start()
    wait_for(lambda: 0 < (recorded() or 0) < entries, 60, "a part of the backlog recorded",
             interval=0.02)
    kill(a)
    cursor, head = feed_cursor_on_disk(a, "b")
    assert 0 < cursor < head, (cursor, head)
    # 2. started again, a goes on from its cursor; the relay is killed while the next
    # answer is on its way: a loses it, and stops where it was
    a.start()
    wait_for(lambda: (recorded() or 0) > cursor, 60, "a recording again", interval=0.02)
    relay.kill()
    stopped_at = recorded()
    assert stopped_at < entries, "the relay was killed after a had everything"
    relay.start()                              # the same port again
    # 3. b killed while a pulls what is left
    wait_for(lambda: (recorded() or 0) > stopped_at, 60, "a recording after the relay",
             interval=0.02)
    kill(b)
    assert recorded() < entries, "b was killed after a had everything"
    b.start()
    agree(lambda: alice.statement(day), lambda: b.admin.statement(day, peer="a"), want,
          timeout=120, what="the backlog recorded exactly once")
    # the pull goes on: one more report after all this arrives, once
    more = report("b-c1", "bulk-late", day, 0, [(remotes[0], [("cpu_seconds", 0.5),
                                                             ("x-requests", 1)], [])])
    more["start"], more["end"] = f"{day}T23:00:00Z", f"{day}T23:00:30Z"
    assert b.node.report_usage("b-c1", more)["accepted"]
    want = ({"cpu_seconds": 0.5 * (entries + 1), "x-requests": entries + 1}, want[1])
    agree(lambda: alice.statement(day), lambda: b.admin.statement(day, peer="a"), want)
