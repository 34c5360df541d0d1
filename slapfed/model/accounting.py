"""The usage ledger: what each instance used, rolled up on ingestion, kept after it is gone.

Depends on core.accounting, persistent and BTrees. The ledger is ZODB state like the
rest of a master, so replicas and backups carry it. Nothing here reads a clock or
commits; the services fold accepted reports in (``record``) inside their one write
transaction.

Keys are tuples of strings (and ints where said), never None:

- ``subjects``: instance id -> UsageSubject, the instance's facts as last seen (kept
  after destruction and after the instance record itself is gone);
- ``reports``: (computer id, report id) -> UNIX time accepted (idempotence);
- ``periods``: (owner, period, instance id, where kind, where, resource) -> (value, at):
  one instance's usage over a day (``YYYY-MM-DD``) and over a month (``YYYY-MM``);
- ``instance_periods``: set of (instance id, day) it reported in;
- ``rollup``: (owner, period, release, software type, where kind, where, requester,
  resource) -> (value, at): a statement line, maintained as entries come in, so that a
  statement reads a few rows per group instead of every instance;
- ``counts``: (owner, period, release, software type, where kind, where, requester) ->
  how many instances reported in that group (``members``: the same keys + instance id);
- ``incidents``: (instance id, kind, name, start) -> IncidentRecord (merged on that key);
- ``incidents_by_owner``: set of (owner, start, instance id, kind, name).

Usage across delegation (README "Accounting"):

- ``feeds``: owner ``master/<peer>`` -> UsageFeed: what this master recorded for the
  instances that peer requested here, one entry per (instance, interval), appended in
  the transaction that recorded it, numbered 1, 2, 3... (the peer's cursor);
- ``peer_cursors``: peer name -> PeerFeedState: the last entry of that peer's feed
  recorded here (committed with the entries it covers), and what was skipped;
- ``peer_entries``: (peer, entry id) -> sequence: the entries of each peer recorded here
  (a feed that went back, a restored peer, never counts one twice).
"""
from __future__ import annotations

from BTrees.LOBTree import LOBTree
from BTrees.OOBTree import OOBTree, OOTreeSet
from persistent import Persistent

from ..core import accounting as acct

HIGH = "\U0010ffff"


class UsageSubject(Persistent):
    """What an instance's usage belongs to (record reference, release, software type,
    requester, tree and owner), and where it was last measured."""

    instance_id = None
    reference = None
    requester = None
    owner = None
    tree_root = None
    release = None
    software_type = None
    where_kind = None
    where = None
    partition = None
    first_day = None
    last_day = None

    def __init__(self, instance_id: str):
        self.instance_id = instance_id

    def update(self, **facts) -> None:
        """Set the facts that changed (an unchanged subject is not rewritten)."""
        for name, value in facts.items():
            if getattr(self, name) != value:
                setattr(self, name, value)

    def dims(self) -> tuple:
        return (self.release, self.software_type, (self.where_kind, self.where),
                self.requester)


class IncidentRecord(Persistent):
    """One incident, merged across the reports repeating it."""

    end = None
    detail = ""
    seen_until = None         # the end of the last report that spoke of it
    def __init__(self, instance_id: str, kind: str, name: str, start: int, owner: str,
                 dims: tuple):
        self.instance_id, self.kind, self.name, self.start = instance_id, kind, name, start
        self.owner, self.dims = owner, dims

    @property
    def until(self) -> int:
        """Its end, or for an open incident the end of the last report repeating it."""
        return self.end if self.end is not None else (self.seen_until or self.start)


