"""The service of profiles/cdn: a caching reverse proxy in front of many sites.

Owns the site table (built from a host partition's shared instances), the cache policy
and the proxy itself. The top half is pure (no I/O: table building, routing,
Cache-Control decisions, the in-memory cache); the bottom half does I/O: the table file
it follows, and the aiohttp adapter, imported lazily so the recipe and the tests of the
pure half need no event loop.
Depends on the standard library, and on aiohttp in ``make_app``/``serve`` only.

``slapfed-cdn-front --address A --port P --table FILE [--cache-ttl S] [--usage-file F]``
serves (with --usage-file, counting per site: see SiteUsage and UsageLog);
``slapfed-cdn-front --check URL [--table FILE] [--wait S]`` is the promise (exit 0 =
healthy; with --table, only once the front serves that file's table).
A site may have a purge key (the host makes one per site and publishes it, sealed, to
the site's owner only): ``POST /.well-known/slapfed-cdn/purge/<site>`` with header
``X-Purge-Key: <key>`` drops the site's cached responses. The table holds only the key's
SHA-256 digest.
The front follows its table file while it runs: it looks at the file's identity (inode,
size, modification time) every ``--reload-interval`` seconds (0.5), when asked for its
health, and on SIGHUP, and loads it when it changed. A new table keeps the cached
responses of the sites whose route (backend, domain) did not change and drops those of
sites removed or changed; a file that is missing or does not parse leaves the table in
place (the reason is logged and shown by the health answer). The node restarts a
service only when its wrapper changed, and a new table leaves the wrapper alone:
connections in flight and the cache survive a new site. The slapfed:cdn-sites recipe
writes the file atomically (a temporary file renamed into place), so a half-written
table is never read.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import re
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

HEALTH_PATH = "/.well-known/slapfed-cdn"
PURGE_PATH = HEALTH_PATH + "/purge/"
PURGE_HEADER = "X-Purge-Key"
SITE_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
                       r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
DEFAULT_TTL = 60.0
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
DEFAULT_ENTRY_BYTES = 8 * 1024 * 1024
DEFAULT_RELOAD_INTERVAL = 0.5
CACHEABLE_METHODS = ("GET", "HEAD")
# RFC 9110 7.6.1: never forwarded, in either direction
HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade"))


# -- the site table ------------------------------------------------------------------
@dataclass(frozen=True)
class Site:
    """One routed site: reached at /<name>/ and by Host <name> or <domain>."""

    name: str
    backend: str
    instance_id: str
    reference: str = ""
    domain: str | None = None
    purge_digest: str | None = None      # SHA-256 (hex) of the site's purge key

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.name,) + ((self.domain,) if self.domain else ())

    def to_json(self) -> dict:
        out = {"backend": self.backend, "instance": self.instance_id,
               "reference": self.reference, "domain": self.domain}
        if self.purge_digest:
            out["purge_digest"] = self.purge_digest
        return out

    def purges_with(self, key: str | None) -> bool:
        """Whether ``key`` is this site's purge key (a site without one has none)."""
        if not self.purge_digest or not key:
            return False
        given = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return hmac.compare_digest(given, self.purge_digest)


def purge_keys(shared_instances: list, previous: dict | None, make) -> dict:
    """{shared instance id: purge key}: the one each shared instance had (``previous``),
    else a new one from ``make()``; the keys of instances gone are forgotten."""
    previous = previous or {}
    ids = sorted({str(e.get("id", "")) for e in shared_instances if isinstance(e, dict)})
    return {sid: previous[sid] if isinstance(previous.get(sid), str) and previous[sid]
            else make() for sid in ids if sid}


@dataclass(frozen=True)
class _Claim:
    """What one shared instance asks for, or why it cannot be served."""

    instance_id: str
    reference: str
    site: str | None
    backend: str | None = None
    domain: str | None = None
    error: str | None = None


def _claim(entry: dict) -> _Claim:
    sid = str(entry.get("id", ""))
    reference = str(entry.get("reference") or sid)
    params = entry.get("parameters") or {}
    if not isinstance(params, dict):
        return _Claim(sid, reference, None, error="its parameters are not a JSON object")
    site = params.get("site", reference)
    if not isinstance(site, str) or not SITE_RE.match(site):
        given = "parameter 'site'" if "site" in params else "the reference (the default site)"
        return _Claim(sid, reference, None, error=(
            f"{given} {site!r} is not a site name: use 1 to 63 lowercase letters, digits "
            "and '-' (not at either end)"))
    backend = params.get("backend")
    if backend is None or backend == "":
        return _Claim(sid, reference, site, error=(
            "parameter 'backend' is required: the http(s) URL of the site's origin server"))
    problem = _backend_problem(backend)
    if problem:
        return _Claim(sid, reference, site, error=problem)
    domain = params.get("domain")
    if domain in (None, ""):
        domain = None
    elif not isinstance(domain, str) or not DOMAIN_RE.match(domain.lower().rstrip(".")):
        return _Claim(sid, reference, site, error=(
            f"parameter 'domain' {domain!r} is not a host name"))
    else:
        domain = domain.lower().rstrip(".")
    return _Claim(sid, reference, site, backend, domain)


