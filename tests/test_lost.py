"""Lost computers: the lost filter as a table, and the verdict, the wipe and the node's
moved reports as use cases over a real FileStorage."""
from __future__ import annotations

import json
import time

import pytest

from slapfed import services as svc
from slapfed.core import errors
from slapfed.core.sla import ANYWHERE
from slapfed.core.states import DESTROYED, ERASED, FAILED, PENDING, QUARANTINED, STARTED
from slapfed.core.wire import (ComputerRegistration, InstanceRequest, LostVerdict, MovedReport,
                               PartitionReport, Supply, WipeRequest)
from slapfed.placement import ComputerView, PlacementRequest
from slapfed.placement.context import Context
from slapfed.placement.filters import FILTERS, REASON_LOST
from slapfed.placement.snapshot import MutableSnapshot
from slapfed.services import lost
from slapfed.services.leases import MemoryLeases
from slapfed.services.runtime import MasterSettings, Runtime

from conftest import SOFTWARE_URL as URL, computer_body, last_tid


# -- placement: the lost filter --------------------------------------------------------
@pytest.mark.parametrize("lost_ids, kept", [
    (set(), {"c1", "c2", "c3"}),
    ({"c2"}, {"c1", "c3"}),
    ({"c1", "c2", "c3"}, set()),
], ids=["none-lost", "one-lost", "all-lost"])
def test_the_lost_filter_fits_and_narrows_alike(lost_ids, kept):
    snap = MutableSnapshot()
    for cid in ("c1", "c2", "c3"):
        view = ComputerView.of(cid, partitions=[("p0", (), False)])
        snap.put(ComputerView(**{**view.__dict__, "lost": cid in lost_ids}))
    snap.commit()
    ctx = Context(PlacementRequest("web", "h", ANYWHERE), ANYWHERE.alternatives[0], snap)
    plugin = FILTERS["lost"]
    fits = {cid for cid in snap.views if plugin.fits(snap.views[cid], ctx) is None}
    narrowed = snap.all_ids
    for term in plugin.terms(ctx):
        narrowed = term.narrow(snap, narrowed)
        assert term.narrow(snap, None) == kept
    assert fits == narrowed == kept
    for cid in lost_ids:
        assert plugin.fits(snap.views[cid], ctx) == REASON_LOST


def test_a_view_put_again_unlost_leaves_the_lost_index():
    snap = MutableSnapshot()
    view = ComputerView.of("c1", partitions=[("p0", (), False)])
    snap.put(ComputerView(**{**view.__dict__, "lost": True}))
    assert snap.lost == {"c1"}
    snap.put(view)
    assert snap.lost == set()


# -- wire bodies ------------------------------------------------------------------------
@pytest.mark.parametrize("klass, body, field", [
    (LostVerdict, {"dry_run": "yes"}, "dry_run"),
    (LostVerdict, {"reason": 3}, "reason"),
    (LostVerdict, {"force": True}, "force"),
    (WipeRequest, {"partition": "../p0"}, "partition"),
    (MovedReport, {"instance_id": "i-1", "state": "destroyed"}, "state"),
    (MovedReport, {"state": QUARANTINED}, "instance_id"),
], ids=["dry-run-not-bool", "reason-not-text", "unknown-field", "partition-path",
        "moved-state", "moved-no-instance"])
def test_bad_bodies_name_the_field(klass, body, field):
    with pytest.raises(errors.InvalidInput) as exc:
        klass.from_json(body)
    assert field in [d["field"] for d in exc.value.details]


# -- use cases over a real FileStorage ----------------------------------------------------
@pytest.fixture
def world(master_db):
    """Three computers on three hosts (2 partitions each), all supplied URL, all polled."""
    rt = Runtime(master_db, MasterSettings(), leases=MemoryLeases(30.0))
    for i in (1, 2, 3):
        svc.register_computer(rt, ComputerRegistration.from_json(
            computer_body(f"c{i}", 2, host=f"h{i}", lan="lan-a")))
        svc.supply(rt, f"c{i}", Supply(URL))
        svc.desired_state(rt, f"c{i}")
    yield rt
    rt.close()


