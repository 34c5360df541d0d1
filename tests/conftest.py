"""Shared pytest fixtures and factories (one section per owner)."""

# -- master fixtures --
# Factories and fixtures for the master's tests (store, services, API, servers).
# Everything runs on a real FileStorage in tmp_path; servers bind 127.0.0.1 with ports
# chosen at run time, and every process started is stopped by PID even on failure.
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

SOFTWARE_URL = "/srv/releases/hello/software.cfg"


def computer_body(cid="c1", partitions=4, prefix="p", **locality):
    """A ComputerRegistration body with ``partitions`` partitions p000, p001, ..."""
    body = {"id": cid, "partitions": [
        {"id": f"{prefix}{i:03d}", "address": f"127.0.{i // 250}.{i % 250 + 1}",
         "port_base": 20000 + 10 * i, "port_count": 10} for i in range(partitions)]}
    body.update(locality)
    return body


def instance_body(reference="web-1", url=SOFTWARE_URL, **extra):
    body = {"reference": reference, "software_url": url}
    body.update(extra)
    return body


@pytest.fixture
def master_factories():
    """The body factories, for tests that build many of them."""
    class Factories:
        computer = staticmethod(computer_body)
        instance = staticmethod(instance_body)
        url = SOFTWARE_URL
    return Factories


@pytest.fixture
def master_db(tmp_path):
    """A ZODB DB over a real FileStorage in tmp_path, evolved to the latest generation."""
    from slapfed.store import open_db
    db = open_db(None, str(tmp_path / "master"))
    yield db
    db.close()


def make_runtime(db, **settings):
    """The runtime use cases run with (services.runtime.Runtime: writer, placement state,
    renderer) over ``db``, with these MasterSettings; close it before the DB."""
    from slapfed.services.runtime import MasterSettings, Runtime
    return Runtime(db, MasterSettings(**settings))


@contextlib.contextmanager
def zeo_runtimes(directory, count: int = 2):
    """``count`` runtimes, each over its own DB on one real ZEO server storing in
    ``directory`` (as many master processes would be); all closed, and the server
    stopped, on the way out."""
    from slapfed.store import open_db
    from slapfed.store.zeo import start_zeo_server
    server = start_zeo_server(str(directory))
    runtimes = []
    try:
        for _ in range(count):
            runtimes.append(make_runtime(open_db(server.uri, None)))
        yield runtimes
    finally:
        for rt in runtimes:
            rt.close()
            rt.db.close()
        server.stop()


@pytest.fixture
def master_runtime(master_db):
    """A runtime over master_db, for tests that call the use cases directly."""
    rt = make_runtime(master_db)
    yield rt
    rt.close()


@pytest.fixture
def master_conn(master_db):
    conn = master_db.open()
    yield conn
    conn.transaction_manager.abort()
    conn.close()


@pytest.fixture
def master_app(master_db):
    from slapfed.master import close_app, create_app
    app = create_app({"INSECURE": True, "DB": master_db})
    app.config["TESTING"] = False   # exercise the real error handler, not re-raising
    yield app
    close_app(app)


@pytest.fixture
def api(master_app):
    """A Flask test client of a master app over a real FileStorage."""
    return master_app.test_client()


def last_tid(db) -> bytes:
    """The storage's last committed transaction id (to prove nothing was written)."""
    return db.storage.lastTransaction()


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM a process we started (by PID), SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


@pytest.fixture
def master_server(tmp_path):
    """Start real `slapfed master serve` processes; returns start(*args, data=None) -> URL.

    Each binds 127.0.0.1 on a port chosen at run time and is stopped by PID (SIGTERM,
    then SIGKILL) at teardown, even when the test failed."""
    started = []

    def start(*args, data=None, secure=False):
        data_dir = str(data or tmp_path / f"master-{len(started)}")
        proc, url = start_master_process(data_dir, *args, secure=secure)
        started.append(proc)
        return url

    yield start
    for proc in reversed(started):
        stop_process(proc, timeout=15)


