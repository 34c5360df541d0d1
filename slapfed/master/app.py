"""Application factory: one DB per app, one ZODB connection per request, ONE error handler.

Depends on Flask, store, services and core.errors. Only this layer turns errors into
HTTP responses, always as ``{"error": {"code", "message", "details"}}``.
"""
from __future__ import annotations

import json
import logging
import re

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from ..core import bodies, errors
from ..core.bodies import printable
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
    and ``DATA_DIR``; ``MAX_CONTENT_LENGTH`` (bytes); ``TOPOLOGY_FILES`` (paths) and
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
    app.before_request(_check_write_body)       # after the guard auth.install put first

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
WRITE_METHODS = ("POST", "PUT", "PATCH")
JSON_MEDIA_TYPE = "application/json"


def json_body() -> dict:
    """The request body: one JSON object (parsed once per request: the guard and the view
    share it). Raises UnsupportedMediaType when it is not declared ``application/json``,
    InvalidInput when it is empty, malformed, not an object, nested too deep, too large
    or holds invalid Unicode (core.bodies: the limits)."""
    parsed = g.get("json_body", _NO_BODY)
    if parsed is _NO_BODY:
        parsed = g.json_body = _parse_body()
    return parsed


def _parse_body() -> dict:
    data = request.get_data(cache=False)
    if data.strip():
        check_content_type()
    return bodies.decode_object(data)


def check_content_type() -> None:
    """UnsupportedMediaType unless the request declares ``application/json``, with at most
    a ``charset=utf-8`` parameter. A browser sends a cross-site form only as
    ``application/x-www-form-urlencoded``, ``multipart/form-data`` or ``text/plain``
    (anything else needs a CORS preflight this master never grants): refusing them keeps
    web pages from writing, e.g. to a development-mode master on loopback."""
    given = request.headers.get("Content-Type", "")
    mimetype, params = request.mimetype, request.mimetype_params
    problem = None
    if mimetype != JSON_MEDIA_TYPE:
        problem = (f"is {printable(given)!r}" if given else "is missing")
    else:
        extra = sorted(k for k in params if k != "charset")
        charset = params.get("charset")
        if extra:
            problem = f"has parameters other than charset: {', '.join(extra)}"
        elif charset is not None and charset.lower().replace("_", "-") not in ("utf-8",
                                                                              "utf8"):
            problem = f"declares charset {printable(charset)!r}; JSON is UTF-8"
    if problem is not None:
        raise errors.UnsupportedMediaType(
            f"{request.method} {request.path} takes a JSON object sent as "
            f"Content-Type: {JSON_MEDIA_TYPE}; the Content-Type {problem}",
            [{"field": "Content-Type", "problem": f"{problem} (expected {JSON_MEDIA_TYPE})"}])


def _check_write_body() -> None:
    """Every write (POST, PUT, PATCH) carries a JSON object: checked for each route, also
    one whose view would not read it (after the guard: who is asking comes first)."""
    if request.method in WRITE_METHODS and request.endpoint in current_app.view_functions:
        json_body()


# -- the one error handler --------------------------------------------------------
_HTTP_ERRORS = {
    400: errors.InvalidInput,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
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
    body = json.dumps(err.to_json())
    return Response(body, status=err.http_status, mimetype="application/json",
                    headers=headers)