def _request(rt, reference, **extra):
    _created, inst = svc.request_instance(rt, InstanceRequest.from_json(
        {"reference": reference, "software_url": URL, **extra}))
    return inst


def _report(rt, inst, state=STARTED, connection=None):
    p = inst["placement"]
    return svc.report_partition(rt, p["computer"], p["partition"], PartitionReport.from_json(
        {"instance_id": inst["id"], "revision": inst["revision"], "state": state,
         "connection": connection or {}}))


def _on(rt, cid, reference, **extra):
    inst = _request(rt, reference, sla=[{"computer_guid": cid}, *extra.pop("then", [])],
                    **extra)
    assert inst["placement"]["computer"] == cid
    return _report(rt, inst, connection={"url": f"http://{cid}/"})


def test_a_lost_computers_instance_is_placed_again_elsewhere_keeping_its_identity(world):
    rt = world
    inst = _on(rt, "c1", "web-1", then=[{}])
    old = inst["placement"]["partition"]
    answer = svc.declare_lost(rt, "c1", "machine burnt")
    assert answer["computer"]["lost"]["reason"] == "machine burnt"
    [move] = answer["moves"]
    assert move["outcome"] == "moved" and move["instance"] == inst["id"]
    moved = svc.show_instance(rt, inst["id"], rt.leases)
    assert moved["id"] == inst["id"] and moved["reference"] == "web-1"
    assert moved["placement"]["computer"] in ("c2", "c3")
    assert moved["connection"] == {}                     # nobody reads the old node's
    assert moved["status"]["state"] == PENDING
    assert "moved from computer c1 (declared lost: machine burnt)" in \
        moved["status"]["log_tail"]
    comp = svc.show_computer(rt, "c1")
    part = next(p for p in comp["partitions"] if p["id"] == old)
    assert part["instance"] is None
    assert part["moved"] == {"instance": inst["id"], "quarantined": False, "wipe": False}
    # the new node publishes new parameters
    shown = _report(rt, moved, connection={"url": "http://new/"})
    assert shown["connection"] == {"url": "http://new/"}
    # nothing new goes to a lost computer, even asked by name
    with pytest.raises(errors.NoCapacity) as exc:
        _request(rt, "web-2", sla={"computer_guid": "c1"})
    assert REASON_LOST in exc.value.message


def test_the_moved_partition_is_not_reused_until_wiped(world):
    rt = world
    a = _on(rt, "c1", "a", then=[{}])
    b = _on(rt, "c1", "b", then=[{}])
    svc.declare_lost(rt, "c1", "gone")
    svc.wipe_computer(rt, "c1")                       # the computer is placeable again...
    assert svc.show_computer(rt, "c1")["lost"] is None
    with pytest.raises(errors.NoCapacity):            # ...but its partitions hold data
        _request(rt, "c", sla={"computer_guid": "c1"})
    pid = a["placement"]["partition"]
    svc.report_moved(rt, "c1", pid, a["id"], ERASED)
    c = _request(rt, "c", sla={"computer_guid": "c1"})
    assert c["placement"] == {**c["placement"], "computer": "c1", "partition": pid}
    assert b["id"] != c["id"]


def test_different_constraints_to_its_tree_hold_where_it_moves(world):
    rt = world
    _on(rt, "c2", "db")
    web = _on(rt, "c1", "web", then=[{"different_host": "db"}])
    answer = svc.declare_lost(rt, "c1", "gone")
    assert answer["moves"][0]["to"]["computer"] == "c3"
    assert svc.show_instance(rt, web["id"])["placement"]["computer"] == "c3"


def test_what_references_another_moves_after_it(world):
    """db and web both on c1, web kept apart from db: db moves first, web lands on a
    host other than db's new one."""
    rt = world
    db = _on(rt, "c1", "db", then=[{}])
    web = _on(rt, "c1", "web", then=[{"different_host": "db"}])
    svc.declare_lost(rt, "c1", "gone")
    where = {i: svc.show_instance(rt, i)["placement"]["computer"] for i in (db["id"], web["id"])}
    assert set(where.values()) == {"c2", "c3"}


