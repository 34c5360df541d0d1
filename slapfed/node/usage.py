"""Accounting on the node, the deciding part: CPU deltas, integrals, usage-file lines,
promise incidents and the usage report, with no I/O.

Depends on the standard library and core.wire (identifier patterns) only. The adapter
(node.usage_probe) reads /proc and the partitions' directories and hands samples in;
the agent's reporter (node.usage_report) persists the state this module computes and
sends the reports it builds. Everything here is a value or a function of values, so
that the arithmetic is tested by tables.

What one report says per partition (resources of the pinned usage report format):
cpu_seconds (counter), memory_peak_bytes (peak), memory_byte_seconds (counter),
disk_bytes (gauge: the last complete walk), disk_byte_seconds (counter), the
instance's own ``x-<name>`` units read from its usage-file, and incidents.
"""
from __future__ import annotations

import json
import math
import re
import time

from ..core.fields import ID_RE
from ..core.record import Factory, MutableRecord, Record

# -- caps on what a tenant's usage-file may make the node hold or send ------------------
MAX_LINE = 4096                 # bytes of one usage-file line (longer: skipped, counted)
MAX_LINES = 10_000              # lines read from one usage-file per report
MAX_READ = 1 << 20              # bytes read from one usage-file per report
MAX_UNITS = 4096                # distinct (resource, shared) per partition per report
                                # (a CDN front: 4 units for each of 1,024 sites)
MAX_INCIDENTS = 32              # incidents per partition per report (each kind)
MAX_DETAIL = 1024               # characters of an incident's detail
MAX_QUANTITY = 1e18             # a quantity above this is a bad line
# Patterns, compiled at their first use (re keeps them): a node's cycle that reads no
# usage file does not pay for compiling them.
UNIT_RE = r"x-[a-z0-9_-]{1,40}\Z"
INCIDENT_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9 ._:/@-]{0,127}\Z"
REPORT_ID_RE = r"[A-Za-z0-9._:-]{1,128}\Z"
ISO_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z"
CONTROL_RE = "[\u0000-\u001f\u007f-\u009f\u2028\u2029]+"


def one_line(text: str, limit: int = MAX_DETAIL) -> str:
    """``text`` with every run of control characters (newlines too) made one space, at
    most ``limit`` characters (the master takes no control character in a detail)."""
    return re.sub(CONTROL_RE, " ", text).strip()[:limit]


