"""The real slapos.core client library (slapos.slap, from the test extras) drives a real
slapfed master process (gunicorn, FileStorage) over mutual TLS with certificates from
slapfed's own CA: a node formats its computer and reads it, an admin supplies, a person
requests, the node publishes connection parameters as an instance would, the person sees
them, destroys, and the partition is freed. Then the same in development mode over HTTP.
"""
import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority

slap_lib = pytest.importorskip("slapos.slap")
from slapos.slap import NotFoundError, ResourceNotReady  # noqa: E402
from slapos.util import dumps  # noqa: E402

SR = "http://releases.invalid/hello/software.cfg"
COMPUTER = "slap-node-1"


def layout(partitions=2):
    return {"reference": COMPUTER, "address": "127.0.0.1", "netmask": "255.0.0.0",
            "partition_list": [
                {"reference": f"slappart{i}", "tap": {"name": f"slaptap{i}"},
                 "address_list": [{"addr": f"127.0.9.{i + 1}", "netmask": "255.0.0.0"}]}
                for i in range(partitions)]}


def connect(url, files=None):
    conn = slap_lib.slap()
    if files is None:
        conn.initializeConnection(url + "/slap/")
    else:
        conn.initializeConnection(url + "/slap/", key_file=str(files.key_path),
                                  cert_file=str(files.cert_path))
    return conn


def secure_master(master_server, tmp_path, *people, serve_args=()):
    """A master over mutual TLS (its data under tmp_path/master, ``serve_args`` added to
    its command line) and certificates from its CA for its node (COMPUTER), its admin
    root, alice and ``people``: (url, data directory, CA, {name: issued files})."""
    data = tmp_path / "master"
    url = master_server(*serve_args, data=data, secure=True)
    ca = CertificateAuthority(data / "ca")
    who = [("node", ids.computer(COMPUTER)), ("root", ids.admin("root")),
           ("alice", ids.person("alice"))] + [(name, ids.person(name)) for name in people]
    return url, data, ca, {name: ca.issue_with_new_key(identity, tmp_path / name)
                           for name, identity in who}


def node_partitions(node):
    return {p.getId(): p for p in node.registerComputer(COMPUTER).getComputerPartitionList()}


def lifecycle(node, admin, person):
    """The SLAP life of one instance, each party with its own connection."""
    node.registerComputer(COMPUTER).updateConfiguration(dumps(layout()))   # slapos node format
    admin.registerSupply().supply(SR, COMPUTER)
    order = person.registerOpenOrder()
    asked = order.request(SR, "web-1", partition_parameter_kw={"port": "8080"},
                          filter_kw={"computer_guid": COMPUTER})
    pid = asked.getId()
    assert asked.getState() == "started"

    computer = node.registerComputer(COMPUTER)
    assert [r.getURI() for r in computer.getSoftwareReleaseList()] == [SR]
    release = computer.getSoftwareReleaseList()[0]
    release.building()
    release.available()
    part = node_partitions(node)[pid]
    assert part.getInstanceParameterDict()["port"] == "8080"
    assert part.getInstanceGuid() == asked.getInstanceGuid()

    # inside the instance's buildout: a recipe publishes, with the node's certificate and
    # the X-SlapPartition header naming its partition
    inside = node.registerComputerPartition(COMPUTER, pid)
    inside.setConnectionDict({"url": "http://127.0.9.1:8080/"})
    part.started()
    seen = order.request(SR, "web-1", partition_parameter_kw={"port": "8080"},
                         filter_kw={"computer_guid": COMPUTER})
    assert seen.getConnectionParameterDict() == {"url": "http://127.0.9.1:8080/"}

    order.request(SR, "web-1", state="destroyed")
    part = node_partitions(node)[pid]
    assert part.getState() == "destroyed"
    part.stopped()                                   # slapos node report, then the wipe
    part.destroyed()
    freed = node_partitions(node)[pid]
    with pytest.raises(NotFoundError):
        freed.getSoftwareRelease()
    with pytest.raises(ResourceNotReady):
        freed.getInstanceGuid()
    again = order.request(SR, "web-2", filter_kw={"computer_guid": COMPUTER})
    assert again.getId() in node_partitions(node)          # the freed partition serves again
    return pid


