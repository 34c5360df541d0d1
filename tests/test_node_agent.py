"""The node agent against a real master (create_app over FileStorage, served by werkzeug
in a thread), with real buildout runs, a real supervisord and real services."""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest

from slapfed.client import MasterClient
from slapfed.core.errors import MasterUnreachable
from slapfed.core.wire import software_hash
from slapfed.node.agent import Agent
from slapfed.node.layout import Paths, format_node, load_config
from slapfed.node.plan import Backoff, InstallSoftware

pytestmark = pytest.mark.timeout(300)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO = os.path.join(REPO, "profiles", "hello", "software.cfg")
FAILING = os.path.join(REPO, "profiles", "failing", "software.cfg")


@pytest.fixture
def master(tmp_path):
    """A real master in a thread: {"url", "client"}."""
    try:
        from slapfed.master import close_app, create_app
        from slapfed.store import open_db
    except ImportError as exc:  # pragma: no cover - only while the master is being written
        pytest.skip(f"the master is not importable yet: {exc}")
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):
            pass

    db = open_db(None, str(tmp_path / "master"))
    app = create_app({"INSECURE": True, "DB": db})
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield {"url": url, "client": MasterClient(url, requester="alice"), "server": server}
    finally:
        server.shutdown()
        close_app(app)
        db.close()


@pytest.fixture
def node(tmp_path, master, node_roots):
    """A formatted, registered node root with 4 partitions and its agent; its supervisord
    (and every service) is shut down by PID at the end, even on failure."""
    root = str(tmp_path / "node")
    config = format_node(root, master["url"], "c1", 4, lan="lan-1")
    master["client"].register_computer(config.registration())
    node_roots.append(root)
    return Agent(root, backoff=Backoff(base=60), promise_timeout=10)


def get(url, timeout=5):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def refuses(url) -> bool:
    try:
        get(url, timeout=2)
    except OSError:
        return True
    return False


def settle(agent: Agent, cycles: int = 5):
    """Run cycles until one has nothing to do."""
    for _ in range(cycles):
        result = agent.once()
        if not result.plan:
            return
    raise AssertionError(f"still planning after {cycles} cycles: {result.plan.describe()}")


def test_format_is_idempotent_and_can_add_partitions(tmp_path):
    root = str(tmp_path / "n")
    first = format_node(root, "http://m", "comp-a", 2)
    again = format_node(root, "http://m", "comp-a", 3, lan="l")
    assert [p.id for p in again.partitions] == ["part0", "part1", "part2"]
    assert again.partitions[:2] == first.partitions
    assert len({p.address for p in again.partitions}) == 3
    other = format_node(str(tmp_path / "o"), "http://m", "comp-b", 2)
    assert other.partitions[0].address != first.partitions[0].address   # no collision
    assert load_config(root).lan == "l"
    assert all(os.path.isdir(Paths(root).partition(p.id).path) for p in again.partitions)