def iso(t: float) -> str:
    """UTC, seconds precision (floor), as the report format wants."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


def parse_iso(text) -> int | None:
    """Seconds since the epoch of a ``YYYY-MM-DDTHH:MM:SSZ`` string, or None."""
    if not isinstance(text, str) or not re.match(ISO_RE, text):
        return None
    try:
        import calendar
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


# -- CPU: per-process counters to per-uid deltas -----------------------------------------


class Proc(Record):
    """One process of a partition user at one sample: its own CPU ticks (utime+stime),
    those of its reaped children (cutime+cstime), its resident bytes."""

    pid: int
    start: int          # start time in ticks since boot: (pid, start) names one process
    uid: int
    ppid: int
    own: int
    children: int
    rss: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start)


def cpu_deltas(before: dict | None, now: dict) -> dict[int, int]:
    """CPU ticks each uid spent between two samples ({(pid, start): Proc} each; None
    before: the first sample, a baseline, gives nothing).

    Each tick is counted once: a process seen both times gives what it grew; a new one
    everything it has (it started after the first sample); the time a process that
    ended between the samples spent after the first is lost unless a process of the
    same user that lives on reaped it: then its parent's children counter grew by the
    whole of it, and what was already counted of it (its total at the first sample) is
    taken off that growth (never below 0). Growth of a counter that went backwards (a
    PID reused within a tick of boot time) counts 0."""
    out: dict[int, int] = {}
    if before is None:
        return out
    by_pid_now = {p.pid: p for p in now.values()}
    by_pid_before = {p.pid: p for p in before.values()}
    credit: dict[tuple, int] = {}
    for key, gone in before.items():
        if key in now:
            continue
        # the nearest ancestor alive at both samples, through ancestors that ended too
        parent, hops = by_pid_before.get(gone.ppid), 0
        while parent is not None and parent.key not in now and hops < 64:
            parent, hops = by_pid_before.get(parent.ppid), hops + 1
        if parent is None:
            alive = by_pid_now.get(gone.ppid)
            if alive is None or alive.key not in before:
                continue
            parent = alive
        if parent.key in now and parent.uid == gone.uid:
            credit[parent.key] = credit.get(parent.key, 0) + gone.own + gone.children
    for key, p in now.items():
        prev = before.get(key)
        if prev is None:
            delta = p.own + p.children
        else:
            own = max(0, p.own - prev.own)
            kids = max(0, p.children - prev.children - credit.get(key, 0))
            delta = own + kids
        if delta:
            out[p.uid] = out.get(p.uid, 0) + delta
    return out


def rss_by_uid(procs: dict) -> dict[int, int]:
    out: dict[int, int] = {}
    for p in procs.values():
        out[p.uid] = out.get(p.uid, 0) + p.rss
    return out


# -- one partition's interval --------------------------------------------------------------


class Meter(MutableRecord):
    """What one partition's instance used since the last report. ``rss_at``/``rss`` and
    ``disk_at``/``disk`` are the last points seen (kept across reports: the integrals
    continue from them); ``disk`` None until a walk of the partition completed."""

    instance_id: str
    cpu_ticks: int = 0
    mem_peak: int = 0
    mem_byte_seconds: float = 0.0
    disk_byte_seconds: float = 0.0
    rss_at: float | None = None
    rss: int = 0
    disk_at: float | None = None
    disk: int | None = None
    measured_cpu: bool = False     # a sample of the processes happened this interval
    units: dict = Factory(dict)        # (resource, shared) -> quantity
    instance_incidents: list = Factory(list)
    dropped_units: int = 0

    def processes(self, t: float, ticks: int, rss: int) -> None:
        """A sample of the partition user's processes at ``t``: ``ticks`` spent since the
        last sample, ``rss`` resident now (the memory integral is a trapezoid)."""
        self.cpu_ticks += ticks
        self.measured_cpu = True
        if self.rss_at is not None and t > self.rss_at:
            self.mem_byte_seconds += (self.rss + rss) / 2.0 * (t - self.rss_at)
        self.mem_peak = max(self.mem_peak, rss)
        self.rss_at, self.rss = t, rss

    def disk_walked(self, t: float, used: int) -> None:
        """A completed walk found ``used`` bytes at ``t`` (the integral is a step: the
        last known value held until the next walk)."""
        if self.disk is not None and self.disk_at is not None and t > self.disk_at:
            self.disk_byte_seconds += self.disk * (t - self.disk_at)
        self.disk_at, self.disk = t, used

    def add_unit(self, resource: str, shared: str | None, quantity: float) -> None:
        key = (resource, shared)
        if key not in self.units and len(self.units) >= MAX_UNITS:
            self.dropped_units += 1
            return
        self.units[key] = self.units.get(key, 0.0) + quantity

    def close(self, end: float, clk_tck: int) -> list[dict]:
        """The usage list of the interval ending at ``end``; the meter is reset for the
        next one (the last points carry over)."""
        if self.disk is not None and self.disk_at is not None and end > self.disk_at:
            self.disk_byte_seconds += self.disk * (end - self.disk_at)
            self.disk_at = end
        usage = []
        if self.measured_cpu:
            usage += [{"resource": "cpu_seconds", "quantity": round(self.cpu_ticks / clk_tck, 3)},
                      {"resource": "memory_peak_bytes", "quantity": self.mem_peak},
                      {"resource": "memory_byte_seconds",
                       "quantity": round(self.mem_byte_seconds, 1)}]
        if self.disk is not None:
            usage += [{"resource": "disk_bytes", "quantity": self.disk},
                      {"resource": "disk_byte_seconds",
                       "quantity": round(self.disk_byte_seconds, 1)}]
        for (resource, shared), quantity in sorted(self.units.items(),
                                                   key=lambda kv: (kv[0][0], kv[0][1] or "")):
            unit = {"resource": resource, "quantity": quantity}
            if shared is not None:
                unit["shared"] = shared
            usage.append(unit)
        self.cpu_ticks, self.mem_byte_seconds, self.disk_byte_seconds = 0, 0.0, 0.0
        self.mem_peak = self.rss if self.measured_cpu else 0
        self.measured_cpu = False
        self.units, self.dropped_units = {}, 0
        return usage

    def to_json(self) -> dict:
        return {"instance_id": self.instance_id, "cpu_ticks": self.cpu_ticks,
                "mem_peak": self.mem_peak, "mem_byte_seconds": self.mem_byte_seconds,
                "disk_byte_seconds": self.disk_byte_seconds, "rss_at": self.rss_at,
                "rss": self.rss, "disk_at": self.disk_at, "disk": self.disk,
                "measured_cpu": self.measured_cpu,
                "units": [[r, s, q] for (r, s), q in self.units.items()],
                "instance_incidents": self.instance_incidents}

    @classmethod
    def from_json(cls, raw: dict) -> "Meter":
        m = cls(str(raw["instance_id"]))
        for name in ("cpu_ticks", "mem_peak", "rss"):
            setattr(m, name, int(raw.get(name) or 0))
        for name in ("mem_byte_seconds", "disk_byte_seconds"):
            setattr(m, name, float(raw.get(name) or 0.0))
        m.rss_at, m.disk_at = raw.get("rss_at"), raw.get("disk_at")
        m.disk = raw.get("disk")
        m.measured_cpu = bool(raw.get("measured_cpu"))
        m.units = {(r, s): float(q) for r, s, q in raw.get("units") or ()}
        m.instance_incidents = list(raw.get("instance_incidents") or ())
        return m


# -- the instance's usage-file ------------------------------------------------------------


class FileLines(MutableRecord):
    """What one read of a usage-file gave: units and incidents of the good lines, how
    many lines were bad, and how many bytes were consumed (complete lines only; a
    partial last line waits for its end, unless it is already too long)."""

    units: list = Factory(list)        # (resource, shared, quantity)
    incidents: list = Factory(list)
    bad: int = 0
    consumed: int = 0


def _quantity(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0 or value > MAX_QUANTITY:
        return None
    return value


def _incident(raw) -> dict | None:
    if not isinstance(raw, dict):
        return None
    name, detail = raw.get("name"), raw.get("detail", "")
    if not isinstance(name, str) or not re.match(INCIDENT_NAME_RE, name):
        return None
    start = parse_iso(raw.get("start"))
    end = raw.get("end")
    end_t = None if end is None else parse_iso(end)
    if start is None or (end is not None and (end_t is None or end_t < start)):
        return None
    if not isinstance(detail, str):
        return None
    return {"kind": "instance", "name": name, "start": iso(start),
            "end": None if end_t is None else iso(end_t), "detail": one_line(detail)}


def parse_line(line: bytes):
    """One usage-file line: ("unit", (resource, shared, quantity)), ("incident", dict),
    or None for a bad line (not JSON, not an object, unknown resource, bad quantity,
    bad shared id, extra keys)."""
    try:
        raw = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    if set(raw) == {"incident"}:
        inc = _incident(raw["incident"])
        return None if inc is None else ("incident", inc)
    if not {"resource", "quantity"} <= set(raw) or not set(raw) <= {"resource", "quantity",
                                                                      "shared"}:
        return None
    resource, shared = raw["resource"], raw.get("shared")
    quantity = _quantity(raw["quantity"])
    if not isinstance(resource, str) or not re.match(UNIT_RE, resource) or quantity is None:
        return None
    if shared is not None and (not isinstance(shared, str) or not ID_RE.match(shared)):
        return None
    return ("unit", (resource, shared, quantity))


def parse_lines(data: bytes, max_lines: int = MAX_LINES, max_line: int = MAX_LINE) -> FileLines:
    """The complete lines of ``data`` (bytes read from the last offset)."""
    out = FileLines()
    pos = 0
    lines = 0
    while pos < len(data) and lines < max_lines:
        nl = data.find(b"\n", pos)
        if nl < 0:
            if len(data) - pos > max_line:        # a line that will never fit: skip it
                out.bad += 1
                pos = len(data)
            break
        line = data[pos:nl]
        pos = nl + 1
        lines += 1
        if not line.strip():
            continue
        parsed = None if len(line) > max_line else parse_line(line)
        if parsed is None:
            out.bad += 1
        elif parsed[0] == "unit":
            out.units.append(parsed[1])
        else:
            out.incidents.append(parsed[1])
    out.consumed = pos
    return out


class FileCursor(Record):
    """Where the node stopped reading a usage-file: the file (device, inode) and the
    offset in it."""

    dev: int = 0
    ino: int = 0
    offset: int = 0

    def start_for(self, dev: int, ino: int, size: int, max_backlog: int) -> tuple[int, int]:
        """(offset to read from, bytes skipped): a new file (another inode, or shorter
        than the offset: truncated) is read from 0; a backlog above ``max_backlog`` is
        skipped up to its last ``max_backlog`` bytes."""
        offset = self.offset if (dev, ino) == (self.dev, self.ino) and size >= self.offset \
            else 0
        if size - offset > max_backlog:
            return size - max_backlog, size - max_backlog - offset
        return offset, 0


# -- promise incidents ----------------------------------------------------------------------


class Incidents(MutableRecord):
    """Promise incidents of the node's partitions, from the results of promise runs:
    a promise failing opens one (start: the first failing check), its next pass closes
    it (end: that check); an incident opened stays in every report until it ends.
    ``open``: {(partition, instance, name): incident}; ``closed``: ended since the last
    report (reported once, then forgotten)."""

    open: dict = Factory(dict)
    closed: list = Factory(list)

    def observe(self, partition: str, instance_id: str, results: list, t: float) -> None:
        """One promise run of ``partition`` (hosting ``instance_id``) at ``t``. A promise
        that is no longer there, or an instance that is no longer there, ends its
        incidents."""
        seen = set()
        for r in results or ():
            name = r.get("name")
            if not isinstance(name, str) or not name:
                continue
            name = one_line(name, 128)
            if not name:
                continue
            seen.add(name)
            key = (partition, instance_id, name)
            if not r.get("ok"):
                detail = one_line(str(r.get("message") or ""))
                if key in self.open:
                    self.open[key]["detail"] = detail
                else:
                    self.open[key] = {"kind": "promise", "name": name, "start": iso(t),
                                      "end": None, "detail": detail}
            elif key in self.open:
                self._close(key, t)
        for key in [k for k in self.open if k[0] == partition
                    and (k[1] != instance_id or k[2] not in seen)]:
            self._close(key, t)

    def gone(self, partition: str, t: float) -> None:
        """The partition no longer hosts an instance (destroyed, moved): end all."""
        for key in [k for k in self.open if k[0] == partition]:
            self._close(key, t)

    def _close(self, key, t: float) -> None:
        inc = self.open.pop(key)
        start = parse_iso(inc["start"]) or int(t)
        self.closed.append((key[0], key[1], dict(inc, end=iso(max(t, start)))))

    def take(self, partition: str, instance_id: str) -> list[dict]:
        """The incidents to report for this partition's instance: those closed since the
        last report (then forgotten), and those still open (repeated)."""
        out = [inc for p, i, inc in self.closed if p == partition and i == instance_id]
        self.closed = [c for c in self.closed if not (c[0] == partition and c[1] == instance_id)]
        out += [dict(inc) for (p, i, _), inc in sorted(self.open.items())
                if p == partition and i == instance_id]
        return out[:MAX_INCIDENTS]

    def to_json(self) -> dict:
        return {"open": [[p, i, n, inc] for (p, i, n), inc in self.open.items()],
                "closed": [list(c) for c in self.closed]}

    @classmethod
    def from_json(cls, raw: dict) -> "Incidents":
        return cls({(p, i, n): dict(inc) for p, i, n, inc in raw.get("open") or ()},
                   [tuple(c) for c in raw.get("closed") or ()])


# -- the report --------------------------------------------------------------------------


def report_id(computer: str, token: str, seq: int) -> str:
    """"<computer>:<token>.<seq>": the token (made once per node state) keeps a node whose
    usage state was lost from reusing the ids of reports it sent before."""
    rid = f"{computer}:{token}.{seq}"
    if not re.match(REPORT_ID_RE, rid):        # a long computer id: keep the id within 128
        rid = f"{computer[:128 - len(token) - 24]}:{token}.{seq}"
    return rid


def build_report(rid: str, start: int, end: int, entries: list[dict]) -> dict:
    """The report body: ``entries`` [{partition, instance_id, usage, incidents}] with
    something to say (an entry with neither usage nor incidents is left out)."""
    if not start < end:
        raise ValueError(f"a report needs start < end (got {start}, {end})")
    parts = [e for e in entries if e.get("usage") or e.get("incidents")]
    return {"report_id": rid, "start": iso(start), "end": iso(end),
            "partitions": sorted(parts, key=lambda e: e["partition"])}


def spool_overflow(names: list[str], limit: int) -> list[str]:
    """Which spooled reports to drop so that at most ``limit`` stay: the oldest (names
    sort by sequence)."""
    ordered = sorted(names)
    return ordered[:max(0, len(ordered) - limit)]


# -- the whole node: every partition's meter between two reports ---------------------------


class NodeMeter(MutableRecord):
    """The node's accounting state between reports (persisted by the reporter as JSON):
    the last process sample, each partition's meter, the entries of instances that left
    their partition since the last report, the promise incidents, the usage-file
    cursors, the report sequence and where the last report ended."""

    token: str
    seq: int = 1                       # the sequence number of the next report
    last_end: int | None = None        # end of the last report (start of the next)
    procs: dict | None = None          # {(pid, start): Proc} of the last sample
    meters: dict = Factory(dict)          # partition -> Meter
    finished: list = Factory(list)        # entries of instances gone
    incidents: Incidents = Factory(Incidents)
    cursors: dict = Factory(dict)         # partition -> FileCursor
    bad_lines: int = 0                 # usage-file lines skipped, since this state began
    skipped_bytes: int = 0             # usage-file backlog skipped over the caps
    dropped_units: int = 0             # units over MAX_UNITS of a partition's report
    clk_tck: int = 100

    def _leave(self, partition: str, t: float) -> None:
        meter = self.meters.pop(partition, None)
        self.cursors.pop(partition, None)
        self.incidents.gone(partition, t)
        if meter is not None:
            self.finished.append(self._entry(partition, meter, t))

    def _entry(self, partition: str, meter: Meter, end: float) -> dict:
        own = meter.instance_incidents[:MAX_INCIDENTS]
        meter.instance_incidents = []
        # one incident per (kind, name, start), the last word kept; none starting after
        # the report's end (the master refuses such a report whole)
        incidents: dict = {}
        for inc in own + self.incidents.take(partition, meter.instance_id):
            if (parse_iso(inc["start"]) or 0) <= int(end):
                incidents.pop((inc["kind"], inc["name"], inc["start"]), None)
                incidents[(inc["kind"], inc["name"], inc["start"])] = inc
        return {"partition": partition, "instance_id": meter.instance_id,
                "usage": meter.close(end, self.clk_tck), "incidents": list(incidents.values())}

    def hosting(self, t: float, instances: dict) -> None:
        """Which instance each partition hosts now ({partition: instance id}; a partition
        not named hosts none): a partition whose instance changed or left gets its
        meter closed into an entry of the next report."""
        for partition in list(self.meters):
            if instances.get(partition) != self.meters[partition].instance_id:
                self._leave(partition, t)
        for partition, instance_id in instances.items():
            if partition not in self.meters:
                self.meters[partition] = Meter(instance_id)

    def processes(self, t: float, procs: dict, uids: dict) -> None:
        """One pass over the processes at ``t`` ({(pid, start): Proc} of every partition
        user); ``uids``: {partition: uid} (a partition without its own user is not
        measured: its processes cannot be told from the others')."""
        deltas = cpu_deltas(self.procs, procs)
        rss = rss_by_uid(procs)
        first = self.procs is None
        self.procs = procs
        if first:
            for partition, meter in self.meters.items():      # a baseline, no interval yet
                uid = uids.get(partition)
                if uid is not None:
                    meter.rss_at, meter.rss = t, rss.get(uid, 0)
            return
        for partition, meter in self.meters.items():
            uid = uids.get(partition)
            if uid is not None:
                meter.processes(t, deltas.get(uid, 0), rss.get(uid, 0))

    def disk(self, partition: str, t: float, used: int) -> None:
        meter = self.meters.get(partition)
        if meter is not None:
            meter.disk_walked(t, used)

    def lines(self, partition: str, read: FileLines, shared=frozenset()) -> None:
        """What the partition's usage-file said since the last read; ``shared``: the
        shared instances its instance hosts (a unit naming another is a bad line: the
        master would refuse the whole report for it)."""
        self.bad_lines += read.bad
        meter = self.meters.get(partition)
        if meter is None:
            return
        for resource, sid, quantity in read.units:
            if sid is not None and sid not in shared:
                self.bad_lines += 1
                continue
            meter.add_unit(resource, sid, quantity)
        self.dropped_units += meter.dropped_units
        meter.dropped_units = 0
        room = MAX_INCIDENTS - len(meter.instance_incidents)
        meter.instance_incidents += read.incidents[:max(0, room)]

    def report(self, computer: str, end: float) -> dict | None:
        """The report of [last_end, end] (None while there is no interval of at least a
        second yet: the first call only sets where the next starts). Advances the
        sequence and resets the meters: call it once per report, after a last sample."""
        end_s = int(end)
        if self.last_end is None:          # the first sample was a baseline: nothing
            self.last_end = end_s           # measured yet, the usage-files' lines wait
            return None
        if end_s <= self.last_end:
            return None
        entries = list(self.finished)
        self.finished = []
        done = {e["partition"] for e in entries}
        for partition, meter in sorted(self.meters.items()):
            if partition in done:      # at most one entry per partition: this one waits
                continue
            entries.append(self._entry(partition, meter, end))
        report = build_report(report_id(computer, self.token, self.seq), self.last_end,
                              end_s, entries)
        self.seq += 1
        self.last_end = end_s
        return report

    def to_json(self) -> dict:
        return {"version": 1, "token": self.token, "seq": self.seq, "last_end": self.last_end,
                "procs": None if self.procs is None else
                [[p.pid, p.start, p.uid, p.ppid, p.own, p.children, p.rss]
                 for p in self.procs.values()],
                "meters": {k: m.to_json() for k, m in self.meters.items()},
                "finished": self.finished, "incidents": self.incidents.to_json(),
                "cursors": {k: [c.dev, c.ino, c.offset] for k, c in self.cursors.items()},
                "bad_lines": self.bad_lines, "skipped_bytes": self.skipped_bytes,
                "clk_tck": self.clk_tck}

    @classmethod
    def from_json(cls, raw: dict) -> "NodeMeter":
        """Raises KeyError/TypeError/ValueError for a state that is not one."""
        procs = raw.get("procs")
        return cls(
            token=str(raw["token"]), seq=int(raw["seq"]),
            last_end=None if raw.get("last_end") is None else int(raw["last_end"]),
            procs=None if procs is None else
            {(p[0], p[1]): Proc(*map(int, p)) for p in procs},
            meters={k: Meter.from_json(v) for k, v in (raw.get("meters") or {}).items()},
            finished=list(raw.get("finished") or ()),
            incidents=Incidents.from_json(raw.get("incidents") or {}),
            cursors={k: FileCursor(*map(int, v)) for k, v in (raw.get("cursors") or {}).items()},
            bad_lines=int(raw.get("bad_lines") or 0),
            skipped_bytes=int(raw.get("skipped_bytes") or 0),
            clk_tck=int(raw.get("clk_tck") or 100))