def _backend_problem(backend) -> str | None:
    if not isinstance(backend, str):
        return f"parameter 'backend' must be a URL string, got {json.dumps(backend)[:60]}"
    try:
        parts = urlsplit(backend)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"backend {backend!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"backend {backend!r} is not an http(s) URL with a host"
    if parts.query or parts.fragment or any(c.isspace() for c in backend):
        return f"backend {backend!r} must be a base URL, without query, fragment or spaces"
    return None


def build_sites(shared_instances: list, front_url: str,
                previous: dict | None = None, keys: dict | None = None) -> tuple[dict, dict]:
    """The site table and each shared instance's connection parameters.

    ``shared_instances``: ``[{"id", "reference", "parameters"}]`` as the node passes
    them; ``front_url``: the proxy's base URL (ending with /); ``previous``: {site name:
    instance id} of the table in place, so that a site keeps the shared instance that
    had it (a newcomer asking for a taken name or domain gets an error, never the site).
    Others are served in id order. ``keys``: {instance id: purge key} (see purge_keys):
    a served site's connection gets its ``purge-key``, the table only its digest.
    Returns ({name: Site}, {instance id: connection}).
    """
    keys = keys or {}
    previous = previous or {}
    claims = [_claim(e) for e in shared_instances if isinstance(e, dict)]
    claims.sort(key=lambda c: (previous.get(c.site) != c.instance_id, c.instance_id))
    sites: dict[str, Site] = {}
    owner_of: dict[str, str] = {}          # host name -> site name
    connections: dict[str, dict] = {}
    for c in claims:
        error = c.error
        if error is None:
            hosts = (c.site,) + ((c.domain,) if c.domain else ())
            taken = next((h for h in hosts if h in owner_of), None)
            if taken is not None:
                what = "site" if taken == c.site else "domain"
                error = (f"{what} {taken!r} is already served for another shared "
                         f"instance; choose another {what}")
        if error is not None:
            connections[c.instance_id] = {"error": error, **({"site": c.site} if c.site else {})}
            continue
        key = keys.get(c.instance_id)
        digest = hashlib.sha256(key.encode()).hexdigest() if key else None
        site = Site(c.site, c.backend, c.instance_id, c.reference, c.domain, digest)
        sites[site.name] = site
        for h in site.hosts:
            owner_of[h] = site.name
        connections[c.instance_id] = {"url": f"{front_url}{site.name}/", "site": site.name,
                                      "backend": site.backend,
                                      **({"domain": site.domain} if site.domain else {}),
                                      **({"purge-key": key} if key else {})}
    return sites, connections


def table_json(sites: dict) -> dict:
    return {"sites": {name: site.to_json() for name, site in sorted(sites.items())}}


