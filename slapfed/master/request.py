"""What a view reads of its request: the app's runtime (for write use cases, and its
settings, CA and topology), the ZODB connection (one per request, closed at teardown) and
the JSON body (decoded once, within core.bodies' limits, declared ``application/json``).

Depends on Flask, core (bodies, errors) and master.runtime.
"""
from __future__ import annotations

from flask import Response, current_app, g, request

from ..core import bodies, errors
from ..core.bodies import printable
from ..services.runtime import MasterSettings
from .runtime import EXTENSION, MasterRuntime


def runtime() -> MasterRuntime:
    """The app's runtime, to run use cases with; MasterStopping once the app is closed
    (its server stops)."""
    rt = current_app.extensions.get(EXTENSION)
    if rt is None or rt.closed:
        raise errors.MasterStopping("the master stopped while answering; ask again once "
                                    "it is back")
    return rt


def settings() -> MasterSettings:
    """The app's typed settings (they never change while it runs)."""
    return runtime().settings


def connection():
    """The request's ZODB connection, opened on first use and closed at teardown."""
    conn = g.get("zodb_connection")
    if conn is None:
        conn = g.zodb_connection = runtime().db.open()
    return conn


def accepts_gzip() -> bool:
    """Whether the caller takes a gzip-encoded answer (Accept-Encoding, with q-values)."""
    return request.accept_encodings["gzip"] > 0


def document_response(renderer, computer_id: str, serial: int, body: bytes, mimetype: str,
                      etag: str | None = None) -> Response:
    """A rendered node document (services.desired): gzip-compressed once per serial by
    ``renderer`` when it is large and the caller takes gzip, else as it is. ``etag``
    (quoted) becomes weak on the compressed answer: the same serial in another coding."""
    headers = {"Vary": "Accept-Encoding"}
    packed = renderer.compressed(computer_id, serial, body) if accepts_gzip() else None
    if packed is not None:
        body = packed
        headers["Content-Encoding"] = "gzip"
    if etag is not None:
        headers["ETag"] = etag if packed is None else "W/" + etag
    return Response(body, status=200, mimetype=mimetype, headers=headers)


def close_connection(_exc=None) -> None:
    conn = g.pop("zodb_connection", None)
    if conn is not None and conn.opened is not None:   # None: the DB closed it already
        conn.transaction_manager.abort()
        conn.close()


_NO_BODY = object()
WRITE_METHODS = ("POST", "PUT", "PATCH")
FORM_BLUEPRINTS = ("slap",)   # SLAP takes forms (master.slapform reads and checks them)
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


def check_write_body() -> None:
    """Every write (POST, PUT, PATCH) carries a JSON object: checked for each route, also
    one whose view would not read it (after the guard: who is asking comes first)."""
    if request.method in WRITE_METHODS and request.endpoint in current_app.view_functions \
            and request.blueprint not in FORM_BLUEPRINTS:
        json_body()
