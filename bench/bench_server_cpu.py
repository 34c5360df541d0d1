"""Server CPU per native request: a real master (gunicorn, FileStorage, development mode),
one computer of 500 partitions, 4 keep-alive client processes; the master's CPU time
(its whole process tree, from /proc) per request for unchanged re-requests and
re-requests that change a parameter (one write each, commits shared), and per idle
second (nothing asked: what the workers' own loop costs).

``--compare DIR`` also runs the same master from the slapfed package found in DIR (e.g.
``git archive main | tar -x -C DIR``), alternating with this tree's, so both see the
same load: a before/after in one run. ``--profile`` records a py-spy profile of the
master under the changing re-requests (py-spy must be installed) into bench/results/.

Run: .venv/bin/python bench/bench_server_cpu.py [N] [rounds] [--compare DIR] [--profile]
(N requests per workload, default 2000; rounds default 2; writes
bench/results/server_cpu.json).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_master import RELEASE, body, run_clients  # noqa: E402
from bench_slap import tree_cpu_seconds  # noqa: E402
from common import RESULTS, register, save  # noqa: E402

from slapfed.client import MasterClient  # noqa: E402
from slapfed.procs import Proc, slapfed_argv, wait_for  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
PARTITIONS = 500
CLIENTS = 4
IDLE_SECONDS = 5.0


def _start(data: Path, tree: Path):
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = Proc(slapfed_argv("master", "serve", "--data", str(data), "--listen",
                             "127.0.0.1:0", "--insecure-http", "--no-access-log"),
                data.parent / f"{data.name}.log", cwd=str(data.parent), env=env)
    url_file = data / "master.url"
    wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 60, "master URL",
             proc=proc)
    url = url_file.read_text().strip()
    client = MasterClient(url, requester="bench")

    def healthy():
        try:
            client.health()
            return True
        except Exception:  # noqa: BLE001 - polling until the master answers at all
            return False
    wait_for(healthy, 30, "master health", proc=proc)
    return proc, url, client


def _py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")     # installed in this venv
    return str(beside) if beside.exists() else (shutil.which("py-spy") or "py-spy")


def one_run(tmp: Path, tree: Path, n: int, profile: Path | None) -> dict:
    proc, url, client = _start(tmp, tree)
    try:
        register(client, "bench", PARTITIONS)
        client.supply("bench", RELEASE)
        run_clients(url, [body(f"i{i}") for i in range(PARTITIONS)], CLIENTS)
        out = {}
        cpu0 = tree_cpu_seconds(proc.pid)
        t0 = time.monotonic()
        time.sleep(IDLE_SECONDS)               # nothing asked: the master's own upkeep
        out["idle_cpu_ms_per_s"] = round((tree_cpu_seconds(proc.pid) - cpu0) * 1e3
                                         / (time.monotonic() - t0), 2)
        workloads = {
            "unchanged": [body(f"i{i % PARTITIONS}") for i in range(n)],
            "changed": [body(f"i{i % PARTITIONS}", {"n": i}) for i in range(n)],
        }
        for name, bodies in workloads.items():
            spy = None
            if profile is not None and name == "changed":
                spy = subprocess.Popen([_py_spy(), "record",
                                        "--subprocesses", "--pid", str(proc.pid),
                                        "--format", "raw", "--output", str(profile),
                                        "--rate", "200"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            cpu0 = tree_cpu_seconds(proc.pid)
            stats = run_clients(url, bodies, CLIENTS)
            cpu = tree_cpu_seconds(proc.pid) - cpu0
            if spy is not None:
                spy.send_signal(signal.SIGINT)     # py-spy writes its output on SIGINT
                spy.wait(30)
            out[name] = {"cpu_ms_per_request": round(cpu * 1e3 / n, 3),
                         "per_second": stats["per_second"], "p50_ms": stats["p50_ms"],
                         "errors": stats["errors"]}
        return out
    finally:
        proc.stop()


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    compare, profile = None, "--profile" in argv
    if profile:
        argv.remove("--profile")
    if "--compare" in argv:
        i = argv.index("--compare")
        compare = Path(argv[i + 1]).resolve()
        del argv[i:i + 2]
    n = int(argv[0]) if argv else 2000
    rounds = int(argv[1]) if len(argv) > 1 else 2
    trees = {"this": HERE} | ({"compare": compare} if compare else {})
    runs: dict = {tree: [] for tree in trees}
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-cpu-") as d:
        for r in range(rounds):
            for tree in (list(trees) if r % 2 == 0 else list(reversed(trees))):
                spy_out = RESULTS / f"server_cpu-{tree}.txt" if profile and r == 0 else None
                if spy_out is not None:
                    RESULTS.mkdir(exist_ok=True)
                run = one_run(Path(d) / f"{tree}-{r}", trees[tree], n, spy_out)
                runs[tree].append(run)
                print(tree, json.dumps(run), flush=True)
    summary = {tree: {"idle_cpu_ms_per_s": statistics.median(x["idle_cpu_ms_per_s"]
                                                             for x in rs),
                      **{w: {k: statistics.median(x[w][k] for x in rs)
                             for k in ("cpu_ms_per_request", "per_second", "p50_ms")}
                         for w in ("unchanged", "changed")}}
               for tree, rs in runs.items()}
    results = {"requests": n, "rounds": rounds, "clients": CLIENTS,
               "load_average": os.getloadavg(), "trees": {k: str(v) for k, v in trees.items()},
               "summary": summary, "runs": runs}
    path = save("server_cpu", results)
    print(json.dumps(summary, indent=2))
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    main()