def test_an_instance_that_fits_nowhere_is_failed_with_the_reason_never_lost(world):
    rt = world
    inst = _on(rt, "c1", "pinned")                    # its only alternative: c1
    [move] = svc.declare_lost(rt, "c1", "gone")["moves"]
    assert move["outcome"] == "not_placed"
    shown = svc.show_instance(rt, inst["id"])
    assert shown["placement"] is None and shown["status"]["state"] == FAILED
    assert "computer c1 was declared lost (gone)" in shown["status"]["log_tail"]
    assert "computer lost" in shown["status"]["log_tail"]
    # its destruction completes at once: nothing runs anywhere
    assert svc.destroy_instance(rt, inst["id"])["status"]["state"] == DESTROYED


def test_a_destroy_waiting_for_the_lost_node_completes_at_the_master(world):
    rt = world
    inst = _on(rt, "c1", "doomed", then=[{}])
    assert svc.destroy_instance(rt, inst["id"])["status"]["state"] == STARTED  # waits
    [move] = svc.declare_lost(rt, "c1", "gone")["moves"]
    assert move["outcome"] == "destroyed"
    shown = svc.show_instance(rt, inst["id"])
    assert shown["status"]["state"] == DESTROYED and shown["placement"] is None


def test_a_dry_run_answers_the_same_and_writes_nothing(world, master_db):
    rt = world
    inst = _on(rt, "c1", "web-1", then=[{}])
    before = last_tid(master_db)
    answer = svc.declare_lost(rt, "c1", "gone", dry_run=True)
    assert answer["dry_run"] is True and answer["moves"][0]["outcome"] == "moved"
    assert last_tid(master_db) == before
    assert svc.show_computer(rt, "c1")["lost"] is None
    assert svc.show_instance(rt, inst["id"])["placement"]["computer"] == "c1"


def test_the_desired_state_tells_the_node_what_moved_and_when_it_may_erase(world):
    rt = world
    inst = _on(rt, "c1", "web-1", then=[{}])
    pid = inst["placement"]["partition"]
    svc.declare_lost(rt, "c1", "gone")

    def entry():
        import json
        _serial, body = svc.desired_state(rt, "c1", renderer=rt.renderer)
        return next(p for p in json.loads(body)["partitions"] if p["id"] == pid)

    assert entry()["instance"] is None
    assert entry()["moved"] == {"instance": inst["id"], "wipe": False}
    svc.report_moved(rt, "c1", pid, inst["id"], QUARANTINED)
    assert next(p for p in svc.show_computer(rt, "c1")["partitions"]
                if p["id"] == pid)["moved"]["quarantined"] is True
    with pytest.raises(errors.Conflict) as exc:          # not allowed yet
        svc.report_moved(rt, "c1", pid, inst["id"], ERASED)
    assert "slapfed computer wipe" in exc.value.message
    with pytest.raises(errors.Conflict):                 # another instance: stale
        svc.report_moved(rt, "c1", pid, "i-other", QUARANTINED)
    svc.wipe_computer(rt, "c1", pid)
    assert entry()["moved"] == {"instance": inst["id"], "wipe": True}
    svc.report_moved(rt, "c1", pid, inst["id"], ERASED)
    assert "moved" not in entry()
    part = next(p for p in svc.show_computer(rt, "c1")["partitions"] if p["id"] == pid)
    assert part["moved"] is None and part["instance"] is None


def test_wiping_a_partition_that_holds_nothing_moved_is_a_conflict(world):
    rt = world
    with pytest.raises(errors.Conflict) as exc:
        svc.wipe_computer(rt, "c1", "p000")
    assert "nothing to wipe" in exc.value.message
    with pytest.raises(errors.NotFound):
        svc.wipe_computer(rt, "c1", "p999")
    with pytest.raises(errors.NotFound):
        svc.declare_lost(rt, "nope", "x")


