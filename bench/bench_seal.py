"""Sealing benchmark: what a sealed secret costs (slapfed.ca.seal: HPKE, P-256).

Run: .venv/bin/python bench/bench_seal.py [--rounds N]   (a few seconds; writes
bench/results/seal.json). Times, in one process and side by side: sealing and opening
one parameter (a 32-character secret), loading a recipient's key from its certificate,
and a whole cycle of a node of 300 partitions each republishing 3 secrets (900 seals),
against the node's own work for the same cycle without sealing: encoding each
partition's connection report as JSON (what it sends anyway). Medians of N rounds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from slapfed.ca import seal  # noqa: E402

PARTITIONS, SECRETS = 300, 3


def certificate(key) -> str:
    import datetime as dt
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "person/bench")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def per_op(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv if argv is not None else [])
    key = ec.generate_private_key(ec.SECP256R1())
    pem = certificate(key)
    recipient = seal.recipient_key(pem)
    secret = "x" * 32
    sealed = seal.seal(secret, recipient, "connection/i-1/password")
    reports = [{"instance_id": f"i-{p:04d}", "revision": 3, "state": "started",
                "log_tail": "", "connection": {f"secret-{s}": secret for s in range(SECRETS)}
                | {"url": f"http://127.0.0.1:{10000 + p}/"}} for p in range(PARTITIONS)]

    def cycle_sealed():
        for r in reports:
            conn = dict(r["connection"])
            for k in list(conn):
                if k.startswith("secret-"):
                    conn[k] = seal.seal(conn[k], recipient, f"connection/{r['instance_id']}/{k}")
            json.dumps({**r, "connection": conn})

    def cycle_plain():
        for r in reports:
            json.dumps(r)

    rows = {"seal_ms": [], "open_ms": [], "recipient_key_ms": [], "cycle_sealed_ms": [],
            "cycle_plain_ms": []}
    for _ in range(args.rounds):
        rows["seal_ms"].append(1000 * per_op(
            lambda: seal.seal(secret, recipient, "connection/i-1/password"), 300))
        rows["open_ms"].append(1000 * per_op(
            lambda: seal.open_sealed(sealed, key, "connection/i-1/password"), 300))
        rows["recipient_key_ms"].append(1000 * per_op(lambda: seal.recipient_key(pem), 300))
        rows["cycle_plain_ms"].append(1000 * per_op(cycle_plain, 3))
        rows["cycle_sealed_ms"].append(1000 * per_op(cycle_sealed, 1))
    med = {k: statistics.median(v) for k, v in rows.items()}
    result = {"rounds": args.rounds, "partitions": PARTITIONS, "secrets_per_partition": SECRETS,
              "sealed_length": len(sealed), **{k: round(v, 4) for k, v in med.items()}}
    print(f"seal one parameter       {med['seal_ms']:.3f} ms   (sealed text: {len(sealed)} chars)")
    print(f"open one parameter       {med['open_ms']:.3f} ms")
    print(f"recipient key from cert  {med['recipient_key_ms']:.3f} ms")
    print(f"{PARTITIONS} partitions x {SECRETS} secrets: reports {med['cycle_plain_ms']:.1f} ms "
          f"plain, {med['cycle_sealed_ms']:.1f} ms sealed")
    save("seal", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
