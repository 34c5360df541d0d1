"""Accounting, pure (core.accounting) and the ledger (model.accounting): tables."""
from decimal import Decimal

import pytest

from slapfed.core import accounting as acct
from slapfed.core.errors import InvalidInput
from slapfed.core.wire import PriceListBody, UsageReport
from slapfed.model.accounting import Ledger

T0 = acct.parse_time("2026-11-30T23:59:00Z")


# -- resources and kinds ------------------------------------------------------------------
@pytest.mark.parametrize("resource,kind,unit", [
    ("cpu_seconds", "counter", "s"), ("memory_byte_seconds", "counter", "B*s"),
    ("disk_byte_seconds", "counter", "B*s"), ("net_rx_bytes", "counter", "B"),
    ("net_tx_bytes", "counter", "B"), ("memory_peak_bytes", "peak", "B"),
    ("disk_bytes", "gauge", "B"), ("x-requests", "counter", "count"),
    ("x-a_b-9", "counter", "count"),
])
def test_kinds_and_units(resource, kind, unit):
    assert (acct.kind_of(resource), acct.unit_of(resource)) == (kind, unit)


@pytest.mark.parametrize("resource", ["cpu", "x-", "x-UPPER", "x-" + "a" * 41, "y-req", ""])
def test_unknown_resources(resource):
    with pytest.raises(KeyError):
        acct.kind_of(resource)


# -- folding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,values,expected", [
    ("counter", [(1.25, 60), (2.5, 120), (0.25, 90)], 4.0),
    ("peak", [(10, 60), (30, 120), (20, 180)], 30),
    ("gauge", [(10, 60), (30, 180), (20, 120)], 30),     # the latest interval wins
    ("gauge", [(10, 60), (5, 120)], 5),                  # even when smaller
])
def test_fold(kind, values, expected):
    state = None
    for q, at in values:
        state = acct.fold(kind, state, q, at)
    assert state[0] == expected
    assert state[1] == max(at for _, at in values)


@pytest.mark.parametrize("kind,values,across,over_time", [
    ("counter", [1, 2, 3], 6, 6), ("peak", [1, 5, 3], 5, 5), ("gauge", [1, 5, 3], 9, 3),
    ("counter", [], 0, 0),
])
def test_combine(kind, values, across, over_time):
    assert acct.combine(kind, values) == across
    assert acct.combine_over_time(kind, values) == over_time


# -- time and periods ---------------------------------------------------------------------
@pytest.mark.parametrize("text,name,start,end", [
    ("2026-11", "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
    ("2026-12", "2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("2028-02", "2028-02", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"),
    ("2026-11-30", "2026-11-30", "2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"),
    ("2028-02-29", "2028-02-29", "2028-02-29T00:00:00Z", "2028-03-01T00:00:00Z"),
])
def test_periods(text, name, start, end):
    p = acct.parse_period(text)
    assert (p.name, acct.format_time(p.start), acct.format_time(p.end)) == (name, start, end)
    assert p.is_day == (len(text) == 10)


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-02-30", "2027-02-29", "26-11",
                                  "2026-11-1", "2026/11", "", "1969-12", None, "2026-11 "])
def test_bad_periods(text):
    with pytest.raises(ValueError):
        acct.parse_period(text)


@pytest.mark.parametrize("text,ok", [
    ("2026-12-01T12:00:00Z", True), ("2026-12-01T12:00:00", False),
    ("2026-12-01T12:00:00.5Z", False), ("2026-12-01 12:00:00Z", False),
    ("2026-02-30T12:00:00Z", False), ("2026-12-01T24:00:00Z", False),
    ("2026-12-01T12:00:00+01:00", False), ("2026-12-01T12:00:00Z\n", False),
])
def test_timestamps(text, ok):
    if ok:
        assert acct.format_time(acct.parse_time(text)) == text
    else:
        with pytest.raises(ValueError):
            acct.parse_time(text)


def test_an_interval_belongs_to_the_day_it_starts_in():
    e = _entry(start=T0, end=T0 + 120)
    assert (e.day, e.month) == ("2026-11-30", "2026-11")
    assert acct.days_between(T0, T0 + 120) == ["2026-11-30", "2026-12-01"]


