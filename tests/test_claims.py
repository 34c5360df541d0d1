"""The pure rules of what a node or a partition may claim (slapfed.core.claims): tables."""
import pytest

from slapfed.core.claims import (
    CLAIMABLE, NODE, PARTITION, ComputerFacts, node_fact_problems, report_refusal,
    settled_facts,
)
from slapfed.core.states import DESTROYED, FAILED, PARTITION_REPORT_STATES, REQUESTED_STATES, \
    STARTED, STOPPED

F = ComputerFacts
EU = dict(host="h1", lan="par-1", country="fr", continent="europe")
RECORDED = F(**EU, labels={"disk": "ssd"}, partitions={"p0": (), "p1": ()})
GPU_BOX = F(**EU, capabilities=("gpu",), partitions={"p0": ("gpu",)})

# id, recorded, declared (topology), proposed, fields refused
FACT_CASES = [
    ("first-registration-describes-itself", None, None,
     F(continent="asia", capabilities=("gpu",), labels={"x": "y"}), []),
    ("repeating-the-record", RECORDED, None, F(**EU, labels={"disk": "ssd"}), []),
    ("saying-nothing", RECORDED, None, F(), []),
    ("moving-continent", RECORDED, None, F(**{**EU, "continent": "asia"}), ["continent"]),
    ("moving-lan-only", RECORDED, None, F(lan="tyo-1"), ["lan"]),
    ("granting-itself-a-capability", RECORDED, None, F(capabilities=("gpu",)),
     ["capabilities"]),
    ("dropping-a-capability", GPU_BOX, None, F(capabilities=("fpga",)), ["capabilities"]),
    ("adding-a-label", RECORDED, None, F(labels={"disk": "ssd", "tier": "gold"}),
     ["labels.tier"]),
    ("changing-a-label", RECORDED, None, F(labels={"disk": "nvme"}), ["labels.disk"]),
    ("moving-and-granting-at-once", RECORDED, None,
     F(continent="asia", capabilities=("gpu",)), ["continent", "capabilities"]),
    ("the-topology-moved-it", RECORDED, F(lan="par-2", country="fr", continent="europe"),
     F(lan="par-2"), []),
    ("first-registration-against-a-declared-label", None, F(labels={"disk": "hdd"}),
     F(labels={"disk": "ssd"}), ["labels.disk"]),
    ("first-registration-against-declared-capabilities", None, F(capabilities=("gpu",)),
     F(capabilities=("gpu", "fpga")), ["capabilities"]),
    ("first-registration-repeating-the-declaration", None, F(capabilities=("gpu",)),
     F(capabilities=("gpu",)), []),
    ("a-new-plain-partition", RECORDED, None, F(partitions={"p2": ()}), []),
    ("a-new-partition-tagged-beyond-the-computer", RECORDED, None,
     F(partitions={"p0": (), "p2": ("gpu",)}), ["partitions[1].capabilities"]),
    ("a-new-partition-tagged-with-the-computers-own", GPU_BOX, None,
     F(partitions={"p1": ("gpu",)}), []),
    ("retagging-a-known-partition", RECORDED, None, F(partitions={"p0": ("gpu",)}),
     ["partitions[0].capabilities"]),
    ("a-known-partition-saying-nothing", GPU_BOX, None, F(partitions={"p0": ()}), []),
]


@pytest.mark.parametrize("recorded,declared,proposed,fields",
                         [c[1:] for c in FACT_CASES], ids=[c[0] for c in FACT_CASES])
def test_what_a_node_may_say_of_its_computer(recorded, declared, proposed, fields):
    problems = node_fact_problems(recorded, declared, proposed, list(proposed.partitions))
    assert [p["field"] for p in problems] == fields
    for p in problems:
        assert "may not change it" in p["problem"] and "proposed" in p and "recorded" in p


