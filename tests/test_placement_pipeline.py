"""The placement pipeline over a small federation: every SLA key, combinations, fallbacks,
refusals that explain themselves, determinism, and hypothesis properties (every placement
satisfies its SLA as topology.locality sees it; every refusal adds up)."""
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from slapfed.core.errors import InvalidInput, NoCapacity
from slapfed.core.sla import parse_sla
from slapfed.placement import (
    Anchor, ComputerView, Context, PipelineConfig, PlacementRequest, build, decide,
)
from slapfed.placement.filters import FILTERS
from slapfed.placement.snapshot import ring_rank
from slapfed.topology.locality import shares

H = "h" * 32
OTHER = "o" * 32


def view(cid, host, lan, country, continent, free=4, used=0, releases=(H,), labels=None,
         capabilities=(), tagged=None):
    """``tagged`` maps partition index -> capabilities of that partition."""
    tagged = tagged or {}
    parts = [(f"p{i}", tagged.get(i, ()), i < used) for i in range(used + free)]
    return ComputerView.of(cid, locality={"host": host, "lan": lan, "country": country,
                                          "continent": continent},
                           labels=labels, capabilities=capabilities, releases=releases,
                           partitions=parts)


def federation():
    return build([
        view("a1", "ha1", "lan-a", "fr", "europe", labels={"disk": "ssd"}),
        view("a2", "ha2", "lan-a", "fr", "europe", used=3, free=1),
        view("a3", "ha1", "lan-a", "fr", "europe"),                 # same host as a1
        view("b1", "hb1", "lan-b", "fr", "europe", labels={"disk": "hdd"}),
        view("d1", "hd1", "lan-d", "de", "europe"),
        view("u1", "hu1", "lan-u", "us", "america"),
        view("u2", "hu2", "lan-u", "us", "america", free=0, used=4),  # full
        view("g1", "hg1", "lan-u", "us", "america", capabilities=("gpu",)),
        view("m1", "hm1", "lan-d", "de", "europe", tagged={0: ("ssd-fast",)}),
        view("n1", "hn1", "lan-b", "fr", "europe", releases=(OTHER,)),
        view("z1", None, None, None, None),                          # locality unknown
    ])


ANCHORS = {"db-1": Anchor("db-1", "a1"), "us-1": Anchor("us-1", "u1"),
           "z-1": Anchor("z-1", "z1"),                    # on the computer of no locality
           "nowhere": Anchor("nowhere", None, "is not placed")}
EVERY = {"a1", "a2", "a3", "b1", "d1", "u1", "m1", "z1"}        # fit an SLA-free request


def ask(sla, reference="web-1", near=(), snap=None, **kw):
    request = PlacementRequest(reference, H, parse_sla(sla), "alice", ANCHORS, near)
    return decide(snap or federation(), request, **kw)


@pytest.mark.parametrize("sla, feasible", [
    ({}, EVERY),
    ({"computer_guid": "b1"}, {"b1"}),
    ({"host": "ha1"}, {"a1", "a3"}),
    ({"lan": "lan-a"}, {"a1", "a2", "a3"}),
    ({"country": "de"}, {"d1", "m1"}),
    ({"continent": "america"}, {"u1"}),
    ({"label.disk": "ssd"}, {"a1"}),
    ({"capability": "gpu"}, {"g1"}),
    ({"capability": "ssd-fast"}, {"m1"}),
    ({"same_host": "db-1"}, {"a1", "a3"}),
    ({"same_lan": "db-1"}, {"a1", "a2", "a3"}),
    ({"same_country": "db-1"}, {"a1", "a2", "a3", "b1"}),
    ({"same_continent": "db-1"}, {"a1", "a2", "a3", "b1", "d1", "m1"}),
    ({"different_host": "db-1"}, EVERY - {"a1", "a3"}),
    ({"different_lan": "db-1"}, EVERY - {"a1", "a2", "a3"}),
    ({"different_country": "db-1"}, {"d1", "u1", "m1", "z1"}),
    ({"different_continent": "db-1"}, {"u1", "z1"}),
    ({"different_host": ["db-1", "us-1"]}, EVERY - {"a1", "a3", "u1"}),
    ({"different_host": "z-1"}, EVERY - {"z1"}),      # one computer is one host, known or not
    ({"different_continent": "z-1"}, EVERY - {"z1"}),
    ({"continent": "europe", "different_lan": "db-1"}, {"b1", "d1", "m1"}),
    ({"same_country": "db-1", "different_lan": "db-1", "label.disk": "hdd"}, {"b1"}),
    ({"continent": "europe", "capability": "gpu"}, set()),
    ({"lan": "lan-u", "different_continent": "us-1"}, set()),
], ids=["anywhere", "computer_guid", "host", "lan", "country", "continent", "label",
        "capability-computer", "capability-partition", "same_host", "same_lan",
        "same_country", "same_continent", "different_host", "different_lan",
        "different_country", "different_continent", "different_host-two-references",
        "different_host-of-unknown-locality", "different_continent-of-unknown-locality",
        "continent+different_lan", "same_country+different_lan+label",
        "europe-gpu-impossible", "contradiction-by-data"])
