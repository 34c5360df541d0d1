"""Drill 2: a child master with replicas=1 loses its primary's computer.

A parent master with two real nodes. A child master is requested with replicas=1: its
partition requests its replica (software type "replica" of the same release) as a child
instance, on another computer, with the invitation it publishes as a parameter; the
replica enrols, copies the CA and follows in sync mode. Client processes write to the
child all along; the primary's whole computer is killed (-9: node agent, supervisord,
the child master). One command — `slapfed master promote` on the replica — rebuilds the
service: every acknowledged write is there, and the recovery time (kill -> first write
acknowledged by the promoted replica) is measured. The parent's topology shows the
replica and the epochs."""
import json
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import computer_body, slapfed_cli
from slapfed.client import MasterClient
from slapfed.enrol import enrol
from slapfed.core.sealed import is_sealed
from slapfed.procs import wait_for
from slapfed.sealed_values import opened_connection
from test_failover_drill import acks, writing

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[1]
MASTER_RELEASE = str(REPO / "profiles" / "master" / "software.cfg")
RTO_TARGET = 10.0


def pids_under(path) -> list[int]:
    """PIDs of the processes whose command line names ``path`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if str(path) in cmd:
            found.append(int(entry))
    return found


def kill_computer(ms, computer: str, root) -> None:
    """A computer lost: every process its node root runs (agent, supervisord, services,
    masters) killed -9 by PID, the node agent reaped, none left."""
    victims = pids_under(root)
    assert victims
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    ms.procs.pop(f"node-{computer}").popen.wait(10)
    wait_for(lambda: not pids_under(root), 10, f"{computer}'s processes")


def instance(admin, reference):
    [found] = [i for i in admin.list_instances() if i["reference"] == reference]
    return admin.show(found["id"])


def test_a_child_master_with_a_replica_survives_losing_its_primarys_computer(
        master_set, tmp_path):
    ms = master_set
    ms.start("parent", "--name", "root")
    admin = ms.admin("parent")
    roots = {c: ms.node("parent", c, partitions=2, address_octet=octet)
             for c, octet in (("node-a", 241), ("node-b", 242))}
    for computer in roots:
        admin.supply(computer, MASTER_RELEASE)
    started = time.monotonic()
    primary = admin.request("child-1", MASTER_RELEASE,
                            parameters={"name": "child-1", "replicas": "1",
                                        "register-with-parent": "true"})
    done = admin.wait_ready(primary["id"], 150)
    assert done["status"]["state"] == "started", done["status"]
    conn = opened_connection(done, ms.tls["key"])      # the credentials, sealed to us
    assert is_sealed(done["connection"]["admin-token"])
    assert conn["replicas"] == "1" and conn["replica-1"] == "child-1-replica-1"

    # the replica: a child instance of the primary, on the other computer, paired by the
    # invitation the primary published
    wait_for(lambda: any(i["reference"] == "child-1-replica-1"
                         for i in admin.list_instances()), 60, "the replica's request")
    replica = instance(admin, "child-1-replica-1")
    replica = admin.wait_ready(replica["id"], 120)
    deployed = time.monotonic() - started
    assert replica["status"]["state"] == "started", replica["status"]
    assert replica["parent"] == primary["id"] and replica["software_type"] == "replica"
    assert replica["placement"]["computer"] != done["placement"]["computer"]
    # its invitation reached it sealed to its partition: the parent holds no clear copy
    assert is_sealed(replica["parameters"]["invitation"])
    assert is_sealed(done["connection"]["replica-1-invitation"])
    assert conn["replica-1-invitation"] not in json.dumps(admin.show(replica["id"]))
    assert "different_host" in json.dumps(replica["sla"]) and "child-1" in json.dumps(
        replica["sla"])
    replica_url = replica["connection"]["url"]
    assert replica["connection"]["role"] == "replica"

    # the parent's topology shows the child master's replica, where it runs
    from slapfed.topology import graph, report
    from slapfed.topology.files import EMPTY
    live = admin.topology()["live"]
    [child] = live["masters"]
    assert [(r["name"], r["computer"], r["url"]) for r in child["replicas"]] == [
        ("child-1-replica-1", replica["placement"]["computer"], replica_url)]
    assert (f"   replica child-1-replica-1  {replica_url}  [instance {replica['id']} on "
            f"{replica['placement']['computer']}, started]"
            in report.tree_text(report.tree(graph.build(EMPTY, live))))

    # the owner enrols with the published one-time token; the replica follows in sync
    owner_dir = tmp_path / "owner"
    owner = enrol(conn["url"], conn["ca-certificate"], conn["admin-token"], owner_dir)
    tls = {"ca": str(owner_dir / "ca.crt"), "cert": str(owner_dir / "identity.crt"),
           "key": str(owner_dir / "identity.key")}
    wait_for(lambda: [(r["name"], r["mode"]) for r in owner.replication_status()["replicas"]]
             == [("child-1-replica-1", "sync")], 30, "the replica to register")
    owner.register_computer(computer_body("ledger", partitions=1))

    lost = done["placement"]["computer"]
    env = dict(os.environ, SLAPFED_CONFIG=str(tmp_path / "owner.json"))
    env.pop("SLAPFED_MASTER", None)
    slapfed_cli("config", "set", "--master", replica_url, "--identity", str(owner_dir),
                env=env)
    # client processes write to the child all along
    with writing(tmp_path, tls, conn["url"], replica_url, 2) as ack_files:
        wait_for(lambda: len(acks(ack_files)) >= 20, 30, "the writers to write")
        # the primary's computer is lost: everything of its node killed (-9)
        killed = time.time()
        kill_computer(ms, lost, roots[lost])
        # one command
        dead_at = time.time()
        promoted = json.loads(slapfed_cli("master", "promote", "--master", replica_url,
                                          "--json", env=env).stdout)
        assert promoted["epoch"] == 2 and promoted["name"] == "child-1-replica-1"
        promoted_at = time.time()
        wait_for(lambda: any(a[2] == replica_url for a in acks(ack_files)), 30,
                 "a write acknowledged by the promoted replica")
        rto = min(a[0] for a in acks(ack_files) if a[2] == replica_url) - killed
        print(f"\nchild master deployed with its replica in {deployed:.1f}s; RTO (computer "
              f"killed -> first write acknowledged by the promoted replica): {rto:.2f}s "
              f"(all dead {dead_at - killed:.2f}s, promoted {promoted_at - killed:.2f}s after "
              f"the kill)")
        assert rto <= RTO_TARGET, rto
        wait_for(lambda: len([a for a in acks(ack_files) if a[2] == replica_url]) >= 5, 30,
                 "writes on the promoted replica")

    # nothing acknowledged is lost (sync: the replica held each write before its answer)
    new = MasterClient(replica_url, **tls)
    held = {s["url"] for s in new.show_computer("ledger")["software"]}
    acknowledged = {a[1] for a in acks(ack_files)}
    assert acknowledged <= held, sorted(acknowledged - held)[:5]
    assert new.health()["role"] == "primary" and new.health()["epoch"] == 2
    # the promoted replica's own topology says its epoch and who holds it
    rep_live = new.topology()["live"]["replication"]
    assert rep_live["role"] == "primary" and rep_live["epoch"] == 2
    assert [e["primary"] for e in rep_live["epochs"]] == ["child-1-replica-1"]
