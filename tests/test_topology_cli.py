"""`slapfed topology ...` against a real master served on 127.0.0.1, and offline on files."""
import json
import os

import pytest
from click.testing import CliRunner

from slapfed.cli.main import cli
from slapfed.client import MasterClient

from conftest import TOPOLOGY_DIR

INTER = os.path.join(TOPOLOGY_DIR, "intercontinental.toml")
EXAMPLES = sorted(os.path.join(TOPOLOGY_DIR, f) for f in os.listdir(TOPOLOGY_DIR)
                  if f.endswith(".toml"))
URL = "/srv/releases/hello/software.cfg"


def run(*args, env=None):
    result = CliRunner().invoke(cli, ["topology", *args], env=env or {}, catch_exceptions=False)
    return result


@pytest.fixture
def federation(topology_app, serve_app, master_factories, monkeypatch, tmp_path):
    """Master "eu" of intercontinental.toml, served; computers in par-1 and fra-1; a tree
    db-1 > web-1 > (shared) site-1. Returns (url, {reference: instance JSON})."""
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "client.json"))
    monkeypatch.delenv("SLAPFED_MASTER", raising=False)
    url = serve_app(topology_app([INTER], "eu"))
    client = MasterClient(url, requester="alice")
    client.register_computer(master_factories.computer("par-1-b", 3))   # declared: site filled
    client.register_computer(master_factories.computer("c-fra", 2, host="fra-1-a"))
    for cid in ("par-1-b", "c-fra"):
        client.supply(cid, URL)
    made = {}
    made["db-1"] = client.request("db-1", URL)
    made["web-1"] = client.request("web-1", URL, parent=made["db-1"]["id"])
    made["site-1"] = client.request("site-1", URL, shared=True, parent=made["web-1"]["id"])
    return url, made


def test_check_accepts_every_example():
    r = run("check", *EXAMPLES)
    assert r.exit_code == 0, r.output
    assert "ok (" in r.output


def test_check_lists_every_problem_and_exits_3(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('colour = 1\n[[masters]]\nname = "m"\nsite = "nowhere"\n')
    r = run("check", str(bad))
    assert r.exit_code == 3
    assert f"{bad}:1: colour: unknown key" in r.output
    assert f"{bad}:4: masters[0].site: unknown site 'nowhere'" in r.output
    r = run("check", "--json", str(bad))
    assert r.exit_code == 3
    body = json.loads(r.stdout)
    assert body["ok"] is False and {p["key"] for p in body["problems"]} == {
        "colour", "masters[0].site"}


def test_show_offline_from_files():
    r = run("show", "-f", INTER)
    assert r.exit_code == 0, r.output
    assert "master eu  https://eu.federation.example  at par-1-a (par-1, fr, europe)" in r.output
    assert "host fra-1-a · computer fra-1-a  not registered (8 partitions expected)  [gpu]" \
        in r.output
    assert "eu <-> us-east" in r.output


def test_show_merges_the_live_state(federation):
    url, made = federation
    r = run("show", "--master", url)
    assert r.exit_code == 0, r.output
    out = r.output
    assert "[this master]" in out
    assert "host par-1-b · computer par-1-b  " in out
    assert "computer c-fra" in out
    for ref in ("db-1", "web-1"):
        assert f"{ref} ({made[ref]['id']}" in out
    assert f"shared site-1 ({made['site-1']['id']}, by alice)" in out
    data = json.loads(run("show", "--master", url, "--json").output)
    eu = data["masters"][0]
    assert eu["name"] == "eu" and eu["local"] is True


def test_show_uses_the_master_from_the_environment(federation):
    url, _made = federation
    r = run("show", "--json", env={"SLAPFED_MASTER": url})
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["masters"][0]["name"] == "eu"


@pytest.mark.parametrize("ref", ["db-1", "web-1", "site-1"])
def test_where_matches_the_masters_placement(federation, ref):
    url, made = federation
    r = run("where", ref, "--master", url, "--json")
    assert r.exit_code == 0, r.output
    w = json.loads(r.output)
    runs_in = made[ref]["host_instance"] if ref == "site-1" else made[ref]["id"]
    place = MasterClient(url).show(runs_in)["placement"]
    assert (w["computer"], w["partition"], w["address"]) == (
        place["computer"], place["partition"], place["address"])
    comp = MasterClient(url).show_computer(place["computer"])
    assert (w["host"], w["lan"], w["country"], w["continent"]) == (
        comp["host"], comp["lan"], comp["country"], comp["continent"])
    assert w["continent"] == "europe" and w["master"] == "eu"
    text = run("where", ref, "--master", url).output
    assert f"computer:   {place['computer']}" in text
    assert "delegation:" in text
    if ref == "site-1":
        host = MasterClient(url).show(runs_in)
        assert f"shared on:  {host['reference']} ({runs_in})" in text


def test_domains_of_the_instance_tree(federation):
    url, _made = federation
    r = run("domains", "site-1", "--master", url, "--json")
    assert r.exit_code == 0, r.output
    fd = json.loads(r.output)
    assert fd["root"]["reference"] == "db-1" and fd["instances"] == 3 and fd["placed"] == 3
    assert fd["survives"]["continent"] is False
    text = run("domains", "db-1", "--master", url).output
    assert "a single continent loss can take down every instance" in text


@pytest.mark.parametrize("args, code, words", [
    (["where", "nothing"], 4, "no instance with id or reference 'nothing'"),
    (["domains", "nothing"], 4, "no instance"),
    (["path", "eu", "mars"], 4, "no master 'mars'"),
], ids=["where-unknown", "domains-unknown", "path-unknown-master"])
def test_errors_exit_with_documented_codes(federation, args, code, words):
    url, _made = federation
    r = run(*args, "--master", url)
    assert r.exit_code == code, r.output
    assert words in r.output


def test_path_from_a_master_and_offline(federation):
    url, _made = federation
    online = json.loads(run("path", "eu", "oceania", "--master", url, "--json").output)
    offline = json.loads(run("path", "eu", "oceania", "-f", INTER, "--json").output)
    assert online == offline
    assert online["masters"] == ["eu", "sea", "oceania"] and online["latency_ms"] == 247
    text = run("path", "eu", "oceania", "-f", INTER, "--min-trust", "delegate").output
    assert "total: 247 ms, cost 7, 2 hops, weakest trust delegate" in text
    r = run("path", "eu", "oceania", "-f", INTER, "--min-trust", "full")
    assert r.exit_code == 4 and "trust full" in r.output


def test_no_master_anywhere_is_a_usage_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.delenv("SLAPFED_MASTER", raising=False)
    r = run("show")
    assert r.exit_code == 2 and "no master URL given" in r.output
    r = run("where", "x", "-f", INTER)
    assert r.exit_code == 2


def test_unreachable_master_exits_6(monkeypatch, tmp_path):
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "none.json"))
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run("show", "--master", f"http://127.0.0.1:{port}")
    assert r.exit_code == 6