def test_stock_slap_client_over_mutual_tls(master_server, tmp_path):
    url, data, ca, made = secure_master(master_server, tmp_path)
    node, admin, alice = (connect(url, made[w]) for w in ("node", "root", "alice"))
    lifecycle(node, admin, alice)

    # anonymous SLAP calls are refused as /api/v1 refuses them
    anonymous = connect(url)
    with pytest.raises(requests.HTTPError) as info:
        anonymous.registerOpenOrder().request(SR, "anon")
    assert info.value.response.status_code == 401
    # the person may not read the node's computer, nor supply
    with pytest.raises(requests.HTTPError) as info:
        alice.registerComputer(COMPUTER).getComputerPartitionList()
    assert info.value.response.status_code == 403
    with pytest.raises(requests.HTTPError) as info:
        alice.registerSupply().supply(SR, COMPUTER)
    assert info.value.response.status_code == 403
    # who requested over SLAP is who the certificate proves, as over /api/v1
    resp = requests.get(f"{url}/api/v1/instances", timeout=10, verify=str(data / "ca" / "ca.crt"),
                        cert=(str(made["alice"].cert_path), str(made["alice"].key_path)))
    assert {i["requester"] for i in resp.json()["instances"]} == {"person/alice"}


def test_stock_slap_client_in_development_mode(master_server):
    url = master_server()
    assert url.startswith("http://")
    conn = connect(url)
    lifecycle(conn, conn, conn)


def _hashed_ca_dir(ca_cert, into):
    """A CA directory as OpenSSL reads one lazily: the certificate under its subject hash."""
    subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca_cert)],
                                  capture_output=True, text=True, check=True).stdout.strip()
    into.mkdir()
    shutil.copy(ca_cert, into / f"{subject_hash}.0")
    return into


def test_stock_slap_client_with_the_ca_store_read_as_a_directory(master_server, tmp_path,
                                                                 monkeypatch):
    """README's environment for stock tools (SSL_CERT_FILE naming no file, SSL_CERT_DIR the
    system's hashed directory): a new TLS context loads no certificate up front (the stock
    client builds one per call and, not verifying the master, never uses the bundle), the
    stock client still speaks mutual TLS, and a download that does verify still does,
    through a certificate looked up in the directory on demand."""
    data = tmp_path / "master"
    url = master_server(data=data, secure=True)
    ca = CertificateAuthority(data / "ca")
    trusted = _hashed_ca_dir(data / "ca" / "ca.crt", tmp_path / "certs")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(trusted))
    fresh = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    fresh.load_default_certs()
    assert fresh.cert_store_stats()["x509"] == 0

    made = {who: ca.issue_with_new_key(identity, tmp_path / who)
            for who, identity in (("node", ids.computer(COMPUTER)), ("root", ids.admin("root")),
                                  ("alice", ids.person("alice")))}
    node, admin, alice = (connect(url, made[w]) for w in ("node", "root", "alice"))
    lifecycle(node, admin, alice)

    # a client that verifies with the default store (urllib, as buildout downloads) finds
    # the master's CA in the directory, and fails against a directory without it
    def fetch_instances():
        context = ssl.create_default_context()
        context.load_cert_chain(made["alice"].cert_path, made["alice"].key_path)
        with urllib.request.urlopen(f"{url}/api/v1/instances", timeout=10,
                                    context=context) as answer:
            return answer.status
    assert fetch_instances() == 200
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "alice"))
    with pytest.raises(urllib.error.URLError) as info:
        fetch_instances()
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


RUN_SLAPOS = Path(__file__).resolve().parent / "slapos_node" / "run_slapos.py"


