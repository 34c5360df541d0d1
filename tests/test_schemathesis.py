"""A client generator's view of the API: schemathesis generates requests from the OpenAPI
document a real master serves, sends them over loopback and checks every answer (status
documented, body matching its schema, content type, schema-valid requests accepted,
invalid ones refused, stateful links). Zero failures expected, from two masters:

- a development-mode master (plain HTTP, every caller its administrator);
- a mutual-TLS master (gunicorn, its own CA), called with an admin's client certificate
  issued by that CA, so that operations run past authentication.

Every operation is exercised. The two that make the master call the URL of their body
(POST /peers, PUT /instances/{iid}/child-master) run against masters started with
``--outbound-allow 127.0.0.0/8``: a URL whose host lies elsewhere is refused before any
connection; and each master process runs with a guard (an audit hook, see GUARD) that
refuses and records every name resolution and every connection leaving loopback — the
test fails if the master attempted one connection outside loopback. The long poll
(GET /federation/changes) runs against masters started with ``--long-poll-max 0.2``.

Where a schema-valid body is refused with 400 for a reason no schema can say, 400 is an
accepted answer of that operation (ALLOWED_400, each with its reason).
"""
import collections
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import start_master_process, stop_process

pytestmark = pytest.mark.e2e

SEED = 20240601
MAX_EXAMPLES = 10
MASTER_ARGS = ("--outbound-allow", "127.0.0.0/8", "--long-poll-max", "0.2")
ALLOWED_400 = {
    # relative SLA keys and ``parent`` must name existing instances of the requester
    "request_instance": "references to other instances",
    "explain_placement": "references to other instances",
    # a CSR is DER inside PEM armour whose signature must verify: no pattern says that
    "redeem_token": "a CSR that does not parse",
    "certify_partition": "a CSR that does not parse",
    "issue_certificate": "a CSR that does not parse",
    # the outbound policy is the deployment's (--outbound-allow), and whether a host
    # resolves into it is the resolver's answer of the moment, not the document's
    "add_peer": "a URL outside the outbound policy; an unpaired peer without token",
    "register_child_master": "a URL outside the outbound policy",
    "register_replica": "a URL outside the outbound policy",
    # a cursor is opaque: only the 'next' a master handed out reads back
    "list_instances": "a cursor this master did not make",
    "list_computers": "a cursor this master did not make",
    "show_topology": "a cursor this master did not make",
    # accounting: a report's entries must name the computer's partitions and the
    # instances they host; start before end; days that exist (no 2026-02-30)
    "report_usage": "partitions and instances of that computer; start before end",
    "statement": "a day that does not exist; both owner and peer",
    "instance_usage": "a day that does not exist; until before since",
    "set_prices": "two prices for one release and resource; a per of zero",
}

# Installed as sitecustomize in every master process (its gunicorn workers inherit it):
# no name is resolved (a resolver is not on loopback), no connection leaves loopback;
# each attempt is refused and written to $SLAPFED_TEST_NET_LOG as one JSON line.
GUARD = r'''
import errno, ipaddress, json, os, socket, sys

_LOG = os.environ["SLAPFED_TEST_NET_LOG"]


def _record(kind, what):
    with open(_LOG, "a") as f:
        f.write(json.dumps({"kind": kind, "what": repr(what)}) + "\n")


def _numeric(host):
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
        return True
    except (OSError, ValueError):
        return False


def _loopback(host):
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _hook(event, args):
    if event == "socket.getaddrinfo":
        host = args[0]
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if host is None or _numeric(host):
            return
        _record("resolve", host)
        raise socket.gaierror(socket.EAI_NONAME, "no name resolution here")
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1]
        if not isinstance(address, tuple) or _loopback(address[0]):
            return
        _record("connect", address)
        raise OSError(errno.ENETUNREACH, "no connection outside loopback here")


sys.addaudithook(_hook)
'''


def _config() -> str:
    # a request line or headers too long for the server are refused (414, 431) before
    # the application reads what is wrong with them
    lines = ["[checks.negative_data_rejection]",
             'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "414", '
             '"415", "422", "428", "429", "431", "5XX"]', ""]
    for op_id in ALLOWED_400:
        lines += ["[[operations]]", f'include-operation-id = "{op_id}"',
                  "checks.positive_data_acceptance.expected-statuses = "
                  '["2XX", "3XX", "400", "401", "403", "404", "409", "422", "429", "5XX"]',
                  ""]
    return "\n".join(lines)


def _guarded_env(tmp_path):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    env = dict(os.environ, SLAPFED_TEST_NET_LOG=str(log),
               PYTHONPATH=os.pathsep.join(filter(None, [str(guard),
                                                        os.environ.get("PYTHONPATH")])))
    return env, log


