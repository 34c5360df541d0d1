"""A lease's transitions as facts: the decision (a table), the Computer's record, and the
use cases over real FileStorages: the run out is recorded once (whoever notices it, how
often), the return once, idle polls write nothing; the change feed a peer long-polls
reports the instances of a computer that changed (and wakes for them), so the origin
master of a delegated instance shows it ``unknown`` with what was last reported, then
its state again."""
from __future__ import annotations

import threading
import time

import pytest

from slapfed import services as svc
from slapfed.core.leases import BACK, EXPIRED, LIVE, NONE, RAN_OUT, Lease, transition
from slapfed.core.states import STARTED, UNKNOWN
from slapfed.core.wire import ComputerRegistration, InstanceRequest, PartitionReport, Supply
from slapfed.model import Computer
from slapfed.services import federation as fed
from slapfed.services import lease_marks
from slapfed.services.federation import peer_api
from slapfed.services.leases import FileLeases
from slapfed.services.runtime import MasterSettings, Runtime
from slapfed.store import open_db

from conftest import SOFTWARE_URL as URL, computer_body, last_tid


# -- the decision ------------------------------------------------------------------------
def _lease(state):
    return Lease(state, None if state == NONE else 100.0,
                 None if state == NONE else 130.0, 30.0)


@pytest.mark.parametrize("recorded_out, state, what", [
    (False, LIVE, None),          # heard from, nothing recorded: nothing to write
    (False, EXPIRED, RAN_OUT),    # ran out, not recorded yet: record it (once)
    (True, EXPIRED, None),        # ran out and recorded: every later look writes nothing
    (True, LIVE, BACK),           # recorded out and heard from again: clear it (once)
    (False, NONE, None),          # never renewed: nothing known to have stopped
    (True, NONE, None),           # recorded out, lease table lost: only a call proves it back
])
def test_the_transition_of_a_lease(recorded_out, state, what):
    assert transition(recorded_out, _lease(state)) == what


def test_the_computer_records_each_transition_once():
    comp = Computer("c1", 1.0)
    assert not comp.lease_recorded_out
    assert comp.record_lease_back(5.0) is False            # not out: nothing to clear
    assert comp.record_lease_out(130.0) is True
    assert comp.record_lease_out(131.0) is False           # the first record stays
    assert (comp.lease_recorded_out, comp.lease_out_at) == (True, 130.0)
    assert comp.record_lease_back(200.0) is True
    assert comp.record_lease_back(201.0) is False
    assert (comp.lease_out_at, comp.lease_back_at) == (None, 200.0)
    assert comp.serial == 1                # its desired-state document did not change


# -- the use cases over a real FileStorage -------------------------------------------------
class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def world(master_db, tmp_path):
    """A master (lease 30 s, files, a clock the test moves) with computer c1 (2
    partitions, supplied URL) polled once, and instance web-1 started on it."""
    clock = Clock(time.time())
    rt = Runtime(master_db, MasterSettings(),
                 leases=FileLeases(str(tmp_path / "leases"), 30.0, clock))
    svc.register_computer(rt, ComputerRegistration.from_json(computer_body("c1", 2)))
    svc.supply(rt, "c1", Supply(URL))
    svc.desired_state(rt, "c1")
    inst = _started(rt, "web-1")
    yield rt, clock, inst
    rt.close()


def _started(rt, reference, requester=None):
    body = {"reference": reference, "software_url": URL}
    if requester:
        body["requester"] = requester
    _created, inst = svc.request_instance(rt, InstanceRequest.from_json(body))
    p = inst["placement"]
    return svc.report_partition(rt, p["computer"], p["partition"], PartitionReport.from_json(
        {"instance_id": inst["id"], "revision": inst["revision"], "state": STARTED}))


def _lease_shown(rt):
    return svc.show_computer(rt, "c1", rt.leases)["lease"]


