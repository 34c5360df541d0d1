"""Recursion end to end, three levels of masters on one machine, all real processes:
root master + node → a child master (profiles/master) → a node for the child
(profiles/node, enrolled with the child's token) → the sample service from the child
answers; then the same one level deeper (a grandchild, requested from the child, with a
node requested from the child). Destroying the child tears down everything below it."""
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.client import MasterClient
from slapfed.enrol import enrol as slapfed_enrol
from slapfed.procs import Proc, pid_alive, slapfed_argv, wait_for
from slapfed.sealed_values import opened_connection

REPO = Path(__file__).resolve().parents[1]
MASTER = str(REPO / "profiles" / "master" / "software.cfg")
NODE = str(REPO / "profiles" / "node" / "software.cfg")
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")
ROOT_NODE = "root-node"

pytestmark = pytest.mark.timeout(900)


def enrol(parent: MasterClient, inst: dict, where: Path) -> MasterClient:
    """A client of a child master, as its owner, from its published one-time token (sealed
    to the requester: opened with the key of ``parent``'s client)."""
    connection = opened_connection(inst, parent.cert[1])
    return slapfed_enrol(connection["url"], connection["ca-certificate"],
                         connection["admin-token"], where)


def nested_pid_files(base: Path) -> list[Path]:
    return sorted(base.rglob("supervisord.pid"))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("three-levels")
    procs, node_root = [], base / "node"
    try:
        master = Proc(slapfed_argv("master", "serve", "--data", str(base / "root"), "--name",
                                   "root", "--listen", "127.0.0.1:0", "--peer-retry-max", "2"),
                      base / "root.log")
        procs.append(master)
        url_file = base / "root" / "master.url"
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                 "root master URL", proc=master)
        url = url_file.read_text().strip()
        ca = CertificateAuthority(base / "root" / "ca")
        made = ca.issue_with_new_key(ids.admin("ops"), base / "ops")
        admin = MasterClient(url, ca=str(made.ca_path), cert=str(made.cert_path),
                             key=str(made.key_path))
        subprocess.run(slapfed_argv(
            "node", "format", "--master", url, "--computer", ROOT_NODE, "--partitions", "3",
            "--root", str(node_root), "--address-base", f"127.{20 + os.getpid() % 200}.221.1",
            "--token", ca.token_for(ROOT_NODE), "--ca", str(ca.directory / "ca.crt")),
            check=True, capture_output=True, timeout=120)
        procs.append(Proc(slapfed_argv("node", "run", "--root", str(node_root), "--interval",
                                       "0.3"), base / "node.log"))
        for release in (MASTER, NODE):
            admin.supply(ROOT_NODE, release)
        yield {"base": base, "admin": admin, "node_root": node_root}
    finally:
        for p in reversed(procs):
            p.stop()
        if (node_root / "node.json").exists():
            subprocess.run(slapfed_argv("node", "stop", "--root", str(node_root)),
                           capture_output=True, timeout=60)
        for pid_file in nested_pid_files(base):   # nested supervisords left by a failure
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            if pid_alive(pid):
                from slapfed.procs import stop_pid
                stop_pid(pid, 10)


def level(parent: MasterClient, host_computer: str, name: str, octet: int, base: Path,
          partitions: int, releases: tuple) -> dict:
    """From ``parent``: request master ``name`` and a node for it on ``host_computer``;
    enrol as the new master's owner; supply ``releases`` to its node; request hello there.
    Returns the new master's client, its instances at the parent and hello's URL."""
    inst = parent.request(name, MASTER, parameters={"name": name,
                                                    "register-with-parent": "true"},
                          sla={"computer_guid": host_computer})
    done = parent.wait_ready(inst["id"], 180)
    assert done["status"]["state"] == "started", done["status"]
    child = enrol(parent, done, base / f"{name}-owner")
    assert child.whoami()["principal"] == "admin/owner"

    computer = f"{name}-node"
    token = child.create_token(computer)["token"]
    node = parent.request(f"{name}-node", NODE, sla={"computer_guid": host_computer},
                          parameters={"master-url": done["connection"]["url"],
                                      "token": token, "ca": done["connection"]["ca-certificate"],
                                      "computer-id": computer, "partitions": str(partitions),
                                      "address-base": f"127.{20 + os.getpid() % 200}.{octet}.1",
                                      "interval": "0.3"})
    node = parent.wait_ready(node["id"], 180)
    assert node["status"]["state"] == "started", node["status"]
    wait_for(lambda: any(c["id"] == computer for c in child.list_computers()), 60,
             f"{computer} to register with {name}")

    for release in (HELLO,) + releases:
        child.supply(computer, release)
    hello = child.request(f"hello-{name}", HELLO, parameters={"greeting": f"hi from {name}"},
                          sla={"computer_guid": computer})
    hello = child.wait_ready(hello["id"], 180)
    assert hello["status"]["state"] == "started", hello["status"]
    with urllib.request.urlopen(hello["connection"]["url"], timeout=10) as resp:
        assert json.loads(resp.read())["greeting"] == f"hi from {name}"
    return {"client": child, "instance": done, "node": node, "computer": computer,
            "hello_url": hello["connection"]["url"]}


