"""Identities over real TLS: a gunicorn master on 127.0.0.1 (run-time port) asking for client
certificates; the app reads the peer certificate from the TLS socket.

An expired or foreign certificate may already fail at the handshake instead of a 401; both
count as refused.
"""
import datetime as dt
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority


@pytest.fixture(scope="module")
def tls_master(tmp_path_factory):
    """A real master over HTTPS, and a function writing an actor's key/cert files."""
    from conftest import start_master_process, stop_process
    base = tmp_path_factory.mktemp("tls")
    proc, url = start_master_process(str(base / "master"), secure=True)
    ca = CertificateAuthority(base / "master" / "ca")
    foreign = CertificateAuthority.init(base / "other-ca", "another CA")
    now = dt.datetime.now(dt.timezone.utc)

    def files(name, identity, authority=ca, **window):
        if window:
            from slapfed.ca.keys import generate_key, write_private_key
            out = base / name
            out.mkdir()
            key = generate_key()
            write_private_key(out / "identity.key", key)
            record = authority.issue(identity, key.public_key(), **window)
            (out / "identity.crt").write_text(record.certificate_pem)
            return str(out / "identity.crt"), str(out / "identity.key")
        made = authority.issue_with_new_key(identity, base / name)
        return str(made.cert_path), str(made.key_path)

    made = ca.issue_with_new_key(ids.person("carol"), base / "revoked")
    ca.revoke(made.record.serial)
    revoked = (str(made.cert_path), str(made.key_path))
    actors = {
        "anonymous": None,
        "alice": files("alice", ids.person("alice")),
        "admin": files("admin", ids.admin("root")),
        "revoked": revoked,
        "expired": files("expired", ids.person("dave"), not_before=now - dt.timedelta(days=9),
                         not_after=now - dt.timedelta(days=1)),
        "foreign": files("foreign", ids.admin("root"), authority=foreign),
    }
    try:
        yield url, str(base / "master" / "ca" / "ca.crt"), actors
    finally:
        stop_process(proc, timeout=15)


CASES = [
    ("anonymous", "/health", 200), ("anonymous", "/whoami", 401),
    ("alice", "/whoami", 200), ("admin", "/certificates", 200), ("alice", "/certificates", 403),
    ("revoked", "/whoami", 401), ("expired", "/whoami", 401), ("foreign", "/whoami", 401),
    ("expired", "/health", 200), ("foreign", "/health", 200),
]


@pytest.mark.parametrize("actor,path,status", CASES,
                         ids=[f"{a}-{p.strip('/')}" for a, p, _ in CASES])
def test_mutual_tls_authenticates_every_request(tls_master, actor, path, status):
    url, ca_file, actors = tls_master
    assert url.startswith("https://127.0.0.1:")
    try:
        resp = requests.get(url + "/api/v1" + path, verify=ca_file, cert=actors[actor],
                            timeout=10)
    except requests.exceptions.SSLError:
        assert actor in ("expired", "foreign")     # refused at the handshake
        return
    assert resp.status_code == status, resp.text
    if status == 401:
        assert set(resp.json()["error"]) == {"code", "message", "details", "request_id"}


def test_whoami_over_tls_names_the_certificate(tls_master):
    url, ca_file, actors = tls_master
    body = requests.get(url + "/api/v1/whoami", verify=ca_file, cert=actors["alice"],
                        timeout=10).json()
    assert body["principal"] == "person/alice" and body["development_mode"] is False


def test_the_master_certificate_verifies_against_its_ca_only(tls_master):
    url, _ca_file, _actors = tls_master
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/api/v1/health", verify=True, timeout=10)


def test_plain_http_is_refused_off_loopback(tmp_path):
    from slapfed.cli.main import cli
    result = CliRunner().invoke(cli, ["master", "serve", "--data", str(tmp_path),
                                      "--listen", "0.0.0.0:0", "--insecure-http"])
    assert result.exit_code == 3 and "loopback" in result.output


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.3.4.5", True),
                                           ("::1", True), ("localhost", True),
                                           ("0.0.0.0", False), ("10.0.0.1", False),
                                           ("example.org", False)])
def test_is_loopback(host, loopback):
    from slapfed.master.server import is_loopback
    assert is_loopback(host) is loopback


def test_config_enrol_trades_a_token_for_an_identity_made_here(tls_master, tmp_path, monkeypatch):
    """`slapfed config enrol`: the key is made locally, the token is spent, the client
    config then speaks for that identity."""
    import json as _json

    from click.testing import CliRunner

    from slapfed.cli.main import cli
    url, ca_file, _ = tls_master
    ca = CertificateAuthority(Path(ca_file).parent)
    token = ca.enrolment_token(ids.person("erin"))
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "client.json"))
    monkeypatch.delenv("SLAPFED_MASTER", raising=False)
    runner = CliRunner()
    out = runner.invoke(cli, ["config", "enrol", "--master", url, "--ca", ca_file,
                              "--token", token, "--out", str(tmp_path / "erin")])
    assert out.exit_code == 0, out.output
    assert "enrolled as person/erin" in out.output
    assert oct((tmp_path / "erin" / "identity.key").stat().st_mode & 0o777) == "0o600"
    shown = _json.loads(runner.invoke(cli, ["config", "show", "--json"]).output)
    assert shown["master"] == url and shown["cert"].endswith("identity.crt")
    again = runner.invoke(cli, ["config", "enrol", "--master", url, "--ca", ca_file,
                                "--token", token, "--out", str(tmp_path / "erin-2")])
    assert again.exit_code == 9, again.output       # the spent token: 401 invalid_token
