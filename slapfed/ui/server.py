"""The dashboard's web server: a Flask app on loopback that calls the master as its user.

Depends on Flask, Jinja2, slapfed.client (the user's MasterClient, made by the CLI from
the client config), core.errors, and the sibling guard and view modules.

One poller thread asks the master (health, whoami once, the user's instances, and the
topology, computers and peers where the user may read them) every ``interval`` seconds
while a page is open, renders each section of the page, and wakes the pages' event
streams (Server-Sent Events) when a section changed: a page replaces that section in
place, without reloading. Buttons post to /action, which calls the same client
methods as ``slapfed start|stop|destroy``: the dashboard can do nothing its user
cannot, since the master decides on the user's certificate. The connection parameters
sealed to the user are opened here with the user's key (Opener), as ``slapfed show``
opens them, and shown in the instance's details: the master still only ever sees the
sealed text, and the opened values go to this run's pages (loopback, token) only.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

import jinja2
from flask import Flask, Response, jsonify, request

from ..client import MasterClient
from ..core.errors import Forbidden, MasterUnreachable, SlapfedError, Unauthenticated
from . import guard, view

SECTIONS = ("status", "picture", "instances", "computers", "peers")
# Optional reads: which client method, and what a refusal means to the reader.
OPTIONAL = {"topology": "topology", "computers": "list_computers", "peers": "list_peers"}
IDLE_AFTER = 60.0            # seconds without a page open: the poller rests
KEEPALIVE = 15.0             # seconds between comments on an idle event stream
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; "
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

log = logging.getLogger(__name__)

templates = jinja2.Environment(loader=jinja2.PackageLoader("slapfed.ui", "templates"),
                               autoescape=True, trim_blocks=True, lstrip_blocks=True,
                               undefined=jinja2.StrictUndefined)


@dataclass
class Snapshot:
    """What the master answered at one poll (None: not asked, refused or failed; the
    reason is in ``notes``)."""
    at: float
    master: str
    url: str
    who: dict | None = None
    instances: list | None = None
    topology: dict | None = None
    computers: list | None = None
    peers: list | None = None
    notes: dict = field(default_factory=dict)
    error: str | None = None             # the master did not answer at all


class Opener:
    """Opens, in this process, the connection parameters sealed to the dashboard's user,
    with the key of the user's client config (``key_path``; None: nothing opens), as
    ``slapfed show`` does: each for (instance id, parameter), so a value moved elsewhere
    does not open. What it opened is kept in memory only, per sealed text, so that a
    poll opens only what changed; it goes to this user's pages and nowhere else."""

    MAX_KEPT = 20000

    def __init__(self, key_path: str | None):
        self.key_path = key_path
        self._key, self._why = None, None
        self._opened: dict[tuple, tuple] = {}   # (iid, name, text) -> (value, problem)

    def _private_key(self):
        if self._key is None and self._why is None:
            if not self.key_path:
                self._why = "no key in the client config (slapfed config set --identity DIR)"
            else:
                from ..sealed_values import read_key
                try:
                    self._key = read_key(self.key_path)
                except (OSError, ValueError, TypeError) as exc:
                    self._why = f"cannot read the client key {self.key_path}: {exc}"
        return self._key

    def __call__(self, inst: dict) -> dict:
        """``inst`` with its sealed connection parameters opened (``sealed`` names them;
        ``unopened``: {parameter: why}), or as it is when none is sealed."""
        from ..core.sealed import connection_context, is_sealed

        conn = inst.get("connection") or {}
        names = sorted(k for k, v in conn.items() if is_sealed(v))
        if not names:
            return inst
        opened, problems = dict(conn), {}
        for name in names:
            slot = (inst.get("id"), name, conn[name])
            if slot not in self._opened:
                key = self._private_key()
                if key is None:
                    found = (None, self._why)
                else:
                    from ..ca.errors import SealedValueInvalid
                    from ..ca.seal import open_sealed
                    try:
                        found = (open_sealed(conn[name], key,
                                             connection_context(inst["id"], name)), None)
                    except SealedValueInvalid as exc:
                        found = (None, exc.message)
                if len(self._opened) >= self.MAX_KEPT:
                    self._opened.clear()
                self._opened[slot] = found
            value, problem = self._opened[slot]
            if problem is None:
                opened[name] = value
            else:
                problems[name] = problem
        out = {**inst, "connection": opened, "sealed": names}
        if problems:
            out["unopened"] = problems
        return out


