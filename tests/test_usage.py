"""The node's accounting arithmetic (node.usage): tables, no I/O."""
from __future__ import annotations

import json

import pytest

from slapfed.node.usage import (
    MAX_LINE, MAX_UNITS, FileCursor, Incidents, Meter, NodeMeter, Proc, build_report,
    cpu_deltas, iso, one_line, parse_iso, parse_line, parse_lines, report_id,
    spool_overflow,
)

U, V, ROOT = 1001, 1002, 0


def procs(*items):
    return {p.key: p for p in items}


def P(pid, own, children=0, uid=U, ppid=1, start=None, rss=0):
    return Proc(pid, pid * 10 if start is None else start, uid, ppid, own, children, rss)


# -- CPU deltas -------------------------------------------------------------------------
CPU_CASES = [
    ("first sample is a baseline", None, procs(P(5, 100)), {}),
    ("a process grows", procs(P(5, 100)), procs(P(5, 130)), {U: 30}),
    ("a new process counts whole", procs(P(5, 100)), procs(P(5, 100), P(6, 7, ppid=5)),
     {U: 7}),
    ("a child reaped by its parent counts once",
     procs(P(5, 100), P(6, 40, ppid=5)), procs(P(5, 100, children=55)), {U: 15}),
    ("a grandchild and child reaped up the chain count once",
     procs(P(5, 100), P(6, 40, ppid=5), P(7, 10, ppid=6)),
     procs(P(5, 100, children=40 + 10 + 9)), {U: 9}),
    ("a child born and reaped between samples counts whole",
     procs(P(5, 100)), procs(P(5, 100, children=12)), {U: 12}),
    ("a child reaped by root (supervisord) is not double counted",
     procs(P(5, 100, ppid=1), P(6, 40, ppid=5)), procs(P(5, 103)), {U: 3}),
    ("a child of another user's process gives no credit",
     procs(P(5, 100, uid=V), P(6, 40, ppid=5)), procs(P(5, 100, uid=V, children=45)),
     {V: 45}),
    ("a counter that went backwards counts 0",
     procs(P(5, 100, children=20)), procs(P(5, 90, children=10)), {}),
    ("a reused pid with another start time is another process",
     procs(P(5, 100, start=1)), procs(P(5, 4, start=2)), {U: 4}),
    ("two users apart", procs(P(5, 1), P(8, 1, uid=V)), procs(P(5, 3), P(8, 11, uid=V)),
     {U: 2, V: 10}),
    ("credit never below zero (an auto-reaped child)",
     procs(P(5, 100), P(6, 40, ppid=5)), procs(P(5, 101, children=0)), {U: 1}),
]


@pytest.mark.parametrize("before,now,expected", [c[1:] for c in CPU_CASES],
                         ids=[c[0] for c in CPU_CASES])
def test_cpu_deltas(before, now, expected):
    assert cpu_deltas(before, now) == expected


# -- one partition's meter ----------------------------------------------------------------
def test_memory_is_a_trapezoid_and_peak_the_highest_sample():
    m = Meter("i1", rss_at=0.0, rss=100)
    m.processes(10.0, 50, 300)
    m.processes(20.0, 50, 100)
    usage = {u["resource"]: u["quantity"] for u in m.close(20.0, 100)}
    assert usage == {"cpu_seconds": 1.0, "memory_peak_bytes": 300,
                     "memory_byte_seconds": (100 + 300) / 2 * 10 + (300 + 100) / 2 * 10}
    # the next interval starts from the last point: its peak is at least the last rss
    m.processes(30.0, 0, 100)
    usage = {u["resource"]: u["quantity"] for u in m.close(30.0, 100)}
    assert usage["memory_peak_bytes"] == 100 and usage["memory_byte_seconds"] == 1000


