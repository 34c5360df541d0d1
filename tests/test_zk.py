"""Sealed connection parameters, below the processes: the shape a master checks, the
node's sealer and when it seals again, the master keeping the requester's certificate
(and a renewed one) in the desired state, and the CLI opening what was sealed to it."""
import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slapfed import services as svc
from slapfed.ca import seal
from slapfed.core import sealed
from slapfed.core.errors import InvalidInput
from slapfed.core.states import FAILED, STARTED, STOPPED
from slapfed.core.wire import (ComputerRegistration, InstanceRequest, PartitionReport, Supply,
                               check_connection)
from slapfed.node.plan import PartitionRecord
from slapfed.node.sealing import Sealer, reseal_due

URL = "/srv/releases/hello/software.cfg"


def identity(name="person/alice"):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return key, {"certificate": pem, "fingerprint": seal.fingerprint(pem)}


@pytest.fixture(scope="module")
def alice():
    return identity()


def well_formed(alice):
    return seal.seal("s3cret", seal.recipient_key(alice[1]["certificate"]), "connection/i/k")


# -- the shape a relay checks ---------------------------------------------------------
@pytest.mark.parametrize("value, problem", [
    ("plain value", None),
    ("slapfed-sealedish", None),
    ("slapfed-sealed:2:AAAA", "unknown version"),
    ("slapfed-sealed:1:" + "A" * 40, "shorter than an HPKE output"),
    ("slapfed-sealed:1:" + "A" * 200 + "+/", "not unpadded base64url"),
    ("slapfed-sealed:1:" + "A" * 201, "not unpadded base64url"),
    ("slapfed-sealed:1:" + "A" * (sealed.MAX_SEALED), "longer than"),
], ids=["plain", "near-prefix", "version", "short", "alphabet", "length-mod-4", "too-long"])
def test_a_value_claiming_to_be_sealed_must_have_the_shape_of_one(value, problem):
    found = sealed.shape_problem(value)
    assert (found is None) if problem is None else (problem in found)


def test_a_sealed_value_passes_the_shape_check(alice):
    assert sealed.shape_problem(well_formed(alice)) is None


def test_a_report_with_a_malformed_sealed_value_is_refused_naming_the_field(alice):
    with pytest.raises(InvalidInput) as err:
        check_connection({"url": "http://x/", "password": "slapfed-sealed:1:AAAA"})
    assert err.value.details[0]["field"] == "connection.password"
    with pytest.raises(InvalidInput) as err:
        PartitionReport.from_json({"instance_id": "i-1", "revision": 1, "state": STARTED,
                                   "connection": {"password": "slapfed-sealed:9:xx"}})
    assert "connection.password" in json.dumps(err.value.details)
    ok = PartitionReport.from_json({"instance_id": "i-1", "revision": 1, "state": STARTED,
                                    "connection": {"password": well_formed(alice)}})
    assert sealed.is_sealed(ok.connection["password"])


# -- the node's sealer ------------------------------------------------------------------
def test_the_sealer_seals_only_the_secrets_and_each_opens_only_for_its_place(alice):
    key, recipient = alice
    conn, withheld = Sealer().connection("i-7", {"url": "http://h/", "password": "stale"},
                                         {"password": "pw-1", "token": "tk-2"}, recipient)
    assert withheld == {} and conn["url"] == "http://h/"
    assert all(sealed.is_sealed(conn[k]) for k in ("password", "token"))
    assert seal.open_sealed(conn["password"], key, "connection/i-7/password") == "pw-1"
    for context in ("connection/i-8/password", "connection/i-7/token"):
        with pytest.raises(seal.SealedValueInvalid):
            seal.open_sealed(conn["password"], key, context)


def test_an_unchanged_secret_is_sent_as_the_same_text_a_changed_one_is_sealed_again(alice):
    _key, recipient = alice
    sealer = Sealer()
    first, _ = sealer.connection("i-1", {}, {"pw": "a"}, recipient)
    again, _ = sealer.connection("i-1", {}, {"pw": "a"}, recipient)
    changed, _ = sealer.connection("i-1", {}, {"pw": "b"}, recipient)
    _other_key, renewed = identity()
    resealed, _ = sealer.connection("i-1", {}, {"pw": "b"}, renewed)
    assert first == again
    assert changed["pw"] != first["pw"] and resealed["pw"] != changed["pw"]


