"""Topology files (TOML): parse, validate and merge them into one frozen Topology value.

Pure except for reading the files the caller names; depends on core.errors, core.wire and
core.sla (name patterns) and topology.locality. Validation collects every problem of every file.
"""
from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

from ..core.errors import InvalidInput
from ..core.sla import NAME_RE as CAPABILITY_RE
from ..core.wire import ID_RE
from ..core.states import DEFAULT_TRUST, TRUST_LEVELS
from .locality import LEVELS

FORMAT_VERSION = 1
# Site levels, outermost first (locality.LEVELS is innermost first).
SITE_LEVELS = tuple(reversed(LEVELS))          # continent, country, lan, host
CHILD_LEVEL = {"continent": "country", "country": "lan", "lan": "host"}
# Trust of a link between masters (core.states.TRUST_LEVELS), weakest first: observe
# (read each other's state), delegate (also forward instances), full (also replicate).
URL_RE = re.compile(r"^https?://[^\s/]+\S*\Z")

TOP_KEYS = ("version", "description", "sites", "masters", "computers", "links")
MASTER_KEYS = ("name", "url", "site", "description")
COMPUTER_KEYS = ("id", "site", "master", "labels", "capabilities", "partitions",
                 "description")
LINK_KEYS = ("from", "to", "latency_ms", "cost", "trust", "description", "invitation")
INVITATION_KEYS = ("url", "token", "ca_certificate", "peer", "for")
LAN_KEYS = ("hosts", "description")
TITLE = {"continent": "continent", "country": "country", "lan": "LAN", "host": "host"}


# -- value objects ----------------------------------------------------------------
@dataclass(frozen=True)
class Origin:
    """Where something was declared: a file, a key path and, when found, a line."""

    file: str
    key: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}" if self.key else where


@dataclass(frozen=True)
class Site:
    name: str
    level: str                      # continent | country | lan | host
    parent: str | None              # None for continents
    description: str = ""
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Master:
    name: str
    site: str
    url: str | None = None
    description: str = ""
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Computer:
    id: str
    site: str
    master: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    capabilities: tuple[str, ...] = ()
    partitions: int | None = None   # how many partitions the operator expects
    description: str = ""
    origin: Origin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Link:
    a: str
    b: str
    latency_ms: float
    cost: float = 0.0
    trust: str = DEFAULT_TRUST
    description: str = ""
    origin: Origin | None = field(default=None, compare=False)
    invitations: tuple[str, ...] = ()   # invitation files (absolute paths) pairing its ends

    def other(self, name: str) -> str:
        return self.b if name == self.a else self.a


@dataclass(frozen=True)
class Invitation:
    """An invitation file a link names: master ``for_`` may pair with master ``peer`` (the
    one that wrote it with ``slapfed peer invite``) at ``url`` with one-time ``token``."""

    peer: str
    for_: str
    url: str
    ca_certificate: str
    token: str
    link: Link
    path: str


