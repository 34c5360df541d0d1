"""The pure routing core: rules, the SLA key master, automatic delegation, loops and hops."""
import pytest

from slapfed.core.errors import InvalidInput
from slapfed.core.sla import parse_sla
from slapfed.federation import routing as r

URL = "https://releases.example/web/software.cfg"
CDN = "https://releases.example/cdn/software.cfg"


def peer(name, localities=(), software=(URL,), reach=(), hosting=(), **kw):
    return r.PeerView.from_summary(name, {
        "localities": list(localities), "software": list(software), "free_partitions": 5,
        "hosting": [list(h) for h in hosting], "reach": list(reach)}, **kw)


ASIA = {"host": "t1", "lan": "tyo", "country": "jp", "continent": "asia"}
EU = {"host": "p1", "lan": "par", "country": "fr", "continent": "europe"}


def req(sla=None, url=URL, shared=False, chain=("a",), depth=8):
    return r.RouteRequest(url, "default", shared, parse_sla(sla), chain, depth)


def never(*_):
    raise AssertionError("local fit must not be asked")


def test_no_peers_serves_here_without_asking():
    route = r.route(req(), "a", r.DEFAULT_POLICY, [], never)
    assert route.kind == r.LOCAL


def test_local_fit_wins_over_automatic_delegation():
    route = r.route(req({"continent": "asia"}), "a", r.DEFAULT_POLICY,
                    [peer("b", [ASIA])], lambda: None)
    assert route.kind == r.LOCAL


def test_an_sla_only_a_peer_satisfies_goes_there_even_two_hops_away():
    b = peer("b", [EU], reach=[{"master": "c", "hops": 1, "localities": [ASIA],
                                "software": [URL], "free_partitions": 3}])
    d = peer("d", [EU])
    route = r.route(req({"continent": "asia"}), "a", r.DEFAULT_POLICY, [d, b],
                    lambda: "no computer in asia")
    assert route.kind == r.DELEGATE and route.peers == ("b",)
    assert any(c["peer"] == "d" and "asia" in c["verdict"] for c in route.considered)


def test_rules_send_a_release_to_their_peers_in_order_with_fallbacks():
    policy = r.parse_policy({"rules": [{"release": "*/cdn/*", "to": ["b", "c"]}]})
    route = r.route(req(url=CDN, shared=True), "a", policy, [peer("b"), peer("c")], never)
    assert route.peers == ("b", "c") and "rule 1" in route.reason
    nofall = r.parse_policy({"rules": [{"release": "*/cdn/*", "to": ["b", "c"],
                                        "fallback": False}]})
    assert r.route(req(url=CDN), "a", nofall, [peer("b"), peer("c")], never).peers == ("b",)


def test_a_no_local_fit_rule_asks_and_stays_local_when_it_fits():
    policy = r.parse_policy({"rules": [{"to": ["b"], "when": "no-local-fit"}]})
    assert r.route(req(), "a", policy, [peer("b")], lambda: None).kind == r.LOCAL
    assert r.route(req(), "a", policy, [peer("b")], lambda: "full").peers == ("b",)


def test_the_sla_key_master_names_a_peer_or_one_it_reaches():
    b = peer("b", reach=[{"master": "c", "hops": 1}])
    assert r.route(req({"master": "b"}), "a", r.DEFAULT_POLICY, [b], never).peers == ("b",)
    assert r.route(req({"master": "c"}), "a", r.DEFAULT_POLICY, [b], never).peers == ("b",)
    far = r.route(req({"master": "z"}), "a", r.DEFAULT_POLICY, [b], never)
    assert far.kind == r.LOCAL and "no usable peer" in far.reason


def test_loops_unpaired_observers_and_the_hop_limit_exclude_peers():
    peers = [peer("b", [ASIA]), peer("c", [ASIA], paired=False),
             peer("d", [ASIA], trust="observe")]
    route = r.route(req({"continent": "asia"}, chain=("b", "a")), "a", r.DEFAULT_POLICY,
                    peers, lambda: "none here")
    assert route.kind == r.LOCAL
    verdicts = {c["peer"]: c["verdict"] for c in route.considered}
    assert "loop" in verdicts["b"] and "not paired" in verdicts["c"] and "trust" in verdicts["d"]
    deep = r.route(req({"continent": "asia"}, chain=("x", "y", "a"), depth=3), "a",
                   r.DEFAULT_POLICY, [peer("e", [ASIA])], lambda: "none")
    assert deep.kind == r.LOCAL and "hop limit" in deep.considered[0]["verdict"]


def test_shared_requests_need_a_peer_hosting_the_release():
    with_host = peer("b", hosting=[(CDN, "default")])
    without = peer("c", software=(CDN,))
    route = r.route(req(url=CDN, shared=True), "a", r.DEFAULT_POLICY, [without, with_host],
                    lambda: "no host here")
    assert route.peers == ("b",)


@pytest.mark.parametrize("doc,field", [
    ({"rules": [{"to": []}]}, "rules[0].to"),
    ({"rules": [{"to": ["b"], "when": "sometimes"}]}, "rules[0].when"),
    ({"rules": [{"to": ["b"], "colour": "red"}]}, "rules[0].colour"),
    ({"auto": "yes"}, "auto"),
    ({"rules": "b"}, "rules"),
    (None, "policy"),
    ([], "policy"),
])
def test_a_bad_policy_names_what_is_wrong(doc, field):
    with pytest.raises(InvalidInput) as err:
        r.parse_policy(doc)
    assert field in [p["field"] for p in err.value.details]
