"""Accounting, pure: resources and how they aggregate, periods, usage entries, statement
lines, price lists and amounts.

Depends on the standard library only (decimal: amounts; dates are computed here, no
clock is read). No I/O, no model: the ledger
(model.accounting) stores what :func:`fold` computes, the services read it back and
:func:`statement` shapes it.

Resources (the usage report, see README "Accounting"): each has a kind that says how
values of one instance and of many combine over a period:

- ``counter``: summed (cpu_seconds, memory_byte_seconds, disk_byte_seconds,
  net_rx_bytes, net_tx_bytes, and every instance-defined ``x-<name>`` unit);
- ``peak``: the maximum (memory_peak_bytes);
- ``gauge``: the last value in the period (disk_bytes); over several instances, the sum
  of each one's last value.

An interval reported (start, end) belongs to the UTC day (and month) its start falls in.
Periods are written ``YYYY-MM`` (a month) or ``YYYY-MM-DD`` (a day).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

COUNTER, PEAK, GAUGE = "counter", "peak", "gauge"
KINDS = (COUNTER, PEAK, GAUGE)
# resource -> (kind, unit)
RESOURCES = {
    "cpu_seconds": (COUNTER, "s"),
    "memory_byte_seconds": (COUNTER, "B*s"),
    "disk_byte_seconds": (COUNTER, "B*s"),
    "net_rx_bytes": (COUNTER, "B"),
    "net_tx_bytes": (COUNTER, "B"),
    "memory_peak_bytes": (PEAK, "B"),
    "disk_bytes": (GAUGE, "B"),
}
CUSTOM_PREFIX = "x-"
CUSTOM_RE = re.compile(r"^x-[a-z0-9_-]{1,40}\Z")
RESOURCE_PATTERN = ("^(?:" + "|".join(sorted(RESOURCES)) + r"|x-[a-z0-9_-]{1,40})$")
REPORT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
TIMESTAMP_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z")
INCIDENT_KINDS = ("promise", "instance")
WHERE_KINDS = ("computer", "peer")      # where usage was measured: here, or at a peer
WHERE_COMPUTER, WHERE_PEER = WHERE_KINDS
GROUP_KEYS = ("release", "software_type", "where", "requester")
DEFAULT_GROUP = ("release", "software_type", "where")
MAX_DETAIL = 1024
DAY_RE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
MONTH_RE = re.compile(r"^([0-9]{4})-([0-9]{2})\Z")


def kind_of(resource: str) -> str:
    """The kind of a resource name (custom units are counters); KeyError if unknown."""
    if resource in RESOURCES:
        return RESOURCES[resource][0]
    if CUSTOM_RE.match(resource):
        return COUNTER
    raise KeyError(resource)


def unit_of(resource: str) -> str:
    return RESOURCES[resource][1] if resource in RESOURCES else "count"


# -- time (UTC, proleptic Gregorian calendar, UNIX seconds) ---------------------------------
def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _date_ok(y: int, m: int, d: int) -> bool:
    return y >= 1970 and 1 <= m <= 12 and 1 <= d <= _month_days(y, m)


def parse_time(text: str) -> int:
    """``2026-12-01T12:00:00Z`` -> UNIX seconds; ValueError when it is not one."""
    if not isinstance(text, str) or not TIMESTAMP_RE.match(text):
        raise ValueError(f"must be a UTC time written YYYY-MM-DDTHH:MM:SSZ, got {text!r}")
    y, m, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
    hh, mm, ss = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if not _date_ok(y, m, d) or hh > 23 or mm > 59 or ss > 59:
        raise ValueError(f"is not a valid date and time: {text!r}")
    return _days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss


def format_time(seconds: int | float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    y, m, d = _civil_from_days(days)
    return (f"{y:04d}-{m:02d}-{d:02d}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:"
            f"{rest % 60:02d}Z")


def day_of(seconds: int) -> str:
    y, m, d = _civil_from_days(int(seconds) // 86400)
    return f"{y:04d}-{m:02d}-{d:02d}"


def month_of(seconds: int) -> str:
    return day_of(seconds)[:7]


@dataclass(frozen=True)
class Period:
    """A day or a month: its name and its bounds [start, end) in UNIX seconds."""

    name: str
    start: int
    end: int

    @property
    def is_day(self) -> bool:
        return len(self.name) == 10

    def to_json(self) -> dict:
        return {"period": self.name, "start": format_time(self.start),
                "end": format_time(self.end)}


def parse_period(text: str) -> Period:
    """``2026-11`` (a month) or ``2026-11-30`` (a day); ValueError naming the problem."""
    if not isinstance(text, str):
        raise ValueError("must be a month YYYY-MM or a day YYYY-MM-DD")
    m = MONTH_RE.match(text)
    if m:
        year, month = int(m.group(1)), int(m.group(2))
        if not _date_ok(year, month, 1):
            raise ValueError(f"{text!r} is not a month")
        start = _days_from_civil(year, month, 1) * 86400
        return Period(text, start, start + _month_days(year, month) * 86400)
    d = DAY_RE.match(text)
    if d:
        year, month, day = int(d.group(1)), int(d.group(2)), int(d.group(3))
        if not _date_ok(year, month, day):
            raise ValueError(f"{text!r} is not a day")
        start = _days_from_civil(year, month, day) * 86400
        return Period(text, start, start + 86400)
    raise ValueError(f"must be a month YYYY-MM or a day YYYY-MM-DD, got {text!r}")


def days_between(start: int, end: int) -> list[str]:
    """The UTC days touched by [start, end) (at least the day of ``start``)."""
    out, t = [], start - start % 86400
    while True:
        out.append(day_of(t))
        t += 86400
        if t >= end:
            return out


# -- entries and folding --------------------------------------------------------------------
@dataclass(frozen=True)
class UsageEntry:
    """One resource of one instance over one interval, with what it belongs to."""

    instance_id: str
    reference: str
    tree_root: str
    requester: str
    owner: str
    release: str
    software_type: str
    where_kind: str
    where: str
    resource: str
    quantity: float
    start: int
    end: int
    shared: str | None = None
    report_id: str = ""

    @property
    def kind(self) -> str:
        return kind_of(self.resource)

    @property
    def day(self) -> str:
        return day_of(self.start)

    @property
    def month(self) -> str:
        return month_of(self.start)

    def group(self) -> tuple:
        """The statement dimensions of this entry (GROUP_KEYS order)."""
        return (self.release, self.software_type, (self.where_kind, self.where),
                self.requester)


# A value folded over a period: (quantity, at) -- ``at`` (the end of the interval the
# value came from) decides which gauge value is last.
def fold(kind: str, old: tuple | None, quantity: float, at: int) -> tuple:
    """The value of a period after one more interval ending at ``at``."""
    if old is None:
        return (float(quantity), at)
    value, last = old
    if kind == COUNTER:
        return (value + quantity, max(last, at))
    if kind == PEAK:
        return (max(value, quantity), max(last, at))
    if at >= last:                                  # gauge: the latest interval wins
        return (float(quantity), at)
    return old


def combine(kind: str, values) -> float:
    """Many instances' (or groups') values of one resource over one period."""
    values = list(values)
    if not values:
        return 0.0
    if kind == PEAK:
        return max(values)
    return sum(values)                 # counters; gauges: the sum of each one's last


def combine_over_time(kind: str, values) -> float:
    """One instance's values of consecutive periods (in order) as one value."""
    values = list(values)
    if not values:
        return 0.0
    if kind == COUNTER:
        return sum(values)
    if kind == PEAK:
        return max(values)
    return values[-1]


