"""The master and its topology files: validated at start, locality filled or refused at
registration, GET /api/v1/topology (files plus live state)."""
import os

import pytest
from click.testing import CliRunner

from slapfed.cli.main import cli
from slapfed.core.errors import InvalidInput

from conftest import TOPOLOGY_DIR, last_tid

API = "/api/v1"
INTER = os.path.join(TOPOLOGY_DIR, "intercontinental.toml")
HOME = os.path.join(TOPOLOGY_DIR, "home-lab.toml")
URL = "/srv/releases/hello/software.cfg"


@pytest.fixture
def eu(topology_app):
    return topology_app([INTER], "eu").test_client()


FILLS = [
    ("lan-fills-outer-levels", {"lan": "par-1"},
     {"host": None, "lan": "par-1", "country": "fr", "continent": "europe"}),
    ("host-fills-everything", {"host": "nyc-1-a"},
     {"host": "nyc-1-a", "lan": "nyc-1", "country": "us", "continent": "north-america"}),
    ("country-fills-continent", {"country": "jp"},
     {"host": None, "lan": None, "country": "jp", "continent": "asia"}),
    ("consistent-locality-kept", {"lan": "par-1", "country": "fr", "continent": "europe"},
     {"host": None, "lan": "par-1", "country": "fr", "continent": "europe"}),
    ("unknown-sites-kept", {"lan": "garage", "country": "fr"},
     {"host": None, "lan": "garage", "country": "fr", "continent": "europe"}),
    ("nothing-given", {}, {"host": None, "lan": None, "country": None, "continent": None}),
]


@pytest.mark.parametrize("given, expected", [c[1:] for c in FILLS], ids=[c[0] for c in FILLS])
def test_registration_fills_missing_outer_levels(eu, master_factories, given, expected):
    r = eu.post(f"{API}/computers", json=master_factories.computer("c1", 2, **given))
    assert r.status_code == 201, r.json
    assert {k: r.json[k] for k in expected} == expected
    again = eu.get(f"{API}/computers/c1").json
    assert {k: again[k] for k in expected} == expected


def test_a_declared_computer_takes_its_site(eu, master_factories):
    r = eu.post(f"{API}/computers", json=master_factories.computer("fra-1-a", 2))
    assert r.status_code == 201
    assert (r.json["host"], r.json["lan"], r.json["country"]) == ("fra-1-a", "fra-1", "de")


REFUSALS = [
    ("lan-in-another-country", "c1", {"lan": "par-1", "country": "de"}, "country",
     ["is 'de', but the topology puts LAN 'par-1' in country 'fr'", "intercontinental.toml:"]),
    ("host-in-another-lan", "c1", {"host": "par-1-a", "lan": "fra-1"}, "lan",
     ["is 'fra-1', but the topology puts host 'par-1-a' in LAN 'par-1'"]),
    ("country-on-another-continent", "c1", {"country": "jp", "continent": "europe"},
     "continent", ["'asia'"]),
    ("site-at-the-wrong-level", "c1", {"lan": "fr"}, "lan", ["'fr' is a country in the topology"]),
    ("declared-computer-moved", "par-1-b", {"lan": "nyc-1"}, "lan",
     ["the topology puts computer par-1-b (declared at site 'par-1-b') in LAN 'par-1'"]),
]


@pytest.mark.parametrize("cid, given, field, words", [c[1:] for c in REFUSALS],
                         ids=[c[0] for c in REFUSALS])
def test_registration_contradicting_the_topology_is_refused(eu, master_db, master_factories,
                                                             cid, given, field, words):
    before = last_tid(master_db)
    r = eu.post(f"{API}/computers", json=master_factories.computer(cid, 2, **given))
    assert r.status_code == 400, r.json
    err = r.json["error"]
    assert err["code"] == "invalid_input"
    assert f"computer {cid} contradicts the topology" in err["message"]
    assert any(d["field"] == field for d in err["details"]), err
    text = " ".join(d["problem"] for d in err["details"])
    for w in words:
        assert w in text
    assert last_tid(master_db) == before          # nothing written
    assert eu.get(f"{API}/computers/{cid}").status_code == 404


