"""Zero knowledge in recursion, end to end, all real processes: a parent master (mutual
TLS) with two real nodes runs, for alice, a child master with one replica
(profiles/master replicas=1, its own FileStorage), a second child master on its ZEO
server (profiles/master's default), and a nested node (profiles/node) attached to the
second child, its token given with `request --secret-file`. Known secrets: both
children's admin tokens, the replica's invitation, the nested node's token. alice reads
every one of them (`slapfed show` opens them; she enrols with the tokens; the nested
node registers with its token; the replica follows its primary), while no master's
FileStorage, the ZEO server's file, a backup of the parent, nor any log holds one, in
clear, base64 or hex."""
import json
import os
from pathlib import Path

import pytest
from conftest import extra_node, mtls_master_and_node, slapfed_cli
from test_zk_e2e import cli_json, scan

from slapfed.client import MasterClient
from slapfed.core.sealed import is_sealed
from slapfed.procs import wait_for

REPO = Path(__file__).resolve().parents[1]
MASTER = str(REPO / "profiles" / "master" / "software.cfg")
NODE = str(REPO / "profiles" / "node" / "software.cfg")
HOST, OTHER = "zkr-a", "zkr-b"

pytestmark = pytest.mark.timeout(400)


def storage_files(*dirs) -> list[Path]:
    """The FileStorage files (data, index, lock, temporary) under ``dirs``."""
    return sorted(p for d in dirs for p in Path(d).rglob("*.fs*") if p.is_file())


def partition_dir(root: Path, inst: dict) -> Path:
    return root / "partitions" / inst["placement"]["partition"]


