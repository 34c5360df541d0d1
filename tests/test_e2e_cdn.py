"""End to end, the CDN release: a real master process (gunicorn, FileStorage) over mutual
TLS, a real node process enrolled with a one-time token, real buildout runs, a real
supervisord running slapfed-cdn-front, and origins started by the test; two shared
requests become two sites of one front, each with its own URL, and the front (its
process, its cache) lives through sites coming and going. A site of another tenant
(bob's, on alice's front) gets its purge key sealed to bob: he opens it with `slapfed
show` and purges his site with it; alice's key does not open it; neither the master's
FileStorage nor its log holds it."""
import json
import subprocess
from pathlib import Path

import pytest
from conftest import http_fetch, mtls_master_and_node, slapfed_cli

from slapfed.core.sealed import is_sealed
from slapfed.procs import slapfed_argv

REPO = Path(__file__).resolve().parents[1]
CDN = str(REPO / "profiles" / "cdn" / "software.cfg")
COMPUTER = "e2e-cdn-node"

pytestmark = pytest.mark.timeout(600)


def cli(*args, env):
    return slapfed_cli(*args, env=env)


def request(env, reference, *args):
    return json.loads(cli("request", reference, CDN, *args, "--wait", "120", "--json",
                          env=env).stdout)


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """A master and a node of two partitions; alice requests, root supplies."""
    with mtls_master_and_node(tmp_path_factory.mktemp("e2e-cdn"), COMPUTER,
                              address_octet=231) as fed:
        yield fed


