"""Shared hosting by consent, over a real FileStorage through the services: a host takes
shared instances of its own owner only, unless its requester opens it (principals, peers,
everyone); an SLA may name the host; a refusal reads the same whatever other tenants run;
narrowing an opening detaches; a host opened later attaches those waiting."""
import json

import pytest

from slapfed import services as svc
from slapfed.core import errors, sharing
from slapfed.core.states import FAILED, PENDING, STARTED, STOPPED
from slapfed.core.wire import ComputerRegistration, InstanceRequest, PartitionReport, Supply

URL = "/srv/releases/cdn/software.cfg"
OTHER_URL = "/srv/releases/other/software.cfg"
ALICE, BOB, CAROL, PEER = "person/alice", "person/bob", "person/carol", "master/b"


@pytest.fixture
def rt(master_runtime, master_factories):
    """A master with computer c1 (6 partitions) supplied URL and OTHER_URL."""
    svc.register_computer(master_runtime, ComputerRegistration.from_json(
        master_factories.computer("c1", 6, lan="lan-a")))
    for url in (URL, OTHER_URL):
        svc.supply(master_runtime, "c1", Supply(url))
    return master_runtime


def request(rt, requester, reference, **extra):
    return svc.request_instance(rt, InstanceRequest.from_json(
        {"reference": reference, "software_url": URL, "requester": requester, **extra}))[1]


def host(rt, requester=ALICE, reference="front", **extra):
    return request(rt, requester, reference, **extra)


def site(rt, requester=BOB, reference="site", **extra):
    return request(rt, requester, reference, shared=True, **extra)


def show(rt, inst):
    return svc.show_instance(rt, inst["id"])


def leaks(inst, *others) -> list[str]:
    """The ids and references of ``others`` that appear anywhere in ``inst``'s JSON."""
    text = json.dumps(inst)
    return [v for o in others for v in (o["id"], o["reference"]) if v in text]


# -- who may attach: the table ----------------------------------------------------------
OPENINGS = [
    # (host's open_to, shared requester, attaches?)
    ([], ALICE, True),
    ([], BOB, False),
    ([], PEER, False),
    ([BOB], BOB, True),
    ([BOB], CAROL, False),
    ([BOB], ALICE, True),                 # its owner, always
    ([BOB, CAROL], CAROL, True),
    ([PEER], PEER, True),                 # what peer b delegates here arrives as master/b
    ([PEER], BOB, False),
    (["master/c"], PEER, False),
    (["*"], BOB, True),
    (["*"], PEER, True),
]


@pytest.mark.parametrize("open_to,requester,attaches", OPENINGS,
                         ids=[f"{'+'.join(o) or 'owner'}-{r}" for o, r, _ in OPENINGS])
def test_a_host_takes_shared_instances_of_whom_it_is_open_to(rt, open_to, requester,
                                                             attaches):
    front = host(rt, open_to=open_to)
    got = site(rt, requester)
    assert (got["host_instance"] == front["id"]) is attaches
    assert (show(rt, front)["shared_instances"] == [got["id"]]) is attaches
    if not attaches:
        assert got["status"] == {**got["status"], "state": PENDING,
                                 "log_tail": sharing.waiting_for_a_host(URL, "default",
                                                                        requester)}
        assert leaks(got, front) == []


CONSENT = [
    # (open_to, host owner, shared owner, names the host, consents?)
    ((), ALICE, ALICE, False, True),
    ((), ALICE, BOB, True, False),          # naming a host is no consent
    ((BOB,), ALICE, BOB, False, True),
    (("*",), ALICE, PEER, False, True),
    ((), PEER, PEER, False, False),         # a peer speaks for all its tenants...
    ((), PEER, PEER, True, True),           # ...so its own host takes what names it
    ((PEER,), PEER, PEER, False, True),     # ...or what it opened it to explicitly
    ((), PEER, "master/c", True, False),
]


@pytest.mark.parametrize("open_to,host_owner,owner,named,consents", CONSENT,
                         ids=[f"{'+'.join(c[0]) or 'owner'}-{c[1]}-{c[2]}-{c[3]}"
                              for c in CONSENT])
def test_consent_rule(open_to, host_owner, owner, named, consents):
    assert sharing.opens_to(open_to, host_owner, owner, named) is consents