def test_hello_lives_its_whole_life(node, master):
    client = master["client"]
    client.supply("c1", HELLO)
    a = client.request("hello-a", HELLO, parameters={"greeting": "one"})
    b = client.request("hello-b", HELLO, parameters={"greeting": "two"})
    settle(node)

    a, b = client.show(a["id"]), client.show(b["id"])
    assert a["status"]["state"] == "started", a["status"]["log_tail"]
    assert [p["ok"] for p in a["status"]["promises"]] == [True]
    url_a, url_b = a["connection"]["url"], b["connection"]["url"]
    assert get(url_a)["greeting"] == "one" and get(url_b)["greeting"] == "two"
    assert a["placement"]["address"] in url_a
    sw = client.show_computer("c1")["software"][0]
    assert sw["status"] == "installed" and sw["software_types"] == ["default"]

    # nothing changed: one 304 and no action
    result = node.once()
    assert not result.fetched and not result.plan

    # a parameter change re-instantiates only that partition, and restarts its service
    # (the greeting is on its command line: its wrapper changed)
    pid_b = get(url_b)["pid"]
    reported_b = client.show(b["id"])["status"]["reported_at"]
    client.request("hello-a", HELLO, parameters={"greeting": "uno"})
    result = node.once()
    assert {a.partition for a in result.plan} == {client.show(a["id"])["placement"]["partition"]}
    assert get(url_a)["greeting"] == "uno"
    assert get(url_b)["pid"] == pid_b
    assert client.show(b["id"])["status"]["reported_at"] == reported_b

    # stop, then start again
    client.change_state(a["id"], "stopped")
    settle(node)
    assert client.show(a["id"])["status"]["state"] == "stopped"
    assert refuses(url_a)
    client.change_state(a["id"], "started")
    settle(node)
    assert client.show(a["id"])["status"]["state"] == "started"
    assert get(url_a)["greeting"] == "uno"

    # destroy: the partition is wiped, the master frees it, the neighbour never noticed
    part = client.show(a["id"])["placement"]["partition"]
    client.destroy(a["id"])
    settle(node)
    gone = client.show(a["id"])
    assert gone["status"]["state"] == "destroyed" and gone["placement"] is None
    assert refuses(url_a)
    assert os.listdir(node.paths.partition(part).path) == []
    assert not os.path.exists(node.paths.group_conf(part))
    assert get(url_b)["pid"] == pid_b

    # the local view
    status = node.status()
    assert status["supervisord"]
    by_id = {p["id"]: p for p in status["partitions"]}
    assert by_id[part]["state"] == "destroyed"


def test_failures_are_reported_and_isolated(node, master):
    client = master["client"]
    missing = os.path.join(REPO, "profiles", "no-such-release", "software.cfg")
    for url in (HELLO, FAILING, missing):
        client.supply("c1", url)
    healthy = client.request("healthy", HELLO)
    broken = client.request("broken", FAILING, parameters={"reason": "test"})
    ghost = client.request("ghost", missing)
    bad_type = client.request("typo", FAILING, software_type="nope")
    settle(node)

    assert client.show(healthy["id"])["status"]["state"] == "started"
    b = client.show(broken["id"])["status"]
    assert b["state"] == "failed" and "fails on purpose (parameter reason: test)" in b["log_tail"]
    g = client.show(ghost["id"])["status"]
    assert g["state"] == "failed" and "does not exist" in g["log_tail"]
    t = client.show(bad_type["id"])["status"]
    assert t["state"] == "failed" and "has no software type 'nope' (has: default)" in t["log_tail"]
    sw = {s["url"]: s for s in client.show_computer("c1")["software"]}
    assert sw[missing]["status"] == "failed" and "does not exist" in sw[missing]["log_tail"]

    # failures are not retried every cycle (backoff), nothing else is replanned
    assert not node.plan()
    assert not [a for a in node.plan() if isinstance(a, InstallSoftware)]

    # a new revision of the broken instance is applied at once
    client.request("broken", FAILING, parameters={"reason": "again"})
    node.once()
    assert "reason: again" in client.show(broken["id"])["status"]["log_tail"]


def test_a_dead_service_is_reported_by_the_health_check(node, master):
    client = master["client"]
    client.supply("c1", HELLO)
    inst = client.request("h", HELLO)
    settle(node)
    part = client.show(inst["id"])["placement"]["partition"]
    assert node.check_health(interval=0) == []            # healthy: nothing reported
    node.sup.stop_group(part)                              # the service dies
    assert node.check_health(interval=0) == [part]
    status = client.show(inst["id"])["status"]
    assert status["state"] == "failed"
    assert "STOPPED" in status["log_tail"] or "unreachable" in status["log_tail"]
    assert node.check_health(interval=0) == []             # reported once, not every time