def test_a_refusal_names_what_is_recorded_and_what_was_proposed():
    [problem] = node_fact_problems(RECORDED, None, F(continent="asia"))
    assert problem["recorded"] == "europe" and problem["proposed"] == "asia"
    assert "'europe'" in problem["problem"] and "'asia'" in problem["problem"]


SETTLE_CASES = [
    ("saying-nothing-keeps-the-record", F(), RECORDED),
    ("the-topology-fills-a-new-lan",
     F(lan="par-2", country="fr", continent="europe"),
     F(host="h1", lan="par-2", country="fr", continent="europe", labels={"disk": "ssd"},
       partitions={})),
    ("a-new-partition-is-added", F(partitions={"p2": ()}),
     F(**EU, labels={"disk": "ssd"}, partitions={"p2": ()})),
]


@pytest.mark.parametrize("completed,settled", [c[1:] for c in SETTLE_CASES],
                         ids=[c[0] for c in SETTLE_CASES])
def test_an_accepted_node_registration_keeps_the_recorded_facts(completed, settled):
    got = settled_facts(RECORDED, completed)
    assert got.locality() == settled.locality() and got.labels == settled.labels
    assert got.capabilities == settled.capabilities
    assert set(got.partitions) == set(completed.partitions)


def test_a_known_partition_saying_nothing_keeps_its_tags():
    assert settled_facts(GPU_BOX, F(partitions={"p0": ()})).partitions == {"p0": ("gpu",)}


# -- partition reports -------------------------------------------------------------------
# (requested, claimed, on the current revision) -> may a node claim it?
S, T, D, X = STARTED, STOPPED, DESTROYED, FAILED
REPORT_TABLE = {
    (S, S, True): True, (S, T, True): False, (S, D, True): False, (S, X, True): True,
    (T, S, True): False, (T, T, True): True, (T, D, True): False, (T, X, True): True,
    (D, S, True): False, (D, T, True): False, (D, D, True): True, (D, X, True): True,
    # an older revision tells what was requested then (never destruction, unless now)
    (S, S, False): True, (S, T, False): True, (S, D, False): False, (S, X, False): True,
    (T, S, False): True, (T, T, False): True, (T, D, False): False, (T, X, False): True,
    (D, S, False): True, (D, T, False): True, (D, D, False): True, (D, X, False): True,
}


def test_the_report_table_covers_every_requested_and_claimed_state():
    assert set(REPORT_TABLE) == {(r, c, cur) for r in REQUESTED_STATES
                                 for c in PARTITION_REPORT_STATES for cur in (True, False)}
    assert set(CLAIMABLE) == set(REQUESTED_STATES)


@pytest.mark.parametrize("requested,claimed,current", sorted(REPORT_TABLE),
                         ids=[f"{r}-claims-{c}-{'current' if cur else 'older'}"
                              for r, c, cur in sorted(REPORT_TABLE)])
def test_which_state_a_node_may_claim(requested, claimed, current):
    refusal = report_refusal(requested, claimed, current, NODE)
    assert (refusal is None) is REPORT_TABLE[(requested, claimed, current)]
    if refusal is not None:
        assert refusal.by_owner
        assert f"requested {requested}" in refusal.message and claimed in refusal.message
        [detail] = refusal.details()
        assert detail["requested"] == requested and detail["claimed"] == claimed


@pytest.mark.parametrize("claimed", PARTITION_REPORT_STATES)
def test_a_partition_never_claims_its_own_destruction(claimed):
    refusal = report_refusal(DESTROYED, claimed, True, PARTITION)
    if claimed == DESTROYED:
        assert refusal is not None and not refusal.by_owner
        assert "only the node" in refusal.message
    else:
        assert (refusal is None) is REPORT_TABLE[(DESTROYED, claimed, True)]


@pytest.mark.parametrize("requested", [STARTED, STOPPED])
def test_a_partition_claims_like_its_node_otherwise(requested):
    for claimed in PARTITION_REPORT_STATES:
        assert (report_refusal(requested, claimed, True, PARTITION) is None) is \
            (report_refusal(requested, claimed, True, NODE) is None)
