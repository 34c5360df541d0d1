"""The one error handler: every error becomes ``{"error": {"code", "message", "details",
"request_id"}}`` with its HTTP status; only the web layer turns errors into responses.

Depends on Flask/werkzeug, core.errors, master.access (the request's id) and
master.runtime (a request the DB was closed under answers 503 ``master_stopping``).
"""
from __future__ import annotations

import json
import logging
import re

from flask import Response, current_app, request
from werkzeug.exceptions import HTTPException

from ..core import errors
from .access import current_request_id, note_error
from .runtime import EXTENSION

log = logging.getLogger("slapfed.master")


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
