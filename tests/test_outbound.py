"""The master's outbound policy (``master serve --outbound-allow``): the addresses it may
connect to when a body names a URL for it to call. The pure policy (a table), the client
that connects only to allowed addresses (a real listener on loopback proves nothing was
connected to), the two routes that take a URL (refused with 400 outbound_refused naming
the field, nothing written), and the long poll's limit (``--long-poll-max``).
Also: what the API answers for a CSR that does not parse, and gunicorn's own refusals,
both as the one JSON error body."""
import json
import socket
import threading
import time

import pytest

from slapfed.client import MasterClient, check_outbound
from slapfed.core.errors import InvalidInput, OutboundRefused
from slapfed.core.outbound import OutboundPolicy

LOOPBACK = OutboundPolicy.parse(["127.0.0.0/8,::1"])
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("address, allowed", [
    ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True),
    ("::ffff:127.0.0.1", True),          # IPv4 mapped into IPv6 counts as IPv4
    ("::ffff:10.0.0.1", False), ("10.0.0.1", False), ("169.254.169.254", False),
    ("0.0.0.0", False), ("fe80::1%eth0", False), ("not an address", False),
])
def test_the_policy_allows_its_networks_only(address, allowed):
    assert LOOPBACK.allows(address) is allowed


def test_no_networks_allow_everything():
    assert OutboundPolicy.parse([]).allows("203.0.113.9")
    assert not OutboundPolicy.parse([]).restricted


@pytest.mark.parametrize("values", [["10.0.0.0/33"], ["loopback"], ["127.0.0.0/8,,x"]])
def test_a_bad_network_is_refused_naming_the_option(values):
    with pytest.raises(InvalidInput) as exc:
        OutboundPolicy.parse(values)
    assert exc.value.details[0]["field"] == "outbound_allow"


@pytest.mark.parametrize("url, code", [
    ("https://10.0.0.1:443", "outbound_refused"), ("https://0", "outbound_refused"),
    ("https://[fd00::1]:8", "outbound_refused"),
    ("https://[", "invalid_input"), ("https://:8", "invalid_input"),
    ("https://127.0.0.1:99999", "invalid_input"),
])
def test_a_url_outside_the_policy_is_refused_naming_its_field(url, code):
    with pytest.raises(InvalidInput) as exc:
        check_outbound(LOOPBACK, url, "url")
    assert exc.value.code == code and exc.value.details[0]["field"] == "url"


def test_a_url_inside_the_policy_passes():
    check_outbound(LOOPBACK, "https://127.0.0.1:1")
    check_outbound(OutboundPolicy(), "https://203.0.113.9")     # off: not even resolved