def _stock_cli(url, files, *args):
    """``slapos ARGS`` (the stock CLI) with a client configuration for ``files``."""
    cfg = files.cert_path.parent / "slapos-client.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = {url}/slap/\n[slapconsole]\n"
                   f"cert_file = {files.cert_path}\nkey_file = {files.key_path}\n")
    done = subprocess.run([sys.executable, str(RUN_SLAPOS), *args, "--cfg", str(cfg)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SSL_CERT_FILE": "/nonexistent/no-bundle"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def test_stock_service_and_computer_list_over_mutual_tls(master_server, tmp_path):
    """`slapos service list` and `slapos computer list`, the stock CLI's commands, read
    slapfed through its HATEOAS navigator: each person sees the trees it requested (not
    the children, not another person's, not destroyed ones), an admin every computer, a
    person none. A search the stock client never writes is refused, naming the query."""
    url, data, ca, made = secure_master(master_server, tmp_path, "bob")
    node, admin, alice, bob = (connect(url, made[w]) for w in ("node", "root", "alice", "bob"))
    # releases named by local paths: the stock CLI looks for SR.json next to one (and
    # finds none) instead of downloading it
    SR = str(tmp_path / "release" / "software.cfg")
    node.registerComputer(COMPUTER).updateConfiguration(dumps(layout(6)))
    admin.registerSupply().supply(SR, COMPUTER)
    admin.registerSupply().supply(SR + "?v=2", COMPUTER)
    alice.registerOpenOrder().request(SR, "web-1", partition_parameter_kw={"port": "8080"},
                                      filter_kw={"computer_guid": COMPUTER})
    alice.registerOpenOrder().request(SR + "?v=2", "db-1", filter_kw={"computer_guid": COMPUTER})
    gone = alice.registerOpenOrder().request(SR, "old", filter_kw={"computer_guid": COMPUTER})
    alice.registerOpenOrder().request(SR, "old", state="destroyed")
    bob.registerOpenOrder().request(SR, "bobs", filter_kw={"computer_guid": COMPUTER})
    # inside web-1's partition, a child: part of alice's tree, not a tree of its own
    web = [p for p in node_partitions(node).values()
           if getattr(p, "_instance_guid", None) and p.getInstanceParameterDict().get(
               "instance_title") == "web-1"][0]
    inside = node.registerComputerPartition(COMPUTER, web.getId())
    inside.request(SR, "default", "web-1-child", filter_kw={"computer_guid": COMPUTER})
    assert gone.getId()

    listed = _stock_cli(url, made["alice"], "service", "list")
    services_seen = json.loads(listed[listed.index("{"):listed.rindex("}") + 1])
    assert services_seen == {"web-1": SR, "db-1": SR + "?v=2"}
    listed = _stock_cli(url, made["bob"], "service", "list")
    assert json.loads(listed[listed.index("{"):listed.rindex("}") + 1]) == {"bobs": SR}
    # slapos service info: the tree's root as the stock CLI prints it
    web_1 = [p for p in node_partitions(node).values() if getattr(p, "_instance_guid", None)
             and p.getInstanceParameterDict().get("instance_title") == "web-1"][0]
    node.registerComputerPartition(COMPUTER, web_1.getId()).setConnectionDict(
        {"url": "http://127.0.9.1:8080/", "note": "<&>"})
    shown = _stock_cli(url, made["alice"], "service", "info", "web-1")
    info = json.loads(shown[shown.index("{"):shown.rindex("}") + 1])
    assert info == {"software-url": SR, "software-type": "default", "shared": False,
                    "requested-state": "start_requested",
                    "instance-parameters": {"port": "8080"},
                    "connection-parameters": {"url": "http://127.0.9.1:8080/", "note": "<&>"},
                    "status": "none"}          # not reported by a node yet
    # the node reports web-1 started at its revision: green; a failing promise: red
    web_1.started()
    info = _stock_cli(url, made["alice"], "service", "info", "web-1")
    assert '"status": "green"' in info
    node.registerComputerPartition(COMPUTER, web_1.getId()).error("boom: the port is taken")
    assert '"status": "red"' in _stock_cli(url, made["alice"], "service", "info", "web-1")
    refused = subprocess.run(
        [sys.executable, str(RUN_SLAPOS), "service", "info", "bobs", "--cfg",
         str(made["alice"].cert_path.parent / "slapos-client.cfg")],
        capture_output=True, text=True, timeout=120)
    assert "bobs" in refused.stdout + refused.stderr and refused.returncode != 0
    assert f"{COMPUTER}" in _stock_cli(url, made["root"], "computer", "list")
    assert COMPUTER in _stock_cli(url, made["root"], "computer", "info", COMPUTER)
    assert "No existing computer." in _stock_cli(url, made["alice"], "computer", "list")

    pair = (str(made["alice"].cert_path), str(made["alice"].key_path))
    base = requests.get(f"{url}/slap/getHateoasUrl", cert=pair, verify=False, timeout=10).text
    assert base == f"{url}/slap/hateoas/"
    for query in ('portal_type:"Software Instance"', 'portal_type:"Instance Tree" AND '
                  'validation_state:validated AND title:="x" OR 1=1'):
        answer = requests.get(base + "search", params={"query": query}, cert=pair,
                              verify=False, timeout=10)
        assert answer.status_code == 400 and answer.json()["error"]["details"][0]["field"] \
            == "query", answer.text
    assert requests.get(base, verify=False, timeout=10).status_code == 401   # anonymous


def test_stock_client_and_cli_request_a_product_alias(master_server, tmp_path):
    """`master serve --product hello=SR`: the stock library finds hello's release (and
    none for an unknown product), and `slapos request REF product.hello` asks for an
    instance of that release, as SlapOS' product aliases do. Anonymous lookups: 401."""
    # a release named by a local path: the stock CLI reads no SR.json over the network
    release = str(tmp_path / "release" / "software.cfg")
    url, data, ca, made = secure_master(master_server, tmp_path,
                                        serve_args=("--product", f"hello={release}"))
    node, admin, alice = (connect(url, made[w]) for w in ("node", "root", "alice"))
    assert alice.getSoftwareReleaseListFromSoftwareProduct("hello") == [release]
    assert alice.getSoftwareReleaseListFromSoftwareProduct("kvm") == []
    assert alice.getSoftwareReleaseListFromSoftwareProduct(
        software_release_url=release) == [release]
    with pytest.raises(requests.HTTPError) as info:
        connect(url).getSoftwareReleaseListFromSoftwareProduct("hello")
    assert info.value.response.status_code == 401

    node.registerComputer(COMPUTER).updateConfiguration(dumps(layout()))
    admin.registerSupply().supply(release, COMPUTER)
    said = _stock_cli(url, made["alice"], "request", "web-p", "product.hello",
                      "--node", f"computer_guid={COMPUTER}")
    assert "Instance requested" in said, said
    resp = requests.get(f"{url}/api/v1/instances", timeout=10, verify=str(data / "ca" / "ca.crt"),
                        cert=(str(made["alice"].cert_path), str(made["alice"].key_path)))
    assert [(i["reference"], i["software_url"]) for i in resp.json()["instances"]] == \
        [("web-p", release)]


def test_a_child_publishing_redeploys_the_partition_that_requested_it(master_server, tmp_path):
    """SlapOS bangs the requester: the child's partition publishes through the stock
    client and the parent's entry in the node's document gets a new timestamp (a new
    revision: slapgrid deploys it again and its buildout reads the values); the child's
    stays. The parent requesting its child again as before, and either publishing what it
    published already, changes nothing: they converge."""
    url, data, ca, made = secure_master(master_server, tmp_path)
    node, admin, alice = (connect(url, made[w]) for w in ("node", "root", "alice"))
    node.registerComputer(COMPUTER).updateConfiguration(dumps(layout()))
    admin.registerSupply().supply(SR, COMPUTER)
    parent_pid = alice.registerOpenOrder().request(
        SR, "parent", filter_kw={"computer_guid": COMPUTER}).getId()
    inside_parent = node.registerComputerPartition(COMPUTER, parent_pid)

    def ask_child():
        return inside_parent.request(SR, "default", "child", partition_parameter_kw={"a": "1"},
                                     filter_kw={"computer_guid": COMPUTER})
    child_pid = ask_child().getId()
    assert child_pid != parent_pid

    def timestamps():
        return {pid: p.getInstanceParameterDict()["timestamp"]
                for pid, p in node_partitions(node).items() if pid in (parent_pid, child_pid)}
    before = timestamps()
    node.registerComputerPartition(COMPUTER, child_pid).setConnectionDict(
        {"url": "http://127.0.9.2:8080/"})
    after = timestamps()
    assert after[child_pid] == before[child_pid]
    assert after[parent_pid] != before[parent_pid]
    created, revision = before[parent_pid].split(".")
    assert after[parent_pid] == f"{created}.{int(revision) + 1}"

    # the parent's buildout runs again: it reads the child's values and publishes its own
    again = ask_child()
    assert again.getConnectionParameterDict() == {"url": "http://127.0.9.2:8080/"}
    inside_parent.setConnectionDict({"backend": "http://127.0.9.2:8080/"})
    node.registerComputerPartition(COMPUTER, child_pid).setConnectionDict(
        {"url": "http://127.0.9.2:8080/"})
    assert timestamps() == after
    seen = alice.registerOpenOrder().request(SR, "parent",
                                             filter_kw={"computer_guid": COMPUTER})
    assert seen.getConnectionParameterDict() == {"backend": "http://127.0.9.2:8080/"}


def test_stock_client_renames_a_root_over_mutual_tls(master_server, tmp_path):
    """softwareInstanceRename as a stock instance calls it (the node's certificate, the
    X-SlapPartition header naming its partition): alice's root, with a child on another
    partition, renames itself. `slapfed list` and the native API show the new name, the
    node's full information the new titles on both partitions, requesting the new name
    answers the same instance; the old name is free, and asked for again it is a new
    instance, as in SlapOS (resilient stacks rely on it at takeover)."""
    from conftest import slapfed_cli
    url, data, ca, made = secure_master(master_server, tmp_path)
    node, admin, alice = (connect(url, made[w]) for w in ("node", "root", "alice"))
    node.registerComputer(COMPUTER).updateConfiguration(dumps(layout(3)))
    admin.registerSupply().supply(SR, COMPUTER)
    order = alice.registerOpenOrder()
    root = order.request(SR, "stack", filter_kw={"computer_guid": COMPUTER})
    inside = node.registerComputerPartition(COMPUTER, root.getId())
    child = inside.request(SR, "default", "stack-db", filter_kw={"computer_guid": COMPUTER})

    def seen_by_node():
        return {p.getId(): (p.getInstanceParameterDict()["instance_title"],
                            p.getInstanceParameterDict()["root_instance_title"])
                for p in node_partitions(node).values() if getattr(p, "_instance_guid", None)}
    assert seen_by_node() == {root.getId(): ("stack", "stack"),
                              child.getId(): ("stack-db", "stack")}

    inside.rename("stack-renamed")

    assert seen_by_node() == {root.getId(): ("stack-renamed", "stack-renamed"),
                              child.getId(): ("stack-db", "stack-renamed")}
    config = tmp_path / "alice-client.json"
    config.write_text(json.dumps({"master": url, "ca": str(data / "ca" / "ca.crt"),
                                  "cert": str(made["alice"].cert_path),
                                  "key": str(made["alice"].key_path)}))
    env = {**os.environ, "SLAPFED_CONFIG": str(config)}
    listed = json.loads(slapfed_cli("list", "--json", env=env).stdout)["instances"]
    assert {i["reference"]: i["id"] for i in listed} == {
        "stack-renamed": root.getInstanceGuid(), "stack-db": child.getInstanceGuid()}
    pair = (str(made["alice"].cert_path), str(made["alice"].key_path))
    tree = requests.get(f"{url}/api/v1/instances", params={"requester": root.getInstanceGuid()},
                        cert=pair, verify=str(data / "ca" / "ca.crt"), timeout=10).json()
    assert [i["reference"] for i in tree["instances"]] == ["stack-db"]

    again = order.request(SR, "stack-renamed", filter_kw={"computer_guid": COMPUTER})
    assert (again.getInstanceGuid(), again.getId()) == (root.getInstanceGuid(), root.getId())
    fresh = order.request(SR, "stack", filter_kw={"computer_guid": COMPUTER})
    assert fresh.getInstanceGuid() != root.getInstanceGuid()
    assert fresh.getId() not in (root.getId(), child.getId())
    listed = json.loads(slapfed_cli("list", "--json", env=env).stdout)["instances"]
    assert sorted(i["reference"] for i in listed) == ["stack", "stack-db", "stack-renamed"]
    # a node may not speak for another computer's partition to rename it
    other = ca.issue_with_new_key(ids.computer("slap-node-2"), tmp_path / "node-2")
    with pytest.raises(requests.HTTPError) as info:
        connect(url, other).registerComputerPartition(COMPUTER, root.getId()).rename("mine")
    assert info.value.response.status_code == 403
    assert seen_by_node()[root.getId()] == ("stack-renamed", "stack-renamed")
