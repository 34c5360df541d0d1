"""Sealing on the node: the connection parameters an instance declared secret are sealed
to its requester's key before a report leaves the partition; and which partitions must
publish again because their requester's certificate changed.

Depends on ca.seal (imported on first use), core.sealed and node.plan's records. ``reseal_due`` is pure. The
Sealer keeps, in memory only, the sealed text of each (instance, parameter, recipient)
with a digest of the value it holds, so that an unchanged secret is sent as the same
text (the master writes nothing) and costs no sealing; a changed value or recipient is
sealed afresh. A secret is never sent in clear: without a usable recipient it is
withheld and the reason is returned.
"""
from __future__ import annotations

import hashlib

from ..ca.errors import SealedValueInvalid
from ..core.sealed import (PENDING, bound_instance, connection_context, is_sealed,
                           parameter_context)
from ..core.states import STARTED, STOPPED

MAX_CACHED = 20000          # sealed texts kept (a node of 300 partitions uses ~1000)


def _seal():
    """ca.seal (and cryptography with it), imported when a value is first sealed or
    opened: a node cycle with nothing to seal does not load them."""
    from ..ca import seal
    return seal


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
        if rec.sealed_for != sealing_mark(inst):
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
            key = _seal().recipient_key(recipient["certificate"])
            if _seal().fingerprint(recipient["certificate"]) != fp:
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
                sealed = _seal().seal(text, key, connection_context(instance_id, name))
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
            opened[name] = _seal().open_sealed(parameters[name], key,
                                            parameter_context(instance_id, name))
        except SealedValueInvalid as exc:
            problems.append(f"secret parameter {name!r} does not open with the key of "
                            f"partition {partition}: {exc.message} (request it again with "
                            "--secret: it is sealed to the partition the instance has now)")
    return opened, "\n".join(problems)


# -- values a host publishes for its shared instances ----------------------------------
# A host's partition publishes connection parameters for each shared instance it serves
# ({shared id: {key: value}}); those its release declared secret are sealed to THAT
# shared instance's requester (the desired instance's ``shared_recipients``), for (its
# id, or the origin's when it was delegated here; the parameter name), never to the
# host's requester. One without a recipient is withheld.
def shared_recipients(instance: dict | None) -> dict:
    """{shared instance id: recipient} the desired host instance names."""
    recs = (instance or {}).get("shared_recipients")
    return {sid: rec for sid, rec in recs.items()
            if isinstance(sid, str) and isinstance(rec, dict)} if isinstance(recs, dict) else {}


def sealing_mark(instance: dict | None) -> str | None:
    """What a partition's report was sealed for: its requester's fingerprint, and for a
    host of shared instances, each shared requester's too (one changes: publish again).
    Without shared recipients, the fingerprint alone."""
    fp = recipient_fingerprint(instance)
    shared = shared_recipients(instance)
    if not shared:
        return fp
    text = "\n".join(f"{sid} {recipient_fingerprint({'recipient': rec})}"
                      for sid, rec in sorted(shared.items()))
    return f"{fp or '-'}+{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def seal_shared(sealer: Sealer, public: dict, secret: dict,
                recipients: dict) -> tuple[dict, dict]:
    """({shared id: connection to report}, {shared id: {parameter: why withheld}}): each
    shared instance's public values as they are, its secret ones sealed to its own
    recipient (``recipients``: {shared id: recipient}) for (its bound id, parameter)."""
    out = {sid: dict(conn) for sid, conn in public.items()}
    withheld = {}
    for sid, values in sorted(secret.items()):
        if not values:
            continue
        rec = recipients.get(sid)
        conn, why = sealer.connection(bound_instance({"recipient": rec}, sid),
                                      out.get(sid, {}), values, rec)
        out[sid] = conn
        if why:
            withheld[sid] = why
    return out, withheld


def _json_text(value) -> str:
    import json
    return json.dumps(value, sort_keys=True)