def test_three_levels_of_masters_each_serving_the_sample_service(root):
    base, admin = root["base"], root["admin"]
    # level 1: the root's child, and a node for it, both on the root's node
    child = level(admin, ROOT_NODE, "child", 222, base, partitions=3, releases=(MASTER, NODE))
    assert child["instance"]["provenance"] == ["root"]
    assert [m["name"] for m in admin.topology()["live"]["masters"]] == ["child"]

    # the child became a peer of the root by itself: the root delegates to it on request
    def paired():
        peers = {p["name"]: p for p in admin.list_peers()}
        return peers.get("child", {}).get("paired")
    wait_for(paired, 60, "the root to pair with its child master")
    peer = admin.show_peer("child")
    assert (peer["origin"], peer["principal"], peer["trust"]) == ("child", "master/root",
                                                                  "delegate")
    far = admin.request("hello-far", HELLO, parameters={"greeting": "hi through child"},
                        sla={"master": "child"})
    far = admin.wait_ready(far["id"], 180)
    assert far["status"]["state"] == "started", far["status"]
    assert far["delegation"]["peer"] == "child"
    with urllib.request.urlopen(far["connection"]["url"], timeout=10) as resp:
        assert json.loads(resp.read())["greeting"] == "hi through child"
    at_child = [i for i in child["client"].list_instances() if i["requester"] == "master/root"]
    assert [i["reference"] for i in at_child] == ["root:admin/ops:hello-far"]
    admin.destroy(far["id"])
    wait_for(lambda: admin.show(far["id"])["status"]["state"] == "destroyed", 120,
             "the delegated hello to be destroyed at the child")

    # level 2: the child's child, and a node for it, on the child's own (nested) node
    grand = level(child["client"], child["computer"], "grandchild", 223, base, partitions=2,
                  releases=())
    assert grand["instance"]["provenance"] == ["root", "child"]
    assert [m["name"] for m in child["client"].topology()["live"]["masters"]] == ["grandchild"]

    # destroying the child (and its node) at the root tears everything below down
    root_part_dirs = [root["node_root"] / "partitions" / i["placement"]["partition"]
                      for i in (child["instance"], child["node"])]
    nested = [int(p.read_text()) for p in nested_pid_files(base) if
              any(str(d) in str(p) for d in root_part_dirs)]
    assert nested, "nested supervisords run below the root's partitions"
    for inst in (child["node"], child["instance"]):
        admin.destroy(inst["id"])
    for inst in (child["node"], child["instance"]):
        wait_for(lambda: admin.show(inst["id"])["status"]["state"] == "destroyed", 120,
                 f"{inst['reference']} to be destroyed")
    wait_for(lambda: not any(pid_alive(p) for p in nested), 30,
             "every nested supervisord to stop")
    for url in (child["hello_url"], grand["hello_url"]):
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=3)
    comp = admin.show_computer(ROOT_NODE)
    assert all(p["instance"] is None for p in comp["partitions"])
    assert admin.topology()["live"]["masters"] == []
    assert "child" not in {p["name"] for p in admin.list_peers()}   # forgotten with it
    # nothing that ran below the destroyed partitions is left running (a nested
    # supervisord killed after its stop timeout would orphan its services)
    from slapfed.node.leftovers import processes_under
    left = [pid for d in root_part_dirs for pid in processes_under(str(d))]
    assert left == [], f"processes left under destroyed partitions: {left}"
