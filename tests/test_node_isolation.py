"""Partitions are isolated from each other: a real master over mutual TLS, a real node
formatted by root (one unix user per partition, made with useradd), its agent driving
real buildout runs and a real supervisord. A process with partition A's credentials
cannot read B's key or files, signal B's service, or write in the software or in B's
directory; symlinks A plants where the node writes or reads are never followed.

Runs only as root (as CI does). The partition users' names derive from the computer id
(slapfed-<hash>-<n>): they are system users kept between runs and reused, never
created anew per run.
"""
from __future__ import annotations

import errno
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.client import MasterClient
from slapfed.core.wire import software_hash
from slapfed.node.agent import Agent
from slapfed.node.confine import Credentials
from slapfed.node.layout import Paths, load_config
from slapfed.node.plan import Backoff
from slapfed.procs import slapfed_argv

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(os.geteuid() != 0, reason="partition users need root")]

REPO = Path(__file__).resolve().parents[1]
IDLE = str(REPO / "profiles" / "idle" / "software.cfg")
COMPUTER = "isolation-node"

# Run with partition A's credentials: each attempt prints its errno name (or "ok").
PROBE = r"""
import errno, json, os, signal, sys
targets = json.loads(sys.argv[1])
out = {}
def attempt(name, action):
    try:
        action()
        out[name] = "ok"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
attempt("read_own_key", lambda: open(targets["own_key"]).read())
attempt("read_other_key", lambda: open(targets["other_key"]).read())
attempt("read_other_cfg", lambda: open(targets["other_cfg"]).read())
attempt("list_other_dir", lambda: os.listdir(targets["other_dir"]))
attempt("write_other_dir", lambda: open(os.path.join(targets["other_dir"], "x"), "w").close())
attempt("write_software", lambda: open(os.path.join(targets["software"], "x"), "w").close())
attempt("write_software_file", lambda: open(targets["software_file"], "a").close())
attempt("read_node_key", lambda: open(targets["node_key"]).read())
attempt("read_node_state", lambda: open(targets["node_state"]).read())
attempt("read_other_logs", lambda: os.listdir(targets["other_logs"]))
attempt("read_own_logs", lambda: os.listdir(targets["own_logs"]))
attempt("signal_other", lambda: os.kill(targets["other_pid"], signal.SIGTERM))
attempt("signal_own", lambda: os.kill(targets["own_pid"], 0))
print(json.dumps(out))
"""


def as_user(user: str, code: str, *args: str) -> subprocess.CompletedProcess:
    """Run python code with exactly the credentials a partition's services get."""
    creds = Credentials.of(user)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, cwd="/", user=creds.uid, group=creds.gid,
                          extra_groups=list(creds.groups))


def settle(agent: Agent, cycles: int = 6):
    for _ in range(cycles):
        if not agent.once().plan:
            return
    raise AssertionError("the node still has things to do")


