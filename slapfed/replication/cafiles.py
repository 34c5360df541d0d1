"""The CA files a replica serves with: the primary's CA key and certificate (so that a
promoted replica signs as the same CA), the certificates it issued and its revocations
(so that the replica verifies callers as the primary does). Tokens stay at the primary:
each is good once.

Depends on the standard library. The CA's private key crosses the wire to a replica
identity only, over mutual TLS (master.replication serves it); it is written 0600 in a
0700 directory, as the CA itself writes it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("slapfed.replication")

CA_FILES = ("ca.key", "ca.crt", "revoked.json")
CA_ISSUED = "issued"


def ca_material(ca_dir) -> dict:
    """{relative path: text} of the CA files a replica needs."""
    d = Path(ca_dir)
    files = {}
    for name in CA_FILES:
        p = d / name
        if p.exists():
            files[name] = p.read_text(encoding="utf-8")
    issued = d / CA_ISSUED
    if issued.is_dir():
        for p in sorted(issued.glob("*.pem")):
            files[f"{CA_ISSUED}/{p.name}"] = p.read_text(encoding="utf-8")
    return files


def install_ca_material(ca_dir, files: dict) -> int:
    """Write the CA files a primary sent (only the names a CA directory holds: never a
    path of the sender's choosing). Returns how many were written."""
    d = Path(ca_dir)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    (d / CA_ISSUED).mkdir(mode=0o755, exist_ok=True)
    written = 0
    for rel, text in files.items():
        if not isinstance(rel, str) or not isinstance(text, str):
            continue
        if rel in CA_FILES:
            target = d / rel
        elif (rel.startswith(CA_ISSUED + "/") and rel.count("/") == 1
              and rel.endswith(".pem") and _safe_name(rel.split("/", 1)[1])):
            target = d / rel
        else:
            log.warning("replica set-up: ignoring CA file %r the primary sent", rel[:80])
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
        written += 1
    return written


def _safe_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() for c in name[:-4]) and len(name) < 80