def sites_from_json(data) -> dict:
    """The sites of a table file's JSON; ValueError saying what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("sites"), dict):
        raise ValueError('a site table is a JSON object {"sites": {name: {...}}}')
    out = {}
    for name, raw in data["sites"].items():
        if not SITE_RE.match(name) or not isinstance(raw, dict) \
                or _backend_problem(raw.get("backend")):
            raise ValueError(f"site {name!r} of the table is malformed")
        digest = raw.get("purge_digest")
        out[name] = Site(name, raw["backend"], str(raw.get("instance") or ""),
                         str(raw.get("reference") or ""), raw.get("domain") or None,
                         digest if isinstance(digest, str) and digest else None)
    return out


def owners(sites: dict) -> dict:
    """{site name: instance id}: the ``previous`` argument of ``build_sites``."""
    return {name: site.instance_id for name, site in sites.items()}


def route_of(site: Site) -> tuple:
    """What a cached response of the site depends on: where it comes from, and the host
    name it answers to."""
    return (site.backend, site.domain)


def stale_sites(old: dict, new: dict) -> set:
    """Names of the sites of table ``old`` whose cached responses a switch to table
    ``new`` must drop: those removed, and those whose route changed."""
    return {name for name, site in old.items()
            if name not in new or route_of(new[name]) != route_of(site)}


def table_digest(raw: bytes) -> str:
    """The identity of a table file's content (the health answer's ``table``)."""
    return hashlib.sha256(raw).hexdigest()


# -- routing -------------------------------------------------------------------------
def host_name(host_header: str | None) -> str:
    """The host of a Host header, lowercased, without port or final dot."""
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


class Routes:
    """Which site serves a request: its host name (the site's name or domain) first,
    then the path prefix /<site>/ (which is removed before asking the backend)."""

    def __init__(self, sites: dict):
        self.sites = dict(sites)
        self.by_host = {h: site for site in self.sites.values() for h in site.hosts}

    def __len__(self) -> int:
        return len(self.sites)

    def route(self, host_header: str | None, raw_path: str):
        """(site, path and query to ask its backend), or None when no site serves it."""
        site = self.by_host.get(host_name(host_header))
        if site is not None:
            return site, raw_path
        path, sep, query = raw_path.partition("?")
        first, _, rest = path.lstrip("/").partition("/")
        site = self.sites.get(first)
        if site is None:
            return None
        return site, "/" + rest + sep + query


def upstream_url(site: Site, path: str) -> str:
    return site.backend.rstrip("/") + path


# -- cache policy --------------------------------------------------------------------
def _values(headers, name: str) -> list[str]:
    """Every value of header ``name`` in ``headers`` ((name, value) pairs)."""
    name = name.lower()
    return [v for k, v in headers if k.lower() == name]


def cache_control(headers) -> dict:
    """Cache-Control directives of (name, value) pairs: {directive: argument or None}."""
    out = {}
    for value in _values(headers, "cache-control"):
        for part in value.split(","):
            key, sep, arg = part.strip().partition("=")
            if key:
                out[key.strip().lower()] = arg.strip().strip('"') if sep else None
    return out


def _seconds(value) -> float | None:
    try:
        return float(int(value))
    except (TypeError, ValueError):
        return None


def request_may_use_cache(headers) -> bool:
    """False when the client asks to bypass stored responses (no-cache, no-store,
    max-age=0, Pragma: no-cache)."""
    cc = cache_control(headers)
    if "no-cache" in cc or "no-store" in cc or _seconds(cc.get("max-age", "x")) == 0:
        return False
    return not any("no-cache" in v.lower() for v in _values(headers, "pragma"))


def response_ttl(method: str, status: int, request_headers, response_headers,
                 default_ttl: float, now: float) -> float:
    """How long a shared cache may keep this response (0: do not store).

    Only GET/HEAD 200 responses may be stored; never with no-store, private, no-cache,
    Vary: *, or Set-Cookie, nor for a request with Authorization unless the response
    says public or s-maxage; s-maxage, then max-age, then Expires give the lifetime,
    else ``default_ttl``."""
    if method not in CACHEABLE_METHODS or status != 200:
        return 0.0
    req_cc, cc = cache_control(request_headers), cache_control(response_headers)
    if "no-store" in req_cc or any(k in cc for k in ("no-store", "private", "no-cache")):
        return 0.0
    if any(v.strip() == "*" for v in _values(response_headers, "vary")) \
            or _values(response_headers, "set-cookie"):
        return 0.0
    if _values(request_headers, "authorization") and "public" not in cc \
            and "s-maxage" not in cc:
        return 0.0
    for directive in ("s-maxage", "max-age"):
        if directive in cc:
            return max(0.0, _seconds(cc[directive]) or 0.0)
    expires = _values(response_headers, "expires")
    if expires:
        try:
            when = parsedate_to_datetime(expires[0]).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return 0.0            # an invalid Expires means already expired (RFC 9111)
        return max(0.0, when - now)
    return max(0.0, default_ttl)


def vary_names(response_headers) -> tuple[str, ...]:
    names = set()
    for value in _values(response_headers, "vary"):
        names.update(n.strip().lower() for n in value.split(",") if n.strip())
    return tuple(sorted(names))


# -- the cache -----------------------------------------------------------------------
@dataclass
class Entry:
    status: int
    headers: list                 # (name, value) pairs, hop-by-hop headers removed
    body: bytes
    stored_at: float
    ttl: float
    vary: dict = field(default_factory=dict)   # request header -> value it was stored for

    def fresh(self, now: float) -> bool:
        return now < self.stored_at + self.ttl

    def matches(self, request_headers) -> bool:
        return all(", ".join(_values(request_headers, name)) == value
                   for name, value in self.vary.items())


class ResponseCache:
    """Stored responses by (site, path and query), least recently used evicted first,
    at most ``max_bytes`` of bodies and ``max_entry`` bytes each. One variant per key
    (the last stored); an entry only serves requests matching its Vary headers."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES,
                 max_entry: int = DEFAULT_ENTRY_BYTES):
        self.max_bytes = max_bytes
        self.max_entry = max_entry
        self.entries: OrderedDict = OrderedDict()
        self.size = 0

    def get(self, key, request_headers, now: float) -> Entry | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if not entry.fresh(now):
            self.drop(key)
            return None
        if not entry.matches(request_headers):
            return None
        self.entries.move_to_end(key)
        return entry

    def put(self, key, entry: Entry, response_headers=(), request_headers=()) -> bool:
        if len(entry.body) > self.max_entry or len(entry.body) > self.max_bytes:
            return False
        entry.vary = {n: ", ".join(_values(request_headers, n))
                      for n in vary_names(response_headers)}
        self.drop(key)
        self.entries[key] = entry
        self.size += len(entry.body)
        while self.size > self.max_bytes:
            self.drop(next(iter(self.entries)))
        return True

    def drop(self, key) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.size -= len(entry.body)

    def drop_sites(self, names) -> int:
        """Drop every entry of the sites ``names`` (keys are (method, site, path)); how
        many were dropped."""
        names = set(names)
        doomed = [k for k in self.entries if isinstance(k, tuple) and len(k) > 1
                  and k[1] in names]
        for key in doomed:
            self.drop(key)
        return len(doomed)


