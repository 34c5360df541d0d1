"""The authorization matrix over HTTP: every actor x every route x own/other resource, through
the Flask test client with certificates injected as DER; a few over real TLS with gunicorn.

Each case names a route on a resource and the actors allowed; everyone else is refused:
401 with the certificate's own code when nobody is proven, 403 otherwise.
"""
import pytest

from conftest import AUTHZ_URL, AuthzWorld, computer_body, master_path
from slapfed.core.wire import software_hash

H = software_hash(AUTHZ_URL)
EVERYONE = frozenset(AuthzWorld.ACTORS)
AUTHENTICATED = frozenset({"person_a", "person_b", "admin", "node_x", "node_y", "partition_a",
                           "partition_b", "peer", "replica"})


def _part(inst):
    return inst["placement"]["computer"], inst["placement"]["partition"]


def _report(w, inst):
    cid, pid = _part(inst)
    return ("PUT", f"/computers/{cid}/partitions/{pid}/status",
            {"instance_id": inst["id"], "revision": inst["revision"], "state": "started"})


def _csr():
    from cryptography.hazmat.primitives import serialization
    from slapfed.ca.keys import csr_for, generate_key
    return csr_for(generate_key()).public_bytes(serialization.Encoding.PEM).decode()


def _unused_release(w, node):
    w.ok(w.call("admin", "POST", f"/computers/{node}/software", {"url": "/srv/other.cfg"}))
    return "DELETE", f"/computers/{node}/software/{software_hash('/srv/other.cfg')}", None


def _child_master():
    pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    return {"name": "child-1", "url": "https://127.0.0.9:8470", "ca_certificate": pem}


def _a_peer(w, name: str) -> str:
    """A peer record (paired, credentials not used here) for the peer routes."""
    from slapfed.master import runtime_of
    from slapfed.services import federation as fed
    pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    fed.save_peer(runtime_of(w.app), name, "https://127.0.0.9:8470", pem,
                  credentials="/nonexistent")
    return name


def _moved_report(w):
    """node-x is declared lost (a_root moves to node-y): its node reports a_root's old
    partition quarantined."""
    w.ok(w.call("admin", "POST", "/computers/node-x/lost", {}))
    cid, pid = _part(w.a_root)
    return ("PUT", f"/computers/{cid}/partitions/{pid}/moved",
            {"instance_id": w.a_root["id"], "state": "quarantined"})


def _usage_report(w, inst, report_id="r-1"):
    cid, pid = _part(inst)
    return ("POST", f"/computers/{cid}/usage", {
        "report_id": f"{cid}:{report_id}", "start": "2026-11-02T10:00:00Z",
        "end": "2026-11-02T10:01:00Z", "partitions": [{
            "partition": pid, "instance_id": inst["id"],
            "usage": [{"resource": "cpu_seconds", "quantity": 1.5}]}]})


PRICES = {"currency": "EUR", "prices": [{"resource": "cpu_seconds", "price": "0.01",
                                         "per": "3600"}]}


