"""The federation graph: indexes, locality relations, where, failure domains, master paths."""
import pytest

from slapfed.core.errors import InvalidInput, NotFound
from slapfed.topology import files, graph

TOPO_TEXT = """
[sites.europe.fr.par-1]
hosts = ["par-1-a", "par-1-b"]
[sites.europe.fr.par-2]
hosts = ["par-2-a"]
[sites.europe.de.fra-1]
hosts = ["fra-1-a"]
[sites.asia.jp.tyo-1]
hosts = ["tyo-1-a"]

[[masters]]
name = "eu"
site = "par-1-a"
[[masters]]
name = "de"
site = "fra-1"
[[masters]]
name = "jp"
site = "tyo-1-a"
[[masters]]
name = "lonely"
site = "par-2"

[[computers]]
id = "declared-only"
site = "par-2-a"
master = "de"
partitions = 4

[[links]]
from = "eu"
to = "de"
latency_ms = 10
cost = 1
trust = "full"
[[links]]
from = "de"
to = "jp"
latency_ms = 200
cost = 5
trust = "observe"
[[links]]
from = "eu"
to = "jp"
latency_ms = 250
cost = 2
trust = "delegate"
"""


def comp(cid, parts=2, **loc):
    return {"id": cid, **{k: loc.get(k) for k in ("host", "lan", "country", "continent")},
            "labels": {}, "last_contact": None,
            "partitions": [{"id": f"p{i}", "address": f"10.0.0.{i + 1}", "port_base": 20000,
                            "port_count": 10, "instance": None} for i in range(parts)]}


def inst(iid, ref, computer=None, partition=None, parent=None, shared=False, host=None,
         requester="alice", state="started"):
    return {"id": iid, "reference": ref, "requester": requester, "parent": parent,
            "children": [], "shared": shared, "host_instance": host,
            "software_url": "/r/software.cfg", "software_type": "default",
            "requested_state": state, "state": "started",
            "placement": None if computer is None else
            {"computer": computer, "partition": partition, "address": "10.0.0.1"}}


def live_state():
    computers = [
        comp("a1", host="par-1-a", lan="par-1", country="fr", continent="europe"),
        comp("a2", host="par-1-a", lan="par-1", country="fr", continent="europe"),
        comp("b1", host="par-1-b", lan="par-1", country="fr", continent="europe"),
        comp("c1", host="par-2-a", lan="par-2", country="fr", continent="europe"),
        comp("d1", host="fra-1-a", lan="fra-1", country="de", continent="europe"),
        comp("j1", host="tyo-1-a", lan="tyo-1", country="jp", continent="asia"),
        comp("x1", lan="lab", country="xx"),            # sites only the live state knows
        comp("n1"),                                      # no locality at all
    ]
    instances = [
        inst("i-root", "db-1", "a1", "p0"),
        inst("i-web", "web-1", "a2", "p0", parent="i-root"),
        inst("i-rep", "db-2", "d1", "p0", parent="i-root"),
        inst("i-cdn", "site-1", shared=True, host="i-web", parent="i-web"),
        inst("i-wait", "web-2", parent="i-root"),                       # not placed
        inst("i-solo", "solo", "j1", "p1", requester="bob"),
        inst("i-dup", "solo", "b1", "p0", requester="carol"),
    ]
    for i in instances:
        if i["placement"]:
            for c in computers:
                if c["id"] == i["placement"]["computer"]:
                    for p in c["partitions"]:
                        if p["id"] == i["placement"]["partition"]:
                            p["instance"] = i["id"]
    for i in instances:
        if i["parent"]:
            next(p for p in instances if p["id"] == i["parent"])["children"].append(i["id"])
    return {"master": "eu", "computers": computers, "instances": instances}


@pytest.fixture(scope="module")
def fed():
    topo, problems = files.parse([("t.toml", TOPO_TEXT)])
    assert problems == []
    return graph.build(topo, live_state())


