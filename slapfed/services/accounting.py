"""Use cases of accounting: ingest a node's usage report, statements, an instance's
usage, the price list.

Depends on core (accounting, errors, wire), model.accounting and services.tx. Ingestion
is ONE write transaction: every partition entry is checked first (a bad one raises
InvalidInput naming its field, and nothing is written), then the report id is kept and
the entries folded into the ledger (model.accounting.Ledger). Reads never write.
"""
from __future__ import annotations

from ..core import accounting as acct
from ..core.errors import InvalidInput, NotFound
from ..core.states import DESTROYED
from ..core.wire import PriceListBody, UsageReport
from .tx import clock, read, write

# A report may still speak of an instance that left its partition this long ago (its
# last interval there, reported after it was destroyed or moved away).
RECENT = 86400


def _tree_root(app, inst) -> str:
    seen, top = set(), inst
    while top.parent is not None and top.parent in app.instances and top.id not in seen:
        seen.add(top.id)
        top = app.instances[top.parent]
    return top.id


def _was_there(app, ledger, cid: str, pid: str, part, iid: str, start: int) -> bool:
    """Is (or recently was) ``iid`` the instance of partition ``pid`` of ``cid``?"""
    if part.instance_id == iid or part.moved_instance == iid:
        return True
    inst = app.instances.get(iid)
    if inst is not None:
        if inst.computer_id == cid and inst.partition_id == pid:
            return True
        return (inst.last_placement == (cid, pid) and inst.partition_id is None
                and start <= (inst.updated_at or 0) + RECENT)
    subject = ledger.subjects.get(iid)       # the instance record itself is gone
    return (subject is not None and subject.where == cid and subject.partition == pid
            and subject.last_day is not None
            and start <= acct.parse_period(subject.last_day).end + RECENT)


def _subject_facts(app, ledger, iid: str, cid: str, pid: str | None) -> dict | None:
    inst = app.instances.get(iid)
    if inst is None:
        subject = ledger.subjects.get(iid)
        if subject is None:
            return None
        return {"reference": subject.reference, "requester": subject.requester,
                "owner": subject.owner, "tree_root": subject.tree_root,
                "release": subject.release, "software_type": subject.software_type}
    return {"reference": inst.reference, "requester": inst.requester, "owner": inst.owner,
            "tree_root": _tree_root(app, inst), "release": inst.software_url,
            "software_type": inst.software_type}


def _hosts(app, ledger, host_id: str, sid: str) -> bool:
    host = app.instances.get(host_id)
    if host is not None and sid in host.shared_ids:
        return True
    shared = app.instances.get(sid)
    return shared is not None and shared.shared and (
        shared.host_id == host_id or shared.host_id is None)


