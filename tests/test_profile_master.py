"""Recursion: provenance and the depth limit (tables), and the master release profile.

Depends on slapfed (core.provenance, master app, store) and pytest; the end-to-end tests
start real processes and stop them by PID.
"""
import json
import pytest

from slapfed.core.cfgvalue import encode
from slapfed.core import errors, provenance
from slapfed.core.wire import InstanceRequest

URL = "/srv/releases/hello/software.cfg"


# -- the pure rule --------------------------------------------------------------------
@pytest.mark.parametrize("chain, name, limit, expected", [
    ((), "root", 8, ("root",)),
    (("root",), "child", 8, ("root", "child")),
    (("a", "b"), "c", 3, ("a", "b", "c")),
    (("a",), "b", 2, ("a", "b")),
], ids=["empty", "one-up", "just-under-limit", "limit-2"])
def test_a_master_appends_itself_to_the_chain(chain, name, limit, expected):
    assert provenance.extend(chain, name, limit) == expected


@pytest.mark.parametrize("chain, name, limit, problem, words", [
    (("a", "b"), "c", 2, "too_deep", "nested 2 masters deep (limit 2): a -> b -> c"),
    (("a",), "b", 1, "too_deep", "limit 1"),
    (("a", "b"), "a", 8, "loop", "a loop): a -> b -> a"),
    (("a",), "a", 1, "loop", "already crossed it"),
], ids=["too-deep", "limit-1", "loop", "loop-wins-over-depth"])
def test_a_runaway_chain_is_refused_naming_the_chain(chain, name, limit, problem, words):
    with pytest.raises(errors.RecursionRefused) as info:
        provenance.extend(chain, name, limit)
    assert info.value.code == "recursion_refused" and info.value.http_status == 409
    assert words in info.value.message
    assert info.value.details[0]["problem"] == problem
    assert info.value.details[0]["chain"] == list(chain)


@pytest.mark.parametrize("value, fields", [
    ("root", ["provenance"]),
    ([1, "ok", "bad name"], ["provenance[0]", "provenance[2]"]),
    (["m"] * (provenance.MAX_CHAIN + 1), ["provenance"]),
], ids=["not-a-list", "bad-names", "too-long"])
def test_a_malformed_chain_is_invalid_input_listing_every_problem(value, fields):
    body = {"reference": "r", "software_url": URL, "provenance": value}
    with pytest.raises(errors.InvalidInput) as info:
        InstanceRequest.from_json(body)
    assert [d["field"] for d in info.value.details] == fields


def test_the_chain_travels_in_the_request_body():
    req = InstanceRequest.from_json({"reference": "r", "software_url": URL,
                                     "provenance": ["root", "eu"]})
    assert req.provenance == ("root", "eu")
    assert req.to_json()["provenance"] == ["root", "eu"]
    assert InstanceRequest.from_json({"reference": "r", "software_url": URL}).provenance == ()


@pytest.mark.parametrize("bad", [0, -1, True, "3"])
def test_the_depth_limit_is_a_positive_integer(bad):
    with pytest.raises(errors.InvalidInput):
        provenance.check_max_depth(bad)


# -- the master ------------------------------------------------------------------------
@pytest.fixture
def bounded_api(master_db, master_factories):
    from slapfed.master import close_app, create_app
    app = create_app({"INSECURE": True, "DB": master_db, "MASTER_NAME": "child",
                      "MAX_DEPTH": 2, "ANCESTRY": ("root",)})
    client = app.test_client()
    assert client.post("/api/v1/computers", json=master_factories.computer()).status_code == 201
    assert client.post("/api/v1/computers/c1/software",
                       json={"url": URL, "state": "available"}).status_code in (200, 201)
    yield client
    close_app(app)


def test_an_instance_records_the_chain_its_request_crossed(bounded_api):
    resp = bounded_api.post("/api/v1/instances", json={"reference": "w", "software_url": URL})
    assert resp.status_code == 201, resp.json
    assert resp.json["provenance"] == ["root", "child"]
    shown = bounded_api.get(f"/api/v1/instances/{resp.json['id']}").json
    assert shown["provenance"] == ["root", "child"]
    desired = bounded_api.get("/api/v1/computers/c1/desired-state").json
    placed = [p["instance"] for p in desired["partitions"] if p["instance"]]
    assert placed[0]["provenance"] == ["root", "child"]


