"""A bounded fuzz of every write route of the master (hypothesis): hostile strings
(control characters, CR/LF mixes, ``${...}``, ``[section]``, ``=``, ``:``, lone
surrogates), deep nesting, wrong types, non-object bodies, raw bytes, wrong content
types and hostile path segments, mixed into a valid body of each route.

Never a 5xx; a 4xx comes in the one error body and writes nothing (neither the
database — its last transaction id — nor the CA's directory). The routes are read from
the app's url_map: a new write route is fuzzed automatically, and fails here until it
has a valid body in ``VALID``. The bulk runs through Flask's test client over a real
FileStorage (development mode: every caller is admin/local, so every body reaches its
use case); a few cases go over real HTTP to a real master process.
"""
import http.client
import json
import os
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import computer_body, last_tid
from slapfed.ca import identity as ids
from slapfed.ca.keys import csr_for, generate_key
from slapfed.core.wire import software_hash
from slapfed.master.openapi import openapi_document
from slapfed.services import federation as fed

pytestmark = pytest.mark.timeout(180)

API = "/api/v1"
URL = "/srv/releases/hello/software.cfg"
WRITE_METHODS = ("POST", "PUT", "PATCH")
EXAMPLES = 120         # per route: 16 routes x 120 attempts, ~12 s

HOSTILE = [
    "", " ", "\x00", "a\x00b", "\x01\x08\x0b\x0c\x1b\x7f", "\t", "a\nb", "a\rb", "a\r\nb",
    "\r\n\r\n", "\n[buildout]\nparts = evil\n", "[section]", "[partition]\nid = x",
    "${partition:path}", "${:_buildout_section_name_}", "$${x}", "${", "=", "a = b",
    "key=value\nother=1", ":", "a:b", "k:\n  v", "\u2028\u2029\u0085", "é", "😀",
    "\ud800", "a\udfffb", "\udc00\ud800", "../../etc/passwd", "/etc/passwd", "..",
    "%s%n%x", "{x}", "'", '"', "\\", "<script>alert(1)</script>", "x" * 300, "x" * 5000,
    "-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----", "https://127.0.0.1:9",
    "file:///etc/passwd", "javascript:alert(1)", "0", "-1", "1e309", "true", "null",
]
HOSTILE_KEYS = ["", "\x00", "a\nb", "${x}", "[s]", "=", ":", "k=v", "\ud800", "__proto__",
                "x" * 300, "parts", "recipe"]
# path segments, as sent (percent-encoded): a surrogate's UTF-8-like bytes, invalid UTF-8
HOSTILE_SEGMENTS = [quote(s, safe="") for s in ("..", "a\r\nb", "${x}", "\x00", "[s]", "=:",
                                                "x" * 300, "é", " ")] + [
    "%2e%2e", "%ED%A0%80", "%FF", "%C0%AF"]
CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", None,
                 "multipart/form-data; boundary=x", "application/json; charset=utf-16"]


def deep_marker(levels: int) -> str:
    return f"@@DEEP-{levels}@@"


SCALARS = (st.sampled_from(HOSTILE) | st.text(max_size=20) | st.integers()
           | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | st.none()
           | st.sampled_from([deep_marker(33), deep_marker(40), deep_marker(3000)]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(HOSTILE_KEYS) | st.text(max_size=8),
                                        inner, max_size=3), max_leaves=8)


def encode(body) -> bytes:
    """JSON text of ``body`` (lone surrogates as \\u escapes), deep markers expanded."""
    text = json.dumps(body)
    for levels in (33, 40, 3000):
        text = text.replace(json.dumps(deep_marker(levels)),
                            "[" * levels + "1" + "]" * levels)
    return text.encode()


