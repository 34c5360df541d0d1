"""Listing at scale: GET /instances with 10,000 instances, first page and full walk (ms).

Run: .venv/bin/python bench/bench_lists.py [--instances N] [--runs R]
(about a minute for 10,000; writes bench/results/lists.json).
A real master process (development mode, FileStorage), 10 computers of N/10 partitions
each, N instances requested by 8 client threads. Then, over plain HTTP on loopback:
the first page (default limit 100, and limit 1000), a full walk of every page (limit 100
and 1000, through the client as the CLI does it), a first page with 10% of the
instances destroyed (hidden: the scan skips them), and a full walk of the topology's
live state (computers then instances). Medians of R runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import register, save, start_master  # noqa: E402

from slapfed.client import MasterClient  # noqa: E402

URL = "/srv/releases/hello/software.cfg"
COMPUTERS = 10


def timed(fn, runs: int) -> float:
    """Median milliseconds of ``fn()`` over ``runs`` runs."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return round(statistics.median(out) * 1e3, 1)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    n = args.instances
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-lists-") as tmp:
        proc, url = start_master(Path(tmp) / "master")
        try:
            client = MasterClient(url, requester="bench")
            per = -(-n // COMPUTERS)
            for c in range(COMPUTERS):
                register(client, f"c{c:02d}", per)
                client.supply(f"c{c:02d}", URL)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                ids = list(pool.map(lambda i: MasterClient(url, requester="bench").request(
                    f"web-{i:05d}", URL)["id"], range(n)))
            fill = time.perf_counter() - t0
            http = requests.Session()
            http.trust_env = False

            def page(**params):
                r = http.get(url + "/api/v1/instances", params=params, timeout=60)
                r.raise_for_status()
                return r.json()

            def walk(limit):
                MasterClient.PAGE_SIZE = limit
                got = client.list_instances()
                assert len(got) == len(ids), (len(got), len(ids))

            res = {"instances": n, "fill_seconds": round(fill, 1),
                   "first_page_100_ms": timed(lambda: page(), args.runs),
                   "first_page_1000_ms": timed(lambda: page(limit=1000), args.runs),
                   "full_walk_100_ms": timed(lambda: walk(100), max(1, args.runs // 2)),
                   "full_walk_1000_ms": timed(lambda: walk(1000), max(1, args.runs // 2)),
                   "pages_at_100": -(-n // 100)}
            MasterClient.PAGE_SIZE = 500

            def topology_walk():
                view = client.topology()
                assert len(view["live"]["instances"]) == n
            res["topology_walk_ms"] = timed(topology_walk, max(1, args.runs // 2))
            for iid in sorted(ids)[: n // 10]:   # the first tenth by id: a page skips them
                client.destroy(iid)
            res["first_page_100_with_10pct_destroyed_ms"] = timed(lambda: page(), args.runs)
            res["first_page_all_1_ms"] = timed(lambda: page(all="1"), args.runs)
        finally:
            proc.stop()
    for k, v in res.items():
        print(f"  {k:42} {v}")
    print(f"  results: {save('lists', res)}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
