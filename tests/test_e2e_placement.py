"""End to end, placement: one real master started with a topology file, four real node
processes on different hosts, LANs, countries and continents; requests with absolute,
same_* and different_* SLAs land where they must, checked through `slapfed topology where`."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from slapfed.cli.common import Exit
from slapfed.procs import Proc, slapfed_argv, wait_for

REPO = Path(__file__).resolve().parents[1]
IDLE = str(REPO / "profiles" / "idle" / "software.cfg")

pytestmark = pytest.mark.timeout(600)

TOPOLOGY = """
version = 1
description = "e2e: two LANs in Europe, one in Asia"

[sites.europe.fr.par]
hosts = ["par-h1", "par-h2"]
[sites.europe.de.ber]
hosts = ["ber-h1"]
[sites.asia.jp.tyo]
hosts = ["tyo-h1"]

[[masters]]
name = "root"
site = "par-h1"
"""

# computer -> (host, lan): country and continent come from the topology file
NODES = {"n-par1": ("par-h1", "par"), "n-par2": ("par-h2", "par"),
         "n-ber": ("ber-h1", "ber"), "n-tyo": ("tyo-h1", "tyo")}


def cli(*args, env, check=True):
    done = subprocess.run(slapfed_argv(*args), capture_output=True, text=True, env=env,
                          timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"slapfed {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e-placement")
    topo = base / "federation.toml"
    topo.write_text(TOPOLOGY)
    procs, roots = [], []
    try:
        master = Proc(slapfed_argv("master", "serve", "--data", str(base / "master"),
                                   "--listen", "127.0.0.1:0", "--insecure-http", "--topology", str(topo),
                                   "--name", "root"), base / "master.log")
        procs.append(master)
        url_file = base / "master" / "master.url"
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                 "master URL", proc=master)
        url = url_file.read_text().strip()
        env = dict(os.environ, SLAPFED_MASTER=url, SLAPFED_REQUESTER="ops",
                   SLAPFED_CONFIG=str(base / "no-config.json"))
        for k, (computer, (host, lan)) in enumerate(NODES.items()):
            root = base / computer
            # addresses of this run's own, so that two suites on one machine never collide
            cli("node", "format", "--master", url, "--computer", computer, "--partitions", "2",
                "--root", str(root), "--host", host, "--lan", lan, "--address-base",
                f"127.{20 + os.getpid() % 200}.{210 + k}.1", env=env)
            roots.append(root)
            procs.append(Proc(slapfed_argv("node", "run", "--root", str(root), "--interval",
                                           "0.3"), base / f"{computer}.log"))
            cli("supply", IDLE, "--computer", computer, env=env)
        yield env
    finally:
        for p in reversed(procs):
            p.stop()
        for root in roots:
            if (root / "node.json").exists():
                subprocess.run(slapfed_argv("node", "stop", "--root", str(root)),
                               capture_output=True, timeout=60)


def where(env, reference) -> dict:
    return json.loads(cli("topology", "where", reference, "--json", env=env).stdout)


def request(env, reference, *sla):
    args = ["request", reference, IDLE, "--wait", "120", "--json"]
    for item in sla:
        args += ["--sla", item]
    return json.loads(cli(*args, env=env).stdout)


def test_requests_land_where_their_sla_says(federation):
    env = federation
    # a computer's country and continent came from the topology file, not from the node
    db = request(env, "db", "computer_guid=n-par1")
    assert db["status"]["state"] == "started"
    found = where(env, "db")
    assert (found["computer"], found["host"], found["lan"], found["country"],
            found["continent"]) == ("n-par1", "par-h1", "par", "fr", "europe")

    request(env, "web", "same_lan=db", "different_host=db")
    assert where(env, "web")["computer"] == "n-par2"

    request(env, "replica", "different_continent=db")
    assert (where(env, "replica")["computer"], where(env, "replica")["continent"]) == \
        ("n-tyo", "asia")

    request(env, "backup", "different_country=db", "continent=europe")
    assert (where(env, "backup")["computer"], where(env, "backup")["country"]) == ("n-ber", "de")

    request(env, "cache", "same_host=db")
    assert where(env, "cache")["computer"] == "n-par1"

    # nothing fits: refused with the reason per plugin, nothing written
    done = cli("request", "mirror", IDLE, "--sla", "same_continent=replica",
               "--sla", "different_host=replica", env=env, check=False)
    assert done.returncode == Exit.CONFLICT, done.stderr
    assert "no partition fits mirror" in done.stderr and "different_host(replica)" in done.stderr
    listed = json.loads(cli("list", "--json", env=env).stdout)["instances"]
    assert "mirror" not in {i["reference"] for i in listed}

    # the explanation of a decision writes nothing either
    explained = json.loads(cli("request", "probe", IDLE, "--sla", "lan=ber", "--dry-run",
                               "--json", env=env).stdout)
    assert (explained["placed"], explained["computer"]) == (True, "n-ber")
    listed = json.loads(cli("list", "--json", env=env).stdout)["instances"]
    assert "probe" not in {i["reference"] for i in listed}

    # an ordered fallback: no computer in Africa, else anywhere
    out = json.loads(cli("request", "anywhere", IDLE, "--sla", "continent=africa",
                         "--sla-fallback", "", "--wait", "120", "--json", env=env).stdout)
    assert out["status"]["state"] == "started"
    assert where(env, "anywhere")["continent"] in ("europe", "asia")

    # every instance runs where `topology where` says, and the tree view shows them all
    shown = cli("topology", "show", env=env).stdout
    for ref in ("db", "web", "replica", "backup", "cache", "anywhere"):
        assert ref in shown