# -- accounting per site ---------------------------------------------------------------
# What the front counts per site, keyed by the site's shared instance id, and appends to
# its partition's usage-file as {"resource", "quantity", "shared"} lines: the node sums
# them per interval, the master accounts them to that shared instance and its owner.
USAGE_RESOURCES = ("x-requests", "x-bytes-served", "x-cache-hits", "x-upstream-errors")
REQUESTS, BYTES, HITS, UPSTREAM_ERRORS = range(4)
DEFAULT_USAGE_FLUSH = 5.0
MAX_ACCOUNTED = 10_000          # shared instances counted between two flushes
# slapfed.core.wire.ID_RE (an instance id), not imported: wire brings pydantic, a third of
# a second at every start of the front and of its promise (a test keeps them equal)
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def accountable(instance_id: str) -> bool:
    """Whether units may name this shared instance (the node takes only ids)."""
    return bool(instance_id) and ID_RE.match(instance_id) is not None


class SiteUsage:
    """Counters per shared instance id since the last flush: requests served (each
    request routed to the site, whatever its answer), response body bytes sent, cache
    hits, and upstream errors (502/504 answers, answers cut because the backend failed).

    Memory is bounded: at most ``limit`` ids at once (a site table is far smaller);
    a request of one more id is not counted and ``dropped`` says how many were not.
    A site without an accountable id (an older table) is not counted either."""

    __slots__ = ("counts", "limit", "dropped")

    def __init__(self, limit: int = MAX_ACCOUNTED):
        self.counts: dict[str, list[int]] = {}
        self.limit = limit
        self.dropped = 0

    def _counter(self, instance_id: str) -> list[int] | None:
        c = self.counts.get(instance_id)
        if c is None:
            if len(self.counts) >= self.limit or not accountable(instance_id):
                return None
            c = self.counts[instance_id] = [0, 0, 0, 0]
        return c

    def record(self, instance_id: str, body_bytes: int, hit: bool,
               upstream_error: bool) -> None:
        """One request served for the site of ``instance_id``."""
        c = self._counter(instance_id)
        if c is None:
            self.dropped += 1
            return
        c[REQUESTS] += 1
        c[BYTES] += body_bytes
        c[HITS] += hit
        c[UPSTREAM_ERRORS] += upstream_error

    def take(self) -> dict:
        """The counts since the last take ({id: [requests, bytes, hits, errors]}); the
        counters start again from nothing."""
        counts, self.counts = self.counts, {}
        return counts

    def give_back(self, counts: dict) -> None:
        """Counts a flush could not write, added back for the next one (so nothing is
        lost while the usage-file cannot be written, within the same bound)."""
        for sid, values in counts.items():
            c = self._counter(sid)
            if c is None:
                self.dropped += values[REQUESTS]
                continue
            for i, v in enumerate(values):
                c[i] += v


def usage_lines(counts: dict) -> list[tuple[str, int, bytes]]:
    """The usage-file lines of ``counts`` (what SiteUsage.take gave): (id, resource
    index, line), by id then resource; a zero quantity gives no line."""
    out = []
    for sid in sorted(counts):
        if not accountable(sid):
            continue
        for i, quantity in enumerate(counts[sid]):
            if quantity:
                line = json.dumps({"resource": USAGE_RESOURCES[i], "quantity": quantity,
                                   "shared": sid}, separators=(", ", ": "))
                out.append((sid, i, line.encode() + b"\n"))
    return out