# (id, build(world) -> (method, path, body), actors allowed)
CASES = [
    ("health", lambda w: ("GET", "/health", None), EVERYONE),
    ("openapi", lambda w: ("GET", "/openapi.json", None), EVERYONE),
    ("whoami", lambda w: ("GET", "/whoami", None), AUTHENTICATED),
    ("metrics", lambda w: ("GET", "/metrics", None), {"admin"}),
    ("redeem-token", lambda w: ("POST", "/node-certificates",
                                {"token": w.ca.token_for("node-z"), "csr": _csr()}), EVERYONE),
    # instances: read
    ("list-instances", lambda w: ("GET", "/instances", None), AUTHENTICATED - {"replica"}),
    ("read-a-root", lambda w: ("GET", f"/instances/{w.a_root['id']}", None),
     {"person_a", "admin", "node_x", "partition_a"}),
    ("read-b-root", lambda w: ("GET", f"/instances/{w.b_root['id']}", None),
     {"person_b", "admin", "node_y", "partition_b"}),
    ("read-a-child", lambda w: ("GET", f"/instances/{w.a_child['id']}", None),
     {"person_a", "admin", "node_y", "partition_a"}),
    ("read-peer-root", lambda w: ("GET", f"/instances/{w.m_root['id']}", None),
     {"peer", "admin", "node_x"}),
    # instances: request and change
    ("request-new-root", lambda w: ("POST", "/instances", w.instance("new")),
     {"person_a", "person_b", "admin", "peer", "partition_a", "partition_b"}),
    ("request-in-a-tree", lambda w: ("POST", "/instances",
                                     w.instance("kid", parent=w.a_root["id"])),
     {"person_a", "partition_a"}),
    ("request-in-b-tree", lambda w: ("POST", "/instances",
                                     w.instance("kid", parent=w.b_root["id"])),
     {"person_b", "partition_b"}),
    # shared hosting: opening one's own host, naming someone else's host (a refusal the
    # request records as failed, not a 403 that would tell the host exists)
    ("request-open-host", lambda w: ("POST", "/instances",
                                     w.instance("opened", open_to=["person/bob", "master/b"])),
     {"person_a", "person_b", "admin", "peer", "partition_a", "partition_b"}),
    ("request-shared-naming-a-root", lambda w: ("POST", "/instances", w.instance(
        "site", shared=True, sla={"host_instance": w.a_root["id"]})),
     {"person_a", "person_b", "admin", "peer", "partition_a", "partition_b"}),
    ("explain-in-a-tree", lambda w: ("POST", "/placements",
                                     w.instance("kid", parent=w.a_root["id"])),
     {"person_a", "partition_a"}),
    ("stop-a-root", lambda w: ("PUT", f"/instances/{w.a_root['id']}/state",
                               {"state": "stopped"}), {"person_a"}),
    ("stop-b-root", lambda w: ("PUT", f"/instances/{w.b_root['id']}/state",
                               {"state": "stopped"}), {"person_b"}),
    ("stop-a-child", lambda w: ("PUT", f"/instances/{w.a_child['id']}/state",
                                {"state": "stopped"}), {"person_a", "partition_a"}),
    ("stop-peer-root", lambda w: ("PUT", f"/instances/{w.m_root['id']}/state",
                                  {"state": "stopped"}), {"peer"}),
    ("destroy-a-root", lambda w: ("DELETE", f"/instances/{w.a_root['id']}", None), {"person_a"}),
    ("destroy-b-root", lambda w: ("DELETE", f"/instances/{w.b_root['id']}", None), {"person_b"}),
    ("destroy-a-child", lambda w: ("DELETE", f"/instances/{w.a_child['id']}", None),
     {"person_a", "partition_a"}),
    # recursion: the partition hosting an instance registers the master it runs
    ("register-child-master-a-root", lambda w: ("PUT", f"/instances/{w.a_root['id']}/child-master",
                                                _child_master()), {"admin", "partition_a"}),
    ("register-child-master-a-child", lambda w: (
        "PUT", f"/instances/{w.a_child['id']}/child-master", _child_master()), {"admin"}),
    # computers
    ("list-computers", lambda w: ("GET", "/computers", None), AUTHENTICATED - {"replica"}),
    ("register-x", lambda w: ("POST", "/computers", computer_body("node-x", 3)),
     {"admin", "node_x"}),
    ("register-y", lambda w: ("POST", "/computers", computer_body("node-y", 3)),
     {"admin", "node_y"}),
    ("register-new", lambda w: ("POST", "/computers", computer_body("node-new", 1)),
     {"admin"}),
    ("read-x", lambda w: ("GET", "/computers/node-x", None), {"admin", "node_x"}),
    ("set-facts-x", lambda w: ("PATCH", "/computers/node-x", {"continent": "europe"}),
     {"admin"}),
    ("read-y", lambda w: ("GET", "/computers/node-y", None), {"admin", "node_y"}),
    ("supply-x", lambda w: ("POST", "/computers/node-x/software", {"url": "/srv/other.cfg"}),
     {"admin"}),
    ("unsupply-y", lambda w: _unused_release(w, "node-y"), {"admin"}),
    ("desired-x", lambda w: ("GET", "/computers/node-x/desired-state", None),
     {"admin", "node_x"}),
    ("desired-y", lambda w: ("GET", "/computers/node-y/desired-state", None),
     {"admin", "node_y"}),
    ("lost-x", lambda w: ("POST", "/computers/node-x/lost", {"dry_run": True}), {"admin"}),
    ("wipe-x", lambda w: ("POST", "/computers/node-x/wipe", {}), {"admin"}),
    ("report-moved-x", _moved_report, {"node_x"}),
    ("report-software-x", lambda w: ("PUT", f"/computers/node-x/software/{H}/status",
                                     {"status": "installed"}), {"node_x"}),
    ("report-software-y", lambda w: ("PUT", f"/computers/node-y/software/{H}/status",
                                     {"status": "installed"}), {"node_y"}),
    ("report-a-partition", lambda w: _report(w, w.a_root), {"node_x", "partition_a"}),
    ("report-b-partition", lambda w: _report(w, w.b_root), {"node_y", "partition_b"}),
    ("topology", lambda w: ("GET", "/topology", None), {"admin", "peer"}),
    # certificates
    ("certify-x-partition", lambda w: ("POST", "/computers/node-x/partitions/p002/certificate",
                                       {"csr": _csr()}), {"admin", "node_x"}),
    ("certify-y-partition", lambda w: ("POST", "/computers/node-y/partitions/p002/certificate",
                                       {"csr": _csr()}), {"admin", "node_y"}),
    ("list-certificates", lambda w: ("GET", "/certificates", None), {"admin"}),
    ("issue-certificate", lambda w: ("POST", "/certificates",
                                     {"role": "person", "name": "erin", "csr": _csr()}),
     {"admin"}),
    ("create-token", lambda w: ("POST", "/tokens", {"computer": "node-z"}), {"admin"}),
    ("create-master-token", lambda w: ("POST", "/tokens", {"master": "m-z"}), {"admin"}),
    # federation
    ("list-peers", lambda w: ("GET", "/peers", None), {"admin"}),
    ("show-peer", lambda w: ("GET", f"/peers/{_a_peer(w, 'p-show')}", None), {"admin"}),
    ("remove-peer", lambda w: ("DELETE", f"/peers/{_a_peer(w, 'p-rm')}", None), {"admin"}),
    ("peer-lost", lambda w: ("POST", f"/peers/{_a_peer(w, 'p-lost')}/lost", {}), {"admin"}),
    ("update-peer", lambda w: ("POST", "/peers", {
        "name": _a_peer(w, "p-upd"), "url": "https://127.0.0.9:8470", "cost": 2,
        "ca_certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
     {"admin"}),
    ("patch-peer", lambda w: ("PATCH", f"/peers/{_a_peer(w, 'p-patch')}",
                              {"trust": "observe"}), {"admin"}),
    ("show-policy", lambda w: ("GET", "/federation/policy", None), {"admin"}),
    ("set-policy", lambda w: ("PUT", "/federation/policy", {"rules": [{"to": ["b"]}]}),
     {"admin"}),
    ("federation-summary", lambda w: ("GET", "/federation/summary", None), {"admin", "peer"}),
    ("federation-changes", lambda w: ("GET", "/federation/changes", None), {"peer"}),
    # replication
    ("invite-replica", lambda w: ("POST", "/replication/invitations", {"name": "r-z"}),
     {"admin"}),
    ("register-replica", lambda w: ("PUT", "/replication/replicas/repl-1", {"mode": "async"}),
     {"admin", "replica"}),
    ("register-other-replica", lambda w: ("PUT", "/replication/replicas/repl-2",
                                          {"mode": "async"}), {"admin"}),
    ("replication-transactions", lambda w: ("GET", "/replication/transactions", None),
     {"replica"}),
    ("replication-ca", lambda w: ("GET", "/replication/ca", None), {"replica"}),
    ("replication-status", lambda w: ("GET", "/replication/status", None), {"admin"}),
    # allowed, and then refused for what it is: this master is the primary already
    ("promote", lambda w: ("POST", "/replication/promotion", {}), {"admin"}),
    # accounting
    ("usage-report-x", lambda w: _usage_report(w, w.a_root), {"node_x"}),
    ("usage-report-y", lambda w: _usage_report(w, w.b_root), {"node_y"}),
    ("statement-own", lambda w: ("GET", "/statements?period=2026-11", None),
     {"person_a", "person_b", "admin", "peer"}),
    ("statement-of-alice", lambda w: ("GET", "/statements?owner=person/alice&period=2026-11",
                                      None), {"person_a", "admin"}),
    ("statement-of-peer", lambda w: ("GET", "/statements?peer=peer-1&period=2026-11-02",
                                     None), {"admin", "peer"}),
    ("usage-a-root", lambda w: ("GET", f"/instances/{w.a_root['id']}/usage", None),
     {"person_a", "admin"}),
    ("usage-a-child", lambda w: ("GET", f"/instances/{w.a_child['id']}/usage", None),
     {"person_a", "admin"}),
    ("usage-peer-root", lambda w: ("GET", f"/instances/{w.m_root['id']}/usage", None),
     {"peer", "admin"}),
    ("show-prices", lambda w: ("GET", "/accounting/prices", None),
     {"person_a", "person_b", "admin", "peer"}),
    ("set-prices", lambda w: ("PUT", "/accounting/prices", PRICES), {"admin"}),
    ("usage-feed", lambda w: ("GET", "/federation/usage?since=0", None), {"peer"}),
    ("revoke-a-certificate", lambda w: ("POST",
                                        f"/certificates/{w.serials['person_a']}/revocation",
                                        {}), {"admin", "person_a"}),
    ("revoke-x-certificate", lambda w: ("POST", f"/certificates/{w.serials['node_x']}/revocation",
                                        {"reason": "key_compromise"}), {"admin", "node_x"}),
]


# routes whose allowed callers are refused further on, by the state of the world
ALLOWED_THEN_REFUSED = {"/replication/promotion": "conflict"}


@pytest.mark.parametrize("actor", AuthzWorld.ACTORS)
@pytest.mark.parametrize("build,allowed", [pytest.param(b, a, id=i) for i, b, a in CASES])
def test_authorization_matrix(authz_world, actor, build, allowed):
    method, path, body = build(authz_world)
    resp = authz_world.call(actor, method, path, body)
    error = (resp.json or {}).get("error") if resp.is_json else None
    if actor in allowed:
        if error and error["code"] == ALLOWED_THEN_REFUSED.get(path):
            return                      # past the policy, refused by the state
        assert resp.status_code < 300, (resp.status_code, error)
    elif actor in AuthzWorld.REFUSED_CERTS:
        assert resp.status_code == 401, (resp.status_code, error)
        assert error["code"] == AuthzWorld.REFUSED_CERTS[actor]
    elif resp.status_code == 404 and path.startswith("/instances/"):
        # an instance the actor may not even read is answered as a missing one
        iid = path.split("/")[2]
        absent = authz_world.call(actor, method, path.replace(iid, "i-0000000000000000"),
                                  body)
        other = (absent.json or {}).get("error")
        assert absent.status_code == 404 and other["code"] == error["code"] == "not_found"
        assert error["message"].replace(iid, "ID") == \
            other["message"].replace("i-0000000000000000", "ID")
    else:
        assert resp.status_code == 403, (resp.status_code, error)
        assert error["code"] == "forbidden" and set(error) == {"code", "message", "details",
                                                                  "request_id"}


def test_every_route_is_in_the_matrix(authz_world):
    """A new route must come with its row in CASES (and its guard in master.auth)."""
    from slapfed.master.auth import GUARDS, SLAP_GUARDS
    every = {e for e in authz_world.app.view_functions if e != "static"}
    assert every == set(GUARDS)
    served = every - set(SLAP_GUARDS)     # SLAP's own matrix: tests/test_slap.py
    paths = {r.rule.replace("/api/v1", "") for r in authz_world.app.url_map.iter_rules()
             if r.endpoint in served}
    covered = set()
    for _id, build, _allowed in CASES:
        method, path, _body = build(authz_world)
        adapter = authz_world.app.url_map.bind("localhost")
        endpoint, _args = adapter.match(master_path(path.split("?")[0]), method=method)
        covered.add(endpoint)
    assert covered == served, sorted(served - covered)
    assert paths


# -- lists show only what the caller may read -------------------------------------------
VISIBLE = [
    ("person_a", {"a-root", "a-child"}),
    ("person_b", {"b-root"}),
    ("admin", {"a-root", "a-child", "b-root", "m-root"}),
    ("node_x", {"a-root", "m-root"}),
    ("node_y", {"b-root", "a-child"}),
    ("partition_a", {"a-root", "a-child"}),
    ("partition_b", {"b-root"}),
    ("peer", {"m-root"}),
]


@pytest.mark.parametrize("actor,references", VISIBLE, ids=[v[0] for v in VISIBLE])
def test_lists_are_filtered_by_the_policy(authz_world, actor, references):
    listed = authz_world.ok(authz_world.call(actor, "GET", "/instances"))["instances"]
    assert {i["reference"] for i in listed} == references


COMPUTERS_VISIBLE = [("admin", {"node-x", "node-y"}), ("node_x", {"node-x"}),
                     ("node_y", {"node-y"}), ("person_a", set()), ("peer", set())]


@pytest.mark.parametrize("actor,ids", COMPUTERS_VISIBLE, ids=[v[0] for v in COMPUTERS_VISIBLE])
def test_computer_list_is_filtered(authz_world, actor, ids):
    listed = authz_world.ok(authz_world.call(actor, "GET", "/computers"))["computers"]
    assert {c["id"] for c in listed} == ids


# -- the requester is the caller ---------------------------------------------------------
def test_the_requester_is_the_certificates_principal(authz_world):
    a = authz_world.a_root
    assert a["requester"] == "person/alice"
    assert authz_world.a_child["requester"] == a["id"] and authz_world.a_child["parent"] == a["id"]


@pytest.mark.parametrize("actor,requester", [
    ("person_a", "person/bob"), ("person_a", "alice"), ("peer", "person/alice"),
    ("partition_a", "person/alice")], ids=["other-person", "bare-name", "peer-as-person",
                                            "partition-as-owner"])
def test_a_body_requester_naming_someone_else_is_refused(authz_world, actor, requester):
    from conftest import last_tid
    before = last_tid(authz_world.db)
    resp = authz_world.call(actor, "POST", "/instances",
                            authz_world.instance("x", requester=requester))
    assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden"
    assert last_tid(authz_world.db) == before


def test_a_body_requester_naming_the_caller_is_accepted(authz_world):
    resp = authz_world.call("person_a", "POST", "/instances",
                            authz_world.instance("y", requester="person/alice"))
    assert resp.status_code == 201 and resp.json["requester"] == "person/alice"


def test_a_partition_hosting_nothing_may_not_request(authz_world):
    from slapfed.ca import identity as ids
    authz_world.ok(authz_world.call("admin", "POST", "/computers", computer_body("node-z", 1)))
    authz_world.certs["idle"], _ = authz_world._issue(authz_world.ca, ids.partition("node-z", "p000"))
    resp = authz_world.call("idle", "POST", "/instances", authz_world.instance("z"))
    assert resp.status_code == 403


def test_whoami_names_the_caller(authz_world):
    body = authz_world.ok(authz_world.call("partition_a", "GET", "/whoami"))
    cid, pid = _part(authz_world.a_root)
    assert body["principal"] == f"partition/{cid}/{pid}" and body["development_mode"] is False


def test_revocation_through_the_api_applies_to_the_next_request(authz_world):
    authz_world.ok(authz_world.call("admin", "POST",
                                    f"/certificates/{authz_world.serials['person_b']}/revocation", {}))
    resp = authz_world.call("person_b", "GET", "/whoami")
    assert resp.status_code == 401 and resp.json["error"]["code"] == "certificate_revoked"


def test_no_private_key_in_any_certificate_answer(authz_world):
    answers = [authz_world.call("admin", "GET", "/certificates"),
               authz_world.call("admin", "POST", "/certificates",
                                {"role": "person", "name": "erin", "csr": _csr()}),
               authz_world.call("node_x", "POST", "/computers/node-x/partitions/p002/certificate",
                                {"csr": _csr()})]
    for resp in answers:
        assert resp.status_code < 300
        assert b"PRIVATE KEY" not in resp.data


def test_a_private_key_sent_as_csr_is_refused_and_not_echoed(authz_world):
    from cryptography.hazmat.primitives import serialization
    from slapfed.ca.keys import generate_key
    pem = generate_key().private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode()
    resp = authz_world.call("admin", "POST", "/certificates",
                            {"role": "person", "name": "erin", "csr": pem})
    assert resp.status_code == 400 and b"PRIVATE KEY" not in resp.data


def test_a_master_without_a_ca_or_development_mode_refuses_to_start(master_db):
    from slapfed.core.errors import InvalidInput
    from slapfed.master import create_app
    with pytest.raises(InvalidInput):
        create_app({"DB": master_db})


def test_a_partition_certificate_needs_an_existing_partition(authz_world):
    resp = authz_world.call("node_x", "POST", "/computers/node-x/partitions/nope/certificate",
                            {"csr": _csr()})
    assert resp.status_code == 404