def test_reports_wait_in_the_outbox_while_the_master_is_away(node, master):
    client = master["client"]
    client.supply("c1", HELLO)
    inst = client.request("h", HELLO)
    real = node.client

    class Flaky(MasterClient):
        def report_partition(self, *a, **kw):
            raise MasterUnreachable("master away")

    node.client = Flaky(master["url"])
    node.once()                                           # install + instantiate
    settle(node)
    assert client.show(inst["id"])["status"]["state"] == "pending"
    assert any(k.startswith("partition:") for k in node.outbox)
    node.client = real
    node.once()
    assert node.outbox == {}
    assert client.show(inst["id"])["status"]["state"] == "started"


def test_state_survives_a_new_agent(node, master):
    client = master["client"]
    client.supply("c1", HELLO)
    client.request("h", HELLO)
    settle(node)
    again = Agent(node.config.root)
    assert not again.once().plan                          # nothing re-applied


def test_noop_cycle_is_cheap_with_many_partitions(tmp_path, master, node_roots):
    """100 partitions each holding a (service-less) instance: a cycle with nothing
    changed is one 304 and a plan, far below 0.3 s."""
    root = str(tmp_path / "big")
    release = tmp_path / "tiny" / "software.cfg"
    release.parent.mkdir()
    (release.parent / "instance-default.cfg").write_text(
        "[buildout]\nparts = publish\n[publish]\nrecipe = slapfed:publish\n"
        "url = http://${partition:address}:${partition:port-base}/\n")
    release.write_text("[buildout]\nparts = i\n[i]\nrecipe = slapfed:file\n"
                       "source = ${release:directory}/instance-default.cfg\n"
                       "path = ${buildout:directory}/instance-default.cfg\n")
    config = format_node(root, master["url"], "big", 100)
    client = master["client"]
    client.register_computer(config.registration())
    client.supply("big", str(release))
    for i in range(100):
        client.request(f"t{i}", str(release), sla={"computer_guid": "big"})
    node_roots.append(root)
    agent = Agent(root)
    settle(agent)
    assert agent.local.software[software_hash(str(release))].status == "installed"
    times = []
    for _ in range(5):
        started = time.monotonic()
        result = agent.once()
        times.append(time.monotonic() - started)
        assert not result.plan and not result.fetched
    assert min(times) < 0.1, times


# -- the CLI ---------------------------------------------------------------------------