def start_master_process(data_dir, *args, timeout=30.0, secure=False, env=None):
    """Run `slapfed master serve --listen 127.0.0.1:0` and wait for <data>/master.url:
    over HTTPS with client certificates when ``secure``, else with --insecure-http;
    ``env``: the process's environment (default: this one's)."""
    os.makedirs(data_dir, exist_ok=True)
    url_file = os.path.join(data_dir, "master.url")
    if os.path.exists(url_file):
        os.unlink(url_file)
    log = open(os.path.join(data_dir, "serve.log"), "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "slapfed.cli.main", "master", "serve", "--data", str(data_dir),
         "--listen", "127.0.0.1:0", *(() if secure else ("--insecure-http",)), *args],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    log.close()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"master exited with {proc.returncode}: "
                                   + open(os.path.join(data_dir, "serve.log")).read()[-3000:])
            if os.path.exists(url_file):
                url = open(url_file).read().strip()
                if url:
                    import requests
                    try:
                        verify = os.path.join(data_dir, "ca", "ca.crt") if secure else True
                        requests.get(url + "/api/v1/health", timeout=2, verify=verify)
                        return proc, url
                    except requests.ConnectionError:
                        pass
            time.sleep(0.05)
        raise RuntimeError("master did not come up: "
                           + open(os.path.join(data_dir, "serve.log")).read()[-3000:])
    except BaseException:
        stop_process(proc)
        raise


# -- one real master and one real node, over mutual TLS --
def slapfed_cli(*args, env=None, check=True, timeout=300, ns=None):
    """Run the real ``slapfed`` CLI (inside network namespace ``ns``, a netns_lab
    Namespace, when given); AssertionError with its output when it fails."""
    argv = _slapfed_argv(*args)
    done = subprocess.run(ns.argv(argv) if ns else argv, capture_output=True, text=True,
                          env=env, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"slapfed {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


def extra_node(fed, computer, *, partitions=2, address_octet, format_args=()):
    """A context manager: one more real node ``computer`` enrolled (one-time token) with
    the master of ``fed`` (what mtls_master_and_node yields) and run in
    ``fed["base"]/<computer>``. Yields {"root", "node" (its Proc)}; the agent, its
    supervisord and services are stopped by PID at the end."""
    import contextlib

    from slapfed.ca.authority import CertificateAuthority
    from slapfed.procs import Proc

    @contextlib.contextmanager
    def joined():
        base = fed["base"]
        root = base / computer
        ca = CertificateAuthority(base / "master" / "ca")
        procs = []
        try:
            slapfed_cli("node", "format", "--master", fed["url"], "--computer", computer,
                        "--partitions", str(partitions), "--root", str(root), *format_args,
                        "--address-base", f"127.{20 + os.getpid() % 200}.{address_octet}.1",
                        "--token", ca.token_for(computer), "--ca", str(ca.directory / "ca.crt"),
                        env=fed["env"])
            node = Proc(_slapfed_argv("node", "run", "--root", str(root), "--interval", "0.3"),
                        base / f"{computer}.log")
            procs.append(node)
            yield {"root": root, "node": node}
        finally:
            for p in procs:
                p.stop()
            if (root / "node.json").exists():
                subprocess.run(_slapfed_argv("node", "stop", "--root", str(root)),
                               capture_output=True, timeout=60)
    return joined()


def _slapfed_argv(*args):
    from slapfed.procs import slapfed_argv
    return slapfed_argv(*args)


def mtls_master_and_node(base, computer, *, partitions=2, address_octet, format_args=(),
                         master_args=(), node_args=(), listen_host="127.0.0.1",
                         node_ns=None):
    """A context manager: a real master process (gunicorn, FileStorage, mutual TLS) in
    ``base/master``, identities ``alice`` (a person) and ``root`` (an admin) each with a
    client config, and a real node ``computer`` enrolled with a one-time token and run
    in ``base/node`` (addresses 127.<run>.<address_octet>.1 and up, so that two suites on
    one machine never collide); ``master_args`` go to ``master serve``, which binds
    ``listen_host`` (e.g. an address of the netns fixture's), ``node_args`` to ``node
    run``; ``node_ns`` (a netns_lab Namespace) runs the node (format, agent, its
    supervisord and services) inside that network namespace. Yields a dict: url, env
    (alice's), admin_env, root, base,
    node (its Proc), client (alice's MasterClient), admin. Every process is stopped by
    PID at the end, the node's supervisord and services too."""
    import contextlib

    from slapfed.ca import identity as ids
    from slapfed.ca.authority import CertificateAuthority
    from slapfed.client import MasterClient
    from slapfed.procs import Proc, wait_for

    @contextlib.contextmanager
    def world():
        procs = []
        root = base / "node"
        try:
            master = Proc(_slapfed_argv("master", "serve", "--data", str(base / "master"),
                                        "--listen", f"{listen_host}:0", *master_args),
                          base / "master.log")
            procs.append(master)
            url_file = base / "master" / "master.url"
            wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                     "master URL", proc=master)
            url = url_file.read_text().strip()
            assert url.startswith("https://")
            ca = CertificateAuthority(base / "master" / "ca")
            made = {who: ca.issue_with_new_key(identity, base / who)
                    for who, identity in (("alice", ids.person("alice")),
                                          ("root", ids.admin("root")))}
            envs = {}
            for who in made:
                envs[who] = dict(os.environ, SLAPFED_CONFIG=str(base / f"{who}.json"))
                envs[who].pop("SLAPFED_MASTER", None)
                slapfed_cli("config", "set", "--master", url, "--identity", str(base / who),
                            env=envs[who])
            slapfed_cli("node", "format", "--master", url, "--computer", computer,
                        "--partitions", str(partitions), "--root", str(root), *format_args,
                        "--address-base", f"127.{20 + os.getpid() % 200}.{address_octet}.1",
                        "--token", ca.token_for(computer), "--ca", str(ca.directory / "ca.crt"),
                        env=envs["alice"], ns=node_ns)
            node_argv = _slapfed_argv("node", "run", "--root", str(root), "--interval", "0.3",
                                      *node_args)
            node = Proc(node_ns.argv(node_argv) if node_ns else node_argv, base / "node.log")
            procs.append(node)
            tls = {who: {"ca": str(m.ca_path), "cert": str(m.cert_path), "key": str(m.key_path)}
                   for who, m in made.items()}
            yield {"url": url, "env": envs["alice"], "admin_env": envs["root"], "root": root,
                   "base": base, "node": node, "client": MasterClient(url, **tls["alice"]),
                   "admin": MasterClient(url, **tls["root"])}
        finally:
            for p in reversed(procs):
                p.stop()
            if (root / "node.json").exists():
                subprocess.run(_slapfed_argv("node", "stop", "--root", str(root)),
                               capture_output=True, timeout=60)
    return world()


