"""End to end: a real master process (gunicorn, FileStorage), a real node process, real
buildout runs and a real supervisord, driven through the slapfed CLI as a user would."""
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from slapfed.client import MasterClient
from slapfed.cli.common import Exit
from slapfed.procs import Proc, slapfed_argv, wait_for

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")
FAILING = str(REPO / "profiles" / "failing" / "software.cfg")
MISSING = str(REPO / "profiles" / "no-such-release" / "software.cfg")
COMPUTER = "e2e-node"

pytestmark = pytest.mark.timeout(600)


def cli(*args, env=None, check=True):
    done = subprocess.run(slapfed_argv(*args), capture_output=True, text=True, env=env, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"slapfed {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


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
    base = tmp_path_factory.mktemp("e2e")
    procs = []
    root = base / "node"
    try:
        master = Proc(slapfed_argv("master", "serve", "--data", str(base / "master"),
                                   "--listen", "127.0.0.1:0", "--insecure-http"), base / "master.log")
        procs.append(master)
        url_file = base / "master" / "master.url"
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                 "master URL", proc=master)
        url = url_file.read_text().strip()
        env = dict(os.environ, SLAPFED_MASTER=url, SLAPFED_REQUESTER="alice",
                   SLAPFED_CONFIG=str(base / "no-config.json"))
        cli("node", "format", "--master", url, "--computer", COMPUTER, "--partitions", "4",
            "--root", str(root), "--lan", "lan-e2e", "--continent", "europe", env=env)
        node = Proc(slapfed_argv("node", "run", "--root", str(root), "--interval", "0.3"),
                    base / "node.log")
        procs.append(node)
        yield {"url": url, "env": env, "root": root, "base": base, "node": node,
               "client": MasterClient(url, requester="alice")}
    finally:
        for p in reversed(procs):
            p.stop()
        if (root / "node.json").exists():
            subprocess.run(slapfed_argv("node", "stop", "--root", str(root)),
                           capture_output=True, timeout=60)


def instance(fed, reference):
    return fed["client"].find(reference)


def test_request_runs_a_service_through_its_whole_life(federation):
    fed, env = federation, federation["env"]
    client = fed["client"]
    cli("supply", HELLO, "--computer", COMPUTER, env=env)

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
    comp = client.show_computer(COMPUTER)
    assert [p["instance"] for p in comp["partitions"] if p["id"] == part] == [None]
    assert refuses(url_a)
    part_dir = fed["root"] / "partitions" / part
    assert not part_dir.exists() or list(part_dir.iterdir()) == []
    # the other instance never noticed
    assert get(b["connection"]["url"])["pid"] == pid_b

    # the CLI reads with --json
    listed = json.loads(cli("list", "--json", env=env).stdout)["instances"]
    assert {i["reference"] for i in listed} >= {"hello-a", "hello-b"}


def test_failures_are_reported_with_their_log_and_disturb_nothing(federation):
    fed, env = federation, federation["env"]
    client = fed["client"]
    cli("supply", HELLO, "--computer", COMPUTER, env=env)
    healthy = json.loads(cli("request", "hello-healthy", HELLO, "--wait", "120", "--json",
                             env=env).stdout)
    pid = get(healthy["connection"]["url"])["pid"]

    # an instance buildout that fails: exit code 8, failed status with the log tail
    cli("supply", FAILING, "--computer", COMPUTER, env=env)
    done = cli("request", "broken", FAILING, "--wait", "120", env=env, check=False)
    assert done.returncode == Exit.FAILED, done.stderr
    broken = instance(fed, "broken")
    assert broken["status"]["state"] == "failed"
    assert "fails on purpose" in broken["status"]["log_tail"]

    # a release that does not exist: the software fails with its log tail, and so does the instance
    cli("supply", MISSING, "--computer", COMPUTER, env=env)
    done = cli("request", "ghost", MISSING, "--wait", "120", env=env, check=False)
    assert done.returncode == Exit.FAILED, done.stderr
    ghost = instance(fed, "ghost")
    assert ghost["status"]["state"] == "failed" and ghost["status"]["log_tail"]
    sw = [s for s in client.show_computer(COMPUTER)["software"] if s["url"] == MISSING]
    assert sw and sw[0]["status"] == "failed" and sw[0]["log_tail"]

    # an unknown software type of a release whose types are known: refused, nothing written
    done = cli("request", "typo", HELLO, "--type", "no-such-type", env=env, check=False)
    assert done.returncode == Exit.INVALID, done.stderr
    assert "no-such-type" in done.stderr
    assert not [i for i in client.list_instances(requester="alice") if i["reference"] == "typo"]

    # malformed input over HTTP: 400 with every problem listed
    req = urllib.request.Request(fed["url"] + "/api/v1/instances", data=b"{oops",
                                 headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=5)
    assert exc.value.code == 400
    assert json.loads(exc.value.read())["error"]["code"] == "invalid_input"

    # the healthy instance never restarted
    assert get(healthy["connection"]["url"])["pid"] == pid
    assert fed["node"].alive()
