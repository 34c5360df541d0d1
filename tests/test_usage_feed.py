"""Usage across delegation, over two real master apps (each its own FileStorage): b
records what a's delegations used there in a's feed; a pulls it and records it against
the instance it delegated (where = peer b), once, however often it is pulled again.

The pure parts (entry checks, ids) are tables at the bottom."""
import pytest

from conftest import computer_body, instance_body
from slapfed.core import accounting as acct
from slapfed.master import close_app, create_app
from slapfed.services import accounting
from slapfed.services import federation as fed
from slapfed.store import open_db

URL = "/srv/releases/hello/software.cfg"
API = "/api/v1"
CA = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


class Side:
    """One master: its DB, app, test client and runtime."""

    def __init__(self, tmp_path, name):
        self.name = name
        self.db = open_db(None, str(tmp_path / name))
        self.app = create_app({"INSECURE": True, "DB": self.db, "MASTER_NAME": name})
        self.app.config["TESTING"] = False
        self.api = self.app.test_client()
        self.rt = next(v for k, v in self.app.extensions.items() if hasattr(v, "writer"))

    def close(self):
        close_app(self.app)
        self.db.close()

    def post(self, path, body, status=None):
        r = self.api.post(API + path, json=body)
        assert status is None or r.status_code == status, r.json
        return r.json

    def statement(self, owner, period="2026-11"):
        return accounting.statement(self.rt, owner, acct.parse_period(period),
                                    acct.DEFAULT_GROUP)


def totals(doc) -> dict:
    return {u["resource"]: u["quantity"] for u in doc["totals"]["usage"]}


@pytest.fixture
def pair_ab(tmp_path):
    """b with computer c1 (3 partitions); a with peer b and person/alice's instance "web"
    delegated to b, accepted there (b's instance requested by master/a under a's remote
    reference)."""
    a, b = Side(tmp_path, "a"), Side(tmp_path, "b")
    try:
        b.post("/computers", computer_body("c1", 3), 201)
        b.post("/computers/c1/software", {"url": URL}, 200)
        fed.save_peer(a.rt, "b", "https://127.0.0.9:1", CA, credentials="peers/b",
                      principal="master/a", summary={"name": "b", "software": [URL]})
        yield {"a": a, "b": b, "delegate": lambda ref: _delegate(a, b, ref)}
    finally:
        a.close()
        b.close()


def _delegate(a, b, ref, shared=False):
    local = a.post("/instances", instance_body(ref, requester="person/alice",
                                               sla={"master": "b"}), 201)
    assert local["delegation"]["peer"] == "b", local
    remote_ref = fed.remote_reference("a", "person/alice", ref)
    remote = b.post("/instances", instance_body(remote_ref, requester="master/a",
                                                provenance=["a"]), 201)
    fed.record_accepted(a.rt, local["id"], "b", local["revision"], remote)
    return local, remote


def report(rid, remote, minute, usage, incidents=(), day="2026-11-02"):
    return {"report_id": rid, "start": f"{day}T10:{minute:02d}:00Z",
            "end": f"{day}T10:{minute + 1:02d}:00Z", "partitions": [{
                "partition": remote["placement"]["partition"], "instance_id": remote["id"],
                "usage": [{"resource": r, "quantity": q} for r, q in usage],
                "incidents": list(incidents)}]}


def pull(a, b, limit=500):
    """What a's forwarder does: ask from a's cursor, record the answer."""
    done = []
    while True:
        cursor = accounting.peer_feed_cursor(a.rt, "b")
        answer = accounting.usage_feed(b.rt, "b", "master/a", cursor, limit)
        done.append(accounting.record_peer_usage(a.rt, "b", answer))
        if not answer["more"]:
            return done


USAGE = [("cpu_seconds", 1.25), ("memory_peak_bytes", 3e7), ("disk_bytes", 4096.0),
         ("x-requests", 7)]


