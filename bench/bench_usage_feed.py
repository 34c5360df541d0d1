"""Usage across delegation benchmark: how fast a master pulls and records a peer's usage
feed, between two real masters over mutual TLS on loopback.

Run: .venv/bin/python bench/bench_usage_feed.py [--instances N] [--reports R] [--samples S]
(writes bench/results/usage_feed.json).

Master a delegates N instances (default 50) to its peer b (SLA master=b); b's node posts
R usage reports (default 400) of those N partitions x 5 resources each, as a node would
(a computer certificate of b's CA), while a does not pull (--peer-usage-interval 0): a
backlog of N x R feed entries. a is then started again pulling (every 0.2 s, pages of
500): from the first entry recorded to the last, entries/s (what a records, each page in
one transaction with its cursor; what b answers, JSON over TLS, included). The totals of
a's statement are checked against b's. Then S single reports (default 20) are posted one
at a time: the delay from b's acknowledgement to a's statement showing it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Creds, register, save, start_master, summary_ms  # noqa: E402

from slapfed.procs import wait_for  # noqa: E402

HELLO = str(Path(__file__).resolve().parents[1] / "profiles" / "hello" / "software.cfg")
DAY = "2026-11-05"
RESOURCES = (("cpu_seconds", 0.5), ("memory_peak_bytes", 3.0e7), ("disk_bytes", 4096.0),
             ("memory_byte_seconds", 1.8e9), ("x-requests", 1.0))


def _time(i: int) -> tuple[str, str]:
    h, m = divmod(i, 60)
    h = h % 24
    return f"{DAY}T{h:02d}:{m % 60:02d}:00Z", f"{DAY}T{h:02d}:{m % 60:02d}:30Z"


def _report(rid: str, i: int, remotes) -> dict:
    start, end = _time(i)
    return {"report_id": rid, "start": start, "end": end, "partitions": [
        {"partition": r["placement"]["partition"], "instance_id": r["id"],
         "usage": [{"resource": name, "quantity": q} for name, q in RESOURCES]}
        for r in remotes]}


def _requests_seen(client) -> float:
    try:
        doc = client.statement(DAY)
    except Exception:  # noqa: BLE001 - a master starting
        return -1.0
    return {u["resource"]: u["quantity"] for u in doc["totals"]["usage"]}.get("x-requests", 0.0)


def _serve_again(data: Path, *extra: str):
    """The master of ``data`` served again (its CA and the clients' files kept)."""
    from slapfed.procs import Proc, slapfed_argv
    url_file = data / "master.url"
    url_file.unlink(missing_ok=True)
    proc = Proc(slapfed_argv("master", "serve", "--data", str(data), "--listen",
                             "127.0.0.1:0", *extra), data.parent / f"{data.name}-again.log")
    try:
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                 "master URL", proc=proc)
    except BaseException:
        proc.stop()           # never left behind when it does not come up
        raise
    return proc, url_file.read_text().strip()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=50)
    ap.add_argument("--reports", type=int, default=400)
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args(argv if argv is not None else sys.argv[1:] if __name__ == "__main__"
                         else [])
    from slapfed.ca import identity as ids
    from slapfed.ca.authority import CertificateAuthority
    base = Path(tempfile.mkdtemp(prefix="bench-usage-feed-"))
    procs = []
    try:
        bproc, burl, bcreds = start_master(base / "b", "--name", "b", "--lease", "3600",
                                           tls=True)
        procs.append(bproc)
        aproc, aurl, acreds = start_master(base / "a", "--name", "a",
                                           "--peer-usage-interval", "0", tls=True)
        procs.append(aproc)
        badmin = bcreds["admin"].client(burl)
        register(badmin, "b-c1", args.instances)
        badmin.supply("b-c1", HELLO)
        node = Creds(CertificateAuthority(base / "b" / "ca").issue_with_new_key(
            ids.computer("b-c1"), base / "b-node")).client(burl)
        token = badmin.create_master_token("a")
        acreds["admin"].client(aurl).add_peer({"name": "b", "url": burl,
                                               "ca_certificate": token["ca_certificate"],
                                               "token": token["token"]})
        alice = acreds["person"].client(aurl)
        for k in range(args.instances):
            alice.request(f"d-{k}", HELLO, sla={"master": "b"})
        remotes: dict = {}

        def placed():
            for inst in badmin.list_instances():
                if inst["requester"] == "master/a" and inst.get("placement"):
                    remotes[inst["id"]] = inst
            return len(remotes) >= args.instances
        wait_for(placed, 120, "every delegated instance placed at b", interval=0.2)
        remotes_list = list(remotes.values())

        t0 = time.perf_counter()
        for i in range(args.reports):
            node.report_usage("b-c1", _report(f"b-c1:{i}", i, remotes_list))
        fill_s = time.perf_counter() - t0
        entries = args.reports * args.instances
        print(f"backlog: {entries} entries at b ({args.reports} reports of "
              f"{args.instances} partitions in {fill_s:.1f} s)")

        # a again, now pulling: entries/s from the first entry recorded to the last
        aproc.stop()
        procs.remove(aproc)
        aproc, aurl = _serve_again(base / "a", "--name", "a", "--peer-usage-interval", "0.2")
        procs.append(aproc)
        alice = acreds["person"].client(aurl)
        first = {}

        def progress():
            seen = _requests_seen(alice)
            if seen > 0 and "t" not in first:
                first.update(t=time.perf_counter(), n=seen)
            return seen >= entries
        wait_for(progress, 600, "the backlog recorded at a", interval=0.01)
        done_t = time.perf_counter()
        pulled = entries - first["n"]
        seconds = done_t - first["t"]
        rate = pulled / seconds if seconds > 0 else float("inf")
        mine = alice.statement(DAY)
        theirs = badmin.statement(DAY, peer="a")
        view = lambda d: {u["resource"]: u["quantity"] for u in d["totals"]["usage"]}  # noqa: E731
        assert view(mine) == view(theirs), (view(mine), view(theirs))
        print(f"pull: {pulled:.0f} entries in {seconds:.2f} s = {rate:.0f} entries/s "
              f"(after the first page of {first['n']:.0f})")

        delays = []
        for s in range(args.samples):
            before = _requests_seen(alice)
            node.report_usage("b-c1", _report(f"b-c1:late-{s}", args.reports + s,
                                              remotes_list[:1]))
            t = time.perf_counter()
            wait_for(lambda: _requests_seen(alice) > before, 30, "one report at a",
                     interval=0.005)
            delays.append(time.perf_counter() - t)
        lat = summary_ms(delays)
        print(f"one report at b -> a's statement: median {lat['p50_ms']:.0f} ms, p99 "
              f"{lat['p99_ms']:.0f} ms (pulled every 0.2 s)")
        result = {"instances": args.instances, "reports": args.reports, "entries": entries,
                  "fill_seconds": round(fill_s, 2),
                  "fill_reports_per_s": round(args.reports / fill_s, 1),
                  "pull_entries": int(pulled), "pull_seconds": round(seconds, 3),
                  "pull_entries_per_s": round(rate), "page": 500,
                  "report_to_origin": lat, "pull_interval_s": 0.2,
                  "median_delay_ms": round(statistics.median(delays) * 1e3, 1)}
        print(f"written {save('usage_feed', result)}")
        return result
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
