"""Use cases over a real FileStorage: requests, revisions and serials, reports, shared
instances, refusals. Every write goes through the services (one transaction each)."""
import json
import time

import pytest

from slapfed import services as svc
from slapfed.core import errors
from slapfed.core.states import DESTROYED, FAILED, PENDING, STARTED, STOPPED
from slapfed.core.wire import (
    ComputerRegistration, InstanceRequest, PartitionReport, SoftwareReport, Supply,
    software_hash,
)
from slapfed.services import computers as computer_svc
from slapfed.services import slap_render

URL = "/srv/releases/hello/software.cfg"
OTHER_URL = "/srv/releases/other/software.cfg"


@pytest.fixture
def rt(master_runtime, master_factories):
    """A master with computer c1 (4 partitions, lan-a) supplied URL."""
    svc.register_computer(master_runtime, ComputerRegistration.from_json(
        master_factories.computer("c1", 4, lan="lan-a")))
    svc.supply(master_runtime, "c1", Supply(URL))
    return master_runtime


def request(rt, reference="web-1", **extra):
    return svc.request_instance(rt, InstanceRequest.from_json(
        {"reference": reference, "software_url": URL, **extra}))


def serial(rt, cid="c1"):
    return svc.show_computer(rt, cid)["serial"]


def desired(rt, cid="c1"):
    _serial, body = svc.desired_state(rt, cid)
    return json.loads(body)


def report(rt, inst, state, revision=None, **extra):
    p = inst["placement"]
    return svc.report_partition(rt, p["computer"], p["partition"], PartitionReport.from_json(
        {"instance_id": inst["id"], "revision": inst["revision"] if revision is None
         else revision, "state": state, **extra}))


def free_partitions(rt, cid="c1"):
    return [p["id"] for p in svc.show_computer(rt, cid)["partitions"] if p["instance"] is None]


# -- request ------------------------------------------------------------------------
def test_new_request_places_instance_on_a_free_partition(rt):
    created, inst = request(rt)
    assert created
    assert inst["placement"]["computer"] == "c1"
    assert inst["status"] == {"state": PENDING, "revision": 0, "reported_at": None,
                              "log_tail": "", "promises": []}
    assert inst["revision"] == 1
    assert inst["placement"]["partition"] not in free_partitions(rt)


def test_repeated_request_is_idempotent_and_writes_nothing(rt, master_db):
    _, first = request(rt, parameters={"a": "1"})
    before = master_db.storage.lastTransaction()
    created, again = request(rt, parameters={"a": "1"})
    assert not created
    assert again["id"] == first["id"] and again["revision"] == first["revision"]
    assert master_db.storage.lastTransaction() == before


@pytest.mark.parametrize("change", [
    {"parameters": {"a": "2"}}, {"state": STOPPED}, {"software_type": "other"},
], ids=["parameters", "state", "software-type"])
def test_change_bumps_revision_and_serial(rt, change):
    _, first = request(rt, parameters={"a": "1"})
    s0 = serial(rt)
    _, second = request(rt, **{"parameters": {"a": "1"}, **change})
    assert second["revision"] == first["revision"] + 1
    assert serial(rt) == s0 + 1
    entry = next(p for p in desired(rt)["partitions"] if p["id"] ==
                 first["placement"]["partition"])["instance"]
    assert entry["revision"] == second["revision"]


def test_sla_change_does_not_bump_revision(rt):
    _, first = request(rt)
    _, second = request(rt, sla={"lan": "lan-a"})
    assert second["revision"] == first["revision"] and second["sla"] == {"lan": "lan-a"}


def test_requester_scopes_references(rt):
    _, a = request(rt, requester="alice")
    _, b = request(rt, requester="bob")
    assert a["id"] != b["id"]
    assert [i["id"] for i in svc.list_instances(rt, requester="alice")] == [a["id"]]
    assert [i["id"] for i in svc.list_instances(rt, reference="web-1")] != []


def test_child_is_listed_on_its_parent(rt):
    _, parent = request(rt, reference="root")
    _, child = request(rt, reference="leaf", parent=parent["id"])
    assert svc.show_instance(rt, parent["id"])["children"] == [child["id"]]
    with pytest.raises(errors.InvalidInput):
        request(rt, reference="orphan", parent="i-nope")


