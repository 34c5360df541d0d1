"""The HTTP API through Flask's test client over a real FileStorage: every route, the
one error body for every error class, invalid input writes nothing, 304 when unchanged."""
import inspect

import pytest

from slapfed import services
from slapfed.core import errors
from slapfed.core.wire import software_hash
from slapfed.master.openapi import openapi_document
from slapfed.store import LATEST_GENERATION

API = "/api/v1"
URL = "/srv/releases/hello/software.cfg"
H = software_hash(URL)


@pytest.fixture
def ready(api, master_factories):
    """A master with computer c1 (3 partitions) supplied URL."""
    assert api.post(f"{API}/computers", json=master_factories.computer("c1", 3)).status_code == 201
    assert api.post(f"{API}/computers/c1/software", json={"url": URL}).status_code == 200
    return api


def new_instance(api, reference="web-1", **extra):
    r = api.post(f"{API}/instances", json={"reference": reference, "software_url": URL, **extra})
    assert r.status_code == 201, r.json
    return r.json


def assert_error(resp, status, code):
    assert resp.status_code == status, resp.data
    assert resp.mimetype == "application/json"
    body = resp.json
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert body["error"]["request_id"] == resp.headers["X-Request-Id"]
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    return body["error"]


# -- every route -------------------------------------------------------------------
def test_health(api):
    r = api.get(f"{API}/health")
    assert r.status_code == 200
    assert r.json["status"] == "ok" and r.json["generation"] == LATEST_GENERATION and r.json["version"]


def test_computer_routes(ready, master_factories):
    again = ready.post(f"{API}/computers", json=master_factories.computer("c1", 4, lan="l"))
    assert again.status_code == 200 and len(again.json["partitions"]) == 4
    listed = ready.get(f"{API}/computers").json["computers"]
    assert [c["id"] for c in listed] == ["c1"]
    shown = ready.get(f"{API}/computers/c1").json
    assert shown["lan"] == "l" and shown["software"][0]["hash"] == H
    assert_error(ready.get(f"{API}/computers/nope"), 404, "not_found")


def test_software_routes(ready):
    r = ready.put(f"{API}/computers/c1/software/{H}/status",
                  json={"status": "installed", "software_types": ["default"]})
    assert r.status_code == 200 and r.json["status"] == "installed"
    r = ready.delete(f"{API}/computers/c1/software/{H}")
    assert r.status_code == 200 and r.json["state"] == "destroyed"
    r = ready.post(f"{API}/computers/c1/software", json={"url": URL, "state": "available"})
    assert r.json["state"] == "available"
    assert_error(ready.delete(f"{API}/computers/c1/software/{'0' * 32}"), 404, "not_found")


def test_instance_routes(ready):
    inst = new_instance(ready, parameters={"a": 1})
    again = ready.post(f"{API}/instances", json={"reference": "web-1", "software_url": URL,
                                                 "parameters": {"a": 1}})
    assert again.status_code == 200 and again.json["revision"] == inst["revision"]
    assert ready.get(f"{API}/instances/{inst['id']}").json["id"] == inst["id"]
    listed = ready.get(f"{API}/instances", query_string={"requester": "anonymous",
                                                          "state": "started"}).json
    assert [i["id"] for i in listed["instances"]] == [inst["id"]]
    assert ready.get(f"{API}/instances", query_string={"status": "started"}).json == \
        {"instances": [], "next": None}
    stopped = ready.put(f"{API}/instances/{inst['id']}/state", json={"state": "stopped"})
    assert stopped.status_code == 200 and stopped.json["requested_state"] == "stopped"
    gone = ready.delete(f"{API}/instances/{inst['id']}")
    assert gone.status_code == 200 and gone.json["requested_state"] == "destroyed"


def test_partition_report_route(ready):
    inst = new_instance(ready)
    p = inst["placement"]
    url = f"{API}/computers/c1/partitions/{p['partition']}/status"
    r = ready.put(url, json={"instance_id": inst["id"], "revision": 1, "state": "started",
                             "connection": {"url": "http://x"}})
    assert r.status_code == 200 and r.json["status"]["state"] == "started"
    assert r.json["connection"] == {"url": "http://x"}
    err = assert_error(ready.put(url, json={"instance_id": "i-other", "revision": 1,
                                            "state": "started"}), 409, "conflict")
    assert "i-other" in err["message"]