def test_reports_of_the_old_node_on_a_moved_instance_are_refused(world):
    rt = world
    inst = _on(rt, "c1", "web-1", then=[{}])
    svc.declare_lost(rt, "c1", "gone")
    with pytest.raises(errors.Conflict):
        _report(rt, inst, connection={"url": "http://stale/"})
    assert svc.show_instance(rt, inst["id"])["connection"] == {}


def test_a_shared_instance_follows_its_host_elsewhere(world):
    rt = world
    host = _on(rt, "c1", "front", then=[{}])
    shared = _request(rt, "site", shared=True)
    assert shared["host_instance"] == host["id"]
    svc.declare_lost(rt, "c1", "gone")
    assert svc.show_instance(rt, shared["id"])["host_instance"] == host["id"]
    moved = svc.show_instance(rt, host["id"])
    assert moved["placement"]["computer"] != "c1"
    assert moved["shared_instances"] == [shared["id"]]


# -- the rebuild_after policy --------------------------------------------------------------
def test_rebuild_after_declares_lost_only_computers_out_for_that_long(master_db):
    now = [time.time()]
    leases = MemoryLeases(10.0, clock=lambda: now[0])
    rt = Runtime(master_db, MasterSettings(), leases=leases)
    try:
        for cid in ("c1", "c2"):
            svc.register_computer(rt, ComputerRegistration.from_json(computer_body(cid, 1)))
            svc.supply(rt, cid, Supply(URL))
            svc.desired_state(rt, cid)
        inst = _on(rt, "c1", "web", then=[{}])
        now[0] += 11                           # c1's lease ran out; c2 polls on
        svc.desired_state(rt, "c2")
        assert lost.declare_expired_lost(rt, 60.0, now[0]) == []   # unknown, not lost
        assert svc.show_instance(rt, inst["id"])["placement"]["computer"] == "c1"
        now[0] += 60
        svc.desired_state(rt, "c2")
        assert lost.declare_expired_lost(rt, 60.0, now[0]) == ["c1"]
        assert svc.show_instance(rt, inst["id"])["placement"]["computer"] == "c2"
        assert "rebuild_after" in svc.show_computer(rt, "c1")["lost"]["reason"]
        assert lost.declare_expired_lost(rt, 60.0, now[0]) == []   # once
    finally:
        rt.close()


# -- the node's planner: partitions whose instance moved away ----------------------------
from slapfed.core.states import INSTALLED  # noqa: E402
from slapfed.node.plan import Erase, LocalState, PartitionRecord, Quarantine, plan  # noqa: E402


def _moved_doc(wipe=False, instance=None):
    return {"computer": "c1", "serial": 2, "software": [],
            "partitions": [{"id": "part0", "address": "127.1.1.1", "port_base": 1,
                            "port_count": 1, "instance": instance,
                            "moved": {"instance": "i-1", "wipe": wipe}}]}


def _rec(state, iid="i-1"):
    return LocalState({}, {"part0": PartitionRecord(iid, 3, state, "d", "h")})


@pytest.mark.parametrize("wipe, local, actions", [
    (False, _rec(STARTED), [Quarantine("part0", "i-1", 3)]),
    (False, _rec(FAILED), [Quarantine("part0", "i-1", 3)]),
    (False, _rec(QUARANTINED), []),
    (False, LocalState(), []),
    (True, _rec(STARTED), [Quarantine("part0", "i-1", 3), Erase("part0", "i-1")]),
    (True, _rec(QUARANTINED), [Erase("part0", "i-1")]),
    (True, _rec(ERASED), []),
    (True, LocalState(), [Erase("part0", "i-1")]),
    (False, _rec(STARTED, "i-other"), [Quarantine("part0", "i-other", 3)]),
], ids=["running-is-quarantined", "failed-is-quarantined", "quarantined-stays",
        "never-had-it", "wipe-after-quarantine", "wipe", "erased-once", "wipe-unknown-data",
        "whatever-runs-is-kept"])
def test_a_moved_partition_is_quarantined_never_wiped_until_allowed(wipe, local, actions):
    assert list(plan(_moved_doc(wipe), local, 1000.0)) == actions


