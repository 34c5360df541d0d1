"""End to end: profiles/node deploys a nested slapfed node in a partition of an outer node,
both attached to one real master; a service placed on the nested computer answers, and
destroying the node instance stops every process the nested node ran."""
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from slapfed.ca.authority import CertificateAuthority
from slapfed.client import MasterClient
from slapfed.procs import Proc, pid_alive, slapfed_argv, stop_pid, wait_for

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")
NODE = str(REPO / "profiles" / "node" / "software.cfg")
OUTER = "outer-node"

pytestmark = pytest.mark.timeout(300)


def cli(*args, env=None):
    done = subprocess.run(slapfed_argv(*args), capture_output=True, text=True, env=env,
                          timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"slapfed {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def log_tails(base: Path, lines: int = 25) -> str:
    """The last lines of every log under ``base`` (the master's, the outer node's, the
    nested node's and its partitions'), for a failure's message."""
    out = []
    for path in sorted(base.rglob("*.log")):
        try:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        out.append(f"--- {path.relative_to(base)}\n" + "\n".join(tail))
    return "\n".join(out)


def nested_pid_files(base: Path) -> list[Path]:
    """supervisord pid files of every node root under ``base`` (outer and nested)."""
    return sorted(base.rglob("supervisord.pid"))


@pytest.fixture
def federation(tmp_path, request):
    """A master (plain HTTP, or mutual TLS when parametrized so) and an outer node of two
    partitions; every process is stopped by PID at the end, nested supervisords included."""
    tls = getattr(request, "param", "http") == "tls"
    procs, root = [], tmp_path / "outer"
    stamp = os.getpid() % 200
    try:
        argv = ["master", "serve", "--data", str(tmp_path / "master"), "--listen", "127.0.0.1:0"]
        master = Proc(slapfed_argv(*argv, *([] if tls else ["--insecure-http"])),
                      tmp_path / "master.log")
        procs.append(master)
        url_file = tmp_path / "master" / "master.url"
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                 "master URL", proc=master)
        url = url_file.read_text().strip()
        env = dict(os.environ, SLAPFED_CONFIG=str(tmp_path / "client.json"))
        env.pop("SLAPFED_MASTER", None)
        fed = {"url": url, "env": env, "base": tmp_path, "tls": tls}
        fmt = ["node", "format", "--master", url, "--computer", OUTER, "--partitions", "2",
               "--root", str(root), "--address-base", f"127.{20 + stamp}.211.1"]
        if tls:
            from slapfed.ca import identity as ids

            ca = CertificateAuthority(tmp_path / "master" / "ca")
            admin = ca.issue_with_new_key(ids.admin("root"), tmp_path / "admin")
            cli("config", "set", "--master", url, "--identity", str(tmp_path / "admin"),
                env=env)
            fmt += ["--token", ca.token_for(OUTER), "--ca", str(ca.directory / "ca.crt")]
            fed["ca"], fed["ca_pem"] = ca, (ca.directory / "ca.crt").read_text()
            fed["client"] = MasterClient(url, ca=str(admin.ca_path), cert=str(admin.cert_path),
                                         key=str(admin.key_path))
        else:
            cli("config", "set", "--master", url, env=env)
            fed["client"] = MasterClient(url)
        cli(*fmt, env=env)
        procs.append(Proc(slapfed_argv("node", "run", "--root", str(root), "--interval", "0.3"),
                          tmp_path / "node.log"))
        yield fed
    finally:
        for p in reversed(procs):
            p.stop()
        # supervisords still running (the outer one, nested ones if a test failed midway)
        for pid_file in nested_pid_files(tmp_path):
            pid = read_pid(pid_file)
            if pid is not None and pid_alive(pid):
                stop_pid(pid, 15.0)


def _nested_node_lifecycle(fed, nested_address_base: str):
    client, env, base = fed["client"], fed["env"], fed["base"]
    nested = "nested-node"
    cli("supply", NODE, "--computer", OUTER, env=env)
    params = ["--param", f"master-url={fed['url']}", "--param", f"computer-id={nested}",
              "--param", "partitions=2", "--param", f"address-base={nested_address_base}",
              "--param", "lan=lan-nested"]
    if fed["tls"]:
        params += ["--param", f"token={fed['ca'].token_for(nested)}",
                   "--param", f"ca={fed['ca_pem']}"]

    def request_node(interval):
        return json.loads(cli("request", "node-1", NODE, *params, "--param",
                              f"interval={interval}", "--sla", f"computer_guid={OUTER}",
                              "--wait", "90", "--json", env=env).stdout)

    node = request_node(0.3)
    assert node["status"]["state"] == "started", node["status"]
    conn = node["connection"]
    assert conn["computer-id"] == nested and conn["partitions"] == "2"
    nested_root = Path(conn["root"])
    assert nested_root.is_relative_to(base / "outer" / "partitions")

    # the nested computer is on the master with its partitions, on its own addresses
    comp = client.show_computer(nested)
    assert [p["id"] for p in comp["partitions"]] == ["part0", "part1"]
    outer_addresses = {p["address"] for p in client.show_computer(OUTER)["partitions"]}
    assert not outer_addresses & {p["address"] for p in comp["partitions"]}

    # a changed parameter re-instantiates the partition and restarts the agent, which
    # must not present its (spent) token again: the hello request below needs it alive
    again = request_node(0.25)
    assert again["revision"] > node["revision"] and again["status"]["state"] == "started"

    # a service placed on the nested computer answers
    cli("supply", HELLO, "--computer", nested, env=env)
    try:
        hello = json.loads(cli("request", "hello-nested", HELLO, "--sla",
                               f"computer_guid={nested}", "--wait", "90", "--json",
                               env=env).stdout)
    except AssertionError as exc:    # what the nodes said, for a run that timed out
        raise AssertionError(f"{exc}\n{log_tails(base)}") from None
    assert hello["placement"]["computer"] == nested
    answer = get(hello["connection"]["url"])
    hello_pid = answer["pid"]
    nested_sup = read_pid(nested_root / "var" / "supervisord.pid")
    assert nested_sup and pid_alive(nested_sup) and pid_alive(hello_pid)

    # destroying the node instance stops the nested supervisord and what it ran
    outer_part = node["placement"]["partition"]
    cli("destroy", "node-1", "--wait", "60", env=env)
    wait_for(lambda: not pid_alive(nested_sup) and not pid_alive(hello_pid), 20,
             "the nested supervisord and hello to be gone")
    try:
        get(hello["connection"]["url"], timeout=2)
        raise AssertionError("hello still answers after its node was destroyed")
    except (urllib.error.URLError, ConnectionError, OSError):
        pass
    part_dir = base / "outer" / "partitions" / outer_part
    assert not part_dir.exists() or list(part_dir.iterdir()) == []
    outer = client.show_computer(OUTER)
    assert [p["instance"] for p in outer["partitions"] if p["id"] == outer_part] == [None]


def test_node_profile_runs_a_nested_node_whose_services_die_with_it(federation):
    _nested_node_lifecycle(federation, f"127.{20 + os.getpid() % 200}.212.1")


@pytest.mark.parametrize("federation", ["tls"], indirect=True)
def test_node_profile_enrolls_over_mutual_tls_with_a_token(federation):
    _nested_node_lifecycle(federation, f"127.{20 + os.getpid() % 200}.213.1")
