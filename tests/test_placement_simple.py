"""The simple placement policy: tables of decisions and refusals, plus properties."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slapfed.core.errors import NoCapacity
from slapfed.placement import Candidate, Choice, place
from slapfed.placement.simple import refusal

H = "h" * 32


def cand(cid, free=2, releases=(H,), **locality):
    return Candidate(cid, locality, {}, frozenset(releases),
                     tuple(f"p{i}" for i in range(free)), free)


@pytest.mark.parametrize("candidates, sla, computer", [
    ([cand("a", 1), cand("b", 3)], {}, "b"),
    ([cand("b", 2), cand("a", 2)], {}, "a"),
    ([cand("a", 5, lan="x"), cand("b", 1, lan="y")], {"lan": "y"}, "b"),
    ([cand("a", 5), cand("b", 1)], {"computer_guid": "b"}, "b"),
    ([cand("a", 5, releases=()), cand("b", 1)], {}, "b"),
    ([cand("a", 0), cand("b", 1)], {}, "b"),
    ([cand("a", 9, country="fr", continent="eu"), cand("b", 1, country="de", continent="eu")],
     {"continent": "eu", "country": "de"}, "b"),
], ids=["most-free-wins", "tie-broken-by-id", "lan", "computer-guid", "release-not-supplied",
        "full-computer-skipped", "country-within-continent"])
def test_place_chooses(candidates, sla, computer):
    choice = place("web-1", H, sla, candidates)
    assert choice.computer == computer
    chosen = next(c for c in candidates if c.id == computer)
    assert choice.partition in chosen.free_partitions


@pytest.mark.parametrize("candidates, sla, message", [
    ([], {}, "no partition fits web-1: no computer is registered"),
    ([cand("a", lan="lan-a"), cand("b", lan="lan-a"), cand("c", lan="lan-a"),
      cand("d", 0, lan="lan-b"), cand("e", 0, lan="lan-b"), cand("f", releases=(), lan="lan-b")],
     {"lan": "lan-b"},
     "no partition fits web-1: 3 computers refused by lan=lan-b, 2 by capacity, "
     "1 by release not supplied"),
    ([cand("a", 0)], {}, "no partition fits web-1: 1 computer refused by capacity"),
], ids=["nothing-registered", "breakdown-by-reason", "one-full"])
def test_no_capacity_explains_every_refusal(candidates, sla, message):
    with pytest.raises(NoCapacity) as info:
        place("web-1", H, sla, candidates)
    assert info.value.message == message
    assert len(info.value.details) == len(candidates)


def test_same_request_same_decision():
    cs = [cand("a", 16), cand("b", 16)]
    assert place("web-7", H, {}, cs) == place("web-7", H, {}, cs)


candidates_st = st.lists(
    st.builds(lambda i, free, has, lan: cand(f"c{i}", free, (H,) if has else (), lan=lan),
              st.integers(0, 50), st.integers(0, 4), st.booleans(), st.sampled_from(["x", "y"])),
    max_size=8, unique_by=lambda c: c.id)


@settings(max_examples=200, deadline=None)
@given(candidates_st, st.sampled_from([{}, {"lan": "x"}, {"lan": "y"}, {"computer_guid": "c3"}]))
def test_place_returns_a_fitting_partition_or_explains(candidates, sla):
    fitting = [c for c in candidates if refusal(c, H, sla) is None]
    try:
        choice = place("ref", H, sla, candidates)
    except NoCapacity as exc:
        assert not fitting
        assert len(exc.details) == len(candidates)
        return
    assert isinstance(choice, Choice)
    chosen = next(c for c in candidates if c.id == choice.computer)
    assert chosen in fitting
    assert chosen.free_count == max(c.free_count for c in fitting)
    assert choice.partition in chosen.free_partitions