def test_a_host_a_peer_requested_takes_its_shared_requests_only_when_named(rt):
    """What peer b delegates here all arrives as master/b: one tenant of b must not land
    on another's host because both are master/b here."""
    front = host(rt, PEER, "b:person/alice:front")
    unnamed = site(rt, PEER, "b:person/bob:site")
    assert unnamed["host_instance"] is None and unnamed["status"]["state"] == PENDING
    named = site(rt, PEER, "b:person/alice:site", sla={"host_instance": front["id"]})
    assert named["host_instance"] == front["id"]
    assert show(rt, front)["shared_instances"] == [named["id"]]


def test_the_default_is_the_owner_of_the_tree(rt):
    """A shared instance requested inside alice's tree (by one of its instances) is
    alice's: her closed host takes it; one inside bob's tree is not."""
    front = host(rt)
    alice_root = request(rt, ALICE, "app", software_url=OTHER_URL)
    bob_root = request(rt, BOB, "app", software_url=OTHER_URL)
    mine = request(rt, alice_root["id"], "site", shared=True, parent=alice_root["id"])
    theirs = request(rt, bob_root["id"], "site", shared=True, parent=bob_root["id"])
    assert mine["host_instance"] == front["id"]
    assert theirs["host_instance"] is None and leaks(theirs, front) == []
    assert show(rt, front)["open_to"] == []


def test_the_opening_is_shown_to_the_hosts_owner_and_normalised(rt):
    front = host(rt, open_to=[PEER, BOB, BOB])
    assert front["open_to"] == show(rt, front)["open_to"] == sorted({PEER, BOB})
    assert site(rt, CAROL)["open_to"] == []


def test_a_repeated_request_with_the_same_opening_writes_nothing(rt, master_db):
    host(rt, open_to=[BOB])
    before = master_db.storage.lastTransaction()
    assert host(rt, open_to=[BOB])["open_to"] == [BOB]
    assert master_db.storage.lastTransaction() == before


# -- refusals leak nothing --------------------------------------------------------------
def test_no_host_reads_the_same_whether_or_not_a_closed_one_exists(rt):
    alone = site(rt, BOB, "site-1")
    front = host(rt)                                   # alice's, closed to bob
    beside = site(rt, BOB, "site-2")
    assert alone["status"]["log_tail"] == beside["status"]["log_tail"]
    assert beside["status"]["state"] == alone["status"]["state"] == PENDING
    assert leaks(beside, front) == [] and beside["host_instance"] is None
    # what routing would write on a delegated instance ("no local fit (...)") too
    from slapfed.services import instances as inst_svc

    def refusal(app):
        with pytest.raises(errors.NoCapacity) as info:
            inst_svc._attach_shared(rt, app, app.instances[beside["id"]], 0.0)
        return info.value.message, info.value.details
    message, details = svc.read(rt, refusal)
    assert front["id"] not in message and "front" not in message.replace(URL, "")
    assert details == []


NAMED = [
    ("closed", lambda rt, hosts: hosts["closed"]["id"]),
    ("missing", lambda rt, hosts: "i-0123456789abcdef"),
    ("stopped", lambda rt, hosts: hosts["stopped"]["id"]),
    ("other-release", lambda rt, hosts: hosts["other"]["id"]),
    ("shared-instance", lambda rt, hosts: hosts["a-site"]["id"]),
]


@pytest.fixture
def hosts(rt):
    """alice's: a closed host, a stopped host and a host of another release open to bob,
    and one of her own shared instances."""
    return {"closed": host(rt, reference="closed"),
            "stopped": host(rt, reference="stopped", open_to=[BOB], state=STOPPED),
            "other": host(rt, reference="other", open_to=[BOB], software_url=OTHER_URL),
            "a-site": site(rt, ALICE, "a-site")}


@pytest.mark.parametrize("case,named", NAMED, ids=[n[0] for n in NAMED])
def test_a_named_host_that_will_not_take_it_gives_one_refusal(rt, hosts, case, named):
    host_id = named(rt, hosts)
    got = site(rt, BOB, sla={"host_instance": host_id})
    assert got["status"]["state"] == FAILED and got["host_instance"] is None
    # the same words in every case: only the id bob gave differs
    assert got["status"]["log_tail"] == sharing.named_host_refused(host_id, BOB)
    assert leaks(got, *(h for h in hosts.values() if h["id"] != host_id)) == []
    assert all(got["id"] not in show(rt, h)["shared_instances"] for h in hosts.values())


