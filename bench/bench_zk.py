"""Zero-knowledge benchmark: what sealing secret connection parameters costs a node of 300
partitions, against what its cycle costs without it.

Run: .venv/bin/python bench/bench_zk.py [--partitions N] [--secrets S] [--rounds R]
(under a minute; writes bench/results/zk.json). A real master process serves (plain
HTTP, development mode: sealing happens on the node, the master's side is the same);
300 instances are requested and the node agent runs in this process on a formatted
node root whose local state says every instance already runs, so that each cycle is
timed alone without buildout runs. Measured, the fastest of R rounds (the medians are
kept too, under "median": on a shared machine they carry the others' load):

- per parameter: sealing one secret (cold), the same unchanged secret again (the
  node's cache: what a report of an unchanged secret costs), opening one (the CLI);
- the idle cycle (`Agent.once`: 304 on the desired state, plan) with and without the
  check for renewed certificates (node.sealing.reseal_due) that sealing adds (it runs
  in full only when the desired or local state changed; its full cost is given too);
- a cycle where every partition reports (what a node does after a restart, or when
  all its requesters renewed their certificates): 300 real PUTs of partition reports,
  their connections plain / S secrets each sealed cold (a restart when the cache was
  kept in memory only) / sealed, unchanged (the cache in memory) / after a restart,
  the cache read back from its file (node.sealing: what an agent does now) / after
  every requester's certificate was renewed (all sealed afresh; the file written);
- the desired state's growth: the requester's certificate in each instance.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_seal import certificate  # noqa: E402
from common import save, start_master  # noqa: E402

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from slapfed.ca import seal  # noqa: E402
from slapfed.client import MasterClient  # noqa: E402
from slapfed.core.sealed import connection_context  # noqa: E402
from slapfed.core.states import INSTALLED, STARTED  # noqa: E402
from slapfed.node.agent import Agent, _partition_report  # noqa: E402
from slapfed.node.plan import InstanceSpec, LocalState, PartitionRecord, SoftwareRecord  # noqa: E402
from slapfed.node.sealing import Sealer, reseal_due  # noqa: E402
from slapfed.procs import slapfed_argv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IDLE = str(REPO / "profiles" / "idle" / "software.cfg")


def per_op(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def converged_state(desired: dict, fingerprint: str) -> LocalState:
    """The local state of a node on which every desired instance runs already."""
    software = {s["hash"]: SoftwareRecord(s["url"], INSTALLED) for s in desired["software"]}
    parts = {}
    for entry in desired["partitions"]:
        if entry["instance"]:
            spec = InstanceSpec.from_json(entry["instance"])
            parts[entry["id"]] = PartitionRecord(spec.id, spec.revision, STARTED, spec.digest(),
                                                 spec.software_hash, sealed_for=fingerprint)
    return LocalState(software, parts)


def bench(partitions: int, secrets: int, rounds: int) -> dict:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = certificate(key)
    recipient = {"certificate": pem, "fingerprint": seal.fingerprint(pem)}
    public_key = seal.recipient_key(pem)
    secret = "s" * 32
    context = connection_context("i-0123456789abcdef", "password")
    sealed_one = seal.seal(secret, public_key, context)
    warm = Sealer()
    warm.connection("i-1", {}, {"password": secret}, recipient)
    out = {"partitions": partitions, "secrets_per_partition": secrets, "rounds": rounds,
           "sealed_length": len(sealed_one)}
    rows: dict[str, list] = {"seal_ms": [], "seal_unchanged_ms": [], "open_ms": []}
    for _ in range(rounds):
        rows["seal_ms"].append(1e3 * per_op(lambda: seal.seal(secret, public_key, context), 200))
        rows["seal_unchanged_ms"].append(1e3 * per_op(
            lambda: warm.connection("i-1", {}, {"password": secret}, recipient), 2000))
        rows["open_ms"].append(1e3 * per_op(lambda: seal.open_sealed(sealed_one, key, context),
                                            200))

    with tempfile.TemporaryDirectory(prefix="slapfed-bench-zk-") as d:
        tmp = Path(d)
        tmp.chmod(0o711)     # run as root, the node's partition users traverse it
        proc, url = start_master(tmp / "master")
        root = tmp / "node"
        try:
            subprocess.run(slapfed_argv("node", "format", "--master", url, "--computer", "zk",
                                        "--partitions", str(partitions), "--root", str(root)),
                           check=True, capture_output=True)
            client = MasterClient(url, requester="bench")
            client.supply("zk", IDLE)
            for i in range(partitions):
                client.request(f"idle-{i}", IDLE, parameters={"note": "v0"})
            agent = Agent(str(root))
            agent.fetch()
            doc = agent.desired
            # the document a TLS master sends names the requester's certificate per instance
            for entry in doc["partitions"]:
                if entry["instance"]:
                    entry["instance"]["recipient"] = recipient
            agent.local = converged_state(doc, recipient["fingerprint"])
            first = agent.once()
            assert not first.plan, first.plan.describe()
            entries = [e for e in doc["partitions"] if e["instance"]]
            out["desired_state_bytes_added_per_instance"] = len(json.dumps(
                {"recipient": recipient}, separators=(",", ":")))

            def idle_cycle():
                result = agent.once()
                assert not result.plan and not result.fetched

            def check_only():
                assert reseal_due(agent.desired, agent.local.partitions) == []

            def idle_cycle_without_check():
                saved, agent.republish = agent.republish, lambda: []
                try:
                    idle_cycle()
                finally:
                    agent.republish = saved

            # the agent's cache kept across restarts: a warm one, saved, as a restarted
            # agent finds it; "restarted" loads it; "renewed" loads it, then every
            # requester's certificate is a new one (all sealed afresh)
            store = (str(tmp / "sealed.json"), str(tmp / "sealing.key"))
            renewed_recipients = []
            for _ in range(rounds):
                k_ = ec.generate_private_key(ec.SECP256R1())
                pem_ = certificate(k_)
                renewed_recipients.append({"certificate": pem_,
                                           "fingerprint": seal.fingerprint(pem_)})

            def reports(mode: str):
                sealer = {"sealed_cold": Sealer, "sealed_restarted": lambda: Sealer(*store),
                          "sealed_renewed": lambda: Sealer(*store)}.get(
                              mode, lambda: warm_cycle)()
                to = renewed_recipients[len(cycle_rows["reports_sealed_renewed_ms"])] \
                    if mode == "sealed_renewed" else recipient
                for e in entries:
                    inst = e["instance"]
                    public = {"address": e["address"], "note": "v0"}
                    if mode == "plain":
                        conn = {**public, **{f"secret-{s}": secret for s in range(secrets)}}
                    else:
                        conn, withheld = sealer.connection(
                            inst["id"], public, {f"secret-{s}": secret for s in range(secrets)},
                            to)
                        assert not withheld
                    client.report_partition("zk", e["id"], _partition_report(
                        inst["id"], inst["revision"], STARTED, "", conn, [], {}))
                if mode == "sealed_renewed":
                    sealer.save()
                    Path(store[0]).write_bytes(cache_bytes)   # as before, for the next round
                elif mode == "sealed_restarted":
                    sealer.save()             # a no-op: nothing was sealed

            warm_cycle = Sealer()
            cycle_rows = {"idle_cycle_ms": [], "idle_cycle_without_check_ms": [],
                          "reseal_check_ms": [], "reports_plain_ms": [],
                          "reports_sealed_cold_ms": [], "reports_sealed_unchanged_ms": [],
                          "reports_sealed_restarted_ms": [], "reports_sealed_renewed_ms": [],
                          "sealing_only_cold_ms": []}
            reports("sealed_cold")       # the master holds sealed texts already
            saved_cache = Sealer(*store)
            for sealer_ in (warm_cycle, saved_cache):   # warm the caches the cycles use
                for e in entries:
                    sealer_.connection(e["instance"]["id"], {}, {
                        f"secret-{s}": secret for s in range(secrets)}, recipient)
            saved_cache.save()
            cache_bytes = Path(store[0]).read_bytes()
            out["cache_file_bytes"] = len(cache_bytes)
            for _ in range(rounds):
                cycle_rows["idle_cycle_ms"].append(1e3 * per_op(idle_cycle, 20))
                cycle_rows["idle_cycle_without_check_ms"].append(
                    1e3 * per_op(idle_cycle_without_check, 20))
                cycle_rows["reseal_check_ms"].append(1e3 * per_op(check_only, 10))
                for mode in ("plain", "sealed_cold", "sealed_unchanged", "sealed_restarted",
                             "sealed_renewed"):
                    t0 = time.perf_counter()
                    reports(mode)
                    cycle_rows[f"reports_{mode}_ms"].append(1e3 * (time.perf_counter() - t0))

                def seal_all():
                    s_ = Sealer()
                    for e in entries:
                        s_.connection(e["instance"]["id"], {}, {f"secret-{s}": secret
                                                                 for s in range(secrets)},
                                      recipient)
                cycle_rows["sealing_only_cold_ms"].append(1e3 * per_op(seal_all, 1))
            rows.update(cycle_rows)
        finally:
            proc.stop()
    # the machine is shared: the fastest round is the cost itself, the median adds the
    # others' load; ratios are taken on the fastest rounds
    out["median"] = {k: round(statistics.median(v), 4) for k, v in rows.items()}
    med = {k: round(min(v), 4) for k, v in rows.items()}
    out.update(med)
    out["reseal_check_share_of_idle_cycle_pct"] = round(
        100 * med["reseal_check_ms"] / med["idle_cycle_without_check_ms"], 2)
    out["idle_cycle_vs_without_check_pct"] = round(
        100 * (med["idle_cycle_ms"] - med["idle_cycle_without_check_ms"])
        / med["idle_cycle_without_check_ms"], 2)
    out["sealing_share_of_report_cycle_pct"] = round(
        100 * med["sealing_only_cold_ms"] / med["reports_plain_ms"], 2)
    out["report_cycle_sealed_cold_vs_plain_pct"] = round(
        100 * (med["reports_sealed_cold_ms"] - med["reports_plain_ms"])
        / med["reports_plain_ms"], 2)
    for mode in ("restarted", "renewed"):
        out[f"report_cycle_sealed_{mode}_vs_plain_pct"] = round(
            100 * (med[f"reports_sealed_{mode}_ms"] - med["reports_plain_ms"])
            / med["reports_plain_ms"], 2)
    out["report_cycle_sealed_unchanged_vs_plain_pct"] = round(
        100 * (med["reports_sealed_unchanged_ms"] - med["reports_plain_ms"])
        / med["reports_plain_ms"], 2)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=300)
    ap.add_argument("--secrets", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args(argv if argv is not None else [])
    result = bench(args.partitions, args.secrets, args.rounds)
    n, s = result["partitions"], result["secrets_per_partition"]
    print(f"seal one parameter           {result['seal_ms']:.3f} ms "
          f"(sealed text {result['sealed_length']} chars)")
    print(f"seal it again, unchanged     {result['seal_unchanged_ms'] * 1000:.1f} us (cache)")
    print(f"open one parameter (CLI)     {result['open_ms']:.3f} ms")
    print(f"idle cycle, {n} partitions   {result['idle_cycle_ms']:.2f} ms "
          f"({result['idle_cycle_vs_without_check_pct']:+}% against "
          f"{result['idle_cycle_without_check_ms']:.2f} ms without the renewal check, which "
          f"costs {result['reseal_check_ms']:.2f} ms when the state changed: "
          f"{result['reseal_check_share_of_idle_cycle_pct']}%)")
    print(f"{n} reports, {s} secrets each: plain {result['reports_plain_ms']:.0f} ms, "
          f"sealed cold {result['reports_sealed_cold_ms']:.0f} ms "
          f"({result['report_cycle_sealed_cold_vs_plain_pct']:+}%), unchanged "
          f"{result['reports_sealed_unchanged_ms']:.0f} ms "
          f"({result['report_cycle_sealed_unchanged_vs_plain_pct']:+}%); sealing alone "
          f"{result['sealing_only_cold_ms']:.0f} ms "
          f"({result['sealing_share_of_report_cycle_pct']}% of the plain cycle)")
    m = result["median"]
    print(f"medians (fastest): idle cycle {m['idle_cycle_ms']:.2f} "
          f"({result['idle_cycle_ms']:.2f}) ms; {n} reports plain "
          f"{m['reports_plain_ms']:.0f} ({result['reports_plain_ms']:.0f}), sealed "
          f"unchanged {m['reports_sealed_unchanged_ms']:.0f} "
          f"({result['reports_sealed_unchanged_ms']:.0f}); after an agent restart: before "
          f"(cache in memory only) {m['reports_sealed_cold_ms']:.0f} "
          f"({result['reports_sealed_cold_ms']:.0f}), now (cache on disk) "
          f"{m['reports_sealed_restarted_ms']:.0f} "
          f"({result['reports_sealed_restarted_ms']:.0f} ms, "
          f"{result['report_cycle_sealed_restarted_vs_plain_pct']:+}%); after a "
          f"certificate renewal {m['reports_sealed_renewed_ms']:.0f} "
          f"({result['reports_sealed_renewed_ms']:.0f} ms, "
          f"{result['report_cycle_sealed_renewed_vs_plain_pct']:+}%); cache file "
          f"{result['cache_file_bytes']} bytes")
    print(f"desired state: +{result['desired_state_bytes_added_per_instance']} bytes per "
          "instance (the requester's certificate)")
    save("zk", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