@pytest.mark.parametrize("chain, problem", [
    (["a", "b"], "too_deep"),
    (["root", "child"], "loop"),
], ids=["too-deep", "loop"])
def test_the_master_refuses_runaway_nesting_and_writes_nothing(bounded_api, master_db, chain,
                                                                problem):
    from conftest import last_tid
    before = last_tid(master_db)
    for route in ("/api/v1/instances", "/api/v1/placements"):
        resp = bounded_api.post(route, json={"reference": "w", "software_url": URL,
                                             "provenance": chain})
        assert resp.status_code == 409
        assert resp.json["error"]["code"] == "recursion_refused"
        assert resp.json["error"]["details"][0]["problem"] == problem
        assert " -> ".join(chain) in resp.json["error"]["message"]
    assert last_tid(master_db) == before


def test_an_instance_stored_before_recursion_has_an_empty_chain():
    from slapfed.model import Instance
    assert Instance.provenance == ()


# -- end to end: a master requests a master ----------------------------------------------
MASTER_RELEASE = str(__import__("pathlib").Path(__file__).resolve().parents[1]
                     / "profiles" / "master" / "software.cfg")
E2E_COMPUTER = "rec-node"
HELLO_RELEASE = "https://releases.example/hello/software.cfg"   # a product alias only


def _has_master_recipe() -> bool:
    from importlib.metadata import entry_points
    return any(e.name == "master" and e.value.startswith("slapfed.")
               for e in entry_points(group="zc.buildout"))


def _pids_under(path) -> list[int]:
    """PIDs of the processes whose command line names ``path`` (read from /proc)."""
    import os
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if str(path) in cmd:
            found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def root_federation(tmp_path_factory):
    import os
    import subprocess
    from slapfed.ca import identity as ids
    from slapfed.ca.authority import CertificateAuthority
    from slapfed.client import MasterClient
    from slapfed.procs import Proc, slapfed_argv, wait_for
    if not _has_master_recipe():
        pytest.skip("the slapfed:master recipe is not registered in this environment: "
                    "reinstall slapfed (make test does when setup.py changes)")
    base = tmp_path_factory.mktemp("recursion")
    procs, node_root = [], base / "node"
    try:
        master = Proc(slapfed_argv("master", "serve", "--data", str(base / "root"), "--name",
                                   "root", "--listen", "127.0.0.1:0"), base / "root.log")
        procs.append(master)
        url_file = base / "root" / "master.url"
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                 "root master URL", proc=master)
        url = url_file.read_text().strip()
        ca = CertificateAuthority(base / "root" / "ca")
        made = {who: ca.issue_with_new_key(identity, base / who)
                for who, identity in (("alice", ids.person("alice")),
                                      ("admin", ids.admin("root")))}
        clients = {who: MasterClient(url, ca=str(m.ca_path), cert=str(m.cert_path),
                                     key=str(m.key_path)) for who, m in made.items()}
        subprocess.run(slapfed_argv(
            "node", "format", "--master", url, "--computer", E2E_COMPUTER, "--partitions", "2",
            "--root", str(node_root), "--address-base", f"127.{20 + os.getpid() % 200}.211.1",
            "--token", ca.token_for(E2E_COMPUTER), "--ca", str(ca.directory / "ca.crt")),
            check=True, capture_output=True, timeout=120)
        node = Proc(slapfed_argv("node", "run", "--root", str(node_root), "--interval", "0.3"),
                    base / "node.log")
        procs.append(node)
        yield {"url": url, "alice": clients["alice"], "admin": clients["admin"],
               "node_root": node_root, "base": base, "node": node}
    finally:
        for p in reversed(procs):
            p.stop()
        if (node_root / "node.json").exists():
            subprocess.run(slapfed_argv("node", "stop", "--root", str(node_root)),
                           capture_output=True, timeout=60)


def _enrol(connection, where):
    """Trade the published one-time token for a certificate of a key made here; the
    token then no longer works."""
    import requests
    from slapfed.ca.keys import csr_for, generate_key
    from cryptography.hazmat.primitives import serialization
    from slapfed.enrol import enrol
    client = enrol(connection["url"], connection["ca-certificate"], connection["admin-token"],
                   where)
    csr = csr_for(generate_key()).public_bytes(serialization.Encoding.PEM).decode()
    again = requests.post(connection["url"] + "/api/v1/node-certificates",
                          json={"token": connection["admin-token"], "csr": csr},
                          verify=client.verify, timeout=10)
    assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_token"
    return client.verify, client.cert[0], client.cert[1]


