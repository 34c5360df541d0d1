"""Sealing through delegation, below the processes: the recipient a forward carries (the
requester's certificate at the origin, bound to the origin's instance id), who may name
one, how each master keeps and passes it on, the node binding the values to the origin's
id, and what a relaying master does with the sealed text its peer reports."""
import json

import pytest
from test_zk import identity

from conftest import computer_body, instance_body
from slapfed import services as svc
from slapfed.ca import seal
from slapfed.sealed_values import partition_recipient
from slapfed.core import sealed
from slapfed.core.errors import InvalidInput
from slapfed.core.wire import InstanceRequest, Supply, ComputerRegistration
from slapfed.master import close_app, create_app
from slapfed.node.sealing import Sealer
from slapfed.services import federation as fed
from slapfed.services.federation.forwards import _chain_of, relayed_connection
from slapfed.store import open_db

URL = "/srv/releases/hello/software.cfg"
CA = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@pytest.fixture(scope="module")
def alice():
    return identity()


# -- the wire field -------------------------------------------------------------------------
def test_a_forwarded_recipient_is_a_certificate_a_fingerprint_and_the_origins_id(alice):
    rec = {**alice[1], "instance": "i-7"}
    req = InstanceRequest.from_json({"reference": "r", "software_url": URL, "recipient": rec})
    assert req.to_json()["recipient"] == rec
    assert "recipient" not in InstanceRequest.from_json(
        {"reference": "r", "software_url": URL}).to_json()
    for bad, field in (({**rec, "fingerprint": "XYZ"}, "recipient.fingerprint"),
                       ({**rec, "certificate": "not pem"}, "recipient.certificate"),
                       ({**rec, "instance": "a/b"}, "recipient.instance"),
                       ({k: v for k, v in rec.items() if k != "instance"}, "recipient.instance"),
                       ({**rec, "extra": 1}, "recipient.extra")):
        with pytest.raises(InvalidInput) as err:
            InstanceRequest.from_json({"reference": "r", "software_url": URL, "recipient": bad})
        assert field in json.dumps(err.value.details), (bad, err.value.details)


# -- who may name a recipient (over the Flask app, certificates in the environ) ----------
def test_only_a_peer_master_names_a_recipient_and_only_a_true_one(authz_world, alice):
    w = authz_world
    rec = {**alice[1], "instance": "i-origin"}
    body = w.instance("fwd-1", "node-x", recipient=rec)
    for actor in ("person_a", "admin", "partition_a"):
        r = w.call(actor, "POST", "/instances", body)
        assert r.status_code == 400, (actor, r.json)
        assert r.json["error"]["details"][0]["field"] == "recipient"
    _other_key, other = identity()
    for bad, field in (({**rec, "fingerprint": other["fingerprint"]}, "recipient.fingerprint"),):
        r = w.call("peer", "POST", "/instances", w.instance("fwd-1", "node-x", recipient=bad))
        assert r.status_code == 400 and r.json["error"]["details"][0]["field"] == field, r.json
    assert not [i for i in w.ok(w.call("admin", "GET", "/instances?limit=1000"))["instances"]
                if i["reference"] == "fwd-1"]                 # nothing written
    w.ok(w.call("peer", "POST", "/instances", body))
    doc = w.ok(w.call("node_x", "GET", "/computers/node-x/desired-state"))
    found = {p["instance"]["reference"]: p["instance"] for p in doc["partitions"]
             if p["instance"]}
    assert found["fwd-1"]["recipient"] == rec
    # one forwarded recipient is that instance's only: the peer's other ones keep theirs
    assert found["m-root"].get("recipient") is None


# -- a chain of masters: each keeps the recipient of each instance and passes it on -------
class Side:
    def __init__(self, tmp_path, name):
        self.db = open_db(None, str(tmp_path / name))
        self.app = create_app({"INSECURE": True, "DB": self.db, "MASTER_NAME": name})
        self.app.config["TESTING"] = False
        self.rt = next(v for k, v in self.app.extensions.items() if hasattr(v, "writer"))

    def close(self):
        close_app(self.app)
        self.db.close()


@pytest.fixture
def chain(tmp_path):
    """a (peer b), b (peer c), c with computer c1: the three runtimes."""
    sides = {n: Side(tmp_path, n) for n in "abc"}
    try:
        reach = {"b": [{"master": "c", "hops": 1, "software": [URL], "free_partitions": 3}],
                 "c": []}
        for here, there in (("a", "b"), ("b", "c")):
            fed.save_peer(sides[here].rt, there, "https://127.0.0.9:1", CA,
                          credentials=f"peers/{there}", principal=f"master/{here}",
                          summary={"name": there, "software": [URL], "free_partitions": 3,
                                   "reach": reach[there]})
        svc.register_computer(sides["c"].rt, ComputerRegistration.from_json(
            computer_body("c1", 3)))
        svc.supply(sides["c"].rt, "c1", Supply(URL))
        yield {n: s.rt for n, s in sides.items()}
    finally:
        for s in sides.values():
            s.close()


def relay(rt_from, rt_to, requester):
    """What the forwarder does once: push every due forward of ``rt_from`` to ``rt_to``
    (a request by ``requester`` naming the recipient, as the route checked it) and
    record the answer."""
    pushes, _ = fed.due_pushes(rt_from)
    for push in pushes:
        body = dict(push.body)
        rec = body.pop("recipient", None)
        req = InstanceRequest.from_json({**body, "requester": requester})
        _created, answer = svc.request_instance(rt_to, req, None, forwarded=rec)
        fed.record_accepted(rt_from, push.instance_id, push.peer, push.revision, answer,
                            push.recipient)
    return pushes