def test_no_master_holds_the_credentials_of_the_masters_and_nodes_it_runs(tmp_path):
    base = tmp_path
    with mtls_master_and_node(base, HOST, partitions=3, address_octet=226) as fed, \
            extra_node(fed, OTHER, partitions=1, address_octet=227) as other:
        env, admin = fed["env"], fed["admin"]
        for release in (MASTER, NODE):
            admin.supply(HOST, release)
        admin.supply(OTHER, MASTER)

        # a child master with a replica, and one on ZEO; alice reads their credentials
        slapfed_cli("request", "zkc", MASTER, "--param", "name=zkc", "--param", "replicas=1",
                    "--sla", f"computer_guid={HOST}", env=env)
        zkz = cli_json("request", "zkz", MASTER, "--param", "name=zkz", "--sla",
                       f"computer_guid={HOST}", "--wait", "150", env=env)
        done = fed["client"].wait_ready(fed["client"].find("zkc")["id"], 150)
        assert done["status"]["state"] == "started", done["status"]
        zkc = cli_json("show", "zkc", env=env)
        assert zkz["connection"]["storage"].startswith("zeo://")
        assert zkc["connection"]["storage"] == "file"
        assert zkc["sealed"] == ["admin-token", "replica-1-invitation"]
        assert zkz["sealed"] == ["admin-token"]
        invitation = zkc["connection"]["replica-1-invitation"]
        known = {"zkc admin-token": zkc["connection"]["admin-token"],
                 "zkz admin-token": zkz["connection"]["admin-token"],
                 "invitation": invitation,
                 "invitation token": json.loads(invitation)["token"]}
        assert all(v and not is_sealed(v) for v in known.values())
        raw = fed["client"].find("zkc")
        assert all(is_sealed(raw["connection"][k])
                   for k in ("admin-token", "replica-1-invitation"))

        # the replica got its invitation sealed to its partition, opened it and follows
        replica = wait_for(lambda: next((i for i in admin.list_instances()
                                         if i["reference"] == "zkc-replica-1"), None),
                           60, "the replica's request")
        replica = admin.wait_ready(replica["id"], 120)
        assert replica["status"]["state"] == "started", replica["status"]
        assert replica["placement"]["computer"] == OTHER
        assert is_sealed(replica["parameters"]["invitation"])
        assert replica["revision"] == 2          # placed pending, then sealed: no more
        replica_url = replica["connection"]["url"]

        # alice enrols at both children with the opened tokens (`slapfed config enrol`)
        owners = {}
        for name, inst in (("zkc", zkc), ("zkz", zkz)):
            ca_file = base / f"{name}-ca.crt"
            ca_file.write_text(inst["connection"]["ca-certificate"])
            owner_env = dict(env, SLAPFED_CONFIG=str(base / f"{name}-owner.json"))
            given = ["--token", inst["connection"]["admin-token"]]
            if name == "zkz":                    # or from a file, never in the argv
                (base / "zkz.token").write_text(inst["connection"]["admin-token"] + "\n")
                given = ["--token-file", str(base / "zkz.token")]
            slapfed_cli("config", "enrol", "--master", inst["connection"]["url"], "--ca",
                        str(ca_file), *given, "--out", str(base / f"{name}-owner"),
                        env=owner_env)
            d = base / f"{name}-owner"
            owners[name] = MasterClient(inst["connection"]["url"], ca=str(d / "ca.crt"),
                                        cert=str(d / "identity.crt"),
                                        key=str(d / "identity.key"))
            assert owners[name].whoami()["principal"] == "admin/owner"
        wait_for(lambda: [r["name"] for r in owners["zkc"].replication_status()["replicas"]]
                 == ["zkc-replica-1"], 30, "the replica to register with its primary")

        # the primary's buildout runs again: its replica's sealed invitation is sent
        # unchanged (no new revision), and the enrolled owner is published no token. (The
        # primary itself was redeployed whenever its replica published new connection
        # parameters, as a requester is: its revision is past its first one already.)
        before = fed["client"].find("zkc")["revision"]
        assert before >= 2
        again = cli_json("request", "zkc", MASTER, "--param", "name=zkc", "--param",
                         "replicas=1", "--param", "admin-token-ttl=901", "--sla",
                         f"computer_guid={HOST}", "--wait", "120", env=env)
        assert again["revision"] > before and again["connection"]["admin-token"] == ""
        assert admin.show(replica["id"])["revision"] == 2

        # a nested node for zkz, its token a secret parameter read from a file
        token = owners["zkz"].create_token("zkn")["token"]
        known["nested node token"] = token
        token_file = base / "zkn.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        slapfed_cli("request", "zkn", NODE, "--sla", f"computer_guid={HOST}",
                    "--param", f"master-url={zkz['connection']['url']}",
                    "--param", f"ca={zkz['connection']['ca-certificate']}",
                    "--param", "computer-id=zkn", "--param", "partitions=1",
                    "--param", f"address-base=127.{20 + os.getpid() % 200}.228.1",
                    "--param", "interval=0.3", "--secret-file", f"token={token_file}",
                    "--wait", "150", env=env)
        zkn = fed["client"].find("zkn")
        assert is_sealed(zkn["parameters"]["token"])
        wait_for(lambda: any(c["id"] == "zkn" for c in owners["zkz"].list_computers()), 60,
                 "the nested node to register with zkz")

        # what every master keeps, and every log, holds none of the values
        slapfed_cli("master", "backup", "--data", str(base / "master"), "--to",
                    str(base / "backup"), env=fed["admin_env"])
        where = {"zkc": partition_dir(fed["root"], raw),
                 "zkz": partition_dir(fed["root"], fed["client"].find("zkz")),
                 "replica": partition_dir(other["root"], replica)}
        zeo = storage_files(where["zkz"] / "srv" / "master" / "zeo")
        stores = storage_files(base / "master", where["zkc"] / "srv" / "master",
                               where["replica"] / "srv" / "master") + zeo
        assert zeo and len(stores) >= 4 + len(zeo), stores
        logs = [base / "master.log", base / "node.log", base / f"{OTHER}.log",
                fed["root"] / "var", other["root"] / "var"]
        assert list((fed["root"] / "var" / "services").rglob("*.log")), \
            "the child masters' and the nested node's service logs are scanned"
        assert scan([base / "master", base / "backup", *stores, *logs],
                    list(known.values())) == []
        # the scan finds a value where one is: the primary's own invitation file
        assert scan([where["zkc"] / "srv" / "master" / "replicas"], [invitation]) != []
        follower = MasterClient(replica_url, ca=owners["zkc"].verify, cert=owners["zkc"].cert[0],
                                key=owners["zkc"].cert[1])
        assert follower.health()["role"] == "replica"
