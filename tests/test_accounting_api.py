"""Accounting over the API of a real master app (real FileStorage): nodes post usage
reports as a node would; statements and instance usage read them back exactly."""
import pytest

from conftest import AUTHZ_URL, computer_body, instance_body, last_tid

URL = "/srv/releases/hello/software.cfg"
API = "/api/v1"


@pytest.fixture
def world(api):
    """Computer c1 (3 partitions) and c2 (1), two of alice's instances and one of bob's."""
    for cid, n in (("c1", 3), ("c2", 1)):
        assert api.post(f"{API}/computers", json=computer_body(cid, n)).status_code == 201
        assert api.post(f"{API}/computers/{cid}/software", json={"url": URL}).status_code == 200

    def request(ref, who, computer):
        r = api.post(f"{API}/instances", json=instance_body(
            ref, requester=who, sla={"computer_guid": computer}))
        assert r.status_code == 201, r.json
        return r.json
    return {"api": api, "a1": request("a1", "person/alice", "c1"),
            "a2": request("a2", "person/alice", "c2"),
            "b1": request("b1", "person/bob", "c1")}


def entry(inst, usage=(), incidents=()):
    return {"partition": inst["placement"]["partition"], "instance_id": inst["id"],
            "usage": [{"resource": r, "quantity": q} for r, q in usage],
            "incidents": list(incidents)}


def report(rid, minute, *entries, day="2026-11-02"):
    return {"report_id": rid, "start": f"{day}T10:{minute:02d}:00Z",
            "end": f"{day}T10:{minute + 1:02d}:00Z", "partitions": list(entries)}


def post(api, cid, body):
    return api.post(f"{API}/computers/{cid}/usage", json=body)


def statement(api, owner, period, **more):
    r = api.get(f"{API}/statements", query_string={"owner": owner, "period": period, **more})
    assert r.status_code == 200, r.json
    return r.json


def totals(doc) -> dict:
    return {u["resource"]: u["quantity"] for u in doc["totals"]["usage"]}


def test_a_duplicate_report_id_is_acknowledged_and_not_counted_twice(world, master_db):
    api, a1 = world["api"], world["a1"]
    body = report("c1:1", 0, entry(a1, [("cpu_seconds", 1.25)]))
    assert post(api, "c1", body).json == {"accepted": True, "duplicate": False}
    before = last_tid(master_db)
    again = post(api, "c1", body)
    assert (again.status_code, again.json) == (200, {"accepted": False, "duplicate": True})
    assert last_tid(master_db) == before                       # nothing written
    # the same id with other content is the same report: still not counted
    changed = report("c1:1", 5, entry(a1, [("cpu_seconds", 100)]))
    assert post(api, "c1", changed).json["duplicate"] is True
    # another computer's report ids are its own
    a2 = world["a2"]
    assert post(api, "c2", report("c1:1", 0, entry(a2, [("cpu_seconds", 2)]))).json[
        "accepted"] is True
    assert totals(statement(api, "person/alice", "2026-11")) == {"cpu_seconds": 3.25}


def _bad(world, case):
    a1, a2, b1 = world["a1"], world["a2"], world["b1"]
    good = entry(a1, [("cpu_seconds", 1)])
    free = ({"p000", "p001", "p002"} - {a1["placement"]["partition"],
                                         b1["placement"]["partition"]}).pop()
    return {
        "other instance": ("c1", report("c1:9", 0, good, dict(entry(b1), instance_id=a1["id"]))
                           , "partitions[1].instance_id"),
        "unknown instance": ("c1", report("c1:9", 0, good, dict(entry(b1), instance_id="i-x")),
                             "partitions[1].instance_id"),
        "another computer's instance": ("c1", report("c1:9", 0, good, dict(
            entry(a2), partition=free)), "partitions[1].instance_id"),
        "unknown partition": ("c1", report("c1:9", 0, good, dict(entry(b1), partition="p9")),
                              "partitions[1].partition"),
        "partition twice": ("c1", report("c1:9", 0, good, good), "partitions[1].partition"),
        "end before start": ("c1", dict(report("c1:9", 0, good), end="2026-11-02T09:00:00Z"),
                             "end"),
        "negative quantity": ("c1", report("c1:9", 0, entry(a1, [("cpu_seconds", -1)])),
                              "partitions[0].usage[0].quantity"),
        "unknown resource": ("c1", report("c1:9", 0, entry(a1, [("gpu_seconds", 1)])),
                             "partitions[0].usage[0].resource"),
        "shared not hosted": ("c1", report("c1:9", 0, dict(good, usage=[
            {"resource": "x-hits", "quantity": 1, "shared": b1["id"]}])),
            "partitions[0].usage[0].shared"),
        "more entries than partitions": ("c2", report("c2:9", 0, *[
            dict(entry(a2), partition=f"p{i:03d}") for i in range(2)]), "partitions"),
    }[case]