# -- the report's checks across fields --------------------------------------------------------
def _report(**over):
    body = {"report_id": "c1:7", "start": "2026-11-01T12:00:00Z",
            "end": "2026-11-01T12:01:00Z", "partitions": [
                {"partition": "p0", "instance_id": "i-1",
                 "usage": [{"resource": "cpu_seconds", "quantity": 1}],
                 "incidents": [{"kind": "promise", "name": "port",
                                "start": "2026-11-01T11:00:00Z"}]}]}
    body.update(over)
    return body


def _problems(body):
    r = UsageReport.from_json(body)
    return acct.report_problems(acct.parse_time(r.start), acct.parse_time(r.end),
                                r.partitions)


P0 = _report()["partitions"][0]


@pytest.mark.parametrize("over,field", [
    ({}, None),
    ({"end": "2026-11-01T12:00:00Z"}, "end"),
    ({"end": "2026-11-01T11:00:00Z"}, "end"),
    ({"partitions": [P0, P0]}, "partitions[1].partition"),
    ({"partitions": [dict(P0, usage=[{"resource": "x-r", "quantity": 1},
                                     {"resource": "x-r", "quantity": 2}])]},
     "partitions[0].usage[1].resource"),
    ({"partitions": [dict(P0, usage=[{"resource": "x-r", "quantity": 1},
                                     {"resource": "x-r", "quantity": 2, "shared": "i-9"}])]},
     None),
    ({"partitions": [dict(P0, incidents=[{"kind": "promise", "name": "a",
                                          "start": "2026-11-01T11:00:00Z",
                                          "end": "2026-11-01T10:00:00Z"}])]},
     "partitions[0].incidents[0].end"),
    ({"partitions": [dict(P0, incidents=[{"kind": "instance", "name": "a",
                                          "start": "2026-11-01T13:00:00Z"}])]},
     "partitions[0].incidents[0].start"),
    ({"partitions": [dict(P0, incidents=P0["incidents"] * 2)]}, "partitions[0].incidents[1]"),
])
def test_report_checks_across_fields(over, field):
    problems = _problems(_report(**over))
    assert [p["field"] for p in problems] == ([] if field is None else [field])


@pytest.mark.parametrize("over,field", [
    ({"report_id": ""}, "report_id"), ({"report_id": "a b"}, "report_id"),
    ({"report_id": "a" * 129}, "report_id"), ({"start": "yesterday"}, "start"),
    ({"partitions": [dict(P0, usage=[{"resource": "cpu_seconds", "quantity": -1}])]},
     "partitions[0].usage[0].quantity"),
    ({"partitions": [dict(P0, usage=[{"resource": "cpu_seconds", "quantity": "1"}])]},
     "partitions[0].usage[0].quantity"),
    ({"partitions": [dict(P0, usage=[{"resource": "gpu", "quantity": 1}])]},
     "partitions[0].usage[0].resource"),
    ({"partitions": [dict(P0, incidents=[{"kind": "alarm", "name": "a",
                                          "start": "2026-11-01T11:00:00Z"}])]},
     "partitions[0].incidents[0].kind"),
    ({"partitions": [dict(P0, incidents=[{"kind": "instance", "name": "a", "detail": "d" * 1025,
                                          "start": "2026-11-01T11:00:00Z"}])]},
     "partitions[0].incidents[0].detail"),
    ({"partitions": [dict(P0, extra=1)]}, "partitions[0].extra"),
    ({"partitions": "p0"}, "partitions"),
])
def test_wire_refusals_name_the_field(over, field):
    with pytest.raises(InvalidInput) as exc:
        UsageReport.from_json(_report(**over))
    assert field in [d["field"] for d in exc.value.details]


# -- prices and amounts ------------------------------------------------------------------------
def _prices(prices, currency="EUR", precision=2):
    body = PriceListBody.from_json({"currency": currency, "prices": prices,
                                    "precision": precision})
    return acct.price_list(body.currency, body.prices, body.precision)


