"""The node's usage reporter (node.usage_report): its spool against a real HTTP server
that drops answers, and its reports taken by a real master (create_app over
FileStorage, served by werkzeug in a thread)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slapfed.client import MasterClient
from slapfed.node.usage import parse_iso
from slapfed.node.usage_report import UsageReporter

pytestmark = pytest.mark.timeout(120)


class Receiver:
    """A real HTTP server taking POST /api/v1/computers/<cid>/usage: it keeps every
    report id it accepted (a second time: a duplicate), and can drop the answer (the
    request is read, the connection closed without a word) or refuse."""

    def __init__(self):
        self.ids: list[str] = []
        self.bodies: list[dict] = []
        self.accepted: set = set()
        self.drop = 0
        self.refuse = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.ids.append(body["report_id"])
                receiver.bodies.append(body)
                if receiver.refuse:
                    return self._answer(400, {"error": {"code": "invalid_input",
                                                        "message": "no", "details": []}})
                duplicate = body["report_id"] in receiver.accepted
                receiver.accepted.add(body["report_id"])
                if receiver.drop:
                    receiver.drop -= 1
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._answer(200, {"accepted": not duplicate, "duplicate": duplicate})

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _partition(tmp_path, pid="p0"):
    path = tmp_path / "partitions" / pid
    (path / "var").mkdir(parents=True, exist_ok=True)
    (path / "data").write_bytes(b"d" * 20_000)
    return str(path)


def _reporter(tmp_path, parts, **kw):
    return UsageReporter(str(tmp_path / "usage"), "c1", lambda: parts, **kw)


T = float(int(time.time()))


def test_a_lost_answer_means_the_same_report_again_and_the_spool_empties_once_acked(
        tmp_path, receiver):
    parts = {"p0": ("i1", None, _partition(tmp_path), frozenset())}
    rep = _reporter(tmp_path, parts)
    client = MasterClient(receiver.url, timeout=5)
    assert rep.cut(T) is None                          # the first cut starts an interval
    first = rep.cut(T + 60)
    assert os.path.basename(first) == "000000000001.json" and rep.pending()
    receiver.drop = 1
    assert rep.flush(client) == 0                      # the answer was lost: kept
    assert rep.pending() == ["000000000001.json"]
    assert rep.flush(client) == 1                      # sent again, same id: acknowledged
    assert rep.pending() == []
    assert receiver.ids == ["c1:%s.1" % rep.meter.token] * 2
    rep.cut(T + 120)
    assert rep.flush(client) == 1
    assert receiver.ids[-1].endswith(".2")
    # the second interval starts where the first ended: nothing measured twice
    assert receiver.bodies[0] == receiver.bodies[1]
    assert receiver.bodies[2]["start"] == receiver.bodies[1]["end"]


def test_a_master_down_never_blocks_and_the_spool_keeps_the_newest(tmp_path, caplog):
    parts = {"p0": ("i1", None, _partition(tmp_path), frozenset())}
    rep = _reporter(tmp_path, parts, spool_limit=3)
    down = MasterClient("http://127.0.0.1:9", timeout=2)      # nothing listens there
    rep.cut(T)
    with caplog.at_level(logging.WARNING, "slapfed.node.usage"):
        for i in range(1, 6):
            rep.cut(T + 60 * i)
            started = time.monotonic()
            assert rep.flush(down) == 0
            assert time.monotonic() - started < 3
    assert rep.pending() == [f"{n:012d}.json" for n in (3, 4, 5)]
    assert rep.dropped == 2
    assert "dropped the 1 oldest (2 dropped" in caplog.text
    ends = [json.load(open(os.path.join(rep.spool, n)))["end"] for n in rep.pending()]
    assert [parse_iso(e) for e in ends] == [T + 180, T + 240, T + 300]


def test_a_report_spooled_before_its_state_was_saved_is_not_measured_again(tmp_path):
    parts = {"p0": ("i1", None, _partition(tmp_path), frozenset())}
    rep = _reporter(tmp_path, parts)
    rep.cut(T)
    saved = tmp_path / "state-before.json"
    shutil.copy(rep.state_file, saved)
    rep.cut(T + 60)                                    # spooled report 1 ...
    shutil.copy(saved, rep.state_file)                 # ... but the node died before saving
    again = _reporter(tmp_path, parts)
    assert again.meter.seq == 2 and again.meter.last_end == T + 60
    path = again.cut(T + 61)            # from where report 1 ended, on a new baseline
    report = json.load(open(path))
    assert report["report_id"].endswith(".2")
    assert parse_iso(report["start"]) == T + 60


def test_a_refused_report_is_set_aside_and_the_next_goes(tmp_path, receiver):
    parts = {"p0": ("i1", None, _partition(tmp_path), frozenset())}
    rep = _reporter(tmp_path, parts)
    client = MasterClient(receiver.url, timeout=5)
    rep.cut(T)
    rep.cut(T + 60)
    receiver.refuse = True
    assert rep.flush(client) == 0
    assert rep.pending() == [] and os.listdir(rep.refused) == ["000000000001.json"]
    receiver.refuse = False
    rep.cut(T + 120)
    assert rep.flush(client) == 1


# -- against a real master -----------------------------------------------------------------
@pytest.fixture
def master(tmp_path):
    from werkzeug.serving import WSGIRequestHandler, make_server

    from slapfed.master import close_app, create_app
    from slapfed.store import open_db

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):
            pass

    db = open_db(None, str(tmp_path / "master"))
    app = create_app({"INSECURE": True, "DB": db})
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield url
    finally:
        server.shutdown()
        close_app(app)
        db.close()


def test_a_real_master_takes_the_reports_once(tmp_path, master):
    from conftest import SOFTWARE_URL, computer_body

    alice = MasterClient(master, requester="alice")
    alice.register_computer(computer_body("c1", partitions=2))
    alice.supply("c1", SOFTWARE_URL)
    inst = alice.request("acct-1", SOFTWARE_URL)
    pid = inst["placement"]["partition"]
    path = _partition(tmp_path, pid)
    with open(os.path.join(path, "var", "usage.jsonl"), "w") as fh:
        fh.write('{"resource": "x-requests", "quantity": 7}\nnot json\n')
    rep = _reporter(tmp_path, {pid: (inst["id"], None, path, frozenset())})
    now = float(int(time.time()))
    rep.cut(now - 120)
    rep.cut(now - 60)
    with open(os.path.join(path, "var", "usage.jsonl"), "a") as fh:
        fh.write('{"resource": "x-requests", "quantity": 5}\n')
    rep.cut(now)
    node = MasterClient(master, timeout=10)
    assert rep.flush(node) == 2
    spooled = rep.meter.seq - 1
    assert spooled == 2
    usage = alice.instance_usage(inst["id"])
    totals = {u["resource"]: u["quantity"] for u in usage["totals"]}
    assert totals["x-requests"] == 12
    assert totals["disk_bytes"] >= 20_000
    assert rep.meter.bad_lines == 1
    # the same report again: a duplicate, nothing counted twice
    body = json.loads(json.dumps({"report_id": f"c1:{rep.meter.token}.1",
                                  "start": "2020-01-01T00:00:00Z",
                                  "end": "2020-01-01T00:01:00Z", "partitions": []}))
    assert node.report_usage("c1", body) == {"accepted": False, "duplicate": True}
    again = {u["resource"]: u["quantity"]
             for u in alice.instance_usage(inst["id"])["totals"]}
    assert again["x-requests"] == 12