def desired(rt):
    _serial, body = svc.desired_state(rt, "c1")
    return [p["instance"] for p in json.loads(body)["partitions"] if p["instance"]]


def test_the_far_node_gets_the_origins_requester_bound_to_the_origins_id(chain, alice):
    a, b, c = chain["a"], chain["b"], chain["c"]
    _created, origin = svc.request_instance(a, InstanceRequest.from_json(
        {"reference": "far", "software_url": URL, "requester": "person/alice",
         "sla": {"master": "c"}}), alice[1])
    assert origin["delegation"]["peer"] == "b"
    first = relay(a, b, "master/a")
    assert first[0].body["recipient"] == {**alice[1], "instance": origin["id"]}
    assert relay(a, b, "master/a") == []               # accepted: nothing due
    second = relay(b, c, "master/b")
    assert second[0].body["recipient"] == {**alice[1], "instance": origin["id"]}
    [far] = desired(c)
    assert far["recipient"] == {**alice[1], "instance": origin["id"]}
    assert far["id"] != origin["id"]
    assert sealed.bound_instance(far, far["id"]) == origin["id"]

    # a renewed certificate at the origin: pushed again (same revision), sealed again
    serial = svc.show_computer(c, "c1")["serial"]
    _key, renewed = identity()
    svc.request_instance(a, InstanceRequest.from_json(
        {"reference": "far", "software_url": URL, "requester": "person/alice",
         "sla": {"master": "c"}}), renewed)
    assert [p.recipient for p in relay(a, b, "master/a")] == [renewed["fingerprint"]]
    assert [p.recipient for p in relay(b, c, "master/b")] == [renewed["fingerprint"]]
    [far2] = desired(c)
    assert far2["recipient"] == {**renewed, "instance": origin["id"]}
    assert far2["revision"] == far["revision"]        # nothing to build again
    assert svc.show_computer(c, "c1")["serial"] > serial
    assert relay(a, b, "master/a") == [] and relay(b, c, "master/b") == []


def test_a_forward_without_a_known_certificate_names_no_recipient(chain):
    a = chain["a"]
    svc.request_instance(a, InstanceRequest.from_json(
        {"reference": "dev", "software_url": URL, "requester": "person/alice",
         "sla": {"master": "c"}}), None)
    [push] = fed.due_pushes(a)[0]
    assert "recipient" not in push.body and push.recipient is None


# -- the node: values bound to the origin's id open at the origin -------------------------
def test_the_node_seals_for_the_id_the_origin_shows(alice):
    key, recipient = alice
    here = {"id": "c-id", "recipient": {**recipient, "instance": "a-id"}}
    bound = sealed.bound_instance(here, "c-id")
    assert bound == "a-id"
    assert sealed.bound_instance({"id": "x", "recipient": recipient}, "x") == "x"
    assert sealed.bound_instance(None, "x") == "x"
    conn, _ = Sealer().connection(bound, {}, {"pw": "hunter2"}, here["recipient"])
    assert seal.open_sealed(conn["pw"], key, sealed.connection_context("a-id", "pw")) \
        == "hunter2"
    with pytest.raises(Exception):
        seal.open_sealed(conn["pw"], key, sealed.connection_context("c-id", "pw"))


# -- relaying: the sealed text only, shape-checked ---------------------------------------
def test_a_relaying_master_keeps_sealed_text_and_leaves_out_a_malformed_one(alice, caplog):
    good = seal.seal("v", seal.recipient_key(alice[1]["certificate"]), "connection/i/pw")
    out = relayed_connection("b", "i-1", {"url": "http://x/", "pw": good,
                                          "tk": sealed.PREFIX + "not*base64"})
    assert out == {"url": "http://x/", "pw": good}
    assert "'tk'" in caplog.text and "peer b" in caplog.text
    assert relayed_connection("b", "i-1", ["not", "a", "dict"]) == {}


def test_apply_changes_with_a_malformed_sealed_value_changes_the_rest(chain, alice):
    a, b = chain["a"], chain["b"]
    _created, origin = svc.request_instance(a, InstanceRequest.from_json(
        {"reference": "far", "software_url": URL, "requester": "person/alice",
         "sla": {"master": "c"}}), alice[1])
    relay(a, b, "master/a")
    [remote] = svc.list_instances(b, requester="master/a")
    good = seal.seal("v", seal.recipient_key(alice[1]["certificate"]), "connection/x/pw")
    remote = {**remote, "connection": {"url": "u", "pw": good, "bad": sealed.CLAIM + "2:AA"}}
    assert fed.apply_changes(a, "b", [remote]) == 1
    shown = svc.show_instance(a, origin["id"])
    assert shown["connection"] == {"url": "u", "pw": good}


# -- the partition's certificate travels back up the chain (--secret) --------------------
def test_the_chain_ends_with_the_far_partitions_certificate(alice):
    place = {"computer": "c1", "partition": "p0", "locality": {"continent": "asia"},
             "recipient": alice[1]}
    hops = _chain_of("b", {"placement": place})
    assert hops[-1]["recipient"] == alice[1]
    further = _chain_of("a", {"delegation": {"chain": [dict(h) for h in hops]}})
    inst = {"id": "a-id", "placement": None, "delegation": {"chain": list(further)}}
    assert partition_recipient(inst) == alice[1]
    assert partition_recipient({"placement": {"recipient": alice[1]}}) == alice[1]
    assert partition_recipient({"placement": None, "delegation": {"chain": []}}) is None
    assert _chain_of("b", {"placement": {**place, "recipient": None}})[-1].get(
        "recipient") is None