def test_no_capacity_explains_and_writes_nothing(rt, master_db):
    for i in range(4):
        request(rt, reference=f"web-{i}")
    before = master_db.storage.lastTransaction()
    with pytest.raises(errors.NoCapacity) as info:
        request(rt, reference="web-4")
    assert "no partition fits web-4: 1 computer refused by capacity" == info.value.message
    with pytest.raises(errors.NoCapacity) as info:
        request(rt, reference="web-5", sla={"lan": "lan-b"})
    assert "lan=lan-b" in info.value.message
    assert master_db.storage.lastTransaction() == before
    assert svc.list_instances(rt, reference="web-4") == []


def test_release_not_supplied_is_refused(rt):
    with pytest.raises(errors.NoCapacity) as info:
        svc.request_instance(rt, InstanceRequest.from_json(
            {"reference": "x", "software_url": OTHER_URL}))
    assert "release not supplied" in info.value.message


# -- software ---------------------------------------------------------------------
def test_unknown_software_type_once_types_are_reported(rt):
    request(rt, reference="before", software_type="anything")  # nothing reported yet
    svc.report_software(rt, "c1", software_hash(URL),
                        SoftwareReport.from_json({"status": "installed",
                                                  "software_types": ["default", "db"]}))
    request(rt, reference="db-1", software_type="db")
    with pytest.raises(errors.UnknownSoftwareType) as info:
        request(rt, reference="x", software_type="cache")
    assert "known: db, default" in info.value.message


def test_software_report_records_status_and_destroyed_removes(rt):
    h = software_hash(URL)
    sw = svc.report_software(rt, "c1", h, SoftwareReport.from_json(
        {"status": "failed", "log_tail": "boom"}))
    assert sw["status"] == "failed" and sw["log_tail"] == "boom" and sw["reported_at"]
    s0 = serial(rt)
    svc.unsupply(rt, "c1", h)
    assert serial(rt) == s0 + 1
    assert desired(rt)["software"] == [{"url": URL, "hash": h, "state": DESTROYED}]
    svc.report_software(rt, "c1", h, SoftwareReport.from_json({"status": "destroyed"}))
    assert svc.show_computer(rt, "c1")["software"] == []
    with pytest.raises(errors.NotFound):
        svc.report_software(rt, "c1", h, SoftwareReport.from_json({"status": "installed"}))


def test_unsupply_refused_while_instances_use_the_release(rt):
    request(rt)
    with pytest.raises(errors.Conflict) as info:
        svc.supply(rt, "c1", Supply(URL, DESTROYED))
    assert "web-1" in info.value.message


def test_registering_again_keeps_partitions_and_adds_new_ones(rt, master_factories):
    _, inst = request(rt)
    s0 = serial(rt)
    created, comp = svc.register_computer(rt, ComputerRegistration.from_json(
        master_factories.computer("c1", 6, lan="lan-z")))
    assert not created and comp["lan"] == "lan-z" and len(comp["partitions"]) == 6
    assert comp["serial"] == s0 + 1
    hosting = [p for p in comp["partitions"] if p["instance"] == inst["id"]]
    assert len(hosting) == 1


# -- partition reports ------------------------------------------------------------
def test_report_records_status_without_bumping_serial(rt):
    _, inst = request(rt)
    s0 = serial(rt)
    got = report(rt, inst, STARTED, connection={"url": "http://x"},
                 promises=[{"name": "http", "ok": True}])
    assert got["status"]["state"] == STARTED and got["status"]["revision"] == 1
    assert got["connection"] == {"url": "http://x"}
    assert got["status"]["promises"] == [{"name": "http", "ok": True, "message": ""}]
    assert serial(rt) == s0


def test_destroyed_instance_frees_its_partition(rt):
    _, inst = request(rt)
    pid = inst["placement"]["partition"]
    destroyed = svc.destroy_instance(rt, inst["id"])
    assert destroyed["requested_state"] == DESTROYED and destroyed["placement"] is not None
    freed = report(rt, destroyed, DESTROYED)
    assert freed["placement"] is None and freed["status"]["state"] == DESTROYED
    assert pid in free_partitions(rt)
    assert all(p["instance"] is None for p in desired(rt)["partitions"])