def unwritten(lines: list[tuple[str, int, bytes]], written: int) -> tuple[dict, bool]:
    """After a write of the concatenated ``lines`` stopped at byte ``written`` (a full
    disk): (the counts of the lines not written whole, to write again; whether a line
    was cut, so the next write first ends it with a line break: the node then skips
    that partial line as bad, and its units come again in full)."""
    counts: dict[str, list[int]] = {}
    offset = 0
    torn = False
    for sid, i, line in lines:
        end = offset + len(line)
        if end > written:
            torn = torn or offset < written
            counts.setdefault(sid, [0, 0, 0, 0])[i] += json.loads(line)["quantity"]
        offset = end
    return counts, torn


def forward_headers(headers) -> list:
    """(name, value) pairs minus hop-by-hop headers and those Connection names."""
    named = {t.strip().lower() for v in _values(headers, "connection") for t in v.split(",")}
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() not in named]


def error_body(code: str, message: str) -> bytes:
    """slapfed's one error shape, for the proxy's own answers."""
    return json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()


# -- the table file --------------------------------------------------------------------
log = logging.getLogger("slapfed.cdn")


class TableFile:
    """The site table file, as the front last loaded it: ``poll`` gives the new sites
    when the file changed and parses, and None otherwise (keep the table in place).

    A change is seen by the file's identity (inode, size, modification time), so a poll
    of an unchanged file costs one stat; a file replaced by an equal one is no change.
    ``error`` says why the file in place is not the table served (None when it is)."""

    def __init__(self, path: str):
        self.path = path
        self.signature = None       # identity of the file last read (or "missing")
        self.digest: str | None = None
        self.error: str | None = None

    def load(self) -> dict:
        """The sites of the file now; ValueError saying why when it is unusable."""
        sites = self.poll(force=True)
        if sites is None:
            raise ValueError(self.error or "unchanged")
        return sites

    def poll(self, force: bool = False) -> dict | None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self.signature != "missing":
                # buildout removes the file for a moment when it rewrites it: not alarming
                self.signature = "missing"
                self.error = f"cannot read {self.path}: {exc.strerror}"
                log.info("site table: %s; the table in place stays", self.error)
            return None
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self.signature and not force:
            return None
        self.signature = signature
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
            sites = sites_from_json(json.loads(raw))
        except (OSError, ValueError) as exc:
            self.error = f"cannot use {self.path}: {getattr(exc, 'strerror', None) or exc}"
            log.warning("site table: %s; the table in place stays", self.error)
            return None
        digest = table_digest(raw)
        self.error = None
        if digest == self.digest and not force:
            return None
        self.digest = digest
        return sites


# -- the usage-file --------------------------------------------------------------------
class UsageLog:
    """Appends what ``usage`` counted to the partition's usage-file, one batch per
    ``flush``: every line of a batch in one write on a descriptor opened with O_APPEND
    (never following a symlink), so a batch lands whole after whatever else was
    appended. A write that fails (a full disk, a file or directory that is missing or
    not writable) never fails a request: its counts are given back to ``usage`` and go
    with the next flush; a write cut short keeps the lines written whole, ends the cut
    one at the next write (the node skips it as a bad line) and writes its units again.
    Each kind of failure is logged once until a write succeeds."""

    def __init__(self, path: str, usage: SiteUsage):
        self.path = path
        self.usage = usage
        self.torn = False         # the last write cut a line: end it first
        self.error: str | None = None
        self.lines = 0            # lines written since the start
        self.dropped_logged = 0

    def flush(self) -> bool:
        """Write what was counted since the last flush; False when it could not be
        written (it stays counted)."""
        if self.usage.dropped != self.dropped_logged:
            log.warning("usage: %d request(s) not counted (more than %d sites at once, or "
                        "a site without a shared instance id)",
                        self.usage.dropped - self.dropped_logged, self.usage.limit)
            self.dropped_logged = self.usage.dropped
        counts = self.usage.take()
        lines = usage_lines(counts)
        if not lines:
            return True
        lead = b"\n" if self.torn else b""
        data = lead + b"".join(line for _, _, line in lines)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            try:
                written = os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            self.usage.give_back(counts)
            self._failed(f"cannot append to {self.path}: {exc.strerror or exc}")
            return False
        if written < len(lead):
            self.usage.give_back(counts)
            self._failed(f"cannot append to {self.path}: the write was cut short")
            return False
        rest, self.torn = unwritten(lines, written - len(lead))
        self.lines += len(lines) - sum(1 for c in rest.values() for q in c if q)
        if rest:
            self.usage.give_back(rest)
            self._failed(f"cannot append to {self.path}: the write was cut short")
            return False
        if self.error is not None:
            log.info("usage: %s again", self.path)
            self.error = None
        return True

    def _failed(self, why: str) -> None:
        if why != self.error:
            log.warning("usage: %s; the counts are kept for the next flush", why)
        self.error = why