def test_a_quarantined_partition_given_a_new_instance_instantiates_it():
    from slapfed.node.plan import Instantiate, SoftwareRecord, Start
    inst = {"id": "i-2", "reference": "r", "requester": "a", "software_url": "/u",
            "software_hash": "h", "software_type": "default", "parameters": {},
            "requested_state": STARTED, "revision": 1, "shared_instances": []}
    doc = _moved_doc()
    doc["partitions"][0].pop("moved")
    doc["partitions"][0]["instance"] = inst
    local = LocalState({"h": SoftwareRecord("/u", INSTALLED)},
                       {"part0": PartitionRecord("i-1", 3, ERASED)})
    assert [type(a) for a in plan(doc, local, 1000.0)] == [Instantiate, Start]


def test_the_maintenance_owner_alone_runs_rebuild_after(master_db, tmp_path):
    from slapfed.master.server import rebuild_tasks
    from slapfed.store.maintenance import Maintenance, MaintenanceOptions
    now = [time.time()]
    leases = MemoryLeases(5.0, clock=lambda: now[0])
    rt = Runtime(master_db, MasterSettings(rebuild_after=10.0), leases=leases)
    assert rebuild_tasks(Runtime(master_db, MasterSettings(), leases=leases)) == ()  # off
    owners = [Maintenance(master_db, MaintenanceOptions(
        data_dir=str(tmp_path), fs_path=None, pack_every=0, tasks=rebuild_tasks(rt)),
        clock=lambda: now[0]) for _ in range(2)]
    try:
        for cid in ("c1", "c2"):
            svc.register_computer(rt, ComputerRegistration.from_json(computer_body(cid, 1)))
            svc.supply(rt, cid, Supply(URL))
            svc.desired_state(rt, cid)
        inst = _on(rt, "c1", "web", then=[{}])
        now[0] += 12                     # lease out for 7 s: unknown, not lost
        svc.desired_state(rt, "c2")
        owners[0].run_once()
        assert owners[0]._owner_fd is not None
        assert svc.show_computer(rt, "c1")["lost"] is None
        now[0] += 4                      # out for 11 s
        svc.desired_state(rt, "c2")
        owners[1].run_once()             # not the owner: runs nothing
        assert owners[1]._owner_fd is None
        assert svc.show_computer(rt, "c1")["lost"] is None
        owners[0].run_once()
        assert "rebuild_after" in svc.show_computer(rt, "c1")["lost"]["reason"]
        assert svc.show_instance(rt, inst["id"])["placement"]["computer"] == "c2"
    finally:
        for m in owners:
            m.stop()
        rt.close()


@pytest.mark.parametrize("value, ok", [(0, True), (30, True), (-1, False), ("x", False)])
def test_the_rebuild_after_setting(value, ok):
    if ok:
        assert MasterSettings.from_config({"REBUILD_AFTER": value}).rebuild_after == value
    else:
        with pytest.raises(errors.InvalidInput) as exc:
            MasterSettings.from_config({"REBUILD_AFTER": value})
        assert exc.value.details[0]["field"] == "rebuild_after"


# -- lost peers ---------------------------------------------------------------------------
PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@pytest.fixture
def fed_world(world):
    """The three computers, and peers b and c (paired; never called here)."""
    from slapfed.services import federation as fed
    for name in ("b", "c"):
        fed.save_peer(world, name, f"https://127.0.0.9:{8470 + ord(name)}", PEM,
                      credentials="/nonexistent")
    return world


def _delegated(rt, reference, to, contacted=True):
    from slapfed.services import federation as fed
    fed.set_policy(rt, {"rules": [{"release": URL, "to": to}]})
    inst = _request(rt, reference)
    assert inst["delegation"]["peer"] == to[0], inst
    if contacted:
        fed.forwards.mark_contacted(rt, inst["id"], to[0])
    return inst


