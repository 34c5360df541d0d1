"""The CLI's own logic: where the master comes from, k=v parsing, exit codes, --help."""
import json

import click
import pytest
from click.testing import CliRunner

from slapfed.cli import config as cfg
from slapfed.cli.common import EXIT_BY_CODE, Exit, parse_pairs
from slapfed.cli.main import cli
from slapfed.core import errors


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    path = tmp_path / "client.json"
    monkeypatch.setenv(cfg.ENV_CONFIG, str(path))
    monkeypatch.delenv(cfg.ENV_MASTER, raising=False)
    monkeypatch.delenv(cfg.ENV_REQUESTER, raising=False)
    return path


@pytest.mark.parametrize("flag,env,file,expected", [
    ("http://flag", "http://env", "http://file", "http://flag"),
    (None, "http://env", "http://file", "http://env"),
    (None, None, "http://file", "http://file"),
    (None, None, None, None),
], ids=["flag-wins", "env-beats-file", "file", "nothing"])
def test_master_url_precedence(config_file, monkeypatch, flag, env, file, expected):
    if env:
        monkeypatch.setenv(cfg.ENV_MASTER, env)
    if file:
        config_file.write_text(json.dumps({"master": file}))
    assert cfg.resolve_master(flag) == expected


@pytest.mark.parametrize("content,fragment", [
    ("{not json", "not valid JSON"),
    ("[1]", "JSON object"),
    ('{"master": "x", "colour": "red"}', "unknown keys ['colour']"),
], ids=["malformed", "not-object", "unknown-key"])
def test_bad_config_file_is_named_in_the_error(config_file, content, fragment):
    config_file.write_text(content)
    with pytest.raises(errors.InvalidInput) as exc:
        cfg.read_config()
    assert str(config_file) in exc.value.message and fragment in exc.value.message


def test_config_set_then_show(config_file):
    runner = CliRunner()
    assert runner.invoke(cli, ["config", "set", "--master", "http://m:1", "--requester", "bob"]).exit_code == 0
    out = runner.invoke(cli, ["config", "show", "--json"])
    assert out.exit_code == 0
    assert json.loads(out.output) == {"config_file": str(config_file), "master": "http://m:1",
                                      "requester": "bob", "ca": None, "cert": None, "key": None,
                                      "identity": None}
    text = runner.invoke(cli, ["config", "show"]).output
    assert "master:      http://m:1 (config file)" in text
    assert "requester:   bob (config file; sent only to a master in development mode" in text


def test_config_set_identity_records_the_three_files(config_file, tmp_path):
    from slapfed.ca import identity as ids
    from slapfed.ca.authority import CertificateAuthority
    ca = CertificateAuthority.init(tmp_path / "ca", "test CA")
    ca.issue_with_new_key(ids.person("alice"), tmp_path / "alice")
    runner = CliRunner()
    out = runner.invoke(cli, ["config", "set", "--master", "https://m:1",
                              "--identity", str(tmp_path / "alice")])
    assert out.exit_code == 0, out.output
    saved = json.loads(config_file.read_text())
    assert saved == {"master": "https://m:1", "ca": str(tmp_path / "alice" / "ca.crt"),
                     "cert": str(tmp_path / "alice" / "identity.crt"),
                     "key": str(tmp_path / "alice" / "identity.key")}
    assert "PRIVATE" not in out.output


def test_config_set_identity_refuses_a_directory_without_an_identity(config_file, tmp_path):
    out = CliRunner().invoke(cli, ["config", "set", "--identity", str(tmp_path)])
    assert out.exit_code == 3 and "identity.crt" in out.output


@pytest.mark.parametrize("pairs,expected", [
    (["a=1"], {"a": "1"}),
    (["a=1=2", "b="], {"a": "1=2", "b": ""}),
], ids=["simple", "equals-in-value"])
def test_parse_pairs(pairs, expected):
    assert parse_pairs(pairs, "--param") == expected


@pytest.mark.parametrize("pairs", [["novalue"], ["=x"]], ids=["no-equals", "empty-key"])
def test_parse_pairs_refuses(pairs):
    with pytest.raises(click.BadParameter):
        parse_pairs(pairs, "--param")


def test_no_master_is_a_usage_error_in_one_clear_line(config_file):
    out = CliRunner().invoke(cli, ["list"])
    assert out.exit_code == Exit.USAGE == 2
    assert "no master URL given" in out.output


def test_unreachable_master_exit_code(config_file):
    out = CliRunner().invoke(cli, ["list", "--master", "http://127.0.0.1:9"])
    assert out.exit_code == Exit.UNREACHABLE
    assert "cannot reach the master" in out.output


def test_relative_release_that_does_not_exist_is_refused(config_file):
    out = CliRunner().invoke(cli, ["request", "x", "no/such/software.cfg", "--master", "http://127.0.0.1:9"])
    assert out.exit_code == Exit.INVALID
    assert "neither a URL nor an existing path" in out.output


def test_every_error_code_has_a_documented_exit_code():
    undocumented = [c for c in errors.ERROR_CLASSES if c not in EXIT_BY_CODE
                    and c not in ("error", "internal_error", "method_not_allowed")]
    assert undocumented == []


@pytest.mark.parametrize("argv", [
    [], ["request"], ["list"], ["show"], ["destroy"], ["supply"], ["master", "serve"],
    ["node", "format"], ["node", "run"], ["node", "once"], ["demo", "start"],
])
def test_help_works_for_every_command(argv):
    out = CliRunner().invoke(cli, argv + ["--help"])
    assert out.exit_code == 0, out.output
    assert "Usage:" in out.output


def test_config_show_reads_the_identity_from_the_certificate(config_file, tmp_path):
    from slapfed.ca import identity as ids
    from slapfed.ca.authority import CertificateAuthority
    ca = CertificateAuthority.init(tmp_path / "ca", "test CA")
    made = ca.issue_with_new_key(ids.person("alice"), tmp_path / "alice")
    runner = CliRunner()
    runner.invoke(cli, ["config", "set", "--identity", str(tmp_path / "alice"),
                        "--requester", "mallory"])
    text = runner.invoke(cli, ["config", "show"]).output
    assert f"identity:    person/alice (from the certificate, serial {made.record.serial}, " in text
    assert "mallory" not in text
    made.cert_path.unlink()
    broken = runner.invoke(cli, ["config", "show"])
    assert broken.exit_code == 0
    assert f"identity:    none usable: cannot read the certificate {made.cert_path}" in broken.output
