"""CLI start-up: wall time of ``slapfed node once`` with nothing to do and of a repeated
``slapfed request``, each a fresh interpreter, against a real master over mutual TLS.

Setup: one master (mTLS), a node formatted and enrolled with a token (one partition,
nothing supplied to it: its cycle has nothing to do), a second computer registered by
the admin with a release supplied, and one instance requested there; then each command
runs N times (default 20), the two kinds interleaved. ``--compare DIR`` also runs the
same commands with the slapfed package found in DIR (e.g. ``git archive main | tar -x -C
DIR``) first on the path, interleaved with this tree's runs, so both sides see the same
load: a before/after in one run. Every run must exit 0. Reported per command: the median,
min and max wall time, and the median CPU time (user + system) of the command's process,
which other load on the machine disturbs less than the wall time.

Every tree runs from bytecode, as an installed package does (pip compiles it): the
bytecode goes to a cache in the run's temporary directory (PYTHONPYCACHEPREFIX; the
trees are not written to), filled by the first runs, even when the environment says
PYTHONDONTWRITEBYTECODE (then every run would compile every module of slapfed again:
~100 ms more, not what a user sees). The floor is measured the same way: ``python -c
pass`` with this venv's site (its .pth files, the editable install's finder) and
``python -I -S -c pass`` (no site at all). Then five runs of each command per tree with
``-X importtime`` give the breakdown (medians): the import time (self times, summed) of
slapfed's modules, click, pydantic, cryptography, the standard library, and of what
site imports before the command starts.

Run: .venv/bin/python bench/bench_startup.py [N] [--compare DIR]
(writes bench/results/startup.json).
"""
from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, start_master  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
RELEASE = "http://releases.invalid/bench/startup.cfg"
NODE = "bench-node"
HOST = "bench-req"


def _argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "slapfed.cli.main", *args]


PYCACHE: Path | None = None   # set by main(): the bytecode cache of every run


def _env(tree: Path, config: Path) -> dict:
    env = dict(os.environ, SLAPFED_CONFIG=str(config), PYTHONPATH=str(tree))
    env.pop("SLAPFED_MASTER", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


FLOORS = {"python": ("-c", "pass"), "python_isolated": ("-I", "-S", "-c", "pass")}


def _group(module: str) -> str:
    top = module.split(".")[0]
    if top == "slapfed":
        return "slapfed"
    if top in ("click", "cryptography"):
        return top
    if top in ("pydantic", "pydantic_core", "annotated_types", "typing_extensions",
               "typing_inspection"):
        return "pydantic"
    return "stdlib" if top in sys.stdlib_module_names or top.startswith("_") else "other"


def breakdown(argv, env, cwd, runs: int = 5) -> dict:
    """Milliseconds of import time (self times) by group, the median of ``runs`` runs of
    ``argv`` (a python command line): "site" for what site imported before the command,
    then slapfed, click, pydantic, cryptography, stdlib, other; "total" their sum."""
    each = [_imports_once(argv, env, cwd) for _ in range(runs)]
    groups = sorted({g for one in each for g in one})
    out = {g: round(statistics.median(one.get(g, 0.0) for one in each), 1) for g in groups}
    out["total"] = round(statistics.median(sum(one.values()) for one in each), 1)
    return out


def _imports_once(argv, env, cwd) -> dict:
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    out: dict = {}
    in_site = True
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+\d+ \| ( *)(\S+)", line)
        if not m:
            continue
        group = "site" if in_site else _group(m.group(3))
        out[group] = out.get(group, 0) + int(m.group(1)) / 1e3
        if m.group(3) == "site" and not m.group(2):
            in_site = False
    return out


def _run(argv, env, cwd) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n"
                         f"{done.stderr}")
    return seconds, cpu


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    compare = None
    if "--compare" in argv:
        i = argv.index("--compare")
        compare = Path(argv[i + 1]).resolve()
        del argv[i:i + 2]
    n = int(argv[0]) if argv else 20
    trees = {"this": HERE} | ({"compare": compare} if compare else {})
    global PYCACHE
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-startup-") as d:
        tmp = Path(d)
        PYCACHE = tmp / "pycache"
        proc, url, creds = start_master(tmp / "master", tls=True)
        try:
            admin = creds["admin"].client(url)
            person = creds["person"]
            config = tmp / "client.json"
            config.write_text(json.dumps({"master": url, "ca": person.ca,
                                          "cert": person.cert, "key": person.key}))
            token = admin.create_token(NODE)["token"]
            root = tmp / "node"
            env = _env(HERE, config)
            _run(_argv("node", "format", "--master", url, "--computer", NODE,
                       "--partitions", "1", "--root", str(root), "--single-user",
                       "--token", token, "--ca", person.ca), env, tmp)
            admin.register_computer({"id": HOST, "partitions": [
                {"id": "p0", "address": "127.100.0.1", "port_base": 10000,
                 "port_count": 10}]})
            admin.supply(HOST, RELEASE)
            commands = {
                "node_once": ("node", "once", "--root", str(root)),
                "request": ("request", "bench-inst", RELEASE, "--sla",
                            f"computer_guid={HOST}"),
            }
            for tree in trees.values():    # first runs: enrolment, placement, bytecode
                for args in commands.values():
                    _run(_argv(*args), _env(tree, config), tmp)
            times: dict = {tree: {cmd: [] for cmd in (*commands, *FLOORS)} for tree in trees}
            for i in range(n):
                order = list(trees) if i % 2 == 0 else list(reversed(trees))
                for tree in order:
                    for cmd, args in commands.items():
                        times[tree][cmd].append(
                            _run(_argv(*args), _env(trees[tree], config), tmp))
                    for cmd, args in FLOORS.items():
                        times[tree][cmd].append(
                            _run([sys.executable, *args], _env(trees[tree], config), tmp))
            imports = {tree: {cmd: breakdown(_argv(*args), _env(trees[tree], config), tmp)
                              for cmd, args in commands.items()} for tree in trees}
        finally:
            proc.stop()
    summary = {tree: {cmd: {"median_ms": round(statistics.median(w for w, _ in v) * 1e3, 1),
                            "min_ms": round(min(w for w, _ in v) * 1e3, 1),
                            "max_ms": round(max(w for w, _ in v) * 1e3, 1),
                            "cpu_median_ms": round(statistics.median(c for _, c in v) * 1e3,
                                                   1)}
                      for cmd, v in per.items()}
               for tree, per in times.items()}
    results = {"runs": n, "load_average": os.getloadavg(), "cpus": os.cpu_count(),
               "trees": {k: str(v) for k, v in trees.items()}, "summary": summary,
               "imports_ms": imports}
    path = save("startup", results)
    print(json.dumps({"summary": summary, "imports_ms": imports}, indent=2))
    print(f"written to {path}")
    return results


if __name__ == "__main__":
    main()
