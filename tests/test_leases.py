"""Leases: the pure decision (a table), the two lease tables, and the use cases over a
real FileStorage: a computer whose node stops calling shows unknown, with what it hosts,
without a write; it gets no new instance; it shows what was reported once its node
calls again; and idle polling writes no transaction."""
import json
import os

import pytest

from slapfed import services as svc
from slapfed.core import errors
from slapfed.core.leases import EXPIRED, LIVE, NONE, lease_at
from slapfed.core.states import STARTED, UNKNOWN
from slapfed.core.wire import ComputerRegistration, InstanceRequest, PartitionReport, Supply
from slapfed.placement import ComputerView, PlacementRequest
from slapfed.placement.filters import FILTERS, REASON_LEASE
from slapfed.placement.context import Context
from slapfed.placement.snapshot import MutableSnapshot
from slapfed.core.sla import ANYWHERE
from slapfed.services.leases import FileLeases, MemoryLeases, computer_of, file_name
from slapfed.services.runtime import MasterSettings, Runtime
from slapfed.services.topology_state import live_state

from conftest import last_tid

URL = "/srv/releases/hello/software.cfg"


# -- the decision ------------------------------------------------------------------------
@pytest.mark.parametrize("now, renewed, interval, state, expires", [
    (100.0, None, 30.0, NONE, None),          # never renewed: no lease, nothing ran out
    (100.0, 100.0, 30.0, LIVE, 130.0),        # just renewed
    (129.9, 100.0, 30.0, LIVE, 130.0),        # still within
    (130.0, 100.0, 30.0, EXPIRED, 130.0),     # exactly the interval: ran out
    (500.0, 100.0, 30.0, EXPIRED, 130.0),     # long gone
    (101.0, 100.0, 2.0, LIVE, 102.0),         # a short lease
    (102.5, 100.0, 2.0, EXPIRED, 102.0),
    (99.0, 100.0, 2.0, LIVE, 102.0),          # a renewal "in the future" (clock step back)
])
def test_lease_state(now, renewed, interval, state, expires):
    lease = lease_at(now, renewed, interval)
    assert (lease.state, lease.expires_at, lease.expired) == (state, expires, state == EXPIRED)


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture(params=["memory", "files"])
def table(request, tmp_path):
    clock = Clock()
    leases = (MemoryLeases(30.0, clock) if request.param == "memory"
              else FileLeases(str(tmp_path / "leases"), 30.0, clock))
    return leases, clock


def test_a_lease_table_renews_and_runs_out(table):
    leases, clock = table
    assert leases.lease("c1").state == NONE
    leases.renew("c1")
    leases.renew("c2")
    assert leases.lease("c1").state == LIVE
    clock.now += 31
    leases.renew("c2")
    assert leases.lease("c1").state == EXPIRED
    assert leases.lease("c2").state == LIVE
    assert leases.expired_ids() == {"c1"}
    clock.now += 29                  # c2 still live, the scan is read again (not cached)
    assert leases.expired_ids() == {"c1"}
    leases.renew("c1")
    clock.now += 1.5                 # c2 was renewed 30.5 s ago: it ran out
    assert leases.expired_ids() == {"c2"}
    assert leases.lease("c1").state == LIVE


def test_file_leases_are_shared_by_processes_of_one_data_directory(tmp_path):
    clock = Clock()
    one = FileLeases(str(tmp_path / "leases"), 30.0, clock)
    other = FileLeases(str(tmp_path / "leases"), 30.0, clock)    # another worker
    one.renew("c1")
    assert other.lease("c1").state == LIVE
    assert other.lease("c1").renewed_at == pytest.approx(clock.now)


@pytest.mark.parametrize("cid", ["c1", "../../etc/passwd", "a/b", ".", "..", "é-ü", "-x"])
def test_a_lease_file_name_is_never_a_path(tmp_path, cid):
    name = file_name(cid)
    assert "/" not in name and name not in (".", "..", "") and not name.startswith(".")
    assert computer_of(name) == cid
    leases = FileLeases(str(tmp_path / "leases"), 30.0, Clock())
    leases.renew(cid)
    assert os.listdir(tmp_path / "leases") == [name]
    assert leases.expired_ids(leases.clock() + 31) == {cid}


@pytest.mark.parametrize("value", [0, -1, "soon", float("nan")])
def test_a_lease_must_be_a_positive_number_of_seconds(value):
    with pytest.raises(errors.InvalidInput) as exc:
        MasterSettings.from_config({"LEASE": value})
    assert exc.value.details == [{"field": "lease", "problem": "must be a number of seconds > 0"}]


