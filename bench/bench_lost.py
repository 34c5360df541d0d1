"""Lost-computer benchmark: seconds from `computer lost` to the instance serving elsewhere.

Run: .venv/bin/python bench/bench_lost.py [--runs N] [--interval S]
(about N x 15 s; writes bench/results/lost.json).
A real master process (development mode, --lease 2) and two real `slapfed node run`
processes (A and B, polling every --interval seconds, default 2: the node's default),
hello supplied and installed on both (so no release install is timed). Each run
requests hello on A (SLA: A, else anywhere), waits until it serves, kills A's agent,
supervisord and service (SIGKILL, by PID), waits until A shows unknown, then declares A
lost and times until the instance's new URL, on B, answers (polled every 50 ms): the
master's verdict, B's next poll, the instance buildout, the service start and its
promise, B's report. Then it destroys the instance, starts A's agent again, wipes A
and waits until A's partitions are free, for the next run. Target: <= 5 s.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, start_master  # noqa: E402

from slapfed.client import MasterClient  # noqa: E402
from slapfed.procs import Proc, pid_alive, slapfed_argv, wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")
A, B = "bench-lost-a", "bench-lost-b"
TARGET = 5.0


def answers(url: str) -> bool:
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=1) as resp:
            return bool(json.loads(resp.read()))
    except (OSError, ValueError):
        return False


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--interval", type=float, default=2.0, help="the nodes' --interval")
    args = parser.parse_args(argv if argv is not None else [])
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-lost-") as d:
        tmp = Path(d)
        tmp.chmod(0o711)     # run as root, the node's partition users traverse it
        proc, url = start_master(tmp / "master", "--lease", "2")
        client = MasterClient(url, requester="bench")
        roots = {cid: tmp / cid for cid in (A, B)}
        agents: dict[str, Proc] = {}

        def start_agent(cid: str, n: int) -> None:
            agents[cid] = Proc(slapfed_argv("node", "run", "--root", str(roots[cid]),
                                            "--interval", str(args.interval)),
                               tmp / f"{cid}-{n}.log")
        try:
            for i, cid in enumerate((A, B)):
                subprocess.run(slapfed_argv("node", "format", "--master", url, "--computer",
                                            cid, "--partitions", "2", "--root",
                                            str(roots[cid]), "--address-base",
                                            f"127.{20 + os.getpid() % 200}.{252 + i}.1"),
                               check=True, capture_output=True, timeout=120)
                start_agent(cid, 0)
                client.supply(cid, HELLO)
            wait_for(lambda: all(client.show_computer(c)["software"][0]["status"] ==
                                 "installed" for c in (A, B)), 180, "hello installed")
            for run in range(args.runs):
                inst = client.request(f"hello-{run}", HELLO, sla=[{"computer_guid": A}, {}])
                wait_for(lambda: client.show(inst["id"])["status"]["state"] == "started", 60,
                         "hello started on A", proc=agents[A])
                old = client.show(inst["id"])
                service = json.loads(urllib.request.urlopen(old["connection"]["url"],
                                                            timeout=5).read())["pid"]
                sup = int((roots[A] / "var" / "supervisord.pid").read_text().strip())
                for pid in (agents[A].pid, sup, service):
                    kill(pid)
                wait_for(lambda: not pid_alive(sup) and not pid_alive(service), 10, "A gone")
                agents[A].stop()
                wait_for(lambda: client.show(inst["id"])["status"]["state"] == "unknown", 15,
                         "A unknown")
                t0 = time.monotonic()
                client.declare_lost(A, "bench")

                def serving():
                    shown = client.show(inst["id"])
                    new_url = shown["connection"].get("url")
                    return shown["status"]["state"] == "started" and new_url and \
                        answers(new_url)
                wait_for(serving, 60, "serving on B", interval=0.05, proc=agents[B])
                times.append(time.monotonic() - t0)
                print(f"  run {run + 1}: serving on B {times[-1]:.2f} s after `computer "
                      f"lost`", flush=True)
                # back to the start: the instance gone, A back, wiped and free
                client.destroy(inst["id"])
                start_agent(A, run + 1)
                client.wipe_computer(A)
                wait_for(lambda: client.show(inst["id"])["status"]["state"] == "destroyed"
                         and not any(p["moved"] or p["instance"] for p in
                                     client.show_computer(A)["partitions"]), 60,
                         "A wiped and free", proc=agents[A])
        finally:
            for agent in agents.values():
                agent.stop()
            for root in roots.values():
                if (root / "node.json").exists():
                    subprocess.run(slapfed_argv("node", "stop", "--root", str(root)),
                                   capture_output=True, timeout=60)
            proc.stop()
    out = {"node_interval_s": args.interval, "runs": len(times),
           "median_s": round(statistics.median(times), 2), "min_s": round(min(times), 2),
           "max_s": round(max(times), 2), "target_s": TARGET}
    print(f"computer lost -> serving elsewhere (node interval {args.interval:g} s): median "
          f"{out['median_s']:.2f} s, min {out['min_s']:.2f}, max {out['max_s']:.2f} "
          f"(target <= {TARGET:g} s)")
    print(f"wrote {save('lost', out)}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