def test_disk_is_a_step_held_to_the_end_of_the_interval_and_unknown_until_walked():
    m = Meter("i1")
    assert m.close(5.0, 100) == []          # nothing measured: nothing said (never 0)
    m.disk_walked(10.0, 1000)
    m.disk_walked(20.0, 3000)
    usage = {u["resource"]: u["quantity"] for u in m.close(30.0, 100)}
    assert usage == {"disk_bytes": 3000, "disk_byte_seconds": 1000 * 10 + 3000 * 10}
    usage = {u["resource"]: u["quantity"] for u in m.close(40.0, 100)}
    assert usage == {"disk_bytes": 3000, "disk_byte_seconds": 30000}


def test_units_are_summed_per_resource_and_shared_id_and_capped():
    m = Meter("i1")
    m.add_unit("x-requests", None, 2)
    m.add_unit("x-requests", None, 3)
    m.add_unit("x-requests", "s1", 1)
    for i in range(MAX_UNITS + 5):
        m.add_unit(f"x-u{i}", None, 1)
    usage = m.close(1.0, 100)
    assert {"resource": "x-requests", "quantity": 5.0} in usage
    assert {"resource": "x-requests", "quantity": 1.0, "shared": "s1"} in usage
    assert len(usage) == MAX_UNITS
    assert m.close(2.0, 100) == []


# -- usage-file lines ---------------------------------------------------------------------
LINE_CASES = [
    ("a unit", b'{"resource": "x-requests", "quantity": 3}', ("unit", ("x-requests", None, 3.0))),
    ("a shared unit", b'{"resource": "x-req", "quantity": 1.5, "shared": "s-1"}',
     ("unit", ("x-req", "s-1", 1.5))),
    ("not JSON", b'{"resource": ', None),
    ("not an object", b'[1, 2]', None),
    ("a platform resource", b'{"resource": "cpu_seconds", "quantity": 1}', None),
    ("an upper-case unit", b'{"resource": "x-Requests", "quantity": 1}', None),
    ("a long unit name", b'{"resource": "x-' + b"a" * 41 + b'", "quantity": 1}', None),
    ("a negative quantity", b'{"resource": "x-r", "quantity": -1}', None),
    ("NaN", b'{"resource": "x-r", "quantity": NaN}', None),
    ("Infinity", b'{"resource": "x-r", "quantity": Infinity}', None),
    ("a boolean", b'{"resource": "x-r", "quantity": true}', None),
    ("a string quantity", b'{"resource": "x-r", "quantity": "3"}', None),
    ("a huge quantity", b'{"resource": "x-r", "quantity": 1e300}', None),
    ("an extra key", b'{"resource": "x-r", "quantity": 1, "path": "/etc"}', None),
    ("a bad shared id", b'{"resource": "x-r", "quantity": 1, "shared": "../x"}', None),
    ("not UTF-8", b'{"resource": "x-\xff", "quantity": 1}', None),
    ("deep nesting", b"[" * 100000 + b"]" * 100000, None),
    ("an incident", b'{"incident": {"name": "db-down", "start": "2026-01-01T00:00:00Z", '
                    b'"end": null, "detail": "a\\nb"}}',
     ("incident", {"kind": "instance", "name": "db-down", "start": "2026-01-01T00:00:00Z",
                   "end": None, "detail": "a b"})),
    ("an incident ending before it starts",
     b'{"incident": {"name": "x", "start": "2026-01-02T00:00:00Z", '
     b'"end": "2026-01-01T00:00:00Z"}}', None),
    ("an incident with a bad time",
     b'{"incident": {"name": "x", "start": "2026-01-02 00:00:00"}}', None),
    ("an incident with a control character in its name",
     b'{"incident": {"name": "x\\ny", "start": "2026-01-02T00:00:00Z"}}', None),
]


@pytest.mark.parametrize("line,expected", [c[1:] for c in LINE_CASES],
                         ids=[c[0] for c in LINE_CASES])
def test_parse_line(line, expected):
    assert parse_line(line) == expected