def test_a_large_desired_state_goes_gzip_compressed_to_the_node_and_back(
        master_app, serve_app):
    """A node's client takes gzip: a document past GZIP_MIN_BYTES comes compressed with
    a weak ETag (the same serial in another coding), decoded by the transport to the
    document a plain read gives; the weak ETag sent back gets 304."""
    import http.client
    import json as _json
    from urllib.parse import urlsplit
    from conftest import computer_body
    from slapfed.client import MasterClient
    from slapfed.services.desired import GZIP_MIN_BYTES
    url = serve_app(master_app)
    client = MasterClient(url)
    client.register_computer(computer_body("big", partitions=300))
    etag, doc = client.desired_state("big")
    assert etag.startswith('W/"') and len(doc["partitions"]) == 300
    assert client.desired_state("big", etag) == (etag, None)        # 304

    where = urlsplit(url)
    plain_conn = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
    try:
        plain_conn.request("GET", f"{API}/computers/big/desired-state")
        plain = plain_conn.getresponse()
        body = plain.read()
        assert plain.getheader("Content-Encoding") is None
        assert plain.getheader("ETag") == etag.removeprefix("W/")
        assert len(body) > GZIP_MIN_BYTES and _json.loads(body) == doc
    finally:
        plain_conn.close()


def test_desired_state_and_304(ready):
    inst = new_instance(ready)
    r = ready.get(f"{API}/computers/c1/desired-state")
    assert r.status_code == 200 and r.mimetype == "application/json"
    etag = r.headers["ETag"]
    assert etag == f'"{r.json["serial"]}"'
    placed = [p for p in r.json["partitions"] if p["instance"]]
    assert [p["instance"]["id"] for p in placed] == [inst["id"]]
    assert r.json["software"] == [{"url": URL, "hash": H, "state": "available"}]
    unchanged = ready.get(f"{API}/computers/c1/desired-state", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.data == b""
    assert unchanged.headers["ETag"] == etag
    assert ready.get(f"{API}/computers/c1/desired-state",
                     headers={"If-None-Match": "*"}).status_code == 304
    ready.put(f"{API}/instances/{inst['id']}/state", json={"state": "stopped"})
    changed = ready.get(f"{API}/computers/c1/desired-state", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert_error(ready.get(f"{API}/computers/nope/desired-state"), 404, "not_found")


def test_no_capacity_and_unknown_type_render(ready):
    for i in range(3):
        new_instance(ready, reference=f"web-{i}")
    err = assert_error(ready.post(f"{API}/instances", json={"reference": "web-9",
                                                             "software_url": URL}),
                       409, "no_capacity")
    assert err["message"] == "no partition fits web-9: 1 computer refused by capacity"
    assert err["details"] == [{"alternative": 0, "sla": "anywhere", "plugin": "capacity",
                               "reason": "capacity", "count": 1}]
    ready.put(f"{API}/computers/c1/software/{H}/status",
              json={"status": "installed", "software_types": ["default"]})
    assert_error(ready.post(f"{API}/instances", json={"reference": "db", "software_url": URL,
                                                       "software_type": "db"}),
                 422, "unknown_software_type")


# -- one error body for every error class ------------------------------------------
def _error_classes():
    seen, todo = [], [errors.SlapfedError]
    while todo:
        klass = todo.pop()
        if klass.__module__ == errors.__name__ and klass not in seen:
            seen.append(klass)
        todo.extend(klass.__subclasses__())
    return sorted(seen, key=lambda k: k.code)


@pytest.mark.openapi_injected_errors
@pytest.mark.parametrize("klass", _error_classes(), ids=lambda k: k.__name__)
def test_every_error_class_renders_the_canonical_body(api, monkeypatch, klass):
    def boom(_conn, _iid, _leases=None):
        raise klass(f"{klass.__name__} happened", [{"field": "x", "problem": "y"}])
    monkeypatch.setattr(services, "show_instance", boom)
    err = assert_error(api.get(f"{API}/instances/i-1"), klass.http_status, klass.code)
    assert err["message"] == f"{klass.__name__} happened"
    assert err["details"] == [{"field": "x", "problem": "y"}]


def test_error_classes_cover_every_registered_code():
    assert {k.code for k in _error_classes()} == set(errors.ERROR_CLASSES)


def test_unexpected_exception_is_500_without_leaking(api, monkeypatch):
    def boom(_conn, _iid, _leases=None):
        raise RuntimeError("secret database path /var/lib/x")
    monkeypatch.setattr(services, "show_instance", boom)
    err = assert_error(api.get(f"{API}/instances/i-1"), 500, "internal_error")
    assert "secret" not in err["message"] and err["details"] == []


@pytest.mark.parametrize("method, path, kwargs, status, code", [
    ("get", "/nowhere", {}, 404, "not_found"),
    ("delete", "/health", {}, 405, "method_not_allowed"),
    ("patch", "/instances", {}, 405, "method_not_allowed"),
    ("post", "/instances", {"data": "{not json", "content_type": "application/json"}, 400,
     "invalid_input"),
    ("post", "/instances", {"data": "", "content_type": "application/json"}, 400,
     "invalid_input"),
    ("post", "/instances", {"data": b"\xff\xfe", "content_type": "application/json"}, 400,
     "invalid_input"),
    ("post", "/instances", {"data": "x" * (5 * 1024 * 1024),
                            "content_type": "application/json"}, 413, "payload_too_large"),
    ("get", "/instances?colour=red", {}, 400, "invalid_input"),
    ("get", "/instances?state=paused", {}, 400, "invalid_input"),
], ids=["unknown-route", "wrong-method", "wrong-method-2", "malformed-json", "empty-body",
        "not-utf8", "too-large", "unknown-filter", "bad-filter-value"])
def test_http_errors_use_the_same_body(api, method, path, kwargs, status, code):
    resp = getattr(api, method)(API + path, **kwargs)
    assert_error(resp, status, code)
    if status == 405:
        assert "GET" in resp.headers["Allow"] or "POST" in resp.headers["Allow"]


# -- invalid input lists every problem and writes nothing --------------------------------
@pytest.mark.parametrize("method, path, body, fields", [
    ("post", "/instances", {"reference": "", "software_url": "x", "state": "up", "zz": 1},
     {"reference", "software_url", "state", "zz"}),
    ("post", "/computers", {"id": "c 2", "partitions": [{"id": "p", "address": "x",
                                                         "port_base": 0}]},
     {"id", "partitions[0].address", "partitions[0].port_base"}),
    ("post", "/computers/c1/software", {"url": "nope", "state": "x"}, {"url", "state"}),
    ("put", "/computers/c1/software/h/status", {"status": "pending", "software_types": [1]},
     {"status", "software_types[0]"}),
    ("put", "/computers/c1/partitions/p000/status", {"revision": -1},
     {"instance_id", "revision", "state"}),
    ("put", "/computers/c1/partitions/p000/status",
     {"instance_id": "i-1", "revision": 1, "state": "started",
      "shared_connections": {"i-x": "http://x", "bad id": {}}},
     {"shared_connections.i-x", "shared_connections.bad id"}),
    ("put", "/instances/i-1/state", {"state": "paused", "extra": 1}, {"state", "extra"}),
], ids=["request", "register", "supply", "software-report", "partition-report",
        "shared-connections", "state"])
def test_invalid_input_lists_every_problem_and_writes_nothing(ready, master_db, method, path,
                                                              body, fields):
    before = master_db.storage.lastTransaction()
    err = assert_error(getattr(ready, method)(API + path, json=body), 400, "invalid_input")
    assert {d["field"] for d in err["details"]} == fields
    assert master_db.storage.lastTransaction() == before


def test_refused_request_writes_nothing(ready, master_db):
    before = master_db.storage.lastTransaction()
    assert_error(ready.post(f"{API}/instances", json={"reference": "x", "software_url": URL,
                                                       "sla": {"lan": "mars"}}),
                 409, "no_capacity")
    assert_error(ready.post(f"{API}/instances", json={"reference": "x", "software_url": URL,
                                                       "parent": "i-none"}),
                 400, "invalid_input")
    assert master_db.storage.lastTransaction() == before


# -- OpenAPI stays true ----------------------------------------------------------------
def _app_routes(app):
    routes = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API):
            continue
        path = rule.rule[len(API):]
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", f"{{{arg}}}")
        methods = {m.lower() for m in rule.methods} - {"head", "options"}
        routes.setdefault(path, set()).update(methods)
    return routes


def test_openapi_describes_every_route_and_nothing_else(master_app, api):
    doc = api.get(f"{API}/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    documented = {path: set(ops) for path, ops in doc["paths"].items()}
    assert documented == _app_routes(master_app)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (path, method)
            if method in ("post", "put"):
                assert "requestBody" in op, (path, method)
            for param in path.split("{")[1:]:
                name = param.split("}")[0]
                assert any(p["name"] == name for p in op.get("parameters", [])), (path, name)


def test_openapi_instance_schema_matches_a_real_instance(ready):
    inst = new_instance(ready)
    schema = openapi_document()["components"]["schemas"]["Instance"]
    # every field is declared; host_placement, newer than the rest, may be missing from
    # an older peer's answer, so it alone is not required
    assert set(inst) == set(schema["properties"])
    assert set(inst) - set(schema["required"]) == {"host_placement"}
    from slapfed.core import answer_check
    from slapfed.core.errors import InvalidInput
    older = {k: v for k, v in inst.items() if k != "host_placement"}
    assert answer_check.check("Instance", older) is older       # an older peer's answer
    with pytest.raises(InvalidInput) as info:
        answer_check.check("Instance", {**inst, "host_placement": {"computer": "c"}})
    assert {d["field"] for d in info.value.details} == {"host_placement.partition",
                                                         "host_placement.address"}
    status_schema = openapi_document()["components"]["schemas"]["InstanceStatus"]
    assert set(status_schema["required"]) == set(inst["status"])
    computer = ready.get(f"{API}/computers/c1").json
    assert set(openapi_document()["components"]["schemas"]["Computer"]["required"]) == \
        set(computer)


def test_openapi_refs_resolve():
    doc = openapi_document()

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for v in node.values():
                yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        _, section, kind, name = ref.split("/")
        assert name in doc[section][kind], ref
    assert inspect.isfunction(openapi_document)
