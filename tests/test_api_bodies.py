"""Request bodies at the master's edge: one JSON object, declared application/json, within
the documented limits (core.bodies), or a 4xx in the one error body that writes nothing.

- the pure decoder (core.bodies) as a table: depth, size, surrogates, non-objects, NaN;
- every write route of the app (enumerated from its url_map) refuses a body that is not
  declared ``application/json`` (415), that is not an object, too deep or holds a lone
  surrogate (400 naming the field or the limit), and writes nothing;
- ``PUT /federation/policy`` with ``null`` changes nothing.
"""
import json

import pytest

from conftest import computer_body, last_tid
from slapfed.core import bodies
from slapfed.core.errors import InvalidInput
from slapfed.core.wire import software_hash

API = "/api/v1"
URL = "/srv/releases/hello/software.cfg"
WRITE_METHODS = ("POST", "PUT", "PATCH")


def deep(levels: int, leaf: str = "1", opener: str = "[", closer: str = "]") -> str:
    return opener * levels + leaf + closer * levels


def deep_object(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


# -- the pure decoder -------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("{}", {}),
    ('{"a": [1, {"b": "c"}]}', {"a": [1, {"b": "c"}]}),
    ('{"x": ' + deep(bodies.MAX_DEPTH - 1) + "}", None),          # exactly the limit
    ('{"s": "' + "[" * 1000 + '"}', {"s": "[" * 1000}),           # brackets in a string
    ('{"s": "\\"[[[[\\\\"}', {"s": '"[[[[\\'}),                   # escaped quotes
    ('{"k": "\\u00e9\\ud83d\\ude00"}', {"k": "é😀"}),              # a surrogate *pair*
    ('{"a": 1}'.encode("utf-8").decode() + "  \n", {"a": 1}),
], ids=["empty-object", "nested", "at-the-depth-limit", "brackets-in-a-string",
        "escaped-quotes", "surrogate-pair", "trailing-space"])
def test_decoder_accepts(text, expected):
    got = bodies.decode_object(text.encode())
    if expected is not None:
        assert got == expected


@pytest.mark.parametrize("data, field, words", [
    (b"", "body", "empty"),
    (b"  \n", "body", "empty"),
    (b"\xff\xfe{}", "body", "UTF-8"),
    (b"{oops", "body", "not valid JSON"),
    (b"null", "body", "not null"),
    (b"[]", "body", "not an array"),
    (b'"text"', "body", "not a string"),
    (b"1", "body", "not a number"),
    (b"true", "body", "not a boolean"),
    (b'{"a": NaN}', "body", "NaN is not JSON"),
    (b'{"a": -Infinity}', "body", "-Infinity is not JSON"),
    (b'{"a": ' + b"9" * 5000 + b"}", "body", "not valid JSON"),
    (('{"x": ' + deep(bodies.MAX_DEPTH) + "}").encode(), "body", "max_depth"),
    (deep(5000).encode(), "body", "5000 levels"),
    (deep_object(5000).encode(), "body", "5000 levels"),
    (("[" * 100000).encode(), "body", "100000 levels"),            # truncated, unclosed
    (('{"a": [' + "[]," * bodies.MAX_VALUES + "[]]}").encode(), "body", "max_values"),
    (('{"a": [' + "1," * bodies.MAX_VALUES + "1]}").encode(), "body", "max_values"),
    (b'{"reference": "\\ud800"}', "reference", "lone surrogate"),
    (b'{"p": {"k": ["ok", "a\\udfffb"]}}', "p.k[1]", "lone surrogate"),
    (b'{"p": {"\\udc00": 1}}', "p.\\udc00", "key holds a lone surrogate"),
    (b'{"a": "\\ud800\\ud800"}', "a", "lone surrogate"),          # two highs: no pair
], ids=["empty", "blank", "not-utf8", "malformed", "null", "array", "string", "number",
        "boolean", "nan", "infinity", "huge-integer", "one-level-too-deep", "deep-arrays",
        "deep-objects", "unclosed-arrays", "too-many-containers", "too-many-scalars",
        "surrogate-value", "surrogate-nested", "surrogate-key", "two-high-surrogates"])
