"""The node's identities: its own key and certificate (from a one-time token) in <root>/etc, and
one key and certificate per partition, generated in the partition and certified by the master.

Depends on ca.keys (key generation, CSRs; imported, with cryptography, only when a key
or a CSR is made), the master client and node.confine. Private
keys are written 0600 where they are used and never sent anywhere: only CSRs leave. A
partition's files are written by the node (root) into a directory its user controls:
never through a symlink, owned by that user (``owner``), the key 0600.
"""
from __future__ import annotations

import os

from ..client import MasterClient
from ..core.errors import InvalidInput
from . import confine

NODE_KEY = "node.key"
NODE_CERT = "node.crt"
CA_CERT = "ca.crt"
PARTITION_KEY = "partition.key"
PARTITION_CERT = "partition.crt"


def _csr_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    from ..ca.keys import csr_for
    return csr_for(key).public_bytes(serialization.Encoding.PEM).decode()


def _fresh_key(path: str):
    from ..ca.keys import generate_key, write_private_key

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
    import shutil
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
                       partition: str, ca_file: str, base: str | None = None,
                       owner: tuple[int, int] | None = None) -> dict:
    """The partition's key and certificate in ``private_dir`` (below ``base``, the
    partition's directory): the key is generated there (0600, owned by ``owner``) on
    first use and kept; its CSR is certified by the master through the node.
    Returns {"key", "cert", "ca"} paths."""
    base = base or os.path.dirname(private_dir)
    confine.makedirs(base, private_dir, 0o700, owner)
    paths = {"key": os.path.join(private_dir, PARTITION_KEY),
             "cert": os.path.join(private_dir, PARTITION_CERT),
             "ca": os.path.join(private_dir, CA_CERT)}
    key_pem = confine.read_bytes(paths["key"], base)
    cert_pem = confine.read_bytes(paths["cert"], base)
    if key_pem and cert_pem:
        return paths
    from cryptography.hazmat.primitives import serialization

    from ..ca.keys import generate_key

    key = None
    if key_pem:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            key = None          # not a key (any more): make a new one
    if key is None:
        key = generate_key()
        confine.write_bytes(paths["key"], key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), base, 0o600, owner)
    issued = client.certify_partition(computer, partition, _csr_pem(key))
    confine.write_bytes(paths["cert"], issued["certificate"].encode(), base, 0o644, owner)
    with open(ca_file, "rb") as fh:
        confine.write_bytes(paths["ca"], fh.read(), base, 0o644, owner)
    return paths
