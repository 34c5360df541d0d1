"""Routes about the master itself: health and the OpenAPI document.

Depends on Flask, store and the sibling app/openapi modules.
"""
from __future__ import annotations

from flask import Blueprint, jsonify

from .. import __version__
from ..services import read
from .request import connection, settings
from .openapi import openapi_document

blueprint = Blueprint("meta", __name__)


@blueprint.get("/health")
def health():
    generation = read(connection(), lambda app: app.generation)
    return jsonify({"status": "ok", "generation": generation, "version": __version__,
                    "name": settings().here})


@blueprint.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
