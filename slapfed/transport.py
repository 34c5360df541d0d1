"""HTTP/1.1 for the master client: kept-alive connections, TLS verified against a given
CA (or certifi's, else the system's), a client certificate, separate connect and read
timeouts, and a hook that opens the TCP connection (the outbound policy).

Depends on the standard library only (certifi when installed): a node's cycle and a CLI
command pay for neither requests nor urllib3, nor http.client (whose header parsing
imports the email package: a tenth of a command's start-up). The messages are written
and read here, as http.client writes and reads them: the same request line, Host and
Accept-Encoding headers, the same checks of what is sent (a header name or value, a
method or a target that could split the message raises ValueError, before anything is
sent) and of what is read (at most 100 header lines of 64 KiB; a body by
Content-Length, chunks, or up to the end of the connection; the same keep-alive rules).
Every failure to get an answer raises OSError or HTTPError (``TRANSPORT_ERRORS``) with
the underlying cause (ssl.SSLError carrying the TLS alert a master sent, a timeout, a
reset) as the exception itself or its context; the client maps them to its typed
errors. Safe to share between threads: each request holds one connection of its own.
"""
from __future__ import annotations

import json
import os
import re
import select
import socket
import ssl
import threading
from urllib.parse import urlencode, urlsplit

from . import __version__


class HTTPError(Exception):
    """No usable answer: the master's bytes are not an HTTP/1.x answer, or stopped short."""


class RemoteDisconnected(ConnectionResetError, HTTPError):
    """The connection closed before an answer began (a kept-alive one the master closed)."""


class IncompleteRead(HTTPError):
    """The answer's body stopped short of what its headers announced."""


