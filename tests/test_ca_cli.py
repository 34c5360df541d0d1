"""slapfed ca: init, issue (--out and --csr), renew, revoke, list, token; exit codes; no key printed."""
import json
import os
import stat

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from slapfed.ca.authority import CertificateAuthority
from slapfed.ca.keys import csr_for, generate_key
from slapfed.cli.common import Exit
from slapfed.cli.main import cli


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()

    def invoke(*argv):
        return runner.invoke(cli, ["ca", *argv])
    return invoke


@pytest.fixture
def data(tmp_path, run):
    out = run("init", "--data", str(tmp_path / "data"), "--name", "master-a")
    assert out.exit_code == 0, out.output
    return str(tmp_path / "data")


def as_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_init_prints_the_ca_facts_and_keeps_the_key_private(tmp_path, run):
    facts = as_json(run("init", "--data", str(tmp_path / "d"), "--name", "m", "--json"))
    assert facts["name"] == "m" and facts["certificate_file"].endswith("ca/ca.crt")
    assert stat.S_IMODE(os.stat(tmp_path / "d" / "ca" / "ca.key").st_mode) == 0o600


def test_issue_out_makes_the_key_here_and_lists_it(data, run, tmp_path):
    issued = as_json(run("issue", "--data", data, "--role", "partition", "--computer", "node-1",
                         "--partition", "part3", "--out", str(tmp_path / "p3"), "--json"))
    assert issued["identity"]["uri"] == "slapfed://partition/node-1/part3"
    assert stat.S_IMODE(os.stat(issued["key_file"]).st_mode) == 0o600
    listed = as_json(run("list", "--data", data, "--json"))["certificates"]
    assert [c["serial"] for c in listed] == [issued["serial"]]
    text = run("list", "--data", data)
    assert issued["serial"] in text.output and "partition/node-1/part3" in text.output


def test_issue_csr_prints_only_the_certificate(data, run, tmp_path):
    csr = tmp_path / "req.pem"
    csr.write_bytes(csr_for(generate_key()).public_bytes(serialization.Encoding.PEM))
    out = run("issue", "--data", data, "--role", "person", "--name", "alice", "--csr", str(csr))
    assert out.exit_code == 0, out.output
    assert out.output.startswith("-----BEGIN CERTIFICATE-----")
    authority = CertificateAuthority(os.path.join(data, "ca"))
    assert authority.verify(out.output).principal == "person/alice"


def test_renew_and_revoke_by_serial(data, run, tmp_path):
    serial = as_json(run("issue", "--data", data, "--role", "admin", "--name", "root",
                         "--out", str(tmp_path / "root"), "--json"))["serial"]
    renewed = as_json(run("renew", "--data", data, serial, "--days", "30", "--json"))
    assert renewed["serial"] != serial and renewed["identity"]["uri"] == "slapfed://admin/root"
    revoked = as_json(run("revoke", "--data", data, serial, "--reason", "superseded", "--json"))
    assert revoked["revoked"] and revoked["revocation"]["reason"] == "superseded"
    listed = {c["serial"]: c["revoked"] for c in as_json(run("list", "--data", data, "--json"))["certificates"]}
    assert listed == {serial: True, renewed["serial"]: False}


def test_token_prints_the_secret_once_and_stores_its_hash(data, run):
    token = run("token", "--data", data, "--computer", "node-1", "--ttl", "60").output.strip()
    assert token.startswith("sft1.")
    assert token not in open(os.path.join(data, "ca", "tokens.json")).read()


@pytest.mark.parametrize("argv,code", [
    (["init", "--data", "{data}"], Exit.CONFLICT),
    (["issue", "--data", "{data}", "--role", "person", "--name", "a"], Exit.INVALID),
    (["issue", "--data", "{data}", "--role", "partition", "--computer", "n1", "--out", "{tmp}/x"],
     Exit.INVALID),
    (["issue", "--data", "{data}", "--role", "person", "--name", "a/b", "--out", "{tmp}/y"],
     Exit.INVALID),
    (["revoke", "--data", "{data}", "abc123"], Exit.NOT_FOUND),
    (["revoke", "--data", "{data}", "xyz"], Exit.INVALID),
    (["list", "--data", "{tmp}/nowhere"], Exit.NOT_FOUND),
    (["token", "--data", "{data}", "--computer", "bad id"], Exit.INVALID),
    (["issue", "--data", "{data}", "--role", "wizard", "--name", "a", "--out", "{tmp}/z"], Exit.USAGE),
], ids=["init-twice", "neither-csr-nor-out", "partition-without-partition", "bad-name",
        "unknown-serial", "not-a-serial", "no-ca", "bad-computer", "unknown-role"])
def test_refusals_have_documented_exit_codes(data, run, tmp_path, argv, code):
    out = run(*[a.format(data=data, tmp=tmp_path) for a in argv])
    assert out.exit_code == code, out.output


def test_no_command_ever_prints_a_private_key(data, run, tmp_path):
    outputs = [
        run("issue", "--data", data, "--role", "person", "--name", "alice", "--out", str(tmp_path / "a")),
        run("issue", "--data", data, "--role", "person", "--name", "bob", "--out", str(tmp_path / "b"),
            "--json"),
        run("list", "--data", data, "--json"),
        run("list", "--data", data),
    ]
    assert all(o.exit_code == 0 and "PRIVATE KEY" not in o.output for o in outputs)


@pytest.mark.parametrize("argv", [["ca"], ["ca", "init"], ["ca", "issue"], ["ca", "renew"],
                                  ["ca", "revoke"], ["ca", "list"], ["ca", "token"]])
def test_help_works(argv):
    out = CliRunner().invoke(cli, argv + ["--help"])
    assert out.exit_code == 0 and "Usage:" in out.output


def test_every_ca_error_code_has_the_exit_code_of_what_it_refines():
    from slapfed.ca.errors import CA_ERRORS
    from slapfed.cli.common import EXIT_BY_CODE
    from slapfed.core.errors import Unauthenticated
    for klass in CA_ERRORS:
        expected = Exit.FORBIDDEN if issubclass(klass, Unauthenticated) else None
        assert EXIT_BY_CODE[klass.code] == (expected or EXIT_BY_CODE[klass.__mro__[1].code])
