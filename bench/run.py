"""Run every benchmark and print one summary table (`make bench`).

Each bench/bench_*.py is also runnable alone; each writes bench/results/<name>.json.
Usage: .venv/bin/python bench/run.py [master] [node] [node_survive] [placement] [federation] [backup] [lease] [seal] [replica] [lost] [lists] [cdn_usage] [built_cache] [statement] [usage_node] [zk] [usage_feed]
       (default: all)
"""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SUITES = ("master", "node", "node_survive", "placement", "federation", "backup", "lease",
          "seal", "replica", "lost", "lists", "cdn_usage", "built_cache", "statement",
          "usage_node", "zk", "usage_feed")


def main(argv: list[str]) -> int:
    wanted = argv or list(SUITES)
    unknown = [w for w in wanted if w not in SUITES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {', '.join(SUITES)}", file=sys.stderr)
        return 2
    for name in wanted:
        try:
            module = importlib.import_module(f"bench_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench_{name}":
                print(f"== {name}: not present, skipped")
                continue
            raise
        print(f"== {name}")
        t0 = time.perf_counter()
        module.main()
        print(f"== {name} took {time.perf_counter() - t0:.0f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
