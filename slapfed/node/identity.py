"""The node's identities: its own key and certificate (from a one-time token) in <root>/etc, and
one key and certificate per partition, generated in the partition and certified by the master.

Depends on ca.keys (key generation, CSRs), the master client and the node layout. Private
keys are written 0600 where they are used and never sent anywhere: only CSRs leave.
"""
from __future__ import annotations

import os
import shutil

from cryptography.hazmat.primitives import serialization

from ..ca.keys import csr_for, generate_key, read_private_key, write_private_key
from ..client import MasterClient
from ..core.errors import InvalidInput

NODE_KEY = "node.key"
NODE_CERT = "node.crt"
CA_CERT = "ca.crt"
PARTITION_KEY = "partition.key"
PARTITION_CERT = "partition.crt"


def _csr_pem(key) -> str:
    return csr_for(key).public_bytes(serialization.Encoding.PEM).decode()


def _fresh_key(path: str):
    if os.path.exists(path):
        os.unlink(path)
    key = generate_key()
    write_private_key(path, key)
    return key


def enroll(etc: str, master: str, token: str, ca_file: str) -> dict:
    """Make the node's key in ``etc`` (0600), trade ``token`` for its certificate at
    ``master`` (verified against ``ca_file``), keep the CA certificate beside them.
    Returns the node config's ``tls`` entry (absolute paths). Raises the client's errors
    (InvalidToken, TokenExpired, MasterUnreachable) and InvalidInput (no CA file)."""
    if not ca_file or not os.path.isfile(ca_file):
        raise InvalidInput(f"--ca {ca_file!r}: the master's CA certificate is needed to "
                           f"verify the master", [{"field": "ca", "problem": "no such file"}])
    os.makedirs(etc, exist_ok=True)
    paths = {"ca": os.path.join(etc, CA_CERT), "cert": os.path.join(etc, NODE_CERT),
             "key": os.path.join(etc, NODE_KEY)}
    key = _fresh_key(paths["key"])
    issued = MasterClient(master, ca=ca_file).redeem_token(token, _csr_pem(key))
    if os.path.abspath(ca_file) != paths["ca"]:
        shutil.copyfile(ca_file, paths["ca"])
    with open(paths["cert"], "w", encoding="utf-8") as fh:
        fh.write(issued["certificate"])
    return paths


def partition_identity(private_dir: str, client: MasterClient, computer: str,
                       partition: str, ca_file: str) -> dict:
    """The partition's key and certificate in ``private_dir``: the key is generated there
    (0600) on first use and kept; its CSR is certified by the master through the node.
    Returns {"key", "cert", "ca"} paths."""
    os.makedirs(private_dir, exist_ok=True)
    paths = {"key": os.path.join(private_dir, PARTITION_KEY),
             "cert": os.path.join(private_dir, PARTITION_CERT),
             "ca": os.path.join(private_dir, CA_CERT)}
    if os.path.exists(paths["key"]) and os.path.exists(paths["cert"]):
        return paths
    key = read_private_key(paths["key"]) if os.path.exists(paths["key"]) \
        else _fresh_key(paths["key"])
    issued = client.certify_partition(computer, partition, _csr_pem(key))
    with open(paths["cert"], "w", encoding="utf-8") as fh:
        fh.write(issued["certificate"])
    shutil.copyfile(ca_file, paths["ca"])
    return paths