def test_complete_lines_only_bad_ones_counted_a_partial_one_waits():
    data = (b'{"resource": "x-a", "quantity": 1}\n' b"junk\n" b"\n"
            b'{"resource": "x-a", "quantity": 2}\n' b'{"resource": "x-a", "qua')
    got = parse_lines(data)
    assert [u[2] for u in got.units] == [1.0, 2.0]
    assert got.bad == 1
    assert got.consumed == data.rindex(b"\n") + 1


def test_a_line_too_long_is_skipped_even_before_its_end():
    long = b'{"resource": "x-a", "quantity": 1, "pad": "' + b"p" * MAX_LINE + b'"}'
    got = parse_lines(long + b"\n" + b'{"resource": "x-a", "quantity": 4}\n')
    assert got.bad == 1 and [u[2] for u in got.units] == [4.0]
    unfinished = parse_lines(b"p" * (MAX_LINE + 1))
    assert unfinished.bad == 1 and unfinished.consumed == MAX_LINE + 1


def test_lines_beyond_the_cap_wait_for_the_next_read():
    data = b'{"resource": "x-a", "quantity": 1}\n' * 5
    got = parse_lines(data, max_lines=3)
    assert len(got.units) == 3 and got.consumed == len(data) // 5 * 3


CURSOR_CASES = [
    ("the same file grown", FileCursor(1, 2, 10), (1, 2, 30), (10, 0)),
    ("another file (rotated)", FileCursor(1, 2, 10), (1, 3, 30), (0, 0)),
    ("truncated", FileCursor(1, 2, 10), (1, 2, 4), (0, 0)),
    ("a backlog over the cap", FileCursor(1, 2, 10), (1, 2, 1000), (900, 890)),
]


@pytest.mark.parametrize("cursor,file,expected", [c[1:] for c in CURSOR_CASES],
                         ids=[c[0] for c in CURSOR_CASES])
def test_cursor_start(cursor, file, expected):
    assert cursor.start_for(*file, max_backlog=100) == expected


# -- promise incidents --------------------------------------------------------------------
T0 = 1_800_000_000


def test_a_failing_promise_opens_an_incident_repeated_until_it_passes():
    inc = Incidents()
    inc.observe("p0", "i1", [{"name": "port", "ok": False, "message": "refused\nport 80"}], T0)
    inc.observe("p0", "i1", [{"name": "port", "ok": False, "message": "still"}], T0 + 30)
    first = inc.take("p0", "i1")
    assert first == [{"kind": "promise", "name": "port", "start": iso(T0), "end": None,
                      "detail": "still"}]
    assert inc.take("p0", "i1") == first                  # open: repeated, same start
    inc.observe("p0", "i1", [{"name": "port", "ok": True, "message": ""}], T0 + 60)
    assert inc.take("p0", "i1") == [{"kind": "promise", "name": "port", "start": iso(T0),
                                     "end": iso(T0 + 60), "detail": "still"}]
    assert inc.take("p0", "i1") == []                     # closed: reported once


def test_a_promise_gone_or_an_instance_gone_ends_its_incident():
    inc = Incidents()
    inc.observe("p0", "i1", [{"name": "a", "ok": False}, {"name": "b", "ok": False}], T0)
    inc.observe("p0", "i1", [{"name": "a", "ok": False}], T0 + 5)
    assert [(i["name"], i["end"]) for i in inc.take("p0", "i1")] == \
        [("b", iso(T0 + 5)), ("a", None)]
    inc.observe("p0", "i2", [], T0 + 9)                   # another instance now
    assert [(i["name"], i["end"]) for i in inc.take("p0", "i1")] == [("a", iso(T0 + 9))]
    inc.observe("p1", "i3", [{"name": "c", "ok": False}], T0)
    inc.gone("p1", T0 + 1)
    assert inc.take("p1", "i3")[0]["end"] == iso(T0 + 1)
    assert not inc.open