class UsageFeed(Persistent):
    """The usage entries recorded for one peer master's instances, in the order they were
    committed: ``entries`` sequence -> entry (a JSON object), ``last`` the newest
    sequence. Sequences are never reused: two transactions appending conflict on
    ``last`` (one is retried), so a reader never sees sequence n+1 without n."""

    last = 0
    acked = 0                 # the peer recorded every entry up to this one (it said so
                              # by asking after it)

    def __init__(self):
        self.entries = LOBTree()

    @property
    def first(self) -> int:
        """The oldest sequence still kept (last + 1 when none is)."""
        return self.entries.minKey() if len(self.entries) else self.last + 1

    def trim(self, before: int, limit: int) -> int:
        """Forget at most ``limit`` of the acknowledged entries recorded before UNIX time
        ``before`` (oldest first); returns how many."""
        old = []
        for seq, doc in self.entries.items(max=self.acked):
            if doc.get("at", 0) >= before or len(old) >= limit:
                break
            old.append(seq)
        for seq in old:
            del self.entries[seq]
        return len(old)

    def append(self, doc: dict) -> int:
        seq = self.last + 1
        self.entries[seq] = dict(doc, seq=seq)
        self.last = seq
        return seq

    def after(self, since: int, limit: int) -> list[dict]:
        """At most ``limit`` entries after sequence ``since``, in order."""
        out = []
        for doc in self.entries.values(min=since + 1, excludemin=False):
            out.append(doc)
            if len(out) >= limit:
                break
        return out


class PeerFeedState(Persistent):
    """How far this master has recorded a peer's usage feed."""

    cursor = 0                # the last sequence recorded (0: none yet)
    head = 0                  # the peer's newest sequence, as it last said
    recorded = 0              # entries recorded
    skipped = 0               # entries refused (invalid, or of no instance delegated there)
    last_problem = ""
    pulled_at = None


