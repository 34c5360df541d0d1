"""Usage across delegation with real nodes: masters a and b on loopback (mutual TLS), each
with a real node agent reporting usage every second; a paired with b.

Alice, a customer of a, has a local instance ("here", on a's node), one delegated to b
("there", SLA master=b) and a site on b's CDN front (a shared request a's policy sends
to b). Both instances run a release whose service burns CPU as its partition's user,
writes its own units to ${partition:usage-file}, and whose promise fails for its first
seconds (an incident that opens and closes). Once b's node is stopped (its usage no
longer grows), b's statement for peer a and a's statement for alice agree line by line,
to the unit — CPU, memory, disk, the instance's units, the site's requests, bytes and
cache hits, the incident — and with what b's node measured.
"""
import os
import textwrap
import time

import pytest

from conftest import http_fetch
from slapfed.ca import identity as ids
from slapfed.procs import Proc, slapfed_argv, wait_for
from test_federation_e2e import CDN, Master, pair, started, wait_instance

pytestmark = pytest.mark.timeout(240)

BURN = 0.6                 # CPU seconds each instance's service burns
FAILING = 3.0              # seconds its promise fails after the service started
SITE_REQUESTS = 12

INSTANCE = textwrap.dedent("""\
    [buildout]
    parts = burner flag

    [burner]
    recipe = slapfed:service
    path = ${partition:services}/burner
    command =
        ${partition:python}
        -c
        import sys, time; open(sys.argv[2], 'w').close(); end = time.process_time() + %(burn)s; any(iter(lambda: time.process_time() >= end, True)); open(sys.argv[1], 'a').write('{"resource": "x-jobs", "quantity": 3}\\n'); time.sleep(86400)
        ${partition:usage-file}
        ${partition:run}/started

    [flag]
    recipe = slapfed:promise
    path = ${partition:promises}/warm
    command =
        ${partition:python}
        -c
        import os, sys, time; p = sys.argv[1]; sys.exit(0 if os.path.exists(p) and time.time() - os.path.getmtime(p) > %(failing)s else 1)
        ${partition:run}/started
    """) % {"burn": BURN, "failing": FAILING}

SOFTWARE = textwrap.dedent("""\
    [buildout]
    parts = instance-default

    [instance-default]
    recipe = slapfed:file
    source = ${release:directory}/instance-default.cfg
    path = ${buildout:directory}/instance-default.cfg
    """)


class NodeMaster(Master):
    """A master whose node reports usage every second and checks promises every 0.5 s."""

    def start_node(self):
        import subprocess
        from test_federation_e2e import SITES
        continent, country, lan = SITES[self.name]
        computer = f"{self.name}-node"
        subprocess.run(self._argv(
            "node", "format", "--master", self.url, "--computer", computer, "--partitions",
            "3", "--root", str(self.node_root), "--host", f"{self.name}-h1", "--lan", lan,
            "--country", country, "--continent", continent, "--address-base",
            f"127.{20 + os.getpid() % 200}.{self.octet}.1",
            "--token", self.ca.token_for(computer), "--ca", str(self.data / "ca" / "ca.crt")),
            check=True, capture_output=True, timeout=120)
        self.node_proc = Proc(slapfed_argv("node", "run", "--root", str(self.node_root),
                                           "--interval", "0.3", "--usage-interval", "1",
                                           "--promise-interval", "0.5"),
                              self.base / f"{self.name}-node.log")


def running(inst):
    st = inst.get("status") or {}
    return st.get("state") == "started" and st.get("revision") == inst.get("revision")


def lines(doc, kind):
    """{(release, software type): (usage, incidents, instances)} of the lines measured
    where.kind ``kind``."""
    return {(line["release"], line["software_type"]): (
        {u["resource"]: round(u["quantity"], 6) for u in line["usage"]},
        line["incidents"], line["instances"])
        for line in doc["lines"] if line["where"]["kind"] == kind}