def test_an_sla_names_the_host_among_several_open_ones(rt):
    first = host(rt, reference="first", open_to=[BOB])
    second = host(rt, reference="second", open_to=[BOB])
    assert site(rt, BOB, "any")["host_instance"] == min(first["id"], second["id"])
    named = max(first["id"], second["id"])
    assert site(rt, BOB, "named", sla={"host_instance": named})["host_instance"] == named
    # alternatives: a refused named host, then anywhere open
    closed = host(rt, CAROL, "carols")
    fallback = site(rt, BOB, "fallback", sla=[{"host_instance": closed["id"]}, {}])
    assert fallback["host_instance"] == min(first["id"], second["id"])


# -- consent given later, consent withdrawn ----------------------------------------------
def test_opening_a_host_later_attaches_what_waits_for_it(rt):
    front = host(rt)
    waiting = site(rt, BOB, "site-1")
    named = site(rt, BOB, "site-2", sla={"host_instance": front["id"]})
    carols = site(rt, CAROL, "site-3")
    assert waiting["status"]["state"] == PENDING and named["status"]["state"] == FAILED
    r0 = show(rt, front)["revision"]
    opened = host(rt, open_to=[BOB])
    assert opened["shared_instances"] == sorted([waiting["id"], named["id"]])
    assert opened["revision"] > r0               # its node gets the new shared instances
    for s in (waiting, named):
        now = show(rt, s)
        assert now["host_instance"] == front["id"]
        assert now["status"]["state"] == PENDING and now["status"]["log_tail"] == ""
    assert show(rt, carols)["host_instance"] is None


def test_a_host_requested_later_attaches_what_waits_for_it(rt):
    waiting = site(rt, BOB, "site-1")
    front = host(rt, open_to=["*"])
    assert show(rt, waiting)["host_instance"] == front["id"]


def test_a_host_started_again_attaches_what_waits_for_it(rt):
    front = host(rt, open_to=[BOB], state=STOPPED)
    waiting = site(rt, BOB)
    assert waiting["host_instance"] is None
    svc.change_state(rt, front["id"], STARTED)
    assert show(rt, waiting)["host_instance"] == front["id"]


def test_narrowing_an_opening_detaches_who_is_no_longer_allowed(rt):
    front = host(rt, open_to=[BOB, CAROL])
    bobs, carols, alices = site(rt, BOB, "b"), site(rt, CAROL, "c"), site(rt, ALICE, "a")
    p = front["placement"]
    svc.report_partition(rt, p["computer"], p["partition"], PartitionReport.from_json({
        "instance_id": front["id"], "revision": show(rt, front)["revision"],
        "state": STARTED, "shared_connections": {bobs["id"]: {"url": "http://x/b/"}}}))
    assert show(rt, bobs)["connection"] == {"url": "http://x/b/"}
    r0 = show(rt, front)["revision"]
    narrowed = host(rt, open_to=[CAROL])
    assert narrowed["shared_instances"] == sorted([carols["id"], alices["id"]])
    assert narrowed["revision"] > r0
    gone = show(rt, bobs)
    assert gone["host_instance"] is None and gone["connection"] == {}
    assert gone["status"]["state"] == FAILED
    assert gone["status"]["log_tail"] == sharing.host_closed(BOB)
    assert leaks(gone, front) == []
    # closing it entirely (asking again without open_to) keeps its owner's only
    assert host(rt)["shared_instances"] == [alices["id"]]
    assert show(rt, carols)["status"]["state"] == FAILED
    # opened again: they come back
    assert host(rt, open_to=["*"])["shared_instances"] == sorted(
        [alices["id"], bobs["id"], carols["id"]])


def test_a_detached_shared_instance_moves_to_another_open_host(rt):
    front = host(rt, open_to=[BOB])
    bobs = site(rt, BOB)
    assert bobs["host_instance"] == front["id"]
    spare = host(rt, CAROL, "spare", open_to=["*"])
    host(rt)                                           # alice closes hers
    moved = show(rt, bobs)
    assert moved["host_instance"] == spare["id"]
    assert moved["status"]["state"] == PENDING and moved["status"]["log_tail"] == ""
    assert show(rt, spare)["shared_instances"] == [bobs["id"]]


