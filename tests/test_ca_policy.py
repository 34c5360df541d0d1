"""The authorization matrix: every actor × every action × own/other resource, in one table.

Rows are (action, resource); columns are the actors. "ok" = allowed, "401" = no proven
identity, "403" = refused. Below the table: the same matrix for certificates that must
not prove anything (revoked, expired, foreign CA, ...): 401 on every non-public action.
"""
import datetime as dt
import time

import pytest

from slapfed.ca import identity as ids
from slapfed.ca import policy as p
from slapfed.ca.authority import CertificateAuthority
from slapfed.ca.keys import generate_key
from slapfed.ca.policy import (CertificateFacts, ComputerFacts, InstanceFacts,
                               PartitionFacts, Placement, ReplicaFacts, StatementFacts)
from slapfed.core.errors import Forbidden, Unauthenticated

# -- the actors ----------------------------------------------------------------------------
ACTORS = {
    "anon": None,
    "alice": ids.person("alice"),
    "bob": ids.person("bob"),
    "admin": ids.admin("root"),
    "nodeX": ids.computer("node-x"),
    "nodeY": ids.computer("node-y"),
    "partA": ids.partition("node-x", "part-a"),    # runs alice's root instance i-a
    "partB": ids.partition("node-y", "part-b"),    # runs bob's root instance i-b
    "peerM": ids.master("peer-m"),
    "replR": ids.replica("repl-r"),
}
COLUMNS = tuple(ACTORS)

# -- the world -------------------------------------------------------------------------------
X_A, Y_A1, Y_B, X_B1 = (Placement("node-x", "part-a"), Placement("node-y", "part-a1"),
                        Placement("node-y", "part-b"), Placement("node-x", "part-b1"))
R = {
    # alice's tree: i-a on node-x/part-a, its child i-a1 (requested by i-a) on node-y
    "alice-root": InstanceFacts("person/alice", "person/alice", "i-a", placement=X_A),
    "alice-child": InstanceFacts("i-a", "person/alice", "i-a1", parent="i-a", placement=Y_A1,
                                 parent_placement=X_A),
    # bob's tree: i-b on node-y/part-b, its child i-b1 on node-x
    "bob-root": InstanceFacts("person/bob", "person/bob", "i-b", placement=Y_B),
    "bob-child": InstanceFacts("i-b", "person/bob", "i-b1", parent="i-b", placement=X_B1,
                               parent_placement=Y_B),
    # delegated here by peer master M, and by another peer N
    "peerM-root": InstanceFacts("master/peer-m", "master/peer-m", "i-m",
                                placement=Placement("node-x", "part-m")),
    "peerN-root": InstanceFacts("master/peer-n", "master/peer-n", "i-n",
                                placement=Placement("node-y", "part-n")),
    # requests not yet answered (no id, no placement)
    "alice-new": InstanceFacts("person/alice", "person/alice"),
    "alice-new-child": InstanceFacts("i-a", "person/alice", parent="i-a", parent_placement=X_A),
    "bob-new": InstanceFacts("person/bob", "person/bob"),
    "bob-new-child": InstanceFacts("i-b", "person/bob", parent="i-b", parent_placement=Y_B),
    "peerM-new": InstanceFacts("master/peer-m", "master/peer-m"),
    "peerN-new": InstanceFacts("master/peer-n", "master/peer-n"),
    "node-x": ComputerFacts("node-x"),
    "node-y": ComputerFacts("node-y"),
    "slot-a": PartitionFacts("node-x", "part-a"),
    "slot-b": PartitionFacts("node-y", "part-b"),
    "slot-m": PartitionFacts("node-x", "part-m"),    # node-x, but not partition A's
    "cert-alice": CertificateFacts(ids.person("alice")),
    "cert-bob": CertificateFacts(ids.person("bob")),
    "cert-nodeX": CertificateFacts(ids.computer("node-x")),
    "repl-r": ReplicaFacts("repl-r"),
    "repl-s": ReplicaFacts("repl-s"),
    # accounting: whose usage a statement reads
    "usage-alice": StatementFacts("person/alice"),
    "usage-bob": StatementFacts("person/bob"),
    "usage-peerM": StatementFacts("master/peer-m"),
    "usage-peerN": StatementFacts("master/peer-n"),
    "-": None,
}

