"""The CLI starts light: ``slapfed node once`` with nothing to do and ``slapfed request``
load only what they use, checked on the modules a real run imported, against a real
master over mutual TLS (the wall time itself is measured by bench/bench_startup.py).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import computer_body, start_master_process, stop_process

RELEASE = "http://releases.invalid/startup/software.cfg"
NODE = "startup-node"
HOST = "startup-host"

# Never loaded by either command: the master's stack, the topology, the demo, the other
# HTTP clients, X.509 (only enrolment and `ca` need it).
HEAVY = ("networkx", "requests", "urllib3", "cryptography", "flask", "werkzeug", "ZODB",
         "ZEO", "transaction", "persistent", "gunicorn", "jinja2", "zc.buildout",
         "slapfed.master", "slapfed.model", "slapfed.store", "slapfed.services",
         "slapfed.placement", "slapfed.topology", "slapfed.peering", "slapfed.replication",
         "slapfed.ca.authority", "slapfed.ca.keys", "slapfed.ui", "slapfed.cli.master_cmd",
         "slapfed.cli.demo_cmd", "slapfed.cli.topology_cmd", "slapfed.cli.ca_cmd",
         "slapfed.cli.peer_cmd", "slapfed.cli.ui_cmd")
# Neither command imports pydantic: answers are checked by core.answer_check (the
# models as data), and the master validates the bodies (core.wire).
PYDANTIC = ("pydantic", "pydantic_core", "annotated_types", "slapfed.core.answers",
            "slapfed.core.wire")
# What only a cycle with something to do needs: buildout (rendering, its runners),
# release installs (their worker, the shared cache of built releases and its archives), promises, leftovers, restarts,
# supervisord's XML-RPC client (no supervisord runs on a node with nothing to run),
# sealing to a requester's key.
CYCLE_AT_WORK = ("slapfed.node.buildout", "slapfed.node.installer", "slapfed.node.builtcache",
                 "slapfed.core.builtcache", "tarfile", "slapfed.node.promises",
                 "slapfed.node.leftovers", "slapfed.node.restarts", "xmlrpc",
                 "slapfed.ca.seal", "slapfed.node.zygote",
                 # no answer to check: the desired state is unchanged (304)
                 "slapfed.core.answer_check", "slapfed.core.answer_schemas")

# Neither command declares a dataclass (core.record's records instead: a dataclass costs
# a millisecond to declare), needs IDNA for an ASCII host name, completes a shell word,
# starts or signals a process, nor loads http.client and the email package (the
# transport writes and reads its HTTP/1.1 messages itself), nor makes a digest or a
# random token.
NOT_AT_START = ("dataclasses", "encodings.idna", "stringprep", "unicodedata",
                "click.shell_completion", "subprocess", "signal", "http.client", "email",
                "hashlib", "hmac", "secrets", "random")

# Runs the real entry point, then writes the names of every module loaded to argv[1],
# and where each top-level package was first imported from (to name the culprit).
RUN_AND_LIST = textwrap.dedent("""
    import atexit, json, sys, traceback
    out, sys.argv = sys.argv[1], ["slapfed", *sys.argv[2:]]
    first = {}

    class Spy:
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top not in first:
                first[top] = "".join(f for f in traceback.format_stack()
                                     if "/slapfed/" in f and "/tests/" not in f)
            return None
    sys.meta_path.insert(0, Spy())
    atexit.register(lambda: open(out, "w").write(json.dumps(
        {"modules": sorted(sys.modules), "first": first})))
    from slapfed.cli.main import main
    main()