def gauge_delta(old: tuple | None, new: tuple) -> float:
    """What a group's gauge sum moves by when one instance's last value goes old -> new."""
    return new[0] - (old[0] if old is not None else 0.0)


# -- report checks the wire types cannot make -----------------------------------------------
def report_problems(start: int, end: int, partitions) -> list[dict]:
    """Problems across fields of a usage report (``partitions``: its partition entries,
    with ``partition``, ``usage`` (resource, shared) and ``incidents`` (kind, name, start,
    end)): start < end, one entry per partition, one value per resource and shared id,
    incidents that end after they start."""
    out = []
    if start >= end:
        out.append({"field": "end", "problem": "must be after start"})
    seen = set()
    for i, p in enumerate(partitions):
        if p.partition in seen:
            out.append({"field": f"partitions[{i}].partition",
                        "problem": f"{p.partition!r} is reported twice"})
        seen.add(p.partition)
        resources = set()
        for j, u in enumerate(p.usage):
            key = (u.resource, u.shared)
            if key in resources:
                out.append({"field": f"partitions[{i}].usage[{j}].resource",
                            "problem": f"{u.resource!r} is reported twice"
                                       + (f" for shared {u.shared!r}" if u.shared else "")})
            resources.add(key)
        incidents = set()
        for j, inc in enumerate(p.incidents):
            s = parse_time(inc.start)
            if inc.end is not None and parse_time(inc.end) < s:
                out.append({"field": f"partitions[{i}].incidents[{j}].end",
                            "problem": "must not be before start"})
            if s > end:
                out.append({"field": f"partitions[{i}].incidents[{j}].start",
                            "problem": "must not be after the report's end"})
            key = (inc.kind, inc.name, inc.start)
            if key in incidents:
                out.append({"field": f"partitions[{i}].incidents[{j}]",
                            "problem": "the same incident (kind, name, start) is given twice"})
            incidents.add(key)
    return out


