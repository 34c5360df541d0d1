"""Application factory: assembles a master app from its parts and nothing else.

Depends on Flask, store, services and the sibling modules: runtime (what the app owns
while it runs), request (per-request helpers), errors (the one error handler), auth and
the blueprints (/api/v1, and SLAP under /slap for stock SlapOS tools). Every write
(POST, PUT, PATCH) of /api/v1 carries one JSON object declared ``application/json``,
decoded before any route sees it (SLAP's forms are read by master.slapform); a stopping app
answers its requests in flight before closing its DB (MasterState).
"""
from __future__ import annotations

from flask import Flask

from ..core import replication as rep
from ..replication.local import read_role
from ..services import federation
from ..services.runtime import MasterSettings
from ..store import open_db
from . import access, auth, computers, identity, instances, meta, openapi, slap, topology
from . import accounting
from . import federation as federation_routes
from . import replication as replication_routes
from .errors import render_error
from .request import check_write_body, close_connection
from .runtime import EXTENSION, MasterRuntime, RequestCounter, runtime_of

API_PREFIX = "/api/v1"

__all__ = ["create_app", "close_app", "runtime_of", "EXTENSION", "API_PREFIX"]


def create_app(config: dict | None = None) -> Flask:
    """Build the master app around its runtime (master.runtime.MasterRuntime).

    config keys (services.runtime.MasterSettings.CONFIG_KEYS, read once into typed
    settings): ``DB`` (an open ZODB DB, not closed by the app) or ``STORAGE`` (URI) and
    ``DATA_DIR``; ``ACCESS_LOG`` (default True: one line per request, master.access);
    ``MAX_CONTENT_LENGTH`` (bytes); ``TOPOLOGY_FILES`` (paths) and ``MASTER_NAME`` (this
    master in them); ``PLACEMENT`` (the placement pipeline's filters, score weights and
    sample size over placement.DEFAULT_CONFIG); ``CA_DIR``
    (default ``DATA_DIR``/ca, created on first start, named after ``MASTER_NAME``) whose
    certificates authenticate callers, or ``INSECURE`` (development mode: every caller
    is the local administrator, see master.auth); ``MAX_DEPTH``, ``ANCESTRY``,
    ``PEER_RETRY_MAX``, ``FORWARDER`` and ``PEER_POLL_WAIT``. Other keys go to Flask's
    own config (e.g. ``TESTING``). Raises InvalidInput/StorageError when the storage
    cannot be opened or the topology files or placement settings are invalid."""
    config = dict(config or {})
    settings = MasterSettings.from_config(config)
    app = Flask("slapfed.master")
    app.config.update({k: v for k, v in config.items()
                       if k != "DB" and k not in MasterSettings.CONFIG_KEYS})
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length   # Flask enforces it
    app.json.sort_keys = False
    app.json.compact = True

    db = config.get("DB")
    owns = db is None
    replica = read_role(settings.data_dir).role == rep.REPLICA
    if owns:
        # a replica's schema is its primary's: evolving here would commit a transaction
        # of its own, and its history would no longer be its primary's
        db = open_db(settings.storage, settings.data_dir, evolve_schema=not replica)
    rt = app.extensions[EXTENSION] = MasterRuntime(db, settings, owns)
    try:
        rt.topology = topology.load_topology(settings.topology_files, settings.name)
        app.before_request(meta.start_timer)       # first: the guard's time counts too
        for module in (meta, identity, computers, instances, topology, federation_routes,
                       replication_routes, accounting):
            app.register_blueprint(module.blueprint, url_prefix=API_PREFIX)
        app.register_blueprint(meta.metrics_blueprint)
        app.register_blueprint(slap.blueprint, url_prefix=slap.SLAP_PREFIX)
        app.extensions[meta.OPENAPI] = openapi.generate(app)
        auth.install(app, rt)
        federation.declare_peers(rt, rt.topology.declared_peers())
    except BaseException:
        close_app(app)
        raise
    replication_routes.install(app, rt)        # after the guard: who asks comes first
    app.before_request(check_write_body)       # after the guard auth.install put first
    app.after_request(meta.count_request)
    app.wsgi_app = RequestCounter(app.wsgi_app, rt)

    access.install(app, settings.access_log)
    app.teardown_appcontext(close_connection)
    app.register_error_handler(Exception, render_error)
    if settings.forwarder and not replica:
        rt.start_forwarder()
    if settings.replication:
        rt.replication.start()
    return app


def close_app(app: Flask) -> None:
    """Release what the app holds (its DB if it opened it), once the requests it is
    answering are answered (MasterRuntime.close)."""
    rt = app.extensions.get(EXTENSION)
    if rt is not None:
        try:
            rt.close()
        finally:
            app.extensions.pop(EXTENSION, None)
