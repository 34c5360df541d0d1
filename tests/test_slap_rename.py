"""SLAP's softwareInstanceRename: the stock slapos.core client renames instances of a
development-mode master served over real HTTP on loopback (every title the node reads
follows, no cached document shows the old one, the requester finds the instance by its
new name, the old name is free as in SlapOS), hostile or conflicting names are refused
naming ``new_name`` with nothing written, and the use case's rules are checked on a real
FileStorage (shared instances, peers' delegations, delegated instances, SLAs naming the
instance, destroyed instances)."""
import pytest
import requests

from conftest import computer_body, last_tid
from test_slap import COMPUTER, SR, partitions, slap  # noqa: F401 - a fixture

from slapfed import services as svc
from slapfed.core import errors
from slapfed.core.wire import ComputerRegistration, InstanceRequest, Supply
from slapfed.services import federation as fed

slap_lib = pytest.importorskip("slapos.slap")
from slapos.slap import NotFoundError  # noqa: E402


def titles(conn):
    """partition -> (instance_title, root_instance_title, timestamp), as the node reads."""
    out = {}
    for p in partitions(conn).values():
        if getattr(p, "_instance_guid", None):
            params = p.getInstanceParameterDict()
            out[p.getId()] = (params["instance_title"], params["root_instance_title"],
                              params["timestamp"])
    return out


def references(api):
    return sorted(i["reference"] for i in api.get("/api/v1/instances?all=1").json["instances"])


def full_information(conn):
    return conn._connection_helper.GET("getFullComputerInformation",
                                       params={"computer_id": COMPUTER})


def test_renaming_a_root_renames_its_tree_in_every_cached_document(slap, api):  # noqa: F811
    """A root with a child on another partition: after the root renames itself, both
    partitions show the new root title (the child keeps its own), with new timestamps,
    in the SLAP and the native documents, each read warm from its cache before; the
    requester gets the same instance by the new name, and the old name is free."""
    order = slap.registerOpenOrder()
    root = order.request(SR, "stack", filter_kw={"computer_guid": COMPUTER})
    inside = slap.registerComputerPartition(COMPUTER, root.getId())
    child = inside.request(SR, "default", "stack-db", filter_kw={"computer_guid": COMPUTER})
    assert child.getId() != root.getId()
    full_information(slap)                             # warm: the cache holds both entries
    before = titles(slap)
    assert full_information(slap) == full_information(slap)
    assert {p: t[:2] for p, t in before.items()} == {
        root.getId(): ("stack", "stack"), child.getId(): ("stack-db", "stack")}
    native_before = api.get(f"/api/v1/computers/{COMPUTER}/desired-state").json

    inside.rename("stack-renamed")                     # the stock ComputerPartition.rename

    after = titles(slap)
    assert {p: t[:2] for p, t in after.items()} == {
        root.getId(): ("stack-renamed", "stack-renamed"),
        child.getId(): ("stack-db", "stack-renamed")}
    assert all(after[p][2] != before[p][2] for p in before)    # both deployed again
    native = api.get(f"/api/v1/computers/{COMPUTER}/desired-state").json
    assert native["serial"] > native_before["serial"]
    shown = {p["id"]: p["instance"]["reference"] for p in native["partitions"] if p["instance"]}
    assert shown == {root.getId(): "stack-renamed", child.getId(): "stack-db"}
    assert references(api) == ["stack-db", "stack-renamed"]

    again = order.request(SR, "stack-renamed", filter_kw={"computer_guid": COMPUTER})
    assert (again.getInstanceGuid(), again.getId()) == (root.getInstanceGuid(), root.getId())
    # the old name answers nothing any more; asked for, it is a new tree (as in SlapOS)
    assert api.get("/api/v1/instances?reference=stack&all=1").json["instances"] == []
    fresh = order.request(SR, "stack", filter_kw={"computer_guid": COMPUTER})
    assert fresh.getInstanceGuid() != root.getInstanceGuid()
    assert fresh.getId() not in (root.getId(), child.getId())
    assert references(api) == ["stack", "stack-db", "stack-renamed"]