@pytest.mark.parametrize("recipient", [
    None, {"certificate": "not a certificate", "fingerprint": "ab"}, "wrong-fingerprint"],
    ids=["none", "not-a-certificate", "fingerprint-mismatch"])
def test_a_secret_without_a_usable_recipient_is_withheld_never_sent_in_clear(alice,
                                                                              recipient):
    if recipient == "wrong-fingerprint":
        recipient = {**alice[1], "fingerprint": "00" * 32}
    conn, withheld = Sealer().connection("i-1", {"url": "u", "pw": "clear?"}, {"pw": "x"},
                                         recipient)
    assert conn == {"url": "u"} and set(withheld) == {"pw"}


def _desired(fp, revision=3, iid="i-1"):
    inst = {"id": iid, "revision": revision}
    if fp:
        inst["recipient"] = {"certificate": "-", "fingerprint": fp}
    return {"partitions": [{"id": "p0", "instance": inst}]}


@pytest.mark.parametrize("desired, record, due", [
    (_desired("new"), PartitionRecord("i-1", 3, STARTED, sealed_for="old"), ["p0"]),
    (_desired("new"), PartitionRecord("i-1", 3, STOPPED, sealed_for=None), ["p0"]),
    (_desired("same"), PartitionRecord("i-1", 3, STARTED, sealed_for="same"), []),
    (_desired(None), PartitionRecord("i-1", 3, STARTED), []),
    (_desired("new"), PartitionRecord("i-1", 2, STARTED, sealed_for="old"), []),
    (_desired("new"), PartitionRecord("i-1", 3, FAILED, sealed_for="old"), []),
    (_desired("new", iid="i-2"), PartitionRecord("i-1", 3, STARTED, sealed_for="old"), []),
], ids=["renewed", "from-before-sealing", "unchanged", "no-recipient", "revision-pending",
        "failed", "other-instance"])
def test_a_partition_seals_again_when_its_requesters_certificate_changed(desired, record,
                                                                          due):
    assert reseal_due(desired, {"p0": record}) == due


# -- the master keeps the requester's certificate ------------------------------------------
@pytest.fixture
def rt(master_runtime, master_factories):
    svc.register_computer(master_runtime, ComputerRegistration.from_json(
        master_factories.computer("c1", 4)))
    svc.supply(master_runtime, "c1", Supply(URL))
    return master_runtime


def request(rt, reference, recipient, requester="person/alice"):
    return svc.request_instance(rt, InstanceRequest.from_json(
        {"reference": reference, "software_url": URL, "requester": requester}), recipient)[1]


def desired_instances(rt):
    _serial, body = svc.desired_state(rt, "c1")
    return {p["instance"]["reference"]: p["instance"] for p in json.loads(body)["partitions"]
            if p["instance"]}


def test_the_desired_state_names_the_requesters_certificate_and_a_renewed_one(rt, alice):
    _key, recipient = alice
    a = request(rt, "a", recipient)
    request(rt, "b", recipient)
    request(rt, "c", None, requester="person/bob")
    found = desired_instances(rt)
    assert found["a"]["recipient"] == recipient == found["b"]["recipient"]
    assert "recipient" not in found["c"]
    serial = svc.show_computer(rt, "c1")["serial"]
    _new_key, renewed = identity()
    again = request(rt, "a", renewed)           # the same request, a renewed certificate
    assert again["revision"] == a["revision"]   # nothing to build again
    assert svc.show_computer(rt, "c1")["serial"] > serial
    found = desired_instances(rt)
    assert found["a"]["recipient"] == renewed == found["b"]["recipient"]


def test_the_cached_desired_state_follows_a_renewed_certificate(rt, master_db, alice):
    renderer = svc.DesiredStateRenderer(master_db)
    try:
        request(rt, "a", alice[1])
        s, _body = svc.desired_state(rt, "c1", (), renderer)
        _new_key, renewed = identity()
        request(rt, "a", renewed)
        s2, body = svc.desired_state(rt, "c1", (s,), renderer)
        assert s2 > s
        inst = [p["instance"] for p in json.loads(body)["partitions"] if p["instance"]][0]
        assert inst["recipient"] == renewed
    finally:
        renderer.close()


