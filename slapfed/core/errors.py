"""Typed errors with stable codes; the only exceptions slapfed code raises on purpose.

Depends on nothing. The web layer maps them to the canonical JSON error body
(``{"error": {"code", "message", "details", "request_id"}}``) and the CLI to exit codes.
"""
from __future__ import annotations


class SlapfedError(Exception):
    """Base of every expected failure. ``code`` is stable; ``message`` is for people."""

    code = "error"
    http_status = 500
    request_id = None    # client side: the id of the master's request that answered it

    def __init__(self, message: str, details: list | None = None):
        super().__init__(message)
        self.message = message
        self.details = list(details or [])

    def to_json(self, request_id: str | None = None) -> dict:
        """The one error body; ``request_id`` (the request it answers) when given."""
        body = {"code": self.code, "message": self.message, "details": self.details}
        if request_id is not None:
            body["request_id"] = request_id
        return {"error": body}

    @classmethod
    def from_json(cls, status: int, body: dict) -> "SlapfedError":
        """Rebuild the typed error a master answered with (used by clients)."""
        err = (body or {}).get("error") or {}
        code = err.get("code", "error")
        klass = ERROR_CLASSES.get(code)
        if klass is None:
            klass = type("RemoteError", (SlapfedError,), {"code": code, "http_status": status})
        exc = klass(err.get("message") or f"master answered HTTP {status}", err.get("details"))
        if isinstance(err.get("request_id"), str):
            exc.request_id = err["request_id"]
        return exc


class InvalidInput(SlapfedError):
    """The input was malformed; ``details`` lists every problem as {field, problem}."""

    code = "invalid_input"
    http_status = 400


class OutboundRefused(InvalidInput):
    """A URL the master was asked to call (a peer's, a child master's) whose host resolves
    only outside the networks this master may connect to (``master serve
    --outbound-allow``), or does not resolve; refused before any connection is made.
    ``details`` name the field and what it resolved to."""

    code = "outbound_refused"
    http_status = 400


class NotFound(SlapfedError):
    code = "not_found"
    http_status = 404


class Conflict(SlapfedError):
    """The request contradicts the current state (e.g. changing a destroyed instance)."""

    code = "conflict"
    http_status = 409


class NoCapacity(SlapfedError):
    """No partition fits the request; ``details`` explains the refusals."""

    code = "no_capacity"
    http_status = 409


class RecursionRefused(SlapfedError):
    """A request crossed too many masters, or came back to one it already crossed;
    ``details`` name the chain (core.provenance)."""

    code = "recursion_refused"
    http_status = 409


class UnknownSoftwareType(SlapfedError):
    code = "unknown_software_type"
    http_status = 422


class Unauthenticated(SlapfedError):
    code = "unauthenticated"
    http_status = 401


class Forbidden(SlapfedError):
    code = "forbidden"
    http_status = 403


class FactNotOwned(Forbidden):
    """The caller asserts a fact it does not own (a node moving itself or granting itself a
    capability; a partition claiming its own destruction); ``details`` name each field
    with what is recorded and what was proposed. Nothing is written."""

    code = "fact_not_owned"
    http_status = 403


class ReportRefused(Conflict):
    """A partition report claims a state the requested state rules out (``destroyed`` for
    an instance requested ``started``); ``details`` name the state requested and the
    state claimed. Nothing is written."""

    code = "report_refused"
    http_status = 409


class ReferenceTaken(Conflict):
    """A rename (SLAP's softwareInstanceRename) to a reference another live instance of
    the same requester already has; ``details`` name the field and the instance holding
    it. Nothing is written."""

    code = "reference_taken"
    http_status = 409


class ReadOnly(Conflict):
    """This master is a replica: it serves reads and refuses every write; ``details`` name
    the primary that takes them (its URL when known)."""

    code = "read_only"
    http_status = 409


class Fenced(Conflict):
    """This master was a primary, and another master was promoted with a larger epoch:
    it refuses every write so that two primaries never diverge; ``details`` name the
    epoch seen and who holds it."""

    code = "fenced"
    http_status = 409


class ReplicaDiverged(Conflict):
    """A replica asked for the transactions after one its primary never committed (it
    followed another primary, or the primary's history was restored from a backup):
    it must be rebuilt from the primary, not resumed."""

    code = "replica_diverged"
    http_status = 409


class MethodNotAllowed(SlapfedError):
    code = "method_not_allowed"
    http_status = 405


class PayloadTooLarge(SlapfedError):
    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(SlapfedError):
    """A request body that is not declared ``application/json`` (a form, text/plain, or no
    content type at all): refused before it is read, so that no cross-site form can
    write."""

    code = "unsupported_media_type"
    http_status = 415


class UriTooLong(SlapfedError):
    """The request line (method, path and query) is longer than the server reads
    (gunicorn's 4094 bytes); refused before the application sees it."""

    code = "uri_too_long"
    http_status = 414


class HeaderFieldsTooLarge(SlapfedError):
    """Too many request header fields, or one too long; refused before the application."""

    code = "header_fields_too_large"
    http_status = 431


class MasterStopping(SlapfedError):
    """The master is shutting down and can no longer answer this request; ask again
    (another worker, or the master once restarted)."""

    code = "master_stopping"
    http_status = 503


class StorageError(SlapfedError):
    """The storage could not be opened or evolved."""

    code = "storage_error"
    http_status = 503


class BackupCorrupt(SlapfedError):
    """A backup's file is missing or does not match the checksum its manifest records."""

    code = "backup_corrupt"
    http_status = 500


class MasterUnreachable(SlapfedError):
    """A client could not talk to the master at all (client side only)."""

    code = "master_unreachable"
    http_status = 503


class NoMasterGiven(SlapfedError):
    """A client was given no master URL at all: a usage error (client side only)."""

    code = "no_master"
    http_status = 400


class Timeout(SlapfedError):
    """A client gave up waiting (client side only)."""

    code = "timeout"
    http_status = 504


class InternalError(SlapfedError):
    code = "internal_error"
    http_status = 500


ERROR_CLASSES: dict[str, type[SlapfedError]] = {
    k.code: k
    for k in (
        SlapfedError, InvalidInput, OutboundRefused, NotFound, Conflict, NoCapacity, RecursionRefused,
        UnknownSoftwareType,
        Unauthenticated, Forbidden, FactNotOwned, ReportRefused, ReferenceTaken, ReadOnly, Fenced,
        ReplicaDiverged, MethodNotAllowed,
        PayloadTooLarge, UnsupportedMediaType, UriTooLong, HeaderFieldsTooLarge,
        MasterStopping, StorageError, BackupCorrupt, NoMasterGiven,
        MasterUnreachable, Timeout, InternalError,
    )
}
