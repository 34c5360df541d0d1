"""Lists that scale, on a real master (`slapfed master serve`, plain HTTP on loopback):
paging of GET /instances, /computers and /topology (stable order, cursors that survive
inserts made during a walk, limits, 400 naming the parameter), destroyed instances left
out unless asked for, and the retention period after which the master forgets them;
the CLI walks every page."""
import threading
import time

import pytest
import requests
from click.testing import CliRunner

from conftest import computer_body
from slapfed.cli.main import cli
from slapfed.client import MasterClient
from slapfed.core import paging

URL = "/srv/releases/hello/software.cfg"
API = "/api/v1"


def ready_master(master_server, *args, partitions=80):
    url = master_server(*args)
    client = MasterClient(url, requester="alice")
    client.register_computer(computer_body("c1", partitions))
    client.supply("c1", URL)
    return url, client


def get(url, path, **params):
    return requests.get(url + API + path, params=params, timeout=10)


def walk_ids(url, path, key, limit, between=None):
    """Ids of every item of list ``path``, page by page (``between(page_no)`` runs
    after each page), and the number of pages."""
    ids, cursor, pages = [], None, 0
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        page = get(url, path, **params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body[key]) <= limit
        ids += [item["id"] for item in body[key]]
        pages += 1
        if between is not None:
            between(pages)
        cursor = body["next"]
        if cursor is None:
            return ids, pages


