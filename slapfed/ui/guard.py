"""Who may talk to the dashboard's local server: pure decisions, no I/O.

Depends on the standard library and core.errors only.

The server holds the user's identity, so anything that can make it answer acts as the
user. Three locks, each checked on every request:

- the per-run token (like Jupyter's), printed in the URL at start: in the query
  (``?token=``) or the ``X-Slapfed-Token`` header; no cookie (a cookie for 127.0.0.1
  goes to every local port, so to any other local server the browser visits);
- the Host header must name the server as it listens (``127.0.0.1:PORT``,
  ``localhost:PORT``, ``[::1]:PORT``): a page whose own name was re-pointed at
  127.0.0.1 (DNS rebinding) sends its own name and is refused;
- a request a browser says comes from another page (``Origin`` of another origin,
  ``Sec-Fetch-Site`` cross-site or same-site: another port of localhost is the same
  site) is refused, and a write must say its origin and carry the token in the header.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from ..core.errors import InvalidInput

TOKEN_PARAM = "token"
TOKEN_HEADER = "X-Slapfed-Token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
SAFE_METHODS = frozenset({"GET", "HEAD"})
# Sec-Fetch-Site values of a request the user made on this page or typed in.
FETCH_SITES_OK = frozenset({"same-origin", "none"})


def new_token() -> str:
    """A fresh random token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def token_ok(expected: str, given: str | None) -> bool:
    """Whether ``given`` is the token, compared in constant time."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0: any free one) -> (host, port).
    Raises InvalidInput naming ``listen``."""
    host, sep, port = (text or "").rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    problem = None
    if not sep or not host:
        problem = "is not of the form HOST:PORT"
    elif not port.isdigit() or int(port) > 65535:
        problem = f"port {port!r} is not a number from 0 to 65535"
    if problem:
        raise InvalidInput(f"--listen {text!r} {problem}", [{"field": "listen",
                                                             "problem": problem}])
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or the name localhost) is this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_port(host: str, port: int) -> str:
    """``host:port`` as a browser writes it in Host and Origin (IPv6 in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host.lower()}:{port}"


def allowed_hosts(listen_host: str, port: int) -> frozenset[str]:
    """The Host values naming this server: the address it listens on, and the loopback
    names when it listens on loopback (or on every address)."""
    names = {host_port(listen_host, port)}
    if is_loopback(listen_host) or listen_host in ("0.0.0.0", "::"):
        names.update(host_port(n, port) for n in LOOPBACK_NAMES)
    return frozenset(names)


def origin_ok(origin: str | None, allowed: frozenset[str]) -> bool:
    """An absent Origin is fine (a navigation, a same-origin read); "null" (a sandboxed
    or file page) and any other origin than this server's are not."""
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme == "http" and not parts.path.strip("/") and \
        parts.netloc.lower() in allowed


def refusal(*, method: str, host: str | None, origin: str | None,
            fetch_site: str | None, token: str | None, header_token: str | None,
            expected: str, allowed: frozenset[str]) -> tuple[int, str] | None:
    """Why this request is refused, as (HTTP status, reason), or None to serve it.

    ``token``: from the query; ``header_token``: from X-Slapfed-Token (required for
    writes, which a form or an image of another page cannot set)."""
    if not host or host.lower() not in allowed:
        return 421, (f"Host {host!r} does not name this dashboard (expected one of "
                     f"{', '.join(sorted(allowed))}): a page of another name pointed at "
                     "this machine is refused")
    if not origin_ok(origin, allowed):
        return 403, f"requests from {origin} are refused: only this dashboard's own page"
    if fetch_site is not None and fetch_site not in FETCH_SITES_OK:
        return 403, f"a {fetch_site} request is refused: only this dashboard's own page"
    if method.upper() not in SAFE_METHODS:
        if origin is None:
            return 403, "a write must come from the dashboard's page (no Origin was sent)"
        if not token_ok(expected, header_token):
            return 403, f"a write needs the token in the {TOKEN_HEADER} header"
        return None
    if not (token_ok(expected, token) or token_ok(expected, header_token)):
        return 403, ("the dashboard's token is missing or wrong: open the URL that "
                     "`slapfed ui` printed")
    return None