def test_every_key_keeps_exactly_the_computers_it_names(sla, feasible):
    decision = ask(sla)
    attempt = decision.attempts[0]
    assert attempt.feasible == len(feasible)
    assert attempt.feasible + sum(r.count for r in attempt.refusals) == attempt.candidates
    if feasible:
        assert decision.computer in feasible
    else:
        assert not decision.placed
    snap = federation()
    ctx = Context(PlacementRequest("web-1", H, parse_sla(sla), "alice", ANCHORS),
                  parse_sla(sla).alternatives[0], snap)
    fitting = {cid for cid, v in snap.views.items()
               if all(FILTERS[n].fits(v, ctx) is None for n in FILTERS)}
    assert fitting == feasible


@pytest.mark.parametrize("sla, message", [
    ({"lan": "lan-x"}, "no partition fits web-1: 11 computers refused by lan=lan-x"),
    ({"continent": "america"},
     "no partition fits web-1: 8 computers refused by continent=america, "
     "1 by capability tags, 1 by capacity") ,
    ({"same_lan": "nowhere"},
     "no partition fits web-1: 10 computers refused by same_lan(nowhere): nowhere is not "
     "placed, 1 by capability tags"),
    ({"same_lan": "db-1", "capability": "gpu"},
     "no partition fits web-1: 10 computers refused by capability=gpu, "
     "1 by same_lan(db-1)"),
    ([{"continent": "asia"}, {"computer_guid": "u2"}],
     "no partition fits web-1: [1] continent=asia: 11 computers refused by continent=asia; "
     "[2] computer_guid=u2: 10 computers refused by computer_guid=u2, 1 by capacity"),
], ids=["nobody-there", "breakdown", "unplaced-anchor", "capability-then-relative",
        "every-fallback-explained"])
def test_refusals_explain_themselves(sla, message):
    snap = federation()
    if sla == {"continent": "america"}:
        snap.remove("u1")
        snap.put(view("u3", "hu3", "lan-u", "us", "america", releases=()))
        message = message.replace("1 by capacity", "1 by capacity, 1 by release not supplied")
    decision = ask(sla, snap=snap)
    assert not decision.placed
    assert decision.message() == message
    with pytest.raises(NoCapacity) as info:
        decision.raise_if_refused()
    for attempt in decision.attempts:
        counted = sum(d["count"] for d in info.value.details if d["alternative"] == attempt.index)
        assert counted == attempt.candidates


@pytest.mark.parametrize("sla, alternative, feasible", [
    ([{"continent": "europe"}, {}], 0, {"a1", "a2", "a3", "b1", "d1", "m1"}),
    ([{"continent": "asia"}, {}], 1, EVERY),
    ([{"capability": "gpu", "continent": "europe"}, {"capability": "gpu"}], 1, {"g1"}),
    ([{"lan": "lan-x"}, {"lan": "lan-y"}, {"same_host": "db-1"}], 2, {"a1", "a3"}),
    ([{"same_lan": "nowhere"}, {"different_continent": "db-1"}], 1, {"u1", "z1"}),
], ids=["first-fits", "else-anywhere", "capability-fallback", "third-alternative",
        "unplaced-then-relative"])