def test_children_swap_names_as_a_resilient_takeover_does(slap, api):  # noqa: F811
    """Two children swap names through a third (slapproxy's own test does the same):
    each partition keeps its instance under the other name; the parent asks for each by
    its new name and its garbage collection keeps both; the parent is not redeployed."""
    order = slap.registerOpenOrder()
    root = order.request(SR, "stack", filter_kw={"computer_guid": COMPUTER})
    inside = slap.registerComputerPartition(COMPUTER, root.getId())
    front = inside.request(SR, "default", "front", filter_kw={"computer_guid": COMPUTER})
    back = inside.request(SR, "default", "back", filter_kw={"computer_guid": COMPUTER})
    before = titles(slap)
    parts = partitions(slap)
    parts[front.getId()].rename("tmp")
    parts[back.getId()].rename("front")
    parts[front.getId()].rename("back")
    after = titles(slap)
    assert after[front.getId()][:2] == ("back", "stack")
    assert after[back.getId()][:2] == ("front", "stack")
    assert after[root.getId()] == before[root.getId()]          # nothing of it changed
    assert inside.request(SR, "default", "front").getInstanceGuid() == back.getInstanceGuid()
    inside.setComputerPartitionRelatedInstanceList(["front", "back"])
    states = {i["reference"]: i["requested_state"]
              for i in api.get("/api/v1/instances?all=1").json["instances"]}
    assert states == {"stack": "started", "front": "started", "back": "started"}


def _rename_call(api, pid, new_name=None, **more):
    data = {"computer_id": COMPUTER, "computer_partition_id": pid, **more}
    if new_name is not None:
        data["new_name"] = new_name
    return api.post("/slap/softwareInstanceRename", data=data, headers={
        "Authorization": f"X-SlapPartition computer_id={COMPUTER}, computer_partition_id={pid}"})


def test_a_name_the_requester_uses_is_409_reference_taken_and_writes_nothing(
        slap, api, master_db):  # noqa: F811
    order = slap.registerOpenOrder()
    root = order.request(SR, "stack", filter_kw={"computer_guid": COMPUTER})
    inside = slap.registerComputerPartition(COMPUTER, root.getId())
    a = inside.request(SR, "default", "a", filter_kw={"computer_guid": COMPUTER})
    inside.request(SR, "default", "b", filter_kw={"computer_guid": COMPUTER})
    before = last_tid(master_db)
    with pytest.raises(requests.HTTPError) as info:            # the stock client
        partitions(slap)[a.getId()].rename("b")
    assert info.value.response.status_code == 409
    resp = _rename_call(api, a.getId(), "b")
    assert resp.status_code == 409
    err = resp.json["error"]
    assert err["code"] == "reference_taken" and "'b'" in err["message"]
    assert err["details"][0]["field"] == "new_name"
    _rename_call(api, a.getId(), "a")                          # the same name: a no-op
    assert last_tid(master_db) == before
    assert references(api) == ["a", "b", "stack"]


HOSTILE_NAMES = [
    pytest.param("one\r\ntwo", "must not contain control characters", id="crlf"),
    pytest.param("one\ntwo = x", "must not contain control characters", id="lf"),
    pytest.param("nul\x00", "must not contain control characters", id="nul"),
    pytest.param("line\u2028sep", "must not contain control characters", id="line-separator"),
    pytest.param("x" * 201, "the limit is 200", id="too-long"),
    pytest.param("", "must not be empty", id="empty"),
    pytest.param(None, "is required", id="missing"),
]


@pytest.mark.parametrize("new_name,problem", HOSTILE_NAMES)
def test_a_hostile_new_name_is_400_naming_it_and_writes_nothing(slap, api, master_db,  # noqa: F811
                                                                new_name, problem):
    root = slap.registerOpenOrder().request(SR, "stack", filter_kw={"computer_guid": COMPUTER})
    before = last_tid(master_db)
    resp = _rename_call(api, root.getId(), new_name)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    detail = resp.json["error"]["details"][0]
    assert detail["field"] == "new_name" and problem in detail["problem"]
    assert last_tid(master_db) == before


def test_buildout_syntax_in_a_new_name_is_data_as_in_a_reference(slap):  # noqa: F811
    """``${...}`` and ``[section]`` are refused nowhere in a reference (the node encodes
    every value on its way into a buildout file): a new name holding them reaches the
    node's parameters as the text it was, substituted nowhere."""
    root = slap.registerOpenOrder().request(SR, "stack", filter_kw={"computer_guid": COMPUTER})
    name = "${slap-connection:key-file} [buildout] $"
    slap.registerComputerPartition(COMPUTER, root.getId()).rename(name)
    assert titles(slap)[root.getId()][:2] == (name, name)