def test_a_lost_peers_delegations_go_to_the_fallback_peer(fed_world):
    from slapfed.services import federation as fed
    rt = fed_world
    inst = _delegated(rt, "web", ["b", "c"])
    answer = svc.declare_peer_lost(rt, "b", "gone for good")
    assert [m["to"] for m in answer["moves"]] == [{"peer": "c"}]
    assert answer["peer"]["lost"]["reason"] == "gone for good"
    [orphan] = answer["peer"]["orphans"]
    assert orphan["instance"] == inst["id"] and orphan["remote_reference"]
    shown = svc.show_instance(rt, inst["id"])
    assert shown["id"] == inst["id"] and shown["delegation"]["peer"] == "c"
    assert shown["delegation"]["state"] == "queued"
    # nothing new goes to b; b can be removed now
    assert _request(rt, "web-2")["delegation"]["peer"] == "c"
    fed.remove_peer(rt, "b")


def test_a_lost_peers_delegations_come_home_when_the_policy_allows(fed_world):
    rt = fed_world
    inst = _delegated(rt, "web", ["b"])
    [move] = svc.declare_peer_lost(rt, "b", "gone")["moves"]
    assert move["outcome"] == "moved" and move["to"]["computer"] in ("c1", "c2", "c3")
    shown = svc.show_instance(rt, inst["id"])
    assert shown["delegation"] is None and shown["placement"] is not None
    assert "came back from peer b" in shown["status"]["log_tail"]


def test_a_destroy_waiting_for_a_lost_peer_completes_at_the_origin(fed_world):
    from slapfed.services import federation as fed
    rt = fed_world
    inst = _delegated(rt, "web", ["b"])
    waiting = svc.destroy_instance(rt, inst["id"])
    assert waiting["status"]["state"] != DESTROYED          # b may run it: it waits
    [move] = svc.declare_peer_lost(rt, "b", "gone")["moves"]
    assert move["outcome"] == "destroyed"
    assert svc.show_instance(rt, inst["id"])["status"]["state"] == DESTROYED
    out = fed.show_peer(rt, "b")
    assert [o["instance"] for o in out["orphans"]] == [inst["id"]]
    fed.remove_peer(rt, "b")


def test_a_peer_lost_dry_run_writes_nothing(fed_world, master_db):
    rt = fed_world
    inst = _delegated(rt, "web", ["b", "c"], contacted=False)
    before = last_tid(master_db)
    answer = svc.declare_peer_lost(rt, "b", "gone", dry_run=True)
    assert answer["dry_run"] and answer["moves"][0]["to"] == {"peer": "c"}
    assert answer["peer"]["orphans"] == []                  # never called: no orphan
    assert last_tid(master_db) == before
    assert svc.show_instance(rt, inst["id"])["delegation"]["peer"] == "b"
    with pytest.raises(errors.NotFound):
        svc.declare_peer_lost(rt, "zz", "x")


# -- backup and restore of an instance's data ----------------------------------------------
def test_a_moved_instance_carries_the_backup_it_published_to_its_new_node(world):
    import json
    rt = world
    inst = _request(rt, "keeper", sla=[{"computer_guid": "c1"}, {}])
    inst = _report(rt, inst, connection={"url": "http://c1/", "backup": "/backups/keeper"})
    svc.declare_lost(rt, "c1", "gone")
    moved = svc.show_instance(rt, inst["id"])
    assert moved["connection"] == {}
    _serial, body = svc.desired_state(rt, moved["placement"]["computer"],
                                      renderer=rt.renderer)
    [entry] = [p["instance"] for p in json.loads(body)["partitions"]
               if p["instance"] and p["instance"]["id"] == inst["id"]]
    assert entry["restore_from"] == "/backups/keeper"
    from slapfed.node.plan import InstanceSpec
    spec = InstanceSpec.from_json(entry)
    assert spec.restore_from == "/backups/keeper"
    assert spec.digest() == InstanceSpec.from_json(
        {k: v for k, v in entry.items() if k != "restore_from"}).digest()   # no rebuild


