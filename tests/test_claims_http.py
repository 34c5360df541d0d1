"""Who owns a computer's facts and a partition's state, over HTTP (Flask test client, real
CA, certificates injected as DER): a node may not move itself or grant itself anything, a
partition report may not claim what the requested state rules out; refusals write nothing.
The same over real mutual TLS is in test_claims_tls.py."""
import pytest

from conftest import computer_body, last_tid


def _error(resp, status, code):
    assert resp.status_code == status, resp.get_data(as_text=True)
    err = resp.json["error"]
    assert err["code"] == code
    return err


def _report(inst, state, revision=None):
    p = inst["placement"]
    return ("PUT", f"/computers/{p['computer']}/partitions/{p['partition']}/status",
            {"instance_id": inst["id"], "state": state,
             "revision": inst["revision"] if revision is None else revision})


# -- computer facts ----------------------------------------------------------------------
@pytest.mark.parametrize("facts,fields", [
    ({"continent": "asia"}, ["continent"]),
    ({"capabilities": ["gpu"]}, ["capabilities"]),
    ({"continent": "asia", "capabilities": ["gpu"], "labels": {"tier": "gold"}},
     ["continent", "labels.tier", "capabilities"]),
], ids=["continent", "capability", "everything-at-once"])
def test_a_node_may_not_move_itself_or_grant_itself_anything(authz_world, facts, fields):
    w = authz_world
    before = w.ok(w.call("admin", "GET", "/computers/node-x"))
    tid = last_tid(w.db)
    err = _error(w.call("node_x", "POST", "/computers", computer_body("node-x", 4, **facts)),
                 403, "fact_not_owned")
    assert [d["field"] for d in err["details"]] == fields
    assert all(f in err["message"] for f in fields) and "slapfed computer set" in err["message"]
    assert last_tid(w.db) == tid                                  # nothing written
    after = w.ok(w.call("admin", "GET", "/computers/node-x"))
    assert after == before and len(after["partitions"]) == 3      # not even the new partition


def test_a_node_adds_partitions_and_repeats_or_omits_its_facts(authz_world):
    w = authz_world
    w.ok(w.call("admin", "PATCH", "/computers/node-x", {"continent": "europe",
                                                        "labels": {"disk": "ssd"}}))
    same = computer_body("node-x", 4, continent="europe", labels={"disk": "ssd"})
    got = w.ok(w.call("node_x", "POST", "/computers", same))
    assert len(got["partitions"]) == 4 and got["continent"] == "europe"
    got = w.ok(w.call("node_x", "POST", "/computers", computer_body("node-x", 5)))
    assert len(got["partitions"]) == 5
    assert (got["continent"], got["labels"]) == ("europe", {"disk": "ssd"})   # kept


def test_an_admin_changes_the_facts_and_the_node_must_follow(authz_world):
    w = authz_world
    moved = w.ok(w.call("admin", "PATCH", "/computers/node-x",
                        {"continent": "asia", "capabilities": ["gpu"]}))
    assert (moved["continent"], moved["capabilities"]) == ("asia", ["gpu"])
    w.ok(w.call("node_x", "POST", "/computers", computer_body("node-x", 3, continent="asia")))
    err = _error(w.call("node_x", "POST", "/computers",
                        computer_body("node-x", 3, continent="europe")), 403, "fact_not_owned")
    assert err["details"][0]["recorded"] == "asia" and err["details"][0]["proposed"] == "europe"
    cleared = w.ok(w.call("admin", "PATCH", "/computers/node-x", {"continent": None,
                                                                  "capabilities": []}))
    assert (cleared["continent"], cleared["capabilities"]) == (None, [])


def test_a_new_capability_attracts_sla_work_only_when_an_admin_grants_it(authz_world):
    w = authz_world
    gpu_job = w.instance("gpu-job", sla={"capability": "gpu"})
    _error(w.call("node_x", "POST", "/computers", computer_body("node-x", 3,
                                                                capabilities=["gpu"])),
           403, "fact_not_owned")
    _error(w.call("person_a", "POST", "/instances", gpu_job), 409, "no_capacity")
    w.ok(w.call("admin", "PATCH", "/computers/node-x", {"capabilities": ["gpu"]}))
    placed = w.ok(w.call("person_a", "POST", "/instances", gpu_job))
    assert placed["placement"]["computer"] == "node-x"