def test_bad_ids_and_unknown_places_are_refused(slap, api, master_db):  # noqa: F811
    root = slap.registerOpenOrder().request(SR, "stack", filter_kw={"computer_guid": COMPUTER})
    before = last_tid(master_db)
    bad = _rename_call(api, root.getId(), "x", slave_reference="../x")
    assert bad.status_code == 400 and bad.json["error"]["details"][0]["field"] == \
        "slave_reference"
    free = next(p for p in partitions(slap) if p != root.getId())
    assert _rename_call(api, free, "x").status_code == 404            # hosts nothing
    assert _rename_call(api, "slappart99", "x").status_code == 404    # no such partition
    with pytest.raises(NotFoundError):                                 # not attached there
        partitions(slap)[root.getId()].rename("x", slave_reference="i-0000000000000000")
    assert last_tid(master_db) == before


def test_a_host_renames_a_shared_instance_it_holds(slap, api):  # noqa: F811
    """With slave_reference: the host's entry shows the new slave_title (the host is
    deployed again) and the requester finds its shared instance by the new name."""
    order = slap.registerOpenOrder()
    host = order.request(SR, "front", filter_kw={"computer_guid": COMPUTER})
    order.request(SR, "site-1", partition_parameter_kw={"domain": "a.example"}, shared=True)
    node_host = partitions(slap)[host.getId()]
    [site] = node_host.getInstanceParameterDict()["slave_instance_list"]
    before = node_host.getInstanceParameterDict()["timestamp"]
    node_host.rename("site-one", slave_reference=site["slave_reference"])
    params = partitions(slap)[host.getId()].getInstanceParameterDict()
    assert [s["slave_title"] for s in params["slave_instance_list"]] == ["site-one"]
    assert params["timestamp"] != before
    assert params["instance_title"] == "front"
    found = order.request(SR, "site-one", partition_parameter_kw={"domain": "a.example"},
                          shared=True)
    assert found.getInstanceGuid() == site["slave_reference"]
    assert references(api) == ["front", "site-one"]


# -- the use case's rules, on a real FileStorage -------------------------------------------
URL = "/srv/releases/hello/software.cfg"
PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@pytest.fixture
def rt(master_runtime):
    """One computer (host h1, 4 partitions), supplied URL and polled."""
    svc.register_computer(master_runtime, ComputerRegistration.from_json(
        computer_body("c1", 4, host="h1")))
    svc.supply(master_runtime, "c1", Supply(URL))
    svc.desired_state(master_runtime, "c1")
    return master_runtime


def _request(rt, reference, **extra):
    _created, inst = svc.request_instance(rt, InstanceRequest.from_json(
        {"reference": reference, "software_url": URL, **extra}))
    return inst


def _index(rt):
    return svc.read(rt.db, lambda app: dict(app.by_request.items()))


def test_the_index_moves_to_the_new_key_and_the_revision_and_serial_follow(rt):
    inst = _request(rt, "web", requester="person/alice")
    serial = svc.show_computer(rt.db, "c1")["serial"]
    old, body = svc.rename_instance(rt, inst["id"], "web-2")
    assert (old, body["reference"], body["revision"]) == ("web", "web-2", inst["revision"] + 1)
    assert _index(rt) == {("person/alice", "web-2"): inst["id"]}
    assert svc.show_computer(rt.db, "c1")["serial"] > serial


def test_a_destroyed_instance_lets_its_name_go_and_keeps_its_record(rt):
    """A destroyed instance's name may be taken (it is not live): it keeps its record,
    reached by id, and forgetting it later leaves the new holder of its name alone. A
    destroyed instance itself keeps its name."""
    from slapfed.services import retention
    gone = _request(rt, "old", requester="person/alice")
    svc.destroy_instance(rt, gone["id"])
    live = _request(rt, "web", requester="person/alice")
    svc.rename_instance(rt, live["id"], "old")
    assert _index(rt) == {("person/alice", "old"): live["id"]}
    assert svc.show_instance(rt.db, gone["id"])["reference"] == "old"
    with pytest.raises(errors.Conflict, match="destroyed"):
        svc.rename_instance(rt, gone["id"], "other")
    p = svc.show_instance(rt.db, gone["id"])["placement"]
    svc.report_partition(rt, p["computer"], p["partition"], _destroyed(gone["id"], rt))
    assert retention.purge_destroyed(rt, 1.0, now=4e9) == [gone["id"]]
    assert _index(rt) == {("person/alice", "old"): live["id"]}


def _destroyed(iid, rt):
    from slapfed.core.wire import PartitionReport
    inst = svc.show_instance(rt.db, iid)
    return PartitionReport.from_json({"instance_id": iid, "revision": inst["revision"],
                                      "state": "destroyed"})