def test_the_keeper_samples_backup_and_restore(tmp_path):
    import threading
    from slapfed.samples import hello
    data = tmp_path / "a" / "srv" / "data.txt"
    data.parent.mkdir(parents=True)
    data.write_text("precious")
    where = tmp_path / "backups"
    done = threading.Event()
    worker = threading.Thread(target=hello.backup, args=(str(data), str(where), 0.02,
                                                        done.is_set))
    worker.start()
    try:
        done.wait(0)
        deadline = time.monotonic() + 10
        while not (where / "data.txt").exists() and time.monotonic() < deadline:
            done.wait(0.02)
    finally:
        done.set()
        worker.join(5)
    target = tmp_path / "b" / "srv" / "data.txt"
    assert hello.restore(str(where), str(target)) == 0
    assert target.read_text() == "precious"
    assert hello.restore(str(tmp_path / "none"), str(tmp_path / "c" / "x")) == 0  # nothing


# -- a child master rebuilt from its replica ---------------------------------------------
def _child_master(rt, *, replica_state=STARTED, replica_published=None, registered=False):
    """A child master's primary on c1 that published one replica, requested by its
    partition as a child instance and placed on c2 (different_host), reported as the
    replica says (``replica_state``, ``replica_published``). Returns (primary, replica)."""
    from dataclasses import replace
    primary = _request(rt, "child-1", sla=[{"computer_guid": "c1"}],
                       parameters={"name": "child-1", "replicas": "1"})
    _created, replica = svc.request_instance(rt, replace(InstanceRequest.from_json(
        {"reference": "child-1-replica-1", "software_url": URL, "software_type": "default",
         "parameters": {"name": "child-1-replica-1", "invitation": "{}"},
         "sla": [{"computer_guid": "c2"}], "parent": primary["id"]}),
        requester=primary["id"]))
    _report(rt, replica, replica_state, replica_published if replica_published is not None
            else {"role": "replica", "url": "https://c2:10001", "mode": "sync"})
    published = {"url": "https://c1:10001", "ca-certificate": "PEM", "replicas": "1",
                 "replica-1": "child-1-replica-1"}
    if registered:
        published = {"url": "https://c1:10001", "ca-certificate": "PEM"}
    _report(rt, primary, connection=published)
    if registered:
        def use_case(app):
            app.instances[primary["id"]].child_master = {"name": "child-1"}
        from slapfed.services.tx import write
        write(rt, use_case)
    return primary, replica


def test_a_lost_child_master_takes_over_its_replicas_partition_data_included(world):
    rt = world
    primary, replica = _child_master(rt)
    where = replica["placement"]
    answer = svc.declare_lost(rt, "c1", "disk gone")
    [move] = answer["moves"]
    assert move["outcome"] == "rebuilt" and move["instance"] == primary["id"]
    assert move["to"] == {"computer": where["computer"], "partition": where["partition"],
                          "from": "child-1-replica-1"}
    rebuilt = svc.show_instance(rt, primary["id"], rt.leases)
    assert rebuilt["placement"] == where and rebuilt["status"]["state"] == PENDING
    assert "rebuilt from its replica child-1-replica-1" in rebuilt["status"]["log_tail"]
    assert rebuilt["connection"] == {}                 # published again by its new node
    # the replica's node keeps the data and starts the primary's profile over them
    doc = json.loads(svc.desired_state(rt, "c2")[1])
    [entry] = [p for p in doc["partitions"] if p["id"] == where["partition"]]
    assert entry["instance"]["id"] == primary["id"]
    assert entry["instance"]["takes_over"] == replica["id"]
    # the replica gave its partition up; it waits for the new invitation of its primary
    gave_up = svc.show_instance(rt, replica["id"], rt.leases)
    assert gave_up["placement"] is None and gave_up["status"]["state"] == PENDING
    assert "promoted" in gave_up["status"]["log_tail"]
    # ... which requests it again (as itself, from its new partition): a new replica, on
    # another host than its primary's new one, the lost computer excluded
    from dataclasses import replace
    _created, again = svc.request_instance(rt, replace(InstanceRequest.from_json(
        {"reference": "child-1-replica-1", "software_url": URL,
         "parameters": {"name": "child-1-replica-1", "invitation": "{\"new\": 1}"},
         "sla": {"different_host": ["child-1"]}, "parent": primary["id"]}),
        requester=primary["id"]))
    assert again["id"] == replica["id"] and again["placement"]["computer"] == "c3"