""")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from slapfed.ca import identity as ids
    from slapfed.ca.authority import CertificateAuthority
    from slapfed.client import MasterClient

    base = tmp_path_factory.mktemp("startup")
    data = base / "master"
    proc, url = start_master_process(str(data), secure=True)
    try:
        ca = CertificateAuthority(data / "ca")
        made = {who: ca.issue_with_new_key(identity, base / who)
                for who, identity in (("alice", ids.person("alice")),
                                      ("root", ids.admin("root")))}
        tls = {who: {"ca": str(m.ca_path), "cert": str(m.cert_path), "key": str(m.key_path)}
               for who, m in made.items()}
        config = base / "alice.json"
        config.write_text(json.dumps({"master": url, **tls["alice"]}))
        env = dict(os.environ, SLAPFED_CONFIG=str(config))
        env.pop("SLAPFED_MASTER", None)
        root = base / "node"
        run(base, env, "node", "format", "--master", url, "--computer", NODE,
            "--partitions", "1", "--root", str(root), "--single-user",
            "--token", ca.token_for(NODE), "--ca", tls["alice"]["ca"])
        admin = MasterClient(url, **tls["root"])
        admin.register_computer(computer_body(HOST, 1))
        admin.supply(HOST, RELEASE)
        yield {"base": base, "env": env, "root": root}
    finally:
        stop_process(proc, timeout=15)


class Modules(set):
    """The modules a run loaded; ``first[top]``: where a top-level package was first
    imported from (a stack, to name the culprit in a failure)."""

    first: dict = {}


def run(base, env, *args) -> tuple[str, Modules]:
    """Run ``slapfed ARGS``; (its stdout, the modules it loaded). It must exit 0."""
    listing = base / "modules.json"
    done = subprocess.run([sys.executable, "-c", RUN_AND_LIST, str(listing), *args],
                          capture_output=True, text=True, env=env, cwd=base, timeout=120)
    assert done.returncode == 0, f"slapfed {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    data = json.loads(listing.read_text())
    modules = Modules(data["modules"])
    modules.first = data["first"]
    return done.stdout, modules


def loaded(modules: Modules, names) -> list[str]:
    """The modules of ``names`` loaded; each top-level one with where it came from."""
    found = sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))
    tops = sorted({m.split(".")[0] if not m.startswith("slapfed.") else m for m in found})
    return [f"{t} imported at:\n{modules.first.get(t.split('.')[0], '?')}" for t in tops]


def test_node_once_with_nothing_to_do_loads_neither_pydantic_nor_heavy_modules(world):
    """Neither the wire types nor pydantic (its usage report is not due yet)."""
    run(world["base"], world["env"], "node", "once", "--root", str(world["root"]))  # fetch
    out, modules = run(world["base"], world["env"], "node", "once", "--root",
                       str(world["root"]))
    assert out.startswith("nothing to do")
    heavy = loaded(modules, HEAVY + PYDANTIC + CYCLE_AT_WORK + NOT_AT_START)
    assert not heavy, "\n".join(heavy)
    # a usage report is due once a minute, not at every run: this one only sampled
    assert "usage: next report due in" in out, out
    assert "slapfed.cli.node_cmd" in modules and "slapfed.cli.user_cmd" not in modules
    assert {"slapfed.node.agent", "slapfed.node.plan", "slapfed.node.usage_report"} <= modules


def test_request_loads_only_the_client_and_the_answer_check(world):
    """The answer models as data, neither pydantic nor the wire types (the master
    validates the body); nothing of the node."""
    args = ("request", "startup-1", RELEASE, "--sla", f"computer_guid={HOST}", "--json")
    for _ in range(2):                       # placed, then asked again (an update)
        out, modules = run(world["base"], world["env"], *args)
        assert json.loads(out)["placement"]["computer"] == HOST
        heavy = loaded(modules, HEAVY + PYDANTIC + NOT_AT_START + ("slapfed.node",))
        assert not heavy, "\n".join(heavy)
        assert "slapfed.core.answer_check" in modules       # the answer is checked
        assert "slapfed.cli.node_cmd" not in modules


def test_request_still_refuses_an_answer_its_model_does_not_describe(world, tmp_path):
    """The check is made: a master answering what the Instance model does not describe
    (here a fake one on loopback, plain HTTP) makes the command fail naming the field."""
    import http.server
    import threading

    class Drifted(http.server.BaseHTTPRequestHandler):
        def do_POST(self):                              # noqa: N802 (the stdlib's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"id": 42, "reference": "r"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drifted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = dict(world["env"], SLAPFED_MASTER=f"http://127.0.0.1:{server.server_port}")
        env.pop("SLAPFED_CONFIG")
        done = subprocess.run([sys.executable, "-m", "slapfed.cli.main", "request", "r",
                               RELEASE, "--json"], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert done.returncode == 3, done.stdout + done.stderr          # invalid input
    said = done.stdout + done.stderr
    assert "does not match its API (Instance)" in said and "id" in said, said


def test_help_still_lists_every_command_and_loads_them(world):
    from slapfed.cli.main import LAZY_COMMANDS

    out, modules = run(world["base"], world["env"], "--help")
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines()
              if line.strip()}
    assert listed == set(LAZY_COMMANDS)
    assert {f"slapfed.cli.{m}" for m, _ in LAZY_COMMANDS.values()} <= modules
