"""Every request the master answers gets a request id and one access line.

Depends on Flask (hooks only) and slapfed.logs. The id is the caller's ``X-Request-Id``
when it is sane (1-64 characters of ``A-Za-z0-9._:-``), else a fresh one; it is answered
in the ``X-Request-Id`` header, carried in error bodies (app.render_error), and added to
every line logged while the request is served. The access line (logger
``slapfed.access``, INFO; DEBUG for 304 Not Modified, the answer to a node's poll that
finds nothing new) says who (the principal the certificate proved, ``admin/local``
in development mode, ``anonymous`` without one), what (method, path; query values are
redacted unless known harmless) and the outcome (status, error code, duration). Bodies
are never logged: they hold tokens, CSRs and instance parameters.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from urllib.parse import parse_qsl, quote

from flask import g

from .. import logs

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_ENVIRON = "slapfed.request_id"
PRINCIPAL_ENVIRON = "slapfed.principal"
ERROR_CODE_ENVIRON = "slapfed.error_code"
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
ANONYMOUS = "anonymous"
REDACTED = "REDACTED"
# Query parameters whose values say what was asked and hold nothing secret.
SHOWN_QUERY = frozenset({"requester", "reference", "state", "status", "since", "wait",
                         "computer_id", "computer_reference", "computer_partition_reference",
                         "computer_partition_id"})
MAX_PATH = 512

log = logging.getLogger(logs.ACCESS)


def request_id_from(header: str | None) -> str:
    """The caller's request id when sane, else a new random one (32 hex digits)."""
    if header and REQUEST_ID_RE.fullmatch(header):
        return header
    return uuid.uuid4().hex


def loggable_path(path: str, query: str = "") -> str:
    """The path as logged: control characters escaped, bounded, query values replaced
    by REDACTED unless their parameter is known harmless (a query may carry a token)."""
    shown = path
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        shown += "?" + "&".join(
            f"{quote(k, safe='')}={quote(v, safe='') if k in SHOWN_QUERY else REDACTED}"
            for k, v in pairs)
    shown = logs.escape_controls(shown)
    return shown if len(shown) <= MAX_PATH else shown[:MAX_PATH] + "..."


class AccessLog:
    """WSGI middleware: the request id in, the header out, the access line at the end
    (once the body has been handed to the server, so the duration covers the answer)."""

    def __init__(self, wsgi_app, enabled: bool = True):
        self.wsgi_app = wsgi_app
        self.enabled = enabled

    def __call__(self, environ, start_response):
        started = time.monotonic()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID_ENVIRON] = request_id
        token = logs.REQUEST_ID.set(request_id)
        who = logs.PRINCIPAL.set(None)
        answered = {}

        def start(status, headers, exc_info=None):
            answered["status"] = status
            headers = [(k, v) for k, v in headers if k.lower() != REQUEST_ID_HEADER.lower()]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, start)
        except BaseException:
            self._log(environ, answered.get("status") or "500", started, request_id)
            raise
        finally:
            logs.PRINCIPAL.reset(who)
            logs.REQUEST_ID.reset(token)
        return _Closing(body, lambda: self._log(environ, answered.get("status") or "500",
                                                started, request_id))

    def _log(self, environ, status: str, started: float, request_id: str) -> None:
        if not self.enabled:
            return
        code = int(str(status).split(" ", 1)[0] or 500)
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        principal = environ.get(PRINCIPAL_ENVIRON) or ANONYMOUS
        method = logs.escape_controls(environ.get("REQUEST_METHOD", "-"))[:16]
        path = loggable_path(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
                             environ.get("QUERY_STRING", ""))
        error = environ.get(ERROR_CODE_ENVIRON)
        fields = {"request_id": request_id, "principal": principal, "method": method,
                  "path": path, "status": code, "duration_ms": duration_ms,
                  "remote": environ.get("REMOTE_ADDR")}
        if error:
            fields["error"] = error
        # 304: a node's poll of an unchanged desired state, every cycle of every node
        log.log(logging.DEBUG if code == 304 else logging.INFO,
                "%s %s %s -> %d%s in %.1f ms [%s]", principal, method, path, code,
                f" {error}" if error else "", duration_ms, request_id, extra=fields)


class _Closing:
    """A response body that runs ``done`` once, when the server has taken its last chunk
    or closes it, whichever comes first."""

    def __init__(self, body, done):
        self.body = body
        self._done = done

    def __iter__(self):
        yield from self.body
        self._finish()

    def _finish(self):
        done, self._done = self._done, None
        if done is not None:
            done()

    def close(self):
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()


def principal() -> str:
    """Who is calling (inside a request): the principal, or ``anonymous``."""
    identity = g.get("identity")
    return identity.principal if identity is not None else ANONYMOUS


def _note_principal() -> None:
    """Before the view (after the guard): lines logged from here on name the caller."""
    identity = g.get("identity")
    if identity is not None:
        logs.PRINCIPAL.set(identity.principal)


def _remember_principal(_exc=None) -> None:
    """Teardown: leave the caller's principal for the access line."""
    from flask import request
    identity = g.get("identity")
    if identity is not None:
        request.environ[PRINCIPAL_ENVIRON] = identity.principal


def install(app, enabled: bool = True) -> None:
    """Wrap the app (outermost, so the id exists before anything else runs). Call it
    after auth.install: its hook reads the identity the guard found."""
    app.before_request(_note_principal)
    app.teardown_request(_remember_principal)
    app.wsgi_app = AccessLog(app.wsgi_app, enabled)


def current_request_id() -> str | None:
    """The id of the request being served (inside a request), else None."""
    from flask import has_request_context, request
    if not has_request_context():
        return None
    return request.environ.get(REQUEST_ID_ENVIRON)


def note_error(code: str) -> None:
    """Record the error code the answer carries, for the access line."""
    from flask import has_request_context, request
    if has_request_context():
        request.environ[ERROR_CODE_ENVIRON] = code