# -- price lists and amounts ----------------------------------------------------------------
ANY_RELEASE = "*"
CURRENCY_RE = re.compile(r"^[A-Z]{3}\Z")
MAX_PRECISION = 8


@dataclass(frozen=True)
class Price:
    """``price`` (in the list's currency) for every ``per`` units of ``resource`` used by
    instances of ``release`` (ANY_RELEASE: every release without a price of its own)."""

    release: str
    resource: str
    price: Decimal
    per: Decimal = Decimal(1)

    def to_json(self) -> dict:
        return {"release": self.release, "resource": self.resource,
                "price": str(self.price), "per": str(self.per)}


@dataclass(frozen=True)
class PriceList:
    currency: str
    prices: tuple = ()
    precision: int = 2          # decimal places amounts are rounded to (half even)

    def price_of(self, release: str, resource: str) -> Price | None:
        found = None
        for p in self.prices:
            if p.resource != resource:
                continue
            if p.release == release:
                return p
            if p.release == ANY_RELEASE:
                found = p
        return found

    def amount(self, release: str, resource: str, quantity: float) -> Decimal | None:
        """The amount of ``quantity`` units (None: no price for it)."""
        p = self.price_of(release, resource)
        if p is None:
            return None
        value = decimal_of(quantity) / p.per * p.price
        return value.quantize(Decimal(1).scaleb(-self.precision), rounding=ROUND_HALF_EVEN)

    def to_json(self) -> dict:
        return {"currency": self.currency, "precision": self.precision,
                "prices": [p.to_json() for p in self.prices]}


def decimal_of(quantity: float) -> Decimal:
    """A quantity as the decimal it prints as (1.1 is 1.1, not its binary value)."""
    return Decimal(repr(float(quantity)))


def parse_decimal(text, field: str, positive: bool = False) -> tuple[Decimal | None, list]:
    if not isinstance(text, str) or not re.match(r"^[0-9]{1,15}(?:\.[0-9]{1,12})?\Z", text):
        return None, [{"field": field, "problem": "must be a decimal number written as a "
                                                  "string, e.g. \"0.0125\""}]
    try:
        value = Decimal(text)
    except InvalidOperation:      # pragma: no cover - the pattern already refused it
        return None, [{"field": field, "problem": "is not a decimal number"}]
    if positive and value <= 0:
        return None, [{"field": field, "problem": "must be more than 0"}]
    return value, []


def price_list(currency: str, prices, precision: int = 2) -> tuple[PriceList | None, list]:
    """A PriceList from validated wire values (``prices``: objects with release,
    resource, price, per), or the problems found (duplicates, bad decimals)."""
    problems, out, seen = [], [], set()
    for i, p in enumerate(prices):
        value, bad = parse_decimal(p.price, f"prices[{i}].price")
        per, bad2 = parse_decimal(p.per if p.per is not None else "1", f"prices[{i}].per",
                                  positive=True)
        problems += bad + bad2
        key = (p.release, p.resource)
        if key in seen:
            problems.append({"field": f"prices[{i}]",
                             "problem": f"a second price for {p.resource} of {p.release}"})
        seen.add(key)
        if not bad and not bad2:
            out.append(Price(p.release, p.resource, value, per))
    if problems:
        return None, problems
    return PriceList(currency, tuple(out), precision), []