# -- network namespace fixtures --
@pytest.fixture
def netns():
    """A netns_lab.Lab: network namespaces, links between the root namespace and them on
    addresses it assigns (10.213.<pid % 256>.x/30), cut, healed or impaired (netem, or a
    userspace forwarder on kernels without it); everything it made, and every process
    left inside its namespaces, is removed at teardown even when the test failed.
    Skips where this machine cannot create namespaces."""
    from netns_lab import Lab
    why = Lab.available()
    if why:
        pytest.skip(f"no network namespaces here: {why}")
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


# -- masters with replicas, over mutual TLS --
class MasterSet:
    """Real masters (gunicorn, FileStorage, mutual TLS) in ``base/<name>``, sharing one CA:
    the first one started is the primary and creates it; ``replica`` invites a replica
    there and starts it with --replica-of. ``admin(name)`` is a client of that master
    with the admin identity ``root``. Every process is stopped by PID in ``close``."""

    def __init__(self, base):
        self.base = base
        self.procs: dict = {}
        self.urls: dict = {}
        self.tls = None
        self.nodes: list = []

    def start(self, name, *args, timeout=30.0):
        from slapfed.procs import Proc, wait_for
        data = self.base / name
        data.mkdir(parents=True, exist_ok=True)
        url_file = data / "master.url"
        url_file.unlink(missing_ok=True)
        proc = Proc(_slapfed_argv("master", "serve", "--data", str(data), "--listen",
                                  "127.0.0.1:0", *args), self.base / f"{name}.log")
        self.procs[name] = proc
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), timeout,
                 f"master {name}'s URL", proc=proc)
        self.urls[name] = url_file.read_text().strip()
        if self.tls is None:
            from slapfed.ca import identity as ids
            from slapfed.ca.authority import CertificateAuthority
            made = CertificateAuthority(data / "ca").issue_with_new_key(
                ids.admin("root"), self.base / "root")
            self.tls = {"ca": str(made.ca_path), "cert": str(made.cert_path),
                        "key": str(made.key_path)}
        return self.urls[name]

    def admin(self, name, **kw):
        from slapfed.client import MasterClient
        return MasterClient(self.urls[name], **self.tls, **kw)

    def invite(self, primary, name):
        """The invitation file of replica ``name``, written by the real CLI."""
        import json
        out = self.base / f"{name}.invitation.json"
        env = dict(os.environ, SLAPFED_CONFIG=str(self.base / "root.json"))
        env.pop("SLAPFED_MASTER", None)
        slapfed_cli("config", "set", "--master", self.urls[primary], "--identity",
                    str(self.base / "root"), env=env)
        slapfed_cli("master", "replica", "invite", name, "--out", str(out), env=env)
        assert json.loads(out.read_text())["for"] == name
        return out

    def replica(self, primary, name, *args):
        return self.start(name, "--replica-of", str(self.invite(primary, name)), *args)

    def stop(self, name):
        self.procs.pop(name).stop(timeout=15)

    def node(self, primary, computer, *, partitions=1, address_octet):
        """A real node ``computer`` enrolled at master ``primary`` with a one-time token
        and run as `slapfed node run` (root ``base/node-<computer>``); returns its root."""
        from slapfed.procs import Proc
        root = self.base / f"node-{computer}"
        token = self.admin(primary).create_token(computer)["token"]
        env = dict(os.environ, SLAPFED_CONFIG=str(self.base / "root.json"))
        slapfed_cli("node", "format", "--master", self.urls[primary], "--computer", computer,
                    "--partitions", str(partitions), "--root", str(root),
                    "--address-base", f"127.{20 + os.getpid() % 200}.{address_octet}.1",
                    "--token", token, "--ca", self.tls["ca"], env=env)
        self.nodes.append(root)
        self.procs[f"node-{computer}"] = Proc(
            _slapfed_argv("node", "run", "--root", str(root), "--interval", "0.3"),
            self.base / f"node-{computer}.log")
        return root

    def close(self):
        for name in reversed(list(self.procs)):
            self.stop(name)
        for root in self.nodes:
            if (root / "node.json").exists():
                subprocess.run(_slapfed_argv("node", "stop", "--root", str(root)),
                               capture_output=True, timeout=60)


