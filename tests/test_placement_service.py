"""Placement in the master over a real FileStorage (and ZEO): relative keys against placed
instances, capabilities, the writer's snapshot staying true, stale snapshots never
double-allocating, and the explain route writing nothing."""
import pytest
import transaction

from slapfed import services
from slapfed.core.errors import InvalidInput, NoCapacity
from slapfed.core.wire import ComputerRegistration, InstanceRequest, Supply
from slapfed.model import ROOT_KEY
from slapfed.placement import build
from slapfed.placement.filters import FILTERS
from slapfed.master import runtime_of
from slapfed.services import placement
from slapfed.store import generations, open_db

from conftest import make_runtime

URL = "/srv/releases/hello/software.cfg"
API = "/api/v1"


def register(rt, cid, lan, continent, partitions=3, **extra):
    body = {"id": cid, "host": f"h-{cid}", "lan": lan, "country": lan + "-land",
            "continent": continent,
            "partitions": [{"id": f"p{i}", "address": f"127.0.1.{i + 1}", "port_base": 2000,
                            **({"capabilities": extra.pop("tag_first")} if i == 0 and
                               "tag_first" in extra else {})}
                           for i in range(partitions)]}
    body.update(extra)
    services.register_computer(rt, ComputerRegistration.from_json(body))
    services.supply(rt, cid, Supply(URL))


def request(rt, reference, sla=None, requester="alice", **extra):
    body = {"reference": reference, "software_url": URL, "requester": requester, **extra}
    if sla is not None:
        body["sla"] = sla
    return services.request_instance(rt, InstanceRequest.from_json(body))[1]


@pytest.fixture
def fed(master_runtime):
    """Two LANs in Europe, one in America."""
    register(master_runtime, "a1", "lan-a", "europe")
    register(master_runtime, "a2", "lan-a", "europe")
    register(master_runtime, "b1", "lan-b", "europe")
    register(master_runtime, "u1", "lan-u", "america")
    return master_runtime


def where(inst):
    return inst["placement"]["computer"]


@pytest.mark.parametrize("sla, allowed", [
    ({"same_host": "db-1"}, {"a1"}),
    ({"same_lan": "db-1"}, {"a1", "a2"}),
    ({"same_continent": "db-1"}, {"a1", "a2", "b1"}),
    ({"different_host": "db-1"}, {"a2", "b1", "u1"}),
    ({"different_lan": "db-1"}, {"b1", "u1"}),
    ({"different_continent": "db-1"}, {"u1"}),
    ([{"continent": "asia"}, {"different_continent": "db-1"}], {"u1"}),
], ids=["same_host", "same_lan", "same_continent", "different_host", "different_lan",
        "different_continent", "fallback"])
def test_relative_keys_follow_a_placed_instance(fed, sla, allowed):
    assert where(request(fed, "db-1", {"computer_guid": "a1"})) == "a1"
    for i in range(2):
        assert where(request(fed, f"web-{i}", sla)) in allowed


def test_relative_keys_see_the_instance_tree(fed):
    root = request(fed, "root", {"computer_guid": "b1"})
    db = request(fed, "db", {"computer_guid": "u1"}, requester="root-instance",
                 parent=root["id"])
    # another requester of the same tree names "db"; its parent pulls it close too
    web = request(fed, "web", {"same_continent": "db"}, requester="web-owner",
                  parent=db["id"])
    assert where(web) == "u1"


@pytest.mark.parametrize("sla, field", [
    ({"same_lan": "ghost"}, "sla.same_lan"),
    ([{}, {"different_host": ["db-1", "ghost"]}], "sla[1].different_host"),
], ids=["unknown", "unknown-in-fallback"])
def test_unknown_reference_is_invalid_and_writes_nothing(fed, sla, field):
    request(fed, "db-1")
    before = fed.db.storage.lastTransaction()
    with pytest.raises(InvalidInput) as info:
        request(fed, "web", sla)
    assert [d["field"] for d in info.value.details] == [field]
    assert "ghost" in info.value.message
    assert fed.db.storage.lastTransaction() == before


