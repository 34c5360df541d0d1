"""Use cases of accounting: ingest a node's usage report (native, or a SlapOS journal),
statements, an instance's usage, the price list.

Depends on core (accounting, slap_usage, errors, wire), model.accounting and services.tx.
Ingestion is ONE write transaction: every partition entry is checked first (a bad one
raises InvalidInput naming its field, and nothing is written), then the report id is kept
and the entries folded into the ledger (model.accounting.Ledger). Reads never write.

Across delegation: what the instances a peer master requested here use is appended to
that peer's feed in the same transaction (``_feed_peers``); the peer reads it
(``usage_feed``), acknowledges it by asking after it (``acknowledge_feed``: trimmed a
week later), and records it against the instance it delegated (``record_peer_usage``,
one transaction with its cursor), relaying it to its own origin in turn.
"""
from __future__ import annotations

from ..core import accounting as acct, slap_usage
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
    return write(rt, _ingest_use_case(computer_id, report, start, end))


def _ingest_use_case(computer_id: str, report: UsageReport, start: int, end: int):
    """The use case of ``ingest``: ``report`` checked across its fields already."""
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
        _feed_peers(app, ledger, acct.WHERE_COMPUTER, computer_id, report.report_id,
                    report.start, report.end,
                    [(e.instance_id, subjects[e.instance_id][0],
                      {"resource": e.resource, "quantity": e.quantity}) for e in entries],
                    [(iid, facts, {"kind": inc.kind, "name": inc.name, "start": inc.start,
                                   "end": inc.end, "detail": inc.detail or ""})
                     for iid, facts, inc in incidents])
        return {"accepted": True, "duplicate": False}

    return use_case


def ingest_journal(rt, computer_id: str, data: str, at: int | None = None) -> dict:
    """Record a SlapOS usage journal (SLAP's useComputer, core.slap_usage) as a usage
    report of its node, in ONE write: each movement's partition must be one of the
    computer's and host an instance, which the usage is recorded against (an
    InvalidInput naming the movement otherwise, and nothing written). A journal gives no
    interval: it is recorded over the second before ``at`` (now), its arrival. The same
    journal again is a duplicate. A journal without movements writes nothing."""
    found = slap_usage.movements(data)
    answer = {"accepted": False, "duplicate": False, "movements": len(found)}
    if not found:
        return answer
    usage = slap_usage.per_partition(found)
    first = {}
    for m in found:
        first.setdefault(m.partition, m.index)
    end = int(clock() if at is None else at)
    stamps = {"start": acct.format_time(end - 1), "end": acct.format_time(end)}
    rid = slap_usage.report_id(computer_id, data)

    def use_case(app):
        if app.ledger.has_report(computer_id, rid):     # a retry, whatever moved since
            return {"accepted": False, "duplicate": True}
        comp = app.computers.get(computer_id)
        if comp is None:
            raise NotFound(f"no computer with id {computer_id!r}")
        partitions = []
        for pid, quantities in usage.items():
            part = comp.partitions.get(pid)
            if part is None or part.instance_id is None:
                problem = (f"movement {first[pid]} names {pid[:64]!r}, which is not a "
                           f"partition of computer {computer_id}" if part is None else
                           f"movement {first[pid]} names partition {pid} of computer "
                           f"{computer_id}, which hosts no instance")
                raise slap_usage.invalid(problem)
            partitions.append({"partition": pid, "instance_id": part.instance_id,
                               "usage": [{"resource": r, "quantity": q}
                                         for r, q in sorted(quantities.items())]})
        report = UsageReport.from_json({"report_id": rid, **stamps,
                                        "partitions": partitions})
        return _ingest_use_case(computer_id, report, end - 1, end)(app)

    answer.update(write(rt, use_case))
    return answer


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


# -- usage across delegation ---------------------------------------------------------------
# What a peer's instances use here is appended to that peer's feed in the transaction that
# records it (_feed_peers); the peer pulls it (usage_feed) and records each entry against
# the instance it delegated (record_peer_usage), with the last sequence recorded kept in
# the same transaction: an answer lost, a crash, a retry never lose or count one twice.
def _root_reference(app, ledger, tree_root: str) -> str | None:
    inst = app.instances.get(tree_root)
    if inst is not None:
        return inst.reference
    subject = ledger.subjects.get(tree_root)
    return None if subject is None else subject.reference