def test_decoder_refuses_naming_the_field(data, field, words):
    with pytest.raises(InvalidInput) as info:
        bodies.decode_object(data)
    err = info.value
    assert field in [d["field"] for d in err.details], err.details
    assert words in err.message + " ".join(d["problem"] for d in err.details)
    json.dumps(err.to_json(), ensure_ascii=False).encode("utf-8")  # printable as UTF-8


def test_depth_counts_brackets_outside_strings_only():
    assert bodies.nesting('{"a": "[[[{{{", "b": [[1]]}') == 3
    assert bodies.nesting('"unterminated [[[') == 0
    assert bodies.nesting("[[[") == 3
    assert bodies.nesting("1") == 0


def test_surrogate_problems_are_listed_up_to_a_bound():
    doc = {f"k{i:03d}": "\ud800" for i in range(100)}
    with pytest.raises(InvalidInput) as info:
        bodies.decode_object(json.dumps(doc).encode())
    assert len(info.value.details) == bodies.MAX_PROBLEMS
    assert "(and 80 more)" in info.value.message


# -- every write route of the app -----------------------------------------------------
@pytest.fixture
def world(tmp_path, master_db):
    """A development-mode master (every caller admin/local) with its CA, computer c1
    supplied URL and one instance: each write route reaches its body."""
    from slapfed.master import close_app, create_app
    app = create_app({"INSECURE": True, "DB": master_db, "CA_DIR": str(tmp_path / "ca")})
    app.config["TESTING"] = False
    client = app.test_client()
    assert client.post(f"{API}/computers", json=computer_body("c1", 2)).status_code == 201
    assert client.post(f"{API}/computers/c1/software", json={"url": URL}).status_code == 200
    inst = client.post(f"{API}/instances", json={"reference": "r1", "software_url": URL}).json
    try:
        yield app, client, inst
    finally:
        close_app(app)


def write_routes(app, inst) -> list[tuple[str, str]]:
    """(method, path) of every /api/v1 route that takes a body, its arguments filled in
    (SLAP's routes take forms: tests/test_slap.py)."""
    values = {"cid": "c1", "pid": inst["placement"]["partition"], "iid": inst["id"],
              "software_hash": software_hash(URL), "serial": "1", "name": "peer-1"}
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API + "/"):
            continue
        for method in sorted(set(rule.methods) & set(WRITE_METHODS)):
            missing = [a for a in rule.arguments if a not in values]
            assert not missing, f"{rule.rule}: give the test a value for {missing}"
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<{arg}>", values[arg])
            out.append((method, path))
    return out


def refused(resp, status, code, field=None):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details",
                                                          "request_id"}
    assert body["error"]["code"] == code
    if field is not None:
        assert field in [d["field"] for d in body["error"]["details"]], body
    return body["error"]


def test_every_write_route_is_known(world):
    app, _client, inst = world
    routes = write_routes(app, inst)
    assert len(routes) >= 16       # a route lost would be a route no longer checked
    assert ("PUT", f"{API}/federation/policy") in routes


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/jsonp", "text/json",
    "application/json; charset=latin-1", "application/json; profile=x",
], ids=["none", "text-plain", "text-plain-utf8", "form", "multipart", "jsonp", "text-json",
        "latin1", "extra-parameter"])
def test_a_body_not_declared_json_is_refused_on_every_write_route(world, master_db,
                                                                  content_type):
    app, client, inst = world
    headers = {} if content_type is None else {"Content-Type": content_type}
    for method, path in write_routes(app, inst):
        before = last_tid(master_db)
        resp = client.open(path, method=method, data=b'{"reference": "csrf"}',
                           headers=headers)
        err = refused(resp, 415, "unsupported_media_type", "Content-Type")
        assert "application/json" in err["message"]
        assert last_tid(master_db) == before, (method, path)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON; charset=UTF-8"])
def test_json_with_or_without_charset_is_accepted(world, content_type):
    _app, client, _inst = world
    resp = client.post(f"{API}/instances", headers={"Content-Type": content_type},
                       data=json.dumps({"reference": "r2", "software_url": URL}))
    assert resp.status_code == 201, resp.json


@pytest.mark.parametrize("body", [b"null", b"[]", b"[{}]", b'"x"', b"0", b"false"],
                         ids=["null", "array", "array-of-object", "string", "number", "bool"])
