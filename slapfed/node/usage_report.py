"""Accounting on the node, the acting part: samples, the usage state, the spool of
reports, sending them.

Depends on node.usage (the arithmetic), node.usage_probe (the reading), node.layout
(paths, atomic JSON writes) and core.errors. The usage state (var/usage/state.json)
holds what the next report continues from; each report is written to the spool
(var/usage/spool/<seq>.json, atomically) before it is sent, and its file is deleted
only once the master acknowledged it (accepted, or a duplicate of one accepted): a lost
answer means the same report, same report_id, is sent again. An interval is measured
once: the state moves past it when its report is spooled. The spool keeps at most
``spool_limit`` reports; beyond, the oldest are dropped and counted in the log.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time

from ..core.errors import Fenced, MasterUnreachable, NotFound, ReadOnly, SlapfedError
from .layout import PartitionPaths, atomic_write_json
from .usage import FileCursor, NodeMeter, spool_overflow
from .usage_probe import CLK_TCK, DiskWalker, read_usage_file, scan_processes

log = logging.getLogger("slapfed.node.usage")

DEFAULT_INTERVAL = 60.0
SAMPLE_EVERY = 10.0             # at most this long between two samples of a partition
SPOOL_LIMIT = 720               # reports kept unsent (12 h at the default interval)
REFUSED_LIMIT = 20              # reports the master refused, kept for a look
SEND_TIMEOUT = 10.0             # seconds one send may take (never holding other work)


def sample_period(interval: float) -> float:
    """Samples per report: at least four, at most SAMPLE_EVERY s apart."""
    return max(0.05, min(SAMPLE_EVERY, interval / 4.0))


class UsageReporter:
    """The node's accounting over one node root. ``partitions()`` says, each time it is
    called, {partition: (instance id, uid or None, directory, shared instance ids)} of
    the partitions hosting an instance. Thread-safe: the agent's loop feeds promise results in while
    the reporter's thread samples and sends."""

    def __init__(self, usage_dir: str, computer: str, partitions, clock=time.time,
                 spool_limit: int = SPOOL_LIMIT, disk_budget: int = 5000,
                 proc: str = "/proc"):
        self.dir = usage_dir
        self.spool = os.path.join(usage_dir, "spool")
        self.refused = os.path.join(usage_dir, "refused")
        self.state_file = os.path.join(usage_dir, "state.json")
        self.computer = computer
        self.partitions = partitions
        self.clock = clock
        self.spool_limit = spool_limit
        self.proc = proc
        self.walker = DiskWalker(disk_budget)
        self.lock = threading.RLock()
        self.dropped = 0               # spooled reports dropped over the limit
        for d in (usage_dir, self.spool):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self.meter = self._load()

    # -- state ------------------------------------------------------------------------
    def _load(self) -> NodeMeter:
        try:
            with open(self.state_file, encoding="utf-8") as fh:
                meter = NodeMeter.from_json(json.load(fh))
        except FileNotFoundError:
            meter = NodeMeter(os.urandom(6).hex(), clk_tck=CLK_TCK)   # (secrets.token_hex)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("usage state %s unreadable (%s): accounting starts afresh from now "
                        "(under a new report id token)", self.state_file, exc)
            meter = NodeMeter(os.urandom(6).hex(), clk_tck=CLK_TCK)   # (secrets.token_hex)
        return self._reconcile(meter)

    def _reconcile(self, meter: NodeMeter) -> NodeMeter:
        """A report spooled whose state was not written after it (the node stopped in
        between): the state moves past it, its baselines dropped (the next sample is a
        new baseline): what it measured is never measured again."""
        ahead = [(seq, name) for seq, name in self._spooled() if seq >= meter.seq]
        if not ahead:
            return meter
        seq, name = max(ahead)
        try:
            with open(os.path.join(self.spool, name), encoding="utf-8") as fh:
                report = json.load(fh)
            from .usage import parse_iso
            end = parse_iso(report["end"])
        except (OSError, ValueError, KeyError, TypeError):
            end = None
        log.warning("usage state is behind spooled report %d: resuming after it", seq)
        fresh = NodeMeter(meter.token, seq + 1, end if end is not None else meter.last_end,
                          clk_tck=meter.clk_tck, incidents=meter.incidents,
                          cursors=meter.cursors)
        return fresh

    def save(self) -> None:
        atomic_write_json(self.state_file, self.meter.to_json(), indent=None)

    def _spooled(self) -> list[tuple[int, str]]:
        out = []
        try:
            names = os.listdir(self.spool)
        except OSError:
            return out
        for name in names:
            stem, dot, ext = name.partition(".")
            if ext == "json" and stem.isdigit():
                out.append((int(stem), name))
        return sorted(out)

    # -- measuring ----------------------------------------------------------------------
    def sample(self, t: float | None = None) -> None:
        """One pass over /proc for every partition user, one step of the disk walk."""
        with self.lock:
            t = self.clock() if t is None else t
            parts = self.partitions()
            self.meter.hosting(t, {p: v[0] for p, v in parts.items()})
            uids = {p: v[1] for p, v in parts.items() if v[1] is not None}
            procs = scan_processes(set(uids.values()), self.proc)
            self.meter.processes(t, procs, uids)
            for partition, used in self.walker.step({p: v[2] for p, v in parts.items()}).items():
                self.meter.disk(partition, t, used)

    def promises(self, partition: str, instance_id: str | None, results: list) -> None:
        """Results of a promise run of ``partition``: failing ones open incidents."""
        if not instance_id:
            return
        with self.lock:
            self.meter.incidents.observe(partition, instance_id, results, self.clock())

    def _read_files(self, parts: dict) -> None:
        for partition, (_instance, _uid, path, shared) in parts.items():
            cursor = self.meter.cursors.get(partition, FileCursor())
            lines, cursor, skipped = read_usage_file(PartitionPaths(path).usage_file, path,
                                                     cursor)
            self.meter.cursors[partition] = cursor
            self.meter.skipped_bytes += skipped
            bad, dropped = self.meter.bad_lines, self.meter.dropped_units
            self.meter.lines(partition, lines, shared)
            bad, dropped = self.meter.bad_lines - bad, self.meter.dropped_units - dropped
            if bad or skipped:
                log.warning("%s: usage-file: %d bad line(s) skipped, %d byte(s) over the "
                            "backlog cap skipped", partition, bad, skipped,
                            extra={"partition": partition})
            if dropped:
                log.warning("%s: usage-file: %d unit(s) dropped: more than %d distinct "
                            "units (resource, shared instance) in one report", partition,
                            dropped, MAX_UNITS, extra={"partition": partition})

    def cut(self, t: float | None = None) -> str | None:
        """End the current interval: a last sample, the usage-files read, the report
        built and spooled, the state saved. Returns the spooled file (None when there
        is no interval yet: the first cut starts the first one)."""
        with self.lock:
            t = self.clock() if t is None else t
            self.sample(t)
            parts = self.partitions()
            self._read_files(parts)
            report = self.meter.report(self.computer, t)
            path = None
            if report is not None:
                seq = self.meter.seq - 1
                path = os.path.join(self.spool, f"{seq:012d}.json")
                atomic_write_json(path, report, indent=None)
                self._bound_spool()
            self.save()
            return path

    def _bound_spool(self) -> None:
        drop = spool_overflow([n for _, n in self._spooled()], self.spool_limit)
        for name in drop:
            try:
                os.unlink(os.path.join(self.spool, name))
            except OSError:
                continue
            self.dropped += 1
        if drop:
            log.warning("usage spool over %d reports: dropped the %d oldest (%d dropped "
                        "since the agent started)", self.spool_limit, len(drop),
                        self.dropped)

    # -- sending ----------------------------------------------------------------------
    def pending(self) -> list[str]:
        return [name for _, name in self._spooled()]

    def flush(self, client) -> int:
        """Send the spooled reports, oldest first, until one does not get through.
        Returns how many the master acknowledged."""
        sent = 0
        for _seq, name in self._spooled():
            path = os.path.join(self.spool, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    report = json.load(fh)
            except (OSError, ValueError) as exc:
                log.error("unreadable spooled usage report %s (%s): set aside", name, exc)
                self._set_aside(path, name)
                continue
            try:
                answer = client.report_usage(self.computer, report)
            except (MasterUnreachable, ReadOnly, Fenced) as exc:
                log.info("usage report %s kept for later: %s", report.get("report_id"), exc)
                break
            except NotFound as exc:
                # this computer or the route is unknown there (yet): keep it
                log.warning("usage report %s kept: the master answered %s: %s",
                            report.get("report_id"), exc.code, exc.message)
                break
            except SlapfedError as exc:
                log.error("master refused usage report %s (%s): %s; set aside in %s",
                          report.get("report_id"), exc.code, exc.message, self.refused)
                self._set_aside(path, name)
                continue
            if answer.get("duplicate"):
                log.info("usage report %s was already accepted", report.get("report_id"))
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            sent += 1
        return sent

    def _set_aside(self, path: str, name: str) -> None:
        os.makedirs(self.refused, mode=0o700, exist_ok=True)
        try:
            os.replace(path, os.path.join(self.refused, name))
        except OSError:
            return
        kept = sorted(os.listdir(self.refused))
        for old in kept[:max(0, len(kept) - REFUSED_LIMIT)]:
            try:
                os.unlink(os.path.join(self.refused, old))
            except OSError:
                pass