def test_unplaced_reference_is_a_refusal_with_its_reason(fed):
    db = request(fed, "db-1")
    services.destroy_instance(fed, db["id"])
    with pytest.raises(NoCapacity) as info:
        request(fed, "web", {"same_lan": "db-1"})
    assert info.value.message == ("no partition fits web: 4 computers refused by "
                                  "same_lan(db-1): db-1 is being destroyed")
    assert where(request(fed, "web", [{"same_lan": "db-1"}, {}])) in {"a1", "a2", "b1", "u1"}


def test_capabilities_reserve_computers_and_partitions(master_runtime):
    rt = master_runtime
    register(rt, "plain", "l", "europe", partitions=2)
    register(rt, "gpu", "l", "europe", partitions=2, capabilities=["gpu"])
    register(rt, "mixed", "l", "europe", partitions=2, tag_first=["ssd"])
    for i in range(2):
        assert where(request(rt, f"g{i}", {"capability": "gpu"})) == "gpu"
    ssd = request(rt, "s", {"capability": "ssd"})
    assert ssd["placement"]["computer"] == "mixed" and ssd["placement"]["partition"] == "p0"
    placed = [where(request(rt, f"w{i}")) for i in range(3)]
    assert sorted(placed) == ["mixed", "plain", "plain"]
    with pytest.raises(NoCapacity) as info:
        request(rt, "w9")
    assert "by capacity" in info.value.message


def _fresh_views(db):
    conn = db.open()
    try:
        app = conn.root()[ROOT_KEY]
        return {c.id: placement.view_of(c) for c in app.computers.values()}
    finally:
        conn.transaction_manager.abort()
        conn.close()


def test_snapshot_stays_true_through_allocations_destroys_and_registrations(fed):
    from slapfed.core.wire import PartitionReport
    insts = [request(fed, f"w{i}") for i in range(6)]
    register(fed, "c9", "lan-c", "asia", partitions=2, capabilities=["x"])
    services.register_computer(fed, ComputerRegistration.from_json(
        {"id": "a1", "host": "moved", "lan": "lan-b", "country": "fr", "continent": "europe",
         "partitions": []}))
    for inst in insts[:3]:
        services.destroy_instance(fed, inst["id"])
        services.report_partition(fed, where(inst), inst["placement"]["partition"],
                                  PartitionReport.from_json({
                                      "instance_id": inst["id"], "revision": 2,
                                      "state": "destroyed"}))
    with pytest.raises(NoCapacity):
        request(fed, "nope", {"lan": "nowhere"})          # an aborted use case
    state = fed.placement
    assert state.snapshot is not None and state.rebuilds == 1
    assert state.snapshot.views == _fresh_views(fed.db)
    rebuilt = build(_fresh_views(fed.db).values())
    assert state.snapshot.by_level == rebuilt.by_level
    assert state.snapshot.free_untagged == rebuilt.free_untagged
    assert state.snapshot.by_capability == rebuilt.by_capability


def test_a_stale_snapshot_never_double_allocates(master_db, master_runtime):
    rt = master_runtime
    register(rt, "only", "l", "europe", partitions=4)
    request(rt, "warm")                        # builds the writer's snapshot
    # another hand takes every partition but one, behind the snapshot's back
    conn = master_db.open()
    app = conn.root()[ROOT_KEY]
    comp = app.computers["only"]
    stolen = [pid for pid in comp.free_partition_ids(16)][:-1]
    for pid in stolen:
        comp.allocate(pid, f"i-thief-{pid}")
    transaction.commit()
    conn.close()
    placed = request(rt, "web")
    assert placed["placement"]["partition"] not in stolen
    with pytest.raises(NoCapacity):
        request(rt, "web-2")


def test_two_processes_share_a_zeo_storage_without_double_allocation(tmp_path):
    from conftest import zeo_runtimes
    with zeo_runtimes(tmp_path) as (one, two):     # two processes' runtimes
        register(one, "c", "l", "europe", partitions=4)
        request(one, "a")
        request(two, "b")                 # two's snapshot is built after a
        request(one, "c")                 # one's snapshot is stale: rebuilt
        request(two, "d")
        with pytest.raises(NoCapacity):
            request(one, "e")
        placed = [i["placement"]["partition"] for i in services.list_instances(two)]
        assert sorted(placed) == ["p0", "p1", "p2", "p3"]
        assert one.placement.rebuilds >= 2