TRANSPORT_ERRORS = (OSError, HTTPError)
USER_AGENT = f"slapfed/{__version__}"
# What a kept-alive connection the master closed in the meantime raises at once: a
# GET or HEAD on it is sent again on a new connection (never a write).
_STALE = (RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_RETRY_ON_STALE = ("GET", "HEAD")

# -- the messages (what http.client writes and accepts) --------------------------------
_MAX_LINE = 65536
_MAX_HEADERS = 100
_BODY_METHODS = ("PATCH", "POST", "PUT")      # sent with Content-Length: 0 when bodiless
# (sets rather than regular expressions: compiling those cost start-up a millisecond)
_CONTROL_IN_METHOD = frozenset(map(chr, range(0x20)))
_CONTROL = _CONTROL_IN_METHOD | {" ", "\x7f"}
_NOT_FIRST_IN_NAME = frozenset(b": \t\n\r\x0b\x0c")      # http.client: [^:\s][^:\r\n]*
_ILLEGAL_VALUE = rb"\n(?![ \t])|\r(?![ \t\n])"          # a line break not folding the value


def _legal_name(key: bytes) -> bool:
    return bool(key) and key[0] not in _NOT_FIRST_IN_NAME and b":" not in key \
        and b"\r" not in key and b"\n" not in key


def _illegal_value(value: bytes) -> bool:
    return (b"\r" in value or b"\n" in value) and re.search(_ILLEGAL_VALUE, value) is not None


def _request_head(method: str, target: str, host: str, port: int, headers: dict,
                  body: bytes | None) -> bytes:
    """The request line and headers, as http.client writes them; ValueError for a
    method, target, header name or value that could split the message."""
    if not _CONTROL_IN_METHOD.isdisjoint(method):
        raise ValueError(f"method can't contain control characters. {method!r}")
    if not _CONTROL.isdisjoint(target):
        found = next(c for c in target if c in _CONTROL)
        raise ValueError(f"URL can't contain control characters. {target!r} "
                         f"(found at least {found!r})")
    lines = [f"{method} {target} HTTP/1.1".encode("ascii")]
    names = {k.lower() for k in headers}
    if "host" not in names:
        try:
            name = host.encode("ascii")
        except UnicodeEncodeError:
            name = host.encode("idna")
        if b":" in name:
            name = b"[" + name + b"]"
        lines.append(b"Host: " + (name if port == 80 else name + b":%d" % port))
    if "accept-encoding" not in names:
        lines.append(b"Accept-Encoding: identity")
    fields = []
    if "content-length" not in names and "transfer-encoding" not in names:
        if body is not None:
            fields.append(("Content-Length", len(body)))
        elif method.upper() in _BODY_METHODS:
            fields.append(("Content-Length", 0))
    fields += headers.items()
    for key, value in fields:
        key = key.encode("ascii") if isinstance(key, str) else key
        if not _legal_name(key):
            raise ValueError(f"Invalid header name {key!r}")
        if isinstance(value, str):
            value = value.encode("latin-1")
        elif isinstance(value, int):
            value = str(value).encode("ascii")
        if _illegal_value(value):
            raise ValueError(f"Invalid header value {value!r}")
        lines.append(key + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Headers:
    """An answer's headers, in order: ``get(name)`` is the first of that name (any case),
    as http.client's message gives it."""

    def __init__(self, fields: list[tuple[str, str]]):
        self._fields = fields

    def get(self, name: str, default=None):
        name = name.lower()
        for key, value in self._fields:
            if key.lower() == name:
                return value
        return default

    def __getitem__(self, name: str):
        return self.get(name)

    def __contains__(self, name) -> bool:
        return self.get(name) is not None

    def get_all(self, name: str, default=None) -> list | None:
        name = name.lower()
        found = [v for k, v in self._fields if k.lower() == name]
        return found or default

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def keys(self) -> list[str]:
        return [k for k, _ in self._fields]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


def _line(fp) -> bytes:
    line = fp.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise HTTPError("got more than 65536 bytes when reading a line")
    return line


def _read_headers(fp) -> Headers:
    """Header lines up to the blank one (a folded line continues the one above)."""
    fields: list[list[str]] = []
    count = 0
    while True:
        line = _line(fp)
        if line in (b"\r\n", b"\n", b""):
            break
        count += 1
        if count > _MAX_HEADERS:
            raise HTTPError(f"got more than {_MAX_HEADERS} headers")
        text = line.decode("iso-8859-1")
        if text[:1] in (" ", "\t") and fields:
            fields[-1][1] += text
            continue
        name, colon, value = text.partition(":")
        if colon:
            fields.append([name, value.lstrip(" \t")])
    return Headers([(name, value.rstrip("\r\n")) for name, value in fields])


def _read_exactly(fp, size: int) -> bytes:
    data = fp.read(size)
    if len(data) < size:
        raise IncompleteRead(f"IncompleteRead({len(data)} bytes read, "
                             f"{size - len(data)} more expected)")
    return data


def _read_chunks(fp) -> bytes:
    parts = []
    while True:
        line = _line(fp)
        size = line.split(b";", 1)[0]
        try:
            size = int(size, 16)
        except ValueError:
            raise IncompleteRead(f"IncompleteRead({sum(map(len, parts))} bytes read)") \
                from None
        if size == 0:
            break
        parts.append(_read_exactly(fp, size))
        _read_exactly(fp, 2)                        # the CRLF after the chunk
    while _line(fp) not in (b"\r\n", b"\n", b""):  # trailers: ignored
        pass
    return b"".join(parts)


def _read_answer(sock, method: str) -> tuple[int, Headers, bytes, bool]:
    """(status, headers, body, will_close) of the answer coming on ``sock``."""
    with sock.makefile("rb") as fp:
        while True:
            line = _line(fp)
            if not line:
                raise RemoteDisconnected("Remote end closed connection without response")
            try:
                version, status, *_ = line.decode("iso-8859-1").split(None, 2)
            except ValueError:
                raise HTTPError(f"bad status line {line!r}") from None
            if not version.startswith("HTTP/"):
                raise HTTPError(f"bad status line {line!r}")
            try:
                status = int(status)
            except ValueError:
                raise HTTPError(f"bad status line {line!r}") from None
            if not 100 <= status <= 999:
                raise HTTPError(f"bad status line {line!r}")
            if status != 100:
                break
            _read_headers(fp)                           # 100 Continue: the answer follows
        if version in ("HTTP/1.0", "HTTP/0.9"):
            http10 = True
        elif version.startswith("HTTP/1."):
            http10 = False
        else:
            raise HTTPError(f"unknown protocol {version!r}")
        headers = _read_headers(fp)
        connection = (headers.get("connection") or "").lower()
        if http10:
            will_close = not (headers.get("keep-alive") or "keep-alive" in connection
                              or "keep-alive" in (headers.get("proxy-connection") or "")
                              .lower())
        else:
            will_close = "close" in connection
        chunked = (headers.get("transfer-encoding") or "").lower() == "chunked"
        length = None
        if not chunked and headers.get("content-length") is not None:
            try:
                length = int(headers.get("content-length"))
            except ValueError:
                length = None
            if length is not None and length < 0:
                length = None
        if status in (204, 304) or status < 200 or method == "HEAD":
            length, chunked = 0, False
        if not will_close and not chunked and length is None:
            will_close = True
        if chunked:
            body = _read_chunks(fp)
        elif length is None:
            body = fp.read()
        else:
            body = _read_exactly(fp, length)
    return status, headers, body, will_close


# The most a gzip-encoded answer may decompress to (a desired state of thousands of
# partitions is a few MB): a larger one is refused, never held in memory.
MAX_DECODED = 256 * 1024 * 1024


def _gunzip(data: bytes, limit: int = MAX_DECODED) -> bytes:
    """A gzip-encoded body, decoded; HTTPError when it is not gzip or would exceed
    ``limit`` bytes."""
    import zlib
    unpacker = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = unpacker.decompress(data, limit)
    except zlib.error as exc:
        raise HTTPError(f"the answer says gzip but does not decode: {exc}") from None
    if unpacker.unconsumed_tail:
        raise HTTPError(f"the answer decompresses to more than {limit} bytes")
    if not unpacker.eof:
        raise IncompleteRead("the gzip-encoded answer stops short")
    return out


class _Connection:
    """One open connection to the master (``sock`` is None once closed)."""

    def __init__(self, sock):
        self.sock = sock

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()


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
        self._idle: dict[tuple, list[_Connection]] = {}
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
        return _Connection(sock)

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
        message = _request_head(method, target, host, port, sent, body) + (body or b"")
        conn = self._take(pool_key)
        if conn is not None:
            conn.sock.settimeout(timeouts[1])
            try:
                return self._exchange(pool_key, conn, method, message)
            except _STALE:
                if method not in _RETRY_ON_STALE:
                    raise
        conn = self._connect(scheme, host, port, timeouts, verify, cert)
        return self._exchange(pool_key, conn, method, message)

    def _exchange(self, pool_key, conn, method, message: bytes) -> Response:
        """Send ``message`` (head and body in one write, as http.client does: no wait
        on a delayed ACK) and read the whole answer."""
        try:
            cut_off = None
            try:
                conn.sock.sendall(message)
            except (BrokenPipeError, ConnectionResetError) as exc:
                cut_off = exc     # the master may have answered (413, a TLS alert): read it
            try:
                status, headers, content, will_close = _read_answer(conn.sock, method)
            except BaseException as exc:
                if cut_off is not None and exc.__context__ is None:
                    exc.__context__ = cut_off
                raise
        except BaseException:
            conn.close()
            raise
        if will_close or cut_off is not None:
            conn.close()
        else:
            self._give_back(pool_key, conn)
        if content and (headers.get("content-encoding") or "").strip().lower() == "gzip":
            content = _gunzip(content)
        return Response(status, headers, content)

    def get(self, url: str, **kw) -> Response:
        return self.request("GET", url, **kw)
