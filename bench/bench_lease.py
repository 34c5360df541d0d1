"""Lease benchmark: how long after its node agent dies a computer shows ``unknown``, at
its master and at the origin master of an instance delegated there.

Run: .venv/bin/python bench/bench_lease.py [--runs N] [--short-runs M] [--delegated-runs D]
(about N x 32 s + M x 7 s + D x 10 s and a hello install; writes bench/results/lease.json).
A real master process (development mode) and a real `slapfed node run --interval 2`
process (the node's default interval) on a formatted node of one partition. Each run
starts the agent, waits until the computer's lease is live, kills the agent
(SIGKILL, by PID) and times until the master shows the computer's lease expired
(polled every 50 ms): with the default lease (30 s) and with ``--lease 5``. Expected:
the lease minus the time since the last poll, i.e. between lease - interval and lease.

Delegated: two real masters over mutual TLS, a delegating hello to b (``--lease 5``), b
running it on a real node (``--interval 2``). Each run waits until a shows the instance
started, kills b's agent and times until a shows it ``unknown`` (b's maintenance records
the run out within about 1.5 s, b's long poll answers a at once). Expected: the local
figure plus up to about 1.5 s.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save, start_master  # noqa: E402

from slapfed.client import MasterClient  # noqa: E402
from slapfed.core.leases import DEFAULT_LEASE  # noqa: E402
from slapfed.procs import Proc, slapfed_argv, wait_for  # noqa: E402

COMPUTER = "bench-lease"
INTERVAL = 2.0       # slapfed node run's default --interval
HELLO = str(Path(__file__).resolve().parents[1] / "profiles" / "hello" / "software.cfg")
DELEGATED_LEASE = 5.0


def lease_state(client: MasterClient) -> str:
    return client.show_computer(COMPUTER)["lease"]["state"]


def time_to_unknown(tmp: Path, lease: float | None, runs: int) -> list[float]:
    data = tmp / f"master-{lease or 'default'}"
    extra = () if lease is None else ("--lease", str(lease))
    proc, url = start_master(data, *extra)
    root = tmp / f"node-{lease or 'default'}"
    client = MasterClient(url, requester="bench")
    out = []
    try:
        subprocess.run(slapfed_argv("node", "format", "--master", url, "--computer", COMPUTER,
                                    "--partitions", "1", "--root", str(root)),
                       check=True, capture_output=True, timeout=120)
        bound = (lease or DEFAULT_LEASE) + INTERVAL + 10
        for i in range(runs):
            agent = Proc(slapfed_argv("node", "run", "--root", str(root), "--interval",
                                      str(INTERVAL)), tmp / f"agent-{lease}-{i}.log")
            try:
                wait_for(lambda: lease_state(client) == "live", 60, "the lease live",
                         proc=agent)
                time.sleep(INTERVAL * ((i % 4) / 4))    # die at various points of a poll
                os.kill(agent.pid, signal.SIGKILL)
                t0 = time.monotonic()
                wait_for(lambda: lease_state(client) == "expired", bound, "unknown",
                         interval=0.05)
                out.append(time.monotonic() - t0)
                print(f"  lease {lease or DEFAULT_LEASE:g} s, run {i + 1}: unknown after "
                      f"{out[-1]:.2f} s", flush=True)
            finally:
                agent.stop()
        return out
    finally:
        if (root / "node.json").exists():
            subprocess.run(slapfed_argv("node", "stop", "--root", str(root)),
                           capture_output=True, timeout=60)
        proc.stop()


def time_to_unknown_delegated(tmp: Path, lease: float, runs: int) -> list[float]:
    """Seconds from killing b's node agent to a showing its delegated instance unknown."""
    from slapfed.ca.authority import CertificateAuthority
    procs, root = [], tmp / "node-delegated"
    computer = "bench-far"
    out = []
    try:
        proc_a, url_a, creds_a = start_master(tmp / "master-a", "--name", "a", tls=True)
        procs.append(proc_a)
        proc_b, url_b, creds_b = start_master(tmp / "master-b", "--name", "b", "--lease",
                                              str(lease), tls=True)
        procs.append(proc_b)
        admin_a, admin_b = creds_a["admin"].client(url_a), creds_b["admin"].client(url_b)
        ca_b = CertificateAuthority(tmp / "master-b" / "ca")
        subprocess.run(slapfed_argv("node", "format", "--master", url_b, "--computer",
                                    computer, "--partitions", "1", "--root", str(root),
                                    "--token", ca_b.token_for(computer), "--ca",
                                    str(ca_b.directory / "ca.crt")),
                       check=True, capture_output=True, timeout=120)
        admin_b.supply(computer, HELLO)
        token = admin_b.create_master_token("a")
        admin_a.add_peer({"name": "b", "url": url_b, "ca_certificate": token["ca_certificate"],
                          "token": token["token"]})
        admin_a.set_policy({"rules": [{"release": "*/profiles/hello/*", "to": ["b"],
                                       "fallback": False, "when": "always"}]})
        person = creds_a["person"].client(url_a)
        wait_for(lambda: _paired(admin_a), 60, "a paired with b")
        iid = person.request("bench-far", HELLO)["id"]
        for i in range(runs):
            agent = Proc(slapfed_argv("node", "run", "--root", str(root), "--interval",
                                      str(INTERVAL)), tmp / f"agent-delegated-{i}.log")
            try:
                wait_for(lambda: _state_at(person, iid) == "started", 300,
                         "a shows the delegated instance started", proc=agent)
                time.sleep(INTERVAL * ((i % 4) / 4))    # die at various points of a poll
                os.kill(agent.pid, signal.SIGKILL)
                t0 = time.monotonic()
                wait_for(lambda: _state_at(person, iid) == "unknown", lease + INTERVAL + 30,
                         "a shows it unknown", interval=0.05)
                out.append(time.monotonic() - t0)
                print(f"  delegated, lease {lease:g} s, run {i + 1}: unknown at the origin "
                      f"after {out[-1]:.2f} s", flush=True)
            finally:
                agent.stop()
        return out
    finally:
        if (root / "node.json").exists():
            subprocess.run(slapfed_argv("node", "stop", "--root", str(root)),
                           capture_output=True, timeout=60)
        for p in reversed(procs):
            p.stop()