def price_list_from_json(doc: dict | None) -> PriceList | None:
    """The stored form (PriceList.to_json) back; None for none."""
    if not doc:
        return None
    return PriceList(doc["currency"], tuple(
        Price(p["release"], p["resource"], Decimal(p["price"]), Decimal(p["per"]))
        for p in doc["prices"]), int(doc.get("precision", 2)))


# -- statements ------------------------------------------------------------------------------
@dataclass
class Line:
    """One statement line: a group (its dimensions) and what it used."""

    key: tuple
    usage: dict = field(default_factory=dict)         # resource -> quantity
    instances: int = 0
    incidents: int = 0
    incident_seconds: int = 0


def where_json(where) -> dict | None:
    if where is None:
        return None
    kind, name = where
    return {"kind": kind, "name": name}


def group_key(dims: tuple, group: tuple) -> tuple:
    """The dimensions ``dims`` (GROUP_KEYS order) kept by ``group``; None elsewhere."""
    return tuple(d if k in group else None for k, d in zip(GROUP_KEYS, dims))


def parse_group(text: str | None) -> tuple[tuple, list]:
    if text is None or text == "":
        return DEFAULT_GROUP, []
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in GROUP_KEYS]
    if bad:
        return (), [{"field": "group", "problem": f"unknown dimension {bad[0]!r} (known: "
                                                  f"{', '.join(GROUP_KEYS)})"}]
    return tuple(k for k in GROUP_KEYS if k in names), []


def statement(rows, counts, incidents, group: tuple, prices: PriceList | None) -> dict:
    """Statement lines and totals from the ledger's rows of one owner and period.

    ``rows``: (dims, resource, quantity) per group of the rollup (dims in GROUP_KEYS
    order); ``counts``: (dims, instances): how many instances reported in that group;
    ``incidents``: (dims, seconds) per incident overlapping the period. Rows of dims
    that ``group`` leaves out are combined by each resource's kind."""
    lines: dict = {}
    parts: dict = {}
    for dims, resource, quantity in rows:
        key = group_key(dims, group)
        lines.get(key) or lines.setdefault(key, Line(key))
        parts.setdefault((key, resource), []).append(quantity)
    for (key, resource), values in parts.items():
        lines[key].usage[resource] = combine(kind_of(resource), values)
    for dims, instances in counts:
        key = group_key(dims, group)
        line = lines.get(key) or lines.setdefault(key, Line(key))
        line.instances += instances
    for dims, seconds in incidents:
        key = group_key(dims, group)
        line = lines.get(key) or lines.setdefault(key, Line(key))
        line.incidents += 1
        line.incident_seconds += seconds
    out_lines = []
    totals: dict = {}
    total_amount = Decimal(0) if prices else None
    for key in sorted(lines, key=_sort_key):
        line = lines[key]
        release = key[0]
        usage, amount = [], (Decimal(0) if prices else None)
        for resource in sorted(line.usage):
            quantity = line.usage[resource]
            item = {"resource": resource, "kind": kind_of(resource),
                    "unit": unit_of(resource), "quantity": quantity}
            if prices is not None:
                a = prices.amount(release or "", resource, quantity) if release else None
                item["amount"] = None if a is None else str(a)
                if a is not None:
                    amount += a
            usage.append(item)
            totals.setdefault(resource, []).append(quantity)
        entry = {"release": key[0], "software_type": key[1], "where": where_json(key[2]),
                 "requester": key[3], "instances": line.instances, "usage": usage,
                 "incidents": {"count": line.incidents, "seconds": line.incident_seconds}}
        if prices is not None:
            entry["amount"] = str(amount)
            total_amount += amount
        out_lines.append(entry)
    total_usage = [{"resource": r, "kind": kind_of(r), "unit": unit_of(r),
                    "quantity": combine(kind_of(r), v)} for r, v in sorted(totals.items())]
    out = {"lines": out_lines, "totals": {
        "usage": total_usage,
        "incidents": {"count": sum(line.incidents for line in lines.values()),
                      "seconds": sum(line.incident_seconds for line in lines.values())}}}
    if prices is not None:
        out["totals"]["amount"] = str(total_amount)
    return out


