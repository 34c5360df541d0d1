"""No secret in any log line, and the lines an operator needs are there: a real
`slapfed master serve` (development mode, then mutual TLS) at debug level with JSON logs,
driven through token issue and redemption, certificate issue and revocation, a peer
pairing token, and an instance whose parameters hold secrets; then the whole log is read.
"""
import json
import os
import socket
import time

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.ca.keys import csr_for, generate_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

URL = "/srv/releases/hello/software.cfg"
PASSWORD = "hunter2-correct-horse-battery"
API_KEY = "sk-live-51Habcdefghijklmnop"
QUERY_SECRET = "sft1.query-value-that-must-not-be-logged"
PRINT_LINE = "slapfed master listening on "     # serve's one line on stdout


def _csr_and_key():
    key = generate_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    csr = csr_for(key).public_bytes(serialization.Encoding.PEM).decode()
    return csr, pem


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Master:
    """One real master and the way to call it (as its administrator when secure)."""

    def __init__(self, base, secure: bool):
        from conftest import start_master_process
        self.data = base / "master"
        self.log_file = base / "slapfed.log" if secure else self.data / "serve.log"
        args = ["--log-level", "debug", "--log-format", "json"]
        if secure:
            args += ["--log-file", str(self.log_file)]
        self.proc, self.url = start_master_process(str(self.data), *args, secure=secure)
        self.secure = secure
        self.verify, self.cert = True, None
        if secure:
            ca = CertificateAuthority(self.data / "ca")
            made = ca.issue_with_new_key(ids.admin("root"), base / "admin")
            self.verify, self.cert = str(self.data / "ca" / "ca.crt"), (
                str(made.cert_path), str(made.key_path))
        self.session = requests.Session()
        self.session.trust_env = False
        self.request_ids = []

    def call(self, method, path, as_admin=True, **kw):
        resp = self.session.request(method, self.url + "/api/v1" + path, verify=self.verify,
                                    cert=self.cert if as_admin else None, timeout=20, **kw)
        self.request_ids.append(resp.headers["X-Request-Id"])
        return resp

    def lines(self) -> list[dict]:
        out = []
        for line in self.log_file.read_text().splitlines():
            if line.startswith(PRINT_LINE):
                continue
            out.append(json.loads(line))        # every line is one JSON object
        return out

    def wait_for_access_line(self, request_id, timeout=10.0) -> list[dict]:
        """The access line comes once the answer is sent: wait for it (not a sleep)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if any(o.get("request_id") == request_id and o["logger"] == "slapfed.access"
                   for o in lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


@pytest.fixture(params=["dev", "mtls"])
def master(request, tmp_path):
    from conftest import stop_process
    m = Master(tmp_path, secure=request.param == "mtls")
    try:
        yield m
    finally:
        stop_process(m.proc, timeout=15)


def test_no_secret_in_any_log_line_and_the_story_is_told(master, tmp_path):
    secrets_ = [PASSWORD, API_KEY, QUERY_SECRET, "PRIVATE KEY"]
    ok = master.call("POST", "/computers", json={"id": "c1", "partitions": [
        {"id": "p000", "address": "127.0.0.1", "port_base": 20000, "port_count": 10}]})
    assert ok.status_code == 201, ok.text
    assert master.call("POST", "/computers/c1/software", json={"url": URL}).ok

    # a node's one-time token, traded for its certificate; then presented again
    token = master.call("POST", "/tokens", json={"computer": "c1"}).json()["token"]
    csr, key_pem = _csr_and_key()
    redeemed = master.call("POST", "/node-certificates", as_admin=False,
                           json={"token": token, "csr": csr})
    assert redeemed.status_code == 201, redeemed.text
    again = master.call("POST", "/node-certificates", as_admin=False,
                        json={"token": token, "csr": csr})
    assert again.status_code == 401
    secrets_ += [token, key_pem.splitlines()[1]]

    # a certificate issued by the administrator, then revoked
    csr2, key2 = _csr_and_key()
    issued = master.call("POST", "/certificates",
                         json={"role": "person", "name": "alice", "csr": csr2})
    assert issued.status_code == 201, issued.text
    serial = issued.json()["serial"]
    assert master.call("POST", f"/certificates/{serial}/revocation", json={}).ok
    secrets_.append(key2.splitlines()[1])

    # a peer pairing token, and a pairing attempt with it that cannot reach the peer
    peer_token = master.call("POST", "/tokens", json={"master": "peer-b"}).json()["token"]
    ca_pem = (master.data / "ca" / "ca.crt").read_text()
    master.call("POST", "/peers", json={
        "name": "peer-b", "url": f"https://127.0.0.1:{_closed_port()}",
        "ca_certificate": ca_pem, "token": peer_token})
    secrets_.append(peer_token)

    # an instance whose parameters hold secrets; a query that holds one
    inst = master.call("POST", "/instances", json={
        "reference": "db-1", "software_url": URL,
        "parameters": {"password": PASSWORD, "api_key": API_KEY}})
    assert inst.status_code == 201, inst.text
    master.call("GET", "/instances", params={"token": QUERY_SECRET})
    gone = master.call("DELETE", f"/instances/{inst.json()['id']}")
    assert gone.ok, gone.text

    lines = master.wait_for_access_line(master.request_ids[-1])
    text = master.log_file.read_text()
    for secret in secrets_:
        assert secret not in text, f"{secret[:12]}... appears in the log"

    def messages(logger):
        return [o["message"] for o in lines if o["logger"] == logger]

    who = "admin/root" if master.secure else "admin/local"
    started = [o for o in lines if o["logger"] == "slapfed.master.server"
               and "listening on" in o["message"]]
    assert started and started[0]["tls"] is master.secure and started[0]["url"] == master.url
    ca_lines = messages("slapfed.ca")
    assert any("certificate authority" in m and "created" in m for m in ca_lines)
    assert any(m.startswith("enrolment token issued for computer/c1") for m in ca_lines)
    assert "enrolment token for computer/c1 redeemed" in ca_lines
    assert any(m.startswith("enrolment refused") for m in ca_lines)
    assert any(m.startswith("enrolment token issued for master/peer-b") for m in ca_lines)
    issued_lines = [o for o in lines if o["message"].startswith("issued certificate")]
    assert {o.get("subject") for o in issued_lines} >= {"computer/c1", "person/alice"}
    alice = next(o for o in issued_lines if o.get("subject") == "person/alice")
    assert alice["serial"] == serial and alice["principal"] == who
    assert any(m.startswith(f"revoked certificate {serial}") for m in ca_lines)
    assert f"computer c1 registered by {who}: 1 partition(s)" in messages(
        "slapfed.master.computers")
    assert any(m.endswith(f"requested by {who}: placed on c1/p000")
               for m in messages("slapfed.master.instances"))
    assert any("destruction requested" in m for m in messages("slapfed.master.instances"))

    # one access line per request, each with the id the caller got back
    access = {o["request_id"]: o for o in lines if o["logger"] == "slapfed.access"}
    assert set(master.request_ids) <= set(access)
    for o in access.values():
        assert {"principal", "method", "path", "status", "duration_ms", "ts", "level"} <= set(o)
    refused = access[master.request_ids[4]]          # the token presented again
    assert (refused["status"], refused["principal"], refused["error"]) == (
        401, "anonymous" if master.secure else who, "invalid_token")
    assert again.json()["error"]["request_id"] == master.request_ids[4]
    assert access[master.request_ids[0]]["principal"] == who


def test_error_body_header_and_access_line_agree_over_http(master):
    resp = master.call("GET", "/computers/nope", headers={"X-Request-Id": "probe-e2e-1"})
    assert resp.status_code == 404
    assert resp.headers["X-Request-Id"] == "probe-e2e-1"
    assert resp.json()["error"]["request_id"] == "probe-e2e-1"
    lines = master.wait_for_access_line("probe-e2e-1")
    (line,) = [o for o in lines if o.get("request_id") == "probe-e2e-1"
               and o["logger"] == "slapfed.access"]
    assert (line["status"], line["error"], line["path"]) == (404, "not_found",
                                                             "/api/v1/computers/nope")
    assert os.path.getsize(master.log_file) > 0