@pytest.mark.timeout(300)
def test_a_master_requests_a_child_master_that_serves_and_goes_away(root_federation):
    from slapfed.client import MasterClient
    from slapfed.core.errors import NoCapacity, RecursionRefused
    from slapfed.procs import pid_alive, wait_for
    fed = root_federation
    fed["admin"].supply(E2E_COMPUTER, MASTER_RELEASE)
    alice = fed["alice"]
    inst = alice.request("child-1", MASTER_RELEASE,
                         parameters={"name": "child-1", "max-depth": "2",
                                     "register-with-parent": "true",
                                     "products": f"hello={HELLO_RELEASE}"})
    done = alice.wait_ready(inst["id"], 120)
    assert done["status"]["state"] == "started", done["status"]
    assert done["provenance"] == ["root"]
    conn = done["connection"]
    assert conn["url"].startswith("https://") and conn["name"] == "child-1"
    assert conn["ca-certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in __import__("json").dumps(conn)
    assert [(p["name"], p["ok"]) for p in done["status"]["promises"]] == [("health", True)]

    # the parent knows its child master, as the instance that runs it and in its topology
    assert done["child_master"]["name"] == "child-1"
    assert done["child_master"]["url"] == conn["url"]
    live = fed["admin"].topology()["live"]
    assert live["masters"] == [{"name": "child-1", "url": conn["url"], "instance": inst["id"],
                                "reference": "child-1"}]
    from slapfed.topology import graph, report
    from slapfed.topology.files import EMPTY
    text = report.tree_text(report.tree(graph.build(EMPTY, live)))
    assert f"master child-1  {conn['url']}  [child of root, instance {inst['id']}]" in text

    # the token is sealed to the requester: the parent relays only its sealed text
    from slapfed.core.sealed import is_sealed
    from slapfed.sealed_values import opened_connection
    assert is_sealed(conn["admin-token"])
    assert alice.show(inst["id"])["connection"]["admin-token"] == conn["admin-token"]
    opened = opened_connection(done, alice.cert[1])
    assert opened["admin-token"] and not is_sealed(opened["admin-token"])
    # the requester enrols with its one-time token and calls the child over mutual TLS
    ca, cert, key = _enrol(opened, fed["base"] / "child-admin")
    child = MasterClient(conn["url"], ca=ca, cert=cert, key=key)
    assert child.health()
    assert child.whoami()["principal"] == "admin/owner"
    with pytest.raises(NoCapacity):
        child.request("web-1", "/srv/releases/hello/software.cfg")
    # the product aliases the requester gave: what `slapos request REF product.hello` asks
    import requests
    from slapos.util import loads as slap_loads
    answer = requests.get(conn["url"] + "/slap/getSoftwareReleaseListFromSoftwareProduct",
                          params={"software_product_reference": "hello"}, verify=ca,
                          cert=(cert, key), timeout=10)
    assert answer.status_code == 200 and slap_loads(answer.content) == [HELLO_RELEASE]
    listed = child.list_instances()
    assert listed == [] or all(i["provenance"] == ["root", "child-1"] for i in listed)

    # bounded: the child (max-depth 2, below root) refuses a deeper chain and a loop
    for chain, problem in ((["a", "b"], "too_deep"), (["child-1"], "loop")):
        resp = requests.post(conn["url"] + "/api/v1/instances",
                             json={"reference": "deep", "provenance": chain,
                                   "software_url": "/srv/releases/hello/software.cfg"},
                             verify=ca, cert=(cert, key), timeout=10)
        assert resp.status_code == 409, resp.text
        assert resp.json()["error"]["code"] == RecursionRefused.code
        assert resp.json()["error"]["details"][0]["problem"] == problem

    # destroy: the child master and its ZEO stop, the partition is freed
    part = done["placement"]["partition"]
    part_dir = fed["node_root"] / "partitions" / part
    pids = _pids_under(part_dir / "srv" / "master")
    assert len(pids) >= 2, pids      # runzeo and the master (gunicorn arbiter, worker)
    alice.destroy(inst["id"])
    wait_for(lambda: alice.show(inst["id"])["status"]["state"] == "destroyed", 60,
             "the child master to be destroyed", proc=fed["node"])
    wait_for(lambda: not any(pid_alive(p) for p in pids), 20, "the child's processes to end")
    comp = fed["admin"].show_computer(E2E_COMPUTER)
    assert [p["instance"] for p in comp["partitions"] if p["id"] == part] == [None]
    assert fed["admin"].topology()["live"]["masters"] == []


# -- parent and child -------------------------------------------------------------------
PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("body, fields", [
    ({}, ["name", "url", "ca_certificate"]),
    ({"name": "bad name", "url": "http://x", "ca_certificate": "nope"},
     ["name", "url", "ca_certificate"]),
    ({"name": "c", "url": "https://x", "ca_certificate": PEM, "extra": 1}, ["extra"]),
], ids=["empty", "malformed", "unknown-field"])
def test_a_malformed_child_registration_lists_every_problem(bounded_api, body, fields):
    iid = bounded_api.post("/api/v1/instances",
                           json={"reference": "m", "software_url": URL}).json["id"]
    resp = bounded_api.put(f"/api/v1/instances/{iid}/child-master", json=body)
    assert resp.status_code == 400
    assert sorted(d["field"] for d in resp.json["error"]["details"]) == sorted(fields)


def test_a_child_master_is_known_until_its_instance_is_destroyed(bounded_api):
    iid = bounded_api.post("/api/v1/instances",
                           json={"reference": "m", "software_url": URL}).json["id"]
    body = {"name": "kid", "url": "https://127.0.0.9:1", "ca_certificate": PEM}
    first = bounded_api.put(f"/api/v1/instances/{iid}/child-master", json=body)
    assert first.status_code == 200 and first.json["child_master"] == body
    again = bounded_api.put(f"/api/v1/instances/{iid}/child-master", json=body)
    assert again.json["updated_at"] == first.json["updated_at"]      # nothing changed
    other = bounded_api.put(f"/api/v1/instances/{iid}/child-master",
                            json={**body, "name": "other"})
    assert other.status_code == 409 and other.json["error"]["code"] == "conflict"
    live = bounded_api.get("/api/v1/topology").json["live"]
    assert [m["name"] for m in live["masters"]] == ["kid"]
    assert bounded_api.delete(f"/api/v1/instances/{iid}").json["child_master"] is None
    assert bounded_api.get("/api/v1/topology").json["live"]["masters"] == []
    refused = bounded_api.put(f"/api/v1/instances/{iid}/child-master", json=body)
    assert refused.status_code == 409


def test_a_child_master_with_a_pairing_token_becomes_a_peer_until_destroyed(bounded_api):
    iid = bounded_api.post("/api/v1/instances",
                           json={"reference": "m", "software_url": URL}).json["id"]
    body = {"name": "kid", "url": "https://127.0.0.9:1", "ca_certificate": PEM,
            "pairing_token": "t-1"}
    resp = bounded_api.put(f"/api/v1/instances/{iid}/child-master", json=body)
    assert resp.status_code == 200, resp.json
    assert "pairing_token" not in resp.json["child_master"]        # the secret stays inside
    assert "t-1" not in json.dumps(bounded_api.get(f"/api/v1/instances/{iid}").json)
    peers = {p["name"]: p for p in bounded_api.get("/api/v1/peers").json["peers"]}
    kid = peers["kid"]
    assert (kid["origin"], kid["instance"], kid["paired"], kid["url"]) == \
        ("child", iid, False, "https://127.0.0.9:1")
    assert "t-1" not in json.dumps(kid)
    # another instance cannot take over the name of a peer (it would capture delegations)
    other = bounded_api.post("/api/v1/instances",
                             json={"reference": "m2", "software_url": URL}).json["id"]
    stolen = bounded_api.put(f"/api/v1/instances/{other}/child-master",
                             json={**body, "url": "https://127.0.0.10:1"})
    assert stolen.status_code == 409 and "already known" in stolen.json["error"]["message"]
    assert bounded_api.get("/api/v1/peers/kid").json["url"] == "https://127.0.0.9:1"
    # nor take this master's own name
    own = bounded_api.put(f"/api/v1/instances/{other}/child-master",
                          json={**body, "name": "child"})
    assert own.status_code == 409
    # an admin changes what this master knows of the link; origin and pairing stay
    patched = bounded_api.patch("/api/v1/peers/kid", json={"trust": "observe", "cost": 3})
    assert patched.status_code == 200, patched.json
    assert (patched.json["trust"], patched.json["cost"], patched.json["origin"],
            patched.json["instance"]) == ("observe", 3.0, "child", iid)
    for body, field in (({}, "trust"), ({"cost": -1}, "cost"), ({"trust": "all"}, "trust"),
                        ({"latency_ms": True}, "latency_ms"), ({"url": "https://x"}, "url")):
        bad = bounded_api.patch("/api/v1/peers/kid", json=body)
        assert bad.status_code == 400 and bad.json["error"]["details"][0]["field"] == field
    assert bounded_api.get("/api/v1/peers/kid").json["trust"] == "observe"   # unchanged
    assert bounded_api.patch("/api/v1/peers/nobody", json={"cost": 1}).status_code == 404
    # destroying the instance forgets the peer (nothing is delegated to it)
    bounded_api.delete(f"/api/v1/instances/{iid}")
    assert "kid" not in {p["name"] for p in bounded_api.get("/api/v1/peers").json["peers"]}


def test_a_childs_trust_follows_who_owns_the_tree(master_runtime, master_factories):
    """An admin's child master serves delegations; a person's is only observed."""
    from types import SimpleNamespace

    from slapfed.core.wire import ChildMasterRegistration
    from slapfed.services import federation as fed
    from slapfed.services.tx import write

    def adopt(requester, name):
        def use_case(app):
            inst = SimpleNamespace(id=f"i-{name}", requester=f"{requester}-child",
                                   root_requester=requester)
            reg = ChildMasterRegistration(name, "https://127.0.0.9:1", PEM, "tok")
            fed.adopt_child(master_runtime.settings, app, inst, reg, 1.0)
            return app.peers[name].trust
        return write(master_runtime, use_case)

    assert adopt("admin/ops", "ops-kid") == "delegate"
    assert adopt("person/alice", "alice-kid") == "observe"


# -- the slapfed:master recipe's computed options -------------------------------------------
@pytest.mark.parametrize("given, url, storage, extra", [
    ({}, "https://127.0.0.5:2001", "zeo://127.0.0.5:2000", ""),
    ({"storage": "file"}, "https://127.0.0.5:2001", "file", ""),
    ({"provenance": "root eu", "max-depth": "3"}, "https://127.0.0.5:2001",
     "zeo://127.0.0.5:2000", "--ancestor\nroot\n--ancestor\neu\n--max-depth\n3"),
    ({"host": "h", "lan": "l", "country": "c", "continent": "k"}, "https://127.0.0.5:2001",
     "zeo://127.0.0.5:2000", "--topology\n/d/topology.toml"),
    ({"host": "h"}, "https://127.0.0.5:2001", "zeo://127.0.0.5:2000", ""),
    ({"replicas": "2"}, "https://127.0.0.5:2001", "file", "--promote"),
    ({"replicas": "0", "storage": ""}, "https://127.0.0.5:2001", "zeo://127.0.0.5:2000", ""),
    ({"products": " kvm=https://example.org/kvm/software.cfg\n  re6st=http://x/r.cfg?a=1 "},
     "https://127.0.0.5:2001", "zeo://127.0.0.5:2000",
     "--product\nkvm=https://example.org/kvm/software.cfg\n--product\nre6st=http://x/r.cfg?a=1"),
    # what the node hands a profile for a value with line breaks: encoded (core.cfgvalue);
    # each line's pair is one argument, none reaches buildout or a shell
    ({"products": encode("kvm=https://example.org/kvm/software.cfg\r\nre6st=http://x/r.cfg")},
     "https://127.0.0.5:2001", "zeo://127.0.0.5:2000",
     "--product\nkvm=https://example.org/kvm/software.cfg\n--product\nre6st=http://x/r.cfg"),
], ids=["defaults", "file", "ancestry", "site", "partial-site-ignored",
        "replicas-serve-their-own-filestorage-and-promote-a-replica-taken-over",
        "no-replicas-zeo", "products", "products-encoded-with-line-breaks"])
def test_the_master_recipe_computes_ports_storage_and_serve_arguments(given, url, storage,
                                                                      extra):
    from slapfed.recipe_master import MasterRecipe
    options = {"name": "m", "address": "127.0.0.5", "port-base": "2000", "data": "/d", **given}
    MasterRecipe({}, "master-setup", options)
    assert (options["url"], options["storage-uri"], options["extra-args"]) == (url, storage,
                                                                               extra)


@pytest.mark.parametrize("given, words", [
    ({"name": ""}, "'name' is required"),
    ({"storage": "s3"}, "storage must be one of zeo, file"),
    ({"port-base": "x"}, "port-base must be an integer"),
    ({"admin-token-ttl": "10"}, "admin-token-ttl must be 60..86400 seconds"),
    ({"admin-token-ttl": "a week"}, "admin-token-ttl must be 60..86400 seconds"),
    ({"replicas": "5"}, "replicas must be 0..4"),
    ({"replicas": "-1"}, "replicas must be 0..4"),
    ({"replicas": "1", "replica-mode": "eventually"}, "replica-mode must be one of sync, async"),
    ({"replicas": "1", "storage": "zeo"}, "replicas need storage = file"),
    ({"products": "kvm"}, "products must be NAME=URL pairs: 'kvm' is not NAME=URL"),
    ({"products": "../x=http://a/b.cfg"}, "products must be NAME=URL pairs: '../x'"),
    ({"products": "kvm=http://a/b.cfg kvm=http://a/c.cfg"}, "'kvm' is given more than once"),
    ({"products": "kvm=http://a/${buildout:directory}.cfg"}, "holds a '\\$'"),
    ({"products": "kvm=http://a/b.cfg\r\n[x]\nrecipe = os"}, "'\\[x\\]' is not NAME=URL"),
    ({"products": "[x]=http://a/b.cfg"}, "products must be NAME=URL pairs: '\\[x\\]'"),
], ids=["no-name", "bad-storage", "bad-port", "token-ttl-too-short", "token-ttl-not-a-number",
        "too-many-replicas", "negative-replicas", "bad-replica-mode", "replicas-over-zeo",
        "product-not-a-pair", "product-name-not-an-id", "product-twice",
        "product-url-substitution", "product-lines-and-a-section", "product-name-a-section"])
def test_the_master_recipe_refuses_bad_parameters(given, words):
    import zc.buildout
    from slapfed.recipe_master import MasterRecipe
    options = {"name": "m", "address": "127.0.0.5", "port-base": "2000", "data": "/d", **given}
    with pytest.raises(zc.buildout.UserError, match=words):
        MasterRecipe({}, "master-setup", options)


INVITATION = {"url": "https://127.0.0.5:2001", "token": "t", "for": "m-replica-1",
              "ca_certificate": PEM}


@pytest.mark.parametrize("given, words", [
    ({"invitation": ""}, "'invitation' is required"),
    ({"invitation": "{not json"}, "invitation must be the JSON its primary published"),
    ({"invitation": __import__("json").dumps({**INVITATION, "token": ""})},
     "invitation lacks one of"),
    ({"invitation": __import__("json").dumps({**INVITATION, "for": "other"})},
     "the invitation is for 'other'"),
    ({"mode": "later"}, "mode must be one of sync, async"),
    ({"name": "bad name"}, "name must be a replica name"),
], ids=["no-invitation", "not-json", "no-token", "someone-elses", "bad-mode", "bad-name"])
def test_the_replica_recipe_refuses_a_bad_invitation_or_mode(given, words):
    import json
    import zc.buildout
    from slapfed.recipe_master import MasterReplicaRecipe
    options = {"name": "m-replica-1", "address": "127.0.0.6", "port-base": "3000",
               "data": "/d", "invitation": json.dumps(INVITATION), **given}
    with pytest.raises(zc.buildout.UserError, match=words):
        MasterReplicaRecipe({}, "replica-setup", options)


def test_the_replica_recipe_writes_its_invitation_privately_and_serves_as_a_sync_replica(
        tmp_path):
    import json
    from slapfed.recipe_master import MasterReplicaRecipe
    options = {"name": "m-replica-1", "address": "127.0.0.6", "port-base": "3000",
               "data": str(tmp_path / "srv"), "invitation": json.dumps(INVITATION),
               "connection-file": str(tmp_path / "connection.json")}
    MasterReplicaRecipe({}, "replica-setup", options).install()
    assert options["url"] == "https://127.0.0.6:3001" and options["extra-args"] == "--sync"
    written = tmp_path / "srv" / "invitation.json"
    assert json.loads(written.read_text()) == INVITATION
    assert written.stat().st_mode & 0o777 == 0o600
    published = json.loads((tmp_path / "connection.json").read_text())
    assert published == {"name": "m-replica-1", "url": "https://127.0.0.6:3001",
                         "role": "replica", "primary": INVITATION["url"], "mode": "sync",
                         "ca-certificate": PEM}


def test_a_replica_invitation_is_kept_and_handed_out_unchanged(tmp_path):
    import json
    from slapfed.ca import identity as ids
    recipe, ca = _recipe_with_ca(tmp_path, replicas="1")
    first = recipe.replica_invitation(ca, "m-replica-1")
    assert recipe.replica_invitation(ca, "m-replica-1") == first     # parameters unchanged
    doc = json.loads(first)
    assert doc["for"] == "m-replica-1" and doc["url"] == "https://127.0.0.5:2001"
    assert doc["principal"] == ids.replica("m-replica-1").principal
    kept = tmp_path / "replicas" / "m-replica-1.json"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert ca.redeem(doc["token"], _csr_pem())       # a live one-time token of this CA


def _recipe_with_ca(tmp_path, **given):
    from slapfed.ca.authority import CertificateAuthority
    from slapfed.recipe_master import MasterRecipe
    options = {"name": "m", "address": "127.0.0.5", "port-base": "2000",
               "data": str(tmp_path), **given}
    recipe = MasterRecipe({}, "master-setup", options)
    return recipe, CertificateAuthority.init(tmp_path / "ca", "m CA")


def _csr_pem():
    from cryptography.hazmat.primitives import serialization
    from slapfed.ca.keys import csr_for, generate_key
    return csr_for(generate_key()).public_bytes(serialization.Encoding.PEM)


def test_each_run_publishes_a_fresh_admin_token_and_kills_the_one_before(tmp_path):
    from slapfed.ca import errors as ca_errors
    from slapfed.ca import identity as ids
    recipe, ca = _recipe_with_ca(tmp_path)
    first, second = recipe.admin_token(ca), recipe.admin_token(ca)
    assert first and second and first != second
    with pytest.raises(ca_errors.InvalidToken):          # read later from the parameters
        ca.redeem(first, _csr_pem())
    assert ca.redeem(second, _csr_pem()).identity == ids.admin("owner")
    with pytest.raises(ca_errors.InvalidToken):          # single use
        ca.redeem(second, _csr_pem())


def test_no_admin_token_is_published_or_alive_once_the_owner_enrolled(tmp_path):
    import json
    from slapfed.ca.authority import TOKENS_FILE
    recipe, ca = _recipe_with_ca(tmp_path)
    ca.redeem(recipe.admin_token(ca), _csr_pem())
    recipe.admin_token(ca)
    assert recipe.admin_token(ca) == ""
    assert json.loads((tmp_path / "ca" / TOKENS_FILE).read_text()) == {}


@pytest.mark.parametrize("given, ttl", [({}, 900), ({"admin-token-ttl": "120"}, 120)],
                         ids=["default-15-minutes", "configured"])
def test_the_admin_token_is_short_lived_and_expires(tmp_path, given, ttl):
    import datetime as dt
    from slapfed.ca import errors as ca_errors
    from slapfed.ca.authority import CertificateAuthority
    recipe, ca = _recipe_with_ca(tmp_path, **given)
    token = recipe.admin_token(ca)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ttl + 1)
    with pytest.raises(ca_errors.TokenExpired):
        CertificateAuthority(tmp_path / "ca", clock=lambda: later).redeem(token, _csr_pem())