def test_destroyed_instance_requested_again_is_placed_again(rt):
    _, inst = request(rt)
    report(rt, svc.destroy_instance(rt, inst["id"]), DESTROYED)
    created, again = request(rt)
    assert not created and again["id"] == inst["id"]
    assert again["placement"] is not None and again["status"]["state"] == PENDING


def test_destroying_an_unplaced_instance_completes_at_once(rt):
    _, inst = request(rt, state=DESTROYED)
    assert inst["placement"] is None and inst["status"]["state"] == DESTROYED


def test_report_of_another_instance_is_a_conflict(rt, master_db):
    _, a = request(rt, reference="a")
    _, b = request(rt, reference="b")
    before = master_db.storage.lastTransaction()
    stale = dict(b, placement=a["placement"])
    with pytest.raises(errors.Conflict) as info:
        report(rt, stale, STARTED)
    assert a["id"] in info.value.message and b["id"] in info.value.message
    with pytest.raises(errors.Conflict):
        report(rt, a, STARTED, revision=a["revision"] + 1)
    assert master_db.storage.lastTransaction() == before


def test_report_on_freed_partition_is_a_conflict(rt):
    _, inst = request(rt)
    report(rt, svc.destroy_instance(rt, inst["id"]), DESTROYED)
    with pytest.raises(errors.Conflict):
        report(rt, inst, STARTED)


def test_destroyed_report_while_restarted_keeps_the_partition(rt):
    """The node acted on the older revision: its report of destruction no longer fits
    what is requested and is refused; the partition and the status stay as they were
    (the node instantiates the new revision on its next cycle)."""
    _, inst = request(rt)
    destroying = svc.destroy_instance(rt, inst["id"])
    restarted = svc.change_state(rt, inst["id"], STARTED)
    with pytest.raises(errors.ReportRefused):
        report(rt, destroying, DESTROYED)
    got = svc.show_instance(rt, inst["id"])
    assert got["placement"] == restarted["placement"]
    assert got["status"] == restarted["status"]


# -- shared instances ----------------------------------------------------------------
def test_shared_instance_without_a_host_waits_for_one(rt):
    created, site = request(rt, reference="site-1", shared=True)
    assert created and site["host_instance"] is None and site["status"]["state"] == PENDING
    assert "no host open to anonymous yet" in site["status"]["log_tail"]
    # a host of the same owner attaches it as soon as it is requested
    _, host = request(rt, reference="front")
    assert svc.show_instance(rt, host["id"])["shared_instances"] == [site["id"]]
    assert svc.show_instance(rt, site["id"])["host_instance"] == host["id"]


def test_shared_instance_attaches_to_a_host(rt):
    _, host = request(rt, reference="front")
    s0 = serial(rt)
    _, site = request(rt, reference="site-1", shared=True, parameters={"domain": "a.org"})
    assert site["placement"] is None and site["host_instance"] == host["id"]
    host_now = svc.show_instance(rt, host["id"])
    assert host_now["revision"] == host["revision"] + 1
    assert host_now["shared_instances"] == [site["id"]]
    assert serial(rt) > s0
    entry = next(p["instance"] for p in desired(rt)["partitions"]
                 if p["instance"] and p["instance"]["id"] == host["id"])
    assert entry["shared_instances"] == [{"id": site["id"], "reference": "site-1",
                                          "parameters": {"domain": "a.org"}}]
    # the host applying its latest revision makes the shared instance started
    report(rt, host_now, STARTED)
    assert svc.show_instance(rt, site["id"])["status"]["state"] == STARTED
    # changing the shared instance's parameters changes the host's document
    s1 = serial(rt)
    request(rt, reference="site-1", shared=True, parameters={"domain": "b.org"})
    assert serial(rt) == s1 + 1
    # destroying it detaches it at once
    gone = svc.destroy_instance(rt, site["id"])
    assert gone["host_instance"] is None and gone["status"]["state"] == DESTROYED
    assert svc.show_instance(rt, host["id"])["shared_instances"] == []


