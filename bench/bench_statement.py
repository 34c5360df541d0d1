"""Accounting benchmark: a statement at 10,000 instances x 30 days, and usage report
ingestion throughput, against a real master over HTTP.

Run: .venv/bin/python bench/bench_statement.py [--instances N] [--days D] [--reports R]
(writes bench/results/statement.json). Targets: statement <= 200 ms (median).

1. Statement. The ledger of one owner is filled in the master's own database (a real
   FileStorage), by the same fold ingestion uses (model.accounting.Ledger.record), with
   one entry per instance, day and resource: N instances (default 10,000) over D days
   (default 30) of November 2026, five resources (cpu_seconds, memory_peak_bytes,
   disk_bytes, net_tx_bytes, x-requests), spread over 4 releases x 2 software types x 25
   computers. (The node sends one report a minute; what the ledger keeps per instance and
   day is the same size whatever the count of reports folded in.) Then a master process
   serves that database (development mode) and the month's statement, a day's statement
   and the month grouped by requester are asked over HTTP, each --queries times (default
   30): medians and p99. The totals are checked against what was folded in.
2. Ingestion. A fresh master process, computers of 10 partitions each with an instance
   on each partition; reports of 10 partitions x 7 resources (and one open incident) are
   posted through MasterClient.report_usage, one after another (one node) and from 4
   threads at once (4 nodes): reports/s and per-report latency. Every report id is new;
   a duplicate pass then measures the idempotent answer.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import register, save, start_master, summary_ms  # noqa: E402

from slapfed.client import MasterClient  # noqa: E402
from slapfed.core import accounting as acct  # noqa: E402

TARGET_MS = 200.0
OWNER = "person/bench"
RESOURCES = (("cpu_seconds", 1.5), ("memory_peak_bytes", 3.0e7), ("disk_bytes", 1.0e6),
             ("net_tx_bytes", 4096.0), ("x-requests", 12.0))
HELLO = "/srv/releases/hello/software.cfg"


def fill_ledger(data: Path, instances: int, days: int) -> dict:
    """Fold instances x days x resources entries into the ledger of a new master database;
    returns the expected month totals."""
    import transaction
    from slapfed.model import ROOT_KEY
    from slapfed.store import open_db
    db = open_db(None, str(data))
    conn = db.open()
    ledger = conn.root()[ROOT_KEY].ledger
    start = acct.parse_period("2026-11").start
    expected = {r: 0.0 for r, _ in RESOURCES}
    peak = 0.0
    t0 = time.perf_counter()
    for i in range(instances):
        iid = f"i-{i:016x}"
        release = f"/srv/releases/r{i % 4}/software.cfg"
        stype = ("default", "db")[i % 2]
        computer = f"c{i % 25:02d}"
        ledger.subject(iid).update(reference=f"ref-{i}", requester=OWNER, owner=OWNER,
                                   tree_root=iid, release=release, software_type=stype,
                                   where_kind="computer", where=computer)
        for day in range(days):
            t = start + day * 86400
            for resource, q in RESOURCES:
                quantity = q * (1 + (i + day) % 3)
                ledger.record(acct.UsageEntry(
                    instance_id=iid, reference=f"ref-{i}", tree_root=iid, requester=OWNER,
                    owner=OWNER, release=release, software_type=stype,
                    where_kind="computer", where=computer, resource=resource,
                    quantity=quantity, start=t, end=t + 86400))
                if resource in ("cpu_seconds", "net_tx_bytes", "x-requests"):
                    expected[resource] += quantity
                elif resource == "memory_peak_bytes":
                    peak = max(peak, quantity)
        expected["disk_bytes"] += RESOURCES[2][1] * (1 + (i + days - 1) % 3)
        if i % 500 == 499:
            transaction.commit()
            conn.cacheMinimize()
    transaction.commit()
    expected["memory_peak_bytes"] = peak
    took = time.perf_counter() - t0
    conn.close()
    db.close()
    return {"expected": expected, "fill_s": round(took, 1),
            "entries": instances * days * len(RESOURCES)}


def time_queries(client: MasterClient, queries: int, **query) -> tuple[dict, dict]:
    client.statement(**query)                          # warm the master's object cache
    samples, doc = [], None
    for _ in range(queries):
        t0 = time.perf_counter()
        doc = client.statement(**query)
        samples.append(time.perf_counter() - t0)
    return summary_ms(samples), doc


def bench_statement(instances: int, days: int, queries: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-statement-") as tmp:
        data = Path(tmp) / "master"
        filled = fill_ledger(data, instances, days)
        print(f"ledger: {filled['entries']} entries folded in {filled['fill_s']} s")
        proc, url = start_master(data)
        try:
            client = MasterClient(url, timeout=60)
            month, doc = time_queries(client, queries, period="2026-11", owner=OWNER)
            got = {u["resource"]: u["quantity"] for u in doc["totals"]["usage"]}
            for resource, value in filled["expected"].items():
                assert abs(got[resource] - value) <= 1e-6 * max(1.0, value), (resource, got,
                                                                              value)
            assert sum(line["instances"] for line in doc["lines"]) == instances
            day, _ = time_queries(client, queries, period="2026-11-15", owner=OWNER)
            by_requester, _ = time_queries(client, queries, period="2026-11", owner=OWNER,
                                           group="requester")
            one = client.instance_usage("i-0000000000000000", "2026-11-01", "2026-11-30")
            assert len(one["days"]) == days
            samples = []
            for _ in range(queries):
                t0 = time.perf_counter()
                client.instance_usage("i-0000000000000007", "2026-11-01", "2026-11-30")
                samples.append(time.perf_counter() - t0)
            return {"instances": instances, "days": days, "resources": len(RESOURCES),
                    "lines": len(doc["lines"]), **filled, "month": month, "day": day,
                    "month_by_requester": by_requester,
                    "instance_usage_30_days": summary_ms(samples)}
        finally:
            proc.stop()


def usage_report(cid: str, seq: int, placed: list) -> dict:
    start = 1_795_000_000 + seq * 60
    return {"report_id": f"{cid}:{seq}", "start": acct.format_time(start),
            "end": acct.format_time(start + 60), "partitions": [
                {"partition": pid, "instance_id": iid, "usage": [
                    {"resource": "cpu_seconds", "quantity": 1.25},
                    {"resource": "memory_peak_bytes", "quantity": 31457280},
                    {"resource": "memory_byte_seconds", "quantity": 1.8e9},
                    {"resource": "disk_bytes", "quantity": 1048576},
                    {"resource": "disk_byte_seconds", "quantity": 62914560},
                    {"resource": "net_rx_bytes", "quantity": 10},
                    {"resource": "net_tx_bytes", "quantity": 20}],
                 "incidents": [{"kind": "promise", "name": "check-port",
                                "start": acct.format_time(1_795_000_000)}]
                 if pid == placed[0][0] else []}
                for pid, iid in placed]}


def bench_ingestion(reports: int, nodes: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-usage-") as tmp:
        proc, url = start_master(Path(tmp) / "master")
        try:
            admin = MasterClient(url, timeout=60)
            placed = {}
            for n in range(nodes):
                cid = f"node-{n}"
                register(admin, cid, 10)
                admin.supply(cid, HELLO)
                placed[cid] = []
                for p in range(10):
                    inst = admin.request(f"u-{n}-{p}", HELLO, sla={"computer_guid": cid})
                    placed[cid].append((inst["placement"]["partition"], inst["id"]))
            out = {"partitions_per_report": 10, "resources_per_partition": 7}
            # one node, one report after another
            client = MasterClient(url, timeout=60)
            cid = "node-0"
            bodies = [usage_report(cid, s, placed[cid]) for s in range(reports)]
            samples = []
            t0 = time.perf_counter()
            for body in bodies:
                t = time.perf_counter()
                assert client.report_usage(cid, body)["accepted"]
                samples.append(time.perf_counter() - t)
            took = time.perf_counter() - t0
            out["one_node"] = {"reports": reports, "reports_per_s": round(reports / took, 1),
                               **summary_ms(samples)}
            samples = []
            for body in bodies[:50]:
                t = time.perf_counter()
                assert client.report_usage(cid, body)["duplicate"]
                samples.append(time.perf_counter() - t)
            out["duplicate"] = summary_ms(samples)
            # several nodes at once (the master's group commit takes them together)
            per = max(1, reports // nodes)
            lat: list = []
            errors: list = []

            def node(cid):
                c = MasterClient(url, timeout=60)
                for s in range(per):
                    t = time.perf_counter()
                    try:
                        c.report_usage(cid, usage_report(cid, 100_000 + s, placed[cid]))
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        errors.append(repr(exc))
                    lat.append(time.perf_counter() - t)
            threads = [threading.Thread(target=node, args=(f"node-{n}",))
                       for n in range(nodes)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            took = time.perf_counter() - t0
            out["concurrent_nodes"] = {"nodes": nodes, "reports": per * nodes,
                                       "reports_per_s": round(per * nodes / took, 1),
                                       "errors": len(errors), **summary_ms(lat)}
            stmt = admin.statement("2026-11", owner="anonymous")
            out["statement_lines_after"] = len(stmt["lines"])
            return out
        finally:
            proc.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--reports", type=int, default=400)
    parser.add_argument("--nodes", type=int, default=4)
    args = parser.parse_args(argv)
    result = {"statement": bench_statement(args.instances, args.days, args.queries),
              "ingestion": bench_ingestion(args.reports, args.nodes),
              "target_ms": TARGET_MS}
    s, i = result["statement"], result["ingestion"]
    print(f"statement of {s['instances']} instances x {s['days']} days: month p50 "
          f"{s['month']['p50_ms']} ms (p99 {s['month']['p99_ms']}), day p50 "
          f"{s['day']['p50_ms']} ms, month by requester p50 "
          f"{s['month_by_requester']['p50_ms']} ms, one instance's 30 days p50 "
          f"{s['instance_usage_30_days']['p50_ms']} ms (target <= {TARGET_MS} ms)")
    print(f"ingestion (10 partitions x 7 resources per report): one node "
          f"{i['one_node']['reports_per_s']} reports/s (p50 {i['one_node']['p50_ms']} ms), "
          f"{i['concurrent_nodes']['nodes']} nodes at once "
          f"{i['concurrent_nodes']['reports_per_s']} reports/s (p50 "
          f"{i['concurrent_nodes']['p50_ms']} ms, {i['concurrent_nodes']['errors']} errors), "
          f"duplicate p50 {i['duplicate']['p50_ms']} ms")
    print(f"wrote {save('statement', result)}")
    return result


if __name__ == "__main__":
    main()
