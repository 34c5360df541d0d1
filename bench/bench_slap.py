"""SLAP side by side: a stock slapproxy (slapos.core 1.26.1) and a slapfed master (both
plain HTTP on loopback: slapproxy has no TLS; slapfed in development mode), driven by the
stock slapos.slap client, in alternating runs on fresh databases.

Workload per run: register one computer of N partitions (loadComputerConfigurationFromXML),
supply one release, M requests of distinct instances pinned to that computer from 1, 4
or 16 client processes, then read the full computer information: once (the first read
after the requests), READS times unchanged, then once after one instance changed (a
new parameter). Reported per server and client count: request throughput, p50/p99
latency, partitions given twice (two instances answered with the same partition),
full-information read times (first, unchanged p50 and the server's CPU per unchanged
read, after a change) and size, and the server's CPU time (its whole process tree,
from /proc) over the request phase.

Run: .venv/bin/python bench/bench_slap.py [N] [M] [rounds] [clients] [servers]   (defaults
500 500 2 1,4,16 slapproxy,slapfed; at N = 5000 slapproxy's registration outlasts the stock
client's 60 s timeout, so give slapfed alone; needs
slapos.core and slapos.libnetworkcache, which `slapos proxy start` imports; writes
bench/results/slap.json).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, start_master, summary_ms  # noqa: E402

from slapfed.procs import Proc, wait_for  # noqa: E402

RELEASE = "http://releases.invalid/bench/software.cfg"
COMPUTER = "bench-comp"
CLIENTS = (1, 4, 16)
READS = 20


def layout(n: int) -> dict:
    return {"reference": COMPUTER, "address": "127.0.0.1", "netmask": "255.0.0.0",
            "partition_list": [
                {"reference": f"slappart{i}", "tap": {"name": f"slaptap{i}"},
                 "address_list": [{"addr": f"127.{101 + i // 62500}.{i // 250 % 250}."
                                           f"{i % 250 + 1}", "netmask": "255.0.0.0"}]}
                for i in range(n)]}


# slapfed decodes one SLAP document of at most 1 MiB and 20,000 elements (core.marshal):
# a larger computer registers through the native API (same partition ids and addresses).
SLAP_LAYOUT_MAX = 1000


def _register_natively(slap_url: str, n: int) -> None:
    from slapfed.client import MasterClient
    parts = [{"id": p["reference"], "address": p["address_list"][0]["addr"],
              "port_base": 10000, "port_count": 10} for p in layout(n)["partition_list"]]
    MasterClient(slap_url.removesuffix("/slap/"), timeout=300).register_computer(
        {"id": COMPUTER, "partitions": parts})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_slapproxy(tmp: Path):
    port = _free_port()
    cfg = tmp / "proxy.cfg"
    cfg.write_text(f"[slapos]\nmaster_url = http://127.0.0.1:{port}\ncomputer_id = {COMPUTER}\n"
                   f"[slapproxy]\nhost = 127.0.0.1\nport = {port}\n"
                   f"database_uri = {tmp / 'proxy.db'}\n")
    slapos = str(Path(sys.executable).with_name("slapos"))
    proc = Proc([slapos, "proxy", "start", "--cfg", str(cfg)], tmp / "proxy.log")
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    wait_for(up, 30, "slapproxy", proc=proc)
    return proc, url + "/"


def start_slapfed(tmp: Path):
    proc, url = start_master(tmp / "master")
    return proc, url + "/slap/"


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and every live descendant (gunicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, total, grew = {pid}, 0, True
    while grew:
        grew = False
        for p, (ppid, _cpu) in stats.items():
            if ppid in tree and p not in tree:
                tree.add(p)
                grew = True
    for p in tree:
        total += stats.get(p, (0, 0))[1]
    return total / tick


def _requester(args):
    url, refs, start_at = args
    from slapos import slap as slap_lib
    conn = slap_lib.slap()
    conn.initializeConnection(url)
    order = conn.registerOpenOrder()
    while time.time() < start_at:
        time.sleep(0.001)
    lat, given, errors = [], [], 0
    for ref in refs:
        t0 = time.perf_counter()
        try:
            part = order.request(RELEASE, ref, partition_parameter_kw={"n": ref},
                                 filter_kw={"computer_guid": COMPUTER})
            given.append(part.getId())
        except Exception:  # noqa: BLE001 - counted and reported, the run goes on
            errors += 1
        lat.append(time.perf_counter() - t0)
    return lat, given, errors


def one_run(kind: str, tmp: Path, n: int, m: int, clients: int) -> dict:
    from slapos import slap as slap_lib
    from slapos.util import dumps
    proc, url = (start_slapproxy if kind == "slapproxy" else start_slapfed)(tmp)
    try:
        conn = slap_lib.slap()
        conn.initializeConnection(url)
        t0 = time.perf_counter()
        if kind == "slapfed" and n > SLAP_LAYOUT_MAX:
            _register_natively(url, n)
        else:
            conn.registerComputer(COMPUTER).updateConfiguration(dumps(layout(n)))
        register_s = time.perf_counter() - t0
        conn.registerSupply().supply(RELEASE, COMPUTER)
        refs = [f"inst-{i}" for i in range(m)]
        shares = [refs[i::clients] for i in range(clients)]
        cpu0 = tree_cpu_seconds(proc.pid)
        start_at = time.time() + 1.0
        with mp.Pool(clients) as pool:
            t0 = time.time()
            results = pool.map(_requester, [(url, s, start_at) for s in shares])
            wall = time.time() - max(t0, start_at)
        cpu = tree_cpu_seconds(proc.pid) - cpu0
        lat = [x for r in results for x in r[0]]
        given = [x for r in results for x in r[1]]
        errors = sum(r[2] for r in results)
        helper = conn._connection_helper
        order = conn.registerOpenOrder()

        def full_read():
            t0 = time.perf_counter()
            body = helper.GET("getFullComputerInformation", params={"computer_id": COMPUTER})
            return time.perf_counter() - t0, len(body)
        first, size = full_read()
        cpu_reads0 = tree_cpu_seconds(proc.pid)
        reads = [full_read()[0] for _ in range(READS)]
        cpu_per_read = (tree_cpu_seconds(proc.pid) - cpu_reads0) / READS
        order.request(RELEASE, refs[0], partition_parameter_kw={"n": "changed"},
                      filter_kw={"computer_guid": COMPUTER})
        changed, _ = full_read()
        return {"server": kind, "clients": clients, "partitions": n, "requests": m,
                "register_s": round(register_s, 3),
                "requests_per_s": round(m / wall, 1), **summary_ms(lat),
                "errors": errors, "given_twice": len(given) - len(set(given)),
                "server_cpu_s": round(cpu, 2),
                "full_info_first_ms": round(first * 1e3, 1),
                "full_info_next_p50_ms": round(statistics.median(reads) * 1e3, 1),
                "full_info_next_cpu_ms": round(cpu_per_read * 1e3, 1),
                "full_info_after_change_ms": round(changed * 1e3, 1),
                "full_info_bytes": size}
    finally:
        proc.stop()


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    n = int(argv[0]) if len(argv) > 0 else 500
    m = int(argv[1]) if len(argv) > 1 else 500
    rounds = int(argv[2]) if len(argv) > 2 else 2
    clients_counts = tuple(int(c) for c in argv[3].split(",")) if len(argv) > 3 else CLIENTS
    servers = tuple(argv[4].split(",")) if len(argv) > 4 else ("slapproxy", "slapfed")
    runs = []
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-slap-") as d:
        for r in range(rounds):
            for clients in clients_counts:
                # alternate which server goes first, so drift (other load) hits both
                order = ("slapproxy", "slapfed") if (r + clients) % 2 else ("slapfed", "slapproxy")
                for kind in (k for k in order if k in servers):
                    tmp = Path(d) / f"{kind}-{r}-{clients}"
                    tmp.mkdir()
                    run = one_run(kind, tmp, n, m, clients)
                    runs.append(run)
                    print(json.dumps(run))
                    shutil.rmtree(tmp, ignore_errors=True)
    summary = {}
    for clients in clients_counts:
        row = {}
        for kind in servers:
            mine = [x for x in runs if x["server"] == kind and x["clients"] == clients]
            row[kind] = {k: round(statistics.median(x[k] for x in mine), 3)
                         for k in ("requests_per_s", "p50_ms", "p99_ms", "given_twice",
                                   "server_cpu_s", "full_info_first_ms",
                                   "full_info_next_p50_ms", "full_info_next_cpu_ms",
                                   "full_info_after_change_ms", "full_info_bytes",
                                   "errors")}
        if len(servers) == 2:
            row["throughput_ratio_slapfed_over_slapproxy"] = round(
                row["slapfed"]["requests_per_s"] / row["slapproxy"]["requests_per_s"], 2)
        summary[f"{clients}_clients"] = row
    results = {"partitions": n, "requests": m, "rounds": rounds, "summary": summary,
               "runs": runs}
    path = save("slap", results)
    print(json.dumps(summary, indent=2))
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    main()