def test_the_master_stores_what_the_node_sealed_and_nothing_else(rt, alice):
    key, recipient = alice
    inst = request(rt, "a", recipient)
    conn, _ = Sealer().connection(inst["id"], {"url": "http://h/"}, {"pw": "hunter2"},
                                  recipient)
    p = inst["placement"]
    shown = svc.report_partition(rt, "c1", p["partition"], PartitionReport.from_json(
        {"instance_id": inst["id"], "revision": inst["revision"], "state": STARTED,
         "connection": conn}))
    assert "hunter2" not in json.dumps(shown)
    assert seal.open_sealed(shown["connection"]["pw"], key,
                            sealed.connection_context(inst["id"], "pw")) == "hunter2"


# -- the CLI opens what was sealed to it ----------------------------------------------
def _client_config(tmp_path, monkeypatch, key):
    path = tmp_path / "identity.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    config = tmp_path / "client.json"
    config.write_text(json.dumps({"key": str(path)}))
    monkeypatch.setenv("SLAPFED_CONFIG", str(config))


def test_the_cli_opens_its_values_and_names_one_that_does_not_open(tmp_path, monkeypatch,
                                                                    alice):
    from slapfed.cli import sealed as cli_sealed
    key, recipient = alice
    _client_config(tmp_path, monkeypatch, key)
    conn, _ = Sealer().connection("i-1", {"url": "u"}, {"pw": "one", "tk": "two"}, recipient)
    body = conn["tk"][len(sealed.PREFIX):]
    conn["tk"] = sealed.PREFIX + body[:-2] + ("AA" if body[-2:] != "AA" else "BB")
    moved = Sealer().connection("i-2", {}, {"pw": "elsewhere"}, recipient)[0]["pw"]
    inst = {"id": "i-1", "reference": "web", "connection": {**conn, "moved": moved}}
    opened, problems = cli_sealed.open_instance(inst)
    assert opened["connection"]["pw"] == "one" and opened["connection"]["url"] == "u"
    assert set(problems) == {"tk", "moved"} and opened["sealed"] == ["moved", "pw", "tk"]
    assert "does not open" in problems["tk"]
    with pytest.raises(SystemExit) as done:
        cli_sealed.report_unopened(opened, problems)
    assert done.value.code == 3


def test_the_cli_without_a_key_says_so(tmp_path, monkeypatch, alice):
    from slapfed.cli import sealed as cli_sealed
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "none.json"))
    conn, _ = Sealer().connection("i-1", {}, {"pw": "one"}, alice[1])
    _opened, problems = cli_sealed.open_instance({"id": "i-1", "reference": "w",
                                                  "connection": conn})
    assert "no key in the client config" in problems["pw"]


# -- the publish recipe declares secrets ------------------------------------------------
def test_the_publish_recipe_puts_declared_secrets_apart(tmp_path):
    from slapfed.recipe import PublishRecipe
    public, secret = tmp_path / "c.json", tmp_path / "s.json"
    buildout = {"partition": {"connection-file": str(public),
                              "secret-connection-file": str(secret)}}
    options = {"recipe": "slapfed:publish", "url": "http://x/", "password": "pw",
               "token": "tk", "secret": "password\n token"}
    assert PublishRecipe(buildout, "publish", options).install() == [str(public), str(secret)]
    assert json.loads(public.read_text()) == {"url": "http://x/"}
    assert json.loads(secret.read_text()) == {"password": "pw", "token": "tk"}
    assert secret.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("buildout, options, problem", [
    ({"partition": {"connection-file": "/nonexistent/c.json"}},
     {"url": "u", "pw": "x", "secret": "pw"}, "secret-connection-file"),
    ({"partition": {"connection-file": "/x", "secret-connection-file": "/y"}},
     {"url": "u", "secret": "pw"}, "does not publish: pw"),
], ids=["node-that-cannot-seal", "unknown-name"])
def test_the_publish_recipe_refuses_rather_than_publish_a_secret_in_clear(buildout, options,
                                                                          problem):
    import zc.buildout

    from slapfed.recipe import PublishRecipe
    with pytest.raises(zc.buildout.UserError, match=problem):
        PublishRecipe(buildout, "publish", {"recipe": "slapfed:publish", **options}).install()