@pytest.mark.parametrize("release,resource,quantity,amount", [
    ("/r/a", "cpu_seconds", 7200, "0.02"),          # * price: 0.01 per 3600 s
    ("/r/b", "cpu_seconds", 7200, "0.10"),          # its own price: 0.05 per 3600 s
    ("/r/b", "cpu_seconds", 1.1, "0.00"),
    ("/r/a", "x-requests", 1000, "1.50"),           # 0.0015 each
    ("/r/a", "x-requests", 1, "0.00"),              # 0.0015 rounds half even to 0.00
    ("/r/a", "disk_bytes", 10, None),               # no price
])
def test_amounts(release, resource, quantity, amount):
    prices, problems = _prices([
        {"resource": "cpu_seconds", "price": "0.01", "per": "3600"},
        {"resource": "cpu_seconds", "price": "0.05", "per": "3600", "release": "/r/b"},
        {"resource": "x-requests", "price": "0.0015"}])
    assert problems == []
    got = prices.amount(release, resource, quantity)
    assert (None if got is None else str(got)) == amount


def test_amounts_are_decimal_exact():
    prices, _ = _prices([{"resource": "x-r", "price": "0.1"}], precision=4)
    assert prices.amount("/r", "x-r", 3) == Decimal("0.3000")
    assert acct.price_list_from_json(prices.to_json()) == prices


@pytest.mark.parametrize("prices,field", [
    ([{"resource": "x-r", "price": "1", "per": "0"}], "prices[0].per"),
    ([{"resource": "x-r", "price": "1"}, {"resource": "x-r", "price": "2"}], "prices[1]"),
])
def test_bad_price_lists(prices, field):
    _, problems = _prices(prices)
    assert [p["field"] for p in problems] == [field]


@pytest.mark.parametrize("body,field", [
    ({"currency": "euro", "prices": []}, "currency"),
    ({"currency": "EUR", "prices": [{"resource": "x-r", "price": "-1"}]}, "prices[0].price"),
    ({"currency": "EUR", "prices": [{"resource": "x-r", "price": 1}]}, "prices[0].price"),
    ({"currency": "EUR", "prices": [{"resource": "cpu", "price": "1"}]}, "prices[0].resource"),
    ({"currency": "EUR", "prices": [], "precision": 9}, "precision"),
])
def test_price_list_wire_refusals(body, field):
    with pytest.raises(InvalidInput) as exc:
        PriceListBody.from_json(body)
    assert field in [d["field"] for d in exc.value.details]


# -- grouping and statements ---------------------------------------------------------------
R1, R2 = "/r/one", "/r/two"
C1, C2 = ("computer", "c1"), ("computer", "c2")


@pytest.mark.parametrize("text,group,field", [
    (None, acct.DEFAULT_GROUP, None), ("", acct.DEFAULT_GROUP, None),
    ("where,release", ("release", "where"), None),
    ("requester", ("requester",), None), ("color", (), "group"),
])
def test_parse_group(text, group, field):
    got, problems = acct.parse_group(text)
    assert got == group and [p["field"] for p in problems] == ([field] if field else [])


ROWS = [
    ((R1, "default", C1, "person/a"), "cpu_seconds", 10.0),
    ((R1, "default", C2, "person/a"), "cpu_seconds", 5.0),
    ((R1, "default", C1, "person/a"), "memory_peak_bytes", 100.0),
    ((R1, "default", C2, "person/a"), "memory_peak_bytes", 300.0),
    ((R1, "default", C1, "person/a"), "disk_bytes", 7.0),
    ((R1, "default", C2, "person/a"), "disk_bytes", 8.0),
    ((R2, "db", C1, "i-parent"), "cpu_seconds", 1.0),
]
COUNTS = [((R1, "default", C1, "person/a"), 2), ((R1, "default", C2, "person/a"), 1),
          ((R2, "db", C1, "i-parent"), 1)]


@pytest.mark.parametrize("group,lines", [
    (("release", "software_type", "where"), [
        ((R1, "default", "c1"), 2, {"cpu_seconds": 10, "memory_peak_bytes": 100,
                                    "disk_bytes": 7}),
        ((R1, "default", "c2"), 1, {"cpu_seconds": 5, "memory_peak_bytes": 300,
                                    "disk_bytes": 8}),
        ((R2, "db", "c1"), 1, {"cpu_seconds": 1})]),
    (("release",), [
        ((R1, None, None), 3, {"cpu_seconds": 15, "memory_peak_bytes": 300,
                               "disk_bytes": 15}),
        ((R2, None, None), 1, {"cpu_seconds": 1})]),
    ((), [((None, None, None), 4, {"cpu_seconds": 16, "memory_peak_bytes": 300,
                                   "disk_bytes": 15})]),
])
def test_statement_lines_combine_by_kind(group, lines):
    doc = acct.statement(ROWS, COUNTS, [((R1, "default", C1, "person/a"), 30)], group, None)
    got = [((ln["release"], ln["software_type"], ln["where"] and ln["where"]["name"]),
            ln["instances"], {u["resource"]: u["quantity"] for u in ln["usage"]})
           for ln in doc["lines"]]
    assert got == lines
    assert {u["resource"]: u["quantity"] for u in doc["totals"]["usage"]} == {
        "cpu_seconds": 16, "memory_peak_bytes": 300, "disk_bytes": 15}
    assert doc["totals"]["incidents"] == {"count": 1, "seconds": 30}
    assert "amount" not in doc["totals"]