def test_the_lease_setting():
    assert MasterSettings.from_config({}).lease == 30.0
    assert MasterSettings.from_config({"LEASE": "2"}).lease == 2.0


# -- placement: the lease filter ------------------------------------------------------------
def _snapshot(*ids):
    snap = MutableSnapshot()
    for cid in ids:
        snap.put(ComputerView.of(cid, partitions=[("p0", (), False)]))
    snap.commit()
    return snap


@pytest.mark.parametrize("expired, kept", [
    (frozenset(), {"c1", "c2", "c3"}),
    (frozenset({"c2"}), {"c1", "c3"}),
    (frozenset({"c1", "c2", "c3"}), set()),
    (frozenset({"gone"}), {"c1", "c2", "c3"}),       # an id the snapshot does not have
])
def test_the_lease_filter_fits_and_narrows_alike(expired, kept):
    snap = _snapshot("c1", "c2", "c3")
    ctx = Context(PlacementRequest("web", "h", ANYWHERE, expired=expired),
                  ANYWHERE.alternatives[0], snap)
    plugin = FILTERS["lease"]
    fits = {cid for cid in snap.views if plugin.fits(snap.views[cid], ctx) is None}
    narrowed = set(snap.all_ids)
    for term in plugin.terms(ctx):
        narrowed = term.narrow(snap, narrowed)
        assert term.narrow(snap, None) == kept
    assert fits == narrowed == kept
    for cid in set(snap.views) - kept:
        assert plugin.fits(snap.views[cid], ctx) == REASON_LEASE


# -- the use cases over a real FileStorage -----------------------------------------------
@pytest.fixture
def world(master_db, tmp_path, master_factories):
    """A runtime whose lease table (files, 30 s) reads a clock the test moves; computer
    c1 (2 partitions) supplied URL, its node has polled once."""
    clock = Clock(__import__("time").time())
    leases = FileLeases(str(tmp_path / "leases"), 30.0, clock)
    rt = Runtime(master_db, MasterSettings(), leases=leases)
    svc.register_computer(rt, ComputerRegistration.from_json(
        master_factories.computer("c1", 2, lan="lan-a")))
    svc.supply(rt, "c1", Supply(URL))
    svc.desired_state(rt, "c1")
    yield rt, clock
    rt.close()


def _started(rt):
    _created, inst = svc.request_instance(rt, InstanceRequest.from_json(
        {"reference": "web-1", "software_url": URL}))
    p = inst["placement"]
    svc.report_partition(rt, "c1", p["partition"], PartitionReport.from_json(
        {"instance_id": inst["id"], "revision": inst["revision"], "state": STARTED}))
    return inst


def test_a_computer_not_heard_from_shows_unknown_without_a_write(world, master_db):
    rt, clock = world
    inst = _started(rt)
    conn = master_db.open()
    try:
        assert svc.show_computer(conn, "c1", rt.leases)["lease"]["state"] == LIVE
        assert svc.show_instance(conn, inst["id"], rt.leases)["status"]["state"] == STARTED
        before = last_tid(master_db)
        clock.now += 31
        comp = svc.show_computer(conn, "c1", rt.leases)
        shown = svc.show_instance(conn, inst["id"], rt.leases)
        assert comp["lease"]["state"] == EXPIRED
        assert comp["last_contact"] is not None
        st = shown["status"]
        assert st["state"] == UNKNOWN and st["reported_state"] == STARTED
        assert st["log_tail"].startswith("computer c1 last seen ")
        assert "lease 30 s ran out; last reported started" in st["log_tail"]
        assert [i["id"] for i in svc.list_instances(conn, status=UNKNOWN,
                                                    leases=rt.leases)] == [inst["id"]]
        live = live_state(conn, rt.leases)
        assert live["computers"][0]["lease"]["state"] == EXPIRED
        assert live["instances"][0]["state"] == UNKNOWN
        assert live["instances"][0]["reason"].startswith("computer c1 last seen")
        from slapfed.topology import graph, report
        from slapfed.topology.files import EMPTY
        text = report.tree_text(report.tree(graph.build(EMPTY, {"master": None, **live})))
        assert "computer c1  1/2 partitions used  unknown: lease ran out at " in text, text
        assert f"web-1 ({inst['id']}, unknown, by " in text, text
        # without leases (the stored view): unchanged
        assert svc.show_instance(conn, inst["id"])["status"]["state"] == STARTED
        assert last_tid(master_db) == before          # nothing was written
        # its node calls again: what it reported shows again
        svc.desired_state(rt, "c1", known_serials=(comp["serial"],))
        assert svc.show_instance(conn, inst["id"], rt.leases)["status"]["state"] == STARTED
        assert svc.show_computer(conn, "c1", rt.leases)["lease"]["state"] == LIVE
        assert last_tid(master_db) == before
    finally:
        conn.transaction_manager.abort()
        conn.close()


