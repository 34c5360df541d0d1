"""End to end: a real master process (gunicorn, FileStorage) over mutual TLS, a real node
process enrolled with a one-time token, real buildout runs and a real supervisord, driven
through the slapfed CLI as a user would (alice, a person identity; supplies by an admin)."""
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import mtls_master_and_node, slapfed_cli

from slapfed.cli.common import Exit
from slapfed.procs import wait_for

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")
FAILING = str(REPO / "profiles" / "failing" / "software.cfg")
MISSING = str(REPO / "profiles" / "no-such-release" / "software.cfg")
COMPUTER = "e2e-node"

pytestmark = pytest.mark.timeout(600)


def cli(*args, env=None, check=True):
    return slapfed_cli(*args, env=env, check=check)


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def refuses(url) -> bool:
    try:
        get(url, timeout=2)
    except (urllib.error.URLError, ConnectionError, OSError):
        return True
    return False


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    with mtls_master_and_node(tmp_path_factory.mktemp("e2e"), COMPUTER, partitions=4,
                              address_octet=201,
                              format_args=("--lan", "lan-e2e", "--continent", "europe")) as fed:
        yield fed


def instance(fed, reference):
    return fed["client"].find(reference)


def test_request_runs_a_service_through_its_whole_life(federation):
    fed, env = federation, federation["env"]
    client = fed["client"]
    cli("supply", HELLO, "--computer", COMPUTER, env=fed["admin_env"])

    # request -> a process answers on the URL published as a connection parameter
    out = cli("request", "hello-a", HELLO, "--param", "greeting=one", "--wait", "120", "--json", env=env)
    a = json.loads(out.stdout)
    assert a["status"]["state"] == "started"
    url_a = a["connection"]["url"]
    assert get(url_a)["greeting"] == "one"
    b = json.loads(cli("request", "hello-b", HELLO, "--param", "greeting=two", "--wait", "120",
                       "--json", env=env).stdout)
    assert get(b["connection"]["url"])["greeting"] == "two"
    assert a["placement"]["partition"] != b["placement"]["partition"]
    assert a["placement"]["address"] != b["placement"]["address"]

    # a parameter change re-instantiates only that partition
    b_before = instance(fed, "hello-b")
    pid_b = get(b["connection"]["url"])["pid"]
    a2 = json.loads(cli("request", "hello-a", HELLO, "--param", "greeting=uno", "--wait", "60",
                        "--json", env=env).stdout)
    assert a2["id"] == a["id"] and a2["revision"] > a["revision"]
    assert a2["placement"] == a["placement"]
    wait_for(lambda: get(url_a)["greeting"] == "uno", 30, "the new greeting")
    b_after = instance(fed, "hello-b")
    assert b_after["status"]["reported_at"] == b_before["status"]["reported_at"]
    assert get(b["connection"]["url"])["pid"] == pid_b

    # asking again with nothing new changes nothing
    again = client.request("hello-a", HELLO, parameters={"greeting": "uno"})
    assert again["revision"] == a2["revision"]

    # stop -> the service is gone; start -> it answers again
    cli("stop", "hello-a", "--wait", "60", env=env)
    assert instance(fed, "hello-a")["status"]["state"] == "stopped"
    assert refuses(url_a)
    cli("start", "hello-a", "--wait", "60", env=env)
    wait_for(lambda: not refuses(url_a), 20, "hello-a to answer after start")
    assert get(url_a)["greeting"] == "uno"

    # destroy -> the partition is wiped and freed on the master
    part = a["placement"]["partition"]
    cli("destroy", "hello-a", "--wait", "60", env=env)
    gone = instance(fed, "hello-a")
    assert gone["status"]["state"] == "destroyed" and gone["placement"] is None
    comp = fed["admin"].show_computer(COMPUTER)
    assert [p["instance"] for p in comp["partitions"] if p["id"] == part] == [None]
    assert refuses(url_a)
    part_dir = fed["root"] / "partitions" / part
    assert not part_dir.exists() or list(part_dir.iterdir()) == []
    # the other instance never noticed
    assert get(b["connection"]["url"])["pid"] == pid_b

    # the CLI reads with --json
    listed = json.loads(cli("list", "--json", env=env).stdout)["instances"]
    assert {i["reference"] for i in listed} >= {"hello-b"}      # destroyed ones left out
    listed = json.loads(cli("list", "--all", "--json", env=env).stdout)["instances"]
    assert {i["reference"] for i in listed} >= {"hello-a", "hello-b"}


def test_failures_are_reported_with_their_log_and_disturb_nothing(federation):
    fed, env = federation, federation["env"]
    client = fed["client"]
    cli("supply", HELLO, "--computer", COMPUTER, env=fed["admin_env"])
    healthy = json.loads(cli("request", "hello-healthy", HELLO, "--wait", "120", "--json",
                             env=env).stdout)
    pid = get(healthy["connection"]["url"])["pid"]

    # an instance buildout that fails: exit code 8, failed status with the log tail
    cli("supply", FAILING, "--computer", COMPUTER, env=fed["admin_env"])
    done = cli("request", "broken", FAILING, "--wait", "120", env=env, check=False)
    assert done.returncode == Exit.FAILED, done.stderr
    # the wait printed each change of phase with its elapsed time, ending in failed
    phases = re.findall(r"^ *\d+\.\ds  broken: (.*)$", done.stderr, re.M)
    assert phases and phases[-1] == "failed", done.stderr
    broken = instance(fed, "broken")
    assert broken["status"]["state"] == "failed"
    assert "fails on purpose" in broken["status"]["log_tail"]

    # a release that does not exist: its install fails with its log tail, shown in text,
    # and placement refuses that computer for it with its own reason
    cli("supply", MISSING, "--computer", COMPUTER, env=fed["admin_env"])

    def missing_release():
        return [s for s in fed["admin"].show_computer(COMPUTER)["software"]
                if s["url"] == MISSING][0]
    wait_for(lambda: missing_release()["failed_installs"] >= 1, 60, "the install to fail")
    assert missing_release()["log_tail"]
    shown = cli("computer", "show", COMPUTER, env=fed["admin_env"]).stdout
    assert "failed install(s)" in shown, shown
    done = cli("request", "ghost", MISSING, env=env, check=False)
    assert done.returncode == Exit.CONFLICT, done.stderr
    assert "release failed to install" in done.stderr
    assert not [i for i in client.list_instances(requester="person/alice")
                if i["reference"] == "ghost"]

    # an unknown software type of a release whose types are known: refused, nothing written
    done = cli("request", "typo", HELLO, "--type", "no-such-type", env=env, check=False)
    assert done.returncode == Exit.INVALID, done.stderr
    assert "no-such-type" in done.stderr
    assert not [i for i in client.list_instances(requester="person/alice") if i["reference"] == "typo"]

    # malformed input over mutual TLS: 400 with every problem listed; without a
    # certificate: 401 before the body is even read
    import requests
    for cert, status, code in ((client.cert, 400, "invalid_input"),
                               (None, 401, "unauthenticated")):
        resp = requests.post(fed["url"] + "/api/v1/instances", data=b"{oops",
                             headers={"Content-Type": "application/json"},
                             verify=client.verify, cert=cert, timeout=5)
        assert resp.status_code == status and resp.json()["error"]["code"] == code

    # the healthy instance never restarted
    assert get(healthy["connection"]["url"])["pid"] == pid
    assert fed["node"].alive()