# -- the world --------------------------------------------------------------------------
def csr_pem() -> str:
    return csr_for(generate_key()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from slapfed.master import close_app, create_app, runtime_of
    from slapfed.store import open_db
    base = tmp_path_factory.mktemp("fuzz")
    db = open_db(None, str(base / "master"))
    app = create_app({"INSECURE": True, "DB": db, "CA_DIR": str(base / "ca"),
                      "MASTER_NAME": "fuzz"})
    app.config["TESTING"] = False
    client = app.test_client()
    try:
        assert client.post(f"{API}/computers", json=computer_body("c1", 4)).status_code == 201
        assert client.post(f"{API}/computers/c1/software", json={"url": URL}).status_code == 200
        assert client.put(f"{API}/computers/c1/software/{software_hash(URL)}/status",
                          json={"status": "installed", "software_types": ["default"]}
                          ).status_code == 200
        inst = client.post(f"{API}/instances", json={"reference": "base",
                                                     "software_url": URL}).json
        ca = runtime_of(app).ca
        record = ca.issue(ids.person("victim"), generate_key().public_key())
        fed.save_peer(runtime_of(app), "peer-1", "https://127.0.0.1:9", ca.certificate_pem,
                      credentials=None)
        world = {"app": app, "client": client, "db": db, "ca_dir": base / "ca",
                 "ca_pem": ca.certificate_pem, "csr": csr_pem(), "inst": inst,
                 "args": {"cid": "c1", "pid": inst["placement"]["partition"],
                          "iid": inst["id"], "software_hash": software_hash(URL),
                          "serial": record.serial, "name": "peer-1"}}
        yield world
    finally:
        close_app(app)
        db.close()


def valid_bodies(w) -> dict:
    """A body each write route accepts (endpoint -> body); the fuzz mutates it."""
    inst = w["inst"]
    request = {"reference": "fz", "software_url": URL, "software_type": "default",
               "parameters": {"a": "b"}, "sla": {}, "state": "started", "shared": False}
    return {
        "computers.register": computer_body("c1", 4),
        "computers.set_facts": {"lan": "lan-1", "labels": {"rack": "r1"}},
        "computers.supply": {"url": URL, "state": "available"},
        "computers.report_software": {"status": "installed", "log_tail": "",
                                      "software_types": ["default"]},
        "computers.report_partition": {"instance_id": inst["id"], "revision": 1,
                                       "state": "started", "connection": {"url": "x"}},
        "instances.request_instance": request,
        "instances.explain_placement": dict(request),
        "instances.change_state": {"state": "started"},
        "instances.register_child_master": {"name": "child", "url": "https://127.0.0.1:9",
                                            "ca_certificate": w["ca_pem"]},
        "identity.redeem_token": {"token": "t" * 32, "csr": w["csr"]},
        "identity.certify_partition": {"csr": w["csr"]},
        "identity.issue_certificate": {"role": "person", "name": "fz", "csr": w["csr"]},
        "identity.revoke_certificate": {"reason": "superseded"},
        "identity.create_token": {"computer": "c9"},
        "federation.add_peer": {"name": "peer-1", "url": "https://127.0.0.1:9",
                                "ca_certificate": w["ca_pem"]},
        "federation.update_peer": {"trust": "observe"},
        "federation.set_policy": {"auto": True, "rules": []},
        "replication.invite": {"name": "r-fz", "ttl": 60},
        "replication.register_replica": {"url": "https://127.0.0.1:9", "mode": "async"},
        "replication.promote": {},
        "computers.declare_lost": {"reason": "fuzz", "dry_run": True},
        "computers.wipe": {},
        "computers.report_moved": {"instance_id": inst["id"], "state": "quarantined"},
        "federation.declare_peer_lost": {"reason": "fuzz", "dry_run": True},
        "accounting.report_usage": {
            "report_id": "c1:fz.1", "start": "2026-12-01T12:00:00Z",
            "end": "2026-12-01T12:01:00Z",
            "partitions": [{"partition": inst["placement"]["partition"],
                            "instance_id": inst["id"],
                            "usage": [{"resource": "cpu_seconds", "quantity": 1.5},
                                      {"resource": "x-requests", "quantity": 3}],
                            "incidents": [{"kind": "promise", "name": "p",
                                           "start": "2026-12-01T12:00:10Z", "end": None,
                                           "detail": "down"}]}]},
        "accounting.set_prices": {"currency": "EUR", "precision": 2, "prices": [
            {"resource": "cpu_seconds", "price": "0.01", "per": "3600"}]},
    }


def write_routes(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) of every route that takes a body, from the url_map."""
    return sorted((rule.endpoint, method, rule.rule) for rule in app.url_map.iter_rules()
                  if rule.rule.startswith(API + "/")
                  for method in set(rule.methods) & set(WRITE_METHODS))


def schema_fields(rule: str, method: str) -> list[str]:
    """The body's field names as the OpenAPI document declares them."""
    path = rule[len(API):].replace("<", "{").replace(">", "}")
    op = openapi_document()["paths"][path][method.lower()]
    ref = op["requestBody"]["content"]["application/json"]["schema"].get("$ref", "")
    schema = openapi_document()["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
    return sorted(schema.get("properties", {}))


def ca_snapshot(ca_dir: Path) -> list:
    return sorted((str(p.relative_to(ca_dir)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in ca_dir.rglob("*") if p.is_file())


@st.composite
def attempts(draw, base: dict, fields: list[str], args: dict, rule: str):
    """(path, content type, body bytes): mostly a valid body with a few hostile changes."""
    path = rule
    for arg, value in args.items():
        segment = quote(value, safe="")
        if draw(st.integers(0, 9)) == 0:
            segment = draw(st.sampled_from(HOSTILE_SEGMENTS))
        path = path.replace(f"<{arg}>", segment)
    content_type = "application/json"
    if draw(st.integers(0, 14)) == 0:
        content_type = draw(st.sampled_from(CONTENT_TYPES))
    kind = draw(st.integers(0, 19))
    if kind == 0:                                          # not an object
        body = encode(draw(st.lists(VALUES, max_size=2) | SCALARS))
    elif kind == 1:                                        # bytes
        body = draw(st.binary(max_size=64) | st.sampled_from(
            [b"{", b'{"a": 1', b"\xff\xfe{}", b'{"a": NaN}', b"[" * 5000, b"{}" * 3]))
    else:                                                  # a valid body, changed
        body = json.loads(json.dumps(base))
        keys = st.sampled_from(sorted(set(fields) | set(base)) or ["x"])
        for _ in range(draw(st.integers(1, 3))):
            op = draw(st.integers(0, 5))
            key = draw(keys | st.sampled_from(HOSTILE_KEYS))
            if op == 0:
                body.pop(key, None)
            elif op == 1 and isinstance(body.get(key), dict):
                body[key][draw(st.sampled_from(HOSTILE_KEYS) | st.text(max_size=6))] = \
                    draw(VALUES)
            elif op == 2 and isinstance(body.get(key), list) and body[key]:
                body[key][0] = draw(VALUES)
            else:
                body[key] = draw(VALUES)
        body = encode(body)
    return path, content_type, body


def test_every_write_route_has_a_valid_body(world):
    """A new write route fails here until the fuzz knows a body it accepts."""
    known = valid_bodies(world)
    routes = write_routes(world["app"])
    missing = sorted({e for e, _m, _r in routes} - set(known))
    assert not missing, f"write routes the fuzz does not know (add them to valid_bodies): " \
                        f"{missing}"
    assert len(routes) >= len(known)
    client = world["client"]
    for endpoint, method, rule in routes:       # each valid body is accepted as it is
        path = rule
        for arg in world["args"]:
            path = path.replace(f"<{arg}>", quote(world["args"][arg], safe=""))
        if endpoint in ("identity.redeem_token", "federation.add_peer",
                        "replication.promote", "computers.report_moved"):
            continue          # a real token, a paired peer, a replica, a partition whose
                              # instance moved away (a lost computer): refused by design
        resp = client.open(path, method=method, json=known[endpoint])
        assert resp.status_code < 300, (endpoint, resp.status_code, resp.json)


def test_fuzz_every_write_route(world):
    app, client, db = world["app"], world["client"], world["db"]
    known = valid_bodies(world)
    seen = {}
    for endpoint, method, rule in write_routes(app):
        base = known.get(endpoint)
        assert base is not None, f"{endpoint}: add a valid body to valid_bodies"
        args = {a: v for a, v in world["args"].items() if f"<{a}>" in rule}
        fields = schema_fields(rule, method)

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(attempt=attempts(base, fields, args, rule))
        def check(attempt):
            path, content_type, data = attempt
            before_db, before_ca = last_tid(db), ca_snapshot(world["ca_dir"])
            headers = {} if content_type is None else {"Content-Type": content_type}
            resp = client.open(path, method=method, data=data, headers=headers)
            status = resp.status_code
            seen.setdefault(endpoint, set()).add(status)
            assert status < 500, (endpoint, path, data[:300], resp.get_data(as_text=True))
            if status >= 400:
                err = resp.json["error"]
                assert set(err) == {"code", "message", "details", "request_id"} \
                    and err["message"]
                assert last_tid(db) == before_db, (endpoint, status, err)
                assert ca_snapshot(world["ca_dir"]) == before_ca, (endpoint, status, err)
                resp.get_data(as_text=True).encode("utf-8")    # the answer is UTF-8 text

        check()
    # every route was reached with bodies it refused and (most) with bodies it took
    assert set(seen) == {e for e, _m, _r in write_routes(app)}
    assert all(any(s >= 400 for s in statuses) for statuses in seen.values()), seen


# -- a few cases over real HTTP -----------------------------------------------------------
RAW_CASES = [
    # (name, method, path, content type, body, status, code)
    ("form-post", "POST", "/instances", "application/x-www-form-urlencoded",
     b"reference=csrf&software_url=/srv/x", 415, "unsupported_media_type"),
    ("text-plain-json", "POST", "/instances", "text/plain",
     b'{"reference": "csrf", "software_url": "/srv/x"}', 415, "unsupported_media_type"),
    ("no-content-type", "POST", "/instances", None,
     b'{"reference": "csrf", "software_url": "/srv/x"}', 415, "unsupported_media_type"),
    ("multipart", "POST", "/computers", "multipart/form-data; boundary=b",
     b"--b\r\nContent-Disposition: form-data; name=id\r\n\r\nc9\r\n--b--\r\n", 415,
     "unsupported_media_type"),
    ("policy-null", "PUT", "/federation/policy", "application/json", b"null", 400,
     "invalid_input"),
    ("deep-parameters", "POST", "/instances", "application/json",
     b'{"reference": "d", "software_url": "/srv/x", "parameters": {"a": ' + b"[" * 5000
     + b"]" * 5000 + b"}}", 400, "invalid_input"),
    ("surrogate-reference", "POST", "/instances", "application/json",
     b'{"reference": "\\ud800", "software_url": "/srv/x"}', 400, "invalid_input"),
    ("array-body", "PUT", "/federation/policy", "application/json", b"[]", 400,
     "invalid_input"),
    ("deep-sla", "POST", "/placements", "application/json",
     b'{"reference": "d", "software_url": "/srv/x", "sla": ' + b'{"a":' * 3000 + b"1"
     + b"}" * 3000 + b"}", 400, "invalid_input"),
]


@pytest.fixture(scope="module")
def dev_master(tmp_path_factory):
    from conftest import start_master_process, stop_process
    data = tmp_path_factory.mktemp("fuzz-http") / "master"
    proc, url = start_master_process(str(data))
    try:
        yield url, data
    finally:
        stop_process(proc, timeout=15)


def raw(url: str, method: str, path: str, content_type, body: bytes):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        headers = {"Content-Length": str(len(body)), "Origin": "https://evil.example"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        conn.request(method, API + path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("name, method, path, content_type, body, status, code", RAW_CASES,
                         ids=[c[0] for c in RAW_CASES])
def test_hostile_requests_over_real_http_are_refused_and_write_nothing(
        dev_master, name, method, path, content_type, body, status, code):
    url, data = dev_master
    _, before = raw(url, "GET", "/instances", None, b"")
    got, answer = raw(url, method, path, content_type, body)
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert set(answer["error"]) == {"code", "message", "details", "request_id"}
    _, after = raw(url, "GET", "/instances", None, b"")
    assert after == before
    _, policy = raw(url, "GET", "/federation/policy", None, b"")
    assert policy == {"rules": [], "auto": True} or policy.get("auto") is True
    log = (data / "serve.log").read_text()
    assert "Traceback" not in log, log[-3000:]
