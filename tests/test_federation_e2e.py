"""End to end, federation: three real masters on loopback (a, b, c) over mutual TLS, each
with a real node; a is paired with b, b with c.

- a request at a whose SLA only c can satisfy goes a -> b -> c, its connection
  parameters come back to a, asking again duplicates nothing, destroying it at a tears
  it down at c;
- b is stopped while a has delegations in flight: a's instances say why, nothing is
  lost; b comes back on the same address and everything converges, with no duplicate.
"""
import os
import time
from pathlib import Path

import pytest
import requests
from conftest import http_fetch

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.client import MasterClient
from slapfed.procs import Proc, slapfed_argv, wait_for

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "profiles" / "hello" / "software.cfg")
CDN = str(REPO / "profiles" / "cdn" / "software.cfg")

pytestmark = pytest.mark.timeout(600)

SITES = {"a": ("europe", "fr", "par"), "b": ("north-america", "us", "nyc"),
         "c": ("asia", "jp", "tyo")}


class Master:
    def __init__(self, base: Path, name: str, octet: int):
        self.base, self.name, self.octet = base, name, octet
        self.data = base / name
        self.proc = None
        self.url = None
        self.node_proc = None
        self.node_root = base / f"{name}-node"
        self.listen = "127.0.0.1:0"
        self.ns = None          # a netns_lab Namespace to run the master and its node in
        self.args: tuple[str, ...] = ()     # more `master serve` options (e.g. --lease)

    def _argv(self, *args: str) -> list[str]:
        argv = slapfed_argv(*args)
        return self.ns.argv(argv) if self.ns else argv

    def start(self):
        self.proc = Proc(self._argv("master", "serve", "--data", str(self.data), "--name",
                                    self.name, "--listen", self.listen,
                                    "--peer-retry-max", "1", *self.args),
                         self.base / f"{self.name}.log")
        url_file = self.data / "master.url"
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                 f"master {self.name} URL", proc=self.proc)
        self.url = url_file.read_text().strip()
        self.listen = self.url.split("://", 1)[1]       # restart on the same address

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    @property
    def ca(self) -> CertificateAuthority:
        return CertificateAuthority(self.data / "ca")

    def client(self, identity, where: str) -> MasterClient:
        d = self.base / f"{self.name}-{where}"
        if not (d / "identity.crt").exists():
            self.ca.issue_with_new_key(identity, d)
        return MasterClient(self.url, ca=str(d / "ca.crt"), cert=str(d / "identity.crt"),
                            key=str(d / "identity.key"))

    def start_node(self):
        import subprocess
        continent, country, lan = SITES[self.name]
        computer = f"{self.name}-node"
        subprocess.run(self._argv(
            "node", "format", "--master", self.url, "--computer", computer, "--partitions",
            "3", "--root", str(self.node_root), "--host", f"{self.name}-h1", "--lan", lan,
            "--country", country, "--continent", continent, "--address-base",
            f"127.{20 + os.getpid() % 200}.{self.octet}.1",
            "--token", self.ca.token_for(computer), "--ca", str(self.data / "ca" / "ca.crt")),
            check=True, capture_output=True, timeout=120)
        self.node_proc = Proc(self._argv("node", "run", "--root", str(self.node_root),
                                         "--interval", "0.3"),
                              self.base / f"{self.name}-node.log")
        self.admin.supply(computer, HELLO)

    def stop_node(self):
        import subprocess
        if self.node_proc is not None:
            self.node_proc.stop()
        if (self.node_root / "node.json").exists():
            subprocess.run(slapfed_argv("node", "stop", "--root", str(self.node_root)),
                           capture_output=True, timeout=60)


def pair(delegating: Master, serving: Master):
    """``slapfed peer invite`` on the serving master, ``peer add`` on the delegating one,
    through the same API calls the CLI makes."""
    token = serving.admin.create_master_token(delegating.name)
    return delegating.admin.add_peer({"name": serving.name, "url": serving.url,
                                      "ca_certificate": token["ca_certificate"],
                                      "token": token["token"]})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("federation")
    masters = {n: Master(base, n, 230 + i) for i, n in enumerate("abc")}
    try:
        for m in masters.values():
            m.start()
            m.admin = m.client(ids.admin("ops"), "ops")
        for m in masters.values():
            m.start_node()
        pair(masters["b"], masters["c"])          # b first: a then learns what b reaches
        pair(masters["a"], masters["b"])
        alice = masters["a"].client(ids.person("alice"), "alice")
        yield {"m": masters, "alice": alice, "base": base}
    finally:
        for m in masters.values():
            m.stop_node()
        for m in masters.values():
            m.stop()