def test_without_topology_registration_is_unchanged(topology_app, master_factories):
    api = topology_app().test_client()
    r = api.post(f"{API}/computers", json=master_factories.computer("c1", 1, lan="par-1"))
    assert r.status_code == 201
    assert (r.json["lan"], r.json["country"]) == ("par-1", None)


def test_get_topology_gives_files_and_live_state(eu, master_factories):
    assert eu.post(f"{API}/computers", json=master_factories.computer(
        "c1", 2, lan="par-1", labels={"disk": "ssd"})).status_code == 201
    assert eu.post(f"{API}/computers/c1/software", json={"url": URL}).status_code == 200
    r = eu.post(f"{API}/instances", json={"reference": "web-1", "software_url": URL})
    assert r.status_code == 201, r.json
    view = eu.get(f"{API}/topology").json
    assert view["master"] == "eu" and view["live"]["master"] == "eu"
    assert view["topology"]["files"] == [INTER]
    assert {m["name"] for m in view["topology"]["masters"]} >= {"eu", "apac", "oceania"}
    assert len(view["topology"]["links"]) == 9
    (comp,) = view["live"]["computers"]
    assert (comp["id"], comp["country"], comp["labels"]) == ("c1", "fr", {"disk": "ssd"})
    assert [p["instance"] for p in comp["partitions"]].count(None) == 1
    (inst,) = view["live"]["instances"]
    assert inst["reference"] == "web-1" and inst["placement"]["computer"] == "c1"
    assert inst["id"] in [p["instance"] for p in comp["partitions"]]


def test_the_topology_view_matches_its_openapi_schema(eu):
    from slapfed.master.openapi import openapi_document
    schema = openapi_document()["components"]["schemas"]["TopologyView"]
    view = eu.get(f"{API}/topology").json
    assert set(schema["required"]) == set(view)
    files = openapi_document()["components"]["schemas"]["TopologyFiles"]
    assert schema["properties"]["topology"] == {"$ref": "#/components/schemas/TopologyFiles"}
    assert set(files["required"]) == set(view["topology"])


@pytest.mark.parametrize("files, name, words", [
    (["missing.toml"], None, "cannot read the file"),
    ([INTER], "nope", "--name 'nope' is not a master"),
], ids=["unreadable-file", "unknown-name"])
def test_the_app_refuses_bad_topology(topology_app, files, name, words):
    with pytest.raises(InvalidInput) as info:
        topology_app(files, name)
    assert words in info.value.message + str(info.value.details)


def test_the_only_master_of_the_files_names_this_one(topology_app):
    api = topology_app([HOME]).test_client()
    assert api.get(f"{API}/topology").json["master"] == "home"


def test_master_serve_refuses_to_start_on_invalid_topology(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[links]]\nfrom = "a"\nto = "b"\nlatency_ms = -1\n')
    r = CliRunner().invoke(cli, ["master", "serve", "--data", str(tmp_path / "m"),
                                 "--listen", "127.0.0.1:0", "--topology", str(bad)])
    assert r.exit_code == 3, r.output
    assert "bad.toml:4: links[0].latency_ms: must be >= 0" in r.output
    assert not (tmp_path / "m" / "master.pid").exists()


def test_master_serve_with_topology_answers_it(master_server):
    import requests
    url = master_server("--topology", INTER, "--name", "apac")
    view = requests.get(url + "/api/v1/topology", timeout=10).json()
    assert view["master"] == "apac"
    r = requests.post(url + "/api/v1/computers", timeout=10, json={
        "id": "c1", "lan": "tyo-1", "partitions": []})
    assert r.status_code == 201 and r.json()["continent"] == "asia"


def test_a_declared_computer_gets_its_labels_and_capabilities(topology_app, master_factories):
    api = topology_app([HOME]).test_client()
    body = master_factories.computer("nuc-2", 1, labels={"disk": "nvme"})
    r = api.post(f"{API}/computers", json=body)
    assert r.status_code == 201, r.json
    assert r.json["labels"] == {"disk": "nvme"}          # the registration's value wins
    assert r.json["capabilities"] == ["gpu"]
    assert r.json["lan"] == "home"
    live = api.get(f"{API}/topology").json["live"]["computers"][0]
    assert live["capabilities"] == ["gpu"]
    body = master_factories.computer("nas", 1)
    assert api.post(f"{API}/computers", json=body).json["labels"] == {
        "disk": "hdd", "role": "storage"}