def test_an_instance_a_peer_delegated_here_keeps_its_name(rt):
    """Its requester, a peer master, asks for it by that reference: renamed, it would be
    asked for again as a new instance. Refused, nothing written."""
    inst = _request(rt, "a:person/alice:web", requester="master/peer-1")
    p = inst["placement"]
    before = last_tid(rt.db)
    with pytest.raises(errors.Conflict, match="delegated here by master peer-1"):
        svc.rename_hosted(rt, "c1", p["partition"], "web")
    assert last_tid(rt.db) == before


def test_a_delegated_instance_keeps_its_remote_reference_and_is_not_pushed_again(rt):
    fed.save_peer(rt, "b", "https://127.0.0.9:8471", PEM, credentials="/nonexistent")
    fed.set_policy(rt, {"rules": [{"release": URL, "to": ["b"]}]})
    inst = _request(rt, "far", requester="person/alice")
    remote = inst["delegation"]["remote_reference"]
    fed.forwards.record_accepted(rt, inst["id"], "b", inst["revision"],
                                 {"id": "i-at-b", "revision": 1, "status": {"state": "pending"}})
    assert fed.forwards.due_pushes(rt)[0] == []
    _old, body = svc.rename_instance(rt, inst["id"], "near")
    assert body["reference"] == "near" and body["revision"] == inst["revision"]
    assert body["delegation"]["remote_reference"] == remote
    assert svc.read(rt.db, lambda app: app.forward_refs.get(("b", remote))) == inst["id"]
    assert fed.forwards.due_pushes(rt)[0] == []            # nothing new for the peer
    assert _request(rt, "near", requester="person/alice")["id"] == inst["id"]


def test_an_instance_an_sla_names_keeps_its_name_until_the_sla_does_not(rt):
    db = _request(rt, "db", requester="person/alice")
    _request(rt, "web", requester="person/alice", sla={"same_host": "db"})
    before = last_tid(rt.db)
    with pytest.raises(errors.Conflict, match="named by the SLA of 'web'") as info:
        svc.rename_instance(rt, db["id"], "db-2")
    assert info.value.details[0]["reference"] == "web"
    assert last_tid(rt.db) == before
    _request(rt, "web", requester="person/alice")               # no longer names it
    assert svc.rename_instance(rt, db["id"], "db-2")[1]["reference"] == "db-2"


def test_a_host_renames_only_its_own_owners_shared_instances(rt):
    host = _request(rt, "front", requester="person/alice", open_to=["*"])
    theirs = _request(rt, "site", requester="person/bob", shared=True)
    assert theirs["host_instance"] == host["id"]
    p = host["placement"]
    before = last_tid(rt.db)
    with pytest.raises(errors.Forbidden, match="another owner"):
        svc.rename_hosted(rt, "c1", p["partition"], "mine", theirs["id"])
    assert last_tid(rt.db) == before
    ours = _request(rt, "site-a", requester="person/alice", shared=True)
    _old, body = svc.rename_hosted(rt, "c1", p["partition"], "site-b", ours["id"])
    assert body["reference"] == "site-b"
    assert svc.show_instance(rt.db, host["id"])["revision"] > host["revision"]


# -- who may: the guard and the policy table, certificates injected as DER ---------------
def _as(w, actor, computer, partition, new_name, header=None):
    header = header or (computer, partition)
    return w.client.post("/slap/softwareInstanceRename", data={
        "computer_id": computer, "computer_partition_id": partition, "new_name": new_name},
        headers={"Authorization": f"X-SlapPartition computer_id={header[0]}, "
                                  f"computer_partition_id={header[1]}"},
        environ_base={"slapfed.peer_certificate": w.certs[actor]})


def test_a_partition_renames_only_what_it_hosts(authz_world):
    """A's partition naming itself in the header but its child's partition in the form is
    refused (403), as is a node naming its partition that runs a peer's delegation
    (409: that name is the peer's); nothing is written either time."""
    w = authz_world
    before = last_tid(w.db)
    own = w.a_root["placement"]
    child = w.a_child["placement"]
    resp = _as(w, "partition_a", child["computer"], child["partition"], "x",
               header=(own["computer"], own["partition"]))
    assert resp.status_code == 403, resp.get_data(as_text=True)
    peers = w.m_root["placement"]
    resp = _as(w, "node_x", peers["computer"], peers["partition"], "mine")
    assert resp.status_code == 409 and resp.json["error"]["code"] == "conflict"
    assert "delegated here by master peer-1" in resp.json["error"]["message"]
    assert last_tid(w.db) == before
    resp = _as(w, "partition_a", own["computer"], own["partition"], "a-renamed")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert w.call("person_a", "GET", f"/instances/{w.a_root['id']}").json["reference"] == \
        "a-renamed"