@pytest.fixture
def master_set(tmp_path):
    masters = MasterSet(tmp_path)
    try:
        yield masters
    finally:
        masters.close()


# -- node fixtures --
# A real supervisord per test in tmp_path (shut down by its PID in a finalizer, even when
# the test fails), and helpers to build node roots.
#
# A node formatted by root gives each partition its own unix user, who must traverse the
# directories above its partition. pytest makes its temporary directories 0700 (and
# resets /tmp/pytest-of-root to 0700 whenever a session starts), so as root the session's
# base temp dir is /tmp/slapfed-tests/run-<pid> instead, and every directory made by
# tmp_path / tmp_path_factory (and those above it, up to the temp dir) is opened to
# traversal (0711: others may pass through, never list or write).
TRAVERSABLE_BASE = "slapfed-tests"
KEEP_RUNS = 3


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: an end-to-end test with real processes")
    # Every Flask test client of a master app checks each answer against the OpenAPI
    # document the master serves (tests/openapi_contract.py): drift fails the test.
    import flask
    from openapi_contract import ContractClient
    flask.Flask.test_client_class = ContractClient
    config.addinivalue_line("markers", "openapi_injected_errors: the test makes a route "
                            "raise errors it never raises for real; the OpenAPI check then "
                            "accepts any error status (with the one error body)")
    if os.geteuid() != 0 or config.option.basetemp:
        return
    import shutil
    import stat
    import tempfile
    base = os.path.join(tempfile.gettempdir(), TRAVERSABLE_BASE)
    try:
        os.mkdir(base, 0o711)
    except FileExistsError:
        pass
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise pytest.UsageError(f"{base} is not a directory of root's: remove it")
    os.chmod(base, 0o711)
    runs = sorted((os.path.join(base, n) for n in os.listdir(base) if n.startswith("run-")),
                  key=os.path.getmtime)
    for old in runs[:-KEEP_RUNS]:
        pid = old.rsplit("-", 1)[-1]
        if not (pid.isdigit() and os.path.exists(f"/proc/{pid}")):
            shutil.rmtree(old, ignore_errors=True)
    config.option.basetemp = os.path.join(base, f"run-{os.getpid()}")


