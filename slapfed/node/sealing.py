"""Sealing on the node: the connection parameters an instance declared secret are sealed
to its requester's key before a report leaves the partition; and which partitions must
publish again because their requester's certificate changed.

Depends on ca.seal (imported on first use), core.sealed, node.layout (atomic writes) and
node.plan's records. ``reseal_due`` is pure. The Sealer keeps the sealed text of each
(instance, parameter) with the recipient it was sealed to and a keyed digest of the
value it holds (and of the text itself), so that an unchanged secret is sent as the same text (the master writes
nothing) and costs no sealing; a changed value or recipient is sealed afresh. A secret
is never sent in clear: without a usable recipient it is withheld and the reason is
returned.

The agent's Sealer keeps its cache across restarts in <root>/var/sealed.json (node-owned,
0600, in var/ which partition users only traverse), so that only a changed value or a
renewed certificate costs a sealing. The file holds ciphertext, which is no secret, and
digests, which could be: a plain hash of a short password is brute-forced offline. Each
digest is therefore a MAC (keyed BLAKE2b, RFC 7693: as strong as an HMAC-SHA256 here and
a few times cheaper), under a random key of the node's own (<root>/var/sealing.key,
0600), of (instance, parameter, recipient, value, sealed text): without the key the file
says nothing of the values, not even that two of them are equal, and a text altered on
disk no longer matches (it is sealed again rather than sent). A missing, unreadable
or altered file (or key) only means sealing afresh: the cache starts empty.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re

from ..ca.errors import SealedValueInvalid
from ..core.sealed import (MAX_SEALED, PENDING, bound_instance, connection_context,
                           is_sealed, parameter_context)
from ..core.states import STARTED, STOPPED

MAX_CACHED = 20000          # sealed texts kept (a node of 300 partitions uses ~1000)
MAX_CACHED_CHARS = 8 << 20  # and their characters: the cache file stays below ~10 MB
CACHE_VERSION = 1
KEY_BYTES = 32
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")

log = logging.getLogger("slapfed.node")


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
    """Seals secrets to recipients, remembering what it sealed. ``store`` and ``key_path``
    (both or neither): where the cache persists and the node-local key of its digests;
    without them the cache lives in memory only. Both are read on the first sealing (a
    cycle with nothing to seal reads neither) and the cache is written by ``save``, once
    per cycle, only when it changed."""

    def __init__(self, store: str | None = None, key_path: str | None = None):
        self._keys: dict[str, object] = {}        # fingerprint -> public key
        # (iid, parameter) -> (fingerprint, digest, sealed text), oldest first
        self._sealed: dict[tuple, tuple] = {}
        self._chars = 0
        self.store, self.key_path = store, key_path
        self._mac_key: bytes | None = None
        self._dirty = False

    # -- the cache ------------------------------------------------------------------------
    def _ready(self) -> bytes:
        """The digest key, the persisted cache loaded along with it on first use."""
        if self._mac_key is None:
            usable = True
            if self.key_path:
                self._mac_key, usable = self._load_key()
            else:
                self._mac_key = os.urandom(KEY_BYTES)
            if self.store and usable:     # a cache under an unusable key: said already
                self._load()
        return self._mac_key

    def _load_key(self) -> tuple[bytes, bool]:
        """(the digest key, whether the file held a usable one; else a new one is
        made)."""
        try:
            with open(self.key_path, "rb") as fh:
                raw = fh.read(2 * KEY_BYTES + 2).strip()
            key = bytes.fromhex(raw.decode("ascii"))
            if len(key) == KEY_BYTES:
                return key, True
            problem = "not a key"
        except FileNotFoundError:
            problem = None
        except (OSError, ValueError) as exc:
            problem = str(exc)
        if problem:
            log.warning("sealing cache: ignoring the unusable key %s (%s): a new one is "
                        "made, the values are sealed afresh", self.key_path, problem)
        key = os.urandom(KEY_BYTES)
        tmp = f"{self.key_path}.tmp"
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with open(fd, "w", encoding="ascii") as fh:
                fh.write(key.hex() + "\n")
            os.replace(tmp, self.key_path)
        except OSError as exc:
            log.warning("sealing cache: cannot keep a key in %s (%s): the cache stays in "
                        "memory", self.key_path, exc)
            self.store = None
        return key, problem is None

    def _key_id(self) -> str:
        """Names the digest key in the file (a cache made under another key is dropped)."""
        import hashlib

        return hashlib.blake2b(b"key id", key=self._mac_key, digest_size=16,
                               person=b"slapfed-sealing").hexdigest()

    def _digest(self, instance_id: str, name: str, fp: str, value: str,
                sealed: str) -> bytes:
        import hashlib

        msg = "\0".join((instance_id, name, fp, sealed, value)).encode("utf-8",
                                                                   "surrogatepass")
        return hashlib.blake2b(msg, key=self._mac_key, digest_size=32,
                               person=b"slapfed-sealing").digest()

    def _load(self) -> None:
        try:
            with open(self.store, encoding="utf-8") as fh:
                raw = json.load(fh)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("sealing cache: ignoring the unreadable %s (%s): values are sealed "
                        "afresh", self.store, exc)
            return
        if not isinstance(raw, dict) or raw.get("version") != CACHE_VERSION \
                or raw.get("key") != self._key_id() or not isinstance(raw.get("entries"), list):
            log.warning("sealing cache: ignoring %s (another version or key, or not a "
                        "cache): values are sealed afresh", self.store)
            return
        dropped = 0
        for entry in raw["entries"]:
            if not (isinstance(entry, list) and len(entry) == 5
                    and all(isinstance(x, str) for x in entry)
                    and _HEX64.match(entry[3]) and is_sealed(entry[4])
                    and len(entry[4]) <= MAX_SEALED):
                dropped += 1
                continue
            iid, name, fp, digest, text = entry
            self._put((iid, name), (fp, bytes.fromhex(digest), text))
        if dropped:
            log.warning("sealing cache: %d malformed entr%s of %s ignored", dropped,
                        "y" if dropped == 1 else "ies", self.store)
        self._dirty = False

    def _put(self, slot: tuple, value: tuple) -> None:
        old = self._sealed.pop(slot, None)
        if old is not None:
            self._chars -= len(old[2])
        self._sealed[slot] = value
        self._chars += len(value[2])
        while len(self._sealed) > MAX_CACHED or self._chars > MAX_CACHED_CHARS:
            oldest = next(iter(self._sealed))
            self._chars -= len(self._sealed.pop(oldest)[2])
        self._dirty = True

    def save(self) -> None:
        """Write the cache (atomically, 0600) when it changed since it was read or last
        written; a failure is logged and the cache stays in memory."""
        if not self._dirty or not self.store:
            return
        from .layout import atomic_write_json
        entries = [[iid, name, fp, digest.hex(), text]
                   for (iid, name), (fp, digest, text) in self._sealed.items()]
        try:
            atomic_write_json(self.store, {"version": CACHE_VERSION, "key": self._key_id(),
                                           "entries": entries}, indent=None)
        except OSError as exc:
            log.warning("sealing cache: cannot write %s: %s", self.store, exc)
            return
        self._dirty = False

    # -- sealing --------------------------------------------------------------------------
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
        import hmac

        if not secret:
            return public, {}
        out = {k: v for k, v in public.items() if k not in secret}
        withheld = {}
        if not isinstance(recipient, dict) or not recipient.get("certificate") \
                or not isinstance(recipient.get("fingerprint"), str):
            return out, {k: "no requester certificate to seal to (the master gave none)"
                         for k in secret}
        self._ready()
        fp = recipient["fingerprint"]
        key = None
        for name, value in secret.items():
            text = value if isinstance(value, str) else _json_text(value)
            slot = (instance_id, name)
            hit = self._sealed.get(slot)
            if hit is not None and hit[0] == fp and hmac.compare_digest(
                    hit[1], self._digest(instance_id, name, fp, text, hit[2])):
                out[name] = hit[2]
                continue
            try:
                if key is None:       # the certificate is parsed only when one is sealed
                    key = self._key(recipient)
                sealed = _seal().seal(text, key, connection_context(instance_id, name))
            except (SealedValueInvalid, UnicodeEncodeError) as exc:
                withheld[name] = getattr(exc, "message", str(exc))
                continue
            self._put(slot, (fp, self._digest(instance_id, name, fp, text, sealed), sealed))
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
    import hashlib

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
