"""Zero knowledge, end to end: a real master (gunicorn, FileStorage, mutual TLS) and a
real node run a release that publishes known secret connection parameters. The
requester reads them all through the CLI; the master's files (its FileStorage, its logs,
a backup made with `slapfed master backup`) hold none of them, in clear, base64 or hex.
A malformed sealed value posted by a node is refused naming the field; an altered one is
stored and named by the CLI as not opening; a renewed certificate gets the values
sealed again by the node, without a new revision."""
import base64
import json
import os
import secrets
import stat
from pathlib import Path

import pytest
from conftest import mtls_master_and_node, slapfed_cli

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.client import MasterClient
from slapfed.core.errors import InvalidInput
from slapfed.core.sealed import PREFIX, is_sealed
from slapfed.procs import Proc, wait_for

COMPUTER = "zk-node"
pytestmark = pytest.mark.timeout(600)

SOFTWARE = """[buildout]
parts = instance-default

[instance-default]
recipe = slapfed:file
source = ${release:directory}/instance-default.cfg
path = ${buildout:directory}/instance-default.cfg
"""

INSTANCE = """[buildout]
parts =
    sleeper
    publish

[parameters]
db-password = unset

[sleeper]
recipe = slapfed:service
path = ${partition:services}/sleeper
command = /bin/sleep 100000000

[publish]
recipe = slapfed:publish
url = http://${partition:address}:${partition:port-base}/
password = %(password)s
api-token = %(token)s
echo = ${parameters:db-password}
secret = password api-token echo
"""


def forms(value: str) -> list[bytes]:
    """The value as bytes, and what of it shows in its base64 (at each of the three
    alignments, standard and URL-safe) and hex forms."""
    raw = value.encode()
    found = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for pad in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            # the characters that depend on the value alone: without the edges
            found.append(enc(b"\0" * pad + raw).rstrip(b"=")[4:-4])
    return found


def scan(paths, values) -> list[str]:
    """Every (file, value) where a form of a value appears; files read byte for byte."""
    hits = []
    for top in paths:
        for path in ([top] if top.is_file() else sorted(p for p in top.rglob("*")
                                                        if p.is_file())):
            data = path.read_bytes()
            hits += [f"{path}: {v!r}" for v in values if any(f in data for f in forms(v))]
    return hits


def cli_json(*args, env):
    return json.loads(slapfed_cli(*args, "--json", env=env).stdout)


def secret_release(base) -> tuple:
    """(the directory of a release that publishes fresh known secrets, those values)."""
    known = {"password": "pw-" + secrets.token_hex(12), "token": "tk-" + secrets.token_hex(12),
             "parameter": "db-" + secrets.token_hex(12)}
    release = base / "release"
    release.mkdir()
    (release / "software.cfg").write_text(SOFTWARE)
    (release / "instance-default.cfg").write_text(INSTANCE % known)
    return release, known


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("zk")
    release, known = secret_release(base)
    with mtls_master_and_node(base, COMPUTER, partitions=2, address_octet=207) as fed:
        slapfed_cli("supply", str(release / "software.cfg"), "--computer", COMPUTER,
                    env=fed["admin_env"])
        fed.update(known=known, release=str(release / "software.cfg"))
        try:
            yield fed
        finally:
            fed["node"].stop()       # the agent a test restarted (the first: the harness)


def test_secrets_reach_the_requester_and_no_file_of_the_master_holds_them(world):
    env, known = world["env"], world["known"]
    inst = cli_json("request", "zk-1", world["release"], "--wait", "120", env=env)
    assert inst["connection"]["password"] == known["password"]
    assert inst["connection"]["api-token"] == known["token"]
    assert inst["sealed"] == ["api-token", "echo", "password"]
    assert inst["connection"]["url"].startswith("http://")      # public stays public
    # a secret parameter: sealed by the CLI to the partition, opened by its node only
    two = cli_json("request", "zk-2", world["release"], "--secret",
                   f"db-password={known['parameter']}", "--wait", "120", env=env)
    assert two["connection"]["echo"] == known["parameter"]
    assert two["revision"] == 2                 # placed pending first, then sealed
    assert "(secret, sealed to its partition)" in slapfed_cli("show", "zk-2", env=env).stdout
    shown = cli_json("show", "zk-1", env=env)
    assert shown["connection"] == inst["connection"] and "unopened" not in shown
    listed = {i["reference"]: i for i in cli_json("list", env=env)["instances"]}
    assert listed["zk-1"]["connection"] == inst["connection"]      # opened there too
    assert listed["zk-2"]["sealed"] == ["api-token", "echo", "password"]
    text = slapfed_cli("show", "zk-1", env=env).stdout
    assert f"password = {known['password']}" in text

    # what the master holds and hands out is the sealed text only
    raw = world["client"].find("zk-1")
    assert all(is_sealed(raw["connection"][k]) for k in ("password", "api-token"))
    assert is_sealed(world["client"].find("zk-2")["parameters"]["db-password"])

    base = world["base"]
    slapfed_cli("master", "backup", "--data", str(base / "master"), "--to",
                str(base / "backup"), env=world["admin_env"])
    assert any(p.is_file() for p in (base / "backup").rglob("*"))
    master_files = [base / "master", base / "backup", base / "master.log"]
    assert list((base / "master").rglob("*.fs")), "the FileStorage is where it was looked for"
    assert scan(master_files, list(known.values())) == []
    # nor does what the node keeps outside the partition (its state, outbox, logs)
    root = world["root"]
    assert scan([root / "var" / "state.json", root / "var" / "desired.json",
                 root / "var" / "sealed.json", base / "node.log"], list(known.values())) == []
    # the scan does find a value where one is (the partition's own file)
    assert scan([root], [known["password"]]) != []


