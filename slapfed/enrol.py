"""Enrolment: trade a master's one-time token for an identity whose key is made here.

Depends on slapfed.client (HTTP) and slapfed.ca.keys. Writes the three files of an
identity directory (`ca.crt`, `identity.key` mode 0600, `identity.crt`), the same that
`slapfed ca issue --out DIR` writes, so `slapfed config set --identity DIR` records them.
"""
from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from .ca.keys import csr_for, generate_key, make_private_dir, write_private_key
from .client import MasterClient
from .core.errors import Conflict
from .core.outbound import ANY, OutboundPolicy


def enrol(url: str, ca_pem: str, token: str, out_dir,
          outbound: OutboundPolicy = ANY) -> MasterClient:
    """Make a key in ``out_dir``, have ``token`` certify it at the master ``url`` (verified
    with ``ca_pem``), and return a client acting as that identity. ``outbound``: the
    addresses the clients may connect to (a master pairing with a peer).

    Raises Conflict when ``out_dir`` already holds an identity, and the master's typed
    errors (e.g. invalid_token when the token was spent or expired)."""
    out = make_private_dir(out_dir)
    ca_path, key_path, cert_path = out / "ca.crt", out / "identity.key", out / "identity.crt"
    if cert_path.exists() or key_path.exists():
        raise Conflict(f"{out} already holds an identity; choose another directory")
    ca_path.write_text(ca_pem)
    key = generate_key()
    write_private_key(key_path, key)
    csr = csr_for(key).public_bytes(serialization.Encoding.PEM).decode()
    try:
        answer = MasterClient(url, ca=str(ca_path), outbound=outbound).redeem_token(token,
                                                                                csr)
    except BaseException:
        # nothing certified that key: leave no identity behind, so that enrolling again
        # (a replica waiting for its primary to answer) can work
        key_path.unlink(missing_ok=True)
        raise
    Path(cert_path).write_text(answer["certificate"])
    return MasterClient(url, ca=str(ca_path), cert=str(cert_path), key=str(key_path),
                        outbound=outbound)
