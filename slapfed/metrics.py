"""Metrics in the Prometheus text format, for a master and for a node agent.

Depends on prometheus_client and the standard library. Each running master (one
MasterMetrics per app) and each node agent (one NodeMetrics) owns its registry: nothing
is registered globally, so several masters in one process (tests) never mix. What only
the database knows (forwards by peer and state, the storage's size, computers by lease)
is read when scraped, by callbacks the owner gives (``gauges``); counters and
histograms are fed by hooks as things happen.

A master with several gunicorn workers (``--workers N``) runs prometheus_client in
multiprocess mode: ``master serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (under its data
directory) before any worker starts, and a scrape of any worker adds up every
worker's values.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: from a cached 304 answer (sub-millisecond) to a long poll (up to a minute).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                   30, 60)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# A release install or an instance buildout: seconds to many minutes.
BUILDOUT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
CYCLE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def worker_gone(pid: int) -> None:
    """A worker process ended: its live gauges stop counting (multiprocess mode)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp
        mp.mark_process_dead(pid)


class _Callbacks:
    """A collector whose gauges are computed at scrape time by the owner's callbacks:
    ``callback() -> [(name, help, {label tuple: value}, label names)]``."""

    def __init__(self, callbacks):
        self.callbacks = callbacks

    def collect(self):
        for callback in self.callbacks:
            for name, doc, values, labels in callback():
                family = GaugeMetricFamily(name, doc, labels=list(labels))
                for key, value in sorted(values.items()):
                    family.add_metric(list(key), value)
                yield family

    def describe(self):
        return []        # computed at scrape time only; nothing to check at registration


class MasterMetrics:
    """What a master counts: requests by route, method and status with their latency,
    placement decisions (placed, or refused with the refusals counted per plugin),
    commits and their latency, long polls open; plus ``gauges`` read at scrape."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("slapfed_master_requests_total",
                                "Requests answered, by route, method and status code.",
                                ("route", "method", "code"), registry=r)
        self.latency = Histogram("slapfed_master_request_seconds",
                                 "Time to answer a request, by route.", ("route",),
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("slapfed_master_placement_decisions_total",
                                 "Placement decisions, by outcome (placed or refused).",
                                 ("outcome",), registry=r)
        self.refusals = Counter("slapfed_master_placement_refusals_total",
                                "Computers refused by each placement filter plugin, over "
                                "every decision.", ("plugin",), registry=r)
        self.commits = Histogram("slapfed_master_commit_seconds",
                                 "Time to commit one group of write use cases (fsync "
                                 "included).", buckets=COMMIT_BUCKETS, registry=r)
        self.long_polls = Gauge("slapfed_master_long_polls_open",
                                "Long polls waiting for a change now.", registry=r,
                                multiprocess_mode="livesum")
        self._callbacks: list = []
        if not multiprocess():
            r.register(_Callbacks(self._callbacks))

    def gauges(self, callback) -> None:
        """Read ``callback`` at every scrape (see _Callbacks)."""
        self._callbacks.append(callback)

    # -- hooks --------------------------------------------------------------------------
    def request(self, route: str, method: str, code: int, seconds: float) -> None:
        self.requests.labels(route, method, str(code)).inc()
        self.latency.labels(route).observe(seconds)

    def placement(self, decision) -> None:
        """A placement.pipeline.Decision, placed or not."""
        self.decisions.labels("placed" if decision.placed else "refused").inc()
        for attempt in decision.attempts:
            for refusal in attempt.refusals:
                self.refusals.labels(refusal.plugin).inc(refusal.count)

    def commit(self, seconds: float) -> None:
        self.commits.observe(seconds)

    # -- the scrape ---------------------------------------------------------------------
    def render(self) -> bytes:
        if not multiprocess():
            return generate_latest(self.registry)
        from prometheus_client import multiprocess as mp
        merged = CollectorRegistry()
        mp.MultiProcessCollector(merged)
        merged.register(_Callbacks(self._callbacks))
        return generate_latest(merged)


class NodeMetrics:
    """What a node agent counts: cycles and their time, actions by kind and result,
    buildout runs (release installs and instance buildouts) and their time, promise
    results; partitions by state are read at scrape."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.cycles = Histogram("slapfed_node_cycle_seconds",
                                "Time of one agent cycle (read the desired state, apply "
                                "the plan, report).", buckets=CYCLE_BUCKETS, registry=r)
        self.actions = Counter("slapfed_node_actions_total",
                               "Actions applied, by kind and result.", ("kind", "result"),
                               registry=r)
        self.buildouts = Histogram("slapfed_node_buildout_seconds",
                                   "Time of one buildout run, by what it built (release or "
                                   "instance) and its result.", ("what", "result"),
                                   buckets=BUILDOUT_BUCKETS, registry=r)
        self.promises = Counter("slapfed_node_promises_total",
                                "Promise checks, by result (ok or failed).", ("result",),
                                registry=r)
        self.unreachable = Counter("slapfed_node_master_unreachable_total",
                                   "Cycles that could not reach the master.", registry=r)
        self._callbacks: list = []
        r.register(_Callbacks(self._callbacks))

    def gauges(self, callback) -> None:
        self._callbacks.append(callback)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve(metrics, host: str, port: int):
    """Serve ``metrics.render()`` at /metrics on host:port in a daemon thread (the node
    agent's loopback port). Returns the server (``server_address``, ``shutdown``)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = metrics.render()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):    # scrapes are not news
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="slapfed-metrics",
                     daemon=True).start()
    return server

