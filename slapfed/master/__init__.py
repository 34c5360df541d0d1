"""The master's web layer: Flask application factory, /api/v1 blueprints, error handler.

Depends on services, store and core; nothing below imports it. ``server`` runs it
under gunicorn; ``runtime_of(app)`` is what the app owns while it runs.
"""
from .app import close_app, create_app, runtime_of

__all__ = ["create_app", "close_app", "runtime_of"]
