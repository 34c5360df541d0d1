"""Recursion: provenance and the depth limit (tables), and the master release profile.

Depends on slapfed (core.provenance, master app, store) and pytest; the end-to-end tests
start real processes and stop them by PID.
"""
import pytest

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
