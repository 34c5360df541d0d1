"""Routes about the master itself: health, the OpenAPI document and the metrics.

Depends on Flask, store and the sibling request module. The document is the one
master.openapi generated from this app's routes when the app was built (master.app).
"""
from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from .. import __version__
from ..metrics import CONTENT_TYPE
from ..services import read
from .request import connection, runtime, settings
from .runtime import EXTENSION

blueprint = Blueprint("meta", __name__)
# Outside /api/v1: the Prometheus text format, for scrapers (admins' certificates).
metrics_blueprint = Blueprint("metrics", __name__)


@blueprint.get("/health")
def health():
    """Up, and as what: ``role`` (primary, replica or fenced) and ``epoch`` let a node or
    a client that lost its primary decide whether to follow this master."""
    generation = read(connection(), lambda app: app.generation)
    repl = runtime().replication
    return jsonify({"status": "ok", "generation": generation, "version": __version__,
                    "name": settings().here, "role": repl.role().state,
                    "epoch": repl.view().epoch})


@blueprint.get("/openapi.json")
def openapi():
    return jsonify(current_app.extensions[OPENAPI])


OPENAPI = "slapfed.openapi"      # app.extensions key: the app's OpenAPI document


@metrics_blueprint.get("/metrics")
def metrics():
    return Response(runtime().metrics.render(), mimetype=None,
                    headers={"Content-Type": CONTENT_TYPE})


def start_timer() -> None:
    """before_request: the metrics this request counts into (held here, so that an app
    closed while answering still counts it) and when it began."""
    g.metrics = current_app.extensions[EXTENSION].metrics \
        if EXTENSION in current_app.extensions else None
    g.metrics_started = time.monotonic()


def count_request(response):
    """after_request: one request answered, by route template (never the raw path)."""
    metrics, started = g.get("metrics"), g.get("metrics_started")
    if metrics is not None and started is not None:
        rule = request.url_rule
        metrics.request(rule.rule if rule is not None else "unmatched", request.method,
                        response.status_code, time.monotonic() - started)
    return response