def gather(client: MasterClient, previous: Snapshot | None, refused: dict,
           now: float, opener=None) -> Snapshot:
    """One poll. ``refused`` (read and updated): optional reads the master refused this
    user, with why; they are not asked again in this run (a certificate's role does not
    change). An unreachable master keeps the previous answers, marked by ``error``.
    ``opener`` (an Opener): the user's sealed connection parameters opened."""
    snap = Snapshot(at=now, master=previous.master if previous else client.url,
                    url=client.url, who=previous.who if previous else None)
    try:
        health = client.health()
        snap.master = health.get("name") or snap.master
        if snap.who is None:
            snap.who = client.whoami()
        # every instance the master lets the user read: their trees (children that
        # their instances requested too), everything for an admin; destroyed ones too
        # (shown last) until the master forgets them; every page of the list
        snap.instances = client.list_instances(include_destroyed=True)
        if opener is not None:
            snap.instances = [opener(i) for i in snap.instances]
        for key, method in OPTIONAL.items():
            if key in refused:
                snap.notes[key] = refused[key]
                continue
            try:
                setattr(snap, key, getattr(client, method)())
            except (Forbidden, Unauthenticated) as exc:
                refused[key] = snap.notes[key] = f"Not shown: {exc.message}."
            except (MasterUnreachable, SlapfedError) as exc:
                snap.notes[key] = f"could not be read: {exc.message}"
    except SlapfedError as exc:
        if previous is not None:
            for key in ("instances", "topology", "computers", "peers"):
                setattr(snap, key, getattr(previous, key))
            snap.notes = dict(previous.notes)
        snap.error = exc.message
    return snap


def render_sections(snap: Snapshot, interval: float) -> dict[str, str]:
    """Each section of the page as HTML (escaped by the templates)."""
    here = snap.master
    you = (snap.who or {}).get("principal")
    rows = view.instance_rows(snap.instances or [], snap.at, here, you)
    computers = [view.computer_row(c, snap.at) for c in snap.computers or []]
    peers = [view.peer_row(p, snap.at) for p in snap.peers or []]
    svg, picture_note = None, None
    if snap.instances is not None or snap.topology is not None:
        try:
            svg = view.picture(view.federation(snap.topology, snap.instances or [], here))
        except Exception as exc:  # noqa: BLE001 - a picture that fails leaves the tables
            picture_note = f"the picture could not be drawn: {exc}"
    whole = snap.topology is not None
    ctx = {"snap": snap, "rows": rows, "computers": computers, "peers": peers, "svg": svg,
           "whole": whole, "picture_note": picture_note, "counts": view.counts(rows),
           "updated": view.clock(snap.at), "interval": interval, "you": you}
    return {name: templates.get_template(f"_{name}.html").render(**ctx) for name in SECTIONS}


class Dashboard:
    """The latest rendered sections, a version that grows when one changes, and the
    poller that keeps them up to date."""

    def __init__(self, client: MasterClient, interval: float = 2.0, clock=time.time,
                 opener: Opener | None = None):
        self.client = client
        self.opener = opener
        self.interval = interval
        self.clock = clock
        self.snapshot: Snapshot | None = None
        self.sections: dict[str, str] = {}
        self.version = 0
        self.refused: dict = {}
        self.last_viewer = 0.0
        self._changed = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()          # one poll at a time
        self._thread: threading.Thread | None = None

    # -- polling ------------------------------------------------------------------------
    def refresh(self) -> None:
        with self._lock:
            snap = gather(self.client, self.snapshot, self.refused, self.clock(),
                          self.opener)
            sections = render_sections(snap, self.interval)
            with self._changed:
                self.snapshot = snap
                if sections != self.sections:
                    self.sections = sections
                    self.version += 1
                    self._changed.notify_all()

    def viewed(self) -> None:
        self.last_viewer = time.monotonic()

    def poke(self) -> None:
        """Poll now (after an action, or when a page opens)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if time.monotonic() - self.last_viewer < IDLE_AFTER:
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - the poller outlives one bad poll
                    log.exception("slapfed ui: refreshing the dashboard failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="slapfed-ui-poller",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._changed:
            self._changed.notify_all()

    def current(self) -> tuple[int, dict]:
        if not self.sections:
            self.refresh()
        return self.version, self.sections

    def wait_change(self, seen: int, timeout: float) -> tuple[int, dict]:
        """The version and sections once the version is past ``seen`` (or ``timeout``
        seconds passed)."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != seen or self._stop.is_set(),
                                   timeout)
            return self.version, self.sections


