"""Application factory: assembles a master app from its parts and nothing else.

Depends on Flask, store, services, peering (the forwarder) and the sibling modules:
runtime (what the app owns while it runs), request (per-request helpers), errors (the one
error handler), auth and the blueprints. Every write (POST, PUT, PATCH) carries one JSON
object declared ``application/json``, decoded before any route sees it; a stopping app
answers its requests in flight before closing its DB (MasterState).
"""
from __future__ import annotations

from flask import Flask

from ..services import configure_placement
from ..services import federation
from ..store import open_db
from . import access, auth, computers, identity, instances, meta, topology
from . import federation as federation_routes
from .errors import render_error
from .request import check_write_body, close_connection
from .runtime import EXTENSION, MasterState, RequestCounter, state_of

API_PREFIX = "/api/v1"
DEFAULT_MAX_CONTENT_LENGTH = 4 * 1024 * 1024

__all__ = ["create_app", "close_app", "start_forwarder", "state_of", "EXTENSION",
           "API_PREFIX"]


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

    for module in (meta, identity, computers, instances, topology, federation_routes):
        app.register_blueprint(module.blueprint, url_prefix=API_PREFIX)
    try:
        auth.install(app, config)
        federation.declare_peers(db, topology.master_topology_of(app).declared_peers())
    except BaseException:
        close_app(app)
        raise
    app.before_request(check_write_body)       # after the guard auth.install put first
    app.wsgi_app = RequestCounter(app.wsgi_app, state)

    access.install(app, bool(config.get("ACCESS_LOG", True)))
    app.teardown_appcontext(close_connection)
    app.register_error_handler(Exception, render_error)
    if config.get("FORWARDER"):
        start_forwarder(app)
    return app


def start_forwarder(app):
    """Run the forwarder in this process unless another process of the same data
    directory already does (gunicorn workers elect one with a file lock)."""
    from ..peering.forwarder import Forwarder
    state = state_of(app)
    fwd = Forwarder(state.db, app.config.get("DATA_DIR"),
                    poll_wait=app.config.get("PEER_POLL_WAIT") or 20.0)
    if fwd.start():
        app.extensions[federation_routes.FORWARDER_EXTENSION] = fwd
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