def test_statement_amounts():
    prices, _ = _prices([{"resource": "cpu_seconds", "price": "0.5"},
                         {"resource": "cpu_seconds", "price": "2", "release": R2}])
    doc = acct.statement(ROWS, COUNTS, [], ("release",), prices)
    assert [ln["amount"] for ln in doc["lines"]] == ["7.50", "2.00"]
    assert doc["totals"]["amount"] == "9.50"
    usage = {u["resource"]: u["amount"] for u in doc["lines"][0]["usage"]}
    assert usage == {"cpu_seconds": "7.50", "disk_bytes": None, "memory_peak_bytes": None}


@pytest.mark.parametrize("start,end,expected", [
    (0, 50, 0), (50, 150, 50), (100, 200, 100), (150, 250, 50), (250, 300, 0), (90, 90, 0),
])
def test_overlap(start, end, expected):
    assert acct.overlap(start, end, 100, 200) == expected


# -- the ledger (model.accounting), without a database ----------------------------------------
def _entry(**over):
    base = dict(instance_id="i-1", reference="web", tree_root="i-1", requester="person/a",
                owner="person/a", release=R1, software_type="default",
                where_kind="computer", where="c1", resource="cpu_seconds", quantity=1.0,
                start=T0, end=T0 + 60)
    base.update(over)
    return acct.UsageEntry(**base)


def test_ledger_rolls_up_by_instance_and_group():
    ledger = Ledger()
    for iid, q, at in (("i-1", 10, 60), ("i-1", 20, 120), ("i-2", 5, 60)):
        for resource in ("cpu_seconds", "disk_bytes", "memory_peak_bytes"):
            ledger.record(_entry(instance_id=iid, resource=resource, quantity=q,
                                 end=T0 + at))
    # i-1's disk gauge went 10 -> 20: the group's sum is 20 + 5, not 35
    rows = {(r, dims[2]): v for dims, r, v in ledger.rollup_rows("person/a", "2026-11-30")}
    assert rows == {("cpu_seconds", C1): 35, ("disk_bytes", C1): 25,
                    ("memory_peak_bytes", C1): 20}
    assert list(ledger.count_rows("person/a", "2026-11")) == [((R1, "default", C1,
                                                               "person/a"), 2)]
    assert sorted(ledger.usage_of("person/a", "2026-11", "i-1")) == [
        (C1, "cpu_seconds", 30), (C1, "disk_bytes", 20), (C1, "memory_peak_bytes", 20)]
    assert list(ledger.days_of("i-1", "2026-11-01", "2026-11-30")) == ["2026-11-30"]
    assert list(ledger.rollup_rows("person/b", "2026-11")) == []


def test_incidents_merge_on_instance_kind_name_start():
    ledger = Ledger()
    dims = (R1, "default", C1, "person/a")
    ledger.record_incident("i-1", "promise", "port", T0, None, "down", "person/a", dims,
                           T0 + 60)
    ledger.record_incident("i-1", "promise", "port", T0, None, "down", "person/a", dims,
                           T0 + 120)
    ledger.record_incident("i-1", "promise", "port", T0, T0 + 90, "up", "person/a", dims,
                           T0 + 180)
    ledger.record_incident("i-1", "promise", "port", T0 + 500, None, "", "person/a", dims,
                           T0 + 560)
    recs = list(ledger.incidents_of_instance("i-1"))
    assert [(r.start - T0, r.until - T0, r.detail) for r in recs] == [(0, 90, "up"),
                                                                      (500, 560, "")]
    assert len(list(ledger.incidents_of("person/a", T0 + 501))) == 2
    assert len(list(ledger.incidents_of("person/a", T0 + 500))) == 1