def node_client(world) -> MasterClient:
    etc = world["root"] / "etc"
    return MasterClient(world["url"], ca=str(etc / "ca.crt"), cert=str(etc / "node.crt"),
                        key=str(etc / "node.key"))


def test_a_node_posting_a_malformed_or_altered_sealed_value(world):
    env = world["env"]
    inst = cli_json("show", "zk-1", env=env) if _exists(world) else \
        cli_json("request", "zk-1", world["release"], "--wait", "120", env=env)
    raw = world["client"].find("zk-1")
    node, place = node_client(world), raw["placement"]
    report = {"instance_id": raw["id"], "revision": raw["status"]["revision"],
              "state": raw["status"]["state"], "log_tail": "",
              "connection": dict(raw["connection"]), "promises": []}
    with pytest.raises(InvalidInput) as refused:
        node.report_partition(COMPUTER, place["partition"], {
            **report, "connection": {**raw["connection"], "password": PREFIX + "not*b64"}})
    assert "connection.password" in json.dumps(refused.value.details)
    assert world["client"].find("zk-1")["connection"] == \
        raw["connection"]                                   # nothing written

    body = raw["connection"]["password"][len(PREFIX):]
    flipped = body[:40] + ("B" if body[40] != "B" else "C") + body[41:]
    node.report_partition(COMPUTER, place["partition"], {
        **report, "connection": {**raw["connection"], "password": PREFIX + flipped}})
    done = slapfed_cli("show", "zk-1", "--json", env=env, check=False)
    assert done.returncode == 3
    assert "'password'" in done.stderr and "does not open" in done.stderr
    shown = json.loads(done.stdout)
    assert shown["connection"]["api-token"] == inst["connection"]["api-token"]
    assert set(shown["unopened"]) == {"password"}
    # the node's honest report puts it right
    node.report_partition(COMPUTER, place["partition"], report)
    assert cli_json("show", "zk-1", env=env)["connection"]["password"] == \
        world["known"]["password"]


def _exists(world) -> bool:
    return any(i["reference"] == "zk-1" for i in world["client"].list_instances())


def test_a_renewed_certificate_gets_the_values_sealed_again(world):
    env, base = dict(world["env"]), world["base"]
    if not _exists(world):
        cli_json("request", "zk-1", world["release"], "--wait", "120", env=env)
    before = world["client"].find("zk-1")
    ca = CertificateAuthority(base / "master" / "ca")
    ca.issue_with_new_key(ids.person("alice"), base / "alice-renewed")
    env["SLAPFED_CONFIG"] = str(base / "alice-renewed.json")
    slapfed_cli("config", "set", "--master", world["url"], "--identity",
                str(base / "alice-renewed"), env=env)
    # with the new key, the values sealed to the old one do not open
    assert slapfed_cli("show", "zk-1", env=env, check=False).returncode == 3
    again = cli_json("request", "zk-1", world["release"], env=env)   # the same request
    assert again["revision"] == before["revision"]

    def opened():
        done = slapfed_cli("show", "zk-1", "--json", env=env, check=False)
        return done.returncode == 0 and json.loads(done.stdout)
    shown = wait_for(opened, 60, "the node sealing to the renewed certificate")
    assert shown["connection"]["password"] == world["known"]["password"]
    assert shown["connection"]["api-token"] == world["known"]["token"]
    # and the old key no longer opens them
    assert slapfed_cli("show", "zk-1", env=world["env"], check=False).returncode == 3
    assert Path(world["root"]).exists()


def test_a_restarted_agent_sends_the_same_sealed_texts_without_sealing_again(world):
    """The node's sealing cache outlives the agent (var/sealed.json, 0600, no secret in
    it): after a restart every started partition is confirmed to the master again, with
    the very texts it had (a fresh sealing would give other ones), and no new revision."""
    env = world["env"]
    if not _exists(world):
        cli_json("request", "zk-1", world["release"], "--wait", "120", env=env)
    cache = Path(world["root"]) / "var" / "sealed.json"
    wait_for(cache.exists, 30, "the node's sealing cache")
    assert stat.S_IMODE(os.lstat(cache).st_mode) == 0o600
    before = world["client"].find("zk-1")
    old = world["node"]
    old.stop()
    world["node"] = Proc(old.argv, old.log)

    def confirmed():
        now = world["client"].find("zk-1")
        return now["status"]["reported_at"] != before["status"]["reported_at"] and now
    after = wait_for(confirmed, 60, "the restarted agent confirming zk-1")
    assert after["connection"] == before["connection"]            # byte for byte
    assert after["revision"] == before["revision"]
    assert after["status"]["state"] == "started"