# -- whose certificate the master keeps (over the Flask app, certificates in the environ) --
def test_the_master_keeps_the_certificate_of_who_requests_for_itself_only(authz_world):
    w = authz_world
    from slapfed.ca.seal import recipient_from_der

    def recipient_of(reference, computer):
        doc = w.ok(w.call(f"node_{computer[-1]}", "GET",
                          f"/computers/{computer}/desired-state"))
        found = [p["instance"] for p in doc["partitions"]
                 if p["instance"] and p["instance"]["reference"] == reference]
        return found[0].get("recipient")

    assert recipient_of("a-root", "node-x") == recipient_from_der(w.certs["person_a"])
    assert recipient_of("a-child", "node-y") == recipient_from_der(w.certs["partition_a"])
    # a peer master forwarding a delegation is no requester: nothing is sealed to it
    assert recipient_of("m-root", "node-x") is None


# -- secret parameters: sealed to the partition, opened by its node ----------------------
def test_secret_parameters_open_with_the_partitions_key_only_for_their_place(alice):
    from slapfed.node.sealing import open_parameters
    key, recipient = alice
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = seal.recipient_key(recipient["certificate"])
    params = {"greeting": "hi", "db": seal.seal("s3", public, "parameter/i-1/db")}
    assert open_parameters("i-1", params, pem, "p0") == ({"greeting": "hi", "db": "s3"}, "")
    _opened, problem = open_parameters("i-2", params, pem, "p0")     # moved elsewhere
    assert "secret parameter 'db' does not open with the key of partition p0" in problem
    _opened, problem = open_parameters("i-1", params, None, "p0")
    assert "partition p0 has no key" in problem


def test_a_request_may_mark_a_secret_parameter_pending_but_not_forge_a_sealed_one():
    from slapfed.node.sealing import pending_parameters
    ok = InstanceRequest.from_json({"reference": "w", "software_url": URL,
                                    "parameters": {"db": sealed.PENDING, "n": "1"}})
    assert pending_parameters(ok.parameters) == ["db"]
    with pytest.raises(InvalidInput) as err:
        InstanceRequest.from_json({"reference": "w", "software_url": URL,
                                   "parameters": {"db": "slapfed-sealed:1:AAAA"}})
    assert "parameters.db" in json.dumps(err.value.details)


def test_the_instance_answer_names_its_partitions_certificate_once_issued(rt, alice):
    inst = request(rt, "a", alice[1])
    assert inst["placement"]["recipient"] is None
    _key, partition_cert = identity("partition/c1/p000")
    svc.record_partition_certificate(rt, "c1", inst["placement"]["partition"],
                                     partition_cert)
    conn = rt.db.open()
    try:
        shown = svc.show_instance(conn, inst["id"])
    finally:
        conn.close()
    assert shown["placement"]["recipient"] == \
        partition_cert


def test_an_opened_secret_parameter_reaches_buildout_through_the_one_encoder(alice):
    """The master never sees a secret parameter, so it cannot refuse a hostile one: once
    the node opens it, it is a value like any other, written by the encoder."""
    from slapfed.core import cfgvalue
    from slapfed.node import buildout as nb
    from slapfed.node.layout import PartitionConfig, Paths
    from slapfed.node.sealing import open_parameters
    key, recipient = alice
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    hostile = "s3\r\n[x]\nrecipe = evil\n${buildout:directory}"
    sealed_value = seal.seal(hostile, seal.recipient_key(recipient["certificate"]),
                             "parameter/i1/db")
    opened, problem = open_parameters("i1", {"db": sealed_value}, pem, "p0")
    assert (opened, problem) == ({"db": hostile}, "")
    inst = {"id": "i1", "reference": "web-1", "software_url": "/srv/r/software.cfg",
            "software_hash": "0123456789abcdef0123456789abcdef", "software_type": "default",
            "revision": 1, "parameters": opened, "shared_instances": []}
    text = nb.render_instance_cfg("/p.cfg", Paths("/n"), PartitionConfig(
        "p0", "127.31.0.1", 10000, 10), "c1", inst, "/s")
    assert f"\ndb = {cfgvalue.encode(hostile)}\n" in text
    assert "[x]" not in text and "evil" not in text and "${buildout:directory}" not in text