@pytest.mark.parametrize("actor", ["node_x", "person_a", "partition_a", "peer"])
def test_only_admins_set_a_computers_facts(authz_world, actor):
    w = authz_world
    tid = last_tid(w.db)
    _error(w.call(actor, "PATCH", "/computers/node-x", {"continent": "asia"}), 403, "forbidden")
    assert last_tid(w.db) == tid


@pytest.mark.parametrize("body,field", [({}, "body"), ({"continent": 3}, "continent"),
                                        ({"capabilities": ["no spaces"]}, "capabilities[0]"),
                                        ({"colour": "red"}, "colour")])
def test_a_bad_facts_update_is_refused_and_writes_nothing(authz_world, body, field):
    w = authz_world
    tid = last_tid(w.db)
    err = _error(w.call("admin", "PATCH", "/computers/node-x", body), 400, "invalid_input")
    assert field in [d["field"] for d in err["details"]]
    assert last_tid(w.db) == tid


def test_setting_the_facts_of_an_unknown_computer_is_404(authz_world):
    _error(authz_world.call("admin", "PATCH", "/computers/nowhere", {"lan": "x"}), 404,
           "not_found")


# -- partition reports -------------------------------------------------------------------
@pytest.mark.parametrize("actor", ["node_x", "partition_a"])
@pytest.mark.parametrize("requested", ["started", "stopped"])
def test_destroyed_is_refused_for_an_instance_not_requested_destroyed(authz_world, actor,
                                                                      requested):
    w = authz_world
    inst = w.a_root
    if requested == "stopped":
        inst = w.ok(w.call("person_a", "PUT", f"/instances/{inst['id']}/state",
                           {"state": "stopped"}))
    tid = last_tid(w.db)
    err = _error(w.call(actor, *_report(inst, "destroyed")), 409, "report_refused")
    assert f"requested {requested}" in err["message"] and "claim destroyed" in err["message"]
    assert err["details"] == [{"field": "state", "problem": err["details"][0]["problem"],
                               "requested": requested, "claimed": "destroyed"}]
    assert last_tid(w.db) == tid
    now = w.ok(w.call("admin", "GET", f"/instances/{inst['id']}"))
    assert now["placement"] == inst["placement"] and now["status"] == inst["status"]
    computer = w.ok(w.call("admin", "GET", "/computers/node-x"))
    hosted = {p["id"]: p["instance"] for p in computer["partitions"]}
    assert hosted[inst["placement"]["partition"]] == inst["id"]   # still allocated


def test_the_destroy_flow_still_frees_the_partition(authz_world):
    w = authz_world
    destroying = w.ok(w.call("person_a", "DELETE", f"/instances/{w.a_root['id']}"))
    # the partition's own identity may not say it is gone: its node wipes it
    err = _error(w.call("partition_a", *_report(destroying, "destroyed")), 403,
                 "fact_not_owned")
    assert "only the node" in err["message"]
    done = w.ok(w.call("node_x", *_report(destroying, "destroyed")))
    assert done["placement"] is None and done["status"]["state"] == "destroyed"


@pytest.mark.parametrize("requested,claimed", [("started", "started"), ("started", "failed"),
                                               ("stopped", "stopped"), ("stopped", "failed")])
def test_honest_reports_are_recorded(authz_world, requested, claimed):
    w = authz_world
    inst = w.a_root
    if requested == "stopped":
        inst = w.ok(w.call("person_a", "PUT", f"/instances/{inst['id']}/state",
                           {"state": "stopped"}))
    got = w.ok(w.call("node_x", *_report(inst, claimed)))
    assert got["status"]["state"] == claimed


def test_a_stale_started_report_after_a_stop_is_still_recorded(authz_world):
    """The node may report the revision it applied before the requester stopped it."""
    w = authz_world
    before = w.a_root
    w.ok(w.call("person_a", "PUT", f"/instances/{before['id']}/state", {"state": "stopped"}))
    got = w.ok(w.call("node_x", *_report(before, "started")))
    assert got["status"]["state"] == "started" and got["status"]["revision"] == before["revision"]


