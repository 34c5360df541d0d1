"""Master benchmarks: request throughput and latency with 1 and 16 clients at 500
partitions; the node's desired-state read at 500 and 5000 partitions (bytes and time,
changed and unchanged).

Run: .venv/bin/python bench/bench_master.py   (about a minute; prints a table and writes
bench/results/master.json). Clients are separate processes speaking HTTP/1.1 keep-alive,
so client-side Python does not share the server's GIL; on 2 cores they still share CPUs.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import register, save, start_master, summary_ms  # noqa: E402

from slapfed.client import MasterClient  # noqa: E402

RELEASE = "/bench/software.cfg"


def _client_worker(args):
    url, bodies, barrier_at, creds = args
    parts = urlsplit(url)
    if creds is None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    else:
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=30,
                                           context=creds.ssl_context())
    headers = {"Content-Type": "application/json"}
    lat = []
    errors = 0
    while time.time() < barrier_at:  # start together
        time.sleep(0.001)
    for body in bodies:
        t0 = time.perf_counter()
        conn.request("POST", "/api/v1/instances", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        lat.append(time.perf_counter() - t0)
        if resp.status >= 300:
            errors += 1
    conn.close()
    return lat, errors


def run_clients(url: str, bodies: list[bytes], clients: int, creds=None) -> dict:
    shares = [bodies[i::clients] for i in range(clients)]
    start_at = time.time() + 0.5
    with mp.Pool(clients) as pool:
        t0 = time.time()
        results = pool.map(_client_worker, [(url, s, start_at, creds) for s in shares])
        wall = time.time() - max(t0, start_at)
    lat = [x for r in results for x in r[0]]
    errors = sum(r[1] for r in results)
    return dict(summary_ms(lat), clients=clients, requests=len(lat), errors=errors,
                per_second=round(len(lat) / wall, 1))


def body(ref: str, params: dict | None = None, requester: str | None = "bench") -> bytes:
    out = {"reference": ref, "software_url": RELEASE, "parameters": params or {}}
    if requester:
        out["requester"] = requester
    return json.dumps(out).encode()


def bench_requests(tmp: Path, clients: int, partitions: int = 500, tls: bool = False) -> dict:
    """Allocations, unchanged and changing re-requests. With ``tls`` the master serves
    HTTPS with client certificates (production mode) and clients present a person's."""
    if tls:
        proc, url, creds = start_master(tmp / f"req-{clients}-tls", tls=True)
        admin, person = creds["admin"].client(url), creds["person"]
        who = None
    else:
        proc, url = start_master(tmp / f"req-{clients}")
        admin, person, who = MasterClient(url), None, "bench"
    try:
        register(admin, "bench", partitions)
        admin.supply("bench", RELEASE)
        out = {}
        # new allocations: each request places a new instance on a free partition
        out["allocate"] = run_clients(
            url, [body(f"i{i}", requester=who) for i in range(partitions)], clients, person)
        # idempotent re-requests, nothing changed
        n = 4000
        out["re_request_unchanged"] = run_clients(
            url, [body(f"i{i % partitions}", requester=who) for i in range(n)], clients, person)
        # re-requests that change a parameter: one write each (commits are shared)
        out["re_request_changed"] = run_clients(
            url, [body(f"i{i % partitions}", {"n": i}, requester=who) for i in range(n)],
            clients, person)
        comp = admin.show_computer("bench")
        owners = [p["instance"] for p in comp["partitions"] if p["instance"]]
        out["partitions_given_twice"] = len(owners) - len(set(owners))
        return out
    finally:
        proc.stop()


WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"reference": "i' .. (counter %% %(partitions)d) .. '", "software_url": "%(release)s", '
    .. '"requester": "bench", "parameters": {"n": ' .. counter .. '}}'
  return wrk.format("POST", "/api/v1/instances", {["Content-Type"]="application/json"}, body)
end
"""


def bench_requests_wrk(tmp: Path, partitions: int = 500, seconds: int = 8) -> dict | None:
    """Changing re-requests from wrk (a C load generator: 2 threads, 16 connections), when
    it is installed, so that client-side Python does not eat the 2 cores."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    proc, url = start_master(tmp / "req-wrk")
    try:
        client = MasterClient(url)
        register(client, "bench", partitions)
        client.supply("bench", RELEASE)
        run_clients(url, [body(f"i{i}") for i in range(partitions)], 4)
        script = tmp / "wrk.lua"
        script.write_text(WRK_SCRIPT % {"partitions": partitions, "release": RELEASE})
        out = subprocess.run([wrk, "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script),
                              url + "/api/v1/instances"], capture_output=True, text=True).stdout
        rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
        p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
        p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
        return {"clients": 16, "per_second": float(rate.group(1)) if rate else None,
                "p50_ms": round(float(p50.group(1)) * scale[p50.group(2)], 3) if p50 else None,
                "p99_ms": round(float(p99.group(1)) * scale[p99.group(2)], 3) if p99 else None}
    finally:
        proc.stop()


def bench_desired_state(tmp: Path, partitions: int) -> dict:
    proc, url = start_master(tmp / f"ds-{partitions}")
    try:
        client = MasterClient(url, requester="bench")
        register(client, "node", partitions)
        client.supply("node", RELEASE)
        run_clients(url, [body(f"i{i}", {"greeting": "hello", "index": i})
                          for i in range(partitions)], 4)
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        path = "/api/v1/computers/node/desired-state"

        def read(etag=None):
            t0 = time.perf_counter()
            conn.request("GET", path, headers={"If-None-Match": etag} if etag else {})
            resp = conn.getresponse()
            data = resp.read()
            return time.perf_counter() - t0, resp.status, resp.getheader("ETag"), len(data)

        changed, unchanged = [], []
        size = 0
        for i in range(15):
            client.request(f"i{i}", RELEASE, parameters={"greeting": f"changed-{i}", "index": i})
            dt, status, etag, size = read()
            assert status == 200, status
            changed.append(dt)
            for _ in range(20):
                dt, status, _, _ = read(etag)
                assert status == 304, status
                unchanged.append(dt)
        conn.close()
        return {"partitions": partitions, "bytes": size,
                "changed": summary_ms(changed), "unchanged_304": summary_ms(unchanged)}
    finally:
        proc.stop()


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-") as d:
        tmp = Path(d)
        results = {"requests_1_client": bench_requests(tmp, 1),
                   "requests_16_clients": bench_requests(tmp, 16),
                   "requests_16_clients_mtls": bench_requests(tmp, 16, tls=True),
                   "re_request_changed_wrk_16": bench_requests_wrk(tmp),
                   "desired_state_500": bench_desired_state(tmp, 500),
                   "desired_state_5000": bench_desired_state(tmp, 5000)}
    path = save("master", results)
    print(json.dumps(results, indent=2))
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    main()
