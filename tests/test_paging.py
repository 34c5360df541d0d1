"""Pure parts of lists that scale (core.paging, core.retention) as tables, and the
retention purge's rules on a real ZODB (services.retention)."""
import pytest

from conftest import computer_body

from slapfed import services
from slapfed.core import paging, retention
from slapfed.core.errors import InvalidInput
from slapfed.core.wire import InstanceRequest, Supply
from slapfed.core.wire import ComputerRegistration
from slapfed.services.retention import purge_destroyed
from slapfed.services.tx import read

URL = "/srv/releases/hello/software.cfg"


@pytest.mark.parametrize("raw, want", [(None, paging.DEFAULT_LIMIT), ("1", 1),
                                       ("1000", 1000), (" 7 ", 7)])
def test_a_limit_is_a_whole_number_in_range(raw, want):
    assert paging.parse_limit(raw) == want


@pytest.mark.parametrize("raw", ["0", "1001", "1e3", "-1", "", "٣", "7.0"])
def test_a_bad_limit_names_the_parameter(raw):
    with pytest.raises(InvalidInput) as info:
        paging.parse_limit(raw)
    assert info.value.details[0]["field"] == "limit"


@pytest.mark.parametrize("kind, key, parts", [("instances", "i-0a", 1),
                                              ("computers", "ß/ü", 1),
                                              ("topology", ["instances", ""], 2)])
def test_a_cursor_reads_back_as_made(kind, key, parts):
    cursor = paging.make_cursor(kind, key)
    assert cursor.isascii() and "=" not in cursor
    assert paging.read_cursor(cursor, kind, parts=parts) == key


@pytest.mark.parametrize("raw", ["", "!!", "x" * 3000, paging.make_cursor("other", "a"),
                                 paging.make_cursor("instances", 3),
                                 paging.make_cursor("instances", ["a", "b"])])
def test_a_foreign_cursor_names_the_parameter(raw):
    with pytest.raises(InvalidInput) as info:
        paging.read_cursor(raw, "instances")
    assert info.value.details == [{"field": "cursor", "problem": info.value.details[0]
                                   ["problem"]}]


@pytest.mark.parametrize("items, limit, want", [
    ([], 3, ([], None)),
    ([(1, "a"), (2, "b")], 3, (["a", "b"], None)),
    ([(1, "a"), (2, "b"), (3, "c")], 3, (["a", "b", "c"], None)),
    ([(1, "a"), (2, "b"), (3, "c"), (4, "d")], 3, (["a", "b", "c"], 3)),
    ([(1, "a"), (2, None), (3, "c"), (4, None)], 2, (["a", "c"], None)),
], ids=["empty", "short", "exact", "more", "filtered-tail"])
def test_take_says_whether_more_follows(items, limit, want):
    assert paging.take(items, limit) == want


@pytest.mark.parametrize("text, seconds", [("7d", 7 * 86400), ("12h", 43200), ("90m", 5400),
                                           ("30s", 30), ("45", 45), ("0", 0), ("1.5h", 5400),
                                           ("2w", 14 * 86400)])
def test_a_retention_is_a_duration(text, seconds):
    assert retention.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7x", "-1d", "d", "inf", "1e999"])
def test_a_bad_retention_names_the_option(text):
    with pytest.raises(InvalidInput) as info:
        retention.parse_duration(text)
    assert info.value.details[0]["field"] == "destroyed_retention"


@pytest.mark.parametrize("value, period", [(1, 1), (600, 60), (7 * 86400, 3600)])
def test_the_purge_runs_a_tenth_of_the_retention_within_bounds(value, period):
    assert retention.purge_period(value) == period


def _request(rt, ref, **extra):
    return services.request_instance(rt, InstanceRequest.from_json(
        {"reference": ref, "software_url": URL, "requester": "alice", **extra}))[1]


def _freed(rt, inst):
    from slapfed.core.wire import PartitionReport
    from slapfed.core import claims
    services.destroy_instance(rt, inst["id"])
    p = inst["placement"]
    services.report_partition(rt, p["computer"], p["partition"], PartitionReport.from_json(
        {"instance_id": inst["id"], "revision": inst["revision"] + 1, "state": "destroyed"}),
        claims.NODE)


def test_the_purge_forgets_only_finished_destructions_in_batches(master_runtime):
    rt = master_runtime
    services.register_computer(rt, ComputerRegistration.from_json(computer_body("c1", 12)))
    services.supply(rt, "c1", Supply.from_json({"url": URL}))
    live = _request(rt, "live")
    parent = _request(rt, "parent")
    child = _request(rt, "child", parent=parent["id"])
    being = _request(rt, "being-destroyed")
    services.destroy_instance(rt, being["id"])
    done = [_request(rt, f"done-{i}") for i in range(5)]
    for inst in done + [parent, child]:
        _freed(rt, inst)
    later = 10 ** 10                                    # far past any retention
    assert purge_destroyed(rt, 86400) == []             # nothing that old yet
    first = purge_destroyed(rt, 86400, now=later, batch=2, max_batches=2)
    assert len(first) == 4                               # bounded: 2 batches of 2
    rest = purge_destroyed(rt, 86400, now=later, batch=2, max_batches=2)
    again = purge_destroyed(rt, 86400, now=later, batch=2, max_batches=2)
    gone = set(first) | set(rest) | set(again)
    # the parent goes once its child is gone (a later pass, or later in the walk)
    assert gone == {i["id"] for i in done} | {parent["id"], child["id"]}
    assert purge_destroyed(rt, 86400, now=later) == []
    left = read(rt.db, lambda app: sorted(i.reference for i in app.instances.values()))
    assert left == ["being-destroyed", "live"]
    assert read(rt.db, lambda app: app.find_instance("alice", "done-0")) is None
    assert purge_destroyed(rt, 0, now=later) == []      # 0: kept forever
    assert services.show_instance(rt, live["id"])["requested_state"] == "started"
