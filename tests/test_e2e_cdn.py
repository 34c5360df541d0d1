"""End to end, the CDN release: a real master process (gunicorn, FileStorage) over mutual
TLS, a real node process enrolled with a one-time token, real buildout runs, a real
supervisord running slapfed-cdn-front, and origins started by the test; two shared
requests become two sites of one front, each with its own URL, and the front (its
process, its cache) lives through sites coming and going."""
import json
import subprocess
from pathlib import Path

import pytest
from conftest import http_fetch, mtls_master_and_node, slapfed_cli

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
    a, b = client.show(a["id"]), client.show(b["id"])
    assert a["connection"] == {"url": front_url + "a/", "site": "a", "backend": one.url}
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
