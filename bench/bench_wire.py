"""Wire micro-benchmark: validating typical request bodies with core.wire, this tree's
against an older one's (default: the commit where this branch left main, whose
parsers were hand-written), each in its own interpreter.

Run: .venv/bin/python bench/bench_wire.py [--old REF]   (about 20 s; prints a table and
writes bench/results/wire.json). The older tree is taken with `git archive REF` into a
temporary directory: nothing of it is kept. Figures are microseconds per body (median
of 7 rounds), and the ratio new/old (< 1: the new parser is faster).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent

URL = "/bench/software.cfg"
BODIES = {
    # what bench_master sends: the one verb, a re-request changing a parameter
    "instance_request": ("InstanceRequest", {
        "reference": "i42", "software_url": URL, "requester": "bench",
        "parameters": {"n": 42}}),
    "instance_request_full": ("InstanceRequest", {
        "reference": "web-1", "software_url": "https://example.org/sw.cfg",
        "software_type": "db", "parameters": {"port": 8080, "name": "x", "tags": ["a"]},
        "sla": [{"continent": "europe", "label.disk": "ssd"}, {}], "state": "started",
        "shared": False, "requester": "alice", "parent": "i-123",
        "provenance": ["root", "mid"], "open_to": ["person/bob"]}),
    "partition_report": ("PartitionReport", {
        "instance_id": "i-0123456789abcdef", "revision": 3, "state": "started",
        "log_tail": "ok\n" * 40, "connection": {"url": "http://127.0.0.2:8080/"},
        "promises": [{"name": "http", "ok": True, "message": ""}]}),
    "computer_registration_20": ("ComputerRegistration", {
        "id": "node-1", "lan": "lan-a", "labels": {"disk": "ssd"},
        "partitions": [{"id": f"p{i}", "address": f"127.0.1.{i + 1}", "port_base": 20000,
                        "port_count": 10} for i in range(20)]}),
    "invalid_instance_request": ("InstanceRequest", {
        "reference": 5, "software_url": "relative", "state": "x", "shared": 1,
        "colour": "red"}),
}

WORKER = r"""
import json, sys, time, statistics
sys.path.insert(0, sys.argv[1])
from slapfed.core import wire
from slapfed.core.errors import InvalidInput
assert wire.__file__.startswith(sys.argv[1]), wire.__file__
bodies = json.loads(sys.argv[2])
out = {}
for name, (kind, body) in bodies.items():
    parse = getattr(wire, kind).from_json
    def once():
        try:
            parse(body)
        except InvalidInput:
            pass
    for _ in range(200):
        once()
    n = 2000
    rounds = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(n):
            once()
        rounds.append((time.perf_counter() - t0) / n * 1e6)
    out[name] = round(statistics.median(rounds), 2)
print(json.dumps(out))
"""


def measure(tree: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", WORKER, str(tree), json.dumps(BODIES)],
                          capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(done.stdout)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default=None, help="git ref of the older tree (default: "
                                                 "git merge-base main HEAD)")
    args = ap.parse_args(argv)
    ref = args.old or subprocess.run(["git", "merge-base", "main", "HEAD"], cwd=TREE,
                                     capture_output=True, text=True,
                                     check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-wire-") as d:
        archive = subprocess.run(["git", "archive", ref, "slapfed"], cwd=TREE,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", d], input=archive, check=True)
        old = measure(Path(d))
    new = measure(TREE)
    results = {name: {"old_us": old[name], "new_us": new[name],
                      "ratio": round(new[name] / old[name], 2)} for name in BODIES}
    results["old_ref"] = ref
    sys.path.insert(0, str(HERE))
    from common import save
    path = save("wire", results)
    print(f"{'body':28} {'old µs':>9} {'new µs':>9} {'new/old':>8}")
    for name in BODIES:
        r = results[name]
        print(f"{name:28} {r['old_us']:9.2f} {r['new_us']:9.2f} {r['ratio']:8.2f}")
    print(f"old: {ref}; written to {path}")
    return results


if __name__ == "__main__":
    main()