def ingest(rt, computer_id: str, report: UsageReport) -> dict:
    """Record a node's usage report once. Returns the acknowledgement
    ({"accepted", "duplicate"}); raises NotFound (no such computer) or InvalidInput
    naming every bad field (nothing written)."""
    start, end = acct.parse_time(report.start), acct.parse_time(report.end)
    problems = acct.report_problems(start, end, report.partitions)
    if problems:
        raise _invalid(problems)

    def use_case(app):
        ledger = app.ledger
        if ledger.has_report(computer_id, report.report_id):
            return {"accepted": False, "duplicate": True}
        comp = app.computers.get(computer_id)
        if comp is None:
            raise NotFound(f"no computer with id {computer_id!r}")
        bad: list = []
        if len(report.partitions) > len(comp.partitions):
            bad.append({"field": "partitions", "problem": f"{len(report.partitions)} "
                        f"entries, computer {computer_id} has {len(comp.partitions)} "
                        "partitions"})
        entries, incidents, subjects = [], [], {}
        for i, p in enumerate(report.partitions):
            part = comp.partitions.get(p.partition)
            if part is None:
                bad.append({"field": f"partitions[{i}].partition",
                            "problem": f"computer {computer_id} has no partition "
                                       f"{p.partition!r}"})
                continue
            if not _was_there(app, ledger, computer_id, p.partition, part, p.instance_id,
                              start):
                bad.append({"field": f"partitions[{i}].instance_id",
                            "problem": f"{p.instance_id!r} is not (and was not recently) "
                                       f"the instance of partition {p.partition}"})
                continue
            facts = _subject_facts(app, ledger, p.instance_id, computer_id, p.partition)
            if facts is None:
                bad.append({"field": f"partitions[{i}].instance_id",
                            "problem": f"no instance {p.instance_id!r}"})
                continue
            subjects[p.instance_id] = (facts, p.partition)
            for j, u in enumerate(p.usage):
                target, tfacts = p.instance_id, facts
                if u.shared is not None:
                    if not _hosts(app, ledger, p.instance_id, u.shared):
                        bad.append({"field": f"partitions[{i}].usage[{j}].shared",
                                    "problem": f"{u.shared!r} is not a shared instance "
                                               f"hosted by {p.instance_id}"})
                        continue
                    target = u.shared
                    tfacts = _subject_facts(app, ledger, u.shared, computer_id, None)
                    subjects.setdefault(target, (tfacts, None))
                entries.append(acct.UsageEntry(
                    instance_id=target, reference=tfacts["reference"],
                    tree_root=tfacts["tree_root"], requester=tfacts["requester"],
                    owner=tfacts["owner"], release=tfacts["release"],
                    software_type=tfacts["software_type"], where_kind=acct.WHERE_COMPUTER,
                    where=computer_id, resource=u.resource, quantity=u.quantity,
                    start=start, end=end, shared=u.shared, report_id=report.report_id))
            for inc in p.incidents:
                incidents.append((p.instance_id, facts, inc))
        if bad:
            raise _invalid(bad)
        ledger.accept_report(computer_id, report.report_id, clock())
        day = acct.day_of(start)
        for iid, (facts, pid) in subjects.items():
            subject = ledger.subject(iid)
            subject.update(where_kind=acct.WHERE_COMPUTER, where=computer_id,
                           **({"partition": pid} if pid is not None else {}), **facts)
            if subject.first_day is None or day < subject.first_day:
                subject.first_day = day
            if subject.last_day is None or day > subject.last_day:
                subject.last_day = day
        for entry in entries:
            ledger.record(entry)
        for iid, facts, inc in incidents:
            dims = (facts["release"], facts["software_type"],
                    (acct.WHERE_COMPUTER, computer_id), facts["requester"])
            ledger.record_incident(iid, inc.kind, inc.name, acct.parse_time(inc.start),
                                   None if inc.end is None else acct.parse_time(inc.end),
                                   inc.detail or "", facts["owner"], dims, end)
        return {"accepted": True, "duplicate": False}

    return write(rt, use_case)


def _invalid(problems: list[dict]) -> InvalidInput:
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InvalidInput(f"invalid usage report: {first['field']} {first['problem']}{more}",
                        problems)


# -- statements ------------------------------------------------------------------------
def parse_statement_query(args: dict, default_owner: str | None) -> tuple[str, acct.Period,
                                                                         tuple]:
    """(owner, period, group) from a statement's query (owner=, peer=, period=, group=);
    InvalidInput naming every bad one."""
    problems = [{"field": k, "problem": "unknown parameter (known: owner, peer, period, "
                                        "group)"}
                for k in args if k not in ("owner", "peer", "period", "group")]
    owner, peer = args.get("owner"), args.get("peer")
    if owner is not None and peer is not None:
        problems.append({"field": "peer", "problem": "give owner or peer, not both"})
    if peer is not None:
        owner = f"master/{peer}"
    if owner is None:
        owner = default_owner
    if not owner:
        problems.append({"field": "owner", "problem": "is required (or peer)"})
    elif len(owner) > 200 or any(ord(c) < 32 for c in owner):
        problems.append({"field": "owner", "problem": "is not a principal name"})
    period = None
    if args.get("period") is None:
        problems.append({"field": "period", "problem": "is required: a month YYYY-MM or a "
                                                       "day YYYY-MM-DD"})
    else:
        try:
            period = acct.parse_period(args["period"])
        except ValueError as exc:
            problems.append({"field": "period", "problem": str(exc)})
    group, bad = acct.parse_group(args.get("group"))
    problems += bad
    if problems:
        first = problems[0]
        raise InvalidInput(f"invalid statement query: {first['field']} {first['problem']}",
                           problems)
    return owner, period, group


def statement(conn, owner: str, period: acct.Period, group: tuple) -> dict:
    """The statement of ``owner`` for ``period`` (lines grouped by ``group``), with
    amounts when a price list is set. Reads the rollup: a few rows per group."""

    def query(app):
        ledger = app.ledger
        rows = list(ledger.rollup_rows(owner, period.name))
        counts = list(ledger.count_rows(owner, period.name))
        incidents = []
        for rec in ledger.incidents_of(owner, period.end):
            seconds = acct.overlap(rec.start, rec.until, period.start, period.end)
            if seconds > 0 or period.start <= rec.start < period.end:
                incidents.append((rec.dims, seconds))
        prices = acct.price_list_from_json(ledger.prices)
        body = acct.statement(rows, counts, incidents, group, prices)
        return {"owner": owner, "period": period.name,
                "start": acct.format_time(period.start), "end": acct.format_time(period.end),
                "group": list(group), "currency": prices.currency if prices else None,
                **body}

    return read(conn, query)