def wait_instance(client, reference, predicate, timeout=90, what="instance"):
    last = {}

    def check():
        nonlocal last
        try:
            last = client.find(reference)
        except Exception as exc:  # noqa: BLE001 - a master restarting
            last = {"error": str(exc)}
            return False
        return predicate(last)
    try:
        wait_for(check, timeout, what)
    except Exception as exc:
        raise AssertionError(f"{what}: last seen {last}") from exc
    return last


def started(inst):
    st = inst.get("status") or {}
    return st.get("state") == "started" and st.get("revision") == inst.get("revision") \
        and inst.get("connection", {}).get("url")


def instances_at(master: Master, requester: str) -> list[dict]:
    return [i for i in master.admin.list_instances() if i["requester"] == requester]


def test_peers_show_their_links(world):
    a = world["m"]["a"]
    peers = {p["name"]: p for p in a.admin.list_peers()}
    assert peers["b"]["paired"] and peers["b"]["principal"] == "master/a"
    reach = peers["b"]["summary"]["reach"]
    assert "c" in reach                       # b told a it reaches c
    assert a.admin.summary()["name"] == "a"


def test_dry_run_prints_the_route_and_every_peer_considered(world):
    """`slapfed request --dry-run` (text) says where a request would be delegated, and
    `topology explain --json` gives the same route; nothing is written."""
    import json
    import subprocess
    a = world["m"]["a"]
    d = world["base"] / "a-ops"
    conf = world["base"] / "a-cli.json"
    conf.write_text(json.dumps({"master": a.url, "ca": str(d / "ca.crt"),
                                "cert": str(d / "identity.crt"), "key": str(d / "identity.key")}))
    env = {**os.environ, "SLAPFED_CONFIG": str(conf)}
    before = len(a.admin.list_instances())
    text = subprocess.run(slapfed_argv("request", "far-away", HELLO, "--sla", "continent=asia",
                                       "--dry-run"), env=env, capture_output=True, text=True,
                          timeout=60)
    assert text.returncode == 0, text.stderr
    assert "route: delegated to b" in text.stdout
    assert "peer b: " in text.stdout and "nothing written (dry run)" in text.stdout
    shown = subprocess.run(slapfed_argv("topology", "explain", "far-away", HELLO, "--sla",
                                        "continent=asia", "--json"), env=env,
                           capture_output=True, text=True, timeout=60)
    route = json.loads(shown.stdout)["route"]
    assert route["kind"] == "delegate" and route["peers"][0] == "b"
    assert len(a.admin.list_instances()) == before


def test_local_fit_stays_local(world):
    alice = world["alice"]
    inst = alice.request("near", HELLO, sla={"continent": "europe"})
    assert inst["delegation"] is None and inst["placement"]["computer"] == "a-node"
    done = wait_instance(alice, "near", started, what="near started")
    assert requests.get(done["connection"]["url"], timeout=5).status_code == 200


