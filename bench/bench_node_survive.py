"""Node benchmark: how long a stop, then a start, of an installed partition takes while
a slow release (``--install-seconds``, 20 by default) installs on the same node.

Run: .venv/bin/python bench/bench_node_survive.py [--code DIR] [--runs N]
(about N x install-seconds x 2; writes bench/results/node_survive.json).
A real master process, a real `slapfed node run --interval 0.5` process, real buildout
runs and a real supervisord. Each run supplies a fresh copy of the hello release whose
install blocks on reading a FIFO that this script opens ``--install-seconds`` after the
install began; meanwhile it asks the master to stop (odd runs: start) the installed
hello instance and times how long until supervisord shows it applied. ``--code DIR``
runs the node agent from another checkout of slapfed (e.g. an export of main), so that
two versions can be compared side by side (the table printed at the end).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, start_master  # noqa: E402

from slapfed.client import MasterClient  # noqa: E402
from slapfed.node.layout import Paths  # noqa: E402
from slapfed.node.supervisor import Supervisor  # noqa: E402
from slapfed.procs import Proc, slapfed_argv, wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "profiles" / "hello"
COMPUTER = "bench-survive"


def gated_release(directory: Path) -> tuple[str, Path]:
    """hello plus a part that reads a FIFO: its install lasts until the FIFO is written."""
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    gate = directory / "gate"
    os.mkfifo(gate, 0o600)
    (directory / "instance-default.cfg").write_text((HELLO / "instance-default.cfg").read_text())
    text = (HELLO / "software.cfg").read_text().replace(
        "parts =\n    hello-web", "parts =\n    gate\n    hello-web")
    text += f"\n[gate]\nrecipe = slapfed:file\nsource = {gate}\npath = ${{buildout:directory}}/gate.txt\n"
    (directory / "software.cfg").write_text(text)
    return str(directory / "software.cfg"), gate


def open_gate_later(gate: Path, seconds: float, began: threading.Event) -> threading.Thread:
    """Wait for the install to read the gate, then hold it ``seconds`` and open it."""
    def hold():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                time.sleep(0.02)
        else:
            return
        began.set()
        time.sleep(seconds)
        os.write(fd, b"# opened\n")
        os.close(fd)
    t = threading.Thread(target=hold, daemon=True)
    t.start()
    return t


def program_state(sup: Supervisor, pid: str) -> str | None:
    try:
        return sup.rpc.getProcessInfo(f"{pid}:{pid}_web")["statename"]
    except (OSError, xmlrpc.client.Error):
        sup._reset()
        return None


def bench(code: str | None, runs: int, install_seconds: float) -> dict:
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [code, env.get("PYTHONPATH")]))
    cwd = code or str(REPO)      # `python -m` puts the working directory first on sys.path
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-survive-") as d:
        tmp = Path(d)
        tmp.chmod(0o711)
        proc, url = start_master(tmp / "master")
        root = tmp / "node"
        agent = None
        try:
            subprocess.run(slapfed_argv("node", "format", "--master", url, "--computer", COMPUTER,
                                        "--partitions", str(runs + 1), "--root", str(root)),
                           check=True, capture_output=True, env=env, cwd=cwd)
            client = MasterClient(url, requester="bench")
            client.supply(COMPUTER, str(HELLO / "software.cfg"))
            fast = client.request("fast", str(HELLO / "software.cfg"))
            agent = Proc(slapfed_argv("node", "run", "--root", str(root), "--interval", "0.5"),
                         tmp / "agent.log", env=env, cwd=cwd)
            import_check = subprocess.run(
                [sys.executable, "-c", "import slapfed, os; print(os.path.dirname(slapfed.__file__))"],
                capture_output=True, text=True, env=env, cwd=cwd, check=True).stdout.strip()
            wait_for(lambda: (client.show(fast["id"])["status"] or {}).get("state") == "started",
                     120, "the installed instance to start", proc=agent)
            part = client.show(fast["id"])["placement"]["partition"]
            sup = Supervisor(Paths(str(root)))
            out = {"stop_s": [], "start_s": []}
            for k in range(runs):
                slow, gate = gated_release(tmp / f"slow-{k}")
                began = threading.Event()
                holder = open_gate_later(gate, install_seconds, began)
                client.supply(COMPUTER, slow)
                client.request(f"slow-{k}", slow)
                if not began.wait(120):
                    raise RuntimeError("the slow install did not begin: " + agent.log_tail())
                time.sleep(0.5)               # well inside the install
                state, seen = (("stopped", ("STOPPED",)) if k % 2 == 0 else
                               ("started", ("STARTING", "RUNNING")))
                t0 = time.monotonic()
                client.change_state(fast["id"], state)
                wait_for(lambda: program_state(sup, part) in seen, install_seconds + 60,
                         f"fast to be {state}", interval=0.02, proc=agent)
                out["stop_s" if state == "stopped" else "start_s"].append(
                    round(time.monotonic() - t0, 3))
                holder.join(install_seconds + 60)
                wait_for(lambda: (client.find(f"slow-{k}")["status"] or {}).get("state")
                         == "started", 120, f"slow-{k} to start", proc=agent)
            return {"runs": runs, "install_seconds": install_seconds, "interval_s": 0.5,
                    "code": code or str(REPO), "agent_imports": import_check, **out,
                    "stop_median_s": round(statistics.median(out["stop_s"]), 3) if out["stop_s"] else None,
                    "start_median_s": round(statistics.median(out["start_s"]), 3) if out["start_s"] else None}
        finally:
            if agent is not None:
                agent.stop()
            subprocess.run(slapfed_argv("node", "stop", "--root", str(root)),
                           capture_output=True, timeout=60, env=env, cwd=cwd)
            proc.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code", action="append", default=None,
                        help="A slapfed checkout to run the node from (repeatable: one "
                             "column each); default: this one.")
    parser.add_argument("--runs", type=int, default=4,
                        help="Installs (alternately a stop and a start during each).")
    parser.add_argument("--install-seconds", type=float, default=20.0)
    args = parser.parse_args(argv if argv is not None else [])
    codes = args.code or [None]
    results = {code or "this checkout": bench(code, args.runs, args.install_seconds)
               for code in codes}
    path = save("node_survive", {"results": results})
    print(json.dumps(results, indent=2))
    print(f"\n{'during a ' + format(args.install_seconds, 'g') + ' s install':<28}"
          + "".join(f"{name[-24:]:>26}" for name in results))
    for key in ("stop_median_s", "start_median_s"):
        print(f"{key:<28}" + "".join(f"{r[key] if r[key] is not None else '-':>26}"
                                     for r in results.values()))
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
