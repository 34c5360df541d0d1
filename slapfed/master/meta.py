"""Routes about the master itself: health and the OpenAPI document.

Depends on Flask, store and the sibling app/openapi modules.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from .. import __version__
from ..services import read
from .request import connection, runtime, settings
from .openapi import openapi_document

blueprint = Blueprint("meta", __name__)


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
    return jsonify(openapi_document())