@pytest.fixture
def listener():
    """A TCP listener on 127.0.0.1 counting the connections it accepts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted = []

    def accept():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1], accepted
    sock.close()
    t.join(5)


def test_the_client_connects_to_nothing_the_policy_refuses(listener):
    port, accepted = listener
    only_another = OutboundPolicy.parse(["127.0.0.2/32"])
    client = MasterClient(f"http://127.0.0.1:{port}", timeout=2, outbound=only_another)
    with pytest.raises(OutboundRefused) as exc:
        client.health()
    assert exc.value.details[0]["field"] == "url"
    assert "127.0.0.1" in exc.value.details[0]["problem"]
    # the same client allowed there does connect (and gets no HTTP answer)
    allowed = MasterClient(f"http://127.0.0.1:{port}", timeout=2, outbound=LOOPBACK)
    with pytest.raises(Exception):
        allowed.health()
    deadline = time.monotonic() + 5
    while not accepted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(accepted) >= 1      # only the allowed client's connection(s)
    accepted.clear()
    with pytest.raises(OutboundRefused):
        client.health()
    assert accepted == []


@pytest.fixture
def guarded_api(master_db, tmp_path):
    from slapfed.master import close_app, create_app
    app = create_app({"INSECURE": True, "DB": master_db, "DATA_DIR": str(tmp_path / "d"),
                      "OUTBOUND_ALLOW": ["127.0.0.0/8"], "LONG_POLL_MAX": 0.1})
    app.config["TESTING"] = False
    yield app.test_client()
    close_app(app)


def _refused(resp, field="url"):
    assert resp.status_code == 400, resp.get_data(as_text=True)
    err = resp.json["error"]
    assert err["code"] == "outbound_refused" and err["details"][0]["field"] == field
    return err


def test_pairing_with_a_peer_outside_the_policy_is_refused_and_writes_nothing(
        guarded_api, master_db):
    from conftest import last_tid
    before = last_tid(master_db)
    for token in ("slapfed-token", None):
        body = {"name": "far", "url": "https://10.9.9.9:8470", "ca_certificate": PEM}
        if token:
            body["token"] = token
        err = _refused(guarded_api.post("/api/v1/peers", json=body))
        assert "10.9.9.9" in err["message"]
    assert last_tid(master_db) == before
    assert guarded_api.get("/api/v1/peers").json["peers"] == []


def test_a_child_master_outside_the_policy_is_refused(guarded_api, master_db):
    from conftest import last_tid
    before = last_tid(master_db)
    _refused(guarded_api.put("/api/v1/instances/i-none/child-master", json={
        "name": "child", "url": "https://192.0.2.7", "ca_certificate": PEM,
        "pairing_token": "t"}))
    assert last_tid(master_db) == before


def test_a_long_poll_waits_at_most_the_masters_limit(guarded_api):
    started = time.monotonic()
    resp = guarded_api.get("/api/v1/federation/changes?wait=60")
    assert resp.status_code == 200 and resp.json["instances"] == []
    assert time.monotonic() - started < 5


def test_the_long_poll_limit_is_checked():
    from slapfed.services.runtime import MasterSettings
    with pytest.raises(InvalidInput) as exc:
        MasterSettings.from_config({"LONG_POLL_MAX": 61})
    assert exc.value.details[0]["field"] == "long_poll_max"


@pytest.mark.parametrize("path, body", [
    ("/api/v1/certificates", {"role": "admin", "name": "x", "csr": "0"}),
    ("/api/v1/node-certificates", {"token": "t", "csr": "not a csr"}),
    ("/api/v1/computers/c1/partitions/p1/certificate", {"csr": "0"}),
])
def test_a_csr_that_does_not_parse_is_refused_naming_the_field(guarded_api, path, body):
    resp = guarded_api.post(path, json=body)
    assert resp.status_code == 400
    assert resp.json["error"]["details"][0]["field"] == "csr"


@pytest.mark.parametrize("role, name, ok", [
    ("computer", "node-1", True), ("computer", "a@b", False),
    ("partition", "node-1/p0", True), ("partition", "node-1", False),
    ("person", "alice@example.org", True), ("admin", "-x", False),
])
def test_the_document_says_each_roles_names(role, name, ok):
    """The document's CertificateIssue refuses exactly the names ca.identity refuses."""
    import jsonschema
    from slapfed.ca import identity as ids
    from slapfed.master.openapi import openapi_document
    schema = {**openapi_document()["components"]["schemas"]["CertificateIssue"]}
    valid = jsonschema.Draft202012Validator(schema).is_valid(
        {"role": role, "name": name, "csr": "x"})
    try:
        ids.make(role, name)          # what POST /certificates does with role and name
        server = True
    except InvalidInput:
        server = False
    assert valid is ok and server is ok


def test_gunicorn_refusals_are_the_one_json_error_body():
    from slapfed.master.server import write_json_error
    a, b = socket.socketpair()
    try:
        write_json_error(a, 414, "URI Too Long", "Request Line is too large (4655 > 4094)")
        a.close()
        raw = b.makefile("rb").read()
    finally:
        b.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 ") and b"Content-Type: application/json" in head
    err = json.loads(body)["error"]
    assert err["code"] == "uri_too_long" and err["details"] == []
    assert f"X-Request-Id: {err['request_id']}".encode() in head


def test_a_replica_outside_the_policy_is_refused_and_writes_nothing(guarded_api, master_db):
    # the fence watch of a primary calls every replica's URL it records
    from conftest import last_tid
    before = last_tid(master_db)
    for url in ("http://0.0.0.0", "https://10.9.9.9:8470"):
        _refused(guarded_api.put("/api/v1/replication/replicas/r1",
                                 json={"url": url, "mode": "async"}))
    assert last_tid(master_db) == before
    ok = guarded_api.put("/api/v1/replication/replicas/r1",
                         json={"url": "https://127.0.0.1:8470", "mode": "async"})
    assert ok.status_code == 200, ok.get_data(as_text=True)