# -- the aiohttp adapter ---------------------------------------------------------------
# Request headers the proxy sets itself rather than passing on.
OWN_REQUEST_HEADERS = frozenset(("host", "x-forwarded-for", "x-forwarded-host",
                                 "x-forwarded-proto"))
# Stored headers recomputed when a stored response is served.
RECOMPUTED_ON_HIT = frozenset(("content-length", "age", "x-cache"))


def make_app(sites: dict, default_ttl: float = DEFAULT_TTL, cache: ResponseCache | None = None,
             clock=time.time, timeout: float = 30.0, table: TableFile | None = None,
             reload_interval: float = DEFAULT_RELOAD_INTERVAL, sighup: bool = False,
             usage: SiteUsage | None = None, usage_log: "UsageLog | None" = None,
             usage_flush: float = DEFAULT_USAGE_FLUSH):
    """The aiohttp application proxying to ``sites`` ({name: Site}) with one ``cache``.

    GET responses are stored (HEAD is answered from them too); every other method, and
    whatever the cache policy refuses, goes to the backend each time. With ``table``
    (the file ``sites`` were loaded from), the sites follow the file: it is polled every
    ``reload_interval`` seconds, at each health request, and on SIGHUP with ``sighup``
    (which needs the main thread). Every request routed to a site is counted in
    ``usage`` (a SiteUsage), or in ``usage_log``'s: then the counts are appended to its
    file every ``usage_flush`` seconds, and once more when the app is cleaned up."""
    import asyncio
    import contextlib

    import aiohttp
    from aiohttp import web
    from yarl import URL

    current = {"sites": dict(sites), "routes": Routes(sites)}
    cache = cache if cache is not None else ResponseCache()
    if usage_log is not None:
        usage = usage_log.usage
    session_key = web.AppKey("session", aiohttp.ClientSession)

    def reload(force: bool = False) -> None:
        """Switch to the table file's sites when it changed (see TableFile)."""
        if table is None:
            return
        new = table.poll(force)
        if new is None:
            return
        stale = stale_sites(current["sites"], new)
        dropped = cache.drop_sites(stale)
        added = sorted(set(new) - set(current["sites"]))
        current.update(sites=dict(new), routes=Routes(new))
        log.info("site table %s loaded: %d site(s)%s%s%s", table.path, len(new),
                 f"; new: {', '.join(added)}" if added else "",
                 f"; removed or changed: {', '.join(sorted(stale))}" if stale else "",
                 f"; {dropped} cached response(s) dropped" if dropped else "")

    async def watch_table(app):
        async def poll():
            while True:
                await asyncio.sleep(reload_interval)
                try:
                    reload()
                except Exception:  # the front keeps serving whatever goes wrong here
                    log.exception("site table %s: reload failed", table.path)

        import signal

        loop = asyncio.get_running_loop()
        task = loop.create_task(poll())
        if sighup:
            loop.add_signal_handler(signal.SIGHUP, reload, True)
        yield
        if sighup:
            loop.remove_signal_handler(signal.SIGHUP)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def flush_usage(app):
        async def flusher():
            while True:
                await asyncio.sleep(usage_flush)
                try:
                    usage_log.flush()
                except Exception:  # the front keeps serving whatever goes wrong here
                    log.exception("usage: flushing to %s failed", usage_log.path)

        task = asyncio.get_running_loop().create_task(flusher())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        usage_log.flush()      # after the last request: the app is being cleaned up

    async def client_session(app):
        async with aiohttp.ClientSession(
                auto_decompress=False, trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                              sock_read=timeout)) as session:
            app[session_key] = session
            yield

    def answer(status: int, code: str, message: str):
        return web.Response(status=status, body=error_body(code, message),
                            content_type="application/json")

    async def handle(request: web.Request):
        if request.path == HEALTH_PATH:
            reload()
            body = {"status": "ok", "sites": len(current["routes"]), "pid": os.getpid(),
                    "table": table.digest if table is not None else None}
            if table is not None and table.error:
                body["table_error"] = table.error
            return web.json_response(body)
        if request.path.startswith(PURGE_PATH) and request.method == "POST":
            return purge(request.path[len(PURGE_PATH):], request.headers.get(PURGE_HEADER))
        found = current["routes"].route(request.headers.get("Host"), request.raw_path)
        if found is None:
            return answer(404, "unknown_site", (
                f"no site is served for host {host_name(request.headers.get('Host'))!r} "
                f"and path {request.path!r}: a site is reached at /<site>/ or by its "
                "host name"))
        site, path = found
        served = [0, False, False]      # body bytes sent, a cache hit, an upstream error
        if usage is None:
            return await serve_site(request, site, path, served)
        try:
            return await serve_site(request, site, path, served)
        finally:
            usage.record(site.instance_id, served[0], served[1], served[2])

    def purge(name: str, key: str | None):
        """Drop a site's cached responses, for whoever holds its purge key."""
        site = current["sites"].get(name)
        if site is None or not site.purges_with(key):
            return answer(403, "forbidden", f"no site {name!r} with that {PURGE_HEADER} "
                          "(a site's purge key is in its connection parameters)")
        dropped = cache.drop_sites({name})
        log.info("site %s: %d cached response(s) purged", name, dropped)
        return web.json_response({"site": name, "purged": dropped})

    async def serve_site(request, site: Site, path: str, served: list):
        req_headers = list(request.headers.items())
        key = ("GET", site.name, path)
        if request.method in CACHEABLE_METHODS and request_may_use_cache(req_headers):
            entry = cache.get(key, req_headers, clock())
            if entry is not None:
                headers = [(k, v) for k, v in entry.headers
                           if k.lower() not in RECOMPUTED_ON_HIT]
                headers += [("X-Cache", "HIT"), ("Age", str(int(clock() - entry.stored_at)))]
                served[0], served[1] = 0 if request.method == "HEAD" else len(entry.body), True
                return web.Response(status=entry.status, headers=headers, body=entry.body)
        try:
            return await forward(request, site, path, req_headers, key, served)
        except asyncio.TimeoutError:
            failed = answer(504, "backend_timeout",
                            f"site {site.name!r}: its backend {site.backend} did not answer "
                            f"within {timeout:g}s")
        except aiohttp.ClientError as exc:
            failed = answer(502, "backend_unreachable",
                            f"site {site.name!r}: its backend {site.backend} cannot be "
                            f"reached: {exc or type(exc).__name__}")
        served[0], served[2] = len(failed.body), True
        return failed

    async def forward(request, site: Site, path: str, req_headers: list, key: tuple,
                      served: list):
        drop = OWN_REQUEST_HEADERS | (set() if request.body_exists else {"content-length"})
        headers = [(k, v) for k, v in forward_headers(req_headers) if k.lower() not in drop]
        prior = request.headers.get("X-Forwarded-For")
        peer = request.remote or ""
        headers += [("X-Forwarded-For", f"{prior}, {peer}" if prior else peer),
                    ("X-Forwarded-Host", request.headers.get("Host", "")),
                    ("X-Forwarded-Proto", request.scheme)]
        url = URL(upstream_url(site, path), encoded=True)
        async with request.app[session_key].request(
                request.method, url, headers=headers, allow_redirects=False,
                data=request.content if request.body_exists else None) as upstream:
            return await relay(request, upstream, req_headers, key, site, served)

    async def relay(request, upstream, req_headers: list, key: tuple, site: Site,
                    served: list):
        resp_headers = forward_headers(list(upstream.headers.items()))
        received = clock()        # the entry's age counts from here, not from the store
        ttl = response_ttl(request.method, upstream.status, req_headers, resp_headers,
                           default_ttl, received) if request.method == "GET" else 0.0
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                      headers=resp_headers + [("X-Cache", "MISS")])
        await response.prepare(request)
        kept, size = [], 0
        chunks = upstream.content.iter_any().__aiter__()
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except (aiohttp.ClientError, asyncio.TimeoutError):
                # headers are gone already: cut the connection so the client sees a
                # truncated answer, and store nothing
                served[2] = True
                response.force_close()
                return response
            try:
                await response.write(chunk)
            except ConnectionError:
                # the client left (aiohttp's reset error is also a ClientError: caught
                # here, it is not taken for the backend failing)
                response.force_close()
                return response
            served[0] += len(chunk)
            if ttl > 0 and size <= cache.max_entry:
                kept.append(chunk)
                size += len(chunk)
        # stored before the client sees the end of the answer, so its next request hits;
        # not when a new table changed the site's route meanwhile
        still = current["sites"].get(site.name)
        if ttl > 0 and size <= cache.max_entry and still is not None \
                and route_of(still) == route_of(site):
            cache.put(key, Entry(upstream.status, resp_headers, b"".join(kept), received, ttl),
                      resp_headers, req_headers)
        await response.write_eof()
        return response

    app = web.Application()
    app.cleanup_ctx.append(client_session)
    if table is not None:
        app.cleanup_ctx.append(watch_table)
    if usage_log is not None:
        app.cleanup_ctx.append(flush_usage)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def load_table(path: str) -> tuple[TableFile, dict]:
    """The table file ``path`` and its sites; SystemExit with the reason when unusable."""
    table = TableFile(path)
    try:
        return table, table.load()
    except ValueError as exc:
        raise SystemExit(f"slapfed-cdn-front: {exc}") from None