def test_nodes_of_every_kind_and_edges_of_containment(fed):
    g = fed.graph
    kinds = {d["kind"] for _, d in g.nodes(data=True)}
    assert kinds == set(graph.KINDS)
    assert g.edges["continent:europe", "country:fr"]["kind"] == graph.CONTAINS
    assert g.edges["host:par-1-a", "computer:a1"]["kind"] == graph.CONTAINS
    assert g.edges["computer:a1", "partition:a1/p0"]["kind"] == graph.CONTAINS
    assert g.edges["partition:a1/p0", "instance:i-root"]["kind"] == graph.RUNS
    assert g.edges["instance:i-web", "instance:i-cdn"]["kind"] == graph.HOSTS_SHARED
    assert g.edges["instance:i-web", "instance:i-cdn"]["requested"] is True
    assert g.edges["instance:i-root", "instance:i-web"]["kind"] == graph.REQUESTED
    assert g.edges["master:eu", "computer:a1"]["kind"] == graph.MANAGES
    assert g.edges["master:eu", "host:par-1-a"]["kind"] == graph.LOCATED_AT
    link = g.edges["master:jp", "master:de"]
    assert (link["kind"], link["latency_ms"], link["trust"]) == (graph.LINK, 200, "observe")
    # live-only sites are added, marked undeclared; a computer without locality floats
    assert g.nodes["lan:lab"]["declared"] is False
    assert g.has_edge("country:xx", "lan:lab")
    assert g.in_degree("computer:n1") == 1       # only its master manages it
    assert g.nodes["master:eu"]["local"] is True


def test_declared_and_registered_computers_are_merged(fed):
    assert fed.computers["declared-only"]["registered"] is False
    assert fed.computers["declared-only"]["master"] == "de"
    assert fed.computers["a1"]["registered"] and not fed.computers["a1"]["declared"]
    assert fed.graph.nodes["computer:declared-only"]["expected_partitions"] == 4


@pytest.mark.parametrize("level, name, expected", [
    ("host", "par-1-a", ["a1", "a2"]),
    ("lan", "par-1", ["a1", "a2", "b1"]),
    ("country", "fr", ["a1", "a2", "b1", "c1", "declared-only"]),
    ("continent", "asia", ["j1"]),
    ("lan", "nowhere", []),
], ids=["host", "lan", "country", "continent", "unknown"])
def test_computers_by_site_come_from_the_index(fed, level, name, expected):
    assert sorted(fed.computers_in(level, name)) == expected


@pytest.mark.parametrize("a, b, relation", [
    ("a1", "a1", "host"),
    ("a1", "a2", "host"),
    ("a1", "b1", "lan"),
    ("a1", "c1", "country"),
    ("a1", "d1", "continent"),
    ("a1", "j1", "none"),
    ("x1", "n1", "none"),
    ("declared-only", "c1", "host"),
], ids=["same-computer", "same-host", "same-lan", "same-country", "same-continent",
        "different-continents", "unknown-locality", "declared-and-registered"])
def test_relation_of_two_computers(fed, a, b, relation):
    assert fed.relation(a, b) == relation
    assert fed.relation(b, a) == relation


def test_relation_of_an_unknown_computer_is_not_found(fed):
    with pytest.raises(NotFound):
        fed.relation("a1", "zz")


@pytest.mark.parametrize("ref, requester, expected", [
    ("db-1", None, {"computer": "a1", "partition": "p0", "host": "par-1-a", "lan": "par-1",
                    "country": "fr", "continent": "europe", "master": "eu", "placed": True}),
    ("i-rep", None, {"computer": "d1", "country": "de"}),
    ("site-1", None, {"computer": "a2", "shared": True,
                      "host_instance": {"id": "i-web", "reference": "web-1"}}),
    ("web-2", None, {"placed": False, "computer": None, "lan": None}),
    ("solo", "bob", {"computer": "j1", "partition": "p1", "continent": "asia"}),
], ids=["by-reference", "by-id", "shared-runs-in-its-host", "not-placed", "by-requester"])
def test_where(fed, ref, requester, expected):
    found = fed.where(ref, requester)
    assert {k: found[k] for k in expected} == expected
    assert found["delegation"] == []


@pytest.mark.parametrize("ref, error", [
    ("nothing", NotFound), ("solo", InvalidInput),
], ids=["unknown", "ambiguous-reference"])
def test_where_refuses(fed, ref, error):
    with pytest.raises(error):
        fed.where(ref)


def test_failure_domains_of_an_instance_tree(fed):
    fd = fed.failure_domains("web-1")          # any member finds the whole tree
    assert fd["root"]["reference"] == "db-1"
    assert fd["instances"] == 5 and fd["placed"] == 4 and fd["unplaced"] == ["web-2"]
    hosts = {d["name"]: d["count"] for d in fd["domains"]["host"]}
    assert hosts == {"par-1-a": 3, "fra-1-a": 1}          # db-1, web-1, site-1 | db-2
    lans = {d["name"]: d["instances"] for d in fd["domains"]["lan"]}
    assert lans["par-1"] == ["db-1", "site-1", "web-1"]
    assert fd["domains"]["continent"] == [{"name": "europe", "count": 4, "share": 1.0,
                                           "instances": ["db-1", "db-2", "site-1", "web-1"]}]
    assert fd["survives"] == {"computer": True, "host": True, "lan": True, "country": True,
                              "continent": False}