def test_shared_requests_become_sites_of_one_front(federation, origins):
    fed, env = federation, federation["env"]
    client = fed["client"]
    cli("supply", CDN, "--computer", COMPUTER, env=fed["admin_env"])
    front = request(env, "cdn-front")
    assert front["status"]["state"] == "started", front["status"]["log_tail"]
    front_url = front["connection"]["url"]
    status, _, body = http_fetch(front_url + ".well-known/slapfed-cdn")
    assert status == 200 and json.loads(body)["sites"] == 0

    one, two = origins("one"), origins("two")
    a = request(env, "site-a", "--shared", "--param", "site=a", "--param", f"backend={one.url}")
    status, headers, page_a = http_fetch(a["connection"]["url"] + "page")
    assert status == 200 and headers["X-Cache"] == "MISS"
    assert http_fetch(a["connection"]["url"] + "page")[1]["X-Cache"] == "HIT"
    front_pid = json.loads(http_fetch(front_url + ".well-known/slapfed-cdn")[2])["pid"]

    # a second site: the front follows its table, the node does not restart it, so the
    # first site's cached response survives (served without asking its backend again)
    b = request(env, "site-b", "--shared", "--param", "site=b", "--param", f"backend={two.url}")
    health = json.loads(http_fetch(front_url + ".well-known/slapfed-cdn")[2])
    assert health["pid"] == front_pid and health["sites"] == 2
    status, headers, again = http_fetch(a["connection"]["url"] + "page")
    assert headers["X-Cache"] == "HIT" and again == page_a and one.hits == 1
    # a site the front cannot serve fails, and `request --wait` says why (exit 8)
    refused = subprocess.run(slapfed_argv("request", "site-c", CDN, "--shared", "--param",
                                          "site=c", "--wait", "120", "--json"),
                             capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 8, refused.stderr
    error = json.loads(refused.stdout or refused.stderr)["error"]
    assert error["code"] == "instance_failed"
    assert "cdn-front cannot serve it: parameter 'backend' is required" in error["details"][0]
    broken = client.find("site-c")
    assert a["host_instance"] == b["host_instance"] == front["id"]
    # each shared instance has its own connection parameters, published by the front
    opened_a, a, b = a, client.show(a["id"]), client.show(b["id"])
    public = {k: v for k, v in a["connection"].items() if k != "purge-key"}
    assert public == {"url": front_url + "a/", "site": "a", "backend": one.url}
    # its purge key: sealed by the node to the site's requester, opened by her CLI
    assert is_sealed(a["connection"]["purge-key"])
    assert opened_a["connection"]["purge-key"] and not is_sealed(opened_a["connection"]["purge-key"])
    assert b["connection"]["url"] == front_url + "b/"
    broken = client.show(broken["id"])
    assert "'backend' is required" in broken["connection"]["error"]
    assert broken["status"]["state"] == "failed" and "'backend' is required" in \
        broken["status"]["log_tail"]
    assert client.show(front["id"])["connection"] == {"url": front_url}

    status, headers, body = http_fetch(b["connection"]["url"] + "page")
    assert status == 200 and headers["X-Cache"] == "MISS"
    assert json.loads(body)["backend"] == "two"
    status, headers, again = http_fetch(b["connection"]["url"] + "page")
    assert headers["X-Cache"] == "HIT" and again == body
    assert two.hits == 1
    status, headers, again = http_fetch(a["connection"]["url"] + "page")
    assert headers["X-Cache"] == "HIT" and again == page_a and one.hits == 1

    # destroying a shared request removes its route; the other site keeps serving
    cli("destroy", "site-a", "--wait", "60", env=env)
    assert client.show(a["id"])["connection"] == {}
    applied = client.wait_ready(front["id"], 120)
    assert applied["status"]["state"] == "started", applied["status"]["log_tail"]
    status, _, body = http_fetch(a["connection"]["url"] + "page")
    assert status == 404 and json.loads(body)["error"]["code"] == "unknown_site"
    status, headers, body = http_fetch(b["connection"]["url"] + "page")
    assert status == 200 and json.loads(body)["backend"] == "two"
    assert headers["X-Cache"] == "HIT"                     # b's cache survived a's removal
    assert client.show(b["id"])["connection"]["url"] == front_url + "b/"
    health = json.loads(http_fetch(front_url + ".well-known/slapfed-cdn")[2])
    assert health["pid"] == front_pid and health["sites"] == 1


def test_a_tenant_s_site_secret_is_sealed_to_him_not_to_the_front_s_owner(federation,
                                                                       origins):
    from test_cdn_usage_e2e import person
    from test_zk_e2e import scan

    from slapfed.sealed_values import open_connection, read_key

    fed, alice_env = federation, federation["env"]
    cli("supply", CDN, "--computer", COMPUTER, env=fed["admin_env"])
    front = request(alice_env, "cdn-front", "--open-to", "person/bob")
    bob_env, bob = person(fed, "bob")
    origin = origins("bob")
    site = request(bob_env, "bob-site", "--shared", "--param", "site=z", "--param",
                   f"backend={origin.url}")
    assert site["host_instance"] == front["id"]
    shown = json.loads(cli("show", "bob-site", "--json", env=bob_env).stdout)
    key = shown["connection"]["purge-key"]
    assert shown["sealed"] == ["purge-key"] and not is_sealed(key) and len(key) >= 24
    assert "purge-key = " + key in cli("show", "bob-site", env=bob_env).stdout

    # what the master holds is the sealed text; the front's owner's key does not open it
    raw = bob.show(site["id"])
    assert is_sealed(raw["connection"]["purge-key"])
    _out, problems = open_connection(raw, read_key(str(fed["base"] / "alice" / "identity.key")))
    assert set(problems) == {"purge-key"}

    # the key does what it is for: bob purges his site at the front
    url = site["connection"]["url"]
    assert http_fetch(url + "p")[1]["X-Cache"] == "MISS"
    assert http_fetch(url + "p")[1]["X-Cache"] == "HIT"
    purge = front["connection"]["url"] + ".well-known/slapfed-cdn/purge/z"
    assert http_fetch(purge, "POST", data=b"", headers={"X-Purge-Key": "guess"})[0] == 403
    status, _, body = http_fetch(purge, "POST", data=b"", headers={"X-Purge-Key": key})
    assert status == 200 and json.loads(body)["purged"] == 1
    assert http_fetch(url + "p")[1]["X-Cache"] == "MISS"

    base = fed["base"]
    assert list((base / "master").rglob("*.fs")), "the FileStorage is where it was looked for"
    assert scan([base / "master", base / "master.log"], [key]) == []
    root = fed["root"]
    assert scan([root / "var" / "state.json", root / "var" / "desired.json",
                 base / "node.log"], [key]) == []
    assert scan([root], [key]) != []              # where it is: the front's partition