def serve(address: str, port: int, table_path: str, default_ttl: float, cache_bytes: int,
          reload_interval: float = DEFAULT_RELOAD_INTERVAL, usage_file: str | None = None,
          usage_flush: float = DEFAULT_USAGE_FLUSH) -> None:
    from aiohttp import web

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(name)s %(message)s")
    table, sites = load_table(table_path)
    app = make_app(sites, default_ttl, ResponseCache(cache_bytes), table=table,
                   reload_interval=reload_interval, sighup=True, usage_flush=usage_flush,
                   usage_log=UsageLog(usage_file, SiteUsage()) if usage_file else None)
    print(f"cdn: serving {len(sites)} site(s) ({', '.join(sorted(sites)) or 'none'}) on "
          f"http://{address}:{port}/, following {table_path}"
          + (f", counting usage per site into {usage_file} every {usage_flush:g}s"
             if usage_file else ""), flush=True)
    web.run_app(app, host=address, port=port, print=None, shutdown_timeout=2.0)


def check(url: str, wait: float, table: str | None = None) -> int:
    """GET the health ``url`` until it answers 200 (and, with ``table``, until the front
    serves that file's table) or ``wait`` seconds pass; print why not."""
    import urllib.request

    deadline = time.monotonic() + wait
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        problem = _health_problem(opener, url, table)
        if problem is None:
            print(f"{url} answered 200" + (f", serving the table of {table}" if table else ""))
            return 0
        if time.monotonic() >= deadline:
            print(problem)
            return 1
        time.sleep(0.05)


