"""The shape of a sealed value, as whoever relays one (a master, a peer) can check it
without being able to open it; and the contexts values are sealed for.

Depends on the standard library only (ca.seal seals and opens; this module only looks).
A sealed value is one string ``slapfed-sealed:1:<base64url, unpadded>`` of an HPKE
output: a 65-byte encapsulated key, the ciphertext, a 16-byte tag. A relay refuses a
value that claims to be sealed (starts ``slapfed-sealed:``) but is not of that shape; a
well-shaped value altered in transit is only found out by its recipient (the tag).
"""
from __future__ import annotations

import re

CLAIM = "slapfed-sealed:"
PREFIX = CLAIM + "1:"
MAX_PLAINTEXT = 64 * 1024          # bytes of one secret (a certificate, a key, a token...)
ENC_BYTES, TAG_BYTES = 65, 16      # P-256 encapsulated key, AES-GCM tag
MIN_SEALED_BYTES = ENC_BYTES + TAG_BYTES
MAX_SEALED = len(PREFIX) + (MAX_PLAINTEXT + MIN_SEALED_BYTES) * 4 // 3 + 4
_BODY_RE = re.compile(r"[A-Za-z0-9_-]*\Z")


def is_sealed(value) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def claims_sealed(value) -> bool:
    return isinstance(value, str) and value.startswith(CLAIM)


def shape_problem(value) -> str | None:
    """Why ``value``, which claims to be sealed, is not a well-formed sealed value; None
    when it is well formed, or makes no such claim (a plain value)."""
    if not claims_sealed(value):
        return None
    if not value.startswith(PREFIX):
        return f"sealed value of an unknown version (this master reads {PREFIX}...)"
    if len(value) > MAX_SEALED:
        return f"sealed value longer than {MAX_SEALED} characters"
    body = value[len(PREFIX):]
    if not _BODY_RE.match(body) or len(body) % 4 == 1:
        return "sealed value that is not unpadded base64url"
    if len(body) * 3 // 4 < MIN_SEALED_BYTES:
        return f"sealed value shorter than an HPKE output ({MIN_SEALED_BYTES} bytes)"
    return None


# A secret parameter the requester will seal once the partition its instance got has a
# certificate: its node certifies the partition and instantiates nothing meanwhile.
PENDING = CLAIM + "pending"


def parameter_problem(value) -> str | None:
    """Why an instance parameter that claims to be sealed is not one (the pending
    marker is allowed); None otherwise."""
    return None if value == PENDING else shape_problem(value)


def connection_context(instance_id: str, key: str) -> str:
    """What a connection parameter is sealed for: one instance, one parameter name."""
    return f"connection/{instance_id}/{key}"


def parameter_context(instance_id: str, key: str) -> str:
    """What a secret instance parameter is sealed for (to the partition's key)."""
    return f"parameter/{instance_id}/{key}"


# -- sealing through delegation --------------------------------------------------------
# A delegated instance has one id at each master of its chain; its requester opens its
# values (and seals its secret parameters) at the master it asked, the origin, with the
# id the instance has there. The recipient a forward carries names that id
# (``instance``), and every master down the chain passes it on unchanged: the node that
# finally runs the instance binds its secrets to it.
def bound_instance(instance: dict | None, instance_id: str) -> str:
    """The instance id the secrets of a desired instance are bound to: the id at the
    origin its recipient names (a delegated instance), else its own ``instance_id``."""
    rec = (instance or {}).get("recipient")
    bound = rec.get("instance") if isinstance(rec, dict) else None
    return bound if isinstance(bound, str) and bound else instance_id