def _feed_peers(app, ledger, where_kind: str, where: str, source_id: str, start: str,
                end: str, usage, incidents) -> int:
    """Append, to the feed of each peer master owning one of these instances, one entry
    per instance: ``usage`` (instance id, facts, {resource, quantity}) and ``incidents``
    (instance id, facts, incident JSON) of one interval [start, end], measured at
    (where_kind, where) under ``source_id`` (a report id, or a peer's entry id). Returns
    how many entries were appended."""
    groups: dict = {}
    for iid, facts, item in usage:
        if acct.peer_of_owner(facts["owner"]) is not None:
            groups.setdefault(iid, (facts, [], []))[1].append(item)
    for iid, facts, item in incidents:
        if acct.peer_of_owner(facts["owner"]) is not None:
            groups.setdefault(iid, (facts, [], []))[2].append(item)
    for iid, (facts, items, incs) in groups.items():
        root = facts["tree_root"]
        ledger.feed(facts["owner"], create=True).append({"at": int(clock()),
            "id": acct.feed_entry_id(where_kind, where, source_id, iid),
            "instance_id": iid, "reference": facts["reference"], "root": iid == root,
            "root_reference": _root_reference(app, ledger, root) or facts["reference"],
            "release": facts["release"], "software_type": facts["software_type"],
            "where": {"kind": where_kind, "name": where}, "start": start, "end": end,
            "usage": items, "incidents": incs})
    return len(groups)


def parse_feed_query(args: dict) -> tuple[int, int]:
    """(since, limit) of GET /federation/usage; InvalidInput naming every bad one."""
    problems = [{"field": k, "problem": "unknown parameter (known: since, limit)"}
                for k in args if k not in ("since", "limit")]
    values = {}
    for name, default, low, high in (("since", 0, 0, 2 ** 62),
                                     ("limit", acct.DEFAULT_FEED_LIMIT, 1,
                                      acct.MAX_FEED_LIMIT)):
        raw = args.get(name)
        if raw is None:
            values[name] = default
            continue
        if not (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19
                and low <= int(raw) <= high):
            problems.append({"field": name, "problem": f"must be an integer in {low}..{high}"})
            continue
        values[name] = int(raw)
    if problems:
        first = problems[0]
        raise InvalidInput(f"invalid usage feed query: {first['field']} {first['problem']}",
                           problems)
    return values["since"], values["limit"]


def usage_feed(conn, here: str, owner: str, since: int, limit: int) -> dict:
    """The entries of ``owner``'s feed after sequence ``since`` (at most ``limit``), the
    cursor to ask with next, the feed's newest sequence and whether more follow."""
    def query(app):
        feed = app.ledger.feed(owner)
        last = 0 if feed is None else feed.last
        entries = [] if feed is None else feed.after(since, limit)
        cursor = entries[-1]["seq"] if entries else max(since, 0) if since <= last else last
        return {"master": here, "owner": owner, "cursor": cursor, "last": last,
                "first": last + 1 if feed is None else feed.first,
                "more": bool(entries) and cursor < last,
                "entries": [_feed_json(e) for e in entries]}
    return read(conn, query)


def _feed_json(doc: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in doc.items() if k != "at"}


def acknowledge_feed(rt, owner: str, cursor: int, keep: float = acct.FEED_KEEP) -> int:
    """The peer ``owner`` asked after ``cursor``: it recorded every entry up to there.
    Entries it recorded more than ``keep`` seconds ago are trimmed (a few thousand at a
    time). Writes nothing when that is known already; returns how many were trimmed."""
    def use_case(app):
        feed = app.ledger.feed(owner)
        if feed is None or cursor <= feed.acked:
            return 0
        feed.acked = min(cursor, feed.last)
        return feed.trim(int(clock() - keep), acct.TRIM_BATCH)
    return write(rt, use_case)


def peer_feed_cursor(conn, peer: str) -> int:
    """The last sequence of ``peer``'s usage feed recorded here (0: none)."""
    def query(app):
        state = app.ledger.peer_state(peer)
        return 0 if state is None else state.cursor
    return read(conn, query)


def peer_feed_state(conn, peer: str) -> dict | None:
    def query(app):
        st = app.ledger.peer_state(peer)
        if st is None:
            return None
        return {"cursor": st.cursor, "head": st.head, "recorded": st.recorded,
                "skipped": st.skipped, "last_problem": st.last_problem,
                "pulled_at": st.pulled_at}
    return read(conn, query)


def _local_of(app, peer: str, root_reference: str) -> str | None:
    """The instance here a peer's delegated tree belongs to: the forward table's
    (peer, remote reference), else an orphan recorded when that peer was declared lost."""
    iid = app.forward_refs.get((peer, root_reference)) if app.forward_refs else None
    if iid is not None:
        return iid
    p = app.peers.get(peer)
    for orphan in (p.orphans if p is not None else ()):
        if orphan.get("remote_reference") == root_reference:
            return orphan.get("instance")
    return None


