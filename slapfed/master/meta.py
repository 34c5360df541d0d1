"""Routes about the master itself: health and the OpenAPI document.

Depends on Flask, store and the sibling request module. The document is the one
master.openapi generated from this app's routes when the app was built (master.app).
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from .. import __version__
from ..services import read
from .request import connection, settings

blueprint = Blueprint("meta", __name__)


@blueprint.get("/health")
def health():
    generation = read(connection(), lambda app: app.generation)
    return jsonify({"status": "ok", "generation": generation, "version": __version__,
                    "name": settings().here})


@blueprint.get("/openapi.json")
def openapi():
    return jsonify(current_app.extensions[OPENAPI])


OPENAPI = "slapfed.openapi"      # app.extensions key: the app's OpenAPI document
