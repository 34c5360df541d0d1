"""A stock SlapOS node (slapos.core 1.26.1's slapgrid: ``slapos node software``,
``instance`` and ``report``) against a real slapfed master over mutual TLS, with its
computer certificate from slapfed's CA, on the trivial release tests/slapos_node/ (whose
instance reports usage as SlapOS instances do: recorded against it).

What a stock node needs, and this test provides: run as root (slapgrid then drops to the
owner of the software root and of each partition directory, which must not be root:
one system user, made by slapfed.node.layout.ensure_user), partition directories 0750,
a pid file path of its own (the default is under /opt/slapos), no ``buildout`` option
(slapgrid then runs buildout from the python it runs on, with that python's packages,
so the release's recipe, slapfed:file, is found), and tests/slapos_node/run_slapos.py
(slapos.core calls importlib.resources.files() with module names, which only Python
3.12 accepts). Its supervisord is stopped by its pid file at the end.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.node.layout import ensure_user, partition_user
from slapfed.procs import stop_pid

slap_lib = pytest.importorskip("slapos.slap")
from slapos.util import dumps  # noqa: E402

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(os.geteuid() != 0, reason="slapgrid drops privileges: root")]

HERE = Path(__file__).resolve().parent
RELEASE = str(HERE / "slapos_node" / "software.cfg")
RUN_SLAPOS = str(HERE / "slapos_node" / "run_slapos.py")
COMPUTER = "slapgrid-node"


def slapos(cfg: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, RUN_SLAPOS, "node", *args, "--cfg", str(cfg),
                           "--pidfile", str(cfg.parent / f"{args[0]}.pid")],
                          capture_output=True, text=True, timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return out


def test_a_stock_slapgrid_installs_instantiates_and_destroys(master_server, tmp_path):
    data = tmp_path / "master"
    url = master_server(data=data, secure=True)
    ca = CertificateAuthority(data / "ca")
    made = {who: ca.issue_with_new_key(identity, tmp_path / who)
            for who, identity in (("node", ids.computer(COMPUTER)), ("root", ids.admin("root")),
                                  ("alice", ids.person("alice")))}

    def connect(who):
        conn = slap_lib.slap()
        conn.initializeConnection(url + "/slap/", key_file=str(made[who].key_path),
                                  cert_file=str(made[who].cert_path))
        return conn

    node_dir = tmp_path / "node"
    software_root, instance_root = node_dir / "soft", node_dir / "inst"
    user = partition_user(COMPUTER, 0)
    ensure_user(user, str(instance_root))
    partition = instance_root / "slappart0"
    (node_dir / "certificates").mkdir(parents=True)
    for d in (software_root, instance_root, partition):
        d.mkdir(parents=True)
        os.chown(d, *_ids_of(user))
    partition.chmod(0o750)
    for f in (made["node"].key_path, made["node"].cert_path):
        f.chmod(0o644)                 # the partition's buildout reads them too
    made["node"].key_path.parent.chmod(0o755)
    cfg = node_dir / "slapos.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {url}/slap/\ncomputer_id = {COMPUTER}\n"
                   f"software_root = {software_root}\ninstance_root = {instance_root}\n"
                   f"key_file = {made['node'].key_path}\ncert_file = {made['node'].cert_path}\n"
                   f"certificate_repository_path = {node_dir / 'certificates'}\n"
                   "[networkcache]\n")
    supervisord_pid = instance_root / "var" / "run" / "supervisord.pid"
    try:
        node, alice = connect("node"), connect("alice")
        node.registerComputer(COMPUTER).updateConfiguration(dumps({
            "reference": COMPUTER, "partition_list": [{
                "reference": "slappart0",
                "address_list": [{"addr": "127.0.43.1", "netmask": "255.0.0.0"}]}]}))
        connect("root").registerSupply().supply(RELEASE, COMPUTER)
        order = alice.registerOpenOrder()
        order.request(RELEASE, "grid-1", filter_kw={"computer_guid": COMPUTER})

        slapos(cfg, "software", "--all")
        installed = list(software_root.glob("*/installed.txt"))
        assert [p.read_text().strip() for p in installed] == ["installed"]
        admin = _api(url, data, made["root"])
        assert admin(f"/computers/{COMPUTER}")["software"][0]["status"] == "installed"

        slapos(cfg, "instance", "--all")
        assert (partition / "hello.txt").read_text().strip() == "hello from a stock slapgrid"
        # the partition got its own certificate from slapfed's CA, as that partition
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(
            (node_dir / "certificates" / "slappart0.crt").read_bytes())
        assert ids.identity_of(cert) == ids.partition(COMPUTER, "slappart0")
        shown = admin("/instances?reference=grid-1")["instances"][0]
        assert shown["status"]["state"] == "started"

        # the instance's usage script reports; the node sends the journal (useComputer)
        slapos(cfg, "report")
        usage = admin(f"/instances/{shown['id']}/usage")
        assert [(u["resource"], u["quantity"]) for u in usage["totals"]] == \
            [("x-cpu-consumption", 12.5)]
        assert usage["days"][0]["where"] == {"kind": "computer", "name": COMPUTER}

        order.request(RELEASE, "grid-1", state="destroyed")
        slapos(cfg, "instance", "--all")
        slapos(cfg, "report")
        assert not (partition / "hello.txt").exists()          # wiped by the node
        partitions = admin(f"/computers/{COMPUTER}")["partitions"]
        assert [p["instance"] for p in partitions] == [None]    # and freed by the master
    finally:
        if supervisord_pid.exists():
            stop_pid(int(supervisord_pid.read_text().strip()), 15)


def _ids_of(user):
    import pwd
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _api(url, data, files):
    def get(path):
        resp = requests.get(f"{url}/api/v1{path}", timeout=10,
                            verify=str(data / "ca" / "ca.crt"),
                            cert=(str(files.cert_path), str(files.key_path)))
        resp.raise_for_status()
        return resp.json()
    return get