def _schemathesis(tmp_path, url, *tls):
    """Run schemathesis against the master at ``url``; returns (report lines, seconds)."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config())
    report = tmp_path / "report.ndjson"
    argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
            f"{url}/api/v1/openapi.json", "--url", f"{url}/api/v1",
            "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
            "--no-shrink", "--workers", "1", "--warnings", "off",
            "--request-timeout", "10", "--report", "ndjson",
            "--report-ndjson-path", str(report), *tls]
    env = dict(os.environ, NO_COLOR="1", SCHEMATHESIS_TELEMETRY="false")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(var, None)
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env,
                          cwd=tmp_path)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
    assert "failures" not in done.stdout.rsplit("SUMMARY", 1)[-1] \
        or " 0 failures" in done.stdout, done.stdout[-3000:]
    lines = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    assert lines
    return lines, seconds, done.stdout


def _statuses(lines) -> dict:
    """operation label -> Counter of the statuses it answered (from the ndjson report)."""
    out = collections.defaultdict(collections.Counter)

    def walk(node, label=None):
        if isinstance(node, dict):
            label = node.get("label", label) if isinstance(node.get("label"), str) else label
            resp = node.get("response")
            if isinstance(resp, dict) and isinstance(resp.get("status_code"), int) and label:
                out[label][resp["status_code"]] += 1
            for value in node.values():
                walk(value, label)
        elif isinstance(node, list):
            for value in node:
                walk(value, label)

    for line in lines:
        walk(line)
    return {op: seen for op, seen in out.items() if op.split(" ", 1)[0].isupper()}


def _no_connection_left_loopback(net_log) -> list:
    attempts = [json.loads(x) for x in net_log.read_text().splitlines()] \
        if net_log.exists() else []
    assert not [a for a in attempts if a["kind"] == "connect"], attempts
    return attempts


def test_schemathesis_development_mode(tmp_path):
    env, net_log = _guarded_env(tmp_path)
    proc, url = start_master_process(str(tmp_path / "master"), "--insecure-http",
                                     *MASTER_ARGS, env=env)
    try:
        lines, seconds, out = _schemathesis(tmp_path, url)
    finally:
        stop_process(proc)
    statuses = _statuses(lines)
    assert statuses["POST /peers"] and statuses["GET /federation/changes"][200], statuses
    _no_connection_left_loopback(net_log)
    print(f"development mode: {seconds:.1f}s, {len(statuses)} operations, "
          f"{sum(sum(c.values()) for c in statuses.values())} answers")


def test_schemathesis_mutual_tls(tmp_path):
    from slapfed.ca import identity as ids
    from slapfed.ca.authority import CertificateAuthority
    env, net_log = _guarded_env(tmp_path)
    proc, url = start_master_process(str(tmp_path / "master"), *MASTER_ARGS, secure=True,
                                     env=env)
    try:
        assert url.startswith("https://127.0.0.1:")
        admin = CertificateAuthority(tmp_path / "master" / "ca").issue_with_new_key(
            ids.admin("root"), tmp_path / "root")
        as_admin = ("--tls-verify", str(admin.ca_path), "--request-cert", str(admin.cert_path),
                    "--request-cert-key", str(admin.key_path))
        # the admin may revoke its own certificate (and then every call is a 401): that
        # operation runs last, on its own
        lines, seconds, out = _schemathesis(tmp_path, url, *as_admin,
                                            "--exclude-operation-id", "revoke_certificate")
        # what only peer masters may call (an admin is answered 403): as a peer master
        peer = CertificateAuthority(tmp_path / "master" / "ca").issue_with_new_key(
            ids.master("peer-1"), tmp_path / "peer")
        (tmp_path / "as-peer").mkdir()
        peer_lines, peer_seconds, _ = _schemathesis(
            tmp_path / "as-peer", url, "--tls-verify", str(peer.ca_path),
            "--request-cert", str(peer.cert_path), "--request-cert-key", str(peer.key_path),
            "--include-operation-id", "federation_changes",
            "--include-operation-id", "federation_summary",
            "--include-operation-id", "usage_feed")
        (tmp_path / "revoking").mkdir()
        revoking_lines, _, _ = _schemathesis(
            tmp_path / "revoking", url, *as_admin, "--include-operation-id", "list_certificates",
            "--include-operation-id", "revoke_certificate")
    finally:
        stop_process(proc)
    peer_statuses = _statuses(peer_lines)
    assert peer_statuses["GET /federation/changes"][200], peer_statuses
    assert peer_statuses["GET /federation/usage"][200], peer_statuses
    statuses = _statuses(lines)
    # past authentication: (nearly) every operation answered something else than 401
    authenticated = [op for op, seen in statuses.items() if set(seen) - {401}]
    assert len(authenticated) >= len(statuses) - 1, statuses
    revoking = _statuses(revoking_lines)
    assert any(200 <= s < 300 for s in revoking["POST /certificates/{serial}/revocation"]
               | revoking["GET /certificates"]), revoking
    _no_connection_left_loopback(net_log)
    print(f"mutual TLS: {seconds:.1f}s, {len(statuses)} operations, "
          f"{sum(sum(c.values()) for c in statuses.values())} answers; as a peer master "
          f"{peer_seconds:.1f}s, {sum(sum(c.values()) for c in peer_statuses.values())}")