# -- the topology files own what they declare ---------------------------------------------
@pytest.fixture
def home_lab(tmp_path, master_db):
    """A master enforcing identities with the home-lab topology (nuc-2: host nuc-2 in LAN
    home, label disk=ssd, capability gpu), and a call(identity, method, path, body)."""
    import os

    from conftest import TOPOLOGY_DIR, AuthzWorld
    from slapfed.ca import identity as ids
    from slapfed.master import close_app, create_app, runtime_of
    app = create_app({"DB": master_db, "CA_DIR": str(tmp_path / "ca"), "MASTER_NAME": "home",
                      "TOPOLOGY_FILES": [os.path.join(TOPOLOGY_DIR, "home-lab.toml")]})
    app.config["TESTING"] = False
    ca = runtime_of(app).ca
    certs = {who: AuthzWorld._issue(ca, identity)[0] for who, identity in (
        ("nuc-2", ids.computer("nuc-2")), ("admin", ids.admin("root")))}
    client = app.test_client()

    def call(who, method, path, body=None):
        return client.open("/api/v1" + path, method=method, json=body,
                           environ_base={"slapfed.peer_certificate": certs[who]})
    try:
        yield call
    finally:
        close_app(app)


def test_a_declared_computer_registers_itself_with_the_facts_of_the_files(home_lab):
    r = home_lab("nuc-2", "POST", "/computers", computer_body("nuc-2", 2))
    assert r.status_code == 201, r.json
    assert (r.json["host"], r.json["lan"], r.json["continent"]) == ("nuc-2", "home", "europe")
    assert (r.json["labels"], r.json["capabilities"]) == ({"disk": "ssd"}, ["gpu"])
    again = home_lab("nuc-2", "POST", "/computers", computer_body(
        "nuc-2", 3, lan="home", labels={"disk": "ssd"}, capabilities=["gpu"]))
    assert again.status_code == 200 and len(again.json["partitions"]) == 3


@pytest.mark.parametrize("facts,status,field", [
    ({"labels": {"disk": "nvme"}}, 403, "labels.disk"),
    ({"capabilities": ["gpu", "fpga"]}, 403, "capabilities"),
    ({"lan": "office"}, 400, "lan"),          # unknown LAN vs. the declared host: 400 as before
], ids=["label", "capability", "site"])
def test_a_declared_computer_may_not_contradict_the_files(home_lab, facts, status, field):
    r = home_lab("nuc-2", "POST", "/computers", computer_body("nuc-2", 2, **facts))
    assert r.status_code == status, r.json
    assert field in [d["field"] for d in r.json["error"]["details"]]
    assert home_lab("admin", "GET", "/computers/nuc-2").status_code == 404


def test_an_admin_setting_facts_is_checked_against_the_files(home_lab):
    assert home_lab("nuc-2", "POST", "/computers", computer_body("nuc-2", 1)).status_code == 201
    r = home_lab("admin", "PATCH", "/computers/nuc-2", {"country": "jp"})
    assert r.status_code == 400 and r.json["error"]["details"][0]["field"] == "country"
    r = home_lab("admin", "PATCH", "/computers/nuc-2", {"labels": {"rack": "2"}})
    assert r.status_code == 200 and r.json["labels"] == {"disk": "ssd", "rack": "2"}


# -- slapfed computer set -----------------------------------------------------------------
def test_slapfed_computer_set_changes_only_what_it_is_given(master_app, serve_app,
                                                            monkeypatch, tmp_path):
    import json

    from click.testing import CliRunner

    from slapfed.cli.main import cli
    from slapfed.client import MasterClient
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "client.json"))
    monkeypatch.delenv("SLAPFED_MASTER", raising=False)
    url = serve_app(master_app)
    MasterClient(url).register_computer(computer_body("c1", 1, lan="par-1",
                                                      labels={"disk": "ssd"}))

    def run(*args):
        return CliRunner().invoke(cli, ["computer", "set", *args, "--master", url])
    out = run("c1", "--continent", "europe", "--capability", "gpu", "--json")
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert (got["lan"], got["continent"], got["labels"], got["capabilities"]) == (
        "par-1", "europe", {"disk": "ssd"}, ["gpu"])
    out = run("c1", "--lan", "", "--no-labels", "--no-capabilities")
    assert out.exit_code == 0, out.output
    assert "lan=None" in out.output and "labels=-" in out.output
    assert "capabilities=-" in out.output
    assert run("c1").exit_code == 2                       # nothing to change
    assert run("nowhere", "--lan", "x").exit_code == 4
