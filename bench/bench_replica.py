"""Replicas: how far behind an async replica is under steady writes, and what sync costs.

Real masters (gunicorn, FileStorage, mutual TLS) on loopback:
1. lag: a primary with one async replica, one writer at a steady rate; after each
   acknowledged write the primary's last TID is read, and a sampler asks the replica
   every few ms which TID it holds; a write's lag is the time from its answer to the
   first sample holding it (target: p99 <= 1 s);
2. throughput, in the same run: writers as fast as they can on a primary without a
   replica, then on a primary with one sync replica; the ratio is the price of sync.
Writes are `supply` calls (one small transaction each) by an admin.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import Creds, pct, register, save, start_master  # noqa: E402
from slapfed.procs import Proc, slapfed_argv, wait_for  # noqa: E402


def start_replica(base: Path, primary_url: str, admin: Creds, name: str, *extra):
    inv = admin.client(primary_url).invite_replica(name)
    path = base / f"{name}.invitation.json"
    path.write_text(json.dumps({"primary": inv["primary"], "url": primary_url, "for": name,
                                "token": inv["token"],
                                "ca_certificate": inv["ca_certificate"]}))
    data = base / name
    data.mkdir()
    proc = Proc(slapfed_argv("master", "serve", "--data", str(data), "--listen",
                             "127.0.0.1:0", "--replica-of", str(path), *extra),
                base / f"{name}.log")
    url_file = data / "master.url"
    wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 60, "replica URL",
             proc=proc)
    url = url_file.read_text().strip()
    client = admin.client(primary_url)
    wait_for(lambda: any(r["confirmed_tid"] for r in client.replication_status()["replicas"]),
             30, "the replica to follow", proc=proc)
    return proc, url


def measure_lag(primary_url, replica_url, admin: Creds, rate: float, seconds: float):
    writer, reader = admin.client(primary_url), admin.client(replica_url)
    acked, samples, stop = [], [], threading.Event()

    def sample():
        while not stop.is_set():
            follower = reader.replication_status()["follower"]
            samples.append((time.monotonic(), follower["applied_tid"] or ""))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        t_end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < t_end:
            due = time.monotonic() + 1 / rate
            writer.supply("lag-c", f"/srv/lag/{i}")
            t_ack = time.monotonic()
            acked.append((t_ack, writer.replication_status()["last_tid"]))
            i += 1
            time.sleep(max(0.0, due - time.monotonic()))
        last = acked[-1][1]
        wait_for(lambda: samples and samples[-1][1] >= last, 30, "the replica to catch up")
    finally:
        stop.set()
        sampler.join()
    lags = []
    for t_ack, tid in acked:
        seen = next((t for t, held in samples if held >= tid and t >= t_ack), None)
        if seen is None:            # held before the answer's TID was even read
            seen = t_ack
        lags.append(seen - t_ack)
    return lags


def throughput(url, admin: Creds, writers: int, seconds: float, tag: str) -> float:
    counts = [0] * writers
    t_end = time.monotonic() + seconds

    def run(w):
        c = admin.client(url)
        while time.monotonic() < t_end:
            c.supply("tp-c", f"/srv/{tag}/{w}-{counts[w]}")
            counts[w] += 1

    threads = [threading.Thread(target=run, args=(w,)) for w in range(writers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - started)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="writes/s of the lag run")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args(argv if argv is not None else [])
    base = Path(tempfile.mkdtemp(prefix="bench-replica-"))
    procs = []
    try:
        # 1. async lag under steady writes
        p, url, creds = start_master(base / "lag-primary", tls=True)
        procs.append(p)
        admin = creds["admin"]
        register(admin.client(url), "lag-c", 1)
        r, rurl = start_replica(base, url, admin, "lag-r")
        procs.append(r)
        lags = measure_lag(url, rurl, admin, args.rate, args.seconds)
        for proc in reversed(procs):
            proc.stop()
        procs.clear()

        # 2. throughput: no replica, then one sync replica (fresh masters each)
        p, url, creds = start_master(base / "tp-alone", tls=True)
        procs.append(p)
        register(creds["admin"].client(url), "tp-c", 1)
        alone = throughput(url, creds["admin"], args.writers, args.seconds, "alone")
        p.stop()
        procs.clear()
        p, url, creds = start_master(base / "tp-sync", tls=True)
        procs.append(p)
        register(creds["admin"].client(url), "tp-c", 1)
        r, _ = start_replica(base, url, creds["admin"], "tp-r", "--sync")
        procs.append(r)
        synced = throughput(url, creds["admin"], args.writers, args.seconds, "sync")
        degraded = creds["admin"].client(url).replication_status()["degraded_since"]
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(base, ignore_errors=True)
    result = {
        "async_lag": {"writes": len(lags), "rate_per_s": args.rate,
                      "p50_ms": round(pct(lags, 50) * 1e3, 2),
                      "p99_ms": round(pct(lags, 99) * 1e3, 2),
                      "max_ms": round(max(lags) * 1e3, 2), "target_p99_ms": 1000},
        "throughput": {"writers": args.writers, "no_replica_per_s": round(alone, 1),
                       "sync_replica_per_s": round(synced, 1),
                       "sync_over_none": round(synced / alone, 3),
                       "sync_degraded_during_run": degraded is not None},
        "cpus": os.cpu_count(),
    }
    lag = result["async_lag"]
    tp = result["throughput"]
    print(f"async replica lag at {args.rate:g} writes/s: p50 {lag['p50_ms']} ms, p99 "
          f"{lag['p99_ms']} ms, max {lag['max_ms']} ms ({lag['writes']} writes)")
    print(f"throughput with {args.writers} writers: no replica {tp['no_replica_per_s']}/s, "
          f"sync replica {tp['sync_replica_per_s']}/s (ratio {tp['sync_over_none']})")
    print(f"results: {save('replica', result)}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
