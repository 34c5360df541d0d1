"""Application factory: one DB per app, one ZODB connection per request, ONE error handler.

Depends on Flask, store, services and core (errors, bodies). Only this layer turns errors
into HTTP responses, always as ``{"error": {"code", "message", "details", "request_id"}}``.
Every write (POST, PUT, PATCH) carries one JSON object declared ``application/json``,
decoded within core.bodies' limits before any route sees it; a stopping app answers its
requests in flight before closing its DB (MasterState).
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time

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
    """What an app owns: its DB (closed with the app when it opened it) and renderer, and
    its life: the requests it is answering, and whether it is stopping.

    Stopping comes in two steps. ``begin_stop`` (on the server's SIGTERM/SIGINT) makes
    long polls answer at once with what they have; ``close`` then waits (at most
    ``DRAIN_TIMEOUT`` seconds) for the requests still being answered before closing the
    DB under them. A request the DB was closed under answers 503 ``master_stopping``."""

    DRAIN_TIMEOUT = 5.0

    def __init__(self, db, owns_db: bool):
        self.db = db
        self.owns_db = owns_db
        self.renderer = DesiredStateRenderer(db)
        self.forwarder = None
        self.stopping = threading.Event()
        self.closed = False
        self._active = 0
        self._idle = threading.Condition()

    # -- requests in flight (counted by RequestCounter) ------------------------------
    def enter(self) -> bool:
        """A request starts; False (not counted) once the app is closed."""
        with self._idle:
            if self.closed:
                return False
            self._active += 1
            return True

    def leave(self) -> None:
        with self._idle:
            self._active -= 1
            if not self._active:
                self._idle.notify_all()

    def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the requests in flight; how many are left."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            return self._active

    # -- stopping -------------------------------------------------------------------
    def begin_stop(self) -> None:
        """Long polls answer now (with what they have) instead of waiting."""
        self.stopping.set()
        federation.wake_waiters()

    def close(self) -> None:
        self.begin_stop()
        left = self.drain(self.DRAIN_TIMEOUT)
        if left:
            log.warning("closing the master with %d request(s) still being answered "
                        "after %gs: they answer 503 master_stopping", left,
                        self.DRAIN_TIMEOUT)
        with self._idle:
            self.closed = True
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        self.renderer.close()
        close_writer(self.db)
        if self.owns_db:
            self.db.close()


class RequestCounter:
    """WSGI middleware: counts the requests the app is answering (so that closing waits
    for them) and answers 503 ``master_stopping`` once the app is closed."""

    def __init__(self, wsgi_app, state: MasterState):
        self.wsgi_app = wsgi_app
        self.state = state

    def __call__(self, environ, start_response):
        if not self.state.enter():
            err = errors.MasterStopping("the master is stopping; ask again once it is back")
            start_response(f"{err.http_status} SERVICE UNAVAILABLE",
                           [("Content-Type", "application/json"), ("Retry-After", "1")])
            return [json.dumps(err.to_json()).encode()]
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            self.state.leave()


def create_app(config: dict | None = None) -> Flask:
    """Build the master app.

    config keys: ``DB`` (an open ZODB DB, not closed by the app) or ``STORAGE`` (URI)
    and ``DATA_DIR``; ``ACCESS_LOG`` (default True: one line per request, master.access);
    ``MAX_CONTENT_LENGTH`` (bytes); ``TOPOLOGY_FILES`` (paths) and ``MASTER_NAME`` (this
    master in them); ``PLACEMENT`` (the placement pipeline's filters, score weights and
    sample size over placement.DEFAULT_CONFIG); ``CA_DIR``
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
    state = app.extensions[EXTENSION] = MasterState(db, owns)
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
    app.wsgi_app = RequestCounter(app.wsgi_app, state)

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
    """Release what the app holds (its DB if it opened it), once the requests it is
    answering are answered (MasterState.close)."""
    state = app.extensions.get(EXTENSION)
    if state is not None:
        try:
            state.close()
        finally:
            app.extensions.pop(EXTENSION, None)


def state_of(app) -> MasterState:
    return app.extensions[EXTENSION]


# -- per request ------------------------------------------------------------------
def _live_state() -> MasterState:
    """The app's state; MasterStopping once the app is closed (its server stops)."""
    state = current_app.extensions.get(EXTENSION)
    if state is None or state.closed:
        raise errors.MasterStopping("the master stopped while answering; ask again once "
                                    "it is back")
    return state


def connection():
    """The request's ZODB connection, opened on first use and closed at teardown."""
    conn = g.get("zodb_connection")
    if conn is None:
        conn = g.zodb_connection = _live_state().db.open()
    return conn


def database():
    """The app's DB, for write use cases (they run on the DB's writer connection and
    need no connection of the request's own)."""
    return _live_state().db


def _close_connection(_exc=None) -> None:
    conn = g.pop("zodb_connection", None)
    if conn is not None and conn.opened is not None:   # None: the DB closed it already
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
        return klass(message, [{"field": "body", "problem": f"larger than {limit} bytes "
                                                            f"(limit: MAX_CONTENT_LENGTH)"}])
    else:
        message = exc.description or exc.name
    if klass is None:
        err = errors.SlapfedError(message)
        err.code = _snake(type(exc).__name__)
        err.http_status = exc.code or 500
        return err
    return klass(message)


def _closed_under(exc: Exception) -> bool:
    """Whether ``exc`` came from using the DB after the app closed it (shutdown)."""
    state = current_app.extensions.get(EXTENSION)
    return state is None or state.closed


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
    elif _closed_under(exc):
        log.info("%s %s: the master closed its database while answering", request.method,
                 request.path)
        err = errors.MasterStopping("the master stopped while answering; ask again once "
                                    "it is back")
    else:
        log.exception("unexpected error on %s %s", request.method, request.path)
        err = errors.InternalError("internal error; the master's log has the details")
    note_error(err.code)
    body = json.dumps(err.to_json(request_id=current_request_id()))
    return Response(body, status=err.http_status, mimetype="application/json",
                    headers=headers)
