"""The placement pipeline: SLA alternatives in order → filters (refusals counted) → sample → scores → a Decision.

Pure; depends on core (errors, sla) and the placement plugins. It reads a Snapshot and
returns a value; the caller commits it (or only shows it: explain/dry-run). Plugin
order, weights and the sample size are data (DEFAULT_CONFIG, overridable per master).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from ..core.errors import InvalidInput, NoCapacity
from .context import Context, PlacementRequest
from .filters import FILTERS
from .scores import SCORES
from .snapshot import Snapshot

# The default pipeline. Filters run in this order and the first that refuses a
# computer is the one its refusal is counted against:
DEFAULT_CONFIG = {
    "filters": [
        "master",                 # another master's wish: delegated, never placed here
        "lost",                   # a computer declared lost gets nothing at all
        "lease",                  # a computer whose node is not heard from gets nothing new
        "computer_guid",          # an explicit pin: the narrowest wish, answered first
        "host", "lan", "country", "continent",    # absolute locality, innermost first
        "label",                  # operator-defined labels (label.KEY=VALUE)
        "capability",             # tagged partitions serve only what asks for them
        "same_host", "same_lan", "same_country", "same_continent",   # affinity
        "different_host", "different_lan", "different_country", "different_continent",
        "release",                # facts of supply: the release must be supplied,
        "install",                # ...its install there must not have failed,
        "capacity",               # and a fitting partition free (last: it changes most)
    ],
    # Ranking: weighted sum of scores in [0, 1]; ties go to the ring order of the seed.
    "scores": {"closeness": 2.0, "spread": 1.0},
    # How many feasible computers are scored (seeded ring sample, plus candidates near
    # the closeness targets): the decision costs O(sample), not O(computers).
    "sample": 32,
}
TOP = 5


@dataclass(frozen=True)
class PipelineConfig:
    filters: tuple
    scores: tuple          # ((name, weight), ...)
    sample: int

    @classmethod
    def from_json(cls, raw: dict | None) -> "PipelineConfig":
        """Merge ``raw`` over DEFAULT_CONFIG; InvalidInput lists every unknown plugin."""
        merged = dict(DEFAULT_CONFIG)
        problems = []
        for key, value in (raw or {}).items():
            if key not in DEFAULT_CONFIG:
                problems.append({"field": f"placement.{key}", "problem": "unknown setting "
                                 f"(known: {', '.join(DEFAULT_CONFIG)})"})
            else:
                merged[key] = value
        filters = merged["filters"]
        if not isinstance(filters, (list, tuple)):
            problems.append({"field": "placement.filters", "problem": "must be a list"})
            filters = ()
        for name in filters:
            if name not in FILTERS:
                problems.append({"field": "placement.filters", "problem": f"unknown filter "
                                 f"{name!r} (known: {', '.join(FILTERS)})"})
        scores = merged["scores"]
        if not isinstance(scores, dict):
            problems.append({"field": "placement.scores", "problem": "must map names to weights"})
            scores = {}
        for name, weight in scores.items():
            if name not in SCORES:
                problems.append({"field": "placement.scores", "problem": f"unknown score "
                                 f"{name!r} (known: {', '.join(SCORES)})"})
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                problems.append({"field": f"placement.scores.{name}",
                                 "problem": "must be a number >= 0"})
        sample = merged["sample"]
        if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= 10_000:
            problems.append({"field": "placement.sample", "problem": "must be 1..10000"})
        if problems:
            raise InvalidInput(f"invalid placement configuration: {problems[0]['field']} "
                               f"{problems[0]['problem']}", problems)
        return cls(tuple(filters), tuple((n, float(w)) for n, w in scores.items()), sample)


DEFAULT = PipelineConfig.from_json(None)


# -- the decision ------------------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    plugin: str
    reason: str
    count: int
    sample: tuple = ()        # a few refused computer ids (explain mode only)

    def to_json(self) -> dict:
        out = {"plugin": self.plugin, "reason": self.reason, "count": self.count}
        if self.sample:
            out["sample"] = list(self.sample)
        return out


@dataclass(frozen=True)
class Ranked:
    computer: str
    score: float
    scores: tuple         # ((plugin, value), ...)

    def to_json(self) -> dict:
        return {"computer": self.computer, "score": round(self.score, 4),
                "scores": {n: round(v, 4) for n, v in self.scores}}


@dataclass(frozen=True)
class Attempt:
    """One SLA alternative tried: how many computers it considered, who refused how many,
    how many fit, how many were scored and the best of them."""

    index: int
    sla: str                   # the alternative, described
    candidates: int
    refusals: tuple            # (Refusal, ...), pipeline order
    feasible: int
    scored: int = 0
    top: tuple = ()            # (Ranked, ...), best first

    @property
    def fits(self) -> bool:
        return self.feasible > 0

    def to_json(self) -> dict:
        return {"alternative": self.index, "sla": self.sla, "candidates": self.candidates,
                "feasible": self.feasible, "scored": self.scored,
                "refusals": [r.to_json() for r in self.refusals],
                "top": [t.to_json() for t in self.top]}

    def summary(self) -> str:
        if self.candidates == 0:
            return "no computer is registered"
        counts = Counter()
        for r in self.refusals:
            counts[r.reason] += r.count
        parts = []
        for n, (reason, count) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))):
            noun = ("computer" if count == 1 else "computers") + " refused " if n == 0 else ""
            parts.append(f"{count} {noun}by {reason}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Decision:
    """The plan: where the instance goes (or nothing fits), and why."""

    reference: str
    computer: str | None
    partition: str | None
    alternative: int | None    # index of the alternative that matched
    attempts: tuple            # (Attempt, ...) in the order tried

    @property
    def placed(self) -> bool:
        return self.computer is not None

    def message(self) -> str:
        if self.placed:
            attempt = self.attempts[self.alternative]
            return (f"{self.reference} fits on {self.computer}/{self.partition} "
                    f"(alternative {self.alternative + 1}: {attempt.sla}; "
                    f"{attempt.feasible} of {attempt.candidates} computers fit)")
        if len(self.attempts) == 1:
            return f"no partition fits {self.reference}: {self.attempts[0].summary()}"
        return f"no partition fits {self.reference}: " + "; ".join(
            f"[{a.index + 1}] {a.sla}: {a.summary()}" for a in self.attempts)

    def details(self) -> list:
        """The per-plugin breakdown of every attempt (NoCapacity details)."""
        return [{"alternative": a.index, "sla": a.sla, **r.to_json()}
                for a in self.attempts for r in a.refusals]

    def raise_if_refused(self) -> "Decision":
        if not self.placed:
            raise NoCapacity(self.message(), self.details())
        return self

    def to_json(self) -> dict:
        return {"reference": self.reference, "placed": self.placed,
                "computer": self.computer, "partition": self.partition,
                "alternative": self.alternative, "message": self.message(),
                "attempts": [a.to_json() for a in self.attempts]}


# -- deciding ----------------------------------------------------------------------------
def decide(snapshot: Snapshot, request: PlacementRequest, config: PipelineConfig = DEFAULT,
           explain: bool = False, exclude: frozenset = frozenset()) -> Decision:
    """Try the SLA's alternatives in order; the first with a feasible computer wins.

    ``exclude`` lists computers not to choose (the caller found them stale).
    ``explain`` adds a few refused computer ids per reason. Never raises for lack of
    room: the Decision says so (``raise_if_refused``)."""
    attempts = []
    for index, alternative in enumerate(request.sla.alternatives):
        ctx = Context(request, alternative, snapshot)
        attempt, choice = _attempt(ctx, index, config, explain, exclude)
        attempts.append(attempt)
        if choice is not None:
            computer, partition = choice
            return Decision(request.reference, computer, partition, index, tuple(attempts))
    return Decision(request.reference, None, None, None, tuple(attempts))


def _attempt(ctx: Context, index: int, config: PipelineConfig, explain: bool, exclude):
    snap = ctx.snapshot
    total = len(snap)
    ids = None                      # None = every computer, else the set still feasible
    refusals = []
    for name in config.filters:
        plugin = FILTERS[name]
        for term in plugin.terms(ctx):
            before = total if ids is None else len(ids)
            kept = term.narrow(snap, ids)
            refused = before - len(kept)
            if refused:
                sample = ()
                if explain:
                    gone = (snap.all_ids if ids is None else ids) - kept
                    sample = tuple(sorted(gone)[:3])
                refusals.append(Refusal(name, term.reason, refused, sample))
            ids = kept
    if exclude:
        ids = (snap.all_ids if ids is None else ids) - exclude
    feasible = total if ids is None else len(ids)
    if feasible == 0:
        return Attempt(index, ctx.alternative.describe(), total, tuple(refusals), 0), None
    # Ranking: a seeded ring sample, plus what score plugins propose; each scored once.
    seed = ctx.request.seed
    pool = dict.fromkeys(snap.ring_sample(ids, seed, config.sample))
    weights = [(SCORES[name], weight) for name, weight in config.scores]
    for plugin, weight in weights:
        if weight:
            pool.update(dict.fromkeys(plugin.propose(ctx, ids, config.sample)))
    ranked = []
    for cid in pool:
        view = snap.views[cid]
        parts = tuple((p.name, p.score(view, ctx)) for p, _w in weights)
        score = sum(w * v for (_p, w), (_n, v) in zip(weights, parts))
        ranked.append((-score, ctx.tie_break(cid), Ranked(cid, score, parts)))
    ranked.sort(key=lambda r: (r[0], r[1]))
    best = ranked[0][2].computer
    free = snap.views[best].free_for(ctx.capability)
    digest = hashlib.sha256(ctx.request.reference.encode("utf-8")).digest()
    partition = free[int.from_bytes(digest[:4], "big") % len(free)]
    attempt = Attempt(index, ctx.alternative.describe(), total, tuple(refusals), feasible,
                      len(ranked), tuple(r[2] for r in ranked[:TOP]))
    return attempt, (best, partition)
