"""Delegation latency: a request at the first master of a chain until its connection
parameters are back there, for 1, 2 and 3 hops (m0 -> m1 [-> m2 [-> m3]]).

Real masters over mutual TLS, real forwarders and long polls. The last master's node is
a reporter that answers every new instance at once (started, with a URL): the node's
own buildout time is excluded, as the target (p99 <= 1 s per hop) asks.
Usage: .venv/bin/python bench/bench_federation.py [requests per chain, default 40]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Creds, register, save, start_master, summary_ms  # noqa: E402

from slapfed.ca import identity as ids  # noqa: E402
from slapfed.ca.authority import CertificateAuthority  # noqa: E402

RELEASE = "https://releases.example/bench/software.cfg"
COMPUTER = "far-node"


class InstantNode:
    """Reports every instance of the desired state started, with a URL, as soon as it
    appears (polls the desired state every 5 ms with its ETag)."""

    def __init__(self, client):
        self.client = client
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        etag, done = None, {}
        while not self.stop.is_set():
            try:
                etag, doc = self.client.desired_state(COMPUTER, etag)
            except Exception:  # noqa: BLE001 - the master is busy: try again
                time.sleep(0.05)
                continue
            for part in (doc or {}).get("partitions") or ():
                inst = part.get("instance")
                if not inst or done.get(inst["id"]) == inst["revision"]:
                    continue
                state = "destroyed" if inst["requested_state"] == "destroyed" else "started"
                self.client.report_partition(COMPUTER, part["id"], {
                    "instance_id": inst["id"], "revision": inst["revision"], "state": state,
                    "connection": {"url": f"http://{part['address']}:{part['port_base']}/"}})
                done[inst["id"]] = inst["revision"]
            self.stop.wait(0.005)


def chain(base: Path, hops: int, n: int) -> dict:
    procs, node = [], None
    try:
        masters = []
        for i in range(hops + 1):
            data = base / f"h{hops}-m{i}"
            proc, url, creds = start_master(data, "--name", f"m{i}", tls=True)
            procs.append(proc)
            masters.append((f"m{i}", url, creds, data))
        # the far end: a computer supplied the release, and its instant node
        name, url, creds, data = masters[-1]
        admin = creds["admin"].client(url)
        register(admin, COMPUTER, n + 4, continent="far")
        admin.supply(COMPUTER, RELEASE)
        ca = CertificateAuthority(data / "ca")
        node_creds = Creds(ca.issue_with_new_key(ids.computer(COMPUTER), base / f"h{hops}-node"))
        node = InstantNode(node_creds.client(url))
        node.thread.start()
        # pair from the far end back, so each master learns what its peer reaches
        for i in range(hops - 1, -1, -1):
            me, my_url, my_creds, _ = masters[i]
            peer, peer_url, peer_creds, _ = masters[i + 1]
            token = peer_creds["admin"].client(peer_url).create_master_token(me)
            my_creds["admin"].client(my_url).add_peer({
                "name": peer, "url": peer_url, "ca_certificate": token["ca_certificate"],
                "token": token["token"]})
        first = masters[0][2]["person"].client(masters[0][1])
        # warm up (connections, caches), then measure
        latencies = []
        for k in range(n + 3):
            t0 = time.perf_counter()
            inst = first.request(f"r{k}", RELEASE, sla={"continent": "far"})
            while not (inst["connection"].get("url")
                       and inst["status"]["revision"] == inst["revision"]):
                time.sleep(0.002)
                inst = first.show(inst["id"])
            if k >= 3:
                latencies.append(time.perf_counter() - t0)
        hops_seen = [h.get("master") for h in inst["delegation"]["chain"] if "master" in h]
        assert len(hops_seen) == hops, hops_seen
        return summary_ms(latencies)
    finally:
        if node is not None:
            node.stop.set()
            node.thread.join(5)
        for p in reversed(procs):
            p.stop()


def main(argv=()) -> None:
    n = int(argv[0]) if argv else 40
    base = Path(tempfile.mkdtemp(prefix="slapfed-bench-federation-"))
    results = {}
    try:
        for hops in (1, 2, 3):
            r = chain(base, hops, n)
            r["p99_ms_per_hop"] = round(r["p99_ms"] / hops, 3)
            results[f"{hops}_hops"] = r
            print(f"  {hops} hop(s): p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
                  f"({r['p99_ms_per_hop']:.1f} ms per hop; n={r['n']})", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"  results: {save('federation', results)}")


if __name__ == "__main__":
    main(sys.argv[1:])