def test_a_delegated_instance_used_at_b_shows_in_a_s_statement_as_peer_b(pair_ab):
    a, b = pair_ab["a"], pair_ab["b"]
    local, remote = pair_ab["delegate"]("web")
    promise = {"kind": "promise", "name": "check-port", "start": "2026-11-02T10:00:30Z",
               "end": None, "detail": "port refused"}
    b.post("/computers/c1/usage", report("c1:1", remote, 0, USAGE, [promise]), 200)
    b.post("/computers/c1/usage", report("c1:2", remote, 1, [
        ("cpu_seconds", 2.5), ("memory_peak_bytes", 1e7), ("disk_bytes", 8192.0)],
        [dict(promise, end="2026-11-02T10:01:30Z")]), 200)

    feed = accounting.usage_feed(b.rt, "b", "master/a", 0, 500)
    assert [e["seq"] for e in feed["entries"]] == [1, 2] and feed["last"] == 2
    first = feed["entries"][0]
    assert first["id"] == f"c1:c1:1:{remote['id']}" and first["root"] is True
    assert first["root_reference"] == "a:person/alice:web"
    assert first["where"] == {"kind": "computer", "name": "c1"}

    assert pull(a, b)[0]["recorded"] == 2
    mine, theirs = a.statement("person/alice"), b.statement("master/a")
    want = {"cpu_seconds": 3.75, "memory_peak_bytes": 3e7, "disk_bytes": 8192.0,
            "x-requests": 7}
    assert totals(mine) == totals(theirs) == want
    assert mine["totals"]["incidents"] == theirs["totals"]["incidents"] == {
        "count": 1, "seconds": 60}
    (line,) = mine["lines"]
    assert line["where"] == {"kind": "peer", "name": "b"} and line["instances"] == 1
    assert theirs["lines"][0]["where"] == {"kind": "computer", "name": "c1"}
    usage = accounting.instance_usage(a.rt, local["id"], "2026-11-01", "2026-11-30")
    assert usage["days"][0]["where"] == {"kind": "peer", "name": "b"}
    assert usage["incidents"][0]["name"] == "check-port"


def test_pulling_again_or_an_answer_recorded_twice_counts_nothing_twice(pair_ab):
    a, b = pair_ab["a"], pair_ab["b"]
    _local, remote = pair_ab["delegate"]("web")
    for i in range(5):
        b.post("/computers/c1/usage", report(f"c1:{i}", remote, i, [("cpu_seconds", 1.0)]), 200)
    answer = accounting.usage_feed(b.rt, "b", "master/a", 0, 3)
    assert answer["more"] and answer["cursor"] == 3
    assert accounting.record_peer_usage(a.rt, "b", answer)["recorded"] == 3
    # the same answer again (its first delivery's acknowledgement was lost): nothing
    assert accounting.record_peer_usage(a.rt, "b", answer)["recorded"] == 0
    # an older cursor asked again (a pull that crashed before reading the cursor)
    again = accounting.usage_feed(b.rt, "b", "master/a", 1, 500)
    assert accounting.record_peer_usage(a.rt, "b", again)["recorded"] == 2
    assert pull(a, b)[-1]["recorded"] == 0
    assert totals(a.statement("person/alice")) == {"cpu_seconds": 5.0}
    assert accounting.peer_feed_cursor(a.rt, "b") == 5
    # the peer's list shows how far its feed is recorded
    from slapfed.core import answers as A
    (peer,) = [A.check(A.Peer, p) for p in fed.list_peers(a.rt)]
    assert {k: peer["usage"][k] for k in ("cursor", "head", "recorded", "skipped")} == {
        "cursor": 5, "head": 5, "recorded": 5, "skipped": 0}
    from slapfed.cli.peer_cmd import render_peers
    assert "usage: 5 entries recorded (feed at 5 of 5" in render_peers([peer])


def test_a_feed_that_went_back_is_read_again_without_counting_twice(pair_ab):
    """b's database restored to an older state: its feed is shorter than a's cursor; a
    reads it again from the start, and the entry ids keep what it had from counting."""
    a, b = pair_ab["a"], pair_ab["b"]
    _local, remote = pair_ab["delegate"]("web")
    for i in range(3):
        b.post("/computers/c1/usage", report(f"c1:{i}", remote, i, [("cpu_seconds", 1.0)]), 200)
    pull(a, b)
    answer = accounting.usage_feed(b.rt, "b", "master/a", 0, 500)
    shorter = dict(answer, entries=answer["entries"][:2], last=2, cursor=2, more=False)
    done = accounting.record_peer_usage(a.rt, "b", shorter)
    assert (done["recorded"], done["cursor"]) == (0, 2) and "went back" in done["problem"]
    # what b records after its restore has sequences a had passed, and new ids
    newer = dict(answer["entries"][2], seq=3, id="c1:c1:after-restore:x")
    done = accounting.record_peer_usage(a.rt, "b", dict(shorter, entries=[newer], last=3))
    assert done["recorded"] == 1
    assert totals(a.statement("person/alice")) == {"cpu_seconds": 4.0}


