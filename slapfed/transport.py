"""HTTP/1.1 for the master client: kept-alive connections over http.client, TLS verified
against a given CA (or certifi's, else the system's), a client certificate, separate
connect and read timeouts, and a hook that opens the TCP connection (the outbound policy).

Depends on the standard library only (certifi when installed): a node's cycle and a CLI
command pay for neither requests nor urllib3. Every failure to get an answer raises
OSError or http.client.HTTPException (``TRANSPORT_ERRORS``) with the underlying cause
(ssl.SSLError carrying the TLS alert a master sent, a timeout, a reset) as the exception
itself or its context; the client maps them to its typed errors. Safe to share between
threads: each request holds one connection of its own.
"""
from __future__ import annotations

import http.client
import json
import os
import select
import socket
import ssl
import threading
from urllib.parse import urlencode, urlsplit

from . import __version__

TRANSPORT_ERRORS = (OSError, http.client.HTTPException)
USER_AGENT = f"slapfed/{__version__}"
# What a kept-alive connection the master closed in the meantime raises at once: a
# GET or HEAD on it is sent again on a new connection (never a write).
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_RETRY_ON_STALE = ("GET", "HEAD")


class UnusableTLSFiles(Exception):
    """The CA file or the client certificate/key cannot be used: ``field`` ("ca" or
    "cert"), ``path`` and why (``reason``). Raised before any connection is opened."""

    def __init__(self, field: str, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.field, self.path, self.reason = field, path, reason


class Response:
    """A complete answer: ``status_code``, ``headers`` (case-insensitive ``get``),
    ``content`` (bytes), ``text`` and ``json()`` (ValueError when it is not JSON)."""

    def __init__(self, status_code: int, headers, content: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)

    def close(self) -> None:
        """Nothing to release: the body was read whole and the connection handed back."""


def _file_key(path: str | None):
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_mtime_ns, st.st_size)


def _default_cafile() -> str | None:
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def _plain_name(host: str):
    """``host`` as the bytes its IDNA encoding gives, when that is plain ASCII (an address
    or an ASCII name whose labels the codec accepts): the socket and TLS layers then
    skip the codec, whose import (stringprep, unicodedata) costs a command's start-up
    more than its connection. Anything else is left to the codec, as it was."""
    if host.isascii():
        labels = host.split(".")
        if all(0 < len(label) < 64 for label in labels[:-1]) and len(labels[-1]) < 64:
            return host.encode("ascii")
    return host


def _dropped(sock) -> bool:
    """Did the peer close (or send unasked bytes on) an idle kept-alive connection?"""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class Transport:
    """``open_socket(host, port, timeout)``: the TCP connection to use (default
    socket.create_connection); the policy of which addresses may be reached lives there."""

    def __init__(self, open_socket=None):
        self.open_socket = open_socket or (
            lambda host, port, timeout: socket.create_connection((_plain_name(host), port),
                                                                 timeout))
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._contexts: dict[tuple, ssl.SSLContext] = {}

    # -- TLS ---------------------------------------------------------------------------
    def ssl_context(self, verify, cert) -> ssl.SSLContext:
        """The context verifying the master against ``verify`` (a CA file; True: the
        default bundle) and presenting ``cert`` ((certificate, key) or one file holding
        both); made again when one of these files changed (a renewed certificate)."""
        cafile = verify if isinstance(verify, str) else None
        certfile, keyfile = (cert if isinstance(cert, tuple) else (cert, None))
        key = (verify is False, _file_key(cafile), _file_key(certfile), _file_key(keyfile))
        with self._lock:
            ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx
        try:
            if verify is False:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(cafile=cafile or _default_cafile())
        except (OSError, ValueError) as exc:
            raise UnusableTLSFiles("ca", cafile or "the default CA bundle",
                                   getattr(exc, "strerror", None) or str(exc)) from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.post_handshake_auth = True
        if certfile:
            try:
                ctx.load_cert_chain(certfile, keyfile)
            except (OSError, ValueError) as exc:
                raise UnusableTLSFiles("cert", certfile if not keyfile else
                                       f"{certfile} (key {keyfile})",
                                       getattr(exc, "strerror", None) or str(exc)) from exc
        with self._lock:
            if len(self._contexts) >= 8:      # renewed files leave stale entries behind
                self._contexts.clear()
            self._contexts[key] = ctx
        return ctx

    # -- connections -------------------------------------------------------------------
    def _connect(self, scheme, host, port, timeouts, verify, cert):
        connect, read = timeouts
        ctx = self.ssl_context(verify, cert) if scheme == "https" else None   # files first
        sock = self.open_socket(host, port, connect)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as urllib3 does
            sock.settimeout(connect)
            if ctx is not None:
                sock = ctx.wrap_socket(sock, server_hostname=_plain_name(host))
            sock.settimeout(read)
        except BaseException:
            sock.close()
            raise
        conn = http.client.HTTPConnection(host, port, timeout=read)
        conn.sock = sock
        return conn

    def _take(self, pool_key):
        with self._lock:
            idle = self._idle.get(pool_key) or []
            while idle:
                conn = idle.pop()
                if conn.sock is not None and not _dropped(conn.sock):
                    return conn
                conn.close()
        return None

    def _give_back(self, pool_key, conn) -> None:
        with self._lock:
            self._idle.setdefault(pool_key, []).append(conn)

    def close(self) -> None:
        """Close every idle connection (one in use closes when its answer is read)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    # -- requests ----------------------------------------------------------------------
    def request(self, method: str, url: str, *, body: bytes | None = None, params=None,
                headers=None, timeout=(5.0, 30.0), verify=True, cert=None) -> Response:
        """Send one request and read its whole answer. ``timeout``: (connect, read)
        seconds, or one number for both. Raises one of TRANSPORT_ERRORS when no answer
        came; ValueError for a URL that is neither http nor https."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"{url!r} is neither an http nor an https URL")
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        target = parts.path or "/"
        query = [parts.query] if parts.query else []
        if params:
            query.append(urlencode([(k, v) for k, v in params.items() if v is not None],
                                   doseq=True))
        if any(query):
            target += "?" + "&".join(q for q in query if q)
        timeouts = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        sent = {"User-Agent": USER_AGENT, "Accept": "*/*", **(headers or {})}
        pool_key = (scheme, host, port, verify if scheme == "https" else None,
                    cert if scheme == "https" else None)
        conn = self._take(pool_key)
        if conn is not None:
            conn.sock.settimeout(timeouts[1])
            try:
                return self._exchange(pool_key, conn, method, target, body, sent)
            except _STALE:
                if method not in _RETRY_ON_STALE:
                    raise
        conn = self._connect(scheme, host, port, timeouts, verify, cert)
        return self._exchange(pool_key, conn, method, target, body, sent)

    def _exchange(self, pool_key, conn, method, target, body, headers) -> Response:
        try:
            cut_off = None
            try:
                conn.request(method, target, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError) as exc:
                cut_off = exc     # the master may have answered (413, a TLS alert): read it
            try:
                resp = conn.getresponse()
                content = resp.read()
            except BaseException as exc:
                if cut_off is not None and exc.__context__ is None:
                    exc.__context__ = cut_off
                raise
        except BaseException:
            conn.close()
            raise
        if resp.will_close or cut_off is not None:
            conn.close()
        else:
            self._give_back(pool_key, conn)
        return Response(resp.status, resp.headers, content)

    def get(self, url: str, **kw) -> Response:
        return self.request("GET", url, **kw)