def test_host_report_gives_each_shared_instance_its_connection(rt):
    _, host = request(rt, reference="front")
    _, other = request(rt, reference="other", software_type="other")   # hosts none of them
    _, a = request(rt, reference="site-a", shared=True, parameters={"site": "a"})
    _, b = request(rt, reference="site-b", shared=True, parameters={"site": "b"})
    assert a["host_instance"] == b["host_instance"] == host["id"]
    host = svc.show_instance(rt, host["id"])
    published = {a["id"]: {"url": "http://127.0.0.1:10000/a/", "site": "a"},
                 b["id"]: {"error": "parameter 'backend' is required"},
                 other["id"]: {"url": "http://evil/"},      # not attached to this host
                 "i-unknown": {"url": "http://nowhere/"}}
    got = report(rt, host, STARTED, connection={"url": "http://127.0.0.1:10000/"},
                 shared_connections=published)
    assert got["connection"] == {"url": "http://127.0.0.1:10000/"}
    a_now, b_now = svc.show_instance(rt, a["id"]), svc.show_instance(rt, b["id"])
    assert a_now["connection"] == published[a["id"]]
    assert b_now["connection"] == published[b["id"]]
    assert a_now["status"]["state"] == STARTED
    # the host refused b (it published only an error for it): b is failed, saying why
    assert b_now["status"]["state"] == FAILED and b_now["status"]["revision"] == b["revision"]
    assert "cannot serve it: parameter 'backend' is required" in b_now["status"]["log_tail"]
    assert svc.show_instance(rt, other["id"])["connection"] == {}
    # the same report again leaves the shared instances untouched
    report(rt, host, STARTED, shared_connections=published)
    assert svc.show_instance(rt, a["id"])["updated_at"] == a_now["updated_at"]
    # a detached shared instance loses what its host published for it
    gone = svc.destroy_instance(rt, b["id"])
    assert gone["connection"] == {}


def test_invalid_shared_connections_are_refused_and_nothing_is_written(rt, master_db):
    _, host = request(rt, reference="front")
    _, site = request(rt, reference="site-a", shared=True)
    before = master_db.storage.lastTransaction()
    with pytest.raises(errors.InvalidInput) as info:
        report(rt, svc.show_instance(rt, host["id"]), STARTED, shared_connections={
            site["id"]: {"bad key": "x"}, "not an id": {}})
    assert {d["field"] for d in info.value.details} == {
        f"shared_connections.{site['id']}.bad key", "shared_connections.not an id"}
    assert master_db.storage.lastTransaction() == before
    assert svc.show_instance(rt, site["id"])["connection"] == {}


def test_shared_flag_cannot_flip_while_placed(rt):
    request(rt, reference="front")
    with pytest.raises(errors.Conflict):
        request(rt, reference="front", shared=True)


# -- desired state -------------------------------------------------------------------
def test_desired_state_is_unchanged_until_serial_moves(rt, master_db):
    renderer = svc.DesiredStateRenderer(master_db)
    try:
        _, inst = request(rt)
        s, body = svc.desired_state(rt, "c1", (), renderer)
        assert svc.desired_state(rt, "c1", (s,), renderer) == (s, None)
        assert json.loads(body) == desired(rt)
        svc.change_state(rt, inst["id"], STOPPED)
        s2, body2 = svc.desired_state(rt, "c1", (s,), renderer)
        assert s2 == s + 1 and json.loads(body2) == desired(rt)
    finally:
        renderer.close()


def _loads_counted(db, monkeypatch):
    """How many objects ``db``'s connections load from its storage from now on."""
    count = [0]
    load_before = db.storage.loadBefore

    def counting(oid, tid):
        count[0] += 1
        return load_before(oid, tid)
    monkeypatch.setattr(db.storage, "loadBefore", counting)
    return count


@pytest.mark.parametrize("kind", ["native", "slap"])
def test_documents_are_rendered_on_the_writers_warm_connection(
        master_runtime, master_factories, master_db, monkeypatch, kind):
    """What this process wrote is in its writer's cache: rendering a document of many
    changed partitions loads none of them from the storage again, and gives the bytes
    a renderer on a connection of its own gives."""
    rt = master_runtime
    svc.register_computer(rt, ComputerRegistration.from_json(
        master_factories.computer("c1", 60, lan="lan-a")))
    svc.supply(rt, "c1", Supply(URL))
    for i in range(50):
        request(rt, reference=f"web-{i}", parameters={"n": str(i)})
    renderer = rt.renderer if kind == "native" else rt.slap_renderer
    now = serial(rt)
    loads = _loads_counted(master_db, monkeypatch)
    at, body = renderer.document("c1", now)
    assert loads[0] == 0
    own = (svc.DesiredStateRenderer(master_db) if kind == "native" else
           svc.DesiredStateRenderer(master_db, slap_render.partition_fragment,
                                    slap_render.computer_document))
    try:
        assert own.document("c1", at) == (at, body)
        assert loads[0] > 0              # one of its own loads what the writes changed
        for i in (3, 7):                 # then what changes is rendered again, warm
            svc.change_state(rt, svc.list_instances(rt, reference=f"web-{i}")[0]["id"],
                             STOPPED)
            now = serial(rt)
            loads[0] = 0
            at, body = renderer.document("c1", now)
            assert loads[0] == 0
            assert own.document("c1", at) == (at, body)
    finally:
        own.close()