def test_a_walk_gives_every_instance_once_in_id_order(master_server):
    url, client = ready_master(master_server)
    made = [client.request(f"web-{i:02d}", URL)["id"] for i in range(23)]
    ids, pages = walk_ids(url, "/instances", "instances", 5)
    assert ids == sorted(made) and pages == 5          # 5+5+5+5+3: the last says so
    first = get(url, "/instances").json()
    assert len(first["instances"]) == 23 and first["next"] is None   # default 100
    assert [i["id"] for i in client.list_instances()] == sorted(made)
    # by reference within one requester, its own cursor kind
    refs, cursor = [], None
    while True:
        body = get(url, "/instances", requester="alice", limit=4,
                   **({"cursor": cursor} if cursor else {})).json()
        refs += [i["reference"] for i in body["instances"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert refs == [f"web-{i:02d}" for i in range(23)]


def test_a_walk_survives_inserts_made_while_it_runs(master_server):
    """Another client requests instances while the walk goes on: every instance that
    existed before the walk is listed exactly once, nothing is listed twice."""
    url, client = ready_master(master_server)
    before = {client.request(f"old-{i:02d}", URL)["id"] for i in range(30)}
    writer = MasterClient(url, requester="bob")
    stop, added = threading.Event(), []

    def insert():
        n = 0
        while not stop.is_set() and n < 40:
            added.append(writer.request(f"new-{n:02d}", URL)["id"])
            n += 1

    inserted_between = []

    def between(page_no):          # and a few more between pages, for certain
        inserted_between.append(writer.request(f"between-{page_no}", URL)["id"])

    thread = threading.Thread(target=insert)
    thread.start()
    try:
        ids, pages = walk_ids(url, "/instances", "instances", 4, between)
    finally:
        stop.set()
        thread.join(30)
    assert pages >= 8
    assert len(ids) == len(set(ids))                   # nothing repeated
    assert before <= set(ids)                          # nothing that existed skipped
    assert set(ids) <= before | set(added) | set(inserted_between)
    assert ids == sorted(ids)


BAD_PARAMETERS = [
    ({"limit": "0"}, "limit"), ({"limit": str(paging.MAX_LIMIT + 1)}, "limit"),
    ({"limit": "ten"}, "limit"), ({"limit": "-3"}, "limit"),
    ({"cursor": "not a cursor"}, "cursor"), ({"cursor": "AAAA"}, "cursor"),
    ({"cursor": paging.make_cursor("elsewhere", "c1")}, "cursor"),
    ({"all": "maybe"}, "all"),
]


def test_a_bad_limit_cursor_or_flag_is_400_naming_it(master_server):
    url = master_server()
    checked = 0
    for params, field in BAD_PARAMETERS:
        for path in ("/instances", "/computers", "/topology"):
            if field == "all" and path != "/instances":
                continue
            r = get(url, path, **params)
            assert r.status_code == 400, (path, params, r.text)
            err = r.json()["error"]
            assert err["code"] == "invalid_input"
            assert [d["field"] for d in err["details"]] == [field], (path, params)
            checked += 1
    # a cursor of one list is refused by another
    cursor = get(url, "/computers", limit=1).json()["next"]
    assert cursor is None                  # no computer yet: nothing follows
    r = get(url, "/instances", cursor=paging.make_cursor("computers", "c1"))
    assert r.status_code == 400 and "another list" in r.json()["error"]["message"]
    assert checked == 22


def test_computers_and_topology_are_paged_too(master_server):
    url, client = ready_master(master_server, partitions=2)
    for i in range(11):
        client.register_computer(computer_body(f"n{i:02d}", 2))
    made = [client.request(f"web-{i}", URL)["id"] for i in range(2)]
    ids, pages = walk_ids(url, "/computers", "computers", 4)
    assert ids == sorted(["c1"] + [f"n{i:02d}" for i in range(11)]) and pages == 3
    assert [c["id"] for c in client.list_computers()] == ids
    # topology: computers, then instances, 5 items a page; peers/replicas on page one
    seen, cursor, pages = [], None, 0
    while True:
        body = get(url, "/topology", limit=5, **({"cursor": cursor} if cursor else {})).json()
        live = body["live"]
        assert len(live["computers"]) + len(live["instances"]) <= 5
        if pages == 0:      # this master's replication facts come with the first page
            assert live["replication"]["role"] == "primary"
            assert live["replication"]["epoch"] == 1
        else:
            assert "replication" not in live
        seen += [("c", c["id"]) for c in live["computers"]]
        seen += [("i", i["id"]) for i in live["instances"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [("c", c) for c in ids] + [("i", i) for i in sorted(made)]
    whole = client.topology()
    assert [c["id"] for c in whole["live"]["computers"]] == ids
    assert sorted(i["id"] for i in whole["live"]["instances"]) == sorted(made)


def test_destroyed_instances_are_left_out_unless_asked_for(master_server):
    url, client = ready_master(master_server)
    kept = client.request("kept", URL)
    gone = client.destroy(client.request("gone", URL)["id"])
    assert gone["requested_state"] == "destroyed"

    def refs(**params):
        return [i["reference"] for i in get(url, "/instances", **params).json()["instances"]]
    assert refs() == ["kept"]
    assert sorted(refs(all="1")) == ["gone", "kept"] and sorted(refs(all="true")) == \
        ["gone", "kept"]
    assert refs(all="0") == ["kept"]
    assert refs(state="destroyed") == ["gone"]
    assert [i["id"] for i in client.list_instances()] == [kept["id"]]
    assert len(client.list_instances(include_destroyed=True)) == 2
    assert client.find("gone")["id"] == gone["id"]     # a destroyed one can be started


def test_the_master_forgets_destroyed_instances_after_the_retention(master_server):
    """With --destroyed-retention 1s: an instance whose node confirmed its destruction
    is forgotten (its partition stays free, its requester may request the reference
    anew); one being destroyed (partition not freed yet) and a live one stay."""
    url, client = ready_master(master_server, "--destroyed-retention", "1s")
    live = client.request("live", URL)
    freed = client.request("freed", URL)
    pending = client.request("pending", URL)
    for inst in (freed, pending):
        client.destroy(inst["id"])
    p = freed["placement"]
    r = requests.put(f"{url}{API}/computers/c1/partitions/{p['partition']}/status",
                     json={"instance_id": freed["id"], "revision": freed["revision"] + 1,
                           "state": "destroyed"}, timeout=10)
    assert r.status_code == 200, r.text

    def listed():
        return {i["reference"] for i in client.list_instances(include_destroyed=True)}
    deadline = time.monotonic() + 20
    while "freed" in listed():
        assert time.monotonic() < deadline, "the destroyed instance was not forgotten"
        time.sleep(0.2)
    assert listed() == {"live", "pending"}
    assert get(url, f"/instances/{freed['id']}").status_code == 404
    comp = client.show_computer("c1")
    assert not [q for q in comp["partitions"] if q["instance"] == freed["id"]]
    again = client.request("freed", URL)
    assert again["id"] != freed["id"] and again["requested_state"] == "started"
    assert client.show(live["id"])["requested_state"] == "started"


def test_the_cli_walks_every_page_and_shows_destroyed_with_all(master_server,
                                                             monkeypatch):
    url, client = ready_master(master_server)
    for i in range(9):
        client.request(f"web-{i}", URL)
    client.destroy(client.find("web-8")["id"])
    for i in range(6):
        client.register_computer(computer_body(f"n{i}", 1))
    monkeypatch.setattr(MasterClient, "PAGE_SIZE", 2)       # many pages
    runner = CliRunner()
    out = runner.invoke(cli, ["list", "--master", url, "--as", "alice"])
    assert out.exit_code == 0, out.output
    shown = [line.split()[0] for line in out.output.splitlines()[1:]]
    assert shown == [f"web-{i}" for i in range(8)]
    out = runner.invoke(cli, ["list", "--master", url, "--as", "alice", "--all"])
    assert "web-8" in out.output and "destroyed" in out.output
    out = runner.invoke(cli, ["computer", "list", "--master", url])
    assert out.exit_code == 0, out.output
    assert [line.split()[0] for line in out.output.splitlines()[1:]] == \
        ["c1"] + [f"n{i}" for i in range(6)]
    out = runner.invoke(cli, ["topology", "show", "--master", url, "--json"])
    assert out.exit_code == 0, out.output
    assert "web-7" in out.output and "n5" in out.output