def test_two_hops_there_and_back_and_destroyed_at_the_far_end(world):
    a, b, c = (world["m"][n] for n in "abc")
    alice = world["alice"]
    t0 = time.monotonic()
    inst = alice.request("far", HELLO, parameters={"greeting": "konnichiwa"},
                         sla={"continent": "asia"})
    assert inst["delegation"]["peer"] == "b"
    assert inst["delegation"]["remote_reference"] == "a:person/alice:far"
    done = wait_instance(alice, "far", started, what="far started at a")
    elapsed = time.monotonic() - t0
    chain = done["delegation"]["chain"]
    assert [h.get("master") for h in chain[:2]] == ["b", "c"]
    assert chain[2]["computer"] == "c-node" and chain[2]["continent"] == "asia"
    # slapfed topology where at a: the chain and the far computer's sites
    from slapfed.topology import files as topology_files, graph as topology_graph
    view = a.admin.topology()
    w = topology_graph.build(topology_files.Topology.from_json(view["topology"]),
                             view["live"]).where("far", "person/alice")
    assert w["delegation"] == ["b", "c"] and w["master"] == "c"
    assert (w["computer"], w["continent"]) == ("c-node", "asia")
    body = requests.get(done["connection"]["url"], timeout=5).json()
    assert "konnichiwa" in str(body)
    # one instance at b (requested by a), one at c (requested by b)
    assert len(instances_at(b, "master/a")) == 1
    at_c = instances_at(c, "master/b")
    assert [i["reference"] for i in at_c] == ["b:master/a:a:person/alice:far"]
    # asking again changes nothing and duplicates nothing
    again = alice.request("far", HELLO, parameters={"greeting": "konnichiwa"},
                          sla={"continent": "asia"})
    assert again["id"] == done["id"]
    assert len(instances_at(c, "master/b")) == 1
    # a parameter change flows to c
    alice.request("far", HELLO, parameters={"greeting": "ohayo"}, sla={"continent": "asia"})
    changed = wait_instance(alice, "far", lambda i: started(i) and "ohayo" in str(
        requests.get(i["connection"]["url"], timeout=5).json()), what="far re-instantiated")
    assert changed["revision"] > done["revision"]
    # destroyed at a -> torn down at c, its partition freed
    alice.destroy(done["id"])
    wait_instance(alice, "far", lambda i: i["status"]["state"] == "destroyed",
                  what="far destroyed at a")
    far_c = c.admin.list_instances(include_destroyed=True)
    far_c = [i for i in far_c if i["reference"] == at_c[0]["reference"]][0]
    assert far_c["status"]["state"] == "destroyed" and far_c["placement"] is None
    assert elapsed < 60


def test_a_stock_slap_request_at_a_is_answered_from_two_hops_away(world):
    """slapos.slap's stock client over mutual TLS at a, with an SLA only c satisfies: the
    request is delegated a -> b -> c like a native one; a answers 408 (not ready) until
    the chain reaches c's partition, then the far computer, partition, address and the
    connection parameters relayed back."""
    slap_lib = pytest.importorskip("slapos.slap")
    from slapos.slap import ResourceNotReady
    a, c = world["m"]["a"], world["m"]["c"]
    d = world["base"] / "a-alice"           # alice's identity at a (the world fixture's)
    conn = slap_lib.slap()
    conn.initializeConnection(a.url + "/slap/", key_file=str(d / "identity.key"),
                              cert_file=str(d / "identity.crt"))
    order = conn.registerOpenOrder()

    def ask():
        return order.request(HELLO, "far-slap", partition_parameter_kw={"greeting": "annyeong"},
                             filter_kw={"continent": "asia"})
    first = ask()                    # created, delegated, not placed anywhere yet: 408
    with pytest.raises(ResourceNotReady):
        first.getId()
    inst = world["alice"].find("far-slap")
    assert inst["delegation"]["peer"] == "b" and inst["requester"] == "person/alice"
    answers = []

    def answered():
        part = ask()
        answers.append(part)
        return (getattr(part, "_partition_id", None)
                and part.getConnectionParameterDict().get("url"))
    wait_for(answered, 90, "a's SLAP answer from c")
    part = answers[-1]
    end = world["alice"].find("far-slap")["delegation"]["chain"][-1]
    at_c = [i for i in c.admin.list_instances() if i["reference"].endswith(":far-slap")]
    assert len(at_c) == 1
    assert (part.slap_computer_id, part.getId()) == ("c-node", end["partition"])
    assert part.getId() == at_c[0]["placement"]["partition"]
    assert part.ip_list == [(end["partition"], at_c[0]["placement"]["address"])]
    assert part.getInstanceParameterDict()["slap_computer_id"] == "c-node"
    assert part.getInstanceGuid() == inst["id"]
    url = part.getConnectionParameterDict()["url"]
    assert "annyeong" in str(requests.get(url, timeout=5).json())
    order.request(HELLO, "far-slap", state="destroyed")
    wait_instance(world["alice"], "far-slap",
                  lambda i: i["status"]["state"] == "destroyed", what="far-slap destroyed")


