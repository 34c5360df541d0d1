"""The CLI against real masters (`slapfed master serve` processes on 127.0.0.1): the exact
lines an error prints, `slapfed whoami`, `slapfed config show`, and shell completion of
instance references — the completion function itself, and click's completion protocol
(``_SLAPFED_COMPLETE`` with ``COMP_WORDS``/``COMP_CWORD``) in a subprocess."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.cli import completion
from slapfed.cli.main import cli
from slapfed.client import MasterClient
from slapfed.core.wire import MAX_REFERENCE

from conftest import start_master_process, stop_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

URL = "/srv/releases/hello/software.cfg"
CLEAN_ENV = ("SLAPFED_MASTER", "SLAPFED_REQUESTER", "SLAPFED_CONFIG")


@pytest.fixture(scope="module")
def dev_master(tmp_path_factory):
    """A development-mode master with one computer (lan-a, europe, three partitions) on
    which alice holds web-1 and web-2, and bob db-1."""
    base = tmp_path_factory.mktemp("dev")
    proc, url = start_master_process(str(base / "master"))
    try:
        admin = MasterClient(url, requester="alice")
        admin.register_computer({"id": "a1", "lan": "lan-a", "continent": "europe",
                                 "partitions": [{"id": f"p{i}", "address": f"127.0.2.{i + 1}",
                                                 "port_base": 3000 + 100 * i}
                                                for i in range(3)]})
        admin.supply("a1", URL)
        made = {ref: admin.request(ref, URL) for ref in ("web-1", "web-2")}
        made["db-1"] = MasterClient(url, requester="bob").request("db-1", URL)
        yield url, made
    finally:
        stop_process(proc, timeout=15)


@pytest.fixture
def no_config(tmp_path, monkeypatch):
    for name in CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "client.json"))
    return tmp_path / "client.json"


def run(*argv):
    return CliRunner().invoke(cli, list(argv), catch_exceptions=False)


def assert_for_people(stderr: str):
    assert "{" not in stderr and "'" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == len(set(lines))


def test_a_placement_refusal_reads_one_line_per_refusal(dev_master, no_config):
    url, _ = dev_master
    out = run("request", "web-9", URL, "--master", url, "--as", "alice",
              "--sla", "lan=mars", "--sla-fallback", "continent=asia")
    assert out.exit_code == 5
    assert out.stderr.splitlines() == [
        "slapfed: error: no partition fits web-9: [1] lan=mars: 1 computer refused by "
        "lan=mars; [2] continent=asia: 1 computer refused by continent=asia",
        "  [1] lan=mars: 1 computer refused by lan=mars (plugin lan)",
        "  [2] continent=asia: 1 computer refused by continent=asia (plugin continent)",
    ]
    assert_for_people(out.stderr)


def test_invalid_input_lists_each_problem_once(dev_master, no_config):
    url, _ = dev_master
    out = run("request", "w" * 300, URL, "--master", url, "--as", "alice",
              "--sla", "colour=red", "--sla", "size=big")
    assert out.exit_code == 3
    lines = out.stderr.splitlines()
    unknown = lines[1].split(": ", 1)[1]
    assert unknown.startswith("unknown SLA key (known: master, computer_guid, ")
    assert lines == [
        f"slapfed: error: invalid request: reference is 300 characters long, the limit is "
        f"{MAX_REFERENCE} (and 2 more)",
        f"  sla.colour: {unknown}",
        f"  sla.size: {unknown}",
    ]
    assert_for_people(out.stderr)


def test_json_errors_stay_the_master_error_body(dev_master, no_config):
    url, _ = dev_master
    out = run("request", "web-9", URL, "--master", url, "--as", "alice", "--sla", "lan=mars",
              "--json")
    assert out.exit_code == 5
    body = json.loads(out.stderr)
    assert body == {"error": {
        "code": "no_capacity", "message": "no partition fits web-9: 1 computer refused by lan=mars",
        "details": [{"alternative": 0, "sla": "lan=mars", "plugin": "lan", "reason": "lan=mars",
                     "count": 1}]}}


def test_whoami_in_development_mode(dev_master, no_config):
    url, _ = dev_master
    out = run("whoami", "--master", url, "--as", "alice")
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == [
        "principal:   admin/local", "role:        admin", "name:        local",
        "mode:        development: the master reads no certificate and acts for everyone as "
        "this administrator",
        "requester:   alice (the name this CLI sends; instances are recorded under it)",
        f"master:      {url}"]
    body = json.loads(run("whoami", "--master", url, "--json").stdout)
    assert body["principal"] == "admin/local" and body["development_mode"] is True
    assert body["certificate"] is None


# -- completion ------------------------------------------------------------------------
def test_completion_lists_the_callers_instances(dev_master, no_config, monkeypatch):
    url, made = dev_master
    monkeypatch.setenv("SLAPFED_MASTER", url)
    monkeypatch.setenv("SLAPFED_REQUESTER", "alice")
    items = completion.references(None, None, "web")
    assert [i.value for i in items] == ["web-1", "web-2"]
    assert all(i.help.startswith("started, ") for i in items)
    assert completion.references(None, None, "db") == []            # bob's, not alice's
    ids_ = completion.instance_ids(None, None, "")
    assert {i.value for i in ids_} == {made["web-1"]["id"], made["web-2"]["id"]}
    assert [i.value for i in completion.references(None, None, "")] == ["web-1", "web-2"]


def test_completion_takes_the_options_given_before(dev_master, no_config):
    url, _ = dev_master

    class Ctx:
        params = {"master_url": url, "requester": "bob"}
    assert [i.value for i in completion.references(Ctx, None, "")] == ["db-1"]


@pytest.mark.parametrize("master", [None, "http://127.0.0.1:9", "not a url"],
                         ids=["no-master", "nothing-listens", "garbage"])
def test_completion_is_silent_on_any_error(no_config, master, monkeypatch):
    if master:
        monkeypatch.setenv("SLAPFED_MASTER", master)
    assert completion.references(None, None, "") == []


@pytest.mark.parametrize("args", [
    ["show"], ["start"], ["stop"], ["destroy"], ["request"], ["topology", "where"],
    ["topology", "domains"], ["topology", "explain"], ["show", "--master", "URL", "--as", "bob"],
], ids=lambda a: "-".join(a))
def test_every_reference_argument_completes(dev_master, no_config, monkeypatch, args):
    """Click's own completion path, in process: the words typed so far, then REFERENCE."""
    from click.shell_completion import ShellComplete
    url, _ = dev_master
    monkeypatch.setenv("SLAPFED_MASTER", url)
    monkeypatch.setenv("SLAPFED_REQUESTER", "alice")
    args = [url if a == "URL" else a for a in args]
    found = ShellComplete(cli, {}, "slapfed", "_SLAPFED_COMPLETE").get_completions(args, "")
    assert [c.value for c in found] == (["db-1"] if "bob" in args else ["web-1", "web-2"])