def test_cli_format_dry_run_once_status_stop(tmp_path, master, node_roots):
    from click.testing import CliRunner
    from slapfed.cli.main import cli

    root = str(tmp_path / "clinode")
    runner = CliRunner()
    out = runner.invoke(cli, ["node", "format", "--computer", "cli-c", "--partitions", "2",
                              "--root", root, "--label", "disk=ssd", "--json"],
                        env={"SLAPFED_MASTER": master["url"]})
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["registered"] is True
    assert master["client"].show_computer("cli-c")["labels"] == {"disk": "ssd"}
    node_roots.append(root)
    master["client"].supply("cli-c", HELLO)
    master["client"].request("h", HELLO, sla={"computer_guid": "cli-c"})
    out = runner.invoke(cli, ["node", "once", "--root", root, "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    actions = [a["action"] for a in json.loads(out.output)["plan"]]
    assert actions == ["InstallSoftware", "Instantiate", "Start"]
    assert not os.path.exists(Paths(root).state)                 # dry run: no change
    out = runner.invoke(cli, ["node", "once", "--root", root])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["node", "status", "--root", root, "--json"])
    status = json.loads(out.output)
    assert status["supervisord"] is True
    assert status["partitions"][0]["state"] == "started"
    out = runner.invoke(cli, ["node", "stop", "--root", root])
    assert out.exit_code == 0 and "stopped" in out.output


def test_cli_once_without_format_says_what_to_do(tmp_path):
    from click.testing import CliRunner
    from slapfed.cli.main import cli

    out = CliRunner().invoke(cli, ["node", "once", "--root", str(tmp_path / "none")])
    assert out.exit_code != 0 and "format the node first" in out.output


def test_run_loop_applies_changes_and_stops_on_sigterm(tmp_path, master, node_roots):
    import signal
    import subprocess
    import sys

    root = str(tmp_path / "loop")
    config = format_node(root, master["url"], "loop-c", 2)
    client = master["client"]
    client.register_computer(config.registration())
    node_roots.append(root)
    client.supply("loop-c", HELLO)
    inst = client.request("looped", HELLO, parameters={"greeting": "loop"})
    log = open(tmp_path / "loop.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "slapfed.cli.main", "node", "run", "--root",
                             root, "--interval", "0.2"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while client.show(inst["id"])["status"]["state"] != "started":
            assert proc.poll() is None, (tmp_path / "loop.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "loop.log").read_text()
            time.sleep(0.1)
        assert get(client.show(inst["id"])["connection"]["url"])["greeting"] == "loop"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert "node agent stopped" in (tmp_path / "loop.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()


def test_users_option_names_one_user_per_partition():
    from slapfed.node.layout import plan_partitions
    from slapfed.node.supervisor import render_group_conf

    parts = plan_partitions([], 3, "comp", None, 10000, 10, users=True)
    users = [p.user for p in parts]
    assert len(set(users)) == 3 and all(u.startswith("slapfed-") and len(u) <= 32 for u in users)
    conf = render_group_conf("part0", "/p", "/p/var/log", [("web", "/p/etc/service/web")],
                             True, user=users[0])
    assert f"user = {users[0]}" in conf
    assert all(p.user is None for p in plan_partitions([], 2, "comp", None, 10000, 10, False))


@pytest.mark.parametrize("base,count,ok", [
    ("127.9.0.1", 300, True),
    ("127.255.255.250", 10, False),
    ("10.0.0.1", 2, True),
], ids=["grows-into-next-block", "leaves-loopback", "explicit-non-loopback-base"])
def test_address_base(base, count, ok):
    from slapfed.core.errors import InvalidInput
    from slapfed.node.layout import plan_partitions

    if ok:
        parts = plan_partitions([], count, "c", base, 10000, 10, False)
        assert len({p.address for p in parts}) == count
    else:
        with pytest.raises(InvalidInput):
            plan_partitions([], count, "c", base, 10000, 10, False)


def test_shared_connections_are_reported_as_the_master_accepts_them():
    from slapfed.core.wire import PartitionReport
    from slapfed.node.agent import _clean_shared_connections, _partition_report

    published = {"i-a": {"url": "http://x/a/", "bad key": 1}, "not an id": {"url": "u"},
                 "i-b": "http://x/b/", 5: {}}
    cleaned = _clean_shared_connections(published)
    assert cleaned == {"i-a": {"url": "http://x/a/"}}
    body = _partition_report("i-1", 2, "started", "", {"url": "http://x/"}, [], cleaned)
    assert PartitionReport.from_json(body).shared_connections == cleaned
    # nothing published: the field is left out (a master predating it would refuse it)
    assert "shared_connections" not in _partition_report("i-1", 2, "started", "", {}, [], {})


# -- restarting only what changed ------------------------------------------------------

SERVICES_PROFILE = """\
[buildout]
parts = one two ${parameters:more} publish

[parameters]
one = 1
two = 2
more =
note = x

[one]
recipe = slapfed:service
path = ${partition:services}/one
command = /bin/sleep 100000${parameters:one}

[two]
recipe = slapfed:service
path = ${partition:services}/two
command = /bin/sleep 100000${parameters:two}

[three]
recipe = slapfed:service
path = ${partition:services}/three
command = /bin/sleep 1000003

[publish]
recipe = slapfed:publish
note = ${parameters:note}
"""


@pytest.fixture
def services_release(tmp_path):
    """A release whose instance runs services one and two (and three when the parameter
    more=three), each wrapper depending on its own parameter only."""
    release = tmp_path / "services" / "software.cfg"
    release.parent.mkdir()
    (release.parent / "instance-default.cfg").write_text(SERVICES_PROFILE)
    release.write_text("[buildout]\nparts = i\n[i]\nrecipe = slapfed:file\n"
                       "source = ${release:directory}/instance-default.cfg\n"
                       "path = ${buildout:directory}/instance-default.cfg\n")
    return str(release)


def service_pids(agent: Agent, part: str) -> dict:
    """{service: PID} of the partition's running programs."""
    return {i["name"][len(part) + 1:]: i["pid"] for i in agent.sup.rpc.getAllProcessInfo()
            if i["group"] == part and i["statename"] in ("STARTING", "RUNNING")}


def test_only_services_whose_wrapper_changed_restart(node, master, services_release):
    client = master["client"]
    client.supply("c1", services_release)
    inst = client.request("svc", services_release)
    settle(node)
    part = client.show(inst["id"])["placement"]["partition"]

    def apply(**params):
        client.request("svc", services_release, parameters=params)
        result = node.once()
        assert [type(a).__name__ for a in result.plan] == ["Instantiate", "Start"]
        status = client.show(inst["id"])["status"]
        assert status["state"] == "started", status["log_tail"]
        return service_pids(node, part)

    first = service_pids(node, part)
    assert set(first) == {"one", "two"} and all(first.values())

    # re-instantiated, no wrapper changed: every process keeps running
    assert apply(note="y") == first
    # one wrapper changed: that service alone restarts
    now = apply(note="y", two="5")
    assert now["one"] == first["one"] and now["two"] != first["two"]
    # a new service is started, the others keep running
    added = apply(note="y", two="5", more="three")
    assert {k: added[k] for k in now} == now and added["three"]
    # a removed service is stopped, the others keep running
    assert apply(note="y", two="5") == now
    assert not os.path.exists(os.path.join(node.paths.partition(part).services, "three"))
    assert not any(i["name"] == f"{part}_three" for i in node.sup.rpc.getAllProcessInfo())

    # a dead service is started again, even when its wrapper did not change
    node.sup.stop_programs(part, [f"{part}_one"])
    revived = apply(note="z", two="5")
    assert revived["one"] not in (0, now["one"]) and revived["two"] == now["two"]

    # a new agent over the same node (restarted) keeps what did not change running
    again = Agent(node.config.root, backoff=Backoff(base=60), promise_timeout=10)
    assert not again.once().plan
    client.request("svc", services_release, parameters={"note": "z", "two": "6"})
    assert [type(a).__name__ for a in again.once().plan] == ["Instantiate", "Start"]
    last = service_pids(again, part)
    assert last["one"] == revived["one"] and last["two"] != revived["two"]

    # stopped, then started: everything starts (nothing was running)
    client.change_state(inst["id"], "stopped")
    settle(again)
    assert service_pids(again, part) == {}
    client.change_state(inst["id"], "started")
    settle(again)
    assert set(service_pids(again, part)) == {"one", "two"}


def test_a_partition_waiting_for_its_secret_parameters_starts_and_reports_nothing(
        node, master):
    """Its requester seals them once the partition has a certificate: until they come,
    the node builds nothing, starts nothing and says nothing (it is not running this
    revision), rather than report it started with no service."""
    from slapfed.core.sealed import PENDING
    client = master["client"]
    client.supply("c1", HELLO)
    running = client.request("hello-a", HELLO, parameters={"greeting": "one"})
    settle(node)
    waiting = client.request("hello-s", HELLO, parameters={"greeting": "s", "db": PENDING})
    for _ in range(3):
        result = node.once()
        assert {a.partition for a in result.plan} == {waiting["placement"]["partition"]}
    shown = client.show(waiting["id"])
    assert shown["status"]["state"] == "pending" and shown["status"]["reported_at"] is None
    assert service_pids(node, waiting["placement"]["partition"]) == {}
    assert client.show(running["id"])["status"]["state"] == "started"
    # the values come (here: plain): it is built and started at once
    client.request("hello-s", HELLO, parameters={"greeting": "s", "db": "now"})
    settle(node)
    assert client.show(waiting["id"])["status"]["state"] == "started"
