"""Shared helpers of the benchmarks: start a master process, percentiles, result tables.

Benchmarks are scripts, not tests: they print figures and write bench/results/*.json.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from slapfed.client import MasterClient
from slapfed.procs import Proc, slapfed_argv, wait_for

RESULTS = Path(__file__).resolve().parent / "results"


class Creds:
    """Client identity files for a master served over mutual TLS."""

    def __init__(self, files):
        self.ca, self.cert, self.key = str(files.ca_path), str(files.cert_path), str(files.key_path)

    def client(self, url: str, **kw) -> MasterClient:
        return MasterClient(url, ca=self.ca, cert=self.cert, key=self.key, **kw)

    def ssl_context(self):
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def start_master(data: Path, *extra: str, tls: bool = False, tree: Path | None = None):
    """A master process on 127.0.0.1 (port chosen at run time). Plain HTTP (development
    mode) returns (proc, url); with ``tls`` it serves HTTPS with client certificates and
    returns (proc, url, {"admin": Creds, "person": Creds}). ``tree``: serve the slapfed
    package found in that directory (another checkout, for a before/after comparison)
    instead of this one."""
    url_file = data / "master.url"
    mode = () if tls else ("--insecure-http",)
    where = {} if tree is None else {
        "cwd": str(data.parent), "env": dict(os.environ, PYTHONPATH=str(tree))}
    proc = Proc(slapfed_argv("master", "serve", "--data", str(data), "--listen", "127.0.0.1:0",
                             *mode, *extra), data.parent / f"{data.name}.log", **where)
    wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30, "master URL", proc=proc)
    url = url_file.read_text().strip()
    if not tls:
        client = MasterClient(url)
        wait_for(lambda: _healthy(client), 15, "master health", proc=proc)
        return proc, url
    from slapfed.ca import identity as ids
    from slapfed.ca.authority import CertificateAuthority
    ca = CertificateAuthority(data / "ca")
    creds = {"admin": Creds(ca.issue_with_new_key(ids.admin("bench-admin"),
                                                  data.parent / f"{data.name}-admin")),
             "person": Creds(ca.issue_with_new_key(ids.person("bench"),
                                                   data.parent / f"{data.name}-person"))}
    client = creds["admin"].client(url)
    wait_for(lambda: _healthy(client), 15, "master health", proc=proc)
    return proc, url, creds


def _healthy(client):
    try:
        client.health()
        return True
    except Exception:  # noqa: BLE001 - polling until the master answers at all
        return False


def register(client: MasterClient, computer: str, partitions: int, **loc) -> None:
    base = 0x7F640000  # 127.100.0.0
    parts = [{"id": f"p{i}", "address": _ip(base + i + 1), "port_base": 10000, "port_count": 10}
             for i in range(partitions)]
    client.register_computer({"id": computer, "partitions": parts, **loc})


def _ip(n: int) -> str:
    return ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0))


def pct(values, q: float) -> float:
    vals = sorted(values)
    if not vals:
        return float("nan")
    k = min(len(vals) - 1, max(0, round(q / 100 * (len(vals) - 1))))
    return vals[k]


def summary_ms(values) -> dict:
    return {"n": len(values), "p50_ms": round(statistics.median(values) * 1e3, 3),
            "p99_ms": round(pct(values, 99) * 1e3, 3)}


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = dict(data, measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
