"""A release being built or broken is visible, and placement avoids a broken one:
nodes report `building`, placement refuses a computer whose install failed (its own
refusal reason), `show` and `request --wait` say what is happening, a dry run with no fit
exits 5 and a missing master URL is a usage error."""
import json

import pytest
from click.testing import CliRunner

from slapfed import services
from slapfed.cli import user_cmd
from slapfed.cli.common import Exit
from slapfed.cli.main import cli
from slapfed.core.errors import NoCapacity, StorageError
from slapfed.core.wire import ComputerRegistration, InstanceRequest, SoftwareReport, Supply, \
    software_hash
from slapfed.placement import ComputerView, PlacementRequest, build, decide
from slapfed.placement.filters import REASON_BROKEN

URL = "/srv/releases/hello/software.cfg"
H = software_hash(URL)


def register(rt, cid, partitions=2):
    services.register_computer(rt, ComputerRegistration.from_json({
        "id": cid, "partitions": [{"id": f"p{i}", "address": f"127.0.2.{i + 1}",
                                   "port_base": 3000} for i in range(partitions)]}))
    services.supply(rt, cid, Supply(URL))


def report(rt, cid, status, log_tail=""):
    return services.report_software(rt, cid, H, SoftwareReport.from_json(
        {"status": status, "log_tail": log_tail, "software_types": ["default"]}))


def request(rt, reference):
    return services.request_instance(rt, InstanceRequest.from_json(
        {"reference": reference, "software_url": URL, "requester": "alice"}))[1]


# -- the pure filter ------------------------------------------------------------------
def test_the_install_filter_refuses_computers_whose_install_failed():
    parts = [("p0", (), False)]
    snap = build([ComputerView.of("ok", releases=(H,), partitions=parts),
                  ComputerView.of("bad", releases=(H,), partitions=parts, broken=(H,))])
    d = decide(snap, PlacementRequest("r", H), explain=True)
    assert d.placed and d.computer == "ok"
    only_bad = build([ComputerView.of("bad", releases=(H,), partitions=parts, broken=(H,))])
    d = decide(only_bad, PlacementRequest("r", H), explain=True)
    assert not d.placed
    [refusal] = d.attempts[0].refusals
    assert (refusal.plugin, refusal.reason, refusal.count) == ("install", REASON_BROKEN, 1)


# -- the use cases over a real FileStorage ----------------------------------------------
def test_placement_avoids_a_broken_install_until_it_succeeds(master_runtime):
    rt = master_runtime
    register(rt, "c1")
    report(rt, "c1", "failed", "Traceback ...\nError: Couldn't download the sources")
    with pytest.raises(NoCapacity) as info:
        request(rt, "web")
    assert "release failed to install" in info.value.message
    # a retry is under way: still refused, and the last failure's reason is kept
    sw = report(rt, "c1", "building")
    assert sw["status"] == "building" and sw["failed_installs"] == 1
    assert "Couldn't download" in sw["log_tail"]
    with pytest.raises(NoCapacity):
        request(rt, "web")
    assert report(rt, "c1", "installed")["failed_installs"] == 0
    inst = request(rt, "web")
    assert inst["placement"]["computer"] == "c1"
    assert inst["placement"]["release"] == {"status": "installed", "failed_installs": 0,
                                            "reason": None,
                                            "reported_at": inst["placement"]["release"]
                                            ["reported_at"]}


def test_an_instance_placed_before_the_failure_shows_it(master_runtime, master_conn):
    rt = master_runtime
    register(rt, "c1")
    inst = request(rt, "web")
    assert inst["placement"]["release"]["status"] == "pending"
    report(rt, "c1", "building")
    shown = services.show_instance(master_conn, inst["id"])
    assert shown["placement"]["release"]["status"] == "building"
    report(rt, "c1", "failed", "buildout: Error: sources not found")
    master_conn.sync()
    [listed] = services.list_instances(master_conn, requester="alice")
    assert listed["placement"]["release"] == {
        "status": "failed", "failed_installs": 1,
        "reason": "buildout: Error: sources not found",
        "reported_at": listed["placement"]["release"]["reported_at"]}


# -- what people read --------------------------------------------------------------------
def _inst(state="pending", revision=1, reported=0, requested="started", place=True,
          release="installed", failed=0, reason=None, delegation=None):
    return {"reference": "web", "revision": revision, "requested_state": requested,
            "shared": False, "delegation": delegation,
            "status": {"state": state, "revision": reported, "log_tail": "", "promises": []},
            "placement": {"computer": "c1", "partition": "p0",
                          "address": "127.0.2.1",
                          "release": {"status": release, "failed_installs": failed,
                                      "reason": reason, "reported_at": None}}
            if place else None}