# The test files that start real masters, nodes, supervisord or buildout runs: their
# tests are marked e2e, so `pytest -m "not e2e"` runs the fast tier alone. A test in
# another file may carry the marker itself.
E2E_FILES = frozenset({
    "test_accounting_e2e.py",
    "test_authz_tls.py",
    "test_backup_e2e.py",
    "test_built_cache.py",
    "test_ca_tls.py",
    "test_cdn_usage_e2e.py",
    "test_child_master_replicas.py",
    "test_child_rebuild_drill.py",
    "test_claims_tls.py",
    "test_cli_master_output.py",
    "test_cli_startup.py",
    "test_cli_tls_refusals.py",
    "test_concurrency.py",
    "test_demo.py",
    "test_e2e.py",
    "test_e2e_cdn.py",
    "test_e2e_injection.py",
    "test_e2e_lease.py",
    "test_e2e_lost.py",
    "test_e2e_placement.py",
    "test_failover_drill.py",
    "test_fault_soak.py",
    "test_federation_e2e.py",
    "test_federation_fallback.py",
    "test_federation_hung.py",
    "test_federation_lease.py",
    "test_federation_longpoll.py",
    "test_federation_lost.py",
    "test_federation_topology.py",
    "test_group_commit.py",
    "test_install_cache.py",
    "test_lease_records.py",
    "test_lists.py",
    "test_logs_e2e.py",
    "test_logs_node.py",
    "test_metrics_e2e.py",
    "test_netns_federation.py",
    "test_netns_partition_node.py",
    "test_node_agent.py",
    "test_node_external.py",
    "test_node_isolation.py",
    "test_node_leftovers.py",
    "test_node_survive.py",
    "test_profile_cdn.py",
    "test_profile_master.py",
    "test_profile_node.py",
    "test_recipes_buildout.py",
    "test_recursion_e2e.py",
    "test_replica_rejoin.py",
    "test_replication_e2e.py",
    "test_schemathesis.py",
    "test_shared_hosting_tls.py",
    "test_slap_e2e.py",
    "test_slap_slapgrid.py",
    "test_supervisor.py",
    "test_ui_e2e.py",
    "test_usage_e2e.py",
    "test_usage_feed_e2e.py",
    "test_usage_feed_nodes_e2e.py",
    "test_zeo_orphans.py",
    "test_zk_e2e.py",
    "test_zk_delegation_e2e.py",
    "test_zk_recursion_e2e.py",
})


@pytest.fixture(autouse=True)
def _openapi_injected_errors(request):
    import openapi_contract
    openapi_contract.INJECTED_ERRORS = bool(
        request.node.get_closest_marker("openapi_injected_errors"))
    yield
    openapi_contract.INJECTED_ERRORS = False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in E2E_FILES:
            item.add_marker(pytest.mark.e2e)


def open_to_traversal(path) -> None:
    """chmod o+x (and g+x) ``path`` and its parents up to pytest's base temp dir."""
    import pathlib
    import tempfile
    path = pathlib.Path(path).resolve()
    top = pathlib.Path(tempfile.gettempdir()).resolve()
    for d in [path, *path.parents]:
        if d == top or top not in d.parents:
            break
        mode = d.stat().st_mode & 0o7777
        if mode & 0o011 != 0o011:
            d.chmod(mode | 0o011)


class _TraversableTmpFactory:
    """pytest's TempPathFactory whose directories partition users can traverse."""

    def __init__(self, factory):
        self._factory = factory

    def mktemp(self, *args, **kwargs):
        path = self._factory.mktemp(*args, **kwargs)
        open_to_traversal(path)
        return path

    def __getattr__(self, name):
        return getattr(self._factory, name)


@pytest.fixture(scope="session")
def tmp_path_factory(tmp_path_factory):
    """Also the factory behind tmp_path: as root, every directory it makes (and those
    above, up to the temp dir) is traversable by partition users."""
    if os.geteuid() != 0:
        return tmp_path_factory
    return _TraversableTmpFactory(tmp_path_factory)