def test_nothing_is_freed_and_nothing_new_goes_to_an_expired_computer(world):
    rt, clock = world
    inst = _started(rt)
    clock.now += 31
    with pytest.raises(errors.NoCapacity) as exc:
        svc.request_instance(rt, InstanceRequest.from_json(
            {"reference": "web-2", "software_url": URL}))
    assert "lease expired" in exc.value.message
    explained = svc.explain_request(rt, InstanceRequest.from_json(
        {"reference": "web-2", "software_url": URL}))
    refusals = explained["attempts"][0]["refusals"]
    assert {"plugin": "lease", "reason": REASON_LEASE, "count": 1,
            "sample": ["c1"]} in refusals
    comp = svc.show_computer(rt, "c1")
    assert [p["instance"] for p in comp["partitions"]].count(inst["id"]) == 1
    # the node calls again: c1 takes new instances again
    svc.desired_state(rt, "c1")
    created, other = svc.request_instance(rt, InstanceRequest.from_json(
        {"reference": "web-2", "software_url": URL}))
    assert created and other["placement"]["computer"] == "c1"


def test_idle_polls_renew_the_lease_and_write_no_transaction(world, master_db):
    rt, clock = world
    serial, _body = svc.desired_state(rt, "c1")       # the contact was recorded at first poll
    before = last_tid(master_db)
    renewed = []
    for _ in range(5):
        clock.now += 10                                # every poll renews: never runs out
        assert svc.desired_state(rt, "c1", known_serials=(serial,)) == (serial, None)
        renewed.append(rt.leases.lease("c1").state)
    assert renewed == [LIVE] * 5
    assert last_tid(master_db) == before


def test_an_administrators_look_does_not_renew(world):
    rt, clock = world
    clock.now += 31
    svc.desired_state(rt, "c1", renew=False)
    assert rt.leases.lease("c1").state == EXPIRED


def test_a_partition_reporting_itself_does_not_renew_its_node(world):
    from slapfed.core import claims
    rt, clock = world
    inst = _started(rt)
    clock.now += 31
    p = inst["placement"]
    svc.report_partition(rt, "c1", p["partition"], PartitionReport.from_json(
        {"instance_id": inst["id"], "revision": inst["revision"], "state": STARTED}),
        claims.PARTITION)
    assert rt.leases.lease("c1").state == EXPIRED
    svc.report_partition(rt, "c1", p["partition"], PartitionReport.from_json(
        {"instance_id": inst["id"], "revision": inst["revision"], "state": STARTED}))
    assert rt.leases.lease("c1").state == LIVE


def test_an_unknown_computer_gets_no_lease_file(world, tmp_path):
    rt, _clock = world
    with pytest.raises(errors.NotFound):
        svc.desired_state(rt, "../nope")
    assert os.listdir(tmp_path / "leases") == [file_name("c1")]


def test_the_runtime_keeps_leases_under_its_data_directory(master_db, tmp_path):
    rt = Runtime(master_db, MasterSettings(data_dir=str(tmp_path / "data"), lease=5))
    try:
        assert isinstance(rt.leases, FileLeases) and rt.leases.interval == 5.0
        assert rt.leases.directory == str(tmp_path / "data" / "leases")
    finally:
        rt.close()
    rt = Runtime(master_db, MasterSettings())
    try:
        assert isinstance(rt.leases, MemoryLeases)
    finally:
        rt.close()


def test_the_api_shows_the_lease(api):
    from conftest import computer_body
    api.post("/api/v1/computers", json=computer_body("c1", 1))
    assert api.get("/api/v1/computers/c1").json["lease"]["state"] == NONE
    api.get("/api/v1/computers/c1/desired-state")
    lease = api.get("/api/v1/computers/c1").json["lease"]
    assert lease["state"] == LIVE and lease["interval"] == 30.0 and lease["expires_at"]
    listed = api.get("/api/v1/computers").json["computers"]
    assert listed[0]["lease"] == lease
    assert json.dumps(api.get("/api/v1/topology").json["live"]["computers"][0]["lease"]) \
        == json.dumps(lease)