def test_software_type_check_reads_the_supply_index(fed):
    from slapfed.core.errors import UnknownSoftwareType
    from slapfed.core.wire import SoftwareReport, software_hash
    services.report_software(fed, "b1", software_hash(URL),
                             SoftwareReport.from_json({"status": "installed",
                                                       "software_types": ["default"]}))
    with pytest.raises(UnknownSoftwareType):
        request(fed, "x", software_type="db")


def test_evolve2_indexes_existing_supplies(tmp_path):
    db = open_db(None, str(tmp_path))
    rt = make_runtime(db)
    register(rt, "old", "l", "europe")
    rt.close()
    conn = db.open()
    app = conn.root()[ROOT_KEY]
    app.supplied, app.placement_changes, app.generation = None, None, 1
    transaction.commit()
    conn.close()
    db.close()
    db = open_db(None, str(tmp_path))
    try:
        conn = db.open()
        app = conn.root()[ROOT_KEY]
        assert app.generation == generations.LATEST_GENERATION
        from slapfed.core.wire import software_hash
        assert list(app.computer_ids_supplied(software_hash(URL))) == ["old"]
        assert app.placement_changes() == 0
        conn.close()
    finally:
        db.close()


# -- explain (dry run) over HTTP -------------------------------------------------------
@pytest.fixture
def ready(api, master_app):
    rt = runtime_of(master_app)                # the app's own runtime
    register(rt, "a1", "lan-a", "europe")
    register(rt, "u1", "lan-u", "america")
    return api


def test_explain_writes_nothing_and_says_why(ready, master_db):
    ready.post(f"{API}/instances", json={"reference": "db", "software_url": URL,
                                          "sla": {"computer_guid": "a1"}})
    before = master_db.storage.lastTransaction()
    r = ready.post(f"{API}/placements", json={
        "reference": "web", "software_url": URL,
        "sla": [{"continent": "asia"}, {"different_continent": "db"}]})
    assert r.status_code == 200, r.json
    body = r.json
    assert body["placed"] and body["computer"] == "u1" and body["alternative"] == 1
    assert body["attempts"][0]["refusals"] == [
        {"plugin": "continent", "reason": "continent=asia", "count": 2, "sample": ["a1", "u1"]}]
    assert body["anchors"] == {"db": {"computer": "a1", "why": None}}
    nothing = ready.post(f"{API}/placements", json={"reference": "web", "software_url": URL,
                                                    "sla": {"lan": "mars"}}).json
    assert not nothing["placed"]
    assert nothing["message"] == "no partition fits web: 2 computers refused by lan=mars"
    bad = ready.post(f"{API}/placements", json={"reference": "web", "software_url": URL,
                                                "sla": {"planet": 1, "same_lan": "ghost"}})
    assert bad.status_code == 400
    assert master_db.storage.lastTransaction() == before
    assert ready.get(f"{API}/instances?reference=web").json["instances"] == []


def test_explain_reports_the_current_placement(ready):
    inst = ready.post(f"{API}/instances", json={"reference": "web", "software_url": URL}).json
    body = ready.post(f"{API}/placements", json={"reference": "web", "software_url": URL}).json
    assert body["instance"] == inst["id"]
    assert body["current"] == {"computer": inst["placement"]["computer"],
                               "partition": inst["placement"]["partition"]}


def test_the_master_config_sets_the_pipeline(master_db):
    from slapfed.master import close_app, create_app
    app = create_app({"INSECURE": True, "DB": master_db, "PLACEMENT": {"sample": 4,
                                                      "scores": {"spread": 1.0}}})
    try:
        config = runtime_of(app).placement.config
        assert config.sample == 4 and config.scores == (("spread", 1.0),)
    finally:
        close_app(app)
    with pytest.raises(InvalidInput) as info:
        create_app({"INSECURE": True, "DB": master_db, "PLACEMENT": {"filters": ["lan", "luck"]}})
    assert info.value.details == [{"field": "placement.filters", "problem": (
        "unknown filter 'luck' (known: " + ", ".join(FILTERS) + ")")}]