@pytest.mark.parametrize("inst, expected", [
    (_inst(place=False), "waiting for a place"),
    (_inst(release="pending"), "waiting for c1 to install the release"),
    (_inst(release="building"), "installing the release on c1"),
    (_inst(release="building", failed=1, reason="no sources"),
     "installing the release on c1 (attempt 2; last failure: no sources)"),
    (_inst(release="failed", failed=1, reason="no sources"),
     "the release failed to install on c1: no sources"),
    (_inst(), "instantiating on c1/p0 (buildout, services, promises)"),
    (_inst(requested="stopped", state="started", reported=1), "stopping on c1/p0"),
    (_inst(state="started", reported=1), "started"),
    (_inst(state="failed", reported=1), "failed"),
    (_inst(delegation={"peer": "b", "state": "accepted"}), "delegated to b (accepted), pending"),
], ids=["unplaced", "release-pending", "building", "retry", "release-failed", "instantiating",
        "stopping", "started", "failed", "delegated"])
def test_phase_says_what_is_happening(inst, expected):
    assert user_cmd.phase(inst) == expected


def test_progress_prints_each_change_once(capsys):
    progress = user_cmd.Progress(True)
    for inst in (_inst(release="building"), _inst(release="building"), _inst(),
                 _inst(state="started", reported=1)):
        progress(inst)
    lines = capsys.readouterr().err.splitlines()
    assert [ln.strip().split("  ", 1)[1] for ln in lines] == [
        "web: installing the release on c1",
        "web: instantiating on c1/p0 (buildout, services, promises)",
        "web: started"]
    assert all(ln.strip().split("s ")[0].replace(".", "").isdigit() for ln in lines)
    quiet = user_cmd.Progress(False)
    quiet(_inst())
    assert capsys.readouterr().err == ""


def test_show_says_the_release_failed_in_text():
    text = user_cmd.render_instance({
        **_inst(release="failed", failed=2, reason="Error: no sources"),
        "id": "i1", "requester": "alice", "software_url": URL, "software_type": "default",
        "sla": {}, "parameters": {}, "connection": {}, "open_to": [],
        "shared_instances": []})
    assert "release:    the release failed to install on c1: Error: no sources" in text


# -- exit codes --------------------------------------------------------------------------
@pytest.fixture
def live_master(master_app):
    """The master app served by werkzeug on loopback (a port chosen at run time)."""
    import threading
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, master_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def test_a_dry_run_with_no_fit_exits_5_and_one_that_fits_exits_0(live_master, master_app,
                                                                  monkeypatch, tmp_path):
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "none.json"))
    from slapfed.master import runtime_of
    rt = runtime_of(master_app)
    register(rt, "c1", partitions=1)
    report(rt, "c1", "installed")
    args = ["request", "web", URL, "--dry-run", "--master", live_master,
            "--as", "alice"]
    ok = CliRunner().invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    assert "would go to c1/p0" in ok.output and "nothing written" in ok.output
    no = CliRunner().invoke(cli, args + ["--sla", "continent=asia"])
    assert no.exit_code == Exit.CONFLICT == 5, no.output
    assert "nothing written" in no.output
    as_json = CliRunner().invoke(cli, args + ["--sla", "continent=asia", "--json"])
    assert as_json.exit_code == 5 and json.loads(as_json.output)["placed"] is False


def test_a_locked_storage_has_its_own_exit_code(tmp_path, monkeypatch):
    from slapfed.store import open_db
    data = tmp_path / "data"
    db = open_db(None, str(data))          # holds the FileStorage lock
    try:
        out = CliRunner().invoke(cli, ["master", "migrate", "--data", str(data)])
    finally:
        db.close()
    assert out.exit_code == Exit.STORAGE == 10, out.output
    assert "another process holds" in out.output


def test_storage_errors_and_a_missing_master_are_not_unreachable():
    from slapfed.cli.common import EXIT_BY_CODE
    from slapfed.core.errors import NoMasterGiven
    assert EXIT_BY_CODE[StorageError.code] == Exit.STORAGE
    assert EXIT_BY_CODE[NoMasterGiven.code] == Exit.USAGE
