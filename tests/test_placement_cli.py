"""`slapfed request --dry-run`, `--sla-fallback` and `slapfed topology explain` against a real
master served on 127.0.0.1; `slapfed node format --capability`."""
import json

import click
import pytest
from click.testing import CliRunner

from slapfed.cli.main import cli
from slapfed.cli.user_cmd import build_sla
from slapfed.client import MasterClient

URL = "/srv/releases/hello/software.cfg"


@pytest.mark.parametrize("sla, fallbacks, expected", [
    ((), (), {}),
    (("lan=a", "capability=gpu"), (), {"lan": "a", "capability": "gpu"}),
    (("different_host=db-1", "different_host=db-2"), (), {"different_host": ["db-1", "db-2"]}),
    (("continent=europe",), ("",), [{"continent": "europe"}, {}]),
    (("lan=a",), ("lan=b,label.disk=ssd", "same_lan=db"),
     [{"lan": "a"}, {"lan": "b", "label.disk": "ssd"}, {"same_lan": "db"}]),
], ids=["nothing", "one-alternative", "several-references", "else-anywhere", "fallbacks"])
def test_cli_sla_options_build_the_wire_sla(sla, fallbacks, expected):
    assert build_sla(sla, fallbacks) == expected


@pytest.mark.parametrize("sla, fallbacks", [
    (("lan=a", "lan=b"), ()), (("lan",), ()), ((), ("lan",)),
], ids=["absolute-key-twice", "no-equals", "fallback-no-equals"])
def test_cli_sla_options_refuse_what_is_wrong(sla, fallbacks):
    with pytest.raises(click.BadParameter):
        build_sla(sla, fallbacks)


@pytest.fixture
def served(master_app, serve_app, monkeypatch, tmp_path, master_db):
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "client.json"))
    url = serve_app(master_app)
    client = MasterClient(url, requester="alice")
    for cid, lan, continent in (("a1", "lan-a", "europe"), ("u1", "lan-u", "america")):
        client.register_computer({"id": cid, "lan": lan, "continent": continent,
                                  "partitions": [{"id": "p0", "address": "127.0.2.1",
                                                  "port_base": 3000}]})
        client.supply(cid, URL)
    client.request("db", URL, sla={"computer_guid": "a1"})
    return url


@pytest.mark.parametrize("argv", [
    ["request", "web", URL, "--dry-run"],
    ["topology", "explain", "web", URL],
], ids=["request-dry-run", "topology-explain"])
def test_explain_from_the_cli_writes_nothing(served, master_db, argv):
    before = master_db.storage.lastTransaction()
    common = ["--master", served, "--as", "alice", "--sla", "continent=asia",
              "--sla-fallback", "different_continent=db"]
    text = CliRunner().invoke(cli, argv + common, catch_exceptions=False)
    assert text.exit_code == 0, text.output
    assert "web: would go to u1/p0 (alternative 2 of 2: different_continent(db))" in text.output
    assert "2 refused by continent=asia [continent]" in text.output
    assert "db runs on a1" in text.output and "nothing written" in text.output
    as_json = CliRunner().invoke(cli, argv + common + ["--json"], catch_exceptions=False)
    body = json.loads(as_json.output)
    assert body["computer"] == "u1" and body["alternative"] == 1
    assert master_db.storage.lastTransaction() == before


def test_request_with_fallback_lands_on_the_fallback(served):
    out = CliRunner().invoke(cli, ["request", "web", URL, "--master", served, "--as", "alice",
                                   "--sla", "lan=mars", "--sla-fallback", "", "--json"],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    inst = json.loads(out.output)
    assert inst["sla"] == [{"lan": "mars"}, {}] and inst["placement"]["computer"] == "u1"


def test_node_format_tags_the_computer(tmp_path):
    out = CliRunner().invoke(cli, [
        "node", "format", "--master", "http://127.0.0.1:9", "--computer", "gpu-1",
        "--partitions", "1", "--root", str(tmp_path / "n"), "--capability", "gpu",
        "--capability", "cuda", "--no-register", "--json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    from slapfed.node.layout import load_config
    config = load_config(str(tmp_path / "n"))
    assert config.registration()["capabilities"] == ["cuda", "gpu"]