def test_passing_promises_open_nothing():
    inc = Incidents()
    inc.observe("p0", "i1", [{"name": "a", "ok": True}], T0)
    assert inc.take("p0", "i1") == [] and not inc.open


# -- the node's meter and its reports -----------------------------------------------------
def _node(**kw):
    return NodeMeter("tok", clk_tck=100, **kw)


def test_reports_follow_each_other_without_gap_or_overlap():
    n = _node()
    n.hosting(T0, {"p0": "i1"})
    n.processes(T0, procs(P(5, 100, rss=10)), {"p0": U})
    assert n.report("c1", T0 + 0.5) is None               # the first only starts one
    n.processes(T0 + 30, procs(P(5, 250, rss=30)), {"p0": U})
    n.disk("p0", T0 + 30, 4096)
    r1 = n.report("c1", T0 + 60.7)
    assert r1["report_id"] == "c1:tok.1"
    assert (r1["start"], r1["end"]) == (iso(T0), iso(T0 + 60))
    usage = {u["resource"]: u["quantity"] for u in r1["partitions"][0]["usage"]}
    assert usage["cpu_seconds"] == 1.5 and usage["memory_peak_bytes"] == 30
    assert usage["disk_bytes"] == 4096
    assert n.report("c1", T0 + 60.9) is None              # not a second yet
    r2 = n.report("c1", T0 + 62)
    assert r2["report_id"] == "c1:tok.2" and r2["start"] == r1["end"]
    assert {u["resource"]: u["quantity"] for u in r2["partitions"][0]["usage"]} == \
        {"disk_bytes": 4096, "disk_byte_seconds": round(4096 * (62 - 60.7), 1)}


def test_an_instance_leaving_its_partition_is_reported_apart_one_entry_a_partition():
    n = _node()
    n.hosting(T0, {"p0": "i1", "p1": "i9"})
    n.processes(T0, procs(P(5, 0)), {"p0": U, "p1": V})
    n.report("c1", T0)
    n.processes(T0 + 10, procs(P(5, 100)), {"p0": U, "p1": V})
    n.hosting(T0 + 20, {"p0": "i2", "p1": "i9"})          # p0: i1 destroyed, i2 placed
    n.processes(T0 + 30, procs(P(5, 150), P(7, 0, uid=V)), {"p0": U, "p1": V})
    r = n.report("c1", T0 + 40)
    assert [(e["partition"], e["instance_id"]) for e in r["partitions"]] == \
        [("p0", "i1"), ("p1", "i9")]
    assert r["partitions"][0]["usage"][0] == {"resource": "cpu_seconds", "quantity": 1.0}
    r = n.report("c1", T0 + 50)                           # i2's turn: nothing lost
    assert [(e["partition"], e["instance_id"]) for e in r["partitions"]] == [("p0", "i2")]
    assert r["partitions"][0]["usage"][0] == {"resource": "cpu_seconds", "quantity": 0.5}


def test_a_partition_without_its_own_user_reports_no_cpu_or_memory():
    n = _node()
    n.hosting(T0, {"p0": "i1"})
    n.processes(T0, procs(P(5, 0)), {})
    n.report("c1", T0)
    n.processes(T0 + 10, procs(P(5, 100)), {})
    n.disk("p0", T0 + 10, 10)
    r = n.report("c1", T0 + 20)
    assert {u["resource"] for u in r["partitions"][0]["usage"]} == \
        {"disk_bytes", "disk_byte_seconds"}


def test_usage_file_lines_and_incidents_go_into_the_next_report():
    n = _node()
    n.hosting(T0, {"p0": "i1"})
    n.report("c1", T0)
    n.lines("p0", parse_lines(b'{"resource": "x-req", "quantity": 2}\nbad\n'
                              b'{"incident": {"name": "x", "start": "2026-01-01T00:00:00Z"}}\n'))
    n.incidents.observe("p0", "i1", [{"name": "health", "ok": False}], T0 + 1)
    r = n.report("c1", T0 + 10)
    entry = r["partitions"][0]
    assert entry["usage"] == [{"resource": "x-req", "quantity": 2.0}]
    assert [(i["kind"], i["name"]) for i in entry["incidents"]] == \
        [("instance", "x"), ("promise", "health")]
    assert n.bad_lines == 1
    r = n.report("c1", T0 + 20)
    assert [(i["kind"], i["end"]) for i in r["partitions"][0]["incidents"]] == \
        [("promise", None)]