def test_the_topology_file_declares_the_master_at_its_site():
    from slapfed.recipe_master import topology_text
    from slapfed.topology import files
    text = topology_text("m", {"continent": "europe", "country": "fr", "lan": "par-1",
                               "host": "par-1-a"})
    topology, problems = files.parse([("t.toml", text)])
    assert problems == [] and set(topology.masters) == {"m"}


@pytest.mark.timeout(300)
def test_the_master_wrapper_changes_with_its_topology_file_and_the_zeo_one_does_not(tmp_path):
    """Real buildout runs of the master profile: a changed site rewrites only the topology
    file, which the master's wrapper hashes (hash-files), so the node restarts the master
    and leaves its ZEO server running."""
    import os
    from slapfed.core.wire import software_hash
    from slapfed.node import buildout as nb
    from slapfed.node.layout import PartitionConfig, Paths
    if not _has_master_recipe():
        pytest.skip("the slapfed:master recipe is not registered in this environment")
    paths = Paths(str(tmp_path / "node"))
    for d in paths.skeleton():
        os.makedirs(d)
    runner = nb.ForkRunner()
    installed = nb.install_software(paths, MASTER_RELEASE, software_hash(MASTER_RELEASE),
                                    runner)
    assert installed.ok, installed.log_tail
    part = PartitionConfig("part0", "127.31.0.9", 10000, 10)
    services = paths.partition("part0").services

    def wrappers(**site):
        params = {"name": "eu-1", "continent": "europe", "country": "fr", "lan": "par-1",
                  **site}
        result = nb.instantiate(paths, part, "c1", {
            "id": "i-m", "reference": "m", "software_url": MASTER_RELEASE,
            "software_hash": software_hash(MASTER_RELEASE), "software_type": "default",
            "parameters": params, "revision": 1, "shared_instances": []}, runner)
        assert result.ok, result.log_tail
        return {name: open(os.path.join(services, name)).read() for name in ("master", "zeo")}

    first = wrappers(host="h1")
    assert "# hash-files sha256 " in first["master"]
    assert wrappers(host="h1") == first
    moved = wrappers(host="h2")
    assert moved["master"] != first["master"] and moved["zeo"] == first["zeo"]
    topology = os.path.join(paths.partition("part0").path, "srv", "master", "topology.toml")
    assert '"h2"' in open(topology).read()


