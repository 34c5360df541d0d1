"""The node loop: fetch the desired state, plan, apply one partition at a time, report.

Depends on core, slapfed.client and the node adapters (layout, plan, restarts, buildout,
supervisor, promises, installer, leftovers; those a cycle with nothing to do never uses
are imported where they are used, so that ``slapfed node once`` starts light). One thread applies the partitions' actions;
in ``run`` release installs go to an install worker (node.installer: their own threads,
their own runners) so that a build never holds up the partitions whose release is
installed; those waiting for a release are planned again once the loop has collected
its install (only the loop writes the state, reports and talks to supervisord). Each
partition is applied inside its own error boundary: a failure becomes that partition's failed report and never stops
the others. The local state (<root>/var/state.json) is written atomically after each
release and each partition; reports that could not be sent wait in an outbox there.
Starting a partition restarts only the services whose wrapper changed since the node
last started them (digests kept in the partition's .slapfed/services.json).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback

from ..client import MasterClient
from . import confine
from ..logs import redact_url
from .identity import partition_identity
from ..core.errors import (Conflict, Fenced, MasterUnreachable, NotFound, ReadOnly,
                           SlapfedError)
from ..core.states import (BUILDING, DESTROYED, ERASED, FAILED, INSTALLED, QUARANTINED,
                           STARTED, STOPPED)
from ..core.fields import ID_RE, MAX_LOG_TAIL, PARAMETER_KEY_RE
from ..core.record import Factory, MutableRecord
from ..core.sealed import bound_instance
from .layout import NodeConfig, Paths, atomic_write_json, load_config, prepare_partition_dir
from .plan import (
    Backoff, Destroy, Erase, InstallSoftware, Instantiate, LocalState, PartitionRecord, Plan,
    Quarantine,
    RemoveSoftware, ReportFailed, SoftwareRecord, Start, Stop, by_partition, plan,
    split_on_installs,
)
from .identity import PARTITION_KEY
from .sealing import (Sealer, open_parameters, pending_parameters, reseal_due, seal_shared,
                      sealing_mark, shared_recipients)
from .supervisor import (
    OWN, GroupHealth, GroupSync, Supervisor, list_services, program_name,
)

log = logging.getLogger("slapfed.node")


class _Buildout:
    """slapfed.node.buildout (the renderers and the runners), imported at first use: a
    cycle with nothing to do renders and runs nothing."""

    def __getattr__(self, name):
        from . import buildout
        return getattr(buildout, name)


nb = _Buildout()


def _subprocess_error() -> type:
    """subprocess.SubprocessError, imported when an ``except`` clause looks at what was
    raised (only the runners, which import subprocess, raise it)."""
    from subprocess import SubprocessError
    return SubprocessError

# After the agent starts, each started partition is confirmed to the master once its
# health check passes (polled every CONFIRM_POLL s), or reported failing after
# CONFIRM_GRACE s: a status from before the restart is never left standing as current.
CONFIRM_GRACE = 20.0
CONFIRM_POLL = 0.5


class PartitionUnknown(SlapfedError):
    code = "partition_unknown"
    http_status = 500


class Outcome(MutableRecord):
    """What applying one block of actions gave (one release or one partition)."""

    target: str
    state: str
    seconds: float
    log_tail: str = ""
    actions: list = Factory(list)

    def to_json(self) -> dict:
        return {"target": self.target, "state": self.state, "seconds": round(self.seconds, 4),
                "log_tail": self.log_tail, "actions": self.actions}


class CycleResult(MutableRecord):
    fetched: bool                    # the master sent a new document (not a 304)
    plan: Plan
    outcomes: list
    seconds: float
    dry_run: bool = False

    def to_json(self) -> dict:
        return {"fetched": self.fetched, "dry_run": self.dry_run,
                "plan": self.plan.to_json(), "describe": self.plan.describe(),
                "outcomes": [o.to_json() for o in self.outcomes],
                "seconds": round(self.seconds, 4)}


def _tail(text: str, size: int | None = None) -> str:
    size = nb.TAIL_BYTES if size is None else size
    return text if len(text) <= size else "..." + text[-size:]


def _clean_connection(data: dict) -> dict:
    return {k: v for k, v in data.items() if isinstance(k, str) and PARAMETER_KEY_RE.match(k)}


def _clean_shared_connections(data: dict) -> dict:
    """{shared instance id: connection} as a host published it, minus what the master
    would refuse (ids that are not instance ids, entries that are not objects)."""
    return {sid: _clean_connection(conn) for sid, conn in data.items()
            if isinstance(sid, str) and ID_RE.match(sid) and isinstance(conn, dict)}


def _partition_report(instance_id, revision, state, log_tail, connection, promises,
                      shared_connections) -> dict:
    """The body of a partition report; ``shared_connections`` only when the host
    published some (a master that predates the field is not sent it needlessly)."""
    body = {"instance_id": instance_id, "revision": revision, "state": state,
            "log_tail": _tail(log_tail, MAX_LOG_TAIL), "connection": connection,
            "promises": promises}
    if shared_connections:
        body["shared_connections"] = shared_connections
    return body


class Agent:
    """One node agent over one node root."""

    def __init__(self, root: str, client: MasterClient | None = None, runner=None,
                 supervisor: Supervisor | None = None, backoff: Backoff = Backoff(),
                 clock=time.time, promise_timeout: float = 20.0, settle: float = 0.1,
                 make_runner=None):
        """``runner``: how buildout runs (node.buildout's runners); without one,
        ``make_runner()`` (default: a fork runner) makes it when it is first needed."""
        self.config: NodeConfig = load_config(root)
        self.paths = Paths(self.config.root)
        if client is None:
            client = MasterClient(self.config.master, **self.config.client_options())
            self._follow_primary(client)
        self.client = client
        self._runner = runner
        self._make_runner = make_runner or (lambda: nb.make_runner("fork"))
        # an isolated node's services never inherit root's environment, only its clean part
        self.sup = supervisor or Supervisor(
            self.paths, f"slapfed-{self.config.computer}", mode=self.config.supervisord,
            environment=confine.clean_environment() if self.config.isolated else None)
        self.backoff = backoff
        self.clock = clock
        self.promise_timeout = promise_timeout
        self.settle = settle
        self.local, self.outbox, self.health = self._load_state()
        self.etag, self.desired = self._load_desired()
        self.stopping = False
        # started partitions to confirm to the master after the agent (re)starts:
        # pid -> deadline (clock) after which a failing check is reported anyway
        self.confirm: dict[str, float] = {}
        self.metrics = None       # slapfed.metrics.NodeMetrics, when asked for (run)
        self.installer = None     # node.installer.InstallWorker; None: installs run inline
        self._waiting: dict[str, str] = {}              # partition -> release it waits for
        self.usage = None         # node.usage_report.UsageReporter, once asked for
        self._uids: dict = {}
        # secrets sealed to requesters' keys (node.sealing), the cache kept across restarts
        self.sealer = Sealer(self.paths.sealed_cache, self.paths.sealing_key)
        self._instances_of: tuple = (None, {})          # (document, {pid: instance})
        self._resealed: tuple = (None, None)   # (document, partitions) last found in step

    @property
    def runner(self):
        if self._runner is None:
            self._runner = self._make_runner()
        return self._runner

    @runner.setter
    def runner(self, value) -> None:
        self._runner = value

    # -- following the primary across promotions ---------------------------------------
    def _follow_primary(self, client: MasterClient) -> None:
        """The masters of the current epoch and the highest epoch seen, learned from the
        master's answers and kept in var/masters.json: when the master stops answering,
        the agent follows the one promoted (never one of an older epoch)."""
        path = os.path.join(self.paths.var, "masters.json")
        try:
            with open(path, encoding="utf-8") as fh:
                known = json.load(fh)
            if not isinstance(known, dict):
                known = {}
        except (OSError, ValueError):
            known = {}

        def learned(url, epoch, masters):
            log.info("master %s at epoch %d (masters: %s)", redact_url(url), epoch,
                     ", ".join(redact_url(m) for m in masters) or "-",
                     extra={"epoch": epoch})
            atomic_write_json(path, {"url": url, "epoch": epoch, "masters": list(masters)},
                              indent=None)

        masters = [m for m in known.get("masters") or () if isinstance(m, str)]
        epoch = known.get("epoch") if isinstance(known.get("epoch"), int) else 0
        url = known.get("url") if isinstance(known.get("url"), str) else None
        client.enable_failover(epoch, masters, url, on_learn=learned)

    # -- persistence -----------------------------------------------------------------
    def _load_state(self):
        try:
            with open(self.paths.state, encoding="utf-8") as fh:
                raw = json.load(fh)
        except FileNotFoundError:
            return LocalState(), {}, {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.paths.state, exc)
            return LocalState(), {}, {}
        return LocalState.from_json(raw), dict(raw.get("outbox") or {}), \
            dict(raw.get("health") or {})

    def save_state(self) -> None:
        data = self.local.to_json()
        data["outbox"] = self.outbox
        data["health"] = self.health
        atomic_write_json(self.paths.state, data, indent=None)

    def _load_desired(self):
        try:
            with open(self.paths.desired, encoding="utf-8") as fh:
                raw = json.load(fh)
            return raw.get("etag"), raw.get("document")
        except (OSError, ValueError):
            return None, None

    # -- the cycle --------------------------------------------------------------------
    def fetch(self, persist: bool = True) -> bool:
        """GET the desired state (304 when unchanged). True when a new document came."""
        etag, doc = self.client.desired_state(self.config.computer,
                                              self.etag if self.desired is not None else None)
        if doc is None:
            return False
        self.etag, self.desired = etag, doc
        if persist:
            atomic_write_json(self.paths.desired, {"etag": etag, "document": doc}, indent=None)
        return True

    def plan(self) -> Plan:
        return plan(self.desired or {}, self.local, self.clock(), self.backoff)

    def once(self, dry_run: bool = False) -> CycleResult:
        """One cycle. Raises MasterUnreachable (and other SlapfedErrors of the GET)."""
        started = time.monotonic()
        collected = [] if dry_run else self.collect_installs()
        if not dry_run:
            self.flush_outbox()
        fetched = self.fetch(persist=not dry_run)
        actions = self.plan()
        outcomes = [] if dry_run or not actions else self.apply(actions)
        if not dry_run:
            self.republish()
            self.sealer.save()            # what this cycle sealed, for the next start
        return CycleResult(fetched, actions, collected + outcomes,
                           time.monotonic() - started, dry_run)

    def apply(self, actions: Plan) -> list[Outcome]:
        if self.installer is not None:
            return self._apply_beside_installs(actions)
        outcomes = []
        for pid, block in by_partition(actions):
            if self.stopping:
                break
            if pid is None:
                outcomes.append(self._apply_software(block[0]))
            else:
                outcomes.append(self._apply_partition(pid, block))
            self.save_state()
        return outcomes

    def _apply_beside_installs(self, actions: Plan) -> list[Outcome]:
        """Hand the installs to the install worker, apply at once what does not need a
        release being installed, leave the rest for a cycle after that install."""
        installing = actions.installs() | self.installer.busy()
        outcomes: list[Outcome] = []
        waiting: dict[str, str] = {}
        for pid, block in by_partition(actions):
            if self.stopping:
                break
            if pid is None:
                action = block[0]
                if isinstance(action, InstallSoftware):
                    if self.installer.submit(action):
                        self._report_building(action)
                    continue
                if isinstance(action, RemoveSoftware) and action.software_hash in installing:
                    continue                   # removed once its install is over
                outcomes.append(self._apply_software(action))
            else:
                now, later, release = split_on_installs(block, installing)
                if later:
                    waiting[pid] = release
                    if self._waiting.get(pid) != release:
                        log.info("%s: waits for release %s to install (%d action(s))",
                                 pid, redact_url(later[0].instance.software_url), len(later))
                if not now:
                    continue
                outcomes.append(self._apply_partition(pid, now))
            self.save_state()
            outcomes += self.collect_installs()      # finished installs report at once
        self._waiting = waiting
        return outcomes

    def collect_installs(self) -> list[Outcome]:
        """Record and report the installs the install worker finished."""
        if self.installer is None:
            return []
        outcomes = [self._software_done(done.action, done.result, done.error, done.seconds)
                    for done in self.installer.collect()]
        if outcomes:
            self.save_state()
        return outcomes

    def start_install_worker(self, workers: int = 1) -> None:
        """Run installs apart from now on (``workers`` at most at once), each worker
        with its own runner of the kind this agent uses."""
        from .installer import InstallWorker
        if self.installer is None and workers > 0:
            kind = type(self.runner)
            timeout = getattr(self.runner, "timeout", nb.DEFAULT_TIMEOUT)
            self.installer = InstallWorker(self.paths, lambda: kind(timeout), workers,
                                           self.config.install_settings())

    def stop_install_worker(self) -> None:
        if self.installer is not None:
            self.installer.close()
            self.installer = None

    # -- releases ----------------------------------------------------------------------
    def _apply_software(self, action) -> Outcome:
        import shutil
        started = time.monotonic()
        h, url = action.software_hash, action.url
        if isinstance(action, InstallSoftware):
            log.info("installing release %s", redact_url(url))
            self._report_building(action)
            try:
                res = nb.install_software(self.paths, url, h, self.runner,
                                          self.config.install_settings())
            except (SlapfedError, OSError, _subprocess_error()) as exc:
                return self._software_done(action, None, f"slapfed: {exc}",
                                           time.monotonic() - started)
            except Exception:  # an agent bug must not stop the loop: report its traceback
                log.exception("unexpected error on release %s", redact_url(url))
                return self._software_done(action, None, traceback.format_exc(),
                                           time.monotonic() - started)
            return self._software_done(action, res, "", time.monotonic() - started)
        prev = self.local.software.get(h)
        try:
            log.info("removing release %s", redact_url(url))
            if os.path.isdir(self.paths.software_dir(h)):
                shutil.rmtree(self.paths.software_dir(h))
            rec = SoftwareRecord(url, DESTROYED, 0, self.clock())
        except OSError as exc:
            rec = self._software_failed(prev, url, f"slapfed: {exc}")
        return self._software_record(action, rec, time.monotonic() - started)

    def _count(self, action, work, seconds: float, raised: bool = False) -> None:
        """Metrics of one partition action (and of its instance buildout)."""
        if self.metrics is None:
            return
        failed = raised or (work.record is not None and work.record.state == FAILED)
        result = "failed" if failed else "ok"
        kind = type(action).__name__.lower()
        self.metrics.actions.labels(kind, result).inc()
        if isinstance(action, Instantiate):
            self.metrics.buildouts.labels("instance", result).observe(seconds)

    def enable_metrics(self, metrics) -> None:
        """Count into ``metrics`` (slapfed.metrics.NodeMetrics) from now on."""
        self.metrics = metrics
        metrics.gauges(self._partition_gauges)

    def _partition_gauges(self):
        counts: dict = {}
        for rec in list(self.local.partitions.values()):
            counts[(rec.state,)] = counts.get((rec.state,), 0) + 1
        free = len(self.config.partitions) - len(self.local.partitions)
        if free > 0:
            counts[("free",)] = counts.get(("free",), 0) + free
        return [("slapfed_node_partitions", "Partitions of this node, by the state the "
                 "agent last recorded (free: never used).",
                 {k: float(v) for k, v in counts.items()}, ("state",))]

    def _count_promises(self, promises) -> None:
        if self.metrics is not None:
            for p in promises or ():
                self.metrics.promises.labels("ok" if p.get("ok") else "failed").inc()

    def _report_building(self, action) -> None:
        """Tell the master the install starts, so that whoever waits sees why (the last
        failure's reason stays on the master until this install ends)."""
        prev = self.local.software.get(action.software_hash)
        types = list(prev.software_types) if prev is not None else []
        self._send(("software", action.software_hash),
                   {"url": action.url, "status": BUILDING, "log_tail": "",
                    "software_types": types})

    def _software_done(self, action, res, error: str, seconds: float) -> Outcome:
        """Record (and report) an install's result: ``res`` a SoftwareResult, or None
        with ``error`` when the install raised."""
        prev = self.local.software.get(action.software_hash)
        if res is not None and res.ok:
            rec = SoftwareRecord(action.url, INSTALLED, 0, self.clock(), "",
                                 res.software_types)
        else:
            rec = self._software_failed(prev, action.url,
                                        res.log_tail if res is not None else error)
        return self._software_record(action, rec, seconds)

    def _software_record(self, action, rec: SoftwareRecord, seconds: float) -> Outcome:
        h, url = action.software_hash, action.url
        if self.metrics is not None:
            result = "failed" if rec.status == FAILED else "ok"
            self.metrics.actions.labels(type(action).__name__.lower(), result).inc()
            if isinstance(action, InstallSoftware):
                self.metrics.buildouts.labels("release", result).observe(seconds)
        self.local = self.local.replace(software={**self.local.software, h: rec})
        self._send(("software", h), {"url": url, "status": rec.status,
                                     "log_tail": _tail(rec.log_tail, MAX_LOG_TAIL),
                                     "software_types": list(rec.software_types)})
        log.log(logging.WARNING if rec.status == FAILED else logging.INFO,
                "release %s: %s in %.3fs", redact_url(url), rec.status, seconds,
                extra={"software_url": redact_url(url), "state": rec.status,
                       "duration_ms": round(seconds * 1000, 1)})
        return Outcome(url, rec.status, seconds, rec.log_tail, [action.describe()])

    def _software_failed(self, prev, url, tail) -> SoftwareRecord:
        attempts = (prev.attempts if prev is not None and prev.status == FAILED else 0) + 1
        return SoftwareRecord(url, FAILED, attempts, self.clock(), tail)

    # -- partitions --------------------------------------------------------------------
    def _apply_partition(self, pid: str, block: list) -> Outcome:
        started = time.monotonic()
        prev = self.local.partitions.get(pid)
        work = _Work(pid)
        try:
            for action in block:
                log.info("%s", action.describe())
                began = time.monotonic()
                try:
                    self._do(action, work)
                except BaseException:
                    self._count(action, work, time.monotonic() - began, raised=True)
                    raise
                self._count(action, work, time.monotonic() - began)
                if work.record is not None and work.record.state == FAILED:
                    break
                if work.waiting:
                    # its secret parameters are still to come: start nothing and report
                    # nothing (it is not running this revision), as it was until then
                    break
        except (SlapfedError, OSError, _subprocess_error()) as exc:
            work.fail(f"slapfed: {type(exc).__name__}: {exc}")
        except Exception:  # an agent bug must not stop the loop: report it with its traceback
            log.exception("unexpected error on partition %s", pid)
            work.fail(traceback.format_exc())
        record = self._record(prev, work)
        body = None
        if work.moved is None and work.report and work.instance_id is not None:
            connection, fp = self._seal(pid, work.instance_id, work.connection, work.secret)
            record = record.replace(sealed_for=fp)
            body = _partition_report(work.instance_id, work.revision, record.state,
                                     record.log_tail, connection, work.promises,
                                     self._seal_shared(pid, work.instance_id,
                                                       work.shared_connections,
                                                       work.secret_shared))
        self.local = self.local.replace(partitions={**self.local.partitions, pid: record})
        if work.moved is not None:
            self._send(("moved", pid), {"instance_id": work.instance_id, "state": work.moved})
        elif body is not None:
            self._send(("partition", pid), body)
        if record.state == STARTED:
            self.health[pid] = {"ok": True, "checked": self.clock()}
        else:
            self.health.pop(pid, None)
        seconds = time.monotonic() - started
        failed = record.state == FAILED
        fields = {"partition": pid, "instance": work.instance_id, "state": record.state,
                  "duration_ms": round(seconds * 1000, 1)}
        if failed:
            # the tail may quote the instance's parameters (secrets): it goes to the
            # master, for the requester; the node's log says where to read it
            log.warning("partition %s (instance %s): failed in %.3fs; its buildout log: %s",
                        pid, work.instance_id, seconds,
                        self.paths.partition(pid).buildout_log, extra=fields)
        else:
            log.info("partition %s (instance %s): %s in %.3fs", pid, work.instance_id,
                     record.state, seconds, extra=fields)
        return Outcome(pid, record.state, seconds, record.log_tail,
                       [a.describe() for a in block])

    def _record(self, prev: PartitionRecord | None, work: "_Work") -> PartitionRecord:
        if work.record is None:
            return prev or PartitionRecord()
        rec = work.record
        if rec.state == FAILED:
            same = prev is not None and prev.instance_id == rec.instance_id \
                and prev.revision == rec.revision and prev.state == FAILED
            attempts = (prev.attempts if same else 0) + 1
            rec = rec.replace(attempts=attempts, last_attempt=self.clock())
        else:
            rec = rec.replace(attempts=0, last_attempt=self.clock())
        return rec

    def _partition_config(self, pid: str):
        part = self.config.partition(pid)
        if part is None:
            raise PartitionUnknown(f"partition {pid} is not formatted on this node "
                                   f"(node.json has: {', '.join(p.id for p in self.config.partitions)})")
        return part

    def _partition_identity(self, pid: str) -> dict:
        """The [partition] options naming the partition's own key, certificate, CA and
        master (empty over plain HTTP): an instance calls the master as itself."""
        if not self.config.tls:
            return {}
        pp = self.paths.partition(pid)
        part = self.config.partition(pid)
        files = partition_identity(pp.private, self.client, self.config.computer, pid,
                                   self.config.tls["ca"], base=pp.path,
                                   owner=confine.owner_ids(part.user if part else None))
        return {**files, "master-url": self.config.master}

    def _do(self, action, work: "_Work") -> None:
        import shutil
        from .leftovers import stop_leftovers
        from .promises import run_promises, summary
        pid = work.pid
        pp = self.paths.partition(pid)
        if isinstance(action, Quarantine):
            self._quarantine(pid, pp, action, work)
            return
        if isinstance(action, Erase):
            work.target(action.instance_id, 0, False)
            target = self.paths.quarantined(pid, action.instance_id)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            log.warning("partition %s: quarantined data of %s erased", pid,
                        action.instance_id, extra={"partition": pid,
                                                   "instance": action.instance_id})
            work.record = PartitionRecord(action.instance_id, 0, ERASED)
            work.moved = ERASED
            return
        if isinstance(action, Destroy):
            work.target(action.instance_id, action.revision, action.report)
            self.sup.remove_group(pid)
            part = self.config.partition(pid)
            stop_leftovers(pp.path, user=part.user if part else None)
            pp.wipe()
            self._wipe_service_logs(pid)
            work.connection = {}
            work.shared_connections = {}
            work.secret = {}
            work.secret_shared = {}
            work.record = PartitionRecord(action.instance_id, action.revision, DESTROYED)
            self.health.pop(pid, None)
            return

        spec = action.instance
        work.target(spec.id, spec.revision, True)
        if isinstance(action, ReportFailed):
            work.record = PartitionRecord(spec.id, spec.revision, FAILED, None,
                                          spec.software_hash, blocked_on=spec.software_hash,
                                          log_tail=self._release_failure(spec, action.log_tail))
            return

        part = self._partition_config(pid)
        prepare_partition_dir(self.paths, part)
        if isinstance(action, Instantiate):
            pending = pending_parameters(spec.parameters)
            if pending:
                # its requester seals them to this partition's certificate: have it
                # issued, build nothing until the sealed values come
                self._partition_identity(pid)
                work.report = False
                work.waiting = True           # nothing more of this block runs
                log.debug("partition %s: waiting for secret parameters %s", pid,
                          ", ".join(pending))
                return
            sw = self.local.software.get(spec.software_hash)
            if sw is None or sw.status != INSTALLED:
                work.record = PartitionRecord(
                    spec.id, spec.revision, FAILED, None, spec.software_hash,
                    blocked_on=spec.software_hash,
                    log_tail=self._release_failure(spec, sw.log_tail if sw else ""))
                return
            identity = self._partition_identity(pid)
            instance = spec.to_json()
            key_pem = confine.read_bytes(os.path.join(pp.private, PARTITION_KEY), pp.path) \
                if identity else None
            instance["parameters"], problem = open_parameters(
                self._bound_instance(pid, spec.id), spec.parameters, key_pem, pid)
            if problem:
                work.record = PartitionRecord(spec.id, spec.revision, FAILED, None,
                                              spec.software_hash, log_tail=problem)
                return
            res = nb.instantiate(self.paths, part, self.config.computer, instance,
                                 self.runner, identity=identity)
            if not res.ok:
                work.record = PartitionRecord(spec.id, spec.revision, FAILED, None,
                                              spec.software_hash, log_tail=res.log_tail)
                return
            if spec.restore_from and not os.path.exists(pp.restored_marker):
                problem = self._restore(pid, pp, part, spec)
                if problem:
                    work.record = PartitionRecord(spec.id, spec.revision, FAILED, None,
                                                  spec.software_hash, log_tail=problem)
                    return
            work.connection = _clean_connection(res.connection)
            work.shared_connections = _clean_shared_connections(res.shared_connections)
            work.secret = _clean_connection(res.secret_connection)
            work.secret_shared = _clean_shared_connections(res.secret_shared_connections)
            work.instantiated = True
            work.record = PartitionRecord(spec.id, spec.revision, STOPPED, spec.digest(),
                                          spec.software_hash)
            return

        # Start / Stop
        self.sup.ensure_running()
        if not work.instantiated:
            work.connection = _clean_connection(nb.read_connection(pp.connection_file,
                                                                    pp.path))
            work.shared_connections = _clean_shared_connections(
                nb.read_connection(pp.shared_connection_file, pp.path))
            work.secret = _clean_connection(nb.read_connection(pp.secret_connection_file,
                                                               pp.path))
            work.secret_shared = self._secret_shared(pp)
        digest = spec.digest()
        if isinstance(action, Stop):
            self.sup.stop_group(pid)
            stop_leftovers(pp.path, user=part.user)
            self.sup.sync_group(pid, pp.path, pp.services, self.paths.service_log_dir(pid),
                                autostart=False, user=part.user)
            work.record = PartitionRecord(spec.id, spec.revision, STOPPED, digest,
                                          spec.software_hash)
            return
        assert isinstance(action, Start)
        sync = self.sup.sync_group(pid, pp.path, pp.services, self.paths.service_log_dir(pid),
                                   autostart=True, user=part.user)
        # Promises (which wait for the services to answer) double as the settling time:
        # without promises, watch the processes for ``settle`` seconds instead.
        has_promises = bool(list_services(pp.promises))
        health = self._start_services(pid, pp, sync,
                                      settle=0.0 if has_promises else self.settle)
        problems = [] if health.ok else [health.message]
        if health.ok and has_promises:
            work.promises = run_promises(pp.promises, self.promise_timeout, cwd=pp.path,
                                         user=part.user)
            self._count_promises(work.promises)
            self._usage_promises(pid, spec.id, work.promises)
            if summary(work.promises):
                problems.append(summary(work.promises))
            health = self.sup.health(pid)   # a service may have died meanwhile
            if not health.ok:
                problems.append(health.message)
        if problems:
            work.record = PartitionRecord(spec.id, spec.revision, FAILED, digest,
                                          spec.software_hash, log_tail="\n".join(problems))
        else:
            work.record = PartitionRecord(spec.id, spec.revision, STARTED, digest,
                                          spec.software_hash)

    def _restore(self, pid: str, pp, part, spec) -> str:
        """Before the first start of an instance rebuilt on this partition: run the
        restore steps its profile declares (etc/restore/*) with the backup location the
        instance published before (``spec.restore_from``, one argument, never a shell).
        Returns the problem ('' when restored, or when the profile declares none)."""
        from .promises import run_promises, summary
        steps = list_services(pp.restore)
        if not steps:
            return ""
        results = run_promises(pp.restore, self.promise_timeout, cwd=pp.path, user=part.user,
                               args=(spec.restore_from,))
        failed = summary(results)
        if failed:
            return f"restoring the data of {spec.id} failed:\n{failed}"
        with open(pp.restored_marker, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"from": spec.restore_from, "at": self.clock()}) + "\n")
        log.info("partition %s: data of %s restored (%d step(s))", pid, spec.id, len(steps),
                 extra={"partition": pid, "instance": spec.id})
        return ""

    def _quarantine(self, pid: str, pp, action, work: "_Work") -> None:
        """Stop the services of an instance that moved away and set its partition
        directory and service logs aside under var/quarantine (node-only, kept); the
        partition directory is left empty for whoever the master gives it to next."""
        from .leftovers import stop_leftovers
        work.target(action.instance_id, action.revision, False)
        self.sup.remove_group(pid)
        part = self.config.partition(pid)
        stop_leftovers(pp.path, user=part.user if part else None)
        os.makedirs(self.paths.quarantine, mode=0o700, exist_ok=True)
        os.chmod(self.paths.quarantine, 0o700)
        target = self.paths.quarantined(pid, action.instance_id or "unknown")
        if os.path.exists(target):        # quarantined before: keep both, never overwrite
            target = f"{target}--{int(self.clock())}"
        os.makedirs(target, mode=0o700)
        if os.path.isdir(pp.path):
            os.rename(pp.path, os.path.join(target, "partition"))
        logs = self.paths.service_log_dir(pid)
        if os.path.isdir(logs):
            os.rename(logs, os.path.join(target, "services-log"))
        self.health.pop(pid, None)
        log.warning("partition %s: instance %s moved to another computer; its services are "
                    "stopped and its data kept in %s", pid, action.instance_id, target,
                    extra={"partition": pid, "instance": action.instance_id})
        work.record = PartitionRecord(action.instance_id, action.revision, QUARANTINED)
        work.moved = QUARANTINED

    def _start_services(self, pid: str, pp, sync: GroupSync, settle: float) -> GroupHealth:
        """Start what does not run, restart what runs another wrapper than the one it was
        started with, leave the rest alone; then record the wrappers' digests."""
        from .restarts import plan_services
        current = service_digests(sync.services, pp.path)
        programs = {name: program_name(pid, name) for name, _ in sync.services}
        states = self.sup.group_states(pid, sync.programs)
        created = set(sync.created)
        decision = plan_services(current, read_service_record(pp.services_record, pp.path),
                                 {n: states.get(p) for n, p in programs.items()},
                                 {n for n, p in programs.items() if p in created})
        log.info("%s: services: %s", pid, decision.describe())
        self.sup.stop_programs(pid, [programs[n] for n in decision.restart])
        health = self.sup.start_programs(
            pid, [programs[n] for n in decision.restart + decision.start], settle=settle)
        write_service_record(pp.services_record, current, pp.path)
        return health

    def _wipe_service_logs(self, pid: str) -> None:
        """What supervisord kept of a destroyed instance's output: the next instance of
        the partition (same unix user) must not read it."""
        import shutil
        logs = self.paths.service_log_dir(pid)
        try:
            names = os.listdir(logs)
        except OSError:
            return
        for name in names:
            path = os.path.join(logs, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def _release_failure(self, spec, tail: str) -> str:
        return (f"release {spec.software_url} failed to install on this node; its log "
                f"tail:\n{tail}")

    # -- sealed connection parameters ---------------------------------------------------
    def _desired_instance(self, pid: str) -> dict | None:
        """The instance the last desired state puts on ``pid`` (None: none)."""
        doc, index = self._instances_of
        if doc is not self.desired:
            index = {e.get("id"): e.get("instance")
                     for e in (self.desired or {}).get("partitions") or ()}
            self._instances_of = (self.desired, index)
        return index.get(pid)

    def _bound_instance(self, pid: str, instance_id: str) -> str:
        """The instance id ``instance_id``'s secrets are bound to (core.sealed): the
        origin's id when the instance was delegated here, else its own."""
        inst = self._desired_instance(pid)
        return bound_instance(inst, instance_id) if inst and inst.get("id") == instance_id \
            else instance_id

    def _seal(self, pid: str, instance_id: str, public: dict, secret: dict):
        """(connection to report, recipient fingerprint): the secrets sealed to the
        requester the desired state names for ``instance_id``; one that cannot be is
        withheld (never sent in clear) and the node's log says why."""
        inst = self._desired_instance(pid)
        mine = inst is not None and inst.get("id") == instance_id
        recipient = inst.get("recipient") if mine else None
        fp = sealing_mark(inst) if mine else None
        connection, withheld = self.sealer.connection(self._bound_instance(pid, instance_id),
                                                      public, secret, recipient)
        for name, why in sorted(withheld.items()):
            log.warning("partition %s (instance %s): secret connection parameter %r "
                        "withheld: %s", pid, instance_id, name, why,
                        extra={"partition": pid, "instance": instance_id})
        return connection, fp

    # values a host publishes for its shared instances: each shared instance's secrets
    # are sealed to its own requester (node.sealing.seal_shared), never the host's
    def _secret_shared(self, pp) -> dict:
        return _clean_shared_connections(nb.read_connection(pp.secret_shared_connection_file,
                                                            pp.path))

    def _seal_shared(self, pid: str, instance_id: str, public: dict, secret: dict) -> dict:
        """The shared connections to report for host ``instance_id`` on ``pid``: the
        secrets of each shared instance sealed to the recipient the desired state names
        for it; one that cannot be is withheld and the node's log says why."""
        if not secret:
            return public
        inst = self._desired_instance(pid)
        recipients = shared_recipients(inst) if inst and inst.get("id") == instance_id \
            else {}
        out, withheld = seal_shared(self.sealer, public, secret, recipients)
        for sid, names in sorted(withheld.items()):
            for name, why in sorted(names.items()):
                log.warning("partition %s (instance %s): secret connection parameter %r of "
                            "shared instance %s withheld: %s", pid, instance_id, name, sid,
                            why, extra={"partition": pid, "instance": instance_id})
        return out

    def republish(self) -> list[str]:
        """Publish again the connection parameters of applied partitions whose
        requester's certificate changed (node.sealing.reseal_due): a started one is
        confirmed again (its promises run, then it reports), a stopped one reports at
        once. Returns the partitions concerned."""
        if self._resealed[0] is self.desired and self._resealed[1] is self.local.partitions:
            return []            # neither changed since they were found in step
        due = reseal_due(self.desired, self.local.partitions)
        if not due:
            self._resealed = (self.desired, self.local.partitions)
        for pid in due:
            rec = self.local.partitions[pid]
            if rec.state == STARTED:
                if pid not in self.confirm:
                    self.confirm[pid] = self.clock() + CONFIRM_GRACE
                continue
            pp = self.paths.partition(pid)
            connection, fp = self._seal(
                pid, rec.instance_id,
                _clean_connection(nb.read_connection(pp.connection_file, pp.path)),
                _clean_connection(nb.read_connection(pp.secret_connection_file, pp.path)))
            self.local = self.local.replace(partitions={
                **self.local.partitions, pid: rec.replace(sealed_for=fp)})
            self._send(("partition", pid), _partition_report(
                rec.instance_id, rec.revision, rec.state, rec.log_tail, connection, [],
                self._seal_shared(pid, rec.instance_id, _clean_shared_connections(
                    nb.read_connection(pp.shared_connection_file, pp.path)),
                    self._secret_shared(pp))))
        if due:
            self.save_state()
        return due

    # -- reports -----------------------------------------------------------------------
    def _send(self, key: tuple, body: dict) -> None:
        """Report now; keep the report in the outbox when the master is unreachable."""
        okey = f"{key[0]}:{key[1]}"
        self.outbox.pop(okey, None)
        try:
            self._deliver(key, body)
        except (MasterUnreachable, ReadOnly, Fenced) as exc:
            log.warning("no primary takes the report of %s now, kept for later: %s", okey,
                        exc)
            self.outbox[okey] = body
        except (Conflict, NotFound) as exc:
            log.warning("master refused the report of %s (%s): %s", okey, exc.code, exc.message)
        except SlapfedError as exc:
            log.error("master refused the report of %s (%s): %s", okey, exc.code, exc.message)

    def _deliver(self, key: tuple, body: dict) -> None:
        kind, name = key
        if kind == "software":
            self.client.report_software(self.config.computer, body["url"], body["status"],
                                        body["log_tail"], body["software_types"])
        elif kind == "moved":
            self.client.report_moved(self.config.computer, name, body)
        else:
            self.client.report_partition(self.config.computer, name, body)

    def flush_outbox(self) -> None:
        if not self.outbox:
            return
        for okey, body in list(self.outbox.items()):
            kind, _, name = okey.partition(":")
            self._send((kind, name), body)
            if okey in self.outbox:       # still unreachable: try again next cycle
                break
        self.save_state()

    # -- health of started partitions ---------------------------------------------------
    def check_health(self, interval: float, budget: float = 1.0) -> list[str]:
        """Re-run promises (and look at the processes) of started partitions whose last
        check is older than ``interval``; report only those whose health changed.
        Spends at most about ``budget`` seconds. Returns the partitions reported."""
        from .promises import run_promises, summary
        started = time.monotonic()
        now = self.clock()
        reported = []
        checked_any = False
        # started partitions, and those a previous check found failing (until re-applied);
        # partitions still to confirm after a restart come first, whatever their last check
        due = sorted((0.0 if pid in self.confirm else
                      self.health.get(pid, {}).get("checked", rec.last_attempt), pid)
                     for pid, rec in self.local.partitions.items()
                     if rec.state == STARTED or (rec.state == FAILED
                                                 and self.health.get(pid, {}).get("ok") is False))
        for checked, pid in due:
            if (now - checked < interval and pid not in self.confirm) or \
                    time.monotonic() - started > budget:
                break
            rec = self.local.partitions[pid]
            pp = self.paths.partition(pid)
            part = self.config.partition(pid)
            checked_any = True
            try:
                health = self.sup.health(pid)
                promises = run_promises(pp.promises, self.promise_timeout, cwd=pp.path,
                                        user=part.user if part else None)
                self._count_promises(promises)
                self._usage_promises(pid, rec.instance_id, promises)
            except (SlapfedError, OSError, _subprocess_error()) as exc:
                log.warning("health check of %s failed: %s", pid, exc)
                continue
            problems = ([] if health.ok else [health.message]) + \
                ([summary(promises)] if summary(promises) else [])
            ok = not problems
            confirming = pid in self.confirm
            if confirming and not ok and self.clock() < self.confirm[pid]:
                continue            # its services are still coming up: look again soon
            self.confirm.pop(pid, None)
            was_ok = self.health.get(pid, {}).get("ok", True)
            self.health[pid] = {"ok": ok, "checked": self.clock()}
            if ok == was_ok and not confirming:
                continue
            tail = "\n".join(problems)
            connection, fp = self._seal(
                pid, rec.instance_id,
                _clean_connection(nb.read_connection(pp.connection_file, pp.path)),
                _clean_connection(nb.read_connection(pp.secret_connection_file, pp.path)))
            new = rec.replace(state=STARTED if ok else FAILED, log_tail=tail,
                          attempts=0 if ok else 1, last_attempt=self.clock(), sealed_for=fp)
            self.local = self.local.replace(partitions={**self.local.partitions, pid: new})
            log.warning("%s: health changed to %s%s", pid, "ok" if ok else "failed",
                        f"\n{tail}" if tail else "")
            self._send(("partition", pid), _partition_report(
                rec.instance_id, rec.revision, new.state, tail, connection, promises,
                self._seal_shared(pid, rec.instance_id, _clean_shared_connections(
                    nb.read_connection(pp.shared_connection_file, pp.path)),
                    self._secret_shared(pp))))
            reported.append(pid)
        if checked_any:
            self.save_state()
        if reported:
            self.sealer.save()
        return reported

    # -- the loop ------------------------------------------------------------------------
    def run(self, interval: float = 2.0, promise_interval: float = 30.0,
            parallel_installs: int = 1, usage_interval: float | None = None) -> None:
        """Loop ``once`` every ``interval`` seconds until SIGTERM/SIGINT; releases install
        apart, ``parallel_installs`` at most at once (0: inline, holding the loop); a
        usage report every ``usage_interval`` seconds (None: none) from a thread of its
        own (measuring and a master that does not answer never hold the loop)."""
        import signal

        def stop(signum, frame):
            log.info("signal %d received: stopping after the current step", signum)
            self.stopping = True

        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        _write_pid(self.paths.agent_pid)
        usage = None
        try:
            self.start_install_worker(parallel_installs)
            if usage_interval is not None:
                usage = self.start_usage(usage_interval)
            self.sweep_orphans()
            self.quarantine_moved()            # before supervisord brings services back
            if any(r.state == STARTED for r in self.local.partitions.values()):
                self.sup.ensure_running()      # after a reboot: bring the services back
            # what the master last heard may predate this start: confirm every started
            # partition once its services answer (or report their failure after a grace)
            self.confirm = {pid: self.clock() + CONFIRM_GRACE
                            for pid, r in self.local.partitions.items() if r.state == STARTED}
            log.info("node %s: loop every %gs against %s", self.config.computer, interval,
                     self.config.master)
            unreachable = False
            if not self.config.isolated and self.config.partitions:
                log.warning("node %s: %s", self.config.computer,
                            self.config.isolation_text())
            while not self.stopping:
                began = time.monotonic()
                try:
                    self.revive_supervisord()
                    result = self.once()
                    if self.metrics is not None:
                        self.metrics.cycles.observe(result.seconds)
                    if unreachable:
                        log.info("master %s answers again", self.config.master)
                        unreachable = False
                    if result.plan:
                        failed = [o.target for o in result.outcomes if o.state == FAILED]
                        log.log(logging.WARNING if failed else logging.INFO,
                                "cycle: %d action(s) in %.3fs%s", len(result.plan),
                                result.seconds,
                                f"; failed: {', '.join(failed)}" if failed else "",
                                extra={"actions": len(result.plan), "failed": failed,
                                       "duration_ms": round(result.seconds * 1000, 1)})
                    else:
                        log.debug("cycle: nothing to do (%.3fs)", result.seconds)
                    self.check_health(promise_interval)
                except (MasterUnreachable, ReadOnly, Fenced) as exc:
                    if self.metrics is not None:
                        self.metrics.unreachable.inc()
                    # once per outage at WARNING; each further failed cycle at DEBUG
                    log.log(logging.DEBUG if unreachable else logging.WARNING, "%s",
                            exc.message)
                    unreachable = True
                except SlapfedError as exc:
                    log.error("cycle failed (%s): %s", exc.code, exc.message)
                except Exception:  # a bug outside the per-partition boundaries: keep looping
                    log.exception("cycle failed unexpectedly; retrying next cycle")
                # confirm quickly after a start, then every interval
                pause = min(interval, CONFIRM_POLL) if self.confirm else interval
                self._sleep(pause - (time.monotonic() - began))
        finally:
            self.stop_install_worker()
            self.sealer.save()
            if usage is not None:
                self.stopping = True
                usage.join(30)
            for s, h in old.items():
                signal.signal(s, h)
            _remove_own_pid(self.paths.agent_pid)
            log.info("node agent stopped")

    def quarantine_moved(self) -> list[Outcome]:
        """At start, before supervisord brings the services back: set aside the partitions
        whose instance moved to another computer while this node was away (its computer
        was declared lost), so that no stale copy serves again. With the master
        unreachable nothing is set aside: the node resumes exactly where it was."""
        try:
            self.fetch()
        except SlapfedError as exc:
            log.info("node %s: master not read at start (%s): resuming where it was",
                     self.config.computer, exc.code)
            return []
        moved = [a for a in self.plan() if isinstance(a, Quarantine)]
        outcomes = [self._apply_partition(a.partition, [a]) for a in moved]
        if outcomes:
            self.save_state()
        return outcomes

    # -- accounting: usage reports -------------------------------------------------------
    def _uid(self, user: str | None) -> int | None:
        if not user:
            return None
        if user not in self._uids:
            try:
                self._uids[user] = confine.owner_ids(user)[0]
            except KeyError:
                return None
        return self._uids[user]

    def usage_partitions(self) -> dict:
        """{partition: (instance id, uid, directory, ids of the shared instances it
        hosts)} of the partitions hosting an instance; uid None on a single-user node (its partitions' processes cannot be
        told apart: CPU and memory are left out, disk and the usage-file still count)."""
        out = {}
        local = self.local.partitions
        shared = {}
        for dp in (self.desired or {}).get("partitions") or ():
            inst = dp.get("instance") if isinstance(dp, dict) else None
            if isinstance(inst, dict):
                shared[(dp.get("id"), inst.get("id"))] = frozenset(
                    s.get("id") for s in inst.get("shared_instances") or ()
                    if isinstance(s, dict))
        for p in self.config.partitions:
            rec = local.get(p.id)
            if rec is None or not rec.instance_id or \
                    rec.state in (DESTROYED, ERASED, QUARANTINED):
                continue
            out[p.id] = (rec.instance_id, self._uid(p.user), self.paths.partition(p.id).path,
                         shared.get((p.id, rec.instance_id), frozenset()))
        return out

    def usage_reporter(self):
        if self.usage is None:
            from .usage_report import UsageReporter
            self.usage = UsageReporter(self.paths.usage, self.config.computer,
                                       self.usage_partitions, clock=self.clock)
        return self.usage

    def _usage_promises(self, pid: str, instance_id, promises) -> None:
        if self.usage is not None:
            self.usage.promises(pid, instance_id, promises)

    def _usage_client(self):
        """The client the reporter's thread sends with: its own (a session is not
        shared between threads), to the master the agent follows now."""
        from .usage_report import SEND_TIMEOUT
        if type(self.client) is MasterClient:
            return MasterClient(self.client.url, timeout=SEND_TIMEOUT,
                                **self.config.client_options())
        return self.client

    def report_usage_now(self, due_after: float = 0.0) -> dict:
        """End the current usage interval (the first call only starts one), spool its
        report, send what the spool holds. {"spooled", "sent", "pending", "due_in"}.

        With ``due_after``, an interval younger than that many seconds is not ended: the
        partitions are sampled (the state kept for the next call) and only what the
        spool already holds is sent, so that a ``node once`` run often (from cron, say)
        makes one report per interval, not one per run."""
        rep = self.usage_reporter()
        last_end = rep.meter.last_end
        if due_after and last_end is not None and rep.clock() - last_end < due_after:
            with rep.lock:
                rep.sample()
                rep.save()
            pending = rep.pending()
            sent = rep.flush(self._usage_client()) if pending else 0
            return {"spooled": None, "sent": sent, "pending": rep.pending(),
                    "due_in": round(last_end + due_after - rep.clock(), 1)}
        spooled = rep.cut()
        sent = rep.flush(self._usage_client())
        return {"spooled": os.path.basename(spooled) if spooled else None, "sent": sent,
                "pending": rep.pending(), "due_in": None}

    def start_usage(self, interval: float):
        """A thread that samples every partition's usage and reports each ``interval``
        seconds until the agent stops (then it cuts a last report into the spool)."""
        import threading
        from .usage_report import sample_period

        rep = self.usage_reporter()
        period = sample_period(interval)

        def loop():
            next_cut = time.monotonic()
            while not self.stopping:
                now = time.monotonic()
                try:
                    if now >= next_cut:
                        next_cut = now + interval
                        rep.cut()
                        rep.flush(self._usage_client())
                    else:
                        rep.sample()
                        if rep.pending():
                            rep.flush(self._usage_client())
                except Exception:      # never let accounting stop: log, carry on
                    log.exception("usage accounting failed; retrying")
                end = min(next_cut, time.monotonic() + period)
                while not self.stopping and time.monotonic() < end:
                    time.sleep(min(0.1, max(0.0, end - time.monotonic())))
            try:
                rep.cut()
            except Exception:
                log.exception("usage accounting: the last report could not be spooled")

        thread = threading.Thread(target=loop, name="usage", daemon=True)
        thread.start()
        return thread

    # -- surviving supervisord ------------------------------------------------------------
    def sweep_orphans(self) -> dict[str, list[int]]:
        """Stop, by PID, what partitions run outside the node's supervisord (the services
        of a supervisord that was killed live on, orphaned, and hold their ports); a
        running supervisord's own processes are spared. Logged; {partition: PIDs}."""
        from .leftovers import stop_orphans
        sup_pid = self.sup.pid() if self.sup.running() else None
        stopped = stop_orphans(
            [(p.id, self.paths.partition(p.id).path, p.user) for p in self.config.partitions],
            supervisord_pid=sup_pid)
        for pid, pids in sorted(stopped.items()):
            log.warning("%s: stopped %d orphaned process(es) left outside supervisord: %s",
                        pid, len(pids), ", ".join(map(str, pids)))
        return stopped

    def revive_supervisord(self) -> bool:
        """When the node's own supervisord is gone while partitions should run (it was
        killed): stop its orphans, start it again (its groups autostart the services).
        True when it had to be revived."""
        if self.sup.mode != OWN or self.sup.running() or \
                not any(r.state == STARTED for r in self.local.partitions.values()):
            return False
        log.warning("node %s: supervisord does not answer while partitions should run; "
                    "stopping its orphans and starting it again", self.config.computer)
        self.sweep_orphans()
        self.sup.ensure_running()
        return True

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + max(0.0, seconds)
        while not self.stopping:
            left = end - time.monotonic()
            if left <= 0:
                return
            if self.installer is not None:
                if self.installer.ready.wait(min(left, 0.1)):
                    return                     # an install finished: record it now
            else:
                time.sleep(min(left, 0.1))

    # -- local view ------------------------------------------------------------------------
    def status(self) -> dict:
        processes = self.sup.all_states() if self.sup.running() else None
        parts = []
        for p in self.config.partitions:
            rec = self.local.partitions.get(p.id)
            parts.append({
                "id": p.id, "address": p.address, "port_base": p.port_base,
                "port_count": p.port_count, "user": p.user,
                "instance_id": rec.instance_id if rec else None,
                "revision": rec.revision if rec else None,
                "state": rec.state if rec else None,
                "attempts": rec.attempts if rec else 0,
                "log_tail": rec.log_tail if rec else "",
                "processes": (processes or {}).get(p.id, {}),
            })
        return {"computer": self.config.computer, "master": self.config.master,
                "root": self.config.root, "supervisord": processes is not None,
                "isolated": self.config.isolated, "isolation": self.config.isolation_text(),
                "etag": self.etag,
                "software": {h: {"url": r.url, "status": r.status,
                                 "software_types": list(r.software_types)}
                             for h, r in sorted(self.local.software.items())},
                "partitions": parts, "outbox": sorted(self.outbox)}


def service_digests(services: list, base: str | None = None) -> dict:
    """{service name: sha256 of its wrapper's content} of (name, path) pairs; a wrapper
    that cannot be read (or is not a regular file below ``base``, the partition's
    directory) gets "" (it never matches a recorded digest)."""
    import hashlib

    out = {}
    for name, path in services:
        data = confine.read_bytes(path, base)
        out[name] = "" if data is None else hashlib.sha256(data).hexdigest()
    return out


def read_service_record(path: str, base: str | None = None) -> dict | None:
    """The digests recorded when the partition's services were last (re)started; None
    when there is no usable record (then every running service restarts once)."""
    data = confine.read_bytes(path, base)
    if data is None:
        return None
    try:
        raw = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
    services = raw.get("services") if isinstance(raw, dict) else None
    if not isinstance(services, dict):
        log.warning("ignoring %s: it has no services object", path)
        return None
    return {k: v for k, v in services.items() if isinstance(k, str) and isinstance(v, str)}


def write_service_record(path: str, digests: dict, base: str | None = None) -> None:
    """Written by the node below ``base`` (the partition's directory) without following
    symlinks; the file stays the node's (the partition's user may delete it: then every
    running service restarts once)."""
    text = json.dumps({"version": 1, "services": digests}, indent=1, sort_keys=True) + "\n"
    if base is None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    confine.write_bytes(path, text.encode("utf-8"), base, 0o644)


def _write_pid(path: str) -> None:
    """Record the running agent's PID (read by ``slapfed node check``)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")


def _remove_own_pid(path: str) -> None:
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError:
        return


def read_agent_pid(paths: Paths) -> int | None:
    """The PID a running agent recorded, or None."""
    try:
        with open(paths.agent_pid, encoding="utf-8") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


class _Work:
    """Scratch state of one partition's block of actions."""

    def __init__(self, pid: str):
        self.pid = pid
        self.instance_id: str | None = None
        self.revision = 0
        self.report = False
        self.record: PartitionRecord | None = None
        self.connection: dict = {}
        self.shared_connections: dict = {}
        self.secret: dict = {}             # declared secret: sealed before it leaves
        self.secret_shared: dict = {}      # the same, per shared instance served
        self.promises: list = []
        self.instantiated = False
        self.moved: str | None = None      # QUARANTINED or ERASED: report that instead
        self.waiting = False               # its secret parameters are still pending

    def target(self, instance_id, revision, report) -> None:
        self.instance_id, self.revision, self.report = instance_id, revision, report

    def fail(self, tail: str) -> None:
        rec = self.record
        self.record = PartitionRecord(self.instance_id, self.revision, FAILED, None,
                                      rec.software_hash if rec else None,
                                      blocked_on=None, log_tail=tail)