@pytest.fixture(scope="module")
def world(tmp_path_factory, master_server_module):
    base = tmp_path_factory.mktemp("isolation")
    url, data = master_server_module
    ca = CertificateAuthority(data / "ca")
    admin = ca.issue_with_new_key(ids.admin("root"), base / "admin")
    client = MasterClient(url, ca=str(admin.ca_path), cert=str(admin.cert_path),
                          key=str(admin.key_path))
    root = base / "node"
    done = subprocess.run(slapfed_argv(
        "node", "format", "--master", url, "--computer", COMPUTER, "--partitions", "2",
        "--root", str(root), "--address-base", f"127.{20 + os.getpid() % 200}.211.1",
        "--token", ca.token_for(COMPUTER), "--ca", str(ca.directory / "ca.crt")),
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "each partition runs as its own unix user" in done.stdout
    os.environ["SLAPFED_TEST_ROOT_SECRET"] = "root's own"   # never seen by a partition
    try:
        agent = Agent(str(root), backoff=Backoff(base=60), promise_timeout=10)
        client.supply(COMPUTER, IDLE)
        insts = [client.request(f"iso-{x}", IDLE, parameters={"note": f"secret-{x}"},
                                sla={"computer_guid": COMPUTER}) for x in ("a", "b")]
        settle(agent)
        yield {"agent": agent, "client": client, "root": root, "insts": insts}
    finally:
        os.environ.pop("SLAPFED_TEST_ROOT_SECRET", None)
        subprocess.run(slapfed_argv("node", "stop", "--root", str(root)), capture_output=True,
                       timeout=60)


@pytest.fixture(scope="module")
def master_server_module(tmp_path_factory):
    from conftest import start_master_process, stop_process
    data = tmp_path_factory.mktemp("isolation-master")
    proc, url = start_master_process(str(data), secure=True)
    try:
        yield url, data
    finally:
        stop_process(proc, timeout=15)


def _partitions(world):
    """{"a": (partition config, paths), "b": ...} by instance."""
    agent = world["agent"]
    out = {}
    for x, inst in zip("ab", world["insts"]):
        placed = world["client"].show(inst["id"])["placement"]["partition"]
        out[x] = (agent.config.partition(placed), agent.paths.partition(placed))
    return out


def _service_pid(agent, pid: str) -> int:
    info = agent.sup.rpc.getProcessInfo(f"{pid}:{pid}_sleeper")
    assert info["statename"] in ("STARTING", "RUNNING") and info["pid"] > 0, info
    return info["pid"]


def _uids(pid: int) -> set:
    with open(f"/proc/{pid}/status") as fh:
        line = next(l for l in fh if l.startswith("Uid:"))
    return {int(u) for u in line.split()[1:]}


@pytest.mark.e2e
def test_each_partition_runs_as_its_own_user_with_private_files(world):
    parts = _partitions(world)
    agent = world["agent"]
    for x, (part, pp) in parts.items():
        entry = pwd.getpwnam(part.user)
        assert world["client"].show(world["insts"]["ab".index(x)]["id"])["status"]["state"] \
            == "started"
        # the service and what buildout wrote belong to the partition's user
        service = _service_pid(agent, part.id)
        assert _uids(service) == {entry.pw_uid}
        with open(f"/proc/{service}/environ", "rb") as fh:
            env = dict(v.split(b"=", 1) for v in fh.read().split(b"\0") if b"=" in v)
        assert b"SLAPFED_TEST_ROOT_SECRET" not in env     # root's environment stays root's
        assert env[b"HOME"] == pp.path.encode() and env[b"USER"] == part.user.encode()
        st = os.lstat(pp.path)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (entry.pw_uid, 0o700)
        for path, mode in ((pp.buildout_cfg, 0o600), (os.path.join(pp.private, "partition.key"),
                                                      0o600), (pp.connection_file, 0o600)):
            st = os.lstat(path)
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (entry.pw_uid, mode), path
        assert os.lstat(os.path.join(pp.path, ".installed.cfg")).st_uid == entry.pw_uid
    # the release: root's, readable by all, writable by none but root
    sdir = agent.paths.software_dir(software_hash(IDLE))
    for path in (sdir, os.path.join(sdir, "instance-default.cfg")):
        st = os.lstat(path)
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o022 == 0 \
            and stat.S_IMODE(st.st_mode) & 0o004, path
    # the node's own secrets are root's only
    for path in (agent.paths.state, agent.paths.desired):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    status = agent.status()
    assert status["isolated"] is True


@pytest.mark.e2e
def test_a_partition_cannot_touch_its_neighbour(world):
    parts = _partitions(world)
    agent = world["agent"]
    (a, app), (b, bpp) = parts["a"], parts["b"]
    sdir = agent.paths.software_dir(software_hash(IDLE))
    targets = {
        "own_key": os.path.join(app.private, "partition.key"),
        "other_key": os.path.join(bpp.private, "partition.key"),
        "other_cfg": bpp.buildout_cfg, "other_dir": bpp.path, "software": sdir,
        "software_file": os.path.join(sdir, "instance-default.cfg"),
        "node_key": load_config(str(world["root"])).tls["key"],
        "node_state": agent.paths.state,
        "own_logs": agent.paths.service_log_dir(a.id),
        "other_logs": agent.paths.service_log_dir(b.id),
        "other_pid": _service_pid(agent, b.id), "own_pid": _service_pid(agent, a.id)}
    done = as_user(a.user, PROBE, json.dumps(targets))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got == {
        "read_own_key": "ok", "read_other_key": "EACCES", "read_other_cfg": "EACCES",
        "list_other_dir": "EACCES", "write_other_dir": "EACCES", "write_software": "EACCES",
        "write_software_file": "EACCES", "read_node_key": "EACCES",
        "read_node_state": "EACCES", "read_other_logs": "EACCES", "read_own_logs": "ok",
        "signal_other": "EPERM", "signal_own": "ok"}
    # B's service survived the attempt
    assert _service_pid(agent, b.id) == targets["other_pid"]


@pytest.mark.e2e
def test_symlinks_a_partition_plants_are_never_followed_by_the_node(world, tmp_path):
    parts = _partitions(world)
    agent, client = world["agent"], world["client"]
    (a, app), (b, bpp) = parts["a"], parts["b"]
    entry = pwd.getpwnam(a.user)
    canary = tmp_path / "canary"          # a root-owned file the node must never write
    canary.write_text("untouched\n")
    other_key = os.path.join(bpp.private, "partition.key")
    # A replaces the files the node writes (or reads) with symlinks to root's files
    plants = {app.buildout_cfg: str(canary),
              app.services_record: str(canary),
              app.buildout_log: str(canary),
              app.connection_file: other_key}
    for path, target in plants.items():
        os.unlink(path)
        os.symlink(target, path)
        os.lchown(path, entry.pw_uid, entry.pw_gid)
    # a new parameter: the node instantiates A again and restarts its service
    inst = world["insts"][0]
    client.request(inst["reference"], IDLE, parameters={"note": "changed"},
                   sla={"computer_guid": COMPUTER})
    settle(agent)
    assert canary.read_text() == "untouched\n"
    shown = client.show(inst["id"])
    assert shown["status"]["state"] == "started", shown["status"]
    # the planted files were replaced, never followed: A's key material never left B
    assert "PRIVATE KEY" not in json.dumps(shown["connection"])
    assert shown["connection"]["note"] == "changed"
    for path in (app.buildout_cfg, app.services_record, app.buildout_log):
        assert not os.path.islink(path), path
    assert "PRIVATE KEY" in open(other_key).read()       # B's key is as it was


# -- node format: isolation by default, refused when partition users could not run it --


def format_cli(root, *extra, user=None):
    kwargs = {}
    if user is not None:
        creds = Credentials.of(user)
        kwargs = {"user": creds.uid, "group": creds.gid, "extra_groups": list(creds.groups)}
    return subprocess.run([sys.executable, "-m", "slapfed.cli.main", "node", "format",
                           "--master", "http://127.0.0.1:9", "--computer", "iso-format",
                           "--partitions", "1", "--root", str(root), "--no-register", *extra],
                          capture_output=True, text=True, timeout=120, cwd="/", **kwargs)


def test_format_refuses_an_interpreter_partition_users_cannot_execute(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    python = private / "python3"
    python.symlink_to(sys.executable)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([str(python), "-m", "slapfed.cli.main", "node", "format",
                           "--master", "http://127.0.0.1:9", "--computer", "iso-format",
                           "--partitions", "1", "--root", str(tmp_path / "node"),
                           "--no-register"], capture_output=True, text=True, timeout=120,
                          env=env, cwd="/")
    assert done.returncode != 0
    assert (f"partition users cannot execute {python}: {private} is mode 0700; create the "
            "venv with Debian's /usr/bin/python3 (make PYTHON=/usr/bin/python3) or pass "
            "--single-user") in done.stderr, done.stderr
    assert not (tmp_path / "node" / "node.json").exists()
    # --single-user formats it (nothing runs as another user)
    done = subprocess.run([str(python), "-m", "slapfed.cli.main", "node", "format",
                           "--master", "http://127.0.0.1:9", "--computer", "iso-format",
                           "--partitions", "1", "--root", str(tmp_path / "node"),
                           "--no-register", "--single-user"], capture_output=True, text=True,
                          timeout=120, env=env, cwd="/")
    assert done.returncode == 0, done.stderr
    assert "partitions are NOT isolated" in done.stdout
    assert "single-user" in done.stderr             # and a warning in the log


def test_format_refuses_a_root_partition_users_cannot_reach(tmp_path):
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    done = format_cli(hidden / "node")
    assert done.returncode != 0
    assert (f"partition users cannot reach {hidden}/node/software: {hidden} is mode 0700"
            in done.stderr), done.stderr
    assert not (hidden / "node" / "node.json").exists()


def test_format_by_root_isolates_and_single_user_says_so(tmp_path):
    done = format_cli(tmp_path / "iso", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["isolated"] is True and data["partitions"][0]["user"].startswith("slapfed-")
    # --users is still accepted (it is the default)
    assert format_cli(tmp_path / "iso", "--users").returncode == 0
    # an isolated node cannot be turned single-user
    done = format_cli(tmp_path / "iso", "--single-user")
    assert done.returncode != 0 and "run as their own unix users" in done.stderr
    done = format_cli(tmp_path / "single", "--single-user", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["isolated"] is False and data["partitions"][0]["user"] is None
    st = os.lstat(tmp_path / "single" / "partitions" / "part0")
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700


def test_a_node_not_run_by_root_is_single_user(tmp_path):
    root = tmp_path / "nobody-node"
    root.mkdir()
    os.chown(root, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
    done = format_cli(root, user="nobody")
    assert done.returncode == 0, done.stderr
    assert "single-user: every partition runs as nobody" in done.stdout
    done = format_cli(root, "--users", user="nobody")
    assert done.returncode != 0 and "--users needs root" in done.stderr


@pytest.mark.parametrize("runner_name", ["fork", "subprocess"])
def test_both_runners_run_buildout_as_the_partition_user(tmp_path, runner_name,
                                                        partition_user):
    from slapfed.node.buildout import make_runner
    user = Credentials.of(partition_user)
    work = tmp_path / "part"
    work.mkdir(mode=0o700)
    os.chown(work, user.uid, user.gid)
    cfg = work / "buildout.cfg"
    cfg.write_text(f"[buildout]\nparts = f\ndirectory = {work}\noffline = true\n"
                   f"newest = false\n\n[f]\nrecipe = slapfed:file\npath = {work}/out\n"
                   "content = written\n")
    canary = tmp_path / "canary"
    canary.write_text("untouched\n")
    log = work / "buildout.log"
    log.symlink_to(canary)                         # the user's trap for root
    runner = make_runner(runner_name, timeout=120)
    try:
        result = runner.run(str(cfg), str(work), str(log), user=user)
    finally:
        getattr(runner, "close", lambda: None)()
    assert result.ok, result.log_tail
    assert canary.read_text() == "untouched\n"
    for path in (work / "out", log, work / ".installed.cfg"):
        st = os.lstat(path)
        assert not stat.S_ISLNK(st.st_mode) and st.st_uid == user.uid, path
    assert stat.S_IMODE(os.lstat(work / "out").st_mode) == 0o644


@pytest.fixture(scope="module")
def partition_user(tmp_path_factory) -> str:
    """The user of partition 0 of a node formatted for it (made once, then reused)."""
    root = tmp_path_factory.mktemp("users-node") / "node"
    done = format_cli(root)
    assert done.returncode == 0, done.stderr
    return load_config(str(root)).partitions[0].user


def test_a_confined_run_past_its_timeout_is_killed(tmp_path, partition_user):
    from slapfed.node.buildout import make_runner
    user = Credentials.of(partition_user)
    work = tmp_path / "part"
    work.mkdir(mode=0o700)
    os.mkfifo(work / "never-written")             # reading it blocks: buildout hangs
    for path in (work, work / "never-written"):
        os.chown(path, user.uid, user.gid)
    cfg = work / "buildout.cfg"
    cfg.write_text(f"[buildout]\nparts = f\ndirectory = {work}\noffline = true\n"
                   f"newest = false\n\n[f]\nrecipe = slapfed:file\npath = {work}/out\n"
                   f"source = {work}/never-written\n")
    runner = make_runner("fork", timeout=1.0)
    try:
        result = runner.run(str(cfg), str(work), str(work / "buildout.log"), user=user)
    finally:
        runner.close()
    assert not result.ok and result.code < 0
    assert "still running after 1s; killed" in result.log_tail
    assert subprocess.run(["pgrep", "-u", str(user.uid), "-f", str(cfg)]).returncode == 1


def test_a_single_user_node_formatted_again_by_root_gets_its_users(tmp_path):
    root = tmp_path / "node"
    assert format_cli(root, "--single-user").returncode == 0
    part = root / "partitions" / "part0"
    (part / "etc").mkdir()
    (part / "etc" / "old.txt").write_text("old")
    canary = tmp_path / "canary"
    canary.write_text("root's")
    (part / "etc" / "link").symlink_to(canary)
    done = format_cli(root, "--json")
    assert done.returncode == 0, done.stderr
    user = json.loads(done.stdout)["partitions"][0]["user"]
    uid = pwd.getpwnam(user).pw_uid
    for path in (part, part / "etc", part / "etc" / "old.txt", part / "etc" / "link"):
        assert os.lstat(path).st_uid == uid, path
    assert os.lstat(canary).st_uid == 0           # the symlink was not followed
    status = subprocess.run([sys.executable, "-m", "slapfed.cli.main", "node", "status",
                             "--root", str(root), "--json"], capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["isolated"] is True