@pytest.mark.parametrize("a, b, min_trust, masters, latency, weakest", [
    ("eu", "jp", None, ["eu", "de", "jp"], 210, "observe"),
    ("jp", "eu", None, ["jp", "de", "eu"], 210, "observe"),
    ("eu", "jp", "delegate", ["eu", "jp"], 250, "delegate"),
    ("de", "jp", "delegate", ["de", "eu", "jp"], 260, "delegate"),
    ("eu", "de", "full", ["eu", "de"], 10, "full"),
    ("eu", "eu", None, ["eu"], 0, None),
], ids=["lowest-latency-detour", "reverse", "min-trust-direct", "min-trust-detour",
        "full-trust", "itself"])
def test_path_between_masters(fed, a, b, min_trust, masters, latency, weakest):
    p = fed.path(a, b, min_trust)
    assert p["masters"] == masters
    assert p["latency_ms"] == latency
    assert p["weakest_trust"] == weakest
    assert len(p["hops"]) == len(masters) - 1


@pytest.mark.parametrize("a, b, min_trust, error, words", [
    ("eu", "mars", None, NotFound, "no master 'mars'"),
    ("eu", "lonely", None, NotFound, "no path"),
    ("de", "jp", "full", NotFound, "trust full"),
    ("eu", "de", "total", InvalidInput, "trust must be"),
], ids=["unknown-master", "unlinked-master", "no-path-at-that-trust", "bad-trust"])
def test_path_refusals(fed, a, b, min_trust, error, words):
    with pytest.raises(error) as info:
        fed.path(a, b, min_trust)
    assert words in info.value.message


def test_build_without_topology_or_live_state():
    empty = graph.build()
    assert empty.graph.number_of_nodes() == 0
    only_live = graph.build(None, {"master": None, "computers": [comp("a", lan="l")],
                                   "instances": []})
    assert "lan:l" in only_live.graph and "computer:a" in only_live.graph


def test_the_indexes_answer_at_scale_without_scanning():
    import time
    computers = [comp(f"c{i}", parts=1, host=f"h{i}", lan=f"lan{i % 100}",
                      country=f"k{i % 10}", continent="europe") for i in range(10_000)]
    fed = graph.build(None, {"master": "m", "computers": computers, "instances": []})
    t = time.perf_counter()
    for i in range(1000):
        fed.computers_in("lan", f"lan{i % 100}")
    assert (time.perf_counter() - t) / 1000 < 0.001
    assert len(fed.computers_in("lan", "lan7")) == 100


def _peer(name, link="up", trust="delegate", latency=None):
    return {"name": name, "url": f"https://{name}.example:8470", "trust": trust,
            "latency_ms": latency, "cost": 1.0, "link": link}


def test_live_peer_links_make_paths_the_files_never_declared():
    """A child master paired with its parent, or any paired peer, is a link of the
    masters' graph: `topology path` finds it (the demo's root and child)."""
    fed = graph.build(None, {"master": "demo-root", "computers": [], "instances": [],
                             "masters": [{"name": "demo-child", "url": "https://c:1",
                                          "instance": "i-1", "reference": "child-master"}],
                             "peers": [_peer("demo-child")]})
    p = fed.path("demo-root", "demo-child")
    assert p["masters"] == ["demo-root", "demo-child"]
    assert p["hops"][0]["state"] == "up" and p["hops"][0]["declared"] is False
    from slapfed.topology import report
    assert "(paired, not in the topology files)" in report.path_text(p)


def test_a_link_the_live_state_shows_down_is_routed_around(fed):
    """eu-jp is declared; the live state of eu says its peer jp is down: the path goes
    through de; at trust delegate there is no way around, and the refusal names the link
    that is down."""
    live = {"master": "eu", "computers": [], "instances": [],
            "peers": [_peer("jp", link="down"), _peer("de")]}
    fed2 = graph.build(fed.topology, live)
    p = fed2.path("eu", "jp")
    assert p["masters"] == ["eu", "de", "jp"]
    assert [h["state"] for h in p["hops"]] == ["up", None]     # de-jp: not eu's peer
    with pytest.raises(NotFound) as info:
        fed2.path("eu", "jp", "delegate")
    assert info.value.message.endswith("(links down now: eu-jp)")