class _Placements:
    """Stands for the parent master: show() answers the replica instance placed where
    ``where`` says (None: not found)."""

    def __init__(self, where):
        self.where = where

    def show(self, iid):
        from slapfed.core.errors import NotFound
        if self.where is None:
            raise NotFound(f"no instance {iid}")
        computer, partition = self.where
        return {"id": iid, "placement": {"computer": computer, "partition": partition}
                if computer else None}


@pytest.mark.parametrize("kept_at, now_at, moved", [
    (["node-b", "part0"], ("node-b", "part0"), False),
    (["node-b", "part0"], ("node-c", "part0"), True),
    (["node-b", "part0"], (None, None), True),          # not placed again (yet)
    (None, ("node-c", "part0"), False),                 # kept before placements were
    (["node-b", "part0"], None, False),                 # the instance is gone
], ids=["same-partition", "moved", "unplaced", "no-placement-kept", "no-instance"])
def test_a_replica_that_moved_loses_its_certificate_and_gets_a_new_invitation(
        tmp_path, kept_at, now_at, moved):
    import json
    from slapfed.ca import identity as ids
    from slapfed.recipe_master import SEALED_SUFFIX
    recipe, ca = _recipe_with_ca(tmp_path, replicas="1")
    name = "m-replica-1"
    first = recipe.replica_invitation(ca, name)
    ca.redeem(json.loads(first)["token"], _csr_pem())            # it enrolled
    spare = ca.enrolment_token(ids.replica(name), 600)           # and a token lies around
    kept = {"instance": "i-1", "digest": "d", "fingerprint": "f", "sealed": "s"}
    if kept_at is not None:
        kept["partition"] = kept_at
    sealed = tmp_path / "replicas" / f"{name}{SEALED_SUFFIX}"
    sealed.write_text(json.dumps(kept))
    assert recipe.forget_moved_replica(_Placements(now_at), ca, name) is moved
    assert ca.holds_valid_certificate(ids.replica(name)) is not moved
    assert sealed.exists() is not moved
    again = recipe.replica_invitation(ca, name)
    assert (again != first) is moved
    if moved:
        [old] = [r for r in ca.list() if r.identity == ids.replica(name)]
        assert old.revoked["reason"] == "superseded"
        from slapfed.ca import errors as ca_errors
        with pytest.raises(ca_errors.InvalidToken):             # withdrawn (then superseded)
            ca.redeem(spare, _csr_pem())
        assert ca.redeem(json.loads(again)["token"], _csr_pem())    # the new one enrols