def _paired(admin) -> bool:
    return any(p["name"] == "b" and p["paired"] for p in admin.list_peers())


def _state_at(client: MasterClient, iid: str) -> str:
    return client.show(iid)["status"]["state"]


def summary(values: list[float]) -> dict:
    return {"runs": len(values), "median_s": round(statistics.median(values), 2),
            "min_s": round(min(values), 2), "max_s": round(max(values), 2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs with the default lease")
    parser.add_argument("--short-runs", type=int, default=5, help="runs with --lease 5")
    parser.add_argument("--delegated-runs", type=int, default=4,
                        help="runs of the delegated case (its peer's --lease 5)")
    args = parser.parse_args(argv if argv is not None else [])
    with tempfile.TemporaryDirectory(prefix="slapfed-bench-lease-") as d:
        tmp = Path(d)
        tmp.chmod(0o711)     # run as root, the node's partition users traverse it
        out = {"node_interval_s": INTERVAL}
        if args.runs:
            out[f"lease_{DEFAULT_LEASE:g}s_default"] = summary(
                time_to_unknown(tmp, None, args.runs))
        if args.short_runs:
            out["lease_5s"] = summary(time_to_unknown(tmp, 5.0, args.short_runs))
        if args.delegated_runs:
            out["delegated_lease_5s_at_origin"] = summary(
                time_to_unknown_delegated(tmp, DELEGATED_LEASE, args.delegated_runs))
    print(f"{'LEASE':>28} {'RUNS':>5} {'MEDIAN':>8} {'MIN':>7} {'MAX':>7}   (seconds to unknown "
          "after the agent is killed)")
    for key in (f"lease_{DEFAULT_LEASE:g}s_default", "lease_5s",
                "delegated_lease_5s_at_origin"):
        if key not in out:
            continue
        s = out[key]
        print(f"{key:>28} {s['runs']:5d} {s['median_s']:8.2f} {s['min_s']:7.2f} "
              f"{s['max_s']:7.2f}")
    print(f"wrote {save('lease', out)}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
