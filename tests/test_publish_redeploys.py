"""An instance publishing new connection parameters redeploys the instance that requested
it (SlapOS bangs the requester): a new revision and its computer's serial bumped, in the
publish's transaction, whichever way the values arrive (SLAP's publish, the native
node's report, a host for its shared instances, a peer relaying a delegated child).
Unchanged values write nothing; a requester that is a person, being destroyed,
delegated or not placed gets nothing; parent and child converge."""
import pytest

from slapfed import services as svc
from slapfed.core.states import DESTROYED, STARTED
from slapfed.core.wire import ComputerRegistration, InstanceRequest, PartitionReport, Supply
from slapfed.services import federation as fed
from slapfed.services.leases import MemoryLeases
from slapfed.services.runtime import MasterSettings, Runtime

from conftest import SOFTWARE_URL as URL, computer_body

OTHER_URL = "/srv/releases/other/software.cfg"
PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
PUBLISHED = {"url": "http://127.0.0.1:10000/"}


@pytest.fixture
def rt(master_db):
    """Computers c1 and c2 (2 partitions each, hosts h1 and h2), both supplied both
    releases; peer b paired (never called here)."""
    rt = Runtime(master_db, MasterSettings(), leases=MemoryLeases(30.0))
    for cid in ("c1", "c2"):
        svc.register_computer(rt, ComputerRegistration.from_json(
            computer_body(cid, 2, host=f"h{cid[1]}", lan="lan-a")))
        for url in (URL, OTHER_URL):
            svc.supply(rt, cid, Supply(url))
    fed.save_peer(rt, "b", "https://127.0.0.9:8570", PEM, credentials="/nonexistent")
    yield rt
    rt.close()


def ask(rt, reference, url=URL, requester="person/alice", parent=None, on=None, **extra):
    body = {"reference": reference, "software_url": url, "requester": requester, **extra}
    if parent is not None:
        body["parent"] = parent
    if on is not None:
        body["sla"] = {"computer_guid": on}
    return svc.request_instance(rt, InstanceRequest.from_json(body))[1]


def child_of(rt, parent, reference="child", **extra):
    """What a partition's buildout asks: the requester and parent are its instance."""
    return ask(rt, reference, OTHER_URL, requester=parent["id"], parent=parent["id"],
               **extra)


def report(rt, inst, state=STARTED, **extra):
    p = inst["placement"]
    return svc.report_partition(rt, p["computer"], p["partition"], PartitionReport.from_json(
        {"instance_id": inst["id"], "revision": inst["revision"], "state": state, **extra}))


def serials(rt) -> dict:
    return {c["id"]: c["serial"] for c in svc.list_computers(rt)}


def revisions(rt) -> dict:
    return {i["id"]: i["revision"] for i in svc.list_instances(rt)}


def show(rt, inst) -> dict:
    return svc.show_instance(rt, inst["id"])


# -- how the values arrive: each path publishes the child's connection once --------------
def by_slap(rt, child, connection):
    p = child["placement"]
    svc.publish_connection(rt, p["computer"], p["partition"], connection)


def by_report(rt, child, connection):
    report(rt, show(rt, child), connection=connection)


def host_for(rt, child):
    """The host a shared child is attached to (requested by alice on c2)."""
    return show(rt, {"id": show(rt, child)["host_instance"]})


def by_host_slap(rt, child, connection):
    p = host_for(rt, child)["placement"]
    svc.publish_connection(rt, p["computer"], p["partition"], connection, child["id"])


def by_host_report(rt, child, connection):
    report(rt, host_for(rt, child), shared_connections={child["id"]: connection})


def by_peer(rt, child, connection):
    """The peer serving a delegated child reports it in its change feed."""
    delegation = show(rt, child)["delegation"]
    fed.apply_changes(rt, "b", [{"reference": delegation["remote_reference"], "id": "r-1",
                                 "revision": 1, "status": {"state": STARTED, "revision": 1},
                                 "connection": connection}])


PATHS = {"slap": (by_slap, {}), "native-report": (by_report, {}),
         "shared-host-slap": (by_host_slap, {"shared": True}),
         "shared-host-report": (by_host_report, {"shared": True}),
         "delegated-child-relayed": (by_peer, {})}


def world(rt, kind):
    """A parent on c1 and its child, served as ``kind`` says: on c2, shared by a host on
    c2, or delegated to peer b."""
    parent = ask(rt, "parent", on="c1")
    report(rt, parent)
    _publish, extra = PATHS[kind]
    if extra.get("shared"):
        report(rt, ask(rt, "front", OTHER_URL, on="c2"))
    if kind == "delegated-child-relayed":
        fed.set_policy(rt, {"rules": [{"release": OTHER_URL, "to": ["b"]}]})
        return parent, child_of(rt, parent, **extra)
    return parent, child_of(rt, parent, on=None if extra.get("shared") else "c2", **extra)


@pytest.mark.parametrize("kind", sorted(PATHS))
def test_a_changed_connection_redeploys_the_requester_and_only_it(rt, kind):
    parent, child = world(rt, kind)
    publish = PATHS[kind][0]
    revs, before = revisions(rt), serials(rt)
    publish(rt, child, PUBLISHED)
    assert show(rt, child)["connection"] == PUBLISHED
    assert show(rt, parent)["revision"] == revs[parent["id"]] + 1
    assert serials(rt) == {**before, "c1": before["c1"] + 1}
    assert revisions(rt) == {**revs, parent["id"]: revs[parent["id"]] + 1}