def create_app(dashboard: Dashboard, token: str, allowed) -> Flask:
    """``allowed``: the Host values naming this server (guard.allowed_hosts), or a
    callable returning them (the port is known once the socket is bound)."""
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    hosts = allowed if callable(allowed) else (lambda: allowed)

    @app.before_request
    def check():
        refused = guard.refusal(
            method=request.method, host=request.headers.get("Host"),
            origin=request.headers.get("Origin"),
            fetch_site=request.headers.get("Sec-Fetch-Site"),
            token=request.args.get(guard.TOKEN_PARAM),
            header_token=request.headers.get(guard.TOKEN_HEADER),
            expected=token, allowed=hosts())
        if refused is not None:
            status, reason = refused
            return Response(f"slapfed ui: {reason}\n", status=status,
                            mimetype="text/plain")
        dashboard.viewed()
        return None

    @app.after_request
    def harden(resp):
        resp.headers.update(SECURITY_HEADERS)
        return resp

    @app.get("/")
    def page():
        dashboard.poke()
        _version, sections = dashboard.current()
        return templates.get_template("page.html").render(
            sections=sections, token=token, interval=dashboard.interval,
            actions=view.ACTIONS)

    @app.get("/events")
    def events():
        def stream():
            seen, sent = -1, {}
            while not dashboard._stop.is_set():
                version, sections = (dashboard.current() if seen < 0
                                     else dashboard.wait_change(seen, KEEPALIVE))
                dashboard.viewed()
                changed = {k: v for k, v in sections.items() if sent.get(k) != v}
                if changed:
                    sent.update(changed)
                    yield f"event: sections\ndata: {json.dumps(changed)}\n\n"
                else:
                    yield ": still here\n\n"
                seen = version
        return Response(stream(), mimetype="text/event-stream",
                        headers={"X-Accel-Buffering": "no"})

    @app.get("/picture.svg")
    def picture_svg():
        snap = dashboard.snapshot
        if snap is None:
            dashboard.refresh()
            snap = dashboard.snapshot
        svg = view.picture(view.federation(snap.topology, snap.instances or [], snap.master))
        return Response(svg, mimetype="image/svg+xml")

    @app.post("/action")
    def action():
        body = request.get_json(silent=True)
        problem = action_problem(body)
        if problem:
            return jsonify({"error": {"code": "invalid_input", "message": problem}}), 400
        snap = dashboard.snapshot
        known = {i["id"]: i for i in (snap.instances or [])} if snap else {}
        inst = known.get(body["instance"])
        if inst is None:
            return jsonify({"error": {"code": "not_found", "message":
                                      f"no instance {body['instance']!r} of yours is shown "
                                      "here"}}), 404
        try:
            if body["action"] == "destroy":
                done = dashboard.client.destroy(inst["id"])
            else:
                target = {"start": "started", "stop": "stopped"}[body["action"]]
                done = dashboard.client.change_state(inst["id"], target)
        except SlapfedError as exc:
            return jsonify(exc.to_json()), exc.http_status if exc.http_status >= 400 else 502
        dashboard.poke()
        return jsonify({"message": f"{done['reference']}: requested "
                                   f"{done['requested_state']}"})

    @app.errorhandler(404)
    def not_found(_exc):
        return Response("slapfed ui: no such page\n", status=404, mimetype="text/plain")

    return app


def action_problem(body) -> str | None:
    """What is wrong with an /action body ({"instance": ID, "action": start|stop|destroy}),
    or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object {\"instance\": ID, \"action\": ...}"
    extra = sorted(set(body) - {"instance", "action"})
    if extra:
        return f"unknown fields {extra}"
    if not isinstance(body.get("instance"), str) or not body["instance"]:
        return "instance: an instance id is required"
    if body.get("action") not in view.ACTIONS:
        return f"action: one of {', '.join(view.ACTIONS)}"
    return None


class Server:
    """The dashboard listening on ``host:port`` (0: a free port), in threads: one per
    open connection (each page holds one event stream), plus the poller."""

    def __init__(self, client: MasterClient, host: str, port: int, interval: float = 2.0,
                 token: str | None = None):
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.token = token or guard.new_token()
        # the values sealed to the user open here, with the user's key
        cert = getattr(client, "cert", None)
        self.dashboard = Dashboard(client, interval, opener=Opener(
            cert[1] if isinstance(cert, tuple) else None))
        self._app_allowed: frozenset[str] = frozenset()
        app = create_app(self.dashboard, self.token, self._allowed_hosts)
        self.httpd = make_server(host, port, app, threaded=True)
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_port
        self._app_allowed = guard.allowed_hosts(host, self.port)

    def _allowed_hosts(self):
        return self._app_allowed

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else (
            "[::1]" if self.host == "::" else self.host)
        return f"http://{guard.host_port(shown, self.port)}/?{guard.TOKEN_PARAM}={self.token}"

    def serve_forever(self) -> None:
        self.dashboard.start()
        try:
            self.httpd.serve_forever()
        finally:
            self.dashboard.stop()
            self.httpd.server_close()

    def shutdown(self) -> None:
        self.httpd.shutdown()