def test_a_customer_s_statement_at_the_origin_agrees_with_the_peer_s(tmp_path_factory,
                                                                      origins):
    t0 = time.monotonic()
    base = tmp_path_factory.mktemp("usage-nodes")
    release = base / "metered"
    release.mkdir()
    (release / "instance-default.cfg").write_text(INSTANCE)
    (release / "software.cfg").write_text(SOFTWARE)
    for path in (release, release / "instance-default.cfg", release / "software.cfg"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    metered = str(release / "software.cfg")
    a, b = NodeMaster(base, "a", 250), NodeMaster(base, "b", 251)
    try:
        for m in (a, b):
            m.args = ("--peer-usage-interval", "0.3")
            m.start()
            m.admin = m.client(ids.admin("ops"), "ops")
            m.start_node()
            m.admin.supply(f"{m.name}-node", metered)
        b.admin.supply("b-node", CDN)
        pair(a, b)
        alice = a.client(ids.person("alice"), "alice")
        b.admin.request("cdn-front", CDN, open_to=["master/a"],
                        parameters={"usage-flush": "0.5"})
        a.admin.set_policy({"rules": [{"release": "*/profiles/cdn/*", "to": ["b"]}]})
        alice.request("here", metered, sla={"continent": "europe"})
        alice.request("there", metered, sla={"master": "b"})
        shop = origins("shop")
        alice.request("shop", CDN, parameters={"site": "shop", "backend": shop.url},
                      shared=True)
        for ref, ready in (("here", running), ("there", running), ("shop", started)):
            wait_instance(alice, ref, ready, timeout=120, what=f"{ref} started")
        url = alice.find("shop")["connection"]["url"]
        sent = {"x-requests": 0, "x-bytes-served": 0, "x-cache-hits": 0}
        for i in range(SITE_REQUESTS):
            status, headers, body = http_fetch(f"{url}page{i % 3}")
            assert status == 200
            sent["x-requests"] += 1
            sent["x-bytes-served"] += len(body)
            sent["x-cache-hits"] += headers["X-Cache"] == "HIT"
        day = time.strftime("%Y-%m-%d", time.gmtime())

        def measured_at_b():
            got = lines(b.admin.statement(day, peer="a"), "computer")
            there = got.get((metered, "default"))
            site = got.get((CDN, "default"))
            return (there and site and there[0].get("cpu_seconds", 0) >= 0.8 * BURN
                    and there[0].get("x-jobs") == 3 and there[1]["count"] == 1
                    and site[0].get("x-requests") == SITE_REQUESTS)
        wait_for(measured_at_b, 60, "b's node measured there and the site", interval=0.3)
        b.stop_node()               # from now on, b's usage stays as it is

        last = {}

        def agree():
            """b's lines unchanged since the previous look, and a's the same."""
            theirs = lines(b.admin.statement(day, peer="a"), "computer")
            mine = lines(alice.statement(day), "peer")
            steady = theirs == last.get("theirs")
            last.update(theirs=theirs, mine=mine)
            return steady and mine == theirs
        try:
            wait_for(agree, 30, "a's statement agreeing with b's", interval=0.5)
        except Exception as exc:
            raise AssertionError(f"last seen: {last}") from exc
        mine, theirs = last["mine"], last["theirs"]
        usage, incidents, count = mine[(metered, "default")]
        assert count == 1 and usage["x-jobs"] == 3
        assert 0.8 * BURN <= usage["cpu_seconds"] < BURN + 3
        assert usage["memory_peak_bytes"] > 1 << 20 and usage["memory_byte_seconds"] > 0
        assert usage["disk_bytes"] > 0 and usage["disk_byte_seconds"] > 0
        # from the first failing check (before the service started, too) to the first pass
        assert incidents["count"] == 1 and FAILING - 1 <= incidents["seconds"] <= 60
        site, _, _ = mine[(CDN, "default")]
        assert {k: site[k] for k in sent} == sent
        # what b's node measured for that instance is what both statements say
        at_b = [i for i in b.admin.list_instances() if i["requester"] == "master/a"
                and i["reference"].endswith(":there")][0]
        measured = {u["resource"]: round(u["quantity"], 6)
                    for u in b.admin.instance_usage(at_b["id"])["totals"]}
        assert measured == usage
        # alice's own statement also shows her local instance, measured at a's node
        local = lines(alice.statement(day), "computer")[(metered, "default")][0]
        assert local.get("x-jobs") == 3 and local.get("cpu_seconds", 0) > 0
        elapsed = time.monotonic() - t0
        print(f"agreed in {elapsed:.1f} s: {mine}")
        assert elapsed < 90, elapsed
    finally:
        for m in (a, b):
            m.stop_node()
        for m in (a, b):
            m.stop()
