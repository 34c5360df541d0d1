"""Real buildout runs of the sample profiles (offline, in tmp_path) and the recipes."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from slapfed.core.wire import software_hash
from slapfed.node import buildout as nb
from slapfed.node.layout import PartitionConfig, Paths
from slapfed.recipe import command_argv, render_wrapper

HERE = os.path.dirname(os.path.abspath(__file__))
PROFILES = os.path.join(os.path.dirname(HERE), "profiles")
HELLO = os.path.join(PROFILES, "hello", "software.cfg")
FAILING = os.path.join(PROFILES, "failing", "software.cfg")


@pytest.fixture(scope="module")
def runner():
    r = nb.ForkRunner()
    r.warm_up()
    return r


@pytest.fixture(scope="module")
def hello_node(tmp_path_factory, runner):
    """A node root with the hello release installed once for the whole module."""
    paths = Paths(str(tmp_path_factory.mktemp("node")))
    for d in paths.skeleton():
        os.makedirs(d)
    result = nb.install_software(paths, HELLO, software_hash(HELLO), runner)
    assert result.ok, result.log_tail
    return paths


def instance(iid="i1", url=HELLO, stype="default", **params):
    return {"id": iid, "reference": f"ref {iid}", "software_url": url,
            "software_hash": software_hash(url), "software_type": stype,
            "parameters": params, "revision": 1, "shared_instances": []}


PART = PartitionConfig("part0", "127.31.0.1", 10000, 10)


def test_hello_release_installs_its_script_and_instance_profile(hello_node):
    sdir = hello_node.software_dir(software_hash(HELLO))
    assert nb.software_types(sdir) == ("default",)
    assert os.access(os.path.join(sdir, "bin", "slapfed-hello-web"), os.X_OK)
    out = subprocess.run([os.path.join(sdir, "bin", "slapfed-hello-web"), "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--greeting" in out.stdout


def test_install_is_idempotent(hello_node, runner):
    result = nb.install_software(hello_node, HELLO, software_hash(HELLO), runner)
    assert result.ok and result.software_types == ("default",)


def test_hello_instance_writes_service_promise_and_connection(hello_node, runner):
    result = nb.instantiate(hello_node, PART, "c1", instance(greeting="bonjour à tous"), runner)
    assert result.ok, result.log_tail
    assert result.connection == {"url": "http://127.31.0.1:10000/"}
    pp = hello_node.partition("part0")
    web = open(os.path.join(pp.services, "web")).read()
    assert "'--greeting=bonjour à tous'" in web and "--port=10000" in web
    assert os.access(os.path.join(pp.promises, "health"), os.X_OK)
    cfg = open(pp.buildout_cfg).read()
    for key in ("id", "path", "address", "port-base", "port-count", "computer", "instance-id",
                "reference", "software-type", "software", "bin", "services", "promises",
                "log", "run", "tmp", "connection-file", "python"):
        assert f"\n{key} = " in cfg, key


def test_default_greeting_applies_without_parameters(hello_node, runner):
    result = nb.instantiate(hello_node, PART, "c1", instance(), runner)
    assert result.ok, result.log_tail
    web = open(os.path.join(hello_node.partition("part0").services, "web")).read()
    assert "--greeting=hello" in web


def test_removed_part_files_disappear_on_re_instantiation(hello_node, runner, tmp_path):
    # the failing-free way to shrink a profile: instantiate a type whose profile has fewer
    # parts; buildout uninstalls the web wrapper it no longer has
    sdir = hello_node.software_dir(software_hash(HELLO))
    with open(os.path.join(sdir, "instance-small.cfg"), "w") as fh:
        fh.write("[buildout]\nparts = publish\n[publish]\nrecipe = slapfed:publish\n"
                 "url = x\n")
    try:
        assert nb.instantiate(hello_node, PART, "c1", instance(), runner).ok
        web = os.path.join(hello_node.partition("part0").services, "web")
        assert os.path.exists(web)
        result = nb.instantiate(hello_node, PART, "c1", instance(stype="small"), runner)
        assert result.ok, result.log_tail
        assert not os.path.exists(web)
        assert result.connection == {"url": "x"}
    finally:
        os.unlink(os.path.join(sdir, "instance-small.cfg"))


def test_hash_files_change_the_wrapper_when_a_listed_file_changes(hello_node, runner):
    sdir = hello_node.software_dir(software_hash(HELLO))
    with open(os.path.join(sdir, "instance-hashed.cfg"), "w") as fh:
        fh.write("[buildout]\nparts = conf svc\n"
                 "[parameters]\nconf = a\nother = 1\n"
                 "[conf]\nrecipe = slapfed:file\npath = ${partition:path}/etc/svc.conf\n"
                 "content = ${parameters:conf}\n"
                 "[svc]\nrecipe = slapfed:service\npath = ${partition:services}/svc\n"
                 "command = /bin/cat ${conf:path}\n"
                 "hash-files = ${conf:path}\n    ${partition:path}/etc/never-written\n")
    wrapper = os.path.join(hello_node.partition("part0").services, "svc")

    def wrapper_after(**params):
        result = nb.instantiate(hello_node, PART, "c1", instance(stype="hashed", **params),
                                runner)
        assert result.ok, result.log_tail
        with open(wrapper) as fh:
            return fh.read()

    try:
        first = wrapper_after(conf="a")
        assert "# hash-files sha256 " in first
        assert wrapper_after(conf="a", other="2") == first      # the file did not change
        changed = wrapper_after(conf="b")
        assert changed != first and changed.splitlines()[-1] == first.splitlines()[-1]
        assert wrapper_after(conf="a") == first
        out = subprocess.run([wrapper], capture_output=True, text=True, timeout=10)
        assert out.stdout == "a\n"
    finally:
        os.unlink(os.path.join(sdir, "instance-hashed.cfg"))


def test_hash_files_count_missing_files_as_absent_and_refuse_unreadable_ones(tmp_path):
    import zc.buildout

    from slapfed.recipe import ServiceRecipe

    conf, wrapper = tmp_path / "conf", tmp_path / "svc"

    def install(hash_files):
        options = {"path": str(wrapper), "command": "/bin/true", "hash-files": hash_files}
        ServiceRecipe({}, "svc", options).install()
        return wrapper.read_text()

    absent = install(str(conf))
    conf.write_text("")
    empty = install(str(conf))
    assert absent != empty and "# hash-files sha256 " in absent
    assert install(str(conf)) == empty
    assert "hash-files" not in install("  ")
    with pytest.raises(zc.buildout.UserError, match=r"\[svc\] cannot read .* of hash-files"):
        install(str(tmp_path))                             # a directory is not a file


@pytest.mark.parametrize("value,expected", [
    ("plain", "plain"),
    ("cost $5", "cost $5"),
    ("a # not a comment", "a # not a comment"),
    ("${partition:path}", None),                      # never expanded: encoded
    ("two\nlines", None),
    ("a\r[web]\rcommand = x", None),
    (3, "3"),
    (True, "true"),
    ({"k": [1, 2]}, '{"k": [1, 2]}'),
], ids=["plain", "dollar", "hash", "substitution", "newline", "cr", "int", "bool", "json"])
def test_parameters_reach_the_profile_verbatim_or_encoded(hello_node, runner, value, expected):
    from slapfed.core import cfgvalue
    result = nb.instantiate(hello_node, PART, "c1", instance(greeting=value), runner)
    assert result.ok, result.log_tail
    argv = open(os.path.join(hello_node.partition("part0").services, "web")).read()
    import shlex
    words = shlex.split(argv.splitlines()[-1])
    given = [w[len("--greeting="):] for w in words if w.startswith("--greeting=")]
    assert len(given) == 1
    if expected is not None:                          # plain: verbatim
        assert given == [expected]
    else:                                             # encoded, decodes exactly
        assert given[0].startswith(cfgvalue.PREFIX)
        assert cfgvalue.decode(given[0]) == value


def test_unknown_software_type_fails_clearly(hello_node, runner):
    result = nb.instantiate(hello_node, PART, "c1", instance(stype="foo"), runner)
    assert not result.ok
    assert f"release {HELLO} has no software type 'foo' (has: default)" in result.log_tail


def test_failing_release_installs_but_its_instance_fails(tmp_path, runner):
    paths = Paths(str(tmp_path))
    for d in paths.skeleton():
        os.makedirs(d)
    sw = nb.install_software(paths, FAILING, software_hash(FAILING), runner)
    assert sw.ok and sw.software_types == ("default",)
    result = nb.instantiate(paths, PART, "c1", instance(url=FAILING, reason="testing"), runner)
    assert not result.ok
    assert "fails on purpose (parameter reason: testing)" in result.log_tail


def test_missing_release_fails_with_a_clear_log_tail(tmp_path, runner):
    paths = Paths(str(tmp_path))
    url = str(tmp_path / "nowhere" / "software.cfg")
    result = nb.install_software(paths, url, software_hash(url), runner)
    assert not result.ok
    assert f"release {url} does not exist" in result.log_tail


def test_broken_release_reports_buildout_error(tmp_path, runner):
    release = tmp_path / "broken.cfg"
    release.write_text("[buildout]\nparts = x\n[x]\nrecipe = slapfed:fail\nmessage = nope\n")
    paths = Paths(str(tmp_path / "root"))
    result = nb.install_software(paths, str(release), software_hash(str(release)), runner)
    assert not result.ok and "[x] nope" in result.log_tail


def test_release_without_instance_profile_fails(tmp_path, runner):
    release = tmp_path / "empty.cfg"
    release.write_text("[buildout]\nparts =\n")
    paths = Paths(str(tmp_path / "root"))
    result = nb.install_software(paths, str(release), software_hash(str(release)), runner)
    assert not result.ok and "provides no instance profile" in result.log_tail


def test_subprocess_runner_gives_the_same_result(hello_node):
    result = nb.instantiate(hello_node, PART, "c1", instance(greeting="sub"),
                            nb.SubprocessRunner())
    assert result.ok, result.log_tail
    assert "--greeting=sub" in open(os.path.join(hello_node.partition("part0").services,
                                                 "web")).read()


def test_fork_runner_leaves_cwd_and_logging_alone(hello_node, runner):
    import logging
    cwd, handlers = os.getcwd(), list(logging.getLogger().handlers)
    for _ in range(3):
        assert nb.instantiate(hello_node, PART, "c1", instance(), runner).ok
    assert os.getcwd() == cwd and logging.getLogger().handlers == handlers


def test_fork_runner_is_fast(hello_node, runner):
    import time
    times = []
    for n in range(5):
        started = time.monotonic()
        assert nb.instantiate(hello_node, PART, "c1", instance(n=n), runner).ok
        times.append(time.monotonic() - started)
    assert min(times) < 0.15, times


# -- recipes on their own -------------------------------------------------------------

@pytest.mark.parametrize("command,argv", [
    ("/bin/echo a b", ["/bin/echo", "a", "b"]),
    ("\n  /bin/echo\n  --greeting=hello world\n\n", ["/bin/echo", "--greeting=hello world"]),
], ids=["one-line-splits-on-spaces", "one-argument-per-line"])
def test_command_argv(command, argv):
    assert command_argv(command) == argv


def test_wrapper_execs_argv_without_shell_interpretation(tmp_path):
    script = tmp_path / "w"
    script.write_text(render_wrapper(["/bin/echo", "$HOME `id` ;x", "b"], {"GREETING": "a b"}))
    script.chmod(0o755)
    out = subprocess.run([str(script), "extra"], capture_output=True, text=True, timeout=10)
    assert out.stdout == "$HOME `id` ;x b extra\n"


def test_publish_recipe_writes_connection_json(tmp_path):
    from slapfed.recipe import PublishRecipe
    target = tmp_path / "c.json"
    options = {"recipe": "slapfed:publish", "file": str(target), "url": "http://x/"}
    assert PublishRecipe({}, "publish", options).install() == [str(target)]
    assert json.loads(target.read_text()) == {"url": "http://x/"}


def test_a_run_past_its_timeout_is_killed_with_everything_it_started(tmp_path):
    """A hanging buildout (and what it spawned) is killed by process group and noted."""
    import os
    import signal
    import time

    from slapfed.node.buildout import _wait_or_kill

    log = tmp_path / "run.log"
    log.write_text("")
    child_pid_file = tmp_path / "grandchild.pid"
    pid = os.fork()
    if pid == 0:  # the "buildout": its own group, with a grandchild, both hanging
        os.setsid()
        gc = os.fork()
        if gc == 0:
            time.sleep(60)
            os._exit(0)
        child_pid_file.write_text(str(gc))
        time.sleep(60)
        os._exit(0)
    for _ in range(200):
        if child_pid_file.exists() and child_pid_file.read_text():
            break
        time.sleep(0.01)
    grandchild = int(child_pid_file.read_text())
    started = time.monotonic()
    code = _wait_or_kill(pid, 0.3, str(log))
    assert code == -signal.SIGTERM
    assert time.monotonic() - started < 5
    assert "killed" in log.read_text()
    for _ in range(200):  # the grandchild got the group's SIGTERM too (reaped by init)
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{grandchild}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    else:
        os.kill(grandchild, signal.SIGKILL)
        raise AssertionError("the grandchild survived the timeout")
