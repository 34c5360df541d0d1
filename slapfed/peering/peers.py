"""Peer credentials: pairing with a peer master (trading its one-time token for an
identity there) and the HTTP client that acts as that identity.

Depends on slapfed.enrol, slapfed.client and core.errors. Credentials live in
``<data>/peers/<name>/`` (``ca.crt``, ``identity.key`` 0600, ``identity.crt``); the key
is made here and never leaves this directory.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..client import MasterClient, check_outbound
from ..core.errors import InvalidInput
from ..core.outbound import ANY, OutboundPolicy
from ..enrol import enrol

PEERS_DIR = "peers"


@dataclass(frozen=True)
class Pairing:
    credentials: str          # the directory holding this master's identity at the peer
    principal: str            # who the peer says this master is
    summary: dict             # what the peer offers (GET /federation/summary)


def credentials_dir(data_dir: str, name: str) -> Path:
    return Path(data_dir) / PEERS_DIR / name


def check_peer_url(outbound: OutboundPolicy, url: str, field: str = "url") -> None:
    """Refuse (OutboundRefused naming ``field``) a URL this master would call as a peer's
    when its host resolves only outside the ``outbound`` policy; connects to nothing."""
    check_outbound(outbound, url, field)


def client_for(credentials: str, url: str, timeout: float = 30.0,
               connect_timeout: float | None = None,
               outbound: OutboundPolicy = ANY) -> MasterClient:
    """A client of the peer at ``url`` with this master's credentials there: each read
    of an answer waits at most ``timeout`` seconds, opening the connection at most
    ``connect_timeout`` (MasterClient's default), to addresses ``outbound`` allows."""
    d = Path(credentials)
    return MasterClient(url, timeout=timeout, ca=str(d / "ca.crt"),
                        cert=str(d / "identity.crt"), key=str(d / "identity.key"),
                        connect_timeout=connect_timeout, outbound=outbound)


def pair(data_dir: str, name: str, url: str, ca_pem: str, token: str,
         timeout: float = 15.0, outbound: OutboundPolicy = ANY) -> Pairing:
    """Redeem ``token`` at the peer ``url`` (verified against ``ca_pem``) for an identity
    of this master's, check it, and read the peer's summary. A failed pairing leaves the
    previous credentials (if any) in place. Raises the peer's typed errors
    (invalid_token, ...), MasterUnreachable, InvalidInput (not a master identity),
    OutboundRefused (``url`` outside ``outbound``: nothing was sent)."""
    if not data_dir:
        raise InvalidInput("pairing needs the master's data directory (DATA_DIR)",
                           [{"field": "DATA_DIR", "problem": "is required"}])
    final = credentials_dir(data_dir, name)
    staging = final.with_name(f".{name}.{os.getpid()}.new")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        check_outbound(outbound, url)
        client = enrol(url, ca_pem, token, staging, outbound)
        client.timeout = timeout
        principal = client.whoami()["principal"]
        if not principal.startswith("master/"):
            raise InvalidInput(f"the token of peer {name} gave this master the identity "
                               f"{principal}, not a master's; ask for a master token "
                               "(slapfed peer invite)",
                               [{"field": "token", "problem": f"certifies {principal}"}])
        summary = client.summary()
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Pairing(str(final), principal, summary)