@pytest.mark.parametrize("setup, says", [
    ({"replica_state": FAILED}, "child-1-replica-1 is failed, not started"),
    ({"replica_published": {"url": "https://c2:1"}}, "published no replica URL"),
    ({"registered": True}, "it has none"),
    ({"lease_out": True}, "computer c2 is silent"),
], ids=["replica-not-started", "not-a-replica", "registered-without-replicas",
        "replicas-computer-silent"])
def test_a_child_master_with_no_replica_to_rebuild_from_is_not_placed_again_empty(
        world, setup, says):
    rt = world
    lease_out = setup.pop("lease_out", False)
    primary, replica = _child_master(rt, **setup)
    if lease_out:
        rt.leases._table["c2"] = time.time() - 100
    before = last_tid(rt.db)
    dry = svc.declare_lost(rt, "c1", "disk gone", dry_run=True)
    assert last_tid(rt.db) == before                        # a dry run writes nothing
    answer = svc.declare_lost(rt, "c1", "disk gone")
    for a in (dry, answer):
        [move] = a["moves"]
        assert move["outcome"] == "not_placed" and says in move["reason"], move
        assert "not placed again empty" in move["reason"]
    shown = svc.show_instance(rt, primary["id"], rt.leases)
    assert shown["placement"] is None and shown["status"]["state"] == FAILED
    assert svc.show_instance(rt, replica["id"], rt.leases)["placement"] == \
        replica["placement"]                                # the replica is left alone


def test_a_moved_child_gets_its_secrets_pending_and_its_parent_runs_its_buildout_again(
        world):
    """The replica of a child master (a child instance with a secret parameter sealed to
    its partition) on a lost computer: placed again with that parameter pending (its new
    partition cannot open it), and its parent gets a new revision and a new
    children_moved count in its node's document, so that its buildout runs again and
    seals a new invitation to the new partition."""
    from dataclasses import replace
    from slapfed.core.sealed import PENDING as SECRET_PENDING
    from slapfed.core.sealed import PREFIX
    rt = world
    parent = _on(rt, "c1", "child-1", parameters={"name": "child-1"})
    sealed = PREFIX + "A" * 120
    _created, child = svc.request_instance(rt, replace(InstanceRequest.from_json(
        {"reference": "child-1-replica-1", "software_url": URL,
         "parameters": {"name": "child-1-replica-1", "invitation": sealed},
         "sla": [{"computer_guid": "c2"}, {"computer_guid": "c3"}],
         "parent": parent["id"]}),
        requester=parent["id"]))
    child = _report(rt, child, connection={"role": "replica", "url": "https://c2:1"})
    before = svc.show_instance(rt, parent["id"], rt.leases)
    [move] = svc.declare_lost(rt, "c2", "fan died")["moves"]
    assert move["outcome"] == "moved" and move["to"]["computer"] == "c3"
    moved = svc.show_instance(rt, child["id"], rt.leases)
    assert moved["parameters"] == {"name": "child-1-replica-1", "invitation": SECRET_PENDING}
    assert "its secret parameters (invitation) were sealed to its old partition" in \
        moved["status"]["log_tail"] and "its requester child-1" in moved["status"]["log_tail"]
    told = svc.show_instance(rt, parent["id"], rt.leases)
    assert told["revision"] == before["revision"] + 1
    doc = json.loads(svc.desired_state(rt, "c1")[1])
    [entry] = [p["instance"] for p in doc["partitions"]
               if p["instance"] and p["instance"]["id"] == parent["id"]]
    assert entry["children_moved"] == 1 and entry["revision"] == told["revision"]
    # an instance without a parent here moves alone, its plain parameters unchanged
    web = _on(rt, "c3", "web-1", parameters={"greeting": "hi"}, then=[{}])
    svc.declare_lost(rt, "c3", "flood")
    assert svc.show_instance(rt, web["id"], rt.leases)["parameters"] == {"greeting": "hi"}