def test_the_run_out_is_recorded_once_and_the_return_once(world, master_db):
    rt, clock, inst = world
    serial = svc.show_computer(rt, "c1")["serial"]
    before = last_tid(master_db)
    for _ in range(5):                                 # live: polls and looks write nothing
        clock.now += 10
        svc.desired_state(rt, "c1", known_serials=(serial,))
        assert lease_marks.record_ran_out(rt) == []
    assert last_tid(master_db) == before
    clock.now += 31                                    # out
    assert lease_marks.record_ran_out(rt) == ["c1"]
    out_tid = last_tid(master_db)
    assert out_tid != before
    lease = _lease_shown(rt)
    assert lease["state"] == EXPIRED and lease["ran_out_at"] == lease["expires_at"]
    assert svc.show_computer(rt, "c1")["serial"] == serial   # the node's document is the same
    for _ in range(5):                                 # still out: noticed again, written never
        clock.now += 3
        assert lease_marks.record_ran_out(rt) == []
    assert last_tid(master_db) == out_tid
    # its node calls again: one transaction records it back, the next polls none
    svc.desired_state(rt, "c1", known_serials=(serial,))
    back_tid = last_tid(master_db)
    assert back_tid != out_tid
    lease = _lease_shown(rt)
    assert lease["state"] == LIVE and lease["ran_out_at"] is None and lease["back_at"]
    for _ in range(5):
        clock.now += 10
        svc.desired_state(rt, "c1", known_serials=(serial,))
        assert lease_marks.record_ran_out(rt) == []
    assert last_tid(master_db) == back_tid
    # nothing was destroyed, moved or freed meanwhile
    shown = svc.show_instance(rt, inst["id"], rt.leases)
    assert shown["placement"] == inst["placement"] and shown["status"]["state"] == STARTED


def test_a_report_records_the_return_in_its_own_transaction(world, master_db):
    rt, clock, inst = world
    clock.now += 31
    lease_marks.record_ran_out(rt)
    before = last_tid(master_db)
    p = inst["placement"]
    svc.report_hosted(rt, "c1", p["partition"], STARTED)    # said again: the return only
    assert _lease_shown(rt)["ran_out_at"] is None
    assert last_tid(master_db) != before
    after = last_tid(master_db)
    svc.report_hosted(rt, "c1", p["partition"], STARTED)
    assert last_tid(master_db) == after


def test_two_processes_noticing_the_same_run_out_write_it_once(world, master_db, tmp_path):
    rt, clock, _inst = world
    # another process of the same master: its own writer, the same lease files
    other = Runtime(master_db, MasterSettings(),
                    leases=FileLeases(str(tmp_path / "leases"), 30.0, clock))
    try:
        clock.now += 31
        stale = lease_marks.ran_out_unrecorded(other)    # it looked before the first wrote
        assert stale == ["c1"]
        assert lease_marks.record_ran_out(rt) == ["c1"]
        written = last_tid(master_db)
        assert lease_marks.record_out(other, stale) == []   # finds it recorded: no write
        assert lease_marks.record_ran_out(other) == []
        assert last_tid(master_db) == written
        assert _lease_shown(rt)["ran_out_at"] is not None
    finally:
        other.close()


def test_a_replica_or_a_fenced_master_records_nothing(world):
    from slapfed.core.errors import ReadOnly
    from slapfed.master.server import lease_tasks
    rt, clock, _inst = world

    def refuse(promoting=False):
        raise ReadOnly("a replica")
    rt.check_writable = refuse
    (task,) = lease_tasks(rt)
    clock.now += 31
    task.run()                                          # neither writes nor raises
    assert _lease_shown(rt)["ran_out_at"] is None


def test_the_maintenance_owner_records_the_run_out(world, tmp_path):
    from slapfed.master.server import lease_tasks
    from slapfed.store.maintenance import Maintenance, MaintenanceOptions
    rt, clock, _inst = world
    m = Maintenance(rt.db, MaintenanceOptions(data_dir=str(tmp_path), fs_path=None,
                                              pack_every=0, tasks=lease_tasks(rt)),
                    clock=clock)
    try:
        m.run_once()
        assert _lease_shown(rt)["ran_out_at"] is None
        clock.now += 31
        m.run_once()
        assert _lease_shown(rt)["ran_out_at"] is not None
    finally:
        m.stop()


# -- the change feed and the origin master ----------------------------------------------------
@pytest.fixture
def peers(tmp_path):
    """Two masters over their own FileStorages: a (the origin) delegating URL to b,
    which runs it on c1 (its node polled once; lease 30 s on a clock the test moves)."""
    clock = Clock(time.time())
    db_a, db_b = open_db(None, str(tmp_path / "a")), open_db(None, str(tmp_path / "b"))
    a = Runtime(db_a, MasterSettings(name="a"),
                leases=FileLeases(str(tmp_path / "a-leases"), 30.0, clock))
    b = Runtime(db_b, MasterSettings(name="b"),
                leases=FileLeases(str(tmp_path / "b-leases"), 30.0, clock))
    try:
        svc.register_computer(b, ComputerRegistration.from_json(computer_body("c1", 2)))
        svc.supply(b, "c1", Supply(URL))
        svc.desired_state(b, "c1")
        fed.save_peer(a, "b", "https://127.0.0.9:8471", "-----BEGIN CERTIFICATE-----\nAA\n"
                      "-----END CERTIFICATE-----\n", credentials="/nonexistent")
        fed.set_policy(a, {"rules": [{"release": URL, "to": ["b"]}]})
        _created, inst = svc.request_instance(a, InstanceRequest.from_json(
            {"reference": "far", "software_url": URL}))
        assert inst["delegation"]["peer"] == "b"
        fwd = inst["delegation"]
        fed.mark_contacted(a, inst["id"], "b")
        # what a's forwarder does: request it at b as master/a, record b's answer
        remote = _started(b, fwd["remote_reference"], requester="master/a")
        fed.record_accepted(a, inst["id"], "b", inst["revision"], remote)
        yield {"a": a, "b": b, "clock": clock, "id": inst["id"], "remote": remote}
    finally:
        a.close()
        b.close()
        db_a.close()
        db_b.close()