def test_only_the_asking_peer_s_instances_are_in_its_feed(pair_ab):
    b = pair_ab["b"]
    _local, remote = pair_ab["delegate"]("web")
    other = b.post("/instances", instance_body("x", requester="master/z"), 201)
    alice = b.post("/instances", instance_body("y", requester="person/alice"), 201)
    for i, inst in enumerate((remote, other, alice)):
        b.post("/computers/c1/usage", report(f"c1:{i}", inst, i, [("cpu_seconds", 1.0)]), 200)
    assert [e["instance_id"] for e in
            accounting.usage_feed(b.rt, "b", "master/a", 0, 500)["entries"]] == [remote["id"]]
    assert [e["instance_id"] for e in
            accounting.usage_feed(b.rt, "b", "master/z", 0, 500)["entries"]] == [other["id"]]
    assert accounting.usage_feed(b.rt, "b", "person/alice", 0, 500)["entries"] == []


def test_hostile_or_unknown_entries_are_skipped_counted_and_the_rest_recorded(pair_ab):
    a, b = pair_ab["a"], pair_ab["b"]
    _local, remote = pair_ab["delegate"]("web")
    b.post("/computers/c1/usage", report("c1:1", remote, 0, [("cpu_seconds", 1.0)]), 200)
    good = accounting.usage_feed(b.rt, "b", "master/a", 0, 500)["entries"][0]
    entries = [dict(good, seq=1, id="bad-1", usage=[{"resource": "cpu_seconds",
                                                     "quantity": float("inf")}]),
               dict(good, seq=2, id="bad-2", root_reference="a:person/bob:nothing"),
               dict(good, seq=3, id="bad-3", start="yesterday"),
               dict(good, seq=4)]
    done = accounting.record_peer_usage(a.rt, "b", {"entries": entries, "last": 4,
                                                    "cursor": 4, "more": False})
    assert (done["recorded"], done["skipped"], done["cursor"]) == (1, 3, 4)
    assert totals(a.statement("person/alice")) == {"cpu_seconds": 1.0}
    state = accounting.peer_feed_state(a.rt, "b")
    assert state["skipped"] == 3 and "start" in state["last_problem"]


def test_a_peer_answering_more_than_a_page_is_recorded_a_page_at_a_time(pair_ab):
    a, b = pair_ab["a"], pair_ab["b"]
    _local, remote = pair_ab["delegate"]("web")
    b.post("/computers/c1/usage", report("c1:1", remote, 0, [("cpu_seconds", 1.0)]), 200)
    good = accounting.usage_feed(b.rt, "b", "master/a", 0, 500)["entries"][0]
    many = [dict(good, seq=i, id=f"e{i}") for i in range(1, acct.MAX_FEED_LIMIT + 11)]
    done = accounting.record_peer_usage(a.rt, "b", {"entries": many[::-1], "more": False,
                                                    "last": len(many), "cursor": len(many)})
    assert (done["recorded"], done["cursor"], done["more"]) == (
        acct.MAX_FEED_LIMIT, acct.MAX_FEED_LIMIT, True)


def test_acknowledged_entries_are_trimmed_once_old_and_a_gap_is_said(pair_ab):
    a, b = pair_ab["a"], pair_ab["b"]
    _local, remote = pair_ab["delegate"]("web")
    for i in range(4):
        b.post("/computers/c1/usage", report(f"c1:{i}", remote, i, [("cpu_seconds", 1.0)]), 200)
    pull(a, b)
    # asking after 3: entries 1..3 are acknowledged; kept while younger than the keep
    assert accounting.acknowledge_feed(b.rt, "master/a", 3) == 0
    assert accounting.usage_feed(b.rt, "b", "master/a", 0, 500)["first"] == 1
    assert accounting.acknowledge_feed(b.rt, "master/a", 3) == 0     # known: no write
    assert accounting.acknowledge_feed(b.rt, "master/a", 4, keep=-1) == 4
    answer = accounting.usage_feed(b.rt, "b", "master/a", 0, 500)
    assert (answer["first"], answer["last"], answer["entries"]) == (5, 4, [])
    # the origin restored to before its last pulls: what was trimmed is lost, and said
    b.post("/computers/c1/usage", report("c1:9", remote, 9, [("cpu_seconds", 1.0)]), 200)
    state = a.db.open()
    try:
        state.root()["slapfed"].ledger.peer_cursors["b"].cursor = 1
        state.transaction_manager.commit()
    finally:
        state.close()
    done = pull(a, b)[0]
    assert done["recorded"] == 1 and "entries 2 to 4 were trimmed at b" in done["problem"]
    assert totals(a.statement("person/alice")) == {"cpu_seconds": 5.0}