@pytest.fixture
def supervisor(tmp_path):
    """A running node supervisord under tmp_path/node (slapfed.node.supervisor.Supervisor)."""
    from slapfed.node.layout import Paths
    from slapfed.node.supervisor import Supervisor
    sup = Supervisor(Paths(str(tmp_path / "node")))
    try:
        sup.ensure_running()
        yield sup
    finally:
        shutdown_node_supervisord(sup.paths.root)


def shutdown_node_supervisord(root) -> None:
    """Stop the supervisord of node root ``root`` (XML-RPC, then by PID), if any."""
    from slapfed.node.layout import Paths
    from slapfed.node.supervisor import Supervisor
    Supervisor(Paths(str(root))).shutdown(timeout=15)


@pytest.fixture
def node_roots():
    """A list to append node roots to; each one's supervisord is shut down at the end."""
    roots = []
    try:
        yield roots
    finally:
        for root in roots:
            shutdown_node_supervisord(root)


# -- topology fixtures --
# Master apps started with topology files, and a real HTTP server for the topology CLI:
# werkzeug on 127.0.0.1, port chosen at run time, shut down at teardown.
TOPOLOGY_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "topology")


@pytest.fixture
def topology_app(master_db):
    """make(files=(), name=None) -> a master app over master_db with those topology files."""
    from slapfed.master import close_app, create_app
    apps = []

    def make(files=(), name=None):
        app = create_app({"INSECURE": True, "DB": master_db, "TOPOLOGY_FILES": [str(f) for f in files],
                          "MASTER_NAME": name})
        app.config["TESTING"] = False
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture
def serve_app():
    """serve(app) -> URL: serve a Flask app on 127.0.0.1 (run-time port) in a thread."""
    import threading
    from werkzeug.serving import make_server
    servers = []

    def serve(app):
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server, thread in servers:
        server.shutdown()
        thread.join(10)
        server.server_close()


# -- identity fixtures --
# A master app enforcing identities (its own CA in tmp_path) and a world of actors with
# certificates: people A and B, an admin, nodes X and Y, the partitions of A's and B's
# instances, a peer master, and certificates that must be refused (revoked, expired,
# issued by another CA). Certificates reach the app as DER in the WSGI environ.
AUTHZ_URL = "/srv/releases/hello/software.cfg"


class AuthzWorld:
    """What the authorization tests act on. ``call(actor, method, path, json)``."""

    ACTORS = ("anonymous", "person_a", "person_b", "admin", "node_x", "node_y",
              "partition_a", "partition_b", "peer", "replica", "revoked", "expired",
              "foreign")
    REFUSED_CERTS = {"anonymous": "unauthenticated", "revoked": "certificate_revoked",
                     "expired": "certificate_expired", "foreign": "foreign_certificate"}

    def __init__(self, app, ca, foreign_ca, db):
        self.app, self.ca, self.db = app, ca, db
        self.client = app.test_client()
        self.certs = {"anonymous": None}
        self.serials = {}
        from slapfed.ca import identity as ids
        for actor, identity in (("person_a", ids.person("alice")), ("person_b", ids.person("bob")),
                                ("admin", ids.admin("root")), ("node_x", ids.computer("node-x")),
                                ("node_y", ids.computer("node-y")),
                                ("peer", ids.master("peer-1")),
                                ("replica", ids.replica("repl-1"))):
            self.certs[actor], self.serials[actor] = self._issue(ca, identity)
        self.certs["revoked"], serial = self._issue(ca, ids.person("carol"))
        ca.revoke(serial)
        import datetime as dt
        now = dt.datetime.now(dt.timezone.utc)
        self.certs["expired"], _ = self._issue(ca, ids.person("dave"),
                                               not_before=now - dt.timedelta(days=10),
                                               not_after=now - dt.timedelta(days=1))
        self.certs["foreign"], _ = self._issue(foreign_ca, ids.admin("root"))
        # The federation: two nodes, A's tree on X (and a child on Y), B's on Y, the peer's on X.
        for node in ("node-x", "node-y"):
            self.ok(self.call("admin", "POST", "/computers", computer_body(node, 3)))
            self.ok(self.call("admin", "POST", f"/computers/{node}/software",
                              {"url": AUTHZ_URL}))
        self.a_root = self.ok(self.call("person_a", "POST", "/instances", self.instance(
            "a-root", "node-x")))
        self.b_root = self.ok(self.call("person_b", "POST", "/instances", self.instance(
            "b-root", "node-y")))
        self.m_root = self.ok(self.call("peer", "POST", "/instances", self.instance(
            "m-root", "node-x")))
        for actor, inst in (("partition_a", self.a_root), ("partition_b", self.b_root)):
            p = inst["placement"]
            self.certs[actor], self.serials[actor] = self._issue(
                ca, ids.partition(p["computer"], p["partition"]))
        self.a_child = self.ok(self.call("partition_a", "POST", "/instances", self.instance(
            "a-child", "node-y")))

    @staticmethod
    def instance(reference, computer=None, **extra):
        body = {"reference": reference, "software_url": AUTHZ_URL, **extra}
        if computer:
            body["sla"] = {"computer_guid": computer}
        return body

    @staticmethod
    def _issue(ca, identity, **window):
        from cryptography.hazmat.primitives import serialization
        from slapfed.ca.keys import generate_key
        record = ca.issue(identity, generate_key().public_key(), **window)
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(record.certificate_pem.encode())
        return cert.public_bytes(serialization.Encoding.DER), record.serial

    def call(self, actor, method, path, json=None, **kw):
        der = self.certs[actor]
        environ = {} if der is None else {"slapfed.peer_certificate": der}
        return self.client.open(master_path(path), method=method, json=json,
                                environ_base=environ, **kw)

    @staticmethod
    def ok(resp):
        assert resp.status_code < 300, (resp.status_code, resp.get_data(as_text=True))
        return resp.json