def test_units_beyond_the_cap_are_counted_as_dropped_and_the_rest_reported():
    from slapfed.node.usage import FileLines, MAX_UNITS
    n = _node()
    n.hosting(T0, {"p0": "i1"})
    n.report("c1", T0)
    sites = [f"i-s{k}" for k in range(MAX_UNITS + 3)]
    n.lines("p0", FileLines(units=[("x-requests", sid, 1.0) for sid in sites]),
            frozenset(sites))
    assert n.dropped_units == 3
    usage = n.report("c1", T0 + 10)["partitions"][0]["usage"]
    assert len(usage) == MAX_UNITS and all(u["quantity"] == 1.0 for u in usage)


def test_the_state_survives_json():
    n = _node()
    n.hosting(T0, {"p0": "i1"})
    n.processes(T0, procs(P(5, 100, rss=3)), {"p0": U})
    n.report("c1", T0)
    n.processes(T0 + 5, procs(P(5, 120, rss=3)), {"p0": U})
    n.lines("p0", parse_lines(b'{"resource": "x-req", "quantity": 2}\n'))
    n.incidents.observe("p0", "i1", [{"name": "h", "ok": False}], T0 + 1)
    n.cursors["p0"] = FileCursor(1, 2, 3)
    copy = NodeMeter.from_json(json.loads(json.dumps(n.to_json())))
    assert copy.report("c1", T0 + 9) == n.report("c1", T0 + 9)
    assert copy.to_json() == n.to_json()


def test_report_bounds():
    with pytest.raises(ValueError):
        build_report("c:1", T0, T0, [])
    assert build_report("c:1", T0, T0 + 1, [{"partition": "p", "instance_id": "i",
                                             "usage": [], "incidents": []}])["partitions"] == []
    rid = report_id("c" * 200, "tok", 123)
    assert len(rid) <= 128 and rid.endswith(":tok.123")
    assert parse_iso(iso(T0)) == T0 and parse_iso("2026-13-01T00:00:00Z") is None
    assert one_line("a\n\tb\u2028c") == "a b c"


def test_the_spool_drops_its_oldest():
    names = [f"{i:012d}.json" for i in (3, 1, 2, 10)]
    assert spool_overflow(names, 2) == ["000000000001.json", "000000000002.json"]
    assert spool_overflow(names, 10) == []


def test_what_the_master_would_refuse_whole_is_filtered_out_on_the_node():
    n = _node()
    n.hosting(T0, {"p0": "i1"})
    n.report("c1", T0)
    n.lines("p0", parse_lines(
        b'{"resource": "x-req", "quantity": 1, "shared": "s-mine"}\n'
        b'{"resource": "x-req", "quantity": 1, "shared": "s-not-mine"}\n'
        b'{"incident": {"name": "a", "start": "2026-01-01T00:00:00Z"}}\n'
        b'{"incident": {"name": "a", "start": "2026-01-01T00:00:00Z", '
        b'"end": "2026-01-01T00:01:00Z"}}\n'
        b'{"incident": {"name": "future", "start": "2099-01-01T00:00:00Z"}}\n'),
        shared=frozenset({"s-mine"}))
    entry = n.report("c1", T0 + 10)["partitions"][0]
    assert entry["usage"] == [{"resource": "x-req", "quantity": 1.0, "shared": "s-mine"}]
    assert [(i["name"], i["end"]) for i in entry["incidents"]] == \
        [("a", "2026-01-01T00:01:00Z")]
    assert n.bad_lines == 1