def _health_problem(opener, url: str, table: str | None) -> str | None:
    import urllib.error

    try:
        with opener.open(url, timeout=2) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url} is unreachable: {getattr(exc, 'reason', exc)}"
    if table is None:
        return None
    try:
        with open(table, "rb") as fh:
            want = table_digest(fh.read())
    except OSError as exc:
        return f"cannot read the site table {table}: {exc.strerror}"
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return f"{url} answered 200 but not with the front's health (a JSON object)"
    if answer.get("table") == want:
        return None
    why = f": {answer['table_error']}" if answer.get("table_error") else ""
    return f"{url} answered 200 but does not serve the table of {table}{why}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="slapfed-cdn-front",
        description="A caching reverse proxy serving the sites of a site table, by host "
                    "name or by path prefix /<site>/; or, with --check, its health check.")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--table", help="the site table (JSON) written by slapfed:cdn-sites, "
                                        "followed while serving")
    parser.add_argument("--cache-ttl", type=float, default=DEFAULT_TTL,
                        help="seconds to keep a response whose backend gives no lifetime")
    parser.add_argument("--cache-bytes", type=int, default=DEFAULT_CACHE_BYTES,
                        help="memory for stored responses")
    parser.add_argument("--reload-interval", type=float, default=DEFAULT_RELOAD_INTERVAL,
                        help="seconds between two looks at the table file")
    parser.add_argument("--usage-file",
                        help="append each site's requests, bytes served, cache hits and "
                             "upstream errors to this file (${partition:usage-file}), "
                             "by shared instance id")
    parser.add_argument("--usage-flush", type=float, default=DEFAULT_USAGE_FLUSH,
                        help="seconds between two appends to --usage-file")
    parser.add_argument("--check", metavar="URL",
                        help="health check mode: GET URL (with --table: until the front "
                             "serves that table)")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="with --check: keep trying for this many seconds")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.check, args.wait, args.table)
    if not args.table:
        parser.error("--table is required to serve")
    if args.reload_interval <= 0:
        parser.error("--reload-interval must be positive")
    if not args.usage_flush > 0:
        parser.error("--usage-flush must be positive")
    serve(args.address, args.port, args.table, args.cache_ttl, args.cache_bytes,
          args.reload_interval, args.usage_file, args.usage_flush)
    return 0


if __name__ == "__main__":
    sys.exit(main())