@pytest.mark.parametrize("case", [
    "other instance", "unknown instance", "another computer's instance", "unknown partition",
    "partition twice", "end before start", "negative quantity", "unknown resource",
    "shared not hosted", "more entries than partitions"])
def test_a_bad_report_is_refused_naming_the_field_and_writes_nothing(world, master_db, case):
    api = world["api"]
    cid, body, field = _bad(world, case)
    before = last_tid(master_db)
    r = post(api, cid, body)
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "invalid_input"
    assert field in [d["field"] for d in r.json["error"]["details"]]
    assert last_tid(master_db) == before
    assert statement(api, "person/alice", "2026-11")["lines"] == []
    # the id was not kept: the corrected report is accepted under it
    fixed = report(body["report_id"], 0, entry(world["a1"] if cid == "c1" else world["a2"],
                                               [("cpu_seconds", 1)]))
    assert post(api, cid, fixed).json["accepted"] is True


def test_an_unknown_computer_is_404(world):
    r = post(world["api"], "c9", report("c9:1", 0, entry(world["a1"])))
    assert (r.status_code, r.json["error"]["code"]) == (404, "not_found")


def test_statement_totals_are_exact_against_what_was_posted(world):
    api, a1, a2, b1 = world["api"], world["a1"], world["a2"], world["b1"]
    posted = {"c1": [], "c2": []}
    for minute in range(5):
        posted["c1"].append(report(f"c1:{minute}", minute,
                                   entry(a1, [("cpu_seconds", 0.25 * (minute + 1)),
                                              ("memory_peak_bytes", 1000 * (minute % 3)),
                                              ("disk_bytes", 100 + minute),
                                              ("x-requests", 3)]),
                                   entry(b1, [("cpu_seconds", 7)])))
        posted["c2"].append(report(f"c2:{minute}", minute,
                                   entry(a2, [("cpu_seconds", 1.5), ("disk_bytes", 50),
                                              ("memory_peak_bytes", 500)]),
                                   day="2026-11-03"))
    for cid, bodies in posted.items():
        for body in bodies:
            assert post(api, cid, body).json["accepted"] is True
    month = statement(api, "person/alice", "2026-11")
    assert totals(month) == {"cpu_seconds": 0.25 * 15 + 1.5 * 5, "memory_peak_bytes": 2000,
                             "disk_bytes": 104 + 50, "x-requests": 15}
    lines = {ln["where"]["name"]: ln for ln in month["lines"]}
    assert set(lines) == {"c1", "c2"}
    assert lines["c1"]["instances"] == 1 and lines["c1"]["release"] == URL
    assert {u["resource"]: u["quantity"] for u in lines["c2"]["usage"]} == {
        "cpu_seconds": 7.5, "disk_bytes": 50, "memory_peak_bytes": 500}
    # one day only, and grouped by release alone
    day = statement(api, "person/alice", "2026-11-03", group="release")
    assert totals(day) == {"cpu_seconds": 7.5, "disk_bytes": 50, "memory_peak_bytes": 500}
    assert [(ln["release"], ln["where"], ln["instances"]) for ln in day["lines"]] == [
        (URL, None, 1)]
    assert statement(api, "person/alice", "2026-11-04")["lines"] == []
    assert statement(api, "person/alice", "2026-12")["lines"] == []
    assert totals(statement(api, "person/bob", "2026-11")) == {"cpu_seconds": 35}
    # the instance's own view, per day
    usage = api.get(f"{API}/instances/{a1['id']}/usage",
                    query_string={"since": "2026-11-01", "until": "2026-11-30"}).json
    assert [d["day"] for d in usage["days"]] == ["2026-11-02"]
    assert {u["resource"]: u["quantity"] for u in usage["totals"]} == {
        "cpu_seconds": 3.75, "memory_peak_bytes": 2000, "disk_bytes": 104, "x-requests": 15}


