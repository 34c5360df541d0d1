"""Shared hosting by consent over real TLS: a gunicorn master on 127.0.0.1 (run-time
port), two tenants with their own certificates (alice, bob) using the real CLI. Bob's
shared requests do not attach to alice's host and tell him nothing about it; once alice
opens it to him they attach; once she closes it they are detached."""
import json

import pytest
import requests
from click.testing import CliRunner

from conftest import computer_body
from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.cli.main import cli
from slapfed.core import sharing

URL = "/srv/releases/cdn/software.cfg"
MISSING = "i-00000000000000ff"


@pytest.fixture(scope="module")
def tenants(tmp_path_factory):
    """The master's URL, and per tenant (alice, bob, root) a CLI environment and the
    (cert, key) pair; a computer of 3 partitions is registered and supplied URL."""
    from conftest import start_master_process, stop_process
    base = tmp_path_factory.mktemp("shared-tls")
    proc, url = start_master_process(str(base / "master"), secure=True)
    try:
        ca = CertificateAuthority(base / "master" / "ca")
        out = {"url": url, "ca": str(base / "master" / "ca" / "ca.crt")}
        for who, identity in (("alice", ids.person("alice")), ("bob", ids.person("bob")),
                              ("root", ids.admin("root"))):
            made = ca.issue_with_new_key(identity, base / who)
            env = {"SLAPFED_CONFIG": str(base / f"{who}.json"), "SLAPFED_MASTER": None,
                   "SLAPFED_REQUESTER": None}
            done = CliRunner().invoke(cli, ["config", "set", "--master", url, "--identity",
                                            str(base / who)], env=env)
            assert done.exit_code == 0, done.output
            out[who] = {"env": env, "cert": (str(made.cert_path), str(made.key_path))}
        call(out, "root", "POST", "/computers", computer_body("node-s", 3))
        call(out, "root", "POST", "/computers/node-s/software", {"url": URL})
        yield out
    finally:
        stop_process(proc, timeout=15)


def call(t, who, method, path, body=None, status=None):
    resp = requests.request(method, t["url"] + "/api/v1" + path, json=body, verify=t["ca"],
                            cert=t[who]["cert"], timeout=10)
    if status is None:
        assert resp.status_code < 300, resp.text
    else:
        assert resp.status_code == status, resp.text
    return resp.json()


def slapfed(t, who, *args, code=0):
    done = CliRunner().invoke(cli, list(args), env=t[who]["env"])
    assert done.exit_code == code, done.output
    return done.output


def request(t, who, *args):
    return json.loads(slapfed(t, who, "request", *args, "--json"))


def test_bob_attaches_to_alices_host_only_once_she_opens_it(tenants):
    t = tenants
    front = request(t, "alice", "front", URL)
    assert front["open_to"] == [] and front["placement"] is not None
    shown = slapfed(t, "alice", "show", "front")
    assert "open to:    owner only" in shown

    # bob: no host open to him, so his request waits, whatever alice runs
    site = request(t, "bob", "site", URL, "--shared", "--param", "backend=http://b/")
    assert set(site) == set(front)                         # the one instance shape
    assert site["host_instance"] is None and site["connection"] == {}
    assert site["status"]["state"] == "pending"
    assert site["status"]["log_tail"] == sharing.waiting_for_a_host(URL, "default",
                                                                    "person/bob")
    # naming alice's host, or an id that exists nowhere: the same refusal
    named = request(t, "bob", "named", URL, "--shared", "--sla",
                    f"host_instance={front['id']}")
    nowhere = request(t, "bob", "nowhere", URL, "--shared", "--sla",
                      f"host_instance={MISSING}")
    assert named["status"]["state"] == nowhere["status"]["state"] == "failed"
    assert named["status"]["log_tail"].replace(front["id"], MISSING) == \
        nowhere["status"]["log_tail"]
    for mine in (site, named, nowhere):       # only the id bob gave himself
        text = json.dumps(call(t, "bob", "GET", f"/instances/{mine['id']}"))
        assert "front" not in text and "alice" not in text.replace(front["id"], "")
    assert sorted(i["reference"] for i in call(t, "bob", "GET", "/instances")["instances"]) \
        == ["named", "nowhere", "site"]
    # alice's node is told nothing of bob's sites
    desired = call(t, "root", "GET", "/computers/node-s/desired-state")
    entry = next(p["instance"] for p in desired["partitions"]
                 if p["instance"] and p["instance"]["id"] == front["id"])
    assert entry["shared_instances"] == []

    # alice opens her host to bob: what waits attaches
    opened = request(t, "alice", "front", URL, "--open-to", "person/bob")
    assert opened["open_to"] == ["person/bob"]
    assert opened["shared_instances"] == sorted([site["id"], named["id"]])
    assert "open to:    person/bob (2 shared instances attached)" in \
        slapfed(t, "alice", "show", "front")
    for mine in (site, named):
        now = call(t, "bob", "GET", f"/instances/{mine['id']}")
        assert now["host_instance"] == front["id"] and now["status"]["state"] == "pending"
    desired = call(t, "root", "GET", "/computers/node-s/desired-state")
    entry = next(p["instance"] for p in desired["partitions"]
                 if p["instance"] and p["instance"]["id"] == front["id"])
    assert [s["reference"] for s in entry["shared_instances"]] == \
        [r for _i, r in sorted([(site["id"], "site"), (named["id"], "named")])]
    # bob still may not read alice's host: it is answered as an unused id
    call(t, "bob", "GET", f"/instances/{front['id']}", status=404)

    # alice asks again without --open-to: closed again, bob's sites are detached
    closed = request(t, "alice", "front", URL)
    assert closed["open_to"] == [] and closed["shared_instances"] == []
    gone = call(t, "bob", "GET", f"/instances/{site['id']}")
    assert gone["host_instance"] is None and gone["status"]["state"] == "failed"
    assert gone["status"]["log_tail"] == sharing.host_closed("person/bob")
    out = slapfed(t, "bob", "request", "gone", URL, "--shared", "--wait", "0.1",
                  code=7)                       # no host open to bob: the wait times out
    assert "front" not in out and front["id"] not in out


def test_open_to_options_are_checked(tenants):
    t = tenants
    out = slapfed(t, "alice", "request", "x", URL, "--open-to", "person/bob",
                  "--open-to-all", code=2)
    assert "--open-to-all" in out
    out = slapfed(t, "alice", "request", "x", URL, "--open-to", "not a principal", code=3)
    assert "open_to[0]" in out
    everyone = request(t, "alice", "everyone", URL, "--open-to-all")
    assert everyone["open_to"] == ["*"]
    assert "open to:    everyone" in slapfed(t, "alice", "show", "everyone")