def test_fallbacks_are_tried_in_order(sla, alternative, feasible):
    decision = ask(sla)
    assert decision.alternative == alternative
    assert decision.computer in feasible
    assert len(decision.attempts) == alternative + 1
    assert decision.attempts[alternative].feasible == len(feasible)


def test_tagged_partitions_serve_only_their_capability():
    snap = federation()
    d = ask({"capability": "ssd-fast"}, snap=snap)
    assert (d.computer, d.partition) == ("m1", "p0")
    for ref in ("a", "b", "c", "d", "e", "f"):
        d = ask({"computer_guid": "m1"}, reference=ref, snap=snap)
        assert d.computer == "m1" and d.partition != "p0"


def test_closeness_prefers_the_parent_and_same_keys():
    d = ask({}, near=("u1",))
    assert d.computer == "u1"     # the only one sharing the parent's host
    d = ask({"same_continent": "db-1"})
    assert d.computer in {"a1", "a3"}    # same host as db-1 wins inside the continent
    top = d.attempts[0].top
    assert top[0].score >= top[-1].score


def test_spread_prefers_emptier_computers():
    snap = build([view("busy", "h1", "l", "c", "k", used=3, free=1),
                  view("idle", "h2", "l", "c", "k", used=0, free=4)])
    for ref in ("r1", "r2", "r3", "r4"):
        assert ask({}, reference=ref, snap=snap).computer == "idle"


def test_same_snapshot_and_request_give_the_same_choice_whatever_the_history():
    views = [view(f"c{i:03d}", f"h{i}", f"l{i % 7}", "fr", "europe") for i in range(300)]
    forward, backward = build(views), build(reversed(views))
    incremental = build(views[:100])
    for v in views[100:]:
        incremental.put(v)
    for ref in ("web-1", "web-2", "db"):
        choices = {(d.computer, d.partition) for d in
                   (ask({}, ref, snap=s) for s in (forward, backward, incremental))}
        assert len(choices) == 1


def test_different_references_spread():
    snap = build([view(f"c{i:03d}", f"h{i}", "l", "fr", "europe") for i in range(50)])
    chosen = {ask({}, f"web-{i}", snap=snap).computer for i in range(20)}
    assert len(chosen) >= 10


def test_snapshot_rollback_restores_views_and_indexes():
    snap = federation()
    before = {k: set(v) for k, v in snap.by_level["lan"].items()}, set(snap.free_untagged)
    snap.begin()
    snap.put(view("a1", "ha1", "lan-z", "fr", "europe", free=0, used=4))
    snap.put(view("new", "hn", "lan-a", "fr", "europe"))
    snap.remove("b1")
    snap.rollback()
    assert ({k: set(v) for k, v in snap.by_level["lan"].items()}, set(snap.free_untagged)) \
        == before
    assert "new" not in snap.views and "b1" in snap.views
    assert snap.ring_sample(None, 0, 100) == sorted(snap.views, key=ring_rank)


@pytest.mark.parametrize("raw, fields", [
    ({"filters": ["lan", "nope"]}, {"placement.filters"}),
    ({"scores": {"closeness": -1, "luck": 1}}, {"placement.scores", "placement.scores.closeness"}),
    ({"sample": 0, "colour": 1}, {"placement.sample", "placement.colour"}),
], ids=["unknown-filter", "bad-scores", "bad-sample-and-unknown-key"])
def test_pipeline_configuration_is_validated(raw, fields):
    with pytest.raises(InvalidInput) as info:
        PipelineConfig.from_json(raw)
    assert {d["field"] for d in info.value.details} == fields


def test_pipeline_order_is_data():
    config = PipelineConfig.from_json({"filters": ["capacity", "lan", "release"]})
    d = ask({"lan": "lan-u"}, config=config)
    assert [r.plugin for r in d.attempts[0].refusals] == ["capacity", "lan"]
    assert d.computer == "u1"