# Tenant of each resource, for the cross-tenant check below the table.
TENANT = {"alice-root": "alice", "alice-child": "alice", "alice-new": "alice",
          "alice-new-child": "alice", "bob-root": "bob", "bob-child": "bob", "bob-new": "bob",
          "bob-new-child": "bob", "peerM-root": "peerM", "peerM-new": "peerM",
          "peerN-root": "peerN", "peerN-new": "peerN", "cert-alice": "alice", "cert-bob": "bob",
          "usage-alice": "alice", "usage-bob": "bob", "usage-peerM": "peerM",
          "usage-peerN": "peerN"}
ACTOR_TENANT = {"alice": "alice", "bob": "bob", "peerM": "peerM", "partA": "alice",
                "partB": "bob"}

# -- THE TABLE ------------------------------------------------------------------------------
MATRIX = [
    # action                  resource             anon   alice  bob    admin  nodeX  nodeY  partA  partB  peerM  replR
    (p.HEALTH,                "-",               ("ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok")),
    (p.OPENAPI,               "-",               ("ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok")),
    (p.REDEEM_TOKEN,          "-",               ("ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok")),
    (p.WHOAMI,                "-",               ("401", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok")),
    (p.REQUEST_INSTANCE,      "alice-new",       ("401", "ok", "403", "403", "403", "403", "403", "403", "403", "403")),
    (p.REQUEST_INSTANCE,      "alice-new-child", ("401", "ok", "403", "403", "403", "403", "ok", "403", "403", "403")),
    (p.REQUEST_INSTANCE,      "bob-new",         ("401", "403", "ok", "403", "403", "403", "403", "403", "403", "403")),
    (p.REQUEST_INSTANCE,      "bob-new-child",   ("401", "403", "ok", "403", "403", "403", "403", "ok", "403", "403")),
    (p.REQUEST_INSTANCE,      "peerM-new",       ("401", "403", "403", "403", "403", "403", "403", "403", "ok", "403")),
    (p.REQUEST_INSTANCE,      "peerN-new",       ("401", "403", "403", "403", "403", "403", "403", "403", "403", "403")),
    (p.READ_PRODUCTS,         "-",               ("401", "ok", "ok", "ok", "403", "403", "ok", "ok", "ok", "403")),
    (p.LIST_INSTANCES,        "-",               ("401", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "403")),
    (p.READ_INSTANCE,         "alice-root",      ("401", "ok", "403", "ok", "ok", "403", "ok", "403", "403", "403")),
    (p.READ_INSTANCE,         "alice-child",     ("401", "ok", "403", "ok", "403", "ok", "ok", "403", "403", "403")),
    (p.READ_INSTANCE,         "bob-root",        ("401", "403", "ok", "ok", "403", "ok", "403", "ok", "403", "403")),
    (p.READ_INSTANCE,         "bob-child",       ("401", "403", "ok", "ok", "ok", "403", "403", "ok", "403", "403")),
    (p.READ_INSTANCE,         "peerM-root",      ("401", "403", "403", "ok", "ok", "403", "403", "403", "ok", "403")),
    (p.READ_INSTANCE,         "peerN-root",      ("401", "403", "403", "ok", "403", "ok", "403", "403", "403", "403")),
    (p.CHANGE_INSTANCE_STATE, "alice-root",      ("401", "ok", "403", "403", "403", "403", "403", "403", "403", "403")),
    (p.CHANGE_INSTANCE_STATE, "alice-child",     ("401", "ok", "403", "403", "403", "403", "ok", "403", "403", "403")),
    (p.CHANGE_INSTANCE_STATE, "bob-root",        ("401", "403", "ok", "403", "403", "403", "403", "403", "403", "403")),
    (p.CHANGE_INSTANCE_STATE, "bob-child",       ("401", "403", "ok", "403", "403", "403", "403", "ok", "403", "403")),
    (p.CHANGE_INSTANCE_STATE, "peerM-root",      ("401", "403", "403", "403", "403", "403", "403", "403", "ok", "403")),
    (p.CHANGE_INSTANCE_STATE, "peerN-root",      ("401", "403", "403", "403", "403", "403", "403", "403", "403", "403")),
    (p.DESTROY_INSTANCE,      "alice-root",      ("401", "ok", "403", "403", "403", "403", "403", "403", "403", "403")),
    (p.DESTROY_INSTANCE,      "alice-child",     ("401", "ok", "403", "403", "403", "403", "ok", "403", "403", "403")),
    (p.DESTROY_INSTANCE,      "bob-root",        ("401", "403", "ok", "403", "403", "403", "403", "403", "403", "403")),
    (p.DESTROY_INSTANCE,      "bob-child",       ("401", "403", "ok", "403", "403", "403", "403", "ok", "403", "403")),
    (p.DESTROY_INSTANCE,      "peerM-root",      ("401", "403", "403", "403", "403", "403", "403", "403", "ok", "403")),
    (p.DESTROY_INSTANCE,      "peerN-root",      ("401", "403", "403", "403", "403", "403", "403", "403", "403", "403")),
    (p.REGISTER_CHILD_MASTER, "alice-root",      ("401", "403", "403", "ok", "403", "403", "ok", "403", "403", "403")),
    (p.REGISTER_CHILD_MASTER, "alice-child",     ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.REGISTER_CHILD_MASTER, "bob-root",        ("401", "403", "403", "ok", "403", "403", "403", "ok", "403", "403")),
    (p.REGISTER_COMPUTER,     "node-x",          ("401", "403", "403", "ok", "ok", "403", "403", "403", "403", "403")),
    (p.REGISTER_COMPUTER,     "node-y",          ("401", "403", "403", "ok", "403", "ok", "403", "403", "403", "403")),
    (p.LIST_COMPUTERS,        "-",               ("401", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "403")),
    (p.READ_COMPUTER,         "node-x",          ("401", "403", "403", "ok", "ok", "403", "403", "403", "403", "403")),
    (p.READ_COMPUTER,         "node-y",          ("401", "403", "403", "ok", "403", "ok", "403", "403", "403", "403")),
    (p.SET_COMPUTER_FACTS,    "node-x",          ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.SUPPLY_SOFTWARE,       "node-x",          ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.UNSUPPLY_SOFTWARE,     "node-x",          ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.READ_DESIRED_STATE,    "node-x",          ("401", "403", "403", "ok", "ok", "403", "403", "403", "403", "403")),
    (p.READ_DESIRED_STATE,    "node-y",          ("401", "403", "403", "ok", "403", "ok", "403", "403", "403", "403")),
    (p.REPORT_SOFTWARE,       "node-x",          ("401", "403", "403", "403", "ok", "403", "403", "403", "403", "403")),
    (p.REPORT_SOFTWARE,       "node-y",          ("401", "403", "403", "403", "403", "ok", "403", "403", "403", "403")),
    (p.REPORT_PARTITION,      "slot-a",          ("401", "403", "403", "403", "ok", "403", "ok", "403", "403", "403")),
    (p.REPORT_PARTITION,      "slot-b",          ("401", "403", "403", "403", "403", "ok", "403", "ok", "403", "403")),
    (p.REPORT_PARTITION,      "slot-m",          ("401", "403", "403", "403", "ok", "403", "403", "403", "403", "403")),
    (p.RENAME_INSTANCE,       "slot-a",          ("401", "403", "403", "403", "403", "403", "ok", "403", "403", "403")),
    (p.RENAME_INSTANCE,       "slot-b",          ("401", "403", "403", "403", "403", "403", "403", "ok", "403", "403")),
    (p.RENAME_INSTANCE,       "slot-m",          ("401", "403", "403", "403", "403", "403", "403", "403", "403", "403")),
    (p.READ_TOPOLOGY,         "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "ok", "403")),
    (p.ISSUE_CERTIFICATE,     "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.CERTIFY_PARTITION,     "slot-a",          ("401", "403", "403", "ok", "ok", "403", "403", "403", "403", "403")),
    (p.CERTIFY_PARTITION,     "slot-b",          ("401", "403", "403", "ok", "403", "ok", "403", "403", "403", "403")),
    (p.LIST_CERTIFICATES,     "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.READ_METRICS,          "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.DECLARE_LOST,          "node-x",          ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.WIPE_COMPUTER,         "node-x",          ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.REPORT_MOVED,          "slot-a",          ("401", "403", "403", "403", "ok", "403", "403", "403", "403", "403")),
    (p.REPORT_MOVED,          "slot-b",          ("401", "403", "403", "403", "403", "ok", "403", "403", "403", "403")),
    (p.DECLARE_PEER_LOST,     "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.REVOKE_CERTIFICATE,    "cert-alice",      ("401", "ok", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.REVOKE_CERTIFICATE,    "cert-bob",        ("401", "403", "ok", "ok", "403", "403", "403", "403", "403", "403")),
    (p.CREATE_TOKEN,          "node-x",          ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.REGISTER_PEER,         "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.LIST_PEERS,            "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.READ_SUMMARY,          "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "ok", "403")),
    (p.FOLLOW_DELEGATIONS,    "-",               ("401", "403", "403", "403", "403", "403", "403", "403", "ok", "403")),
    (p.INVITE_REPLICA,        "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.REGISTER_REPLICA,      "repl-r",          ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "ok")),
    (p.REGISTER_REPLICA,      "repl-s",          ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.FOLLOW_TRANSACTIONS,   "-",               ("401", "403", "403", "403", "403", "403", "403", "403", "403", "ok")),
    (p.READ_CA_MATERIAL,      "-",               ("401", "403", "403", "403", "403", "403", "403", "403", "403", "ok")),
    (p.READ_REPLICATION,      "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.PROMOTE,               "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    # accounting
    (p.REPORT_USAGE,          "node-x",          ("401", "403", "403", "403", "ok", "403", "403", "403", "403", "403")),
    (p.REPORT_USAGE,          "node-y",          ("401", "403", "403", "403", "403", "ok", "403", "403", "403", "403")),
    (p.READ_STATEMENT,        "usage-alice",     ("401", "ok", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.READ_STATEMENT,        "usage-bob",       ("401", "403", "ok", "ok", "403", "403", "403", "403", "403", "403")),
    (p.READ_STATEMENT,        "usage-peerM",     ("401", "403", "403", "ok", "403", "403", "403", "403", "ok", "403")),
    (p.READ_STATEMENT,        "usage-peerN",     ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.READ_USAGE,            "alice-root",      ("401", "ok", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.READ_USAGE,            "alice-child",     ("401", "ok", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.READ_USAGE,            "bob-root",        ("401", "403", "ok", "ok", "403", "403", "403", "403", "403", "403")),
    (p.READ_USAGE,            "peerM-root",      ("401", "403", "403", "ok", "403", "403", "403", "403", "ok", "403")),
    (p.READ_USAGE,            "peerN-root",      ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    (p.READ_PRICES,           "-",               ("401", "ok", "ok", "ok", "403", "403", "403", "403", "ok", "403")),
    (p.SET_PRICES,            "-",               ("401", "403", "403", "ok", "403", "403", "403", "403", "403", "403")),
    # usage across delegation: a peer pulls its own feed
    (p.READ_PEER_USAGE,       "-",               ("401", "403", "403", "403", "403", "403", "403", "403", "ok", "403")),
]

CASES = [pytest.param(action, res, actor, expected, id=f"{action}-{res}-{actor}")
         for action, res, row in MATRIX for actor, expected in zip(COLUMNS, row)]


def outcome(identity, action, resource) -> str:
    try:
        p.authorize(identity, action, resource)
    except Unauthenticated:
        return "401"
    except Forbidden:
        return "403"
    return "ok"


@pytest.mark.parametrize("action,res,actor,expected", CASES)
def test_authorization_matrix(action, res, actor, expected):
    assert outcome(ACTORS[actor], action, R[res]) == expected
    assert p.can(ACTORS[actor], action, R[res]) == (expected == "ok")


def test_the_table_is_well_formed_and_covers_every_action():
    assert all(len(row) == len(COLUMNS) for _, _, row in MATRIX)
    assert {action for action, _, _ in MATRIX} == set(p.ACTIONS)


def test_every_cross_tenant_attempt_is_refused():
    leaks = [(action, res, actor) for action, res, row in MATRIX
             for actor, expected in zip(COLUMNS, row)
             if actor in ACTOR_TENANT and res in TENANT
             and TENANT[res] != ACTOR_TENANT[actor] and expected == "ok"]
    assert leaks == []


def test_every_tenant_can_do_everything_to_its_own_tree():
    own_tree = {"alice": ("alice-root", "alice-child"), "bob": ("bob-root", "bob-child"),
                "peerM": ("peerM-root",)}
    for actor, resources in own_tree.items():
        for res in resources:
            for action in (p.READ_INSTANCE, p.CHANGE_INSTANCE_STATE, p.DESTROY_INSTANCE):
                assert outcome(ACTORS[actor], action, R[res]) == "ok", (actor, action, res)


def test_a_refusal_says_who_what_and_why():
    with pytest.raises(Forbidden) as exc:
        p.authorize(ids.person("bob"), p.DESTROY_INSTANCE, R["alice-root"])
    assert exc.value.message == ("person/bob may not destroy instance (instance i-a of "
                                 "person/alice's tree): a person may touch only instance "
                                 "trees it requested")
    assert exc.value.to_json()["error"]["code"] == "forbidden"
    with pytest.raises(Forbidden, match="a person never may"):
        p.authorize(ids.person("bob"), p.SUPPLY_SOFTWARE, R["node-x"])
    with pytest.raises(Unauthenticated, match="needs a client certificate"):
        p.authorize(None, p.READ_INSTANCE, R["alice-root"])


@pytest.mark.parametrize("action,resource,error", [
    (p.READ_INSTANCE, ComputerFacts("node-x"), TypeError),
    (p.READ_INSTANCE, None, TypeError),
    ("open_sesame", None, KeyError),
], ids=["wrong-facts", "missing-facts", "unknown-action"])
def test_programming_errors_never_allow(action, resource, error):
    with pytest.raises(error):
        p.authorize(ids.admin("root"), action, resource)


def test_lists_are_filtered_through_the_read_rule():
    items = [(name, R[name]) for name in ("alice-root", "alice-child", "bob-root", "peerM-root")]
    assert list(p.visible(ACTORS["alice"], p.READ_INSTANCE, items)) == ["alice-root", "alice-child"]
    assert list(p.visible(ACTORS["partA"], p.READ_INSTANCE, items)) == ["alice-root", "alice-child"]
    assert list(p.visible(ACTORS["nodeX"], p.READ_INSTANCE, items)) == ["alice-root", "peerM-root"]
    assert list(p.visible(None, p.READ_INSTANCE, items)) == []


def test_every_rule_is_documented_in_one_line():
    table = p.describe_policy()
    assert [row["action"] for row in table] == list(p.ACTIONS)
    for row in table:
        assert row["rule"] and "\n" not in row["rule"]
        assert all(g and "\n" not in g for g in row["grants"].values())
        assert row["public"] or row["grants"]


# -- certificates that prove nothing: 401 on every non-public action -------------------------
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.init(root / "ca", "master-a", clock=lambda: NOW)
    other = CertificateAuthority.init(root / "other", "master-b", clock=lambda: NOW)
    key = generate_key().public_key()
    alice = ids.person("alice")
    revoked = ca.issue(alice, key)
    ca.revoke(revoked.serial, "key_compromise")
    certs = {
        "good-alice": ca.issue(alice, key).certificate_pem,
        "revoked": revoked.certificate_pem,
        "expired": ca.issue(alice, key, not_before=NOW - dt.timedelta(days=30),
                            not_after=NOW - dt.timedelta(days=1)).certificate_pem,
        "not-yet-valid": ca.issue(alice, key, not_before=NOW + dt.timedelta(days=1),
                                  not_after=NOW + dt.timedelta(days=30)).certificate_pem,
        "other-ca": other.issue(alice, key).certificate_pem,
        "other-ca-admin": other.issue(ids.admin("root"), key).certificate_pem,
    }
    return ca, certs


BAD_CERTS = {"revoked": "certificate_revoked", "expired": "certificate_expired",
             "not-yet-valid": "certificate_not_yet_valid", "other-ca": "foreign_certificate",
             "other-ca-admin": "foreign_certificate"}


def decide(ca, cert_pem, action, resource) -> str:
    """What the master will do per request: verify the certificate, then authorize."""
    try:
        identity = None if p.RULES[action].public else ca.verify(cert_pem)
        p.authorize(identity, action, resource)
    except Unauthenticated as exc:
        return f"401 {exc.code}"
    except Forbidden:
        return "403"
    return "ok"


@pytest.mark.parametrize("cert", BAD_CERTS, ids=BAD_CERTS.keys())
@pytest.mark.parametrize("action,res", sorted({(a, r) for a, r, _ in MATRIX}),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_certificates_that_prove_nothing_get_401_everywhere(pki, cert, action, res):
    ca, certs = pki
    expected = "ok" if p.RULES[action].public else f"401 {BAD_CERTS[cert]}"
    assert decide(ca, certs[cert], action, R[res]) == expected


def test_the_same_person_with_a_good_certificate_gets_her_tree(pki):
    ca, certs = pki
    assert decide(ca, certs["good-alice"], p.DESTROY_INSTANCE, R["alice-root"]) == "ok"
    assert decide(ca, certs["revoked"], p.DESTROY_INSTANCE, R["alice-root"]) == "401 certificate_revoked"


def test_measured_cost_of_deciding_one_request(pki, capsys):
    ca, certs = pki
    ca.verify(certs["good-alice"])
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    der = x509.load_pem_x509_certificate(certs["good-alice"].encode()).public_bytes(
        serialization.Encoding.DER)
    n = 5000
    start = time.perf_counter()
    for _ in range(n):
        p.authorize(ca.verify(der), p.READ_INSTANCE, R["alice-root"])
    cost = (time.perf_counter() - start) / n
    with capsys.disabled():
        print(f"\n[ca cost] verify + revocation check + authorize per request: {cost * 1e6:.1f} µs")
    assert cost < 200e-6
