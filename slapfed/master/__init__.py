"""The master's web layer: Flask application factory, /api/v1 blueprints, error handler.

Depends on services, store and core; nothing below imports it. ``server`` runs it
under gunicorn.
"""
from .app import close_app, create_app

__all__ = ["create_app", "close_app"]