def test_a_shared_cdn_request_at_a_is_served_by_bs_front(world, origins):
    a, b = world["m"]["a"], world["m"]["b"]
    alice = world["alice"]
    b.admin.supply("b-node", CDN)
    # b's operator opens its front to what a delegates (a's requests arrive as master/a)
    b.admin.request("cdn-front", CDN, open_to=["master/a"])
    front = wait_instance(b.admin, "cdn-front", started, what="b's cdn front started")
    # a's policy: every request of the cdn release goes to b
    a.admin.set_policy({"rules": [{"release": "*/profiles/cdn/*", "to": ["b"]}]})
    shop = origins("shop")
    inst = alice.request("shop", CDN, parameters={"site": "shop", "backend": shop.url},
                         shared=True)
    assert inst["delegation"]["peer"] == "b" and "rule 1" in inst["delegation"]["reason"]
    done = wait_instance(alice, "shop", started, what="shop's site published back at a")
    assert done["connection"]["url"] == front["connection"]["url"] + "shop/"
    assert done["delegation"]["chain"][-1] == {
        "host_instance": front["id"], "computer": "b-node",
        "partition": front["placement"]["partition"],
        "address": front["placement"]["address"]}
    status, headers, body = http_fetch(done["connection"]["url"] + "page")
    assert status == 200 and headers["X-Cache"] == "MISS" and b"shop" in body
    status, headers, _ = http_fetch(done["connection"]["url"] + "page")
    assert status == 200 and headers["X-Cache"] == "HIT" and shop.hits == 1
    # at b it is one shared instance of a's, attached to the front
    at_b = [i for i in instances_at(b, "master/a") if i["reference"] == "a:person/alice:shop"]
    assert len(at_b) == 1 and at_b[0]["host_instance"] == front["id"]
    assert at_b[0]["host_placement"] == {"computer": "b-node",
                                         "partition": front["placement"]["partition"],
                                         "address": front["placement"]["address"]}
    # the stock client at a asks for a shared instance only b serves: 408 until b's front
    # publishes it, then the far front's computer and partition and the relayed URL
    slap_lib = pytest.importorskip("slapos.slap")
    from slapos.slap import ResourceNotReady
    d = world["base"] / "a-alice"
    conn = slap_lib.slap()
    conn.initializeConnection(a.url + "/slap/", key_file=str(d / "identity.key"),
                              cert_file=str(d / "identity.crt"))
    order = conn.registerOpenOrder()

    def ask():
        return order.request(CDN, "shop-slap", shared=True,
                             partition_parameter_kw={"site": "shop-slap",
                                                     "backend": shop.url})
    with pytest.raises(ResourceNotReady):
        ask().getId()
    answers = []

    def answered():
        try:
            part = ask()
            part.getId()
        except ResourceNotReady:
            return False
        answers.append(part)
        return part.getConnectionParameterDict().get("url")
    wait_for(answered, 90, "a's SLAP answer for the shared instance b serves")
    part = answers[-1]
    assert (part.slap_computer_id, part.getId()) == ("b-node",
                                                     front["placement"]["partition"])
    assert part.getConnectionParameterDict()["url"] == front["connection"]["url"] + \
        "shop-slap/"
    assert part.getInstanceParameterDict()["site"] == "shop-slap"
    assert alice.find("shop-slap")["delegation"]["peer"] == "b"
    status, _headers, body = http_fetch(part.getConnectionParameterDict()["url"] + "page")
    assert status == 200 and b"shop" in body


def test_peer_outage_then_convergence_without_duplicates(world):
    a, b, c = (world["m"][n] for n in "abc")
    alice = world["alice"]
    alice.request("steady", HELLO, sla={"continent": "asia"})
    wait_instance(alice, "steady", started, what="steady started")
    b.stop()
    # a delegation made while b is down: durable at a, pending with the reason
    inst = alice.request("late", HELLO, sla={"continent": "asia"})
    assert inst["delegation"]["peer"] == "b"
    late = wait_instance(alice, "late", lambda i: i["delegation"]["state"] == "unreachable",
                         what="late unreachable")
    assert late["status"]["state"] == "pending"
    assert "unreachable" in late["delegation"]["reason"]
    steady = wait_instance(alice, "steady", lambda i: i["status"]["state"] == "unknown",
                           what="steady unknown")
    assert "b" in steady["status"]["log_tail"]
    peers = {p["name"]: p for p in a.admin.list_peers()}
    assert peers["b"]["link"] == "down" and peers["b"]["pending_forwards"] >= 1
    time.sleep(2)
    b.start()
    t0 = time.monotonic()
    wait_instance(alice, "late", started, what="late started after b came back")
    wait_instance(alice, "steady", started, what="steady started again")
    converged = time.monotonic() - t0
    refs = [i["reference"] for i in instances_at(c, "master/b")]
    assert refs.count("b:master/a:a:person/alice:late") == 1
    assert refs.count("b:master/a:a:person/alice:steady") == 1
    assert len([i for i in instances_at(b, "master/a") if i["reference"].endswith("late")]) == 1
    assert converged < 60
