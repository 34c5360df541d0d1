"""Application factory: one DB per app, one ZODB connection per request, ONE error handler.

Depends on Flask, store, services and core.errors. Only this layer turns errors into
HTTP responses, always as ``{"error": {"code", "message", "details", "request_id"}}``.
"""
from __future__ import annotations

import json
import logging
import re

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from ..core import errors
from ..services import DesiredStateRenderer, close_writer, configure_placement
from ..services import federation
from ..store import open_db

API_PREFIX = "/api/v1"
EXTENSION = "slapfed"
DEFAULT_MAX_CONTENT_LENGTH = 4 * 1024 * 1024

log = logging.getLogger("slapfed.master")


class MasterState:
    """What an app owns: its DB (closed with the app when it opened it) and renderer."""

    def __init__(self, db, owns_db: bool):
        self.db = db
        self.owns_db = owns_db
        self.renderer = DesiredStateRenderer(db)
        self.forwarder = None

    def close(self) -> None:
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        self.renderer.close()
        close_writer(self.db)
        if self.owns_db:
            self.db.close()


def create_app(config: dict | None = None) -> Flask:
    """Build the master app.

    config keys: ``DB`` (an open ZODB DB, not closed by the app) or ``STORAGE`` (URI)
    and ``DATA_DIR``; ``ACCESS_LOG`` (default True: one line per request, master.access); ``MAX_CONTENT_LENGTH`` (bytes); ``TOPOLOGY_FILES`` (paths) and
    ``MASTER_NAME`` (this master in them); ``PLACEMENT`` (the placement pipeline's
    filters, score weights and sample size over placement.DEFAULT_CONFIG); ``CA_DIR``
    (default ``DATA_DIR``/ca, created on first start, named after ``MASTER_NAME``) whose
    certificates authenticate callers, or ``INSECURE`` (development mode: every caller
    is the local administrator, see master.auth). Raises
    InvalidInput/StorageError when the storage cannot be opened or the topology files
    or placement settings are invalid."""
    config = dict(config or {})
    app = Flask("slapfed.master")
    app.config["MAX_CONTENT_LENGTH"] = DEFAULT_MAX_CONTENT_LENGTH
    app.config.update(config)
    app.json.sort_keys = False
    app.json.compact = True

    db = config.get("DB")
    owns = db is None
    if owns:
        db = open_db(config.get("STORAGE"), config.get("DATA_DIR"))
    app.extensions[EXTENSION] = MasterState(db, owns)
    try:
        configure_placement(db, config.get("PLACEMENT"), config.get("MASTER_NAME") or "master")
        federation.configure(db, config.get("MASTER_NAME") or "master", config.get("MAX_DEPTH"),
                             config.get("PEER_RETRY_MAX"))
    except BaseException:
        close_app(app)
        raise

    from . import auth, computers, identity, instances, meta, topology
    from . import federation as federation_routes
    for module in (meta, identity, computers, instances, topology, federation_routes):
        app.register_blueprint(module.blueprint, url_prefix=API_PREFIX)
    try:
        auth.install(app, config)
        federation.declare_peers(db, topology.master_topology_of(app).declared_peers())
    except BaseException:
        close_app(app)
        raise

    from . import access
    access.install(app, bool(config.get("ACCESS_LOG", True)))
    app.teardown_appcontext(_close_connection)
    app.register_error_handler(Exception, render_error)
    if config.get("FORWARDER"):
        start_forwarder(app)
    return app


def start_forwarder(app):
    """Run the forwarder in this process unless another process of the same data
    directory already does (gunicorn workers elect one with a file lock)."""
    from ..federation.forwarder import Forwarder
    from .federation import FORWARDER_EXTENSION
    state = state_of(app)
    fwd = Forwarder(state.db, app.config.get("DATA_DIR"),
                    poll_wait=app.config.get("PEER_POLL_WAIT") or 20.0)
    if fwd.start():
        app.extensions[FORWARDER_EXTENSION] = fwd
        state.forwarder = fwd
    return fwd


def close_app(app: Flask) -> None:
    """Release what the app holds (its DB if it opened it)."""
    state = app.extensions.pop(EXTENSION, None)
    if state is not None:
        state.close()


def state_of(app) -> MasterState:
    return app.extensions[EXTENSION]


# -- per request ------------------------------------------------------------------
def connection():
    """The request's ZODB connection, opened on first use and closed at teardown."""
    conn = g.get("zodb_connection")
    if conn is None:
        from flask import current_app
        conn = g.zodb_connection = state_of(current_app).db.open()
    return conn


def database():
    """The app's DB, for write use cases (they run on the DB's writer connection and
    need no connection of the request's own)."""
    from flask import current_app
    return state_of(current_app).db


def _close_connection(_exc=None) -> None:
    conn = g.pop("zodb_connection", None)
    if conn is not None:
        conn.transaction_manager.abort()
        conn.close()


_NO_BODY = object()


def json_body():
    """The request body as JSON (parsed once per request: the guard and the view share
    it); InvalidInput when empty or malformed."""
    parsed = g.get("json_body", _NO_BODY)
    if parsed is _NO_BODY:
        parsed = g.json_body = _parse_body()
    return parsed


def _parse_body():
    data = request.get_data(cache=False)
    if not data.strip():
        raise errors.InvalidInput("the request body is empty; send a JSON object",
                                  [{"field": "body", "problem": "is required"}])
    try:
        return json.loads(data)
    except ValueError as exc:   # JSONDecodeError and UnicodeDecodeError
        problem = f"malformed JSON: {exc}"
        raise errors.InvalidInput(f"the request body is not valid JSON ({exc})",
                                  [{"field": "body", "problem": problem}]) from None


# -- the one error handler --------------------------------------------------------
_HTTP_ERRORS = {
    400: errors.InvalidInput,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_from_http(exc: HTTPException) -> errors.SlapfedError:
    klass = _HTTP_ERRORS.get(exc.code)
    if exc.code == 404:
        message = f"no route {request.method} {request.path}"
    elif exc.code == 405:
        allowed = ", ".join(sorted(exc.valid_methods or ()))
        message = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
    elif exc.code == 413:
        limit = request.max_content_length
        message = f"the request body is larger than the limit of {limit} bytes"
    else:
        message = exc.description or exc.name
    if klass is None:
        err = errors.SlapfedError(message)
        err.code = _snake(type(exc).__name__)
        err.http_status = exc.code or 500
        return err
    return klass(message)


def render_error(exc: Exception) -> Response:
    """The one error body, with the id of the request it answers."""
    from .access import current_request_id, note_error
    headers = {}
    if isinstance(exc, errors.SlapfedError):
        err = exc
    elif isinstance(exc, HTTPException):
        err = error_from_http(exc)
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    else:
        log.exception("unexpected error on %s %s", request.method, request.path)
        err = errors.InternalError("internal error; the master's log has the details")
    note_error(err.code)
    body = json.dumps(err.to_json(request_id=current_request_id()))
    return Response(body, status=err.http_status, mimetype="application/json",
                    headers=headers)