@dataclass(frozen=True)
class Topology:
    """Every file merged: sites by name (names are unique across levels), masters by name,
    computers by id, links in declaration order."""

    files: tuple[str, ...] = ()
    sites: Mapping[str, Site] = field(default_factory=lambda: MappingProxyType({}))
    masters: Mapping[str, Master] = field(default_factory=lambda: MappingProxyType({}))
    computers: Mapping[str, Computer] = field(default_factory=lambda: MappingProxyType({}))
    links: tuple[Link, ...] = ()

    # -- site hierarchy ------------------------------------------------------------
    def locality_of(self, site_name: str) -> dict:
        """{host, lan, country, continent} of a site (levels below it are None)."""
        out = dict.fromkeys(LEVELS)
        name = site_name
        while name is not None:
            site = self.sites[name]
            out[site.level] = site.name
            name = site.parent
        return out

    def children(self, site_name: str | None) -> list[Site]:
        """Sites directly inside ``site_name`` (continents for None), by name."""
        return sorted((s for s in self.sites.values() if s.parent == site_name),
                      key=lambda s: s.name)

    def complete_locality(self, computer_id: str, given: dict) -> tuple[dict, list[dict]]:
        """Fill the outer levels of a registered computer's locality from the topology.

        ``given`` maps levels to names (or None). A computer declared in the topology
        takes its site's locality; a known site name fills the levels around it.
        Returns (locality, problems); problems name every contradiction."""
        out = {lvl: given.get(lvl) for lvl in LEVELS}
        problems: list[dict] = []
        sources: list[tuple[str, dict, str, Origin | None]] = []  # what, locality, field
        declared = self.computers.get(computer_id)
        if declared is not None:
            sources.append((f"computer {computer_id} (declared at site {declared.site!r})",
                            self.locality_of(declared.site), "id", declared.origin))
        for level in LEVELS:
            name = given.get(level)
            if name is None:
                continue
            site = self.sites.get(name)
            if site is None:
                continue
            if site.level != level:
                problems.append({"field": level, "problem": (
                    f"{name!r} is a {TITLE[site.level]} in the topology ({site.origin}), "
                    f"not a {TITLE[level]}")})
                continue
            sources.append((f"{TITLE[level]} {name!r}", self.locality_of(name), level,
                            site.origin))
        for what, loc, fname, origin in sources:
            for level in LEVELS:
                want = loc[level]
                if want is None:
                    continue
                have = out[level]
                if have is None:
                    out[level] = want
                elif have != want:
                    where = f" ({origin})" if origin else ""
                    problems.append({"field": level if given.get(level) else fname,
                                     "problem": f"is {have!r}, but the topology puts {what} "
                                                f"in {TITLE[level]} {want!r}{where}"})
        return out, problems

    @classmethod
    def from_json(cls, doc: dict) -> "Topology":
        """The inverse of to_json (a master's GET /topology answer); trusts its input,
        which a master validated when it read the files."""
        sites = {s["name"]: Site(s["name"], s["level"], s.get("parent"),
                                 s.get("description") or "") for s in doc.get("sites", ())}
        masters = {m["name"]: Master(m["name"], m.get("site") or "", m.get("url"),
                                     m.get("description") or "")
                   for m in doc.get("masters", ())}
        computers = {c["id"]: Computer(c["id"], c["site"], c.get("master"),
                                       MappingProxyType(dict(c.get("labels") or {})),
                                       tuple(c.get("capabilities") or ()),
                                       c.get("partitions"), c.get("description") or "")
                     for c in doc.get("computers", ())}
        links = tuple(Link(ln["from"], ln["to"], float(ln["latency_ms"]),
                           float(ln.get("cost", 0.0)), ln.get("trust", DEFAULT_TRUST),
                           ln.get("description") or "",
                           invitations=tuple(ln.get("invitations") or ()))
                      for ln in doc.get("links", ()))
        return cls(tuple(doc.get("files", ())), MappingProxyType(sites),
                   MappingProxyType(masters), MappingProxyType(computers), links)

    def to_json(self) -> dict:
        return {
            "files": list(self.files),
            "sites": [{"name": s.name, "level": s.level, "parent": s.parent,
                       "description": s.description} for s in self.sites.values()],
            "masters": [{"name": m.name, "url": m.url, "site": m.site,
                         "description": m.description} for m in self.masters.values()],
            "computers": [{"id": c.id, "site": c.site, "master": c.master,
                           "labels": dict(c.labels), "capabilities": list(c.capabilities),
                           "partitions": c.partitions, "description": c.description,
                           "locality": self.locality_of(c.site)}
                          for c in self.computers.values()],
            "links": [{"from": ln.a, "to": ln.b, "latency_ms": ln.latency_ms,
                       "cost": ln.cost, "trust": ln.trust, "description": ln.description,
                       "invitations": list(ln.invitations)}
                      for ln in self.links],
        }


EMPTY = Topology()


# -- reading files ------------------------------------------------------------------
def load(paths: Iterable[str]) -> Topology:
    """Read, validate and merge topology files. Raises InvalidInput listing every problem
    (each detail: file, line when known, key, problem, and ``field`` = "file:line: key")."""
    paths = [str(p) for p in paths]
    sources = []
    problems: list[dict] = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            problems.append(_problem(path, None, "", f"cannot read the file: "
                                                     f"{exc.strerror or exc}"))
            continue
        sources.append((path, raw))
    topo, more = parse(sources)
    if not more:
        more = read_invitations(topo)[1]
    order = {p: i for i, p in enumerate(paths)}
    problems = sorted(problems + more, key=lambda p: (order.get(p["file"], -1), p["line"] or 0))
    if problems:
        n = len(problems)
        first = problems[0]
        files = sorted({p["file"] for p in problems})
        raise InvalidInput(
            f"invalid topology ({n} problem{'s' if n > 1 else ''} in {', '.join(files)}): "
            f"{first['field']}: {first['problem']}", problems)
    return topo


