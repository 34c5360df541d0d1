"""Serving the master app with gunicorn (gthread workers), on loopback by default.

Depends on gunicorn, store and the app factory. The arbiter evolves the schema and may
start a ZEO server; each worker opens its own DB (never the arbiter). A FileStorage
admits exactly one worker (many threads); ZEO admits several. The URL actually bound
(port 0 picks one) is written to <data>/master.url, the arbiter's PID to master.pid.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from gunicorn.app.base import BaseApplication

from ..core.errors import InvalidInput
from ..store import open_db, parse_storage_uri
from ..store.zeo import start_zeo_server
from .app import close_app, create_app
from .topology import load_topology

URL_FILE = "master.url"
PID_FILE = "master.pid"

log = logging.getLogger("slapfed.master.server")


@dataclass
class ServeOptions:
    data_dir: str
    host: str = "127.0.0.1"
    port: int = 0
    storage: str | None = None
    start_zeo: bool = False
    workers: int = 1
    threads: int = 16
    access_log: str | None = None
    topology_files: tuple = ()      # topology files, validated before serving
    master_name: str | None = None  # this master's name in them


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
    if problems:
        first = problems[0]
        raise InvalidInput(f"cannot serve: {first['field']} {first['problem']}", problems)


class MasterApplication(BaseApplication):
    """gunicorn's view of the master: config from ServeOptions, the app built per worker."""

    def __init__(self, opts: ServeOptions, storage_uri: str | None, on_exit=None):
        self.opts = opts
        self.storage_uri = storage_uri
        self._on_exit = on_exit
        super().__init__()

    def load_config(self):
        opts = self.opts
        settings = {
            "bind": [f"{_host_for_bind(opts.host)}:{opts.port}"],
            "workers": opts.workers,
            "worker_class": "gthread",
            "threads": opts.threads,
            "preload_app": False,           # the DB is opened in each worker
            "accesslog": opts.access_log,
            "errorlog": "-",
            "loglevel": "info",
            "timeout": 60,
            "graceful_timeout": 10,
            "keepalive": 5,
            "backlog": 2048,
            "proc_name": "slapfed-master",
            # gunicorn's control socket lives at one path per user: several masters
            # on one machine would fight over it, and nothing here uses it.
            "control_socket_disable": True,
            "when_ready": self._when_ready,
            "worker_exit": self._worker_exit,
            "on_exit": self._arbiter_exit,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        return create_app({"STORAGE": self.storage_uri, "DATA_DIR": self.opts.data_dir,
                           "TOPOLOGY_FILES": self.opts.topology_files,
                           "MASTER_NAME": self.opts.master_name})

    # -- hooks ----------------------------------------------------------------
    def _when_ready(self, server):
        host, port = server.LISTENERS[0].sock.getsockname()[:2]
        url = f"http://{_host_for_url(host)}:{port}"
        _write_atomically(os.path.join(self.opts.data_dir, URL_FILE), url + "\n")
        server.log.info("slapfed master listening on %s (storage %s, %d worker(s) x %d "
                        "threads)", url, self.storage_uri or "file", self.opts.workers,
                        self.opts.threads)
        print(f"slapfed master listening on {url}", flush=True)

    @staticmethod
    def _worker_exit(server, worker):
        app = getattr(worker, "wsgi", None)
        if app is not None and hasattr(app, "extensions"):
            close_app(app)

    def _arbiter_exit(self, server):
        for name in (URL_FILE, PID_FILE):
            try:
                os.unlink(os.path.join(self.opts.data_dir, name))
            except FileNotFoundError:
                pass
        if self._on_exit is not None:
            self._on_exit()


def serve(opts: ServeOptions) -> None:
    """Run the master until SIGTERM/SIGINT. Raises InvalidInput or StorageError."""
    check_options(opts)
    # Refuse to start on invalid topology files (workers would only crash-loop on them).
    opts.topology_files = tuple(os.path.abspath(p) for p in opts.topology_files)
    opts.master_name = load_topology(opts.topology_files, opts.master_name).name
    opts.data_dir = os.path.abspath(opts.data_dir)
    os.makedirs(opts.data_dir, exist_ok=True)
    zeo = None
    storage_uri = opts.storage
    try:
        if opts.start_zeo:
            zeo = start_zeo_server(opts.data_dir)
            storage_uri = zeo.uri
        # Create the root containers once, before any worker serves; then let go of the
        # storage so that the worker can open it (a FileStorage admits one process).
        open_db(storage_uri, opts.data_dir).close()
        _write_atomically(os.path.join(opts.data_dir, PID_FILE), f"{os.getpid()}\n")
        MasterApplication(opts, storage_uri, on_exit=zeo.stop if zeo else None).run()
    finally:
        if zeo is not None and zeo.alive():
            zeo.stop()


def _host_for_bind(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