# -- properties --------------------------------------------------------------------------
LEVEL_VALUES = st.sampled_from(["x", "y", None])
views_st = st.lists(
    st.builds(
        lambda i, lan, country, cont, free, used, has, cap, label: view(
            f"c{i}", f"h{i % 5}-{lan}-{country}" if lan else None, lan,
            country, cont, free=free, used=used, releases=(H,) if has else (),
            capabilities=(cap,) if cap else (), labels={"k": label} if label else None),
        st.integers(0, 40), LEVEL_VALUES, LEVEL_VALUES, LEVEL_VALUES, st.integers(0, 3),
        st.integers(0, 2), st.booleans(), st.sampled_from([None, None, "gpu"]),
        st.sampled_from([None, "a", "b"])),
    max_size=12, unique_by=lambda v: v.id)
alternative_st = st.fixed_dictionaries({}, optional={
    "lan": st.sampled_from(["x", "y"]), "country": st.sampled_from(["x", "y"]),
    "continent": st.sampled_from(["x", "y"]), "capability": st.just("gpu"),
    "label.k": st.sampled_from(["a", "b"]), "computer_guid": st.sampled_from(["c1", "c2"]),
    "same_lan": st.just("anchor"), "different_host": st.just("anchor"),
    "same_country": st.just("anchor"), "different_continent": st.just("anchor")})
sla_st = st.one_of(alternative_st, st.lists(alternative_st, min_size=1, max_size=3))


def parse_or_skip(raw):
    """The SLA, unless it contradicts itself (same_country with different_continent...),
    which the wire refuses and a property has nothing to say about."""
    try:
        return parse_sla(raw)
    except InvalidInput:
        assume(False)


def satisfies(v, alt, anchor):
    if alt.get("computer_guid") not in (None, v.id):
        return False
    for key in ("host", "lan", "country", "continent"):
        if alt.get(key) is not None and getattr(v, key) != alt.get(key):
            return False
    for key, value in alt.labels:
        if v.labels.get(key) != value:
            return False
    for rel in alt.relative:
        if anchor is None:
            return False
        same = shares(v.locality, anchor.locality, rel.level)
        if same != (rel.mode == "same"):
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(views_st, sla_st, st.integers(0, 40))
def test_every_placement_satisfies_its_sla_and_every_refusal_adds_up(views, raw, anchor_i):
    snap = build(views)
    anchor_id = f"c{anchor_i}" if f"c{anchor_i}" in snap.views else None
    anchors = {"anchor": Anchor("anchor", anchor_id)}
    sla = parse_or_skip(raw)
    request = PlacementRequest("ref", H, sla, "alice", anchors)
    decision = decide(snap, request)
    for attempt in decision.attempts:
        assert attempt.feasible + sum(r.count for r in attempt.refusals) == attempt.candidates
        assert attempt.candidates == len(views)
        if attempt.index != decision.alternative:
            assert attempt.feasible == 0 and all(r.reason for r in attempt.refusals)
    if not decision.placed:
        assert len(decision.attempts) == len(sla.alternatives)
        return
    alt = sla.alternatives[decision.alternative]
    chosen = snap.views[decision.computer]
    anchor = snap.views.get(anchor_id) if anchor_id else None
    assert satisfies(chosen, alt, anchor)
    assert H in chosen.releases
    cap = alt.get("capability")
    assert decision.partition in chosen.free_for(cap)
    assert (cap in chosen.tagged) if cap else chosen.has_untagged


@settings(max_examples=200, deadline=None)
@given(views_st, alternative_st, st.integers(0, 40))
def test_indexes_and_fits_agree(views, raw, anchor_i):
    snap = build(views)
    anchor_id = f"c{anchor_i}" if f"c{anchor_i}" in snap.views else None
    request = PlacementRequest("ref", H, parse_or_skip(raw), "alice",
                               {"anchor": Anchor("anchor", anchor_id)})
    ctx = Context(request, request.sla.alternatives[0], snap)
    for plugin in FILTERS.values():
        for term in plugin.terms(ctx):
            narrowed = term.narrow(snap, None)
            assert narrowed == {cid for cid, v in snap.views.items() if term.fits(v)}
            half = set(sorted(snap.views)[::2])
            assert term.narrow(snap, half) == half & narrowed