def parse(sources: Iterable[tuple[str, bytes | str]]) -> tuple[Topology, list[dict]]:
    """Validate and merge (name, content) pairs. Returns (topology, problems); the
    topology is only meaningful when there are no problems."""
    v = _Validator()
    v.sources = list(sources)
    for name, content in v.sources:
        v.file(name, content)
    v.resolve()
    order = {name: i for i, (name, _c) in enumerate(v.sources)}
    problems = sorted(v.problems, key=lambda p: (order.get(p["file"], -1), p["line"] or 0))
    topo = Topology(
        files=tuple(v.files),
        sites=MappingProxyType(dict(v.sites)),
        masters=MappingProxyType(dict(v.masters)),
        computers=MappingProxyType(dict(v.computers)),
        links=tuple(v.links))
    return topo, problems


def _problem(file: str, line: int | None, key: str, problem: str) -> dict:
    where = f"{file}:{line}" if line else file
    return {"file": file, "line": line, "key": key,
            "field": f"{where}: {key}" if key else where, "problem": problem}


_SYNTAX_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")
_SYNTAX_EOF = re.compile(r"\(at end of document\)")


class _Validator:
    """Accumulates sites/masters/computers/links across files, and every problem."""

    def __init__(self):
        self.files: list[str] = []
        self.problems: list[dict] = []
        self.sites: dict[str, Site] = {}
        self.masters: dict[str, Master] = {}
        self.computers: dict[str, Computer] = {}
        self.links: list[Link] = []
        self._link_pairs: dict[frozenset, Link] = {}
        self._lines: _LineIndex | None = None
        self._file = ""
        self._refs: list[tuple[str, str, Origin, tuple[str, ...]]] = []

    # -- reporting -----------------------------------------------------------------
    def origin(self, key: str) -> Origin:
        return Origin(self._file, key, self._lines.line_of(key) if self._lines else None)

    def problem(self, key: str, problem: str, origin: Origin | None = None) -> None:
        o = origin or self.origin(key)
        self.problems.append(_problem(o.file, o.line, o.key, problem))

    # -- one file --------------------------------------------------------------------
    def file(self, name: str, content: bytes | str) -> None:
        self.files.append(name)
        self._file = name
        self._lines = None
        if isinstance(content, bytes):
            try:
                content = content.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.problem("", f"is not UTF-8 text ({exc.reason} at byte {exc.start})")
                return
        try:
            doc = tomllib.loads(content)
        except tomllib.TOMLDecodeError as exc:
            msg = str(exc)
            m = _SYNTAX_LINE.search(msg)
            line = int(m.group(1)) if m else (content.count("\n") + 1
                                             if _SYNTAX_EOF.search(msg) else None)
            text = _SYNTAX_LINE.sub("", _SYNTAX_EOF.sub("", msg)).strip()
            col = f" (column {m.group(2)})" if m else ""
            self.problems.append(_problem(name, line, "", f"TOML syntax error: {text}{col}"))
            return
        self._lines = _LineIndex(content)
        self.unknown_keys(doc, "", TOP_KEYS)
        version = doc.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION or isinstance(version, bool):
            self.problem("version", f"must be {FORMAT_VERSION} (the only format version), "
                                    f"got {version!r}")
        self.string(doc, "description", "description")
        sites = doc.get("sites", {})
        if not isinstance(sites, dict):
            self.problem("sites", f"must be a table of continents, got {_kind(sites)}")
        else:
            for cname, body in sites.items():
                self.site(cname, "continent", None, body, f"sites.{_k(cname)}")
        for i, body in enumerate(self.array_of_tables(doc, "masters")):
            self.master(body, f"masters[{i}]")
        for i, body in enumerate(self.array_of_tables(doc, "computers")):
            self.computer(body, f"computers[{i}]")
        for i, body in enumerate(self.array_of_tables(doc, "links")):
            self.link(body, f"links[{i}]")

    # -- generic checks --------------------------------------------------------------
    def unknown_keys(self, body: dict, path: str, known: tuple[str, ...]) -> None:
        for key in body:
            if key not in known:
                full = f"{path}.{_k(key)}" if path else _k(key)
                hint = ""
                if key in LEVELS and "site" in known:
                    hint = (f"; name the innermost site you know instead: "
                            f"site = {body[key]!r}" if isinstance(body[key], str) else "")
                self.problem(full, f"unknown key (known here: {', '.join(known)}){hint}")

    def array_of_tables(self, doc: dict, key: str) -> list[dict]:
        value = doc.get(key, [])
        if not isinstance(value, list):
            self.problem(key, f"must be an array of tables ([[{key}]]), got {_kind(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.problem(f"{key}[{i}]", f"must be a table, got {_kind(item)}")
                out.append({})
            else:
                out.append(item)
        return out

    def string(self, body: dict, key: str, path: str, *, required=False, pattern=None,
               what="") -> str | None:
        if key not in body:
            if required:
                self.problem(path, "is required" + (f" ({what})" if what else ""))
            return None
        value = body[key]
        if not isinstance(value, str):
            self.problem(path, f"must be a string, got {_kind(value)}")
            return None
        if pattern is not None and not pattern.match(value):
            self.problem(path, f"{value!r} is not a valid name (letters, digits, '_', '.', "
                               f"'-'; starting with a letter or digit; at most 64)"
                         if pattern is ID_RE else f"{value!r} does not match "
                                                  f"{pattern.pattern}")
            return None
        return value

    def number(self, body: dict, key: str, path: str, *, required=False, default=None,
               minimum=0.0) -> float | None:
        if key not in body:
            if required:
                self.problem(path, "is required")
            return default
        value = body[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(path, f"must be a number, got {_kind(value)}")
            return default
        if not math.isfinite(value):
            self.problem(path, f"must be a finite number, got {value}")
            return default
        if value < minimum:
            self.problem(path, f"must be >= {minimum:g}, got {value:g}")
            return default
        return float(value)

    # -- sites -----------------------------------------------------------------------
    def site(self, name: str, level: str, parent: str | None, body, path: str) -> None:
        if not ID_RE.match(name):
            self.problem(path, f"{name!r} is not a valid {TITLE[level]} name (letters, digits, "
                               "'_', '.', '-'; at most 64)")
            return
        if not isinstance(body, dict):
            what = ("a LAN table (with hosts = [...])" if level == "lan"
                    else f"a table of {TITLE[CHILD_LEVEL[level]]}s")
            hint = (" (hosts belong to a LAN: [sites.<continent>.<country>.<lan>] "
                    "hosts = [...])" if name == "hosts" else "")
            self.problem(path, f"must be {what}, got {_kind(body)}{hint}")
            return
        if level == "lan":
            self.unknown_keys(body, path, LAN_KEYS)
        description = self.string(body, "description", f"{path}.description") or ""
        if not self.add_site(Site(name, level, parent, description, self.origin(path))):
            return
        if level == "lan":
            hosts = body.get("hosts", [])
            if not isinstance(hosts, list):
                self.problem(f"{path}.hosts", f"must be an array of host names, "
                                              f"got {_kind(hosts)}")
                return
            seen = set()
            for i, host in enumerate(hosts):
                hpath = f"{path}.hosts[{i}]"
                if not isinstance(host, str):
                    self.problem(hpath, f"must be a host name (a string), got {_kind(host)}")
                    continue
                if host in seen:
                    self.problem(hpath, f"host {host!r} is listed twice in LAN {name!r}")
                    continue
                seen.add(host)
                if not ID_RE.match(host):
                    self.problem(hpath, f"{host!r} is not a valid host name")
                    continue
                self.add_site(Site(host, "host", name, "", self.origin(hpath)))
            return
        for child, cbody in body.items():
            if child == "description":
                continue
            self.site(child, CHILD_LEVEL[level], name, cbody, f"{path}.{_k(child)}")

    def add_site(self, site: Site) -> bool:
        """Record a site; the same site declared again (same level and parent) merges.
        False when the declaration contradicts an earlier one."""
        known = self.sites.get(site.name)
        if known is None:
            self.sites[site.name] = site
            return True
        if known.level != site.level:
            self.problem(site.origin.key, f"{site.name!r} is already a {known.level} "
                                          f"({known.origin}); site names are unique across "
                                          f"levels", site.origin)
            return False
        if known.parent != site.parent:
            outer = SITE_LEVELS[SITE_LEVELS.index(site.level) - 1]
            level, outer = TITLE[site.level], TITLE[outer]
            self.problem(site.origin.key,
                         f"{level} {site.name!r} is already in {outer} {known.parent!r} "
                         f"({known.origin}); a {level} belongs to one {outer}",
                         site.origin)
            return False
        if site.description and not known.description:
            self.sites[site.name] = Site(known.name, known.level, known.parent,
                                         site.description, known.origin)
        return True

    # -- masters, computers, links ---------------------------------------------------
    def master(self, body: dict, path: str) -> None:
        self.unknown_keys(body, path, MASTER_KEYS)
        name = self.string(body, "name", f"{path}.name", required=True, pattern=ID_RE)
        url = self.string(body, "url", f"{path}.url")
        if url is not None and not URL_RE.match(url):
            self.problem(f"{path}.url", f"must be an http:// or https:// URL, got {url!r}")
        site = self.string(body, "site", f"{path}.site", required=True,
                           what="the site the master runs at")
        description = self.string(body, "description", f"{path}.description") or ""
        if name is None:
            return
        origin = self.origin(path)
        known = self.masters.get(name)
        if known is not None:
            self.problem(f"{path}.name", f"master {name!r} is already declared "
                                         f"({known.origin})")
            return
        if site is not None:
            self._refs.append(("site", site, self.origin(f"{path}.site"), ()))
        self.masters[name] = Master(name, site or "", url, description, origin)

    def computer(self, body: dict, path: str) -> None:
        self.unknown_keys(body, path, COMPUTER_KEYS)
        cid = self.string(body, "id", f"{path}.id", required=True, pattern=ID_RE)
        site = self.string(body, "site", f"{path}.site", required=True,
                           what="the host, LAN, country or continent it is in")
        master = self.string(body, "master", f"{path}.master")
        labels = body.get("labels", {})
        if not isinstance(labels, dict):
            self.problem(f"{path}.labels", f"must be a table of strings "
                                           f"(labels = {{ disk = \"ssd\" }}), got {_kind(labels)}")
            labels = {}
        for k, val in labels.items():
            if not isinstance(val, str):
                self.problem(f"{path}.labels.{_k(k)}", f"must be a string, got {_kind(val)}")
        caps = body.get("capabilities", [])
        if not isinstance(caps, list):
            self.problem(f"{path}.capabilities", f"must be an array of strings, got "
                                                 f"{_kind(caps)}")
            caps = []
        clean_caps = []
        for i, cap in enumerate(caps):
            cpath = f"{path}.capabilities[{i}]"
            if not isinstance(cap, str) or not CAPABILITY_RE.match(cap):
                self.problem(cpath, f"must be a capability name such as \"gpu\" "
                                    f"({CAPABILITY_RE.pattern}), got {cap!r}")
            elif cap in clean_caps:
                self.problem(cpath, f"capability {cap!r} is listed twice")
            else:
                clean_caps.append(cap)
        partitions = None
        if "partitions" in body:
            raw = body["partitions"]
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                self.problem(f"{path}.partitions", f"must be a whole number >= 0 (how many "
                                                   f"partitions to expect), got {raw!r}")
            else:
                partitions = raw
        description = self.string(body, "description", f"{path}.description") or ""
        if cid is None:
            return
        known = self.computers.get(cid)
        if known is not None:
            self.problem(f"{path}.id", f"computer {cid!r} is already declared ({known.origin})")
            return
        if site is not None:
            self._refs.append(("site", site, self.origin(f"{path}.site"), ()))
        if master is not None:
            self._refs.append(("master", master, self.origin(f"{path}.master"), ()))
        self.computers[cid] = Computer(
            cid, site or "", master,
            MappingProxyType({k: v for k, v in sorted(labels.items()) if isinstance(v, str)}),
            tuple(clean_caps), partitions, description, self.origin(path))

    def link(self, body: dict, path: str) -> None:
        self.unknown_keys(body, path, LINK_KEYS)
        a = self.string(body, "from", f"{path}.from", required=True)
        b = self.string(body, "to", f"{path}.to", required=True)
        latency = self.number(body, "latency_ms", f"{path}.latency_ms", required=True)
        cost = self.number(body, "cost", f"{path}.cost", default=0.0)
        trust = body.get("trust", DEFAULT_TRUST)
        if trust not in TRUST_LEVELS:
            self.problem(f"{path}.trust", f"must be one of {', '.join(TRUST_LEVELS)}, "
                                          f"got {trust!r}")
            trust = None
        description = self.string(body, "description", f"{path}.description") or ""
        invitations = self.invitation_paths(body, f"{path}.invitation")
        if a is None or b is None:
            return
        if a == b:
            self.problem(f"{path}.to", f"a link joins two different masters; both ends are "
                                       f"{a!r}")
            return
        for end, key in ((a, "from"), (b, "to")):
            self._refs.append(("master", end, self.origin(f"{path}.{key}"), ()))
        pair = frozenset((a, b))
        known = self._link_pairs.get(pair)
        if known is not None:
            self.problem(path, f"masters {a!r} and {b!r} are already linked ({known.origin}); "
                               "declare each link once (links go both ways)")
            return
        if latency is None or trust is None:
            return
        link = Link(a, b, latency, cost, trust, description, self.origin(path), invitations)
        self._link_pairs[pair] = link
        self.links.append(link)

    def invitation_paths(self, body: dict, path: str) -> tuple[str, ...]:
        """``invitation``: a file, or an array of files (one per direction), relative to
        the topology file."""
        raw = body.get("invitation", [])
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
            self.problem(path, "must be the path of an invitation file (from slapfed peer "
                               f"invite --out), or an array of them, got {_kind(raw)}")
            return ()
        if len(items) > 2:
            self.problem(path, f"a link has at most two invitations (one per direction), "
                               f"got {len(items)}")
            return ()
        here = os.path.dirname(os.path.abspath(self._file)) if self._file else os.getcwd()
        return tuple(os.path.normpath(os.path.join(here, x)) for x in items)

    # -- references, once every file is read ----------------------------------------
    def resolve(self) -> None:
        for kind, name, origin, _ in self._refs:
            table = self.sites if kind == "site" else self.masters
            if name in table:
                continue
            known = sorted(table)
            hint = _closest(name, known)
            listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            self.problem(origin.key, f"unknown {kind} {name!r}"
                                     + (f" (did you mean {hint!r}?)" if hint else "")
                                     + (f"; known {kind}s: {listed}" if known
                                        else f"; no {kind} is declared"), origin)


def read_invitations(topo: Topology, here: str | None = None
                     ) -> tuple[list[Invitation], list[dict]]:
    """Read the invitation files the links name (only those for master ``here`` when
    given). Returns (invitations, problems); each problem names the link and the file.
    An invitation must be for one end of its link from the other, and its URL is the
    inviting master's as the topology declares it, when it does."""
    found: list[Invitation] = []
    problems: list[dict] = []
    for link in topo.links:
        o = link.origin or Origin("", "links")
        key = f"{o.key}.invitation"
        for path in link.invitations:
            def bad(problem: str) -> None:
                problems.append(_problem(o.file, o.line, key, f"{path}: {problem}"))
            try:
                with open(path, "rb") as f:
                    doc = json.loads(f.read().decode("utf-8"))
            except OSError as exc:
                bad(f"cannot read the invitation: {exc.strerror or exc}")
                continue
            except (ValueError, UnicodeDecodeError) as exc:
                bad(f"is not an invitation (JSON): {exc}")
                continue
            if not isinstance(doc, dict):
                bad("is not an invitation (a JSON object from slapfed peer invite)")
                continue
            missing = [k for k in INVITATION_KEYS if not isinstance(doc.get(k), str)
                       or not doc.get(k)]
            if missing:
                bad(f"lacks {', '.join(missing)} (write it with slapfed peer invite NAME "
                    "--out FILE)")
                continue
            ends = {link.a, link.b}
            if {doc["peer"], doc["for"]} != ends:
                bad(f"invites {doc['for']!r} to {doc['peer']!r}, but the link joins "
                    f"{link.a!r} and {link.b!r}")
                continue
            if here is not None and doc["for"] != here:
                continue
            if not doc["ca_certificate"].lstrip().startswith("-----BEGIN CERTIFICATE-----"):
                bad("its ca_certificate is not a PEM certificate")
                continue
            declared = topo.masters.get(doc["peer"])
            url = (declared.url if declared is not None and declared.url else doc["url"])
            found.append(Invitation(doc["peer"], doc["for"], url.rstrip("/"),
                                    doc["ca_certificate"], doc["token"], link, path))
    directions = {}
    for inv in found:
        if (inv.for_, inv.peer) in directions:
            o = inv.link.origin or Origin("", "links")
            problems.append(_problem(o.file, o.line, f"{o.key}.invitation",
                                     f"two invitations for {inv.for_!r} to {inv.peer!r}"))
        directions[(inv.for_, inv.peer)] = inv
    return found, problems


def _closest(name: str, known: list[str]) -> str | None:
    import difflib
    found = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return found[0] if found else None


def _kind(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return type(value).__name__


_BARE = re.compile(r"^[A-Za-z0-9_-]+\Z")


def _k(key: str) -> str:
    """A key as it appears in a path: bare when possible, else quoted."""
    return key if _BARE.match(key) else '"' + key.replace('"', '\\"') + '"'


class _LineIndex:
    """Best-effort line numbers of TOML keys and table headers, by key path.

    Paths look like ``computers[3].site`` or ``sites.europe.fr.par-1.hosts``: headers
    ``[a.b]`` and ``[[a]]`` (counted from 0) set the current table, ``k = v`` adds a key.
    Lines inside multi-line strings are skipped."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")

    def __init__(self, text: str):
        self.lines: dict[str, int] = {}
        counts: dict[str, int] = {}
        table = ""
        in_string = None
        for n, line in enumerate(text.splitlines(), 1):
            if in_string:
                if in_string in line:
                    in_string = None
                continue
            m = self._HEADER.match(line)
            if m and "=" not in line.split("]")[0]:
                key = ".".join(_k(p) for p in _split_key(m.group(2)))
                if m.group(1) == "[[":
                    i = counts.get(key, 0)
                    counts[key] = i + 1
                    table = f"{key}[{i}]"
                else:
                    table = self._indexed(key, counts)
                self._register(table, n)
                continue
            m = self._KEY.match(line)
            if m:
                key = ".".join(_k(p) for p in _split_key(m.group(1)))
                self._register(f"{table}.{key}" if table else key, n)
                rest = line[m.end():]
                for quote in ('"""', "'''"):
                    if rest.count(quote) == 1:
                        in_string = quote

    def _register(self, path: str, n: int) -> None:
        """Record ``path`` and every enclosing path not seen yet (implicit tables)."""
        self.lines.setdefault(path, n)
        for i, ch in enumerate(path):
            if ch in ".[":
                self.lines.setdefault(path[:i], n)

    @staticmethod
    def _indexed(key: str, counts: dict[str, int]) -> str:
        """``[computers.labels]`` after ``[[computers]]`` belongs to the last element."""
        parts = key.split(".")
        for cut in range(len(parts), 0, -1):
            head = ".".join(parts[:cut])
            if head in counts:
                rest = ".".join(parts[cut:])
                return f"{head}[{counts[head] - 1}]" + (f".{rest}" if rest else "")
        return key

    def line_of(self, path: str) -> int | None:
        """The line of ``path``, else of its nearest enclosing key or table."""
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                return self.lines.get(path)
            path = path[:cut]
        return None


def _split_key(raw: str) -> list[str]:
    parts, buf, quote = [], "", None
    for ch in raw:
        if quote:
            if ch == quote:
                quote = None
            else:
                buf += ch
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            parts.append(buf.strip())
            buf = ""
        else:
            buf += ch
    parts.append(buf.strip())
    return parts
