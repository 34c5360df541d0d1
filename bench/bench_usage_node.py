"""Node accounting benchmark: what measuring costs at 300 partitions.

Run (as root, for the partition uids): .venv/bin/python bench/bench_usage_node.py
(about half a minute; writes bench/results/usage_node.json).

300 partition directories of 100 files each (an instance's partition is about that:
its buildout's files, wrappers, logs), each with a usage-file the "instance" appends
two lines to per interval; 300 real processes (sleep), one per partition, each run as
its partition's own uid, read from the real /proc along with everything else the
machine runs. The reporter of the agent (node.usage_report.UsageReporter) then does
what `slapfed node run --usage-interval 60` does in one interval: a sample every 10 s
(one /proc pass for every partition, a step of the disk walk) and one cut (a last
sample, the usage-files read, the report built, spooled and the state saved). CPU time
of this process is measured (time.process_time), medians over the cycles.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from slapfed.node.usage_report import UsageReporter, sample_period  # noqa: E402

PARTITIONS = 300
FILES = 100
INTERVAL = 60.0
CYCLES = 12                      # intervals measured
UID_BASE = 62_000


def make_tree(path: Path, files: int) -> None:
    for sub in ("bin", "etc/service", "etc/promise", "var/log", "var/run", "srv", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    subs = ["bin", "etc/service", "var/log", "srv", "tmp"]
    for i in range(files - 1):
        (path / subs[i % len(subs)] / f"f{i}").write_bytes(b"x" * (200 + 37 * i))
    (path / "var" / "usage.jsonl").write_bytes(b"")


def bench() -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-usage-"))
    procs = []
    try:
        parts = {}
        for i in range(PARTITIONS):
            pid = f"part{i}"
            path = root / "partitions" / pid
            make_tree(path, FILES)
            uid = UID_BASE + i if os.geteuid() == 0 else None
            parts[pid] = (f"inst-{i}", uid, str(path), frozenset())
            if uid is not None:
                procs.append(subprocess.Popen(["/bin/sleep", "3600"], user=uid, group=uid,
                                              extra_groups=[], cwd="/"))
        clock = [float(int(time.time()))]
        rep = UsageReporter(str(root / "usage"), "bench", lambda: parts,
                            clock=lambda: clock[0])
        samples_per_interval = int(round(INTERVAL / sample_period(INTERVAL)))
        rep.cut()
        sample_cpu, cut_cpu, interval_cpu = [], [], []
        line = b'{"resource": "x-requests", "quantity": 3}\n'
        for _ in range(CYCLES):
            spent = 0.0
            for _ in range(samples_per_interval - 1):
                clock[0] += sample_period(INTERVAL)
                began = time.process_time()
                rep.sample()
                took = time.process_time() - began
                sample_cpu.append(took)
                spent += took
            for pid, (_, _, path, _) in parts.items():       # the instances write
                with open(os.path.join(path, "var", "usage.jsonl"), "ab") as fh:
                    fh.write(line * 2)
            clock[0] += sample_period(INTERVAL)
            began = time.process_time()
            spooled = rep.cut()
            took = time.process_time() - began
            cut_cpu.append(took)
            interval_cpu.append(spent + took)
            report_bytes = os.path.getsize(spooled)
            os.unlink(spooled)                                # as if acknowledged
        seen = len(rep.meter.procs or {})
        med_interval = statistics.median(interval_cpu)
        return {
            "partitions": PARTITIONS, "files_per_partition": FILES,
            "processes_measured": seen, "uids": len({v[1] for v in parts.values()}),
            "proc_entries_on_machine": sum(1 for n in os.listdir("/proc") if n.isdigit()),
            "interval_s": INTERVAL, "samples_per_interval": samples_per_interval,
            "sample_ms_median": round(statistics.median(sample_cpu) * 1000, 2),
            "cut_ms_median": round(statistics.median(cut_cpu) * 1000, 2),
            "interval_cpu_ms_median": round(med_interval * 1000, 2),
            "per_partition_per_sample_us": round(statistics.median(sample_cpu)
                                                 / PARTITIONS * 1e6, 1),
            "per_partition_per_interval_us": round(med_interval / PARTITIONS * 1e6, 1),
            "core_share_percent": round(med_interval / INTERVAL * 100, 3),
            "target_percent": 1.0,
            "report_bytes": report_bytes,
        }
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(10)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def main() -> dict:
    results = bench()
    path = save("usage_node", results)
    print(json.dumps(results, indent=2))
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    main()