def test_under_zeo_a_document_is_rendered_on_the_renderers_own_connection(
        tmp_path, master_factories):
    """Only a storage this process alone writes (FileStorage, MappingStorage) renders
    through the writer; under ZEO the writer is not held while what other processes
    changed is loaded, and a document shows another process's writes."""
    from conftest import zeo_runtimes
    with zeo_runtimes(tmp_path) as (one, two):
        assert two.renderer._read != two.writer.read
        svc.register_computer(one, ComputerRegistration.from_json(
            master_factories.computer("c1", 4, lan="lan-a")))
        svc.supply(one, "c1", Supply(URL))
        request(one, reference="web-1")
        _at, body = two.renderer.document("c1", serial(one))
        assert json.loads(body) == desired(one)


def test_contact_is_recorded_at_most_every_contact_interval(rt, master_db, monkeypatch):
    """An idle node polling its desired state writes nothing between two contacts."""
    interval = computer_svc.CONTACT_INTERVAL
    assert interval >= 300       # an idle master writes (almost) nothing
    now = [time.time() + interval + 1]  # registration recorded a contact just now
    monkeypatch.setattr(computer_svc, "clock", lambda: now[0])
    from slapfed.services import desired as desired_mod
    monkeypatch.setattr(desired_mod, "clock", lambda: now[0])
    svc.desired_state(rt, "c1")
    tid = master_db.storage.lastTransaction()
    for _ in range(3):
        now[0] += interval / 4
        svc.desired_state(rt, "c1")
        assert master_db.storage.lastTransaction() == tid
    now[0] += interval / 4
    svc.desired_state(rt, "c1")
    assert master_db.storage.lastTransaction() != tid


def test_unknown_computer_and_instance_are_not_found(rt):
    with pytest.raises(errors.NotFound):
        svc.desired_state(rt, "nope")
    with pytest.raises(errors.NotFound):
        svc.show_instance(rt, "i-nope")
    with pytest.raises(errors.NotFound):
        svc.supply(rt, "nope", Supply(URL))


# -- a request answered in an adapter's own terms (SLAP), in the same one write --------
def _answered(rt, keep_state, **extra):
    req = InstanceRequest.from_json({"reference": "web-1", "software_url": URL, **extra})
    return svc.request_instance_answered(
        rt, req, keep_state=keep_state,
        answer=lambda app, inst: (inst.requested_state, inst.partition_id))


@pytest.mark.parametrize("keep_state, asked, kept", [
    (True, STARTED, STOPPED),      # no state given: the instance keeps its own
    (False, STARTED, STARTED),     # a state given: it is applied
])
def test_answered_request_keeps_the_state_only_when_none_was_given(rt, master_db, keep_state,
                                                                   asked, kept):
    request(rt, state=STOPPED)
    before = master_db.storage.lastTransaction()
    created, body, (state, partition) = _answered(rt, keep_state, state=asked)
    assert not created and body["requested_state"] == kept and state == kept
    assert partition == body["placement"]["partition"]
    # kept: nothing changed, nothing written
    assert (master_db.storage.lastTransaction() == before) == (kept == STOPPED)


def test_answered_request_of_a_new_instance_answers_from_the_same_write(rt, master_db):
    before = master_db.storage.lastTransaction()
    created, body, (state, partition) = _answered(rt, True, state=STARTED)
    assert created and state == STARTED and partition == body["placement"]["partition"]
    assert master_db.storage.lastTransaction() != before
    assert svc.request_instance_answered(rt, InstanceRequest.from_json(
        {"reference": "web-2", "software_url": URL}))[2] is None     # no answer asked