def test_amounts_follow_the_price_list(world):
    api, a1 = world["api"], world["a1"]
    prices = {"currency": "EUR", "prices": [
        {"resource": "cpu_seconds", "price": "0.36", "per": "3600"},
        {"resource": "x-requests", "price": "0.001", "release": URL}], "precision": 4}
    r = api.put(f"{API}/accounting/prices", json=prices)
    assert r.status_code == 200 and r.json["currency"] == "EUR"
    assert api.get(f"{API}/accounting/prices").json == r.json
    post(api, "c1", report("c1:1", 0, entry(a1, [("cpu_seconds", 3600), ("x-requests", 7),
                                                 ("disk_bytes", 9)])))
    doc = statement(api, "person/alice", "2026-11")
    assert doc["currency"] == "EUR"
    amounts = {u["resource"]: u["amount"] for u in doc["lines"][0]["usage"]}
    assert amounts == {"cpu_seconds": "0.3600", "x-requests": "0.0070", "disk_bytes": None}
    assert doc["lines"][0]["amount"] == doc["totals"]["amount"] == "0.3670"
    bad = api.put(f"{API}/accounting/prices", json={"currency": "EUR", "prices": [
        {"resource": "x-a", "price": "1"}, {"resource": "x-a", "price": "2"}]})
    assert bad.status_code == 400 and bad.json["error"]["details"][0]["field"] == "prices[1]"
    assert api.get(f"{API}/accounting/prices").json == r.json


def test_open_incidents_repeated_across_reports_merge(world):
    api, a1 = world["api"], world["a1"]
    open_ = {"kind": "promise", "name": "check-port", "start": "2026-11-02T10:00:30Z",
             "detail": "connection refused"}
    for minute in range(3):
        post(api, "c1", report(f"c1:{minute}", minute, entry(a1, incidents=[open_])))
    closed = dict(open_, end="2026-11-02T10:03:10Z", detail="")
    post(api, "c1", report("c1:3", 3, entry(a1, incidents=[closed])))
    doc = statement(api, "person/alice", "2026-11")
    assert doc["totals"]["incidents"] == {"count": 1, "seconds": 160}
    usage = api.get(f"{API}/instances/{a1['id']}/usage",
                    query_string={"since": "2026-11-01", "until": "2026-11-02"}).json
    assert [(i["name"], i["start"], i["end"], i["seconds"]) for i in usage["incidents"]] == [
        ("check-port", "2026-11-02T10:00:30Z", "2026-11-02T10:03:10Z", 160)]
    # one still open counts until the end of the last report repeating it
    post(api, "c1", report("c1:4", 10, entry(a1, incidents=[
        {"kind": "instance", "name": "slow", "start": "2026-11-02T10:10:00Z"}])))
    assert statement(api, "person/alice", "2026-11-02")["totals"]["incidents"] == {
        "count": 2, "seconds": 220}


