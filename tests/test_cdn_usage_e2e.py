"""End to end, a CDN front accounting per site: a real master (mutual TLS), a real node
(``--usage-interval 2``), the cdn release's front (alice's, open to bob) under the node's
supervisord, and two sites of two owners (alice's, bob's), each in front of an origin
started by the test. A known number of requests to each site; the usage-file lines the
front appends by shared instance id reach the master through the node's reports, and
each owner's statement and `slapfed usage` show exactly their own site's requests, bytes
served and cache hits, never the other's."""
import json
import os
import time

import pytest
from conftest import http_fetch, mtls_master_and_node, slapfed_cli

from slapfed.procs import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CDN = os.path.join(REPO, "profiles", "cdn", "software.cfg")
COMPUTER = "cdn-usage-node"
LOAD = {"a": 30, "b": 17}           # requests sent to each site


def person(fed, name):
    """A second tenant on the fixture's master: a CLI environment and a MasterClient."""
    from slapfed.ca import identity as ids
    from slapfed.ca.authority import CertificateAuthority
    from slapfed.client import MasterClient

    made = CertificateAuthority(fed["base"] / "master" / "ca").issue_with_new_key(
        ids.person(name), fed["base"] / name)
    env = dict(os.environ, SLAPFED_CONFIG=str(fed["base"] / f"{name}.json"))
    env.pop("SLAPFED_MASTER", None)
    slapfed_cli("config", "set", "--master", fed["url"], "--identity",
                str(fed["base"] / name), env=env)
    return env, MasterClient(fed["url"], ca=str(made.ca_path), cert=str(made.cert_path),
                             key=str(made.key_path))


def request(env, reference, *args):
    return json.loads(slapfed_cli("request", reference, CDN, *args, "--wait", "120",
                                  "--json", env=env).stdout)


def load(url: str, n: int) -> dict:
    """``n`` GETs of the site at ``url`` over four paths (one miss each, then hits):
    what the client saw, by the front's units."""
    seen = {"x-requests": 0, "x-bytes-served": 0, "x-cache-hits": 0}
    for i in range(n):
        status, headers, body = http_fetch(f"{url}page{i % 4}")
        assert status == 200, body
        seen["x-requests"] += 1
        seen["x-bytes-served"] += len(body)
        seen["x-cache-hits"] += headers["X-Cache"] == "HIT"
    return seen


def units(totals) -> dict:
    return {u["resource"]: u["quantity"] for u in totals if u["resource"].startswith("x-")}


def test_each_site_owner_is_accounted_exactly_their_site_s_requests(tmp_path_factory,
                                                                     origins):
    with mtls_master_and_node(tmp_path_factory.mktemp("cdn-usage"), COMPUTER, partitions=1,
                              address_octet=253, node_args=("--usage-interval", "2")) as fed:
        alice_env, alice = fed["env"], fed["client"]
        bob_env, bob = person(fed, "bob")
        slapfed_cli("supply", CDN, "--computer", COMPUTER, env=fed["admin_env"])
        front = request(alice_env, "cdn-front", "--open-to", "person/bob")
        assert front["status"]["state"] == "started", front["status"]["log_tail"]
        one, two = origins("one"), origins("two")
        site = {"a": request(alice_env, "site-a", "--shared", "--param", "site=a",
                             "--param", f"backend={one.url}"),
                "b": request(bob_env, "site-b", "--shared", "--param", "site=b",
                             "--param", f"backend={two.url}")}
        assert site["a"]["host_instance"] == site["b"]["host_instance"] == front["id"]

        started = time.monotonic()
        sent = {name: load(site[name]["connection"]["url"], n) for name, n in LOAD.items()}
        assert sent["a"]["x-requests"] == 30 and sent["b"]["x-cache-hits"] == 13
        owner = {"a": alice, "b": bob}

        def arrived():
            got = {n: units(owner[n].instance_usage(site[n]["id"])["totals"]) for n in site}
            return got if all(got[n].get("x-requests", 0) >= LOAD[n] for n in site) else None

        got = wait_for(arrived, 60, "both sites' requests at the master", interval=0.5)
        print(f"requests at the master {time.monotonic() - started:.1f}s after the load")
        assert got == {n: sent[n] for n in site}        # exactly: nothing lost, nothing twice

        period = time.strftime("%Y-%m", time.gmtime())
        for name, env, other in (("a", alice_env, "b"), ("b", bob_env, "a")):
            doc = json.loads(slapfed_cli("statement", "--period", period, "--format", "json",
                                         env=env).stdout)
            assert doc["owner"] == f"person/{'alice' if name == 'a' else 'bob'}"
            assert units(doc["totals"]["usage"]) == sent[name], doc
            shown = json.loads(slapfed_cli("usage", f"site-{name}", "--json", env=env).stdout)
            assert units(shown["totals"]) == sent[name]
            # the other owner's site is not theirs to read
            refused = slapfed_cli("usage", site[other]["id"], "--json", env=env, check=False)
            assert (refused.returncode, json.loads(refused.stderr)["error"]["code"]) in (
                (9, "forbidden"), (4, "not_found")), refused.stderr
        # bob's statement is his site's units only: the front's own usage is alice's
        bob_doc = json.loads(slapfed_cli("statement", "--period", period, "--format", "json",
                                         env=bob_env).stdout)
        assert {u["resource"] for u in bob_doc["totals"]["usage"]} == set(sent["b"])