def test_a_destroyed_host_leaves_its_shared_instances_waiting_without_naming_it(rt):
    front = host(rt, open_to=[BOB])
    bobs = site(rt, BOB)
    svc.destroy_instance(rt, front["id"])
    p = front["placement"]
    svc.report_partition(rt, p["computer"], p["partition"], PartitionReport.from_json({
        "instance_id": front["id"], "revision": show(rt, front)["revision"],
        "state": "destroyed"}))
    waiting = show(rt, bobs)
    assert waiting["host_instance"] is None and waiting["status"]["state"] == PENDING
    assert waiting["status"]["log_tail"] == sharing.host_gone(BOB)
    assert leaks(waiting, front) == []
    again = host(rt, reference="front-2", open_to=[BOB])
    assert show(rt, bobs)["host_instance"] == again["id"]


def test_destroying_a_waiting_shared_instance_stops_it_waiting(rt):
    bobs = site(rt, BOB)
    svc.destroy_instance(rt, bobs["id"])
    front = host(rt, open_to=[BOB])
    assert show(rt, front)["shared_instances"] == []
    assert svc.read(rt, lambda app: list(app.awaiting_host)) == []


# -- the request's fields ----------------------------------------------------------------
BAD = [
    ({"open_to": "person/bob"}, "open_to"),
    ({"open_to": ["person/bob", "not a principal"]}, "open_to[1]"),
    ({"open_to": ["partition/c1/p1"]}, "open_to[0]"),
    ({"open_to": [7]}, "open_to[0]"),
    ({"open_to": ["*", "person/bob"]}, "open_to"),
    ({"open_to": ["person/b%d" % i for i in range(65)]}, "open_to"),
    ({"open_to": ["person/bob"], "shared": True}, "open_to"),
    ({"sla": {"host_instance": "i-1"}}, "sla.host_instance"),
    ({"sla": {"host_instance": "not an id"}, "shared": True}, "sla.host_instance"),
]


@pytest.mark.parametrize("extra,field", BAD, ids=[f for _e, f in BAD])
def test_bad_openings_and_host_names_are_refused_naming_the_field(rt, master_db, extra,
                                                                  field):
    before = master_db.storage.lastTransaction()
    with pytest.raises(errors.InvalidInput) as info:
        InstanceRequest.from_json({"reference": "x", "software_url": URL, **extra})
    assert field in {d["field"] for d in info.value.details}
    assert master_db.storage.lastTransaction() == before


def test_evolve5_indexes_shared_instances_stored_waiting(tmp_path):
    """Generation 5: shared instances already waiting (their host destroyed) are indexed,
    so a host opened to them later attaches them."""
    import transaction
    from slapfed.model import ROOT_KEY, Instance
    from slapfed.store import generations, open_db
    db = open_db(None, str(tmp_path))
    try:
        conn = db.open()
        app = conn.root()[ROOT_KEY]
        for iid, shared, host_id in (("i-wait", True, None), ("i-held", True, "i-h"),
                                     ("i-h", False, None)):
            inst = Instance(iid, BOB, iid, URL, "h", "default", {}, {}, STARTED, shared,
                            None, 0.0)
            inst.host_id = host_id
            app.instances[iid] = inst
        app.awaiting_host, app.generation = None, 4
        transaction.commit()
        generations.evolve5(conn.root())
        assert list(app.awaiting_host) == [("h", "default", "i-wait")]
        transaction.abort()
        conn.close()
    finally:
        db.close()


# -- what a peer is told of the hosts here ------------------------------------------------
def test_the_summary_tells_a_peer_only_of_hosts_it_may_attach_to(rt):
    """A peer learns from the summary where it may send shared requests: a host closed
    to it is not listed, so the summary does not reveal it either."""
    from slapfed.services import federation as fed
    host(rt, ALICE, "closed", software_url=OTHER_URL)
    host(rt, ALICE, "open-to-b", open_to=[PEER])

    def hosting(asker):
        return sorted(tuple(h) for h in fed.summary(rt, rt.settings, asker)["hosting"])
    assert hosting("b") == [(URL, "default")]
    assert hosting("c") == []                          # opened to b, not to c
    assert hosting(None) == [(URL, "default"), (OTHER_URL, "default")]   # an admin
    host(rt, "master/c", "c-own", software_url=OTHER_URL)    # one c itself requested
    assert hosting("c") == [(OTHER_URL, "default")]
    host(rt, ALICE, "everyone", software_url=OTHER_URL, open_to=["*"])
    assert hosting("b") == [(URL, "default"), (OTHER_URL, "default")]
