"""Serving the master app with gunicorn (gthread workers), on loopback by default.

Depends on gunicorn, store and the app factory. The arbiter evolves the schema and may
start a ZEO server; each worker opens its own DB (never the arbiter). A FileStorage
admits exactly one worker (many threads); ZEO admits several. The URL actually bound
(port 0 picks one) is written to <data>/master.url, the arbiter's PID to master.pid.
TLS: the arbiter issues the master's own server certificate from its CA (<data>/tls/) and
gunicorn asks every client for a certificate (optional at the handshake, so /health and
token redemption work without one; the app answers 401 itself). gunicorn already puts
the TLS socket in the environ (``gunicorn.socket``); master.auth reads the peer from it.
Logging (slapfed.logs) is configured in the arbiter before it forks, so every worker
writes through the same handler and format; gunicorn's own lines go there too, and the
access log is the app's (master.access: principal and request id), not gunicorn's.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import signal
import ssl
import threading
from dataclasses import dataclass

import gunicorn.util
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from .. import logs
from ..core.errors import Fenced, InvalidInput, ReadOnly
from ..core.leases import DEFAULT_LEASE
from ..core.retention import DEFAULT_RETENTION, purge_period
from ..core.provenance import DEFAULT_MAX_DEPTH, check_chain
from ..store import open_db, parse_storage_uri
from ..store.zeo import start_zeo_server
from ..ca import identity as ids
from ..ca.keys import generate_key, make_private_dir, write_private_key
from ..core.outbound import OutboundPolicy
from ..core.products import Products
from ..services.lease_marks import record_ran_out
from ..services.runtime import DEFAULT_RETRY_MAX, MAX_LONG_POLL, MasterSettings
from ..metrics import worker_gone
from .app import EXTENSION, close_app, create_app, runtime_of
from .auth import open_authority
from .topology import load_topology
from .worker import MasterWorker
from ..core import replication as rep
from ..replication.local import read_role
from ..replication.runtime import startup_fence_check
from ..replication.rejoin import needs_rejoin, rejoin
from ..replication.setup import prepare_replica, promote_in_place, read_invitation
from ..services.replication import replication_view
from ..store.maintenance import (DEFAULT_PACK_EVERY, DEFAULT_PACK_KEEP, Maintenance,
                                 MaintenanceOptions, Periodic)

MAINTENANCE_EXTENSION = "slapfed.maintenance"

TLS_DIR = "tls"                 # <data>/tls: the master's own server key and certificate
SERVER_KEY = "master.key"
SERVER_CERT = "master.crt"
LOOPBACK_NAMES = ("localhost",)
URL_FILE = "master.url"
PID_FILE = "master.pid"
HEARTBEAT_DIR = "/dev/shm"      # the workers' liveness files (tmpfs), where there is one

log = logging.getLogger("slapfed.master.server")


def heartbeat_dir(candidate: str = HEARTBEAT_DIR) -> str | None:
    """Where gunicorn's workers keep their liveness file: ``candidate`` when it is a
    directory this user may create files in, else None (the temporary directory)."""
    if os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
        return candidate
    return None


@dataclass
class ServeOptions:
    data_dir: str
    host: str = "127.0.0.1"
    port: int = 0
    storage: str | None = None
    start_zeo: bool = False
    workers: int = 1
    threads: int = 16
    access_log: bool = True         # one line per request (logger slapfed.access)
    access_log_file: str | None = None  # the access lines there instead of with the rest
    log_level: str = logs.DEFAULT_LEVEL
    log_format: str = logs.DEFAULT_FORMAT
    log_file: str | None = None     # the log there instead of stderr
    topology_files: tuple = ()      # topology files, validated before serving
    master_name: str | None = None  # this master's name in them
    insecure_http: bool = False     # development mode: plain HTTP on loopback, no identities
    max_depth: int = DEFAULT_MAX_DEPTH  # longest chain of masters a request may have crossed
    ancestry: tuple = ()            # the masters above this one, root first
    peer_retry_max: float = DEFAULT_RETRY_MAX   # longest back-off (s) to a failing peer
    backup_to: str | None = None    # backup repository of scheduled backups
    backup_every: float = 3600.0    # seconds between two scheduled backups (with backup_to)
    pack_every: float = DEFAULT_PACK_EVERY  # seconds between two automatic packs (0: never)
    pack_keep: float = DEFAULT_PACK_KEEP    # history a pack keeps (seconds)
    lease: float = DEFAULT_LEASE    # seconds a computer stays live without a call of its node
    rebuild_after: float = 0.0      # lease out this long: the computer is declared lost (0: off)
    outbound_allow: tuple = ()      # networks the master may call for peers (empty: any)
    long_poll_max: float = MAX_LONG_POLL    # longest a long poll here waits (seconds)
    replica_of: str | None = None   # an invitation file: serve as a replica of its primary
    sync: bool = False              # a replica whose primary waits for it (sync mode)
    sync_timeout: float = 5.0       # seconds a primary's write waits for a sync replica
    destroyed_retention: float = DEFAULT_RETENTION  # destroyed instances are forgotten
                                    # this long after their last change (0: kept forever)
    primary_wait: float = 0.0       # a new replica: seconds to wait for its primary to answer
    peer_usage_interval: float = 60.0   # seconds between two pulls of a peer's usage feed
    promote: bool = False           # a replica's data directory becomes the primary's
    products: tuple = ()            # NAME=URL: SlapOS' product aliases (core.products)


def check_options(opts: ServeOptions) -> None:
    """InvalidInput when the options cannot work together (listing every problem)."""
    problems = []
    if opts.start_zeo and opts.storage not in (None, "", "file"):
        problems.append({"field": "start_zeo",
                         "problem": "--start-zeo serves <data>/master.fs; drop --storage"})
    if opts.workers < 1:
        problems.append({"field": "workers", "problem": "must be >= 1"})
    if opts.threads < 1:
        problems.append({"field": "threads", "problem": "must be >= 1"})
    if opts.workers > 1 and not opts.start_zeo:
        try:
            spec = parse_storage_uri(opts.storage, opts.data_dir)
        except InvalidInput as exc:
            problems.extend(exc.details)
        else:
            if spec.kind == "file":
                problems.append({"field": "workers", "problem": (
                    f"{opts.workers} workers cannot share one FileStorage (one process "
                    "only); use --start-zeo or --storage zeo://HOST:PORT, or --workers 1")})
    if isinstance(opts.max_depth, bool) or not isinstance(opts.max_depth, int) \
            or opts.max_depth < 1:
        problems.append({"field": "max_depth", "problem": "must be an integer >= 1"})
    problems.extend(check_chain(list(opts.ancestry), "ancestor")[0])
    if not opts.access_log and opts.access_log_file:
        problems.append({"field": "access_log", "problem": (
            "--no-access-log and --access-log FILE contradict each other; drop one")})
    if opts.insecure_http and not is_loopback(opts.host):
        problems.append({"field": "insecure_http", "problem": (
            f"plain HTTP is only served on loopback, not on {opts.host}; drop "
            "--insecure-http to serve HTTPS with client certificates")})
    problems.extend(_maintenance_problems(opts))
    for parse, values in ((OutboundPolicy.parse, opts.outbound_allow),
                          (Products.parse, opts.products)):
        try:
            parse(values)
        except InvalidInput as exc:
            problems.extend(exc.details)
    if isinstance(opts.long_poll_max, bool) \
            or not isinstance(opts.long_poll_max, (int, float)) \
            or not 0 <= opts.long_poll_max <= MAX_LONG_POLL:
        problems.append({"field": "long_poll_max",
                         "problem": f"must be a number of seconds in 0..{MAX_LONG_POLL:g}"})
    problems.extend(_replica_problems(opts))
    if problems:
        first = problems[0]
        raise InvalidInput(f"cannot serve: {first['field']} {first['problem']}", problems)


# What gunicorn refuses before the app sees a request (a request line over 4094 bytes,
# too many headers, a malformed line): the status it chose -> the error code answered.
GUNICORN_ERROR_CODES = {400: "invalid_input", 403: "forbidden", 414: "uri_too_long",
                        417: "expectation_failed", 431: "header_fields_too_large",
                        500: "internal_error", 501: "not_implemented"}


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's answer to a request it refuses itself, as the one JSON error body every
    other answer has (with a request id in the body and X-Request-Id), not its HTML page.
    Installed in place of gunicorn.util.write_error by MasterApplication."""
    import json
    import uuid
    request_id = uuid.uuid4().hex
    code = GUNICORN_ERROR_CODES.get(status_int, "error")
    body = json.dumps({"error": {"code": code, "message": mesg or reason, "details": [],
                                 "request_id": request_id}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Request-Id: {request_id}\r\n\r\n").encode("latin-1")
    gunicorn.util.write_nonblock(sock, head + body)


class _Logger(GunicornLogger):
    """gunicorn's own lines (start, workers, errors) through slapfed's handler and format;
    its access log stays off (the app writes a better one)."""

    def setup(self, cfg):
        super().setup(cfg)
        logs.hand_over(self.error_log)
        logs.hand_over(self.access_log)


def _maintenance_problems(opts: ServeOptions) -> list[dict]:
    problems = []
    for name in ("backup_every", "pack_every", "pack_keep", "destroyed_retention"):
        value = getattr(opts, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            problems.append({"field": name, "problem": "must be a number of seconds >= 0"})
    if opts.backup_to:
        if not opts.start_zeo:
            try:
                spec = parse_storage_uri(opts.storage, opts.data_dir)
            except InvalidInput:
                spec = None
            if spec is not None and spec.kind != "file":
                problems.append({"field": "backup_to", "problem": (
                    "scheduled backups read the FileStorage file: back up a remote ZEO "
                    "storage on its own machine (or use --start-zeo)")})
        repo = os.path.abspath(opts.backup_to)
        data = os.path.abspath(opts.data_dir)
        if repo == data or repo.startswith(data + os.sep):
            problems.append({"field": "backup_to",
                             "problem": "must lie outside the data directory"})
    return problems


def _replica_problems(opts: ServeOptions) -> list[dict]:
    problems = []
    if opts.primary_wait and not opts.replica_of:
        problems.append({"field": "primary_wait",
                         "problem": "is for a replica: give --replica-of"})
    if opts.sync and not opts.replica_of:
        problems.append({"field": "sync", "problem": "is for a replica: give --replica-of"})
    if opts.promote and opts.replica_of:
        problems.append({"field": "promote", "problem": (
            "makes DATA the primary; --replica-of makes it a replica: give one")})
    if not (isinstance(opts.sync_timeout, (int, float)) and 0 < opts.sync_timeout <= 3600):
        problems.append({"field": "sync_timeout",
                         "problem": "must be a number of seconds in (0, 3600]"})
    if opts.replica_of:
        if opts.insecure_http:
            problems.append({"field": "replica_of", "problem": (
                "a replica follows its primary over mutual TLS: drop --insecure-http")})
        if opts.start_zeo or opts.workers != 1:
            problems.append({"field": "replica_of", "problem": (
                "a replica applies its primary's transactions to its own FileStorage: "
                "one worker, no --start-zeo")})
        try:
            spec = parse_storage_uri(opts.storage, opts.data_dir)
        except InvalidInput:
            spec = None
        if spec is not None and spec.kind != "file":
            problems.append({"field": "replica_of",
                             "problem": "a replica's storage is a FileStorage"})
    return problems


def start_maintenance(app, opts: ServeOptions, storage_uri: str | None):
    """The maintenance thread of this worker (it runs once one worker owns the data
    directory's maintenance lock): scheduled backups and packs, `master pack` requests."""
    fs_path = None
    spec = parse_storage_uri(None if opts.start_zeo else storage_uri, opts.data_dir)
    if spec.kind == "file":
        fs_path = spec.path
    rt = runtime_of(app)
    m = Maintenance(rt.db, MaintenanceOptions(
        data_dir=opts.data_dir, fs_path=fs_path, backup_to=opts.backup_to,
        backup_every=opts.backup_every if opts.backup_to else 0.0,
        pack_every=opts.pack_every, pack_keep=opts.pack_keep,
        tasks=(lease_tasks(rt) + rebuild_tasks(rt)
               + retention_tasks(rt, opts.destroyed_retention))))
    app.extensions[MAINTENANCE_EXTENSION] = m.start()
    return m


def lease_tasks(rt) -> tuple:
    """Leases' transitions as maintenance work: every half second, the computers whose
    lease ran out are recorded so (one write per computer that ran out, none while
    nothing does), which tells the peers that delegated instances there (their long
    poll reports an instance whose computer changed). Their node's next call records it
    back (services.lease_marks). A replica or a fenced primary records nothing: its
    primary does."""
    def run():
        try:
            out = record_ran_out(rt)
        except (ReadOnly, Fenced):
            return
        for cid in out:
            log.warning("computer %s: its lease (%g s) ran out; it and what it hosts show "
                        "unknown until its node calls again", cid, rt.leases.interval,
                        extra={"computer": cid, "lease": rt.leases.interval})
    return (Periodic("lease_out", 0.5, run),)


def rebuild_tasks(rt) -> tuple:
    """The rebuild_after policy as maintenance work (none when it is off): once a
    second, computers whose lease has been out that long are declared lost."""
    after = rt.settings.rebuild_after
    if not after:
        return ()
    from ..services.lost import declare_expired_lost  # noqa: PLC0415 (only when on)

    def run():
        for cid in declare_expired_lost(rt, after):
            log.warning("computer %s declared lost: its lease has been out for over %g s "
                        "(rebuild_after); what it hosted is placed again elsewhere", cid,
                        after, extra={"computer": cid, "rebuild_after": after})
    return (Periodic("rebuild_after", 1.0, run),)


def retention_tasks(rt, retention: float) -> tuple:
    """Forgetting destroyed instances older than ``retention`` seconds as maintenance
    work (none when it is 0), every tenth of it (between a second and an hour)."""
    if not retention:
        return ()
    from ..services.retention import purge_destroyed  # noqa: PLC0415 (only when on)

    def run():
        gone = purge_destroyed(rt, retention)
        if gone:
            log.info("%d destroyed instance(s) forgotten (destroyed_retention %g s)",
                     len(gone), retention, extra={"instances": len(gone),
                                                  "destroyed_retention": retention})
    return (Periodic("destroyed_retention", purge_period(retention), run),)


def stop_maintenance(app) -> None:
    m = getattr(app, "extensions", {}).pop(MAINTENANCE_EXTENSION, None)
    if m is not None:
        m.stop()


def record_topology(opts: ServeOptions) -> None:
    """DATA/topology.json: the topology files this master serves and its name in them,
    so that a backup holds copies of them (store.backup)."""
    import json
    _write_atomically(os.path.join(opts.data_dir, "topology.json"),
                      json.dumps({"files": list(opts.topology_files),
                                  "name": opts.master_name}) + "\n")


class MasterApplication(BaseApplication):
    """gunicorn's view of the master: config from ServeOptions, the app built per worker."""

    def __init__(self, opts: ServeOptions, storage_uri: str | None, on_exit=None,
                 tls: "ServerTLS | None" = None):
        self.opts = opts
        self.tls = tls
        self.storage_uri = storage_uri
        self._on_exit = on_exit
        super().__init__()

    def load_config(self):
        opts = self.opts
        gunicorn.util.write_error = write_json_error    # inherited by the workers
        settings = {
            "bind": [f"{_host_for_bind(opts.host)}:{opts.port}"],
            "workers": opts.workers,
            "worker_class": MasterWorker,   # gthread, less work per connection
            "threads": opts.threads,
            "preload_app": False,           # the DB is opened in each worker
            "accesslog": None,              # master.access logs each request
            "errorlog": "-",
            # gunicorn's debug lines are about gunicorn (its configuration, each
            # connection): --log-level debug is for slapfed's own
            "loglevel": "info" if opts.log_level == "debug" else opts.log_level,
            "logger_class": _Logger,
            "timeout": 60,
            "graceful_timeout": 10,
            "keepalive": 5,
            "backlog": 2048,
            "proc_name": "slapfed-master",
            # gunicorn's control socket lives at one path per user: several masters
            # on one machine would fight over it, and nothing here uses it.
            "control_socket_disable": True,
            # Each worker tells the arbiter it is alive by touching a file, once per turn
            # of its event loop: on tmpfs that costs no disk metadata write.
            "worker_tmp_dir": heartbeat_dir(),
            "when_ready": self._when_ready,
            "post_worker_init": self._post_worker_init,
            "worker_int": self._worker_int,
            "worker_exit": self._worker_exit,
            "child_exit": self._child_exit,
            "on_exit": self._arbiter_exit,
        }
        if self.tls is not None:
            settings.update(certfile=self.tls.certfile, keyfile=self.tls.keyfile,
                            ca_certs=self.tls.ca_certs, cert_reqs=ssl.CERT_OPTIONAL,
                            ssl_context=ServerContext())
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        return create_app({"STORAGE": self.storage_uri, "DATA_DIR": self.opts.data_dir,
                           "TOPOLOGY_FILES": self.opts.topology_files,
                           "MASTER_NAME": self.opts.master_name,
                           "INSECURE": self.opts.insecure_http,
                           "MAX_DEPTH": self.opts.max_depth,
                           "ANCESTRY": tuple(self.opts.ancestry),
                           "FORWARDER": True,
                           "ACCESS_LOG": self.opts.access_log,
                           "PEER_RETRY_MAX": self.opts.peer_retry_max,
                           "LEASE": self.opts.lease,
                           "REBUILD_AFTER": self.opts.rebuild_after,
                           "OUTBOUND_ALLOW": tuple(self.opts.outbound_allow),
                           "LONG_POLL_MAX": self.opts.long_poll_max,
                           "REPLICATION": True,
                           "SYNC_TIMEOUT": self.opts.sync_timeout,
                           "PEER_USAGE_INTERVAL": self.opts.peer_usage_interval,
                           "PRODUCTS": tuple(self.opts.products)})

    # -- hooks ----------------------------------------------------------------
    def _when_ready(self, server):
        host, port = server.LISTENERS[0].sock.getsockname()[:2]
        scheme = "http" if self.tls is None else "https"
        url = f"{scheme}://{_host_for_url(host)}:{port}"
        _write_atomically(os.path.join(self.opts.data_dir, URL_FILE), url + "\n")
        opts = self.opts
        tls = "mutual TLS" if self.tls is not None else "plain HTTP (development mode)"
        name = MasterSettings(name=opts.master_name).here
        log.info("master %r listening on %s: %s, storage %s, %d worker(s) x %d threads, "
                 "data %s", name, url, tls,
                 _storage_label(self.storage_uri), opts.workers, opts.threads,
                 opts.data_dir,
                 extra={"master": name, "url": url,
                        "tls": self.tls is not None,
                        "storage": _storage_label(self.storage_uri),
                        "workers": opts.workers, "threads": opts.threads,
                        "data_dir": opts.data_dir})
        print(f"slapfed master listening on {url}", flush=True)

    def _post_worker_init(self, worker):
        """SIGTERM: the worker stops once its requests are answered; its long polls
        (GET /federation/changes) answer now instead of holding it for the grace period.
        (Logging needs nothing here: the worker inherited the arbiter's handler.)
        Starts the worker's maintenance thread (scheduled backups and packs)."""
        graceful = signal.getsignal(signal.SIGTERM)
        app = worker.wsgi
        start_maintenance(app, self.opts, self.storage_uri)

        def handle_term(sig, frame):
            m = app.extensions.get(MAINTENANCE_EXTENSION)
            if m is not None:
                m.request_stop()            # joined at worker exit, not in a handler
            runtime_of(app).begin_stop()
            if callable(graceful):
                graceful(sig, frame)

        signal.signal(signal.SIGTERM, handle_term)
        signal.siginterrupt(signal.SIGTERM, False)     # as gunicorn sets it

    @staticmethod
    def _worker_int(worker):
        """SIGINT/SIGQUIT (Ctrl-C, a quick stop): the worker exits in 0.1 s; its long
        polls answer now, and closing the app waits for the requests in flight."""
        app = getattr(worker, "wsgi", None)
        if app is not None and EXTENSION in getattr(app, "extensions", {}):
            m = app.extensions.get(MAINTENANCE_EXTENSION)
            if m is not None:
                m.request_stop()
            runtime_of(app).begin_stop()

    @staticmethod
    def _worker_exit(server, worker):
        app = getattr(worker, "wsgi", None)
        if app is not None and hasattr(app, "extensions"):
            stop_maintenance(app)
            close_app(app)

    @staticmethod
    def _child_exit(server, worker):
        """The arbiter saw a worker end: its live gauges stop counting (metrics)."""
        worker_gone(worker.pid)

    def _arbiter_exit(self, server):
        for name in (URL_FILE, PID_FILE):
            try:
                os.unlink(os.path.join(self.opts.data_dir, name))
            except FileNotFoundError:
                pass
        if self._on_exit is not None:
            self._on_exit()


def serve(opts: ServeOptions) -> None:
    """Run the master until SIGTERM/SIGINT. Raises InvalidInput or StorageError.
    Logging is set up as ``opts`` say once they are known to be valid (the workers
    inherit it)."""
    check_options(opts)
    # Refuse to start on invalid topology files (workers would only crash-loop on them).
    opts.topology_files = tuple(os.path.abspath(p) for p in opts.topology_files)
    opts.master_name = load_topology(opts.topology_files, opts.master_name).name
    logs.configure(opts.log_level, opts.log_format, opts.log_file,
                   access=opts.access_log, access_file=opts.access_log_file)
    opts.data_dir = os.path.abspath(opts.data_dir)
    os.makedirs(opts.data_dir, exist_ok=True)
    record_topology(opts)
    zeo = None
    storage_uri = opts.storage
    try:
        if opts.start_zeo:
            zeo = start_zeo_server(opts.data_dir)
            storage_uri = zeo.uri
        if opts.replica_of:
            spec = parse_storage_uri(storage_uri, opts.data_dir)
            if needs_rejoin(opts.data_dir, spec.path, read_invitation(opts.replica_of)["url"]):
                # a former primary (fenced, or replaced while it was down), or a replica
                # of another primary: keep the history it shares with this primary, set
                # the rest aside (DATA/diverged/), never merge it
                log.warning("%s", rejoin(opts.data_dir, opts.replica_of, spec.path,
                                         opts.sync).text())
            prepare_replica(opts.data_dir, opts.replica_of, opts.sync, spec.path,
                            opts.primary_wait)
        if opts.promote:
            # a partition that took over its replica's data (a child master rebuilt from
            # it): that replica becomes the primary, at a new epoch, before serving
            promote_in_place(opts.data_dir, storage_uri)
        if read_role(opts.data_dir).role != rep.REPLICA:
            # Create the root containers once, before any worker serves; then let go of
            # the storage so that the worker can open it (a FileStorage admits one
            # process). A replica's schema is its primary's: never evolved here.
            db = open_db(storage_uri, opts.data_dir)
            try:
                view = replication_view(db)
            finally:
                db.close()
            if not opts.insecure_http:
                # a primary that was replaced while it was down learns it before serving
                startup_fence_check(opts.data_dir, view,
                                    os.path.join(opts.data_dir, "ca", "ca.crt"))
        if opts.insecure_http:
            # the CA exists before the workers start (each would else race to create it)
            open_authority(MasterSettings(data_dir=opts.data_dir, name=opts.master_name))
            tls = None
        else:
            tls = prepare_tls(opts)
        _write_atomically(os.path.join(opts.data_dir, PID_FILE), f"{os.getpid()}\n")
        MasterApplication(opts, storage_uri, on_exit=zeo.stop if zeo else None,
                          tls=tls).run()
    finally:
        if zeo is not None and zeo.alive():
            zeo.stop()


@dataclass(frozen=True)
class ServerTLS:
    certfile: str
    keyfile: str
    ca_certs: str


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_hosts(listen_host: str) -> list[str]:
    """The names the master's certificate is valid for: loopback plus the listen host."""
    hosts = ["127.0.0.1", "::1", "localhost"]
    host = listen_host.strip("[]")
    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = False
    if host and not unspecified and host not in hosts:
        hosts.append(host)
    return hosts


def prepare_tls(opts: ServeOptions) -> ServerTLS:
    """Open (or create) the CA and issue the master's server certificate for this start:
    a fresh key made here in <data>/tls (0600), identity master/<name>."""
    settings = MasterSettings(data_dir=opts.data_dir, name=opts.master_name)
    ca = open_authority(settings)
    tls_dir = make_private_dir(os.path.join(opts.data_dir, TLS_DIR))
    key_path, cert_path = tls_dir / SERVER_KEY, tls_dir / SERVER_CERT
    key_path.unlink(missing_ok=True)
    key = generate_key()
    write_private_key(key_path, key)
    identity = ids.master(settings.here)
    record = ca.issue(identity, key.public_key(), hosts=server_hosts(opts.host))
    _write_atomically(str(cert_path), record.certificate_pem)
    return ServerTLS(str(cert_path), str(key_path), str(ca.directory / "ca.crt"))


class ServerContext:
    """gunicorn's ``ssl_context`` hook: the worker's one server SSLContext.

    gunicorn asks the hook for a context on every new connection; building one each time
    reads and parses the key, certificate and CA files again (about 1 ms of CPU), and a
    fresh context also has fresh session-ticket keys, so no ticket it issued could ever
    resume a session. Here the context is built once per process (the arbiter never
    wraps a socket: each worker builds its own after the fork) and then shared by every
    connection of that worker (SSLContext.wrap_socket is thread-safe). TLS 1.2 at least.

    TLS 1.3 session tickets: ``tickets`` per full handshake (default 0). The stock SLAP
    client (a new requests session per call), slapfed's CLI (a new process per command)
    and the node keep no TLS session between connections, so a ticket is never used:
    sending none saves their encryption and about 0.5 kB per handshake. The files are
    read when the worker first wraps a socket; a server certificate is issued at each
    start (prepare_tls), so a running worker never needs to read them again."""

    def __init__(self, tickets: int = 0):
        self.tickets = tickets
        self._lock = threading.Lock()
        self._built: tuple[int, ssl.SSLContext] | None = None

    def __call__(self, config, default_factory) -> ssl.SSLContext:
        built = self._built
        if built is not None and built[0] == os.getpid():
            return built[1]
        with self._lock:
            built = self._built
            if built is None or built[0] != os.getpid():
                built = self._built = (os.getpid(), self.build(default_factory))
        return built[1]

    def build(self, default_factory) -> ssl.SSLContext:
        context = default_factory()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.num_tickets = self.tickets
        return context


def _storage_label(uri: str | None) -> str:
    """The storage as logged: its kind and place, never credentials a URI may carry."""
    if not uri or uri == "file":
        return "file (<data>/master.fs)"
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def _host_for_bind(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
