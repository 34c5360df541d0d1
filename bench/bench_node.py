"""Node benchmarks: a cycle with nothing to do at 300 partitions, and re-instantiating one
changed partition (cycle time, and the share of its own buildout run).

Run: .venv/bin/python bench/bench_node.py   (about a minute; writes bench/results/node.json).
A real master process serves; the agent runs in this process so each cycle can be timed
alone (the `slapfed node run` loop calls exactly Agent.once). 300 instances of
profiles/idle (one supervised `sleep` each) run under the node's one supervisord.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, start_master, summary_ms  # noqa: E402

from slapfed.client import MasterClient  # noqa: E402
from slapfed.node import buildout as nb  # noqa: E402
from slapfed.node.agent import Agent  # noqa: E402
from slapfed.procs import slapfed_argv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IDLE = str(REPO / "profiles" / "idle" / "software.cfg")
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")


class TimedRunner:
    """The node's fork runner, remembering how long each buildout run took."""

    def __init__(self):
        self.inner = nb.make_runner("fork")
        self.runs: list[float] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, cfg, cwd, log_path, **options):
        result = self.inner.run(cfg, cwd, log_path, **options)
        self.runs.append(result.seconds)
        return result


def converge(agent: Agent, limit: float = 600.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        result = agent.once()
        if not result.plan:
            break
    return time.perf_counter() - t0


def bench(partitions: int = 300, changes: int = 10) -> dict:
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-node-") as d:
        tmp = Path(d)
        tmp.chmod(0o711)     # run as root, the node's partition users traverse it
        proc, url = start_master(tmp / "master")
        root = tmp / "node"
        agent = None
        try:
            subprocess.run(slapfed_argv("node", "format", "--master", url, "--computer", "bench",
                                        "--partitions", str(partitions), "--root", str(root)),
                           check=True, capture_output=True)
            client = MasterClient(url, requester="bench")
            client.supply("bench", IDLE)
            client.supply("bench", HELLO)
            for i in range(partitions - 1):
                client.request(f"idle-{i}", IDLE, parameters={"note": "v0"})
            client.request("hello", HELLO, parameters={"greeting": "v0"})
            runner = TimedRunner()
            agent = Agent(str(root), runner=runner)
            first = converge(agent)
            states = [i["status"]["state"] for i in client.list_instances(requester="bench")]
            out = {"partitions": partitions,
                   "first_convergence_s": round(first, 2),
                   "instances_started": states.count("started"),
                   "buildout_run_first_convergence": summary_ms(runner.runs)}

            noop = []
            for _ in range(30):
                t0 = time.perf_counter()
                result = agent.once()
                noop.append(time.perf_counter() - t0)
                assert not result.fetched and not result.outcomes, result.to_json()
            out["noop_cycle"] = summary_ms(noop)

            for ref, release, key in (("idle-7", IDLE, "note"), ("hello", HELLO, "greeting")):
                cycles, runs = [], []
                for k in range(1, changes + 1):
                    client.request(ref, release, parameters={key: f"v{k}"})
                    runner.runs.clear()
                    t0 = time.perf_counter()
                    result = agent.once()
                    cycles.append(time.perf_counter() - t0)
                    assert len(result.outcomes) == 1 and result.outcomes[0].state == "started", \
                        result.to_json()
                    runs.extend(runner.runs)
                name = "reinstantiate_idle" if release == IDLE else "reinstantiate_hello"
                out[name] = {"cycle": summary_ms(cycles), "its_buildout_run": summary_ms(runs),
                             "cycle_minus_buildout_p50_ms": round(
                                 (statistics.median(cycles) - statistics.median(runs)) * 1e3, 1)}
            return out
        finally:
            if agent is not None:
                agent.sup.shutdown()
            proc.stop()


def main() -> dict:
    results = bench()
    path = save("node", results)
    print(json.dumps(results, indent=2))
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    main()