def _sort_key(key: tuple) -> tuple:
    return tuple("" if d is None else (d if isinstance(d, str) else "/".join(d)) for d in key)


def overlap(start: int, end: int, period_start: int, period_end: int) -> int:
    """Seconds of [start, end) inside [period_start, period_end)."""
    return max(0, min(end, period_end) - max(start, period_start))


# -- usage across delegation: the per-peer feed ---------------------------------------------
# A peer master requests here as ``master/<name>``: what its instances use here is
# appended to that owner's feed (one entry per instance and interval), which the peer
# pulls (GET /federation/usage) and records against the instance it delegated.
PEER_PREFIX = "master/"
MAX_FEED_LIMIT = 1000
DEFAULT_FEED_LIMIT = 500
MAX_ENTRY_ID = 400
FEED_KEEP = 7 * 86400          # an entry the peer recorded is kept this long, then trimmed
TRIM_BATCH = 5000              # entries trimmed at most per acknowledgement


def peer_of_owner(owner: str | None) -> str | None:
    """The peer master an owner is (``master/b`` -> ``b``); None for anyone else."""
    if isinstance(owner, str) and owner.startswith(PEER_PREFIX) and len(owner) > 7:
        return owner[len(PEER_PREFIX):]
    return None


def feed_entry_id(where_kind: str, where: str, report_id: str, instance_id: str) -> str:
    """The stable id of a feed entry: the computer, its report and the instance (measured
    here), or the peer and its own entry id (relayed from a peer)."""
    if where_kind == WHERE_PEER:
        return f"{where}>{report_id}"
    return f"{where}:{report_id}:{instance_id}"


def relayed_instance_id(local: str, peer: str, remote: str, root: bool) -> str:
    """The id under which an instance of a delegated tree is recorded here: the local
    instance for the tree's root (the one delegated), ``LOCAL@PEER/REMOTE`` for the
    instances the peer made under it (children, each with its own gauges)."""
    return local if root else f"{local}@{peer}/{remote}"


def _finite(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and value == value and value not in (float("inf"), float("-inf")))


def feed_entry_problems(doc: dict) -> list[str]:
    """What is wrong with one entry of a peer's feed (it is the peer's data: checked as
    a report from a node would be); [] when it can be recorded."""
    out = []
    try:
        start, end = parse_time(doc.get("start")), parse_time(doc.get("end"))
        if start >= end:
            out.append("end must be after start")
    except ValueError as exc:
        out.append(f"start/end {exc}")
    if not isinstance(doc.get("id"), str) or not 0 < len(doc["id"]) <= MAX_ENTRY_ID:
        out.append("id must be a string of 1 to 400 characters")
    for name in ("instance_id", "reference", "root_reference", "release", "software_type"):
        if not isinstance(doc.get(name), str) or not doc[name] or len(doc[name]) > 2048:
            out.append(f"{name} must be a non-empty string")
    seen = set()
    for u in doc.get("usage") or ():
        resource = u.get("resource") if isinstance(u, dict) else None
        try:
            kind_of(resource)
        except (KeyError, TypeError):
            out.append(f"unknown resource {resource!r}")
            continue
        if resource in seen:
            out.append(f"{resource} is given twice")
        seen.add(resource)
        if not _finite(u.get("quantity")) or u["quantity"] < 0:
            out.append(f"{resource}: quantity must be a finite number >= 0")
    for inc in doc.get("incidents") or ():
        if not isinstance(inc, dict) or inc.get("kind") not in INCIDENT_KINDS \
                or not isinstance(inc.get("name"), str) or not inc["name"]:
            out.append("an incident needs a kind (promise, instance) and a name")
            continue
        try:
            s = parse_time(inc.get("start"))
            if inc.get("end") is not None and parse_time(inc["end"]) < s:
                out.append(f"incident {inc['name']}: end before start")
        except ValueError as exc:
            out.append(f"incident {inc['name']}: {exc}")
    return out
