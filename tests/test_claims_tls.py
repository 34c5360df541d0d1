"""Over real mutual TLS (gunicorn on 127.0.0.1, run-time port, its own CA): a node enrolled
with a token the admin asked for over HTTP, and its partition certified the way the node
agent does it, try to assert what they do not own. Every refusal writes nothing; older
tokens are dead."""
from pathlib import Path

import pytest
import requests

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority

NODE = "tls-node"
URL = "/srv/releases/hello/software.cfg"


def _csr(key) -> str:
    from cryptography.hazmat.primitives import serialization
    from slapfed.ca.keys import csr_for
    return csr_for(key).public_bytes(serialization.Encoding.PEM).decode()


def _identity_files(where: Path, key, certificate_pem: str):
    from slapfed.ca.keys import write_private_key
    where.mkdir(parents=True)
    write_private_key(where / "identity.key", key)
    (where / "identity.crt").write_text(certificate_pem)
    return str(where / "identity.crt"), str(where / "identity.key")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from conftest import start_master_process, stop_process
    from slapfed.ca.keys import generate_key
    base = tmp_path_factory.mktemp("claims-tls")
    proc, url = start_master_process(str(base / "master"), secure=True)
    try:
        ca = CertificateAuthority(base / "master" / "ca")
        ca_file = str(base / "master" / "ca" / "ca.crt")

        def identity(name, who):
            made = ca.issue_with_new_key(who, base / name)
            return str(made.cert_path), str(made.key_path)

        certs = {"admin": identity("admin", ids.admin("root")),
                 "alice": identity("alice", ids.person("alice"))}

        def call(who, method, path, body=None):
            return requests.request(method, url + "/api/v1" + path, json=body,
                                    verify=ca_file, cert=certs.get(who), timeout=15)

        # the admin asks twice for the node's token: only the second one is alive
        tokens = [call("admin", "POST", "/tokens", {"computer": NODE}).json()["token"]
                  for _ in range(2)]
        key = generate_key()
        old = call(None, "POST", "/node-certificates", {"token": tokens[0], "csr": _csr(key)})
        enrolled = call(None, "POST", "/node-certificates", {"token": tokens[1],
                                                              "csr": _csr(key)})
        assert enrolled.status_code == 201, enrolled.text
        certs["node"] = _identity_files(base / "node", key, enrolled.json()["certificate"])
        replay = call(None, "POST", "/node-certificates", {"token": tokens[1],
                                                            "csr": _csr(generate_key())})
        yield {"call": call, "certs": certs, "base": base, "old_token": old, "replay": replay}
    finally:
        stop_process(proc, timeout=15)


def _body(partitions, **facts):
    return {"id": NODE, "partitions": [
        {"id": f"p{i}", "address": f"127.0.77.{i + 1}", "port_base": 30000 + 10 * i}
        for i in range(partitions)], **facts}


def test_an_older_or_spent_token_is_dead_over_http(world):
    for resp in (world["old_token"], world["replay"]):
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["code"] == "invalid_token"


def test_a_node_over_tls_may_not_move_itself_or_grant_itself_a_capability(world):
    call = world["call"]
    first = call("node", "POST", "/computers", _body(2, lan="par-1", continent="europe"))
    assert first.status_code in (200, 201), first.text
    before = call("admin", "GET", f"/computers/{NODE}").json()
    resp = call("node", "POST", "/computers",
                _body(3, lan="par-1", continent="asia", capabilities=["gpu"]))
    assert resp.status_code == 403, resp.text
    err = resp.json()["error"]
    assert err["code"] == "fact_not_owned"
    assert [d["field"] for d in err["details"]] == ["continent", "capabilities"]
    after = call("admin", "GET", f"/computers/{NODE}").json()
    assert after == before
    assert (after["continent"], after["capabilities"], len(after["partitions"])) == (
        "europe", [], 2)


def test_a_partition_over_tls_may_not_report_its_started_instance_destroyed(world):
    from slapfed.ca.keys import generate_key
    call = world["call"]
    call("node", "POST", "/computers", _body(2))
    assert call("admin", "POST", f"/computers/{NODE}/software", {"url": URL}).ok
    inst = call("alice", "POST", "/instances", {"reference": "web", "software_url": URL,
                                                "sla": {"computer_guid": NODE}}).json()
    cid, pid = inst["placement"]["computer"], inst["placement"]["partition"]
    # the partition's own identity, certified the way the node agent does it
    key = generate_key()
    issued = call("node", "POST", f"/computers/{cid}/partitions/{pid}/certificate",
                  {"csr": _csr(key)})
    assert issued.status_code == 201, issued.text
    world["certs"]["partition"] = _identity_files(world["base"] / "partition", key,
                                                  issued.json()["certificate"])
    # what the refused reports must leave as it is (the certificate is the partition's
    # recipient of sealed values from now on)
    inst = call("alice", "GET", f"/instances/{inst['id']}").json()
    assert inst["placement"]["recipient"]["certificate"] == issued.json()["certificate"]
    report = {"instance_id": inst["id"], "revision": inst["revision"], "state": "destroyed"}
    for who in ("partition", "node"):
        resp = call(who, "PUT", f"/computers/{cid}/partitions/{pid}/status", report)
        assert resp.status_code == 409, resp.text
        err = resp.json()["error"]
        assert err["code"] == "report_refused"
        assert (err["details"][0]["requested"], err["details"][0]["claimed"]) == (
            "started", "destroyed")
    now = call("alice", "GET", f"/instances/{inst['id']}").json()
    assert now["placement"] == inst["placement"] and now["status"] == inst["status"]
    computer = call("admin", "GET", f"/computers/{NODE}").json()
    assert {p["id"]: p["instance"] for p in computer["partitions"]}[pid] == inst["id"]
    # the honest report of the node is taken
    ok = call("node", "PUT", f"/computers/{cid}/partitions/{pid}/status",
              {**report, "state": "started"})
    assert ok.status_code == 200 and ok.json()["status"]["state"] == "started"
