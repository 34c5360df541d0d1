"""Drill: a master's disk is lost and it is restored from its backup.

A real master over mutual TLS, a real node enrolled with a one-time token running a real
service (profiles/hello), a real peer master; back up; stop the master and delete its
data directory; restore into a new directory; start it on the same host:port. The node
comes back with its existing certificate, its service keeps its PID, nothing is
duplicated, a new request is served, the peer credentials still work. Also: scheduled
backups of a running master (waited for on the manifest)."""
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.client import MasterClient
from slapfed.peering.peers import client_for
from slapfed.procs import Proc, slapfed_argv, wait_for
from slapfed.store import backup as bk

REPO_ROOT = Path(__file__).resolve().parents[1]
HELLO = str(REPO_ROOT / "profiles" / "hello" / "software.cfg")
COMPUTER = "drill-node"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def cli(*args, env=None):
    done = subprocess.run(slapfed_argv(*args), capture_output=True, text=True, env=env,
                          timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"slapfed {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


def get(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def start_master(procs, data, log, *args, listen="127.0.0.1:0"):
    url_file = data / "master.url"
    if url_file.exists():
        url_file.unlink()
    proc = Proc(slapfed_argv("master", "serve", "--data", str(data), "--listen", listen,
                             *args), log)
    procs.append(proc)
    wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30, "master URL",
             proc=proc)
    return proc, url_file.read_text().strip()


def identity_env(base, ca, who, identity, url):
    made = ca.issue_with_new_key(identity, base / who)
    env = dict(os.environ, SLAPFED_CONFIG=str(base / f"{who}.json"))
    env.pop("SLAPFED_MASTER", None)
    cli("config", "set", "--master", url, "--identity", str(base / who), env=env)
    return env, {"ca": str(made.ca_path), "cert": str(made.cert_path),
                 "key": str(made.key_path)}


def test_restore_drill_the_node_and_peer_come_back_nothing_is_duplicated(tmp_path):
    base = tmp_path
    data, repo, root = base / "master", base / "repo", base / "node"
    procs = []
    try:
        master, url = start_master(procs, data, base / "master.log")
        assert url.startswith("https://")
        ca = CertificateAuthority(data / "ca")
        env, alice_tls = identity_env(base, ca, "alice", ids.person("alice"), url)
        admin_env, admin_tls = identity_env(base, ca, "root", ids.admin("root"), url)
        # a peer master, paired (its credentials live in DATA/peers/)
        _, peer_url = start_master(procs, base / "peer", base / "peer.log", "--name", "bee")
        peer_ca = CertificateAuthority(base / "peer" / "ca")
        peer_env, _ = identity_env(base, peer_ca, "peer-root", ids.admin("root"), peer_url)
        cli("peer", "invite", "master", "--out", str(base / "invitation.json"), env=peer_env)
        cli("peer", "add", str(base / "invitation.json"), env=admin_env)
        # a node, enrolled with a one-time token, running one hello service
        cli("node", "format", "--master", url, "--computer", COMPUTER, "--partitions", "4",
            "--root", str(root), "--address-base", f"127.{20 + os.getpid() % 200}.203.1",
            "--token", ca.token_for(COMPUTER), "--ca", str(ca.directory / "ca.crt"), env=env)
        procs.append(Proc(slapfed_argv("node", "run", "--root", str(root), "--interval", "0.3"),
                          base / "node.log"))
        cli("supply", HELLO, "--computer", COMPUTER, env=admin_env)
        a = json.loads(cli("request", "hello-a", HELLO, "--wait", "120", "--json",
                           env=env).stdout)
        assert a["status"]["state"] == "started"
        service = a["connection"]["url"]
        pid = get(service)["pid"]
        admin = MasterClient(url, **admin_tls)
        before_partitions = {p["id"]: p["instance"]
                             for p in admin.show_computer(COMPUTER)["partitions"]}

        backup = json.loads(cli("master", "backup", "--data", str(data), "--to", str(repo),
                                "--json").stdout)
        assert backup["kind"] == "full" and backup["tid"]
        cli("master", "verify-backup", "--from", str(repo))

        # the disaster: the master stops and its data directory is gone
        master.stop()
        shutil.rmtree(data)
        new = base / "restored"
        restored = json.loads(cli("master", "restore", "--from", str(repo), "--data",
                                  str(new), "--json").stdout)
        assert restored["url"] == url and restored["tid"] == backup["tid"]
        listen = url.split("://", 1)[1]
        _, url2 = start_master(procs, new, base / "restored.log", listen=listen)
        assert url2 == url

        # the node reconnects with its existing certificate: it is served its desired
        # state and its next report (a new instance started) is accepted
        alice = MasterClient(url, **alice_tls)
        b = json.loads(cli("request", "hello-b", HELLO, "--wait", "120", "--json",
                           env=env).stdout)
        assert b["status"]["state"] == "started"
        assert get(b["connection"]["url"])["pid"] != pid
        assert get(service)["pid"] == pid             # the old service was never restarted
        instances = alice.list_instances()
        assert sorted(i["reference"] for i in instances) == ["hello-a", "hello-b"]
        a_after = alice.find("hello-a")
        assert a_after["id"] == a["id"] and a_after["placement"] == a["placement"]
        assert a_after["status"]["state"] == "started"
        partitions = {p["id"]: p["instance"]
                      for p in MasterClient(url, **admin_tls).show_computer(COMPUTER)
                      ["partitions"]}
        b_partition = b["placement"]["partition"]
        assert before_partitions[b_partition] is None
        assert partitions == before_partitions | {b_partition: b["id"]}
        # the peer credentials came back with the rest: the peer still knows this master
        assert [p["name"] for p in MasterClient(url, **admin_tls).list_peers()] == ["bee"]
        assert client_for(str(new / "peers" / "bee"), peer_url).summary()
    finally:
        for p in reversed(procs):
            p.stop()
        if (root / "node.json").exists():
            subprocess.run(slapfed_argv("node", "stop", "--root", str(root)),
                           capture_output=True, timeout=60)


def test_scheduled_backups_of_a_running_master(tmp_path):
    data, repo = tmp_path / "master", tmp_path / "repo"
    procs = []
    try:
        start_master(procs, data, tmp_path / "master.log", "--insecure-http",
                     "--start-zeo", "--backup-to", str(repo), "--backup-every", "1")
        wait_for(lambda: len(bk.manifests(repo)) >= 2, 60, "two scheduled backups",
                 proc=procs[0])
        docs = bk.manifests(repo)
        assert docs[0]["kind"] == "full" and docs[1]["parent"] == docs[0]["id"]
        assert bk.verify(repo, every=True)
        got = bk.restore(repo, tmp_path / "restored")
        assert got.tid == docs[-1]["zodb"]["tid"]
        # a pack of the running master goes through its ZEO server
        packed = json.loads(cli("master", "pack", "--data", str(data), "--keep", "0",
                                "--json").stdout)
        assert packed["via"] == "zeo"
    finally:
        for p in reversed(procs):
            p.stop()
