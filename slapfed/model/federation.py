"""Federation records: the peers a master delegates to, and its forward table.

Depends on persistent only. Values are replaced as a whole (tuples, dicts), never
mutated in place, so that assignment marks the object changed.
"""
from __future__ import annotations

from persistent import Persistent

from ..core.states import DEFAULT_TRUST, FORWARD_STATES as _DECLARED, ORIGIN_CLI

# The states of a forward (one delegated instance), as shown to users.
FWD_QUEUED = "queued"            # recorded; the peer was not called yet
FWD_FORWARDED = "forwarded"      # the peer accepted the current revision
FWD_UNREACHABLE = "unreachable"  # the peer could not be reached; retrying with back-off
FWD_REFUSED = "refused"          # the peer answered with an error; retrying with back-off
FWD_CLOSED = "closed"            # destroyed at the peer: nothing runs there any more
FORWARD_STATES = (FWD_QUEUED, FWD_FORWARDED, FWD_UNREACHABLE, FWD_REFUSED, FWD_CLOSED)
assert FORWARD_STATES == _DECLARED, "core.states.FORWARD_STATES names these states"

# Where a peer was learnt from.


class Peer(Persistent):
    """Another master this one delegates to, with what it last said of itself.

    ``credentials`` is the directory (inside the master's data directory) holding the
    client identity this master proves itself with at the peer (``identity.key``,
    ``identity.crt``) and the peer's CA certificate (``ca.crt``)."""

    name = None
    url = None
    ca_certificate = None
    credentials = None
    principal = None           # who the peer says this master is there (master/NAME)
    origin = ORIGIN_CLI
    trust = DEFAULT_TRUST
    cost = 0.0
    latency_ms = None
    site = None                # the peer's site in this master's topology, if declared
    summary = None             # the peer's GET /federation/summary answer
    summary_at = None
    last_contact = None
    last_error = None
    last_error_at = None
    added_at = None
    pairing_token = None       # (databases before pending files: a plaintext token)
    pairing_digest = None      # SHA-256 of the one-time token of the peer's waiting to be
                               # redeemed; the token is a file (services.federation.pending)
    instance_id = None         # child masters: the instance of this master running it
    lost_at = None             # the verdict "lost": nothing is delegated there any more
    lost_reason = ""
    orphans = ()               # what it may still run of ours after the verdict: dicts
                               # {instance, remote_reference, remote_id, at}, for cleanup

    @property
    def lost(self) -> bool:
        return self.lost_at is not None

    def __init__(self, name: str, url: str, ca_certificate: str, now: float):
        self.name = name
        self.url = url
        self.ca_certificate = ca_certificate
        self.added_at = now

    @property
    def paired(self) -> bool:
        return self.credentials is not None

    def update(self, **changes) -> None:
        """Set what differs (an unchanged peer is not written again)."""
        for key, value in changes.items():
            if getattr(self, key) != value:
                setattr(self, key, value)

    def contact(self, now: float) -> None:
        self.last_contact = now
        if self.last_error is not None:
            self.last_error = None
            self.last_error_at = None

    def failed(self, reason: str, now: float) -> None:
        if self.last_error != reason:
            self.last_error = reason
        if self.last_error_at is None:
            self.last_error_at = now


class Forward(Persistent):
    """One row of the forward table: instance ``instance_id`` of this master is served by
    ``peer`` under ``remote_reference`` (deterministic: asking again never duplicates).

    ``fallbacks`` are the peers still to try, in order, while no peer has accepted it;
    ``pushed_revision`` is the instance revision the peer last accepted; ``chain`` is
    where it runs beyond the peer (masters, then the computer), as the peer reported."""

    instance_id = None
    peer = None
    fallbacks = ()
    remote_reference = None
    remote_id = None
    contacted = False          # a call may have reached the peer: never forget it silently
    accepted = False
    pushed_revision = 0
    state = FWD_QUEUED
    reason = ""
    attempts = 0
    next_attempt_at = 0.0
    chain = ()
    created_at = None
    updated_at = None
    # fingerprint of the recipient the peer last accepted with the instance (sealing
    # through delegation): a renewed certificate at the origin pushes it again
    pushed_recipient = None

    def __init__(self, instance_id: str, peer: str, fallbacks: tuple, remote_reference: str,
                 now: float):
        self.instance_id = instance_id
        self.peer = peer
        self.fallbacks = tuple(fallbacks)
        self.remote_reference = remote_reference
        self.created_at = self.updated_at = now

    @property
    def open(self) -> bool:
        return self.state != FWD_CLOSED

    def set(self, now: float, **changes) -> None:
        for key, value in changes.items():
            if getattr(self, key) != value:
                setattr(self, key, value)
        self.updated_at = now
