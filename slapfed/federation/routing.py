"""Routing: serve a request here, or delegate it to a peer master — a pure decision.

Depends on core (errors, sla) only: no I/O, no model. The inputs are the request, this
master's delegation policy (data), what it knows of its peers (their summaries, as
plain values) and a callable answering whether a local computer would fit. The output
is a Route with the ordered peers to try and the reasons, which ``--dry-run`` shows.

Policy document (JSON, or the same shape in TOML)::

    {"auto": true,                      # no local fit -> a peer whose summary fits
     "rules": [{"release": "*/cdn/*",   # glob on the release URL (optional)
                "software_type": "default", "shared": true,   # optional
                "when": "always",       # or "no-local-fit"
                "to": ["b", "c"],       # peers in order: later ones are fallbacks
                "fallback": true}]}     # later peers while no earlier one accepted it

The SLA key ``master`` names the master that must serve an alternative: this one, a
peer, or a master a peer reaches (multi-hop).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from ..core.errors import InvalidInput
from ..core import wire
from ..core.sla import CAPABILITY_KEY, LOCALITY_KEYS, MASTER_KEY, Alternative, Sla
from ..core.states import DEFAULT_TRUST, DELEGATING_TRUSTS

ALWAYS = "always"
NO_LOCAL_FIT = "no-local-fit"
WHEN = (ALWAYS, NO_LOCAL_FIT)
assert WHEN == wire.POLICY_WHEN, "core.wire.PolicyRule declares these"
MAX_RULES = wire.MAX_POLICY_RULES

LOCAL = "local"
DELEGATE = "delegate"


# -- the policy -----------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    index: int
    to: tuple
    release: str | None = None
    software_type: str | None = None
    shared: bool | None = None
    when: str = ALWAYS
    fallback: bool = True
    description: str = ""

    def matches(self, software_url: str, software_type: str, shared: bool) -> bool:
        return ((self.release is None or fnmatch.fnmatchcase(software_url, self.release))
                and (self.software_type is None or self.software_type == software_type)
                and (self.shared is None or self.shared == shared))

    def describe(self) -> str:
        parts = [f"release {self.release}" if self.release else "",
                 f"type {self.software_type}" if self.software_type else "",
                 ("shared" if self.shared else "not shared") if self.shared is not None else ""]
        what = ", ".join(p for p in parts if p) or "every request"
        return f"rule {self.index + 1} ({what}; {self.when})"

    def to_json(self) -> dict:
        out = {"to": list(self.to), "when": self.when, "fallback": self.fallback}
        for key in ("release", "software_type", "shared"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class Policy:
    rules: tuple = ()
    auto: bool = True

    def to_json(self) -> dict:
        return {"auto": self.auto, "rules": [r.to_json() for r in self.rules]}


DEFAULT_POLICY = Policy()


def parse_policy(doc) -> Policy:
    """Validate a policy document (core.wire.DelegationPolicy); InvalidInput lists every
    problem. Only an object is a policy (``null`` is not a way to reset it: send ``{}``)."""
    if not isinstance(doc, dict):
        raise InvalidInput("invalid delegation policy: must be an object with 'rules' and "
                           "'auto'", [{"field": "policy", "problem": "must be an object"}])
    body = wire.parse(wire.DelegationPolicy, doc)
    return Policy(tuple(Rule(i, r.to, r.release, r.software_type, r.shared, r.when,
                             True if r.fallback is None else r.fallback, r.description or "")
                        for i, r in enumerate(body.rules)), body.auto)


# -- what is known of peers -----------------------------------------------------------
@dataclass(frozen=True)
class Offer:
    """What one master serves: where its computers are, what they have, what it hosts."""

    master: str
    hops: int                                    # from the deciding master: a peer is 1
    localities: tuple = ()                       # ({"host", "lan", "country", "continent"},)
    software: frozenset = frozenset()            # release URLs supplied to its computers
    hosting: frozenset = frozenset()             # (url, software type) of running hosts
    capabilities: frozenset = frozenset()
    free_partitions: int = 0

    def fits(self, alt: Alternative, software_url: str, software_type: str,
             shared: bool) -> str | None:
        """None when this master could serve the alternative, else why not."""
        if shared:
            if (software_url, software_type) not in self.hosting:
                return f"hosts no {software_type} instance of the release"
        elif software_url not in self.software:
            return "is not supplied the release"
        elif self.free_partitions <= 0:
            return "has no free partition"
        wanted = {k: alt.get(k) for k in LOCALITY_KEYS if alt.get(k) is not None}
        if wanted and not any(all(loc.get(k) == v for k, v in wanted.items())
                              for loc in self.localities):
            return "has no computer at " + ", ".join(f"{k}={v}" for k, v in wanted.items())
        cap = alt.get(CAPABILITY_KEY)
        if cap is not None and cap not in self.capabilities:
            return f"offers no capability {cap}"
        return None


@dataclass(frozen=True)
class PeerView:
    name: str
    paired: bool = True
    trust: str = DEFAULT_TRUST
    cost: float = 0.0
    latency_ms: float | None = None
    unreachable: str | None = None               # the last error, while it lasts
    offers: tuple = ()                           # Offer of the peer itself, then its reach

    @classmethod
    def from_summary(cls, name: str, summary: dict | None, **kw) -> "PeerView":
        """A peer's view from its summary (GET /federation/summary), hops counted from
        here: the peer is 1 hop away, what it reaches one more."""
        summary = summary or {}
        offers = [offer_of(name, 1, summary)]
        for entry in summary.get("reach") or ():
            if isinstance(entry, dict) and isinstance(entry.get("master"), str):
                offers.append(offer_of(entry["master"], 1 + int(entry.get("hops") or 1), entry))
        return cls(name, offers=tuple(offers), **kw)


def offer_of(master: str, hops: int, doc: dict) -> Offer:
    hosting = frozenset(tuple(h) for h in doc.get("hosting") or () if len(h) == 2)
    return Offer(master, hops, tuple(dict(loc) for loc in doc.get("localities") or ()),
                 frozenset(doc.get("software") or ()), hosting,
                 frozenset(doc.get("capabilities") or ()), int(doc.get("free_partitions") or 0))


# -- deciding -------------------------------------------------------------------------
@dataclass(frozen=True)
class RouteRequest:
    software_url: str
    software_type: str
    shared: bool
    sla: Sla
    chain: tuple = ()          # masters the request crossed, this one last
    max_depth: int = 8


@dataclass(frozen=True)
class Route:
    kind: str                  # LOCAL or DELEGATE
    peers: tuple = ()          # DELEGATE: the peer to call, then the fallbacks in order
    reason: str = ""
    considered: tuple = field(default=(), compare=False)   # ({"peer", "verdict"},)

    @property
    def delegated(self) -> bool:
        return self.kind == DELEGATE

    def to_json(self) -> dict:
        return {"kind": self.kind, "peers": list(self.peers), "reason": self.reason,
                "considered": [dict(c) for c in self.considered]}


def route(req: RouteRequest, here: str, policy: Policy, peers: Sequence[PeerView],
          local_fit: Callable[[], str | None]) -> Route:
    """Where ``req`` is served. ``local_fit()`` answers None when a local computer (or a
    local host, for a shared request) would take it, else why not; it is called at most
    once, and only when the answer matters."""
    considered: list[dict] = []
    usable = _usable(req, here, peers, considered)
    fit_cache: list = []

    def no_local_fit() -> str | None:
        if not fit_cache:
            fit_cache.append(local_fit())
        return fit_cache[0]

    alternatives = req.sla.alternatives
    named = [alt.get(MASTER_KEY) for alt in alternatives]
    if all(n is not None and n != here for n in named):
        ranked = _explicit(req, alternatives, usable, considered)
        if ranked:
            return Route(DELEGATE, ranked, f"the SLA names master {named[0]}; "
                         f"{ranked[0]} {'is' if ranked[0] == named[0] else 'reaches'} it",
                         tuple(considered))
        return Route(LOCAL, (), f"the SLA names master {', '.join(dict.fromkeys(named))}, "
                     "which no usable peer reaches", tuple(considered))

    for rule in policy.rules:
        if not rule.matches(req.software_url, req.software_type, req.shared):
            continue
        targets = [p for p in rule.to if p in usable]
        for p in rule.to:
            if p not in usable and not any(c["peer"] == p for c in considered):
                considered.append({"peer": p, "verdict": "not a peer of this master"})
        if not targets:
            considered.append({"peer": "-", "verdict": f"{rule.describe()} matches, but none "
                               "of its peers can be used"})
            continue
        if rule.when == NO_LOCAL_FIT:
            why = no_local_fit()
            if why is None:
                return Route(LOCAL, (), f"{rule.describe()} matches, and a local computer "
                             "fits", tuple(considered))
            reason = f"{rule.describe()}: no local fit ({why})"
        else:
            reason = f"{rule.describe()} sends it to {targets[0]}"
        ranked = tuple(targets if rule.fallback else targets[:1])
        for p in ranked:
            considered.append({"peer": p, "verdict": "chosen" if p == ranked[0] else "fallback"})
        return Route(DELEGATE, ranked, reason, tuple(considered))

    if not policy.auto or not usable:
        return Route(LOCAL, (), "served here" + ("" if policy.auto else
                                                 " (automatic delegation is off)"),
                     tuple(considered))
    why = no_local_fit()
    if why is None:
        return Route(LOCAL, (), "a local computer fits", tuple(considered))
    ranked = _automatic(req, alternatives, usable, here, considered)
    if not ranked:
        return Route(LOCAL, (), f"no local fit ({why}) and no peer fits either",
                     tuple(considered))
    return Route(DELEGATE, ranked, f"no local fit ({why}); {ranked[0]} fits",
                 tuple(considered))


def _usable(req: RouteRequest, here: str, peers: Iterable[PeerView],
            considered: list) -> dict:
    usable = {}
    deep = len(req.chain) >= req.max_depth
    for p in peers:
        if p.name == here or p.name in req.chain:
            verdict = "already crossed by the request (a loop)"
        elif not p.paired:
            verdict = "not paired (no identity there yet)"
        elif p.trust not in DELEGATING_TRUSTS:
            verdict = f"trust {p.trust} does not allow delegation"
        elif deep:
            verdict = (f"hop limit: the request already crossed {len(req.chain)} masters "
                       f"(limit {req.max_depth})")
        else:
            usable[p.name] = p
            continue
        considered.append({"peer": p.name, "verdict": verdict})
    return usable


def _rank_key(peer: PeerView, hops: int):
    return (hops, peer.unreachable is not None, peer.cost,
            peer.latency_ms if peer.latency_ms is not None else float("inf"), peer.name)


def _explicit(req, alternatives, usable: dict, considered: list) -> tuple:
    """Peers reaching the masters the alternatives name, alternative by alternative."""
    ranked: list[str] = []
    for alt in alternatives:
        target = alt.get(MASTER_KEY)
        found = []
        for p in usable.values():
            hops = min((o.hops for o in p.offers if o.master == target), default=None)
            if p.name == target:
                hops = 1
            if hops is None:
                considered.append({"peer": p.name, "verdict": f"does not reach {target}"})
            else:
                found.append((_rank_key(p, hops), p.name))
        ranked.extend(n for _k, n in sorted(found) if n not in ranked)
    return tuple(ranked)


def _automatic(req, alternatives, usable: dict, here: str, considered: list) -> tuple:
    """Peers whose summaries fit, for the first alternative any peer fits."""
    for alt in alternatives:
        if alt.relative:
            continue            # relative keys name instances of this master only
        found = []
        for p in usable.values():
            best, why = None, None
            for offer in p.offers:
                if offer.master == here:
                    continue
                miss = offer.fits(alt, req.software_url, req.software_type, req.shared)
                if miss is None:
                    best = offer.hops if best is None else min(best, offer.hops)
                elif why is None:
                    why = f"{offer.master} {miss}"
            if best is None:
                considered.append({"peer": p.name, "verdict": why or "offers nothing"})
            else:
                found.append((_rank_key(p, best), p.name, best))
        if found:
            found.sort()
            for key, name, hops in found:
                considered.append({"peer": name, "verdict": f"fits {alt.describe()} "
                                                            f"({hops} hop{'s' * (hops > 1)})"})
            return tuple(name for _k, name, _h in found)
    return ()
