"""Placement benchmark: decision p50/p99 over synthetic federations of 10,000 and 100,000 computers.

A script, not a test (depends on slapfed.placement and bench.common). The federations
have the shape of real ones: continents > countries > LANs > hosts with a few computers
each, sites grouped under 100 / 1,000 masters (a label), some GPU computers, partitions
partly used. Prints a table and writes bench/results/placement.json.

    python bench/bench_placement.py [--sizes 10000,100000] [--requests 2000]
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import pct, save  # noqa: E402

from slapfed.core.sla import parse_sla  # noqa: E402
from slapfed.placement import Anchor, ComputerView, PlacementRequest, build, decide  # noqa: E402

MAIN = "m" * 32        # the release most computers are supplied
RARE = "r" * 32        # a release few are supplied
PARTITIONS = 16
CONTINENTS = ("europe", "america", "asia", "africa", "oceania", "antarctica")
CONTINENT_WEIGHTS = (40, 30, 20, 6, 3, 1)


def federation(n: int, masters: int, seed: int = 7):
    """``n`` computer views: ~33 computers per LAN, 3 per host, 10 LANs per country."""
    rnd = random.Random(seed)
    lans = max(1, n // 33)
    countries = max(len(CONTINENTS), lans // 10)
    country_continent = [rnd.choices(CONTINENTS, CONTINENT_WEIGHTS)[0] for _ in range(countries)]
    lan_country = [i % countries for i in range(lans)]
    views = []
    for i in range(n):
        lan = i % lans
        country = lan_country[lan]
        used = rnd.choice((0, 2, 5, 8, 12, 15, 16, 16))
        gpu = rnd.random() < 0.02
        releases = [MAIN] if rnd.random() < 0.9 else []
        if rnd.random() < 0.05:
            releases.append(RARE)
        parts = [(f"p{j:02d}", (), j < used) for j in range(PARTITIONS)]
        views.append(ComputerView.of(
            f"c{i:06d}",
            locality={"host": f"h{lan}-{(i // lans) // 3}", "lan": f"lan-{lan}",
                      "country": f"k{country}", "continent": country_continent[country]},
            labels={"master": f"m{lan % masters:04d}"},
            capabilities=("gpu",) if gpu else (), releases=releases, partitions=parts))
    return views


def workload(snap, views, requests: int, seed: int = 11):
    """A mix of SLAs, each a (kind, PlacementRequest)."""
    rnd = random.Random(seed)
    placed = [v for v in rnd.sample(views, 200) if MAIN in v.releases]
    anchors = {f"db-{i}": Anchor(f"db-{i}", v.id) for i, v in enumerate(placed)}
    lans = sorted(snap.by_level["lan"])
    countries = sorted(snap.by_level["country"])
    masters = sorted({v.labels["master"] for v in views})
    european = [f"db-{i}" for i, v in enumerate(placed) if v.continent == "europe"]

    def one(i):
        ref = f"web-{i}"
        db = f"db-{rnd.randrange(len(placed))}"
        kind = ("none", "lan", "continent", "capability", "label", "same_lan",
                "different_continent", "fallback", "infeasible")[i % 9]
        sla = {
            "none": {},
            "lan": {"lan": rnd.choice(lans)},
            "continent": {"continent": rnd.choice(CONTINENTS[:3])},
            "capability": {"capability": "gpu"},
            "label": {"label.master": rnd.choice(masters)},
            "same_lan": {"same_lan": db},
            "different_continent": {"different_continent": db},
            "fallback": [{"country": rnd.choice(countries), "capability": "gpu"},
                         {"continent": "europe"}, {}],
            # europe, yet not the continent of a database that is in Europe
            "infeasible": {"continent": "europe",
                           "different_continent": rnd.choice(european)},
        }[kind]
        return kind, PlacementRequest(ref, MAIN, parse_sla(sla), "bench", anchors)

    return [one(i) for i in range(requests)]


def run(n: int, masters: int, requests: int) -> dict:
    views = federation(n, masters)
    gc.collect()
    t0 = time.perf_counter()
    snap = build(views)
    build_s = time.perf_counter() - t0
    tracemalloc.start()
    again = build(views)
    snap_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del again
    tracemalloc.start()
    kept = federation(n, masters)
    views_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    gc.collect()
    work = workload(snap, views, requests)
    times, by_kind, placed = [], {}, 0
    for kind, req in work:
        t = time.perf_counter()
        decision = decide(snap, req)
        dt = time.perf_counter() - t
        times.append(dt)
        by_kind.setdefault(kind, []).append(dt)
        placed += decision.placed
    # the write path's share: refresh one view after an allocation (touch)
    puts = []
    for v in views[:2000]:
        t = time.perf_counter()
        snap.put(v)
        puts.append(time.perf_counter() - t)
    row = {"computers": n, "masters": masters, "requests": requests, "placed": placed,
           "decision_p50_ms": round(pct(times, 50) * 1e3, 3),
           "decision_p99_ms": round(pct(times, 99) * 1e3, 3),
           "decision_max_ms": round(max(times) * 1e3, 3),
           "snapshot_build_s": round(build_s, 3),
           "snapshot_mb": round(snap_bytes / 2**20, 1),
           "views_mb": round(views_bytes / 2**20, 1),
           "view_put_p99_ms": round(pct(puts, 99) * 1e3, 4),
           "by_sla": {k: {"p50_ms": round(pct(v, 50) * 1e3, 3),
                          "p99_ms": round(pct(v, 99) * 1e3, 3)} for k, v in by_kind.items()}}
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        masters = 100 if n <= 10_000 else 1000
        rows.append(run(n, masters, args.requests))
        r = rows[-1]
        print(f"{r['computers']:>8} computers {r['masters']:>5} masters: decision p50 "
              f"{r['decision_p50_ms']:.3f} ms p99 {r['decision_p99_ms']:.3f} ms "
              f"(max {r['decision_max_ms']:.1f}); build {r['snapshot_build_s']:.2f} s; "
              f"snapshot {r['snapshot_mb']} MB (+ views {r['views_mb']} MB); "
              f"placed {r['placed']}/{r['requests']}", flush=True)
    print()
    kinds = list(rows[0]["by_sla"])
    print(f"{'SLA':22}" + "".join(f"{r['computers']:>10} p50 {'p99':>7}" for r in rows))
    for kind in kinds:
        print(f"{kind:22}" + "".join(f"{r['by_sla'][kind]['p50_ms']:>14.3f} "
                                     f"{r['by_sla'][kind]['p99_ms']:>7.3f}" for r in rows))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    path = save("placement", {"rows": rows, "max_rss_mb": round(rss, 1),
                              "targets_ms": {"10000": 5, "100000": 50}})
    print(f"\nmax RSS {rss:.0f} MB; wrote {path}")


if __name__ == "__main__":
    main()