class Ledger(Persistent):
    prices = None             # the price list (core.accounting.PriceList.to_json()) or None
    feeds = None              # created by the first write that needs them (older ledgers)
    peer_cursors = None
    peer_entries = None

    def __init__(self):
        self.subjects = OOBTree()
        self.reports = OOBTree()
        self.periods = OOBTree()
        self.instance_periods = OOTreeSet()
        self.rollup = OOBTree()
        self.counts = OOBTree()
        self.members = OOTreeSet()
        self.incidents = OOBTree()
        self.incidents_by_owner = OOTreeSet()

    # -- reports ------------------------------------------------------------------------
    def has_report(self, computer_id: str, report_id: str) -> bool:
        return (computer_id, report_id) in self.reports

    def accept_report(self, computer_id: str, report_id: str, now: float) -> None:
        self.reports[(computer_id, report_id)] = int(now)

    # -- usage -------------------------------------------------------------------------
    def subject(self, instance_id: str) -> UsageSubject:
        subject = self.subjects.get(instance_id)
        if subject is None:
            subject = self.subjects[instance_id] = UsageSubject(instance_id)
        return subject

    def record(self, entry: acct.UsageEntry) -> None:
        """Fold one entry into its instance's day and month, and into its group's."""
        kind = entry.kind
        group = (entry.release, entry.software_type, entry.where_kind, entry.where,
                 entry.requester)
        for period in (entry.day, entry.month):
            key = (entry.owner, period, entry.instance_id, entry.where_kind, entry.where,
                   entry.resource)
            old = self.periods.get(key)
            new = acct.fold(kind, old, entry.quantity, entry.end)
            if new != old:
                self.periods[key] = new
            line = (entry.owner, period) + group
            rkey = line + (entry.resource,)
            rold = self.rollup.get(rkey)
            if kind == acct.GAUGE:        # the group's sum of each instance's last value
                if new != old:
                    self.rollup[rkey] = ((rold[0] if rold else 0.0) + acct.gauge_delta(old, new),
                                         max(entry.end, rold[1] if rold else 0))
            else:
                rnew = acct.fold(kind, rold, entry.quantity, entry.end)
                if rnew != rold:
                    self.rollup[rkey] = rnew
            member = line + (entry.instance_id,)
            if member not in self.members:
                self.members.add(member)
                self.counts[line] = self.counts.get(line, 0) + 1
        if (entry.instance_id, entry.day) not in self.instance_periods:
            self.instance_periods.add((entry.instance_id, entry.day))

    def record_incident(self, instance_id: str, kind: str, name: str, start: int,
                        end: int | None, detail: str, owner: str, dims: tuple,
                        seen_until: int) -> None:
        """Merge an incident on (instance, kind, name, start): the latest word on its end
        and detail wins; an open one lasts until the last report repeating it
        (``seen_until``)."""
        key = (instance_id, kind, name, start)
        rec = self.incidents.get(key)
        if rec is None:
            rec = self.incidents[key] = IncidentRecord(instance_id, kind, name, start,
                                                       owner, dims)
            self.incidents_by_owner.add((owner, start, instance_id, kind, name))
        if rec.end != end:
            rec.end = end
        if rec.detail != detail:
            rec.detail = detail
        if rec.seen_until is None or seen_until > rec.seen_until:
            rec.seen_until = seen_until

    # -- usage across delegation --------------------------------------------------------
    def feed(self, owner: str, create: bool = False) -> UsageFeed | None:
        """The feed of a peer's instances (owner ``master/<peer>``); made when ``create``
        (write transactions only)."""
        if self.feeds is None:
            if not create:
                return None
            self.feeds = OOBTree()
        feed = self.feeds.get(owner)
        if feed is None and create:
            feed = self.feeds[owner] = UsageFeed()
        return feed

    def peer_state(self, peer: str, create: bool = False) -> PeerFeedState | None:
        if self.peer_cursors is None:
            if not create:
                return None
            self.peer_cursors = OOBTree()
            self.peer_entries = OOBTree()
        state = self.peer_cursors.get(peer)
        if state is None and create:
            state = self.peer_cursors[peer] = PeerFeedState()
        return state

    def has_peer_entry(self, peer: str, entry_id: str) -> bool:
        return self.peer_entries is not None and (peer, entry_id) in self.peer_entries

    def accept_peer_entry(self, peer: str, entry_id: str, seq: int) -> None:
        self.peer_entries[(peer, entry_id)] = seq

    # -- reading --------------------------------------------------------------------------
    def rollup_rows(self, owner: str, period: str):
        """(dims, resource, value) of one owner's period (dims: core.accounting
        GROUP_KEYS order)."""
        for key, (value, _at) in self.rollup.items(min=(owner, period),
                                                   max=(owner, period, HIGH)):
            _, _, release, stype, wkind, where, requester, resource = key
            yield (release, stype, (wkind, where), requester), resource, value

    def count_rows(self, owner: str, period: str):
        for key, count in self.counts.items(min=(owner, period), max=(owner, period, HIGH)):
            _, _, release, stype, wkind, where, requester = key
            yield (release, stype, (wkind, where), requester), count

    def incidents_of(self, owner: str, before: int):
        """The owner's incidents that started before ``before``."""
        for _o, start, iid, kind, name in self.incidents_by_owner.keys(
                min=(owner,), max=(owner, before - 1, HIGH)):
            yield self.incidents[(iid, kind, name, start)]

    def incidents_of_instance(self, instance_id: str):
        for rec in self.incidents.values(min=(instance_id,), max=(instance_id, HIGH)):
            yield rec

    def days_of(self, instance_id: str, since: str, until: str):
        """The days (YYYY-MM-DD, since..until inclusive) the instance reported in."""
        for _iid, period in self.instance_periods.keys(min=(instance_id, since),
                                                       max=(instance_id, until)):
            yield period

    def usage_of(self, owner: str, period: str, instance_id: str):
        """((where kind, where), resource, value) of one instance over one period."""
        for key, (value, _at) in self.periods.items(min=(owner, period, instance_id),
                                                    max=(owner, period, instance_id, HIGH)):
            yield (key[3], key[4]), key[5], value