def _follow(p, since):
    """One poll of b's feed by a, applied at a (what a's watcher does)."""
    cursor, items = fed.wait_changes(p["b"], "master/a", since, 0)
    if items:
        fed.apply_changes(p["a"], "b", items)
    return cursor, items


def _at_a(p):
    return svc.show_instance(p["a"], p["id"], p["a"].leases)


def test_the_origin_shows_unknown_once_the_peers_node_is_out_and_its_state_once_back(peers):
    p, clock = peers, peers["clock"]
    cursor, items = _follow(p, None)
    assert [i["id"] for i in items] == [p["remote"]["id"]]
    assert _at_a(p)["status"]["state"] == STARTED
    cursor, items = _follow(p, cursor)
    assert items == []                          # nothing moved since
    # b's node stops calling: nothing is committed, so nothing is reported yet...
    clock.now += 31
    assert _follow(p, cursor)[1] == []
    # ...until b's maintenance records the run out: the instance is reported, unknown
    assert lease_marks.record_ran_out(p["b"]) == ["c1"]
    cursor, items = _follow(p, cursor)
    assert [i["status"]["state"] for i in items] == [UNKNOWN]
    shown = _at_a(p)["status"]
    assert shown["state"] == UNKNOWN and shown["reported_state"] == STARTED
    assert shown["log_tail"].startswith("computer c1 last seen ")
    assert "lease 30 s ran out; last reported started" in shown["log_tail"]
    assert _at_a(p)["delegation"]["peer"] == "b"        # nothing moved at the origin
    assert _follow(p, cursor)[1] == []                  # once: later polls report nothing
    # b's node calls again: its return is committed, the instance reported started
    svc.desired_state(p["b"], "c1")
    cursor, items = _follow(p, cursor)
    assert [i["status"]["state"] for i in items] == [STARTED]
    shown = _at_a(p)["status"]
    assert shown["state"] == STARTED and "reported_state" not in shown
    assert _follow(p, cursor)[1] == []


def test_the_long_poll_wakes_for_a_run_out(peers):
    p, clock = peers, peers["clock"]
    cursor, _items = fed.changes(p["b"], "master/a", None)
    got = {}
    looked = threading.Event()
    real_changes = peer_api.changes

    def changes_then_tell(*args):
        try:
            return real_changes(*args)
        finally:
            looked.set()

    def poll():
        started = time.monotonic()
        got["answer"] = fed.wait_changes(p["b"], "master/a", cursor, 20, poll=30)
        got["seconds"] = time.monotonic() - started
        got["at"] = time.monotonic()
    peer_api.changes = changes_then_tell
    t = threading.Thread(target=poll)
    t.start()
    try:
        assert looked.wait(10)             # the poll read, found nothing, and waits
        peer_api.changes = real_changes
        assert "answer" not in got
        clock.now += 31
        woke_at = time.monotonic()
        lease_marks.record_ran_out(p["b"])
    finally:
        peer_api.changes = real_changes
        t.join(25)
    print(f"\nlong poll answered {got['at'] - woke_at:.3f} s after the run out was "
          "recorded")
    assert got["seconds"] < 5, got
    _cursor, items = got["answer"]
    assert [i["status"]["state"] for i in items] == [UNKNOWN]
    assert items[0]["status"]["reported_state"] == STARTED


def test_a_feed_without_any_transition_is_unchanged(peers):
    """The cursor covers the computers too: a cursor given back reports nothing new,
    whatever the computer's serial is."""
    p = peers
    cursor, items = fed.changes(p["b"], "master/a", None)
    assert len(items) == 1
    assert fed.changes(p["b"], "master/a", cursor) == (cursor, [])
    assert fed.changes(p["b"], "master/other", None)[1] == []