def test_children_made_at_b_are_counted_as_their_own_instances(pair_ab):
    """b's delegated instance requests a child there: a records it under its own id
    (LOCAL@b/REMOTE), so gauges add up per instance, as b's statement does."""
    a, b = pair_ab["a"], pair_ab["b"]
    local, remote = pair_ab["delegate"]("web")
    child = b.post("/instances", instance_body("db", requester=remote["id"],
                                               parent=remote["id"]), 201)
    b.post("/computers/c1/usage", {
        "report_id": "c1:1", "start": "2026-11-02T10:00:00Z", "end": "2026-11-02T10:01:00Z",
        "partitions": [report("c1:1", inst, 0, [("disk_bytes", 1000.0 * (k + 1)),
                                                ("cpu_seconds", 0.5)])["partitions"][0]
                       for k, inst in enumerate((remote, child))]}, 200)
    pull(a, b)
    mine, theirs = a.statement("person/alice"), b.statement("master/a")
    assert totals(mine) == totals(theirs) == {"disk_bytes": 3000.0, "cpu_seconds": 1.0}
    assert sum(line["instances"] for line in mine["lines"]) == 2
    usage = accounting.instance_usage(a.rt, f"{local['id']}@b/{child['id']}",
                                      "2026-11-01", "2026-11-30")
    assert usage["owner"] == "person/alice" and usage["totals"][0]["quantity"] == 0.5


# -- pure parts -------------------------------------------------------------------------
GOOD = {"seq": 1, "id": "c1:c1:1:i-1", "instance_id": "i-1", "reference": "r",
        "root": True, "root_reference": "a:person/alice:r", "release": URL,
        "software_type": "default", "start": "2026-11-02T10:00:00Z",
        "end": "2026-11-02T10:01:00Z", "usage": [{"resource": "cpu_seconds", "quantity": 1}],
        "incidents": []}


@pytest.mark.parametrize("change,problem", [
    ({}, None),
    ({"end": "2026-11-02T10:00:00Z"}, "end must be after start"),
    ({"start": "2026-11-02"}, "start/end"),
    ({"id": ""}, "id must be"),
    ({"id": "x" * 401}, "id must be"),
    ({"root_reference": None}, "root_reference"),
    ({"usage": [{"resource": "gpu", "quantity": 1}]}, "unknown resource"),
    ({"usage": [{"resource": "cpu_seconds", "quantity": -1}]}, "finite number >= 0"),
    ({"usage": [{"resource": "cpu_seconds", "quantity": float("nan")}]}, "finite"),
    ({"usage": [{"resource": "cpu_seconds", "quantity": True}]}, "finite"),
    ({"usage": [{"resource": "x-hits", "quantity": 1}, {"resource": "x-hits",
                                                         "quantity": 2}]}, "twice"),
    ({"incidents": [{"kind": "boom", "name": "n", "start": "2026-11-02T10:00:00Z"}]},
     "kind"),
    ({"incidents": [{"kind": "promise", "name": "n", "start": "2026-11-02T10:00:00Z",
                     "end": "2026-11-02T09:00:00Z"}]}, "end before start"),
])
def test_feed_entry_checks(change, problem):
    found = acct.feed_entry_problems({**GOOD, **change})
    if problem is None:
        assert found == []
    else:
        assert found and problem in found[0], found


@pytest.mark.parametrize("owner,peer", [("master/b", "b"), ("person/b", None),
                                         ("master/", None), (None, None)])
def test_peer_of_owner(owner, peer):
    assert acct.peer_of_owner(owner) == peer


def test_entry_ids_and_relayed_instance_ids():
    assert acct.feed_entry_id("computer", "c1", "c1:9", "i-1") == "c1:c1:9:i-1"
    assert acct.feed_entry_id("peer", "c", "c1:c1:9:i-1", "i-2") == "c>c1:c1:9:i-1"
    assert acct.relayed_instance_id("i-a", "b", "i-b", True) == "i-a"
    assert acct.relayed_instance_id("i-a", "b", "i-b", False) == "i-a@b/i-b"


@pytest.mark.parametrize("args,field", [({"since": "-1"}, "since"), ({"since": "x"}, "since"),
                                        ({"limit": "0"}, "limit"),
                                        ({"limit": "1001"}, "limit"), ({"wait": "1"}, "wait")])
def test_feed_query_is_checked(args, field):
    from slapfed.core.errors import InvalidInput
    with pytest.raises(InvalidInput) as exc:
        accounting.parse_feed_query(args)
    assert exc.value.details[0]["field"] == field
