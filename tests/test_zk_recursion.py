"""Zero knowledge in recursion, at the lowest layers: the master recipe publishes its
credentials only through the secret connection file (which the node seals), the replica
recipe reads an invitation written by the buildout encoder, `request --secret-file`
reads a secret from a file, and what the requester's side opens. The real runs are in
test_zk_recursion_e2e.py."""
import json

import click
import pytest
import zc.buildout
from click.testing import CliRunner

from slapfed.ca.errors import SealedValueInvalid
from slapfed.core import cfgvalue
from slapfed.core.sealed import MAX_PLAINTEXT


# -- the master recipe: credentials go sealed ----------------------------------------
def _master_options(tmp_path, **given):
    return {"name": "m", "address": "127.0.0.5", "port-base": "2000", "storage": "file",
            "data": str(tmp_path / "srv"), "connection-file": str(tmp_path / "c.json"),
            **given}


def test_the_master_recipe_publishes_its_admin_token_only_in_the_secret_file(tmp_path):
    from slapfed.recipe_master import MasterRecipe
    secret = tmp_path / "secret.json"
    buildout = {"partition": {"secret-connection-file": str(secret)}}
    options = _master_options(tmp_path)
    created = MasterRecipe(buildout, "master-setup", options).install()
    assert str(secret) in created
    public = json.loads((tmp_path / "c.json").read_text())
    assert "admin-token" not in public and public["url"] == "https://127.0.0.5:2001"
    assert set(public) == {"name", "url", "ca-certificate", "admin", "storage"}
    held = json.loads(secret.read_text())
    assert set(held) == {"admin-token"} and held["admin-token"]
    assert secret.stat().st_mode & 0o077 == 0
    # the option given explicitly wins over the partition's
    other = tmp_path / "elsewhere.json"
    MasterRecipe(buildout, "master-setup",
                 _master_options(tmp_path, **{"secret-connection-file": str(other)})).install()
    assert set(json.loads(other.read_text())) == {"admin-token"}


@pytest.mark.parametrize("buildout", [{}, {"partition": {}},
                                      {"partition": {"secret-connection-file": " "}}],
                         ids=["no-partition", "no-option", "empty"])
def test_the_master_recipe_fails_rather_than_publish_a_token_in_clear(tmp_path, buildout):
    from slapfed.recipe_master import MasterRecipe
    with pytest.raises(zc.buildout.UserError, match="only published sealed"):
        MasterRecipe(buildout, "master-setup", _master_options(tmp_path)).install()
    assert not (tmp_path / "c.json").exists()


def test_the_replica_recipe_reads_an_invitation_the_encoder_wrote(tmp_path):
    from slapfed.recipe_master import MasterReplicaRecipe
    pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    invitation = json.dumps({"url": "https://127.0.0.5:2001", "token": "t ${x}",
                             "for": "m-replica-1", "ca_certificate": pem})
    encoded = cfgvalue.encode(invitation)
    assert encoded != invitation                     # the ${ makes the encoder encode it
    options = {"name": "m-replica-1", "address": "127.0.0.6", "port-base": "3000",
               "data": str(tmp_path / "srv"), "invitation": encoded,
               "connection-file": str(tmp_path / "c.json")}
    MasterReplicaRecipe({}, "replica-setup", options).install()
    assert json.loads((tmp_path / "srv" / "invitation.json").read_text())["token"] == "t ${x}"


# -- the requester's side opens -------------------------------------------------------
def test_opened_connection_opens_with_the_key_file_and_names_what_does_not(tmp_path):
    from cryptography.hazmat.primitives import serialization

    from slapfed.node.sealing import Sealer
    from slapfed.sealed_values import opened_connection
    from test_zk import identity
    key, recipient = identity()
    path = tmp_path / "identity.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    conn, _ = Sealer().connection("i-1", {"url": "u"}, {"admin-token": "tk"}, recipient)
    inst = {"id": "i-1", "reference": "m", "connection": conn}
    assert opened_connection(inst, str(path)) == {"url": "u", "admin-token": "tk"}
    with pytest.raises(SealedValueInvalid, match="'admin-token' of 'm' does not open"):
        opened_connection({**inst, "id": "i-2"}, str(path))      # moved elsewhere


# -- request --secret-file ------------------------------------------------------------
@pytest.mark.parametrize("content, expected", [
    (b"s3cret\n", "s3cret"), (b"s3cret\r\n", "s3cret"), (b"s3cret", "s3cret"),
    (b"two\nlines\n\n", "two\nlines\n"), (b"", ""), ("\u00e9t\u00e9\n".encode(), "\u00e9t\u00e9"),
], ids=["newline", "crlf", "none", "one-dropped", "empty", "utf-8"])
def test_a_secret_file_is_read_with_one_final_newline_dropped(tmp_path, content, expected):
    from slapfed.cli.user_cmd import read_secret_files
    path = tmp_path / "s"
    path.write_bytes(content)
    assert read_secret_files([f"token={path}"]) == {"token": expected}


@pytest.mark.parametrize("make, words", [
    (lambda p: None, "token: cannot read"),
    (lambda p: p.write_bytes(b"\xff\xfe"), "is not UTF-8 text"),
    (lambda p: p.write_bytes(b"x" * (MAX_PLAINTEXT + 1)), f"more than {MAX_PLAINTEXT} bytes"),
    (lambda p: p.mkdir(), "token: cannot read"),
], ids=["missing", "binary", "too-large", "a-directory"])
def test_a_secret_file_that_cannot_be_a_secret_is_a_usage_error(tmp_path, make, words):
    from slapfed.cli.user_cmd import read_secret_files
    path = tmp_path / "s"
    make(path)
    with pytest.raises(click.BadParameter, match=words) as info:
        read_secret_files([f"token={path}"])
    assert info.value.param_hint == "--secret-file"


@pytest.mark.parametrize("args, words", [
    (["--secret-file", "token"], "is not of the form key=value"),
    (["--secret", "token=a", "--secret-file", "token={path}"], "both as --secret and"),
    (["--param", "token=a", "--secret-file", "token={path}"], "both as --param and"),
], ids=["no-equals", "twice", "also-plain"])
def test_request_refuses_a_secret_file_given_badly_before_calling_a_master(tmp_path,
                                                                           monkeypatch,
                                                                           args, words):
    from slapfed.cli.main import cli
    path = tmp_path / "s"
    path.write_text("v\n")
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.setenv("SLAPFED_MASTER", "https://127.0.0.1:9")     # never reached
    done = CliRunner().invoke(cli, ["request", "r", "/srv/release/software.cfg",
                                    *[a.format(path=path) for a in args]])
    assert done.exit_code == 2, done.output
    assert words in done.output


@pytest.mark.parametrize("args, words", [
    ([], "either --token or --token-file"),
    (["--token", "t", "--token-file", "{path}"], "either --token or --token-file"),
    (["--token-file", "{missing}"], "token: cannot read"),
], ids=["neither", "both", "unreadable"])
def test_config_enrol_takes_its_token_from_exactly_one_place(tmp_path, monkeypatch, args,
                                                             words):
    from slapfed.cli.main import cli
    path, ca = tmp_path / "t", tmp_path / "ca.crt"
    path.write_text("t\n")
    ca.write_text("not used")
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "none.json"))
    done = CliRunner().invoke(cli, ["config", "enrol", "--master", "https://127.0.0.1:9",
                                    "--ca", str(ca), "--out", str(tmp_path / "id"),
                                    *[a.format(path=path, missing=tmp_path / "no")
                                      for a in args]])
    assert done.exit_code == 2, done.output
    assert words in done.output
    assert not (tmp_path / "id").exists()