def owner_of_usage(conn, instance_id: str) -> tuple[str, str] | None:
    """(requester, owner) of an instance as the ledger or the instance records say;
    None when neither knows it."""
    def query(app):
        inst = app.instances.get(instance_id)
        if inst is not None:
            return inst.requester, inst.owner
        subject = app.ledger.subjects.get(instance_id)
        return None if subject is None else (subject.requester, subject.owner)
    return read(conn, query)


def instance_usage(conn, instance_id: str, since: str | None, until: str | None,
                   now: float | None = None) -> dict:
    """An instance's usage per day from ``since`` to ``until`` (days YYYY-MM-DD,
    inclusive; default: the last 30 days), totals, and its incidents then. A destroyed
    instance's history stays. Raises NotFound, InvalidInput."""
    now = int(clock() if now is None else now)
    problems = []
    bounds = {}
    for name, value, default in (("since", since, acct.day_of(now - 29 * 86400)),
                                 ("until", until, acct.day_of(now))):
        try:
            bounds[name] = acct.parse_period(value if value is not None else default)
            if not bounds[name].is_day:
                raise ValueError("must be a day YYYY-MM-DD")
        except ValueError as exc:
            problems.append({"field": name, "problem": str(exc)})
    if not problems and bounds["since"].start > bounds["until"].start:
        problems.append({"field": "until", "problem": "must not be before since"})
    if problems:
        first = problems[0]
        raise InvalidInput(f"invalid usage query: {first['field']} {first['problem']}",
                           problems)
    lo, hi = bounds["since"], bounds["until"]

    def query(app):
        ledger = app.ledger
        inst = app.instances.get(instance_id)
        subject = ledger.subjects.get(instance_id)
        if inst is None and subject is None:
            raise NotFound(f"no instance with id {instance_id!r}")
        facts = _subject_facts(app, ledger, instance_id, "", None)
        days, totals = [], {}
        for day in ledger.days_of(instance_id, lo.name, hi.name):
            by_where: dict = {}
            for where, resource, value in ledger.usage_of(facts["owner"], day, instance_id):
                by_where.setdefault(where, {})[resource] = value
                totals.setdefault(resource, []).append(value)
            for where, usage in sorted(by_where.items()):
                days.append({"day": day, "where": acct.where_json(where),
                             "usage": _quantities(usage)})
        incidents = []
        for rec in ledger.incidents_of_instance(instance_id):
            seconds = acct.overlap(rec.start, rec.until, lo.start, hi.end)
            if seconds > 0 or lo.start <= rec.start < hi.end:
                incidents.append({"kind": rec.kind, "name": rec.name,
                                  "start": acct.format_time(rec.start),
                                  "end": None if rec.end is None else acct.format_time(rec.end),
                                  "detail": rec.detail, "seconds": seconds})
        return {"instance_id": instance_id, "reference": facts["reference"],
                "owner": facts["owner"], "requester": facts["requester"],
                "release": facts["release"], "software_type": facts["software_type"],
                "destroyed": inst is None or inst.requested_state == DESTROYED,
                "since": lo.name, "until": hi.name, "days": days,
                "totals": _quantities({r: acct.combine_over_time(acct.kind_of(r), v)
                                       for r, v in totals.items()}),
                "incidents": incidents}

    return read(conn, query)


def _quantities(usage: dict) -> list[dict]:
    return [{"resource": r, "kind": acct.kind_of(r), "unit": acct.unit_of(r),
             "quantity": q} for r, q in sorted(usage.items())]


# -- the price list ----------------------------------------------------------------------
def set_prices(rt, body: PriceListBody) -> dict:
    """Replace the price list (admins); InvalidInput naming every bad price."""
    prices, problems = acct.price_list(body.currency, body.prices, body.precision)
    if problems:
        first = problems[0]
        raise InvalidInput(f"invalid price list: {first['field']} {first['problem']}",
                           problems)
    doc = prices.to_json()

    def use_case(app):
        app.ledger.prices = doc
        return doc

    return write(rt, use_case)


def show_prices(conn) -> dict:
    doc = read(conn, lambda app: app.ledger.prices)
    return doc or {"currency": None, "precision": None, "prices": []}