def test_a_destroyed_instance_keeps_its_history(world):
    api, a1 = world["api"], world["a1"]
    assert post(api, "c1", report("c1:1", 0, entry(a1, [("cpu_seconds", 2)]))).json["accepted"]
    assert api.delete(f"{API}/instances/{a1['id']}").status_code == 200
    pid = a1["placement"]["partition"]
    r = api.put(f"{API}/computers/c1/partitions/{pid}/status",
                json={"instance_id": a1["id"], "revision": a1["revision"] + 1,
                      "state": "destroyed"})
    assert r.status_code == 200 and r.json["placement"] is None
    # the node's report of the last interval, sent after the partition was freed
    assert post(api, "c1", report("c1:2", 1, entry(a1, [("cpu_seconds", 3)]))).json[
        "accepted"] is True
    usage = api.get(f"{API}/instances/{a1['id']}/usage",
                    query_string={"since": "2026-11-02", "until": "2026-11-02"}).json
    assert usage["destroyed"] is True and usage["reference"] == "a1"
    assert usage["owner"] == "person/alice" and usage["release"] == URL
    assert usage["totals"] == [{"resource": "cpu_seconds", "kind": "counter", "unit": "s",
                                "quantity": 5.0}]
    assert totals(statement(api, "person/alice", "2026-11")) == {"cpu_seconds": 5.0}
    # the partition is another instance's now: reports of the old one stay accepted
    # for its last interval, and the new one's are its own
    again = api.post(f"{API}/instances", json=instance_body(
        "a3", requester="person/alice", sla={"computer_guid": "c1"})).json
    if again["placement"]["partition"] == pid:
        assert post(api, "c1", report("c1:3", 2, entry(again, [("cpu_seconds", 1)]))).json[
            "accepted"]


# -- who reads what (certificates) ----------------------------------------------------------
def _usage_report(inst, rid, cpu):
    p = inst["placement"]
    return p["computer"], {"report_id": f"{p['computer']}:{rid}",
                           "start": "2026-11-02T10:00:00Z", "end": "2026-11-02T10:01:00Z",
                           "partitions": [{"partition": p["partition"],
                                           "instance_id": inst["id"],
                                           "usage": [{"resource": "cpu_seconds",
                                                      "quantity": cpu}]}]}


def test_each_reads_its_own_usage_and_an_admin_everyone(authz_world):
    w = authz_world
    for node, inst, cpu in (("node_x", w.a_root, 1), ("node_y", w.a_child, 2),
                            ("node_y", w.b_root, 4), ("node_x", w.m_root, 8)):
        cid, body = _usage_report(inst, inst["id"], cpu)
        w.ok(w.call(node, "POST", f"/computers/{cid}/usage", body))
    # node-x may not report for node-y's partitions (even naming its own computer's id)
    cid, body = _usage_report(w.b_root, "forged", 100)
    assert w.call("node_x", "POST", f"/computers/{cid}/usage", body).status_code == 403
    body["report_id"] = "node-x:forged"
    refused = w.call("node_x", "POST", "/computers/node-x/usage", body)
    assert refused.status_code == 400
    assert refused.json["error"]["details"][0]["field"] == "partitions[0].instance_id"

    def cpu(actor, query):
        doc = w.ok(w.call(actor, "GET", f"/statements?period=2026-11{query}"))
        return doc["owner"], totals(doc).get("cpu_seconds")
    assert cpu("person_a", "") == ("person/alice", 3)           # her tree: root and child
    assert cpu("person_b", "") == ("person/bob", 4)
    assert cpu("peer", "") == ("master/peer-1", 8)
    assert cpu("admin", "&peer=peer-1") == ("master/peer-1", 8)
    assert cpu("admin", "&owner=person/alice") == ("person/alice", 3)
    assert cpu("admin", "") == ("admin/root", None)
    assert w.call("person_b", "GET", "/statements?period=2026-11&owner=person/alice"
                  ).status_code == 403
    assert w.call("person_a", "GET", "/statements?period=2026-11&peer=peer-1"
                  ).status_code == 403
    assert w.call("peer", "GET", f"/instances/{w.a_root['id']}/usage").status_code == 404
    assert w.ok(w.call("person_a", "GET", f"/instances/{w.a_child['id']}/usage"
                       "?since=2026-11-01&until=2026-11-30"))["totals"][0]["quantity"] == 2