# Routes a master serves outside its API prefix (/api/v1).
ROOT_ROUTES = ("/metrics",)


def master_path(path: str) -> str:
    """The full path of a route: under /api/v1 unless it is one of ROOT_ROUTES."""
    return path if path.startswith(ROOT_ROUTES) else "/api/v1" + path


@pytest.fixture
def authz_world(tmp_path, master_db):
    """An AuthzWorld over a fresh master (FileStorage + CA in tmp_path)."""
    from slapfed.ca.authority import CertificateAuthority
    from slapfed.master import close_app, create_app
    from slapfed.master import runtime_of
    ca_dir = tmp_path / "ca"
    app = create_app({"DB": master_db, "CA_DIR": str(ca_dir), "MASTER_NAME": "test"})
    app.config["TESTING"] = False
    foreign = CertificateAuthority.init(tmp_path / "other-ca", "another master CA")
    try:
        yield AuthzWorld(app, runtime_of(app).ca, foreign, master_db)
    finally:
        close_app(app)


# -- cdn fixtures --
# Small HTTP origins for the CDN front's tests: each a ThreadingHTTPServer on 127.0.0.1
# (port chosen at bind time) in a thread, shut down at teardown even on failure.
class Origin:
    """Answers GET with JSON {backend, path, hits, forwarded_host} (``Cache-Control:
    no-store`` for paths ending in /private) and POST with 201 ``posted <body>``."""

    def __init__(self, name: str):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.name, self.hits = name, 0
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                origin.hits += 1
                body = json.dumps({"backend": origin.name, "path": self.path,
                                   "hits": origin.hits,
                                   "forwarded_host": self.headers.get("X-Forwarded-Host")})
                self._send(200, body.encode(),
                           "no-store" if self.path.endswith("/private") else None)

            def do_POST(self):  # noqa: N802
                origin.hits += 1
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(201, b"posted " + data, None)

            def _send(self, status, body, cache_control):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if cache_control:
                    self.send_header("Cache-Control", cache_control)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)
        self.server.server_close()


@pytest.fixture
def origins():
    """start(name) -> a running Origin; every one is stopped at the end."""
    started = []

    def start(name: str) -> Origin:
        started.append(Origin(name))
        return started[-1]

    yield start
    for origin in started:
        origin.stop()


def http_fetch(url, method="GET", host=None, data=None, headers=None, timeout=10):
    """(status, headers, body) of one request, error statuses included, never through a
    proxy from the environment."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, method=method, data=data, headers=dict(headers or {}))
    if host:
        req.add_header("Host", host)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()