def test_completion_gives_up_on_a_master_that_does_not_answer(no_config, monkeypatch):
    """A master that accepts the connection and says nothing: no completion, in time."""
    import socket
    import time
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    try:
        monkeypatch.setenv("SLAPFED_MASTER", f"http://127.0.0.1:{mute.getsockname()[1]}")
        monkeypatch.setattr(completion, "CONNECT_TIMEOUT", 0.2)
        monkeypatch.setattr(completion, "READ_TIMEOUT", 0.3)
        started = time.monotonic()
        assert completion.references(None, None, "") == []
        assert time.monotonic() - started < 2
    finally:
        mute.close()


def complete(url, words, cword, shell="bash", **env):
    """Run slapfed as the shell's completion script would; (stdout, stderr)."""
    full = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    full.update({"_SLAPFED_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
                 "COMP_CWORD": str(cword), "SLAPFED_CONFIG": os.devnull + ".none",
                 **({"SLAPFED_MASTER": url} if url else {}), **env})
    done = subprocess.run([sys.executable, "-m", "slapfed.cli.main"], env=full,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def test_completion_through_the_shell_protocol(dev_master):
    url, made = dev_master
    out, err = complete(url, "slapfed show we", 2, SLAPFED_REQUESTER="alice")
    assert out.splitlines() == ["plain,web-1", "plain,web-2"] and err == ""
    out, _ = complete(url, "slapfed destroy --as bob ", 4)
    assert out.splitlines() == ["plain,db-1"]
    out, _ = complete(url, "slapfed request x y --parent ", 5, SLAPFED_REQUESTER="bob")
    assert out.splitlines() == [f"plain,{made['db-1']['id']}"]
    out, _ = complete(url, "slapfed show", "w", shell="fish", SLAPFED_REQUESTER="alice")
    assert out.splitlines() == ["plain,web-1\tstarted, pending", "plain,web-2\tstarted, pending"]
    out, err = complete("http://127.0.0.1:9", "slapfed show ", 2)
    assert out.strip() == "" and err == ""


# -- over mutual TLS ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_master(tmp_path_factory):
    """A master over HTTPS with client certificates; alice's identity directory; one
    instance of hers."""
    base = tmp_path_factory.mktemp("tls")
    proc, url = start_master_process(str(base / "master"), secure=True)
    try:
        ca = CertificateAuthority(base / "master" / "ca")
        alice = ca.issue_with_new_key(ids.person("alice"), base / "alice")
        admin = ca.issue_with_new_key(ids.admin("root"), base / "admin")
        as_admin = MasterClient(url, ca=str(alice.ca_path), cert=str(admin.cert_path),
                                key=str(admin.key_path))
        as_admin.register_computer({"id": "t1", "partitions": [
            {"id": "p0", "address": "127.0.4.1", "port_base": 5000}]})
        as_admin.supply("t1", URL)
        MasterClient(url, ca=str(alice.ca_path), cert=str(alice.cert_path),
                     key=str(alice.key_path)).request("site-1", URL)
        yield url, base / "alice", alice.record
    finally:
        stop_process(proc, timeout=15)


def test_whoami_and_config_show_over_tls(tls_master, no_config):
    url, identity_dir, record = tls_master
    assert run("config", "set", "--master", url, "--identity", str(identity_dir),
               "--requester", "mallory").exit_code == 0
    out = run("whoami")
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[:3] == ["principal:   person/alice", "role:        person", "name:        alice"]
    assert lines[3].startswith(f"certificate: serial {record.serial}, valid until ")
    assert lines[3].endswith("(in 364 days)") or lines[3].endswith("(in 365 days)")
    assert lines[4] == f"master:      {url}" and len(lines) == 5
    body = json.loads(run("whoami", "--json").stdout)
    assert body["certificate"]["serial"] == record.serial
    assert body["certificate"]["not_after"] == record.not_after.isoformat()

    shown = run("config", "show")
    assert shown.exit_code == 0
    text = shown.stdout
    assert (f"identity:    person/alice (from the certificate, serial {record.serial}, "
            "valid until ") in text
    assert "the master decides who you are from it: `slapfed whoami` asks it" in text
    assert "mallory" not in text and "requester" not in text
    data = json.loads(run("config", "show", "--json").stdout)
    assert data["identity"]["principal"] == "person/alice" and data["requester"] is None


def test_completion_over_tls_uses_the_certificates_principal(tls_master, no_config):
    url, identity_dir, _ = tls_master
    run("config", "set", "--master", url, "--identity", str(identity_dir))
    assert [i.value for i in completion.references(None, None, "")] == ["site-1"]
    out, err = complete(url, "slapfed show s", 2, SLAPFED_CONFIG=str(no_config))
    assert out.splitlines() == ["plain,site-1"] and err == ""


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
def test_bash_completes_with_the_script_click_writes(dev_master):
    """What a user enables: eval "$(_SLAPFED_COMPLETE=bash_source slapfed)", then TAB."""
    url, _ = dev_master
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(PATH=f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}",
               SLAPFED_MASTER=url, SLAPFED_REQUESTER="alice",
               SLAPFED_CONFIG=os.devnull + ".none")
    script = ('eval "$(_SLAPFED_COMPLETE=bash_source slapfed)"; '
              'COMP_WORDS=(slapfed stop web); COMP_CWORD=2; _slapfed_completion slapfed; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["web-1", "web-2"]


def test_computer_lost_dry_run_says_what_would_move_and_changes_nothing(dev_master,
                                                                       no_config):
    url, made = dev_master
    out = run("computer", "lost", "a1", "--dry-run", "--reason", "drill", "--master", url)
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0] == "computer a1 would be lost (drill)"
    web = made["web-1"]
    assert any(line.startswith(f"  web-1 ({web['id']}) from {web['placement']['partition']}: "
                               "NOT PLACED: computer a1 was declared lost (drill)")
               for line in lines), lines
    shown = run("computer", "show", "a1", "--master", url).stdout
    assert "LOST" not in shown and "moved away" not in shown
    assert MasterClient(url, requester="alice").show(web["id"])["placement"] == \
        web["placement"]


def test_lost_and_wipe_of_what_is_not_there_exit_4_or_5(dev_master, no_config):
    url, _ = dev_master
    assert run("peer", "lost", "nope", "--master", url).exit_code == 4
    assert run("computer", "lost", "nope", "--master", url).exit_code == 4
    out = run("computer", "wipe", "a1", "--partition", "p0", "--master", url)
    assert out.exit_code == 5 and "nothing to wipe" in out.stderr
