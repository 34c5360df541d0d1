"""A certificate the master refuses at the TLS handshake (another CA's, expired, not yet
valid) is reported as what it is, over real mutual TLS with a real master process and
the real CLI (a subprocess): exit 9 (authentication refused) and one line naming the
reason, with the documented codes under ``--json`` — not "cannot reach the master"
(exit 6). The master's TLS layer refuses before any HTTP, so the client reads the
reason from the TLS alert (TLS 1.3: on its first read; a large write that is cut off
first asks /health once to learn it)."""
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import start_master_process, stop_process

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.ca.keys import generate_key, write_private_key
from slapfed.cli.common import Exit
from slapfed.client import MasterClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A real master over HTTPS and client config files for each kind of certificate."""
    base = tmp_path_factory.mktemp("tls-refusals")
    proc, url = start_master_process(str(base / "master"), secure=True)
    ca = CertificateAuthority(base / "master" / "ca")
    ca_file = str(base / "master" / "ca" / "ca.crt")
    foreign = CertificateAuthority.init(base / "other-ca", "another CA")
    now = dt.datetime.now(dt.timezone.utc)

    def identity(name, authority=ca, **window):
        out = base / name
        if not window:
            made = authority.issue_with_new_key(ids.admin(name), out)
            cert, key = str(made.cert_path), str(made.key_path)
        else:
            out.mkdir()
            k = generate_key()
            write_private_key(out / "identity.key", k)
            record = authority.issue(ids.admin(name), k.public_key(), **window)
            (out / "identity.crt").write_text(record.certificate_pem)
            cert, key = str(out / "identity.crt"), str(out / "identity.key")
        config = base / f"{name}.json"
        config.write_text(json.dumps({"master": url, "ca": ca_file, "cert": cert, "key": key}))
        return config

    configs = {
        "good": identity("good"),
        "foreign": identity("foreign", authority=foreign),
        "expired": identity("expired", not_before=now - dt.timedelta(days=9),
                            not_after=now - dt.timedelta(days=1)),
        "not-yet-valid": identity("later", not_before=now + dt.timedelta(days=1),
                                  not_after=now + dt.timedelta(days=9)),
    }
    try:
        yield url, ca_file, configs, base
    finally:
        stop_process(proc, timeout=15)


def slapfed(config: Path, *argv):
    env = {**os.environ, "SLAPFED_CONFIG": str(config)}
    env.pop("SLAPFED_MASTER", None)
    return subprocess.run([sys.executable, "-m", "slapfed.cli.main", *argv], env=env,
                          capture_output=True, text=True, timeout=60)


REFUSALS = {
    "foreign": ("foreign_certificate", "the master at {url} does not trust this "
                                       "certificate: unknown CA"),
    "expired": ("certificate_expired", "the master at {url} does not trust this "
                                       "certificate: certificate expired"),
    "not-yet-valid": ("bad_certificate", "the master at {url} does not trust this "
                                         "certificate: bad certificate (not valid yet"),
}


@pytest.mark.parametrize("who", sorted(REFUSALS))
@pytest.mark.parametrize("argv", [
    ("list",),                                                         # a read
    ("request", "r1", "/srv/releases/x/software.cfg", "--param", "k=v"),  # a write
], ids=["read", "write"])
def test_a_refused_certificate_exits_9_naming_why(tls, who, argv):
    url, _ca, configs, _base = tls
    code, words = REFUSALS[who]
    done = slapfed(configs[who], *argv)
    assert done.returncode == Exit.FORBIDDEN, done.stderr
    assert done.stderr.startswith(f"slapfed: error: {words.format(url=url)}"), done.stderr
    assert "cannot reach" not in done.stderr
    as_json = slapfed(configs[who], *argv, "--json")
    assert as_json.returncode == Exit.FORBIDDEN
    assert json.loads(as_json.stderr.strip().splitlines()[-1])["error"]["code"] == code


def test_a_good_certificate_is_served_and_an_absent_master_is_still_unreachable(tls):
    url, _ca, configs, base = tls
    done = slapfed(configs["good"], "list", "--everyone")
    assert done.returncode == 0, done.stderr
    gone = base / "gone.json"
    cfg = json.loads(configs["foreign"].read_text())
    gone.write_text(json.dumps({**cfg, "master": "https://127.0.0.1:9"}))
    done = slapfed(gone, "list")
    assert done.returncode == Exit.UNREACHABLE and "cannot reach the master" in done.stderr


@pytest.mark.parametrize("who", ["foreign", "expired"])
def test_a_large_write_cut_off_by_the_refusal_still_learns_why(tls, who):
    """A body of megabytes: the master may close the connection while it is being sent,
    before the client reads the alert; the client then learns the verdict from /health."""
    url, ca_file, configs, _base = tls
    cfg = json.loads(configs[who].read_text())
    client = MasterClient(url, ca=ca_file, cert=cfg["cert"], key=cfg["key"])
    code = REFUSALS[who][0]
    for _ in range(3):
        with pytest.raises(Exception) as info:
            client.request("big", "/srv/releases/x/software.cfg",
                           parameters={"blob": "x" * 3_000_000})
        assert getattr(info.value, "code", None) == code, info.value
        assert info.value.http_status == 401
