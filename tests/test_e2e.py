"""End to end: a real master process (gunicorn, FileStorage) over mutual TLS, a real node
process enrolled with a one-time token, real buildout runs and a real supervisord, driven
through the slapfed CLI as a user would (alice, a person identity; supplies by an admin)."""
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
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
                                   "--listen", "127.0.0.1:0"), base / "master.log")
        procs.append(master)
        url_file = base / "master" / "master.url"
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                 "master URL", proc=master)
        url = url_file.read_text().strip()
        assert url.startswith("https://")
        ca = CertificateAuthority(base / "master" / "ca")
        identities = {who: ca.issue_with_new_key(identity, base / who)
                      for who, identity in (("alice", ids.person("alice")),
                                            ("root", ids.admin("root")))}
        envs = {}
        for who in identities:
            envs[who] = dict(os.environ, SLAPFED_CONFIG=str(base / f"{who}.json"))
            envs[who].pop("SLAPFED_MASTER", None)
            cli("config", "set", "--master", url, "--identity", str(base / who), env=envs[who])
        env = envs["alice"]
        # addresses of this run's own, so that two suites on one machine never collide
        cli("node", "format", "--master", url, "--computer", COMPUTER, "--partitions", "4",
            "--root", str(root), "--lan", "lan-e2e", "--continent", "europe",
            "--address-base", f"127.{20 + os.getpid() % 200}.201.1",
            "--token", ca.token_for(COMPUTER), "--ca", str(ca.directory / "ca.crt"), env=env)
        node = Proc(slapfed_argv("node", "run", "--root", str(root), "--interval", "0.3"),
                    base / "node.log")
        procs.append(node)
        tls = {who: {"ca": str(made.ca_path), "cert": str(made.cert_path),
                     "key": str(made.key_path)} for who, made in identities.items()}
        yield {"url": url, "env": env, "admin_env": envs["root"], "root": root, "base": base,
               "node": node, "client": MasterClient(url, **tls["alice"]),
               "admin": MasterClient(url, **tls["root"])}
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
    broken = instance(fed, "broken")
    assert broken["status"]["state"] == "failed"
    assert "fails on purpose" in broken["status"]["log_tail"]

    # a release that does not exist: the software fails with its log tail, and so does the instance
    cli("supply", MISSING, "--computer", COMPUTER, env=fed["admin_env"])
    done = cli("request", "ghost", MISSING, "--wait", "120", env=env, check=False)
    assert done.returncode == Exit.FAILED, done.stderr
    ghost = instance(fed, "ghost")
    assert ghost["status"]["state"] == "failed" and ghost["status"]["log_tail"]
    sw = [s for s in fed["admin"].show_computer(COMPUTER)["software"] if s["url"] == MISSING]
    assert sw and sw[0]["status"] == "failed" and sw[0]["log_tail"]

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