def record_peer_usage(rt, peer: str, answer: dict) -> dict:
    """Record one answer of ``peer``'s usage feed (GET /federation/usage there) in ONE
    transaction: each entry after the cursor recorded here, not recorded before (by its
    id), against the instance delegated there (where = peer), then the cursor. An entry
    that is invalid or of no instance delegated there is skipped and counted. Entries of
    an instance that a peer master requested here are relayed to that master's feed.
    Returns {recorded, skipped, cursor, more}."""
    # at most a page of the largest size asked (a peer answering more: the rest is asked
    # again from the cursor), in sequence order
    entries = sorted(answer.get("entries") or (),
                     key=lambda e: e.get("seq") if isinstance(e.get("seq"), int) else 0)
    entries = entries[:acct.MAX_FEED_LIMIT]
    head = int(answer.get("last") or 0)

    def use_case(app):
        ledger = app.ledger
        state = ledger.peer_state(peer, create=True)
        cursor = state.cursor
        recorded = skipped = 0
        problem = ""
        if head < cursor:
            # the peer's feed went back (its database restored): read it again from the
            # start; the entry ids keep what was recorded from being counted twice
            cursor = 0
            problem = f"the feed went back from {state.cursor} to {head}: read again"
        first = answer.get("first")
        if isinstance(first, int) and cursor + 1 < first <= head:
            # this master's cursor went back (its database restored) past what the peer
            # already trimmed: those entries are gone; say so, go on from what is kept
            problem = (f"entries {cursor + 1} to {first - 1} were trimmed at {peer} "
                       "before being recorded here")
            skipped += first - 1 - cursor
        for doc in entries:
            seq = doc.get("seq")
            if not isinstance(seq, int) or seq <= cursor:
                continue
            cursor = seq
            if ledger.has_peer_entry(peer, doc.get("id")):
                continue
            problems = acct.feed_entry_problems(doc)
            local = None if problems else _local_of(app, peer, doc["root_reference"])
            if not problems and local is None:
                problems = [f"no instance here is delegated to {peer} as "
                            f"{doc['root_reference']!r}"]
            facts = None if problems else _subject_facts(app, ledger, local, "", None)
            if not problems and facts is None:
                problems = [f"instance {local} is not known here any more"]
            if problems:
                skipped += 1
                problem = f"entry {seq} ({str(doc.get('id'))[:100]}): {problems[0]}"
                continue
            ledger.accept_peer_entry(peer, doc["id"], seq)
            _record_remote(app, ledger, peer, local, facts, doc)
            recorded += 1
        state.cursor = cursor
        if state.head != head:
            state.head = head
        if recorded:
            state.recorded += recorded
        if skipped:
            state.skipped += skipped
        if problem and state.last_problem != problem:
            state.last_problem = problem
        state.pulled_at = int(clock())
        return {"recorded": recorded, "skipped": skipped, "cursor": cursor,
                "more": bool(answer.get("more")) or cursor < head, "problem": problem}

    return write(rt, use_case)


def _record_remote(app, ledger, peer: str, local: str, facts: dict, doc: dict) -> None:
    """One peer feed entry into the ledger, against ``local`` (or the instance recorded
    under it for a child the peer made), where = (peer, ``peer``)."""
    start, end = acct.parse_time(doc["start"]), acct.parse_time(doc["end"])
    target = acct.relayed_instance_id(local, peer, doc["instance_id"], bool(doc.get("root")))
    if target == local:
        tfacts = facts
    else:
        tfacts = {"reference": doc["reference"], "requester": local, "owner": facts["owner"],
                  "tree_root": facts["tree_root"], "release": doc["release"],
                  "software_type": doc["software_type"]}
    subject = ledger.subject(target)
    subject.update(where_kind=acct.WHERE_PEER, where=peer, **tfacts)
    day = acct.day_of(start)
    if subject.first_day is None or day < subject.first_day:
        subject.first_day = day
    if subject.last_day is None or day > subject.last_day:
        subject.last_day = day
    usage = []
    for u in doc.get("usage") or ():
        ledger.record(acct.UsageEntry(
            instance_id=target, reference=tfacts["reference"], tree_root=tfacts["tree_root"],
            requester=tfacts["requester"], owner=tfacts["owner"], release=tfacts["release"],
            software_type=tfacts["software_type"], where_kind=acct.WHERE_PEER, where=peer,
            resource=u["resource"], quantity=float(u["quantity"]), start=start, end=end,
            report_id=doc["id"]))
        usage.append((target, tfacts, {"resource": u["resource"],
                                       "quantity": float(u["quantity"])}))
    dims = (tfacts["release"], tfacts["software_type"], (acct.WHERE_PEER, peer),
            tfacts["requester"])
    incs = []
    for inc in doc.get("incidents") or ():
        ledger.record_incident(target, inc["kind"], inc["name"], acct.parse_time(inc["start"]),
                               None if inc.get("end") is None else acct.parse_time(inc["end"]),
                               str(inc.get("detail") or "")[:acct.MAX_DETAIL],
                               tfacts["owner"], dims, end)
        incs.append((target, tfacts, {"kind": inc["kind"], "name": inc["name"],
                                      "start": inc["start"], "end": inc.get("end"),
                                      "detail": str(inc.get("detail") or "")[:acct.MAX_DETAIL]}))
    # a delegation served here for another peer: relay it there, once
    _feed_peers(app, ledger, acct.WHERE_PEER, peer, doc["id"], doc["start"], doc["end"],
                usage, incs)