def test_a_body_that_is_not_an_object_is_refused_on_every_write_route(world, master_db, body):
    app, client, inst = world
    for method, path in write_routes(app, inst):
        before = last_tid(master_db)
        resp = client.open(path, method=method, data=body, content_type="application/json")
        refused(resp, 400, "invalid_input", "body")
        assert last_tid(master_db) == before, (method, path)


@pytest.mark.parametrize("make, words", [
    (lambda: '{"parameters": {"a": ' + deep(3000) + "}}", "max_depth"),
    (lambda: '{"sla": ' + deep_object(3000) + "}", "max_depth"),
    (lambda: '{"partitions": ' + deep(3000, "{}") + "}", "max_depth"),
    (lambda: '{"x": [' + ",".join(["0"] * (bodies.MAX_VALUES + 1)) + "]}", "max_values"),
], ids=["deep-parameters", "deep-sla", "deep-partitions", "too-many-values"])
def test_a_body_beyond_the_limits_is_refused_on_every_write_route(world, master_db, make,
                                                                 words):
    app, client, inst = world
    data = make()
    for method, path in write_routes(app, inst):
        before = last_tid(master_db)
        resp = client.open(path, method=method, data=data, content_type="application/json")
        err = refused(resp, 400, "invalid_input", "body")
        assert words in err["message"] and words in err["details"][0]["problem"]
        assert last_tid(master_db) == before, (method, path)


def test_a_lone_surrogate_is_refused_naming_the_field(world, master_db):
    _app, client, _inst = world
    before = last_tid(master_db)
    for body, field in ((b'{"reference": "\\ud800", "software_url": "/srv/x"}', "reference"),
                        (b'{"reference": "ok", "software_url": "/srv/x", '
                         b'"parameters": {"k": "a\\udfff"}}', "parameters.k")):
        resp = client.post(f"{API}/instances", data=body, content_type="application/json")
        refused(resp, 400, "invalid_input", field)
    assert last_tid(master_db) == before
    assert [i["reference"] for i in client.get(f"{API}/instances").json["instances"]] == ["r1"]


@pytest.mark.parametrize("body", [b"null", b"[]", b'"automatic"', b"1"])
def test_a_policy_that_is_not_an_object_changes_nothing(world, master_db, body):
    _app, client, _inst = world
    policy = {"auto": False, "rules": [{"to": ["peer-1"]}]}
    set_ = client.put(f"{API}/federation/policy", json=policy)
    assert set_.status_code == 200, set_.json
    shown = client.get(f"{API}/federation/policy").json
    before = last_tid(master_db)
    resp = client.put(f"{API}/federation/policy", data=body, content_type="application/json")
    refused(resp, 400, "invalid_input", "body")
    assert last_tid(master_db) == before
    assert client.get(f"{API}/federation/policy").json == shown


def test_an_empty_write_says_a_body_is_required_whatever_its_content_type(world):
    _app, client, _inst = world
    resp = client.post(f"{API}/instances", data=b"")
    refused(resp, 400, "invalid_input", "body")


# -- with identities: who is asking comes first ------------------------------------------
@pytest.mark.parametrize("actor, path, status, code", [
    ("anonymous", "/instances", 401, "unauthenticated"),
    ("person_a", "/instances", 415, "unsupported_media_type"),
    ("anonymous", "/node-certificates", 415, "unsupported_media_type"),   # public
])
def test_the_content_type_is_checked_after_authentication(authz_world, actor, path, status,
                                                          code):
    w = authz_world
    before = last_tid(w.db)
    resp = w.call(actor, "POST", path, data=b'{"reference": "x"}', content_type="text/plain")
    refused(resp, status, code)
    assert last_tid(w.db) == before


def test_a_body_larger_than_the_byte_limit_is_413_naming_the_limit(world, master_db):
    _app, client, _inst = world
    before = last_tid(master_db)
    resp = client.post(f"{API}/instances", content_type="application/json",
                       data=b'{"reference": "' + b"x" * (5 * 1024 * 1024) + b'"}')
    err = refused(resp, 413, "payload_too_large", "body")
    assert "4194304 bytes" in err["message"] and "MAX_CONTENT_LENGTH" in err["details"][0][
        "problem"]
    assert last_tid(master_db) == before