@pytest.mark.parametrize("kind", sorted(PATHS))
def test_the_same_values_again_redeploy_nothing(rt, kind):
    parent, child = world(rt, kind)
    publish = PATHS[kind][0]
    publish(rt, child, PUBLISHED)
    revs, before = revisions(rt), serials(rt)
    publish(rt, child, dict(PUBLISHED))
    assert revisions(rt) == revs and serials(rt) == before


def test_an_unchanged_publish_writes_nothing(rt, master_db):
    parent, child = world(rt, "slap")
    by_slap(rt, child, PUBLISHED)
    before = master_db.storage.lastTransaction()
    by_slap(rt, child, dict(PUBLISHED))
    assert master_db.storage.lastTransaction() == before


def test_the_redeployed_parent_requests_its_child_again_and_they_converge(rt, master_db):
    """The parent's buildout runs again: it requests the child with what it asked before
    (the child keeps its revision, nothing is written) and publishes its own values,
    which redeploy nothing (a person requested the parent)."""
    parent, child = world(rt, "slap")
    by_slap(rt, child, PUBLISHED)
    redeployed = show(rt, parent)
    report(rt, redeployed, connection={"backend": PUBLISHED["url"]})
    revs, before = revisions(rt), serials(rt)
    tid = master_db.storage.lastTransaction()
    again = child_of(rt, parent, on="c2")
    assert again["revision"] == child["revision"] and again["connection"] == PUBLISHED
    assert master_db.storage.lastTransaction() == tid
    by_slap(rt, child, PUBLISHED)              # the child's node runs again: the same values
    p = redeployed["placement"]
    svc.publish_connection(rt, p["computer"], p["partition"], {"backend": PUBLISHED["url"]})
    assert master_db.storage.lastTransaction() == tid
    assert revisions(rt) == revs and serials(rt) == before


def test_one_report_redeploys_a_requester_once_however_many_of_its_children_change(rt):
    parent = ask(rt, "parent", on="c1")
    report(rt, parent)
    host = ask(rt, "front", OTHER_URL, on="c2")
    report(rt, host)
    a = child_of(rt, parent, "site-a", shared=True)
    b = child_of(rt, parent, "site-b", shared=True)
    rev, before = show(rt, parent)["revision"], serials(rt)
    report(rt, show(rt, host), shared_connections={a["id"]: {"url": "http://x/a/"},
                                                   b["id"]: {"url": "http://x/b/"}})
    assert show(rt, parent)["revision"] == rev + 1
    assert serials(rt)["c1"] == before["c1"] + 1


# -- requesters that get nothing ----------------------------------------------------------
def _parent_destroyed(rt):
    parent, child = world(rt, "slap")
    svc.change_state(rt, parent["id"], DESTROYED)
    return parent, child


def _parent_delegated(rt):
    fed.set_policy(rt, {"rules": [{"release": URL, "to": ["b"]}]})
    parent = ask(rt, "parent")
    assert show(rt, parent)["delegation"]["peer"] == "b"
    return parent, child_of(rt, parent, on="c2")


def _parent_not_placed(rt):
    """Its computer was lost and it fits nowhere else (its SLA names that computer)."""
    parent, child = world(rt, "slap")
    svc.declare_lost(rt, "c1", "gone")
    assert show(rt, parent)["placement"] is None
    return parent, child


def _open_order(rt):
    """A person requested the child, in the parent's tree: the person reads what it
    publishes, not the parent's buildout."""
    parent = ask(rt, "parent", on="c1")
    report(rt, parent)
    return parent, ask(rt, "child", OTHER_URL, parent=parent["id"], on="c2")


def _root_order(rt):
    parent = ask(rt, "parent", on="c1")
    report(rt, parent)
    return parent, ask(rt, "child", OTHER_URL, on="c2")


@pytest.mark.parametrize("make", [_parent_destroyed, _parent_delegated, _parent_not_placed,
                                  _open_order, _root_order],
                         ids=["parent-destroyed", "parent-delegated", "parent-not-placed",
                              "person-in-the-tree", "open-order"])
def test_a_requester_not_deployed_here_gets_nothing(rt, make):
    parent, child = make(rt)
    revs, before = revisions(rt), serials(rt)
    by_slap(rt, child, PUBLISHED)
    assert show(rt, child)["connection"] == PUBLISHED
    assert revisions(rt) == revs and serials(rt) == before


def test_a_child_being_destroyed_redeploys_nobody(rt):
    """A node's last report of a child its requester asked to destroy may still carry
    connection parameters: recorded, but its requester wants no more of it."""
    parent, child = world(rt, "native-report")
    svc.change_state(rt, child["id"], DESTROYED)
    revs, before = revisions(rt), serials(rt)
    # the node stopping it at the revision before (its destruction not carried out yet)
    report(rt, child, state="stopped", connection=PUBLISHED)
    assert show(rt, child)["connection"] == PUBLISHED
    assert revisions(rt) == revs and serials(rt) == before
