"""Sealing on the node: the connection parameters an instance declared secret are sealed
to its requester's key before a report leaves the partition; and which partitions must
publish again because their requester's certificate changed.

Depends on ca.seal, core.sealed and node.plan's records. ``reseal_due`` is pure. The
Sealer keeps, in memory only, the sealed text of each (instance, parameter, recipient)
with a digest of the value it holds, so that an unchanged secret is sent as the same
text (the master writes nothing) and costs no sealing; a changed value or recipient is
sealed afresh. A secret is never sent in clear: without a usable recipient it is
withheld and the reason is returned.
"""
from __future__ import annotations

import hashlib

from ..ca import seal
from ..ca.errors import SealedValueInvalid
from ..core.sealed import PENDING, connection_context, is_sealed, parameter_context
from ..core.states import STARTED, STOPPED

MAX_CACHED = 20000          # sealed texts kept (a node of 300 partitions uses ~1000)


def recipient_fingerprint(instance: dict | None) -> str | None:
    """The fingerprint of the recipient a desired instance names (None: none)."""
    rec = (instance or {}).get("recipient")
    if isinstance(rec, dict) and isinstance(rec.get("fingerprint"), str):
        return rec["fingerprint"]
    return None


def reseal_due(desired: dict | None, partitions: dict) -> list[str]:
    """Partitions whose instance is applied (started or stopped at its current
    revision) but whose last report was sealed for another recipient than the one the
    desired state names now: their requester's certificate changed."""
    due = []
    for entry in (desired or {}).get("partitions") or ():
        inst = entry.get("instance")
        if not inst:
            continue
        rec = partitions.get(entry.get("id"))
        if rec is None or rec.instance_id != inst.get("id") or \
                rec.revision != inst.get("revision") or rec.state not in (STARTED, STOPPED):
            continue
        if rec.sealed_for != recipient_fingerprint(inst):
            due.append(entry["id"])
    return due


class Sealer:
    def __init__(self):
        self._keys: dict[str, object] = {}        # fingerprint -> public key
        self._sealed: dict[tuple, tuple] = {}     # (iid, key, fp) -> (digest, text)

    def _key(self, recipient: dict):
        fp = recipient["fingerprint"]
        key = self._keys.get(fp)
        if key is None:
            key = seal.recipient_key(recipient["certificate"])
            if seal.fingerprint(recipient["certificate"]) != fp:
                raise SealedValueInvalid("the recipient's fingerprint is not its "
                                         "certificate's", [{"field": "recipient",
                                                            "problem": "fingerprint"}])
            if len(self._keys) > 1000:
                self._keys.clear()
            self._keys[fp] = key
        return key

    def connection(self, instance_id: str, public: dict, secret: dict,
                   recipient: dict | None) -> tuple[dict, dict]:
        """(connection to report, {parameter: why withheld}): ``public`` as it is, each
        value of ``secret`` sealed to ``recipient`` for (instance, parameter); a
        secret that cannot be sealed is left out, never sent in clear."""
        if not secret:
            return public, {}
        out = {k: v for k, v in public.items() if k not in secret}
        withheld = {}
        if not isinstance(recipient, dict) or not recipient.get("certificate") \
                or not isinstance(recipient.get("fingerprint"), str):
            return out, {k: "no requester certificate to seal to (the master gave none)"
                         for k in secret}
        try:
            key = self._key(recipient)
        except SealedValueInvalid as exc:
            return out, {k: exc.message for k in secret}
        fp = recipient["fingerprint"]
        for name, value in secret.items():
            text = value if isinstance(value, str) else _json_text(value)
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
            slot = (instance_id, name, fp)
            hit = self._sealed.get(slot)
            if hit is not None and hit[0] == digest:
                out[name] = hit[1]
                continue
            try:
                sealed = seal.seal(text, key, connection_context(instance_id, name))
            except (SealedValueInvalid, UnicodeEncodeError) as exc:
                withheld[name] = getattr(exc, "message", str(exc))
                continue
            if len(self._sealed) >= MAX_CACHED:
                self._sealed.clear()
            self._sealed[slot] = (digest, sealed)
            out[name] = sealed
        return out, withheld


def pending_parameters(parameters: dict) -> list[str]:
    """The secret parameters of an instance not sealed yet (core.sealed.PENDING)."""
    return sorted(k for k, v in parameters.items() if v == PENDING)


def open_parameters(instance_id: str, parameters: dict, key_pem: bytes | None,
                    partition: str) -> tuple[dict, str]:
    """(parameters with each value sealed to the partition opened, problem): the problem
    names every parameter that does not open ('' when all do); nothing is opened
    without the partition's key."""
    names = sorted(k for k, v in parameters.items() if is_sealed(v))
    if not names:
        return parameters, ""
    key = None
    if key_pem:
        from cryptography.hazmat.primitives import serialization
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            key = None
    opened, problems = dict(parameters), []
    for name in names:
        if key is None:
            problems.append(f"secret parameter {name!r} cannot be opened: partition "
                            f"{partition} has no key")
            continue
        try:
            opened[name] = seal.open_sealed(parameters[name], key,
                                            parameter_context(instance_id, name))
        except SealedValueInvalid as exc:
            problems.append(f"secret parameter {name!r} does not open with the key of "
                            f"partition {partition}: {exc.message} (request it again with "
                            "--secret: it is sealed to the partition the instance has now)")
    return opened, "\n".join(problems)


def _json_text(value) -> str:
    import json
    return json.dumps(value, sort_keys=True)
