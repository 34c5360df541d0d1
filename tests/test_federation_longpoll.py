"""The long poll peers follow their delegations with, GET /api/v1/federation/changes,
against a real master process over mutual TLS (HTTPS on loopback, a port chosen at run
time). Two peer masters, x and y, hold identities issued by its CA; each is answered
with the instances it requested only.

- malformed cursors, waits out of bounds and unknown parameters are refused with the
  canonical error body naming the parameter, before any waiting;
- ``wait=0`` answers at once; a long poll answers as soon as one of the caller's
  instances changes, and after ``wait`` seconds with nothing when none does (changes of
  the other peer do not wake it);
- the cursor of an answer never returns that answer's items again, and no change
  committed between or during polls is missed;
- a master that stops (SIGTERM, or SIGINT: Ctrl-C) answers its pending long polls at once
  with a clean 200, logs no traceback, and stops promptly.
"""
import os
import signal
import threading
import time
from dataclasses import dataclass

import pytest
from conftest import computer_body, start_master_process, stop_process

from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.client import MasterClient
from slapfed.master.federation import MAX_WAIT

pytestmark = pytest.mark.timeout(120)

URL = "/srv/releases/longpoll/software.cfg"
COMPUTER = "lp-comp"


@dataclass
class World:
    url: str
    base: object
    ca: CertificateAuthority

    def client(self, who: str) -> MasterClient:
        """A new client (its own HTTP session) acting as ``who``: ops (an admin), or
        the peer masters x and y."""
        d = self.base / who
        if not (d / "identity.crt").exists():
            identity = ids.admin("ops") if who == "ops" else ids.master(who)
            self.ca.issue_with_new_key(identity, d)
        return MasterClient(self.url, ca=str(d / "ca.crt"), cert=str(d / "identity.crt"),
                            key=str(d / "identity.key"))


def world_of(base, data, url) -> World:
    return World(url, base, CertificateAuthority(data / "ca"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("longpoll")
    data = base / "master"
    proc, url = start_master_process(str(data), secure=True)
    try:
        w = world_of(base, data, url)
        admin = w.client("ops")
        admin.register_computer(computer_body(COMPUTER, 60))
        admin.supply(COMPUTER, URL)
        w.client("x").request("x-base", URL)
        w.client("y").request("y-base", URL)
        yield w
    finally:
        stop_process(proc, timeout=15)


def changes(client: MasterClient, query: str = "", timeout: float = 30):
    """GET /federation/changes with a raw query string: (status, body, seconds)."""
    url = client.url + "/api/v1/federation/changes" + (f"?{query}" if query else "")
    t0 = time.monotonic()
    resp = client.session.get(url, verify=client.verify, cert=client.cert, timeout=timeout)
    return resp.status_code, resp.json(), time.monotonic() - t0


def cursor_now(client: MasterClient) -> str:
    """A cursor past every change of the caller so far."""
    status, body, _ = changes(client, "wait=0")
    assert status == 200 and len(body["cursor"]) == 16
    return body["cursor"]


def later(delay: float, action) -> threading.Thread:
    """Run ``action`` in a thread after ``delay`` seconds (the caller joins it)."""
    def run():
        time.sleep(delay)
        action()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def refused(status: int, body: dict, field: str) -> list:
    """The canonical error body of a 400 naming ``field``; returns its details."""
    assert status == 400, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details",
                                                          "request_id"}
    assert body["error"]["code"] == "invalid_input" and body["error"]["message"]
    assert field in [d["field"] for d in body["error"]["details"]]
    return body["error"]["details"]


# -- refused parameters -------------------------------------------------------------------
@pytest.mark.parametrize("since", [
    "abc",                          # too short
    "0" * 15, "0" * 17,             # one digit short, one too many
    "g" * 16,                       # the right length, not hex
    "0x" + "0" * 14,
    "0" * 14 + "%20%20",            # 14 hex digits padded with spaces to 16
    "%20" + "0" * 14 + "%0A",       # ... with a space and a newline
    "%C3%A9" * 16,                  # 16 non-ASCII characters
])
def test_a_malformed_cursor_is_refused_before_any_wait(world, since):
    status, body, took = changes(world.client("x"), f"since={since}&wait=5")
    details = refused(status, body, "since")
    assert [d["field"] for d in details] == ["since"]
    assert took < 2


@pytest.mark.parametrize("wait", ["0", "0.25", "1e-05", "1.1125369292536007e-308", "-0.0",
                                  "2E-1"])
def test_a_wait_written_as_a_json_number_is_taken(world, wait):
    status, body, took = changes(world.client("x"), f"wait={wait}")
    assert status == 200, body
    assert took < 2


@pytest.mark.parametrize("wait", ["-1", "-0.001", f"{MAX_WAIT + 1:g}", f"{MAX_WAIT + 0.5:g}",
                                  "nan", "NaN", "inf", "-inf", "1e400", "soon", "", "0x10",
                                  "1_0", "%201%20", "+1", "1."])
def test_a_wait_out_of_bounds_is_refused(world, wait):
    status, body, took = changes(world.client("x"), f"wait={wait}")
    details = refused(status, body, "wait")
    assert [d["field"] for d in details] == ["wait"]
    assert f"0..{MAX_WAIT:g}" in details[0]["problem"]
    assert took < 2


@pytest.mark.parametrize("query, unknown", [("cursor=abc", ["cursor"]),
                                            ("wait=1&timeout=5", ["timeout"]),
                                            ("Wait=1", ["Wait"]),
                                            ("since=&a=1&b=2", ["a", "b"])])
def test_an_unknown_parameter_is_refused(world, query, unknown):
    status, body, took = changes(world.client("x"), query)
    details = refused(status, body, unknown[0])
    assert [d["field"] for d in details] == unknown
    assert all("unknown parameter" in d["problem"] for d in details)
    assert took < 2


@pytest.mark.parametrize("query, field", [("wait=0&wait=70", "wait"),
                                           ("since=&since=zz", "since")])
def test_a_parameter_given_twice_is_refused(world, query, field):
    status, body, took = changes(world.client("x"), query)
    details = refused(status, body, field)
    assert any(d["field"] == field and "more than once" in d["problem"] for d in details)
    assert took < 2


def test_every_problem_is_listed(world):
    status, body, _ = changes(world.client("x"), "wait=nan&foo=1")
    refused(status, body, "foo")
    assert sorted(d["field"] for d in body["error"]["details"]) == ["foo", "wait"]


# -- waiting --------------------------------------------------------------------------------
def test_wait_zero_answers_at_once(world):
    x = world.client("x")
    cursor = cursor_now(x)
    for query in (f"since={cursor}&wait=0", f"since={cursor}"):    # 0 is the default
        status, body, took = changes(x, query)
        assert status == 200 and body == {"cursor": cursor, "instances": []}
        assert took < 1


def test_the_longest_wait_is_allowed_and_an_answer_with_items_does_not_wait(world):
    status, body, took = changes(world.client("x"), f"wait={MAX_WAIT:g}")
    assert status == 200 and took < 2
    assert "x-base" in [i["reference"] for i in body["instances"]]


def test_a_long_poll_answers_as_soon_as_an_instance_of_the_caller_changes(world):
    x = world.client("x")
    cursor = cursor_now(x)
    writer = world.client("x")
    made = {}
    t = later(1.0, lambda: made.update(writer.request("early", URL, parameters={"n": "1"})))
    try:
        status, body, took = changes(x, f"since={cursor}&wait=5")
    finally:
        t.join(10)
    assert status == 200
    assert [(i["id"], i["reference"], i["parameters"]) for i in body["instances"]] == \
        [(made["id"], "early", {"n": "1"})]
    assert 0.9 <= took < 3
    assert body["cursor"] > cursor


def test_a_long_poll_with_nothing_changed_answers_after_wait_with_nothing(world):
    x, y = world.client("x"), world.client("y")
    cursor = cursor_now(x)
    # meanwhile the other peer's instance changes: that must not wake x's poll
    t = later(0.5, lambda: y.request("y-base", URL, parameters={"woken": "no"}))
    try:
        status, body, took = changes(x, f"since={cursor}&wait=2")
    finally:
        t.join(10)
    assert status == 200 and body == {"cursor": cursor, "instances": []}
    assert 2 <= took < 3.5
    assert y.find("y-base")["parameters"] == {"woken": "no"}      # y's change did happen


# -- cursors ----------------------------------------------------------------------------------
def test_an_answer_is_not_repeated_and_changes_between_polls_are_kept(world):
    x = world.client("x")
    c0 = cursor_now(x)
    one = x.request("seq-1", URL, parameters={"n": "1"})
    status, body, _ = changes(x, f"since={c0}")
    assert status == 200 and [i["id"] for i in body["instances"]] == [one["id"]]
    c1 = body["cursor"]
    assert c1 > c0
    status, body, _ = changes(x, f"since={c1}")            # the same items, not again
    assert status == 200 and body == {"cursor": c1, "instances": []}
    # two changes committed while no poll runs: the next poll has both
    x.request("seq-1", URL, parameters={"n": "2"})
    two = x.request("seq-2", URL)
    status, body, _ = changes(x, f"since={c1}&wait=5")
    assert status == 200
    got = {i["reference"]: i for i in body["instances"]}
    assert sorted(got) == ["seq-1", "seq-2"]
    assert got["seq-1"]["parameters"] == {"n": "2"} and got["seq-2"]["id"] == two["id"]
    c2 = body["cursor"]
    assert c2 > c1
    status, body, _ = changes(x, f"since={c2}")
    assert status == 200 and body == {"cursor": c2, "instances": []}


def test_no_change_is_missed_while_writes_race_the_polls(world):
    """x's instances change every few milliseconds (and y's in between) while x follows
    them with long polls: the last state of each is seen, none twice."""
    x = world.client("x")
    cursor = cursor_now(x)
    refs = [f"race-{k}" for k in range(4)]
    last: dict[str, int] = {}
    done = threading.Event()
    errors = []

    def write():
        wx, wy = world.client("x"), world.client("y")
        try:
            for n in range(40):
                ref = refs[n % len(refs)]
                wx.request(ref, URL, parameters={"n": str(n)})
                last[ref] = n
                if n % 5 == 0:
                    wy.request("y-race", URL, parameters={"n": str(n)})
                time.sleep(0.02)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=write, daemon=True)
    t.start()
    seen: dict[str, int] = {}
    versions = []
    polls = 0
    try:
        while True:
            finished = done.is_set()          # read before the poll: a last one follows
            status, body, _ = changes(x, f"since={cursor}&wait={0 if finished else 1}")
            assert status == 200, body
            polls += 1
            for inst in body["instances"]:
                assert inst["requester"] == "master/x"
                versions.append((inst["id"], inst["revision"]))
                seen[inst["reference"]] = int(inst["parameters"]["n"])
            assert body["cursor"] >= cursor
            cursor = body["cursor"]
            if finished:
                break
    finally:
        t.join(30)
    assert not errors, errors
    assert seen == last                                   # every last state arrived
    assert len(versions) == len(set(versions))            # and nothing came twice
    assert polls >= 10                                    # polls did interleave writes
    status, body, _ = changes(x, f"since={cursor}")
    assert status == 200 and body["instances"] == []


def test_each_peer_is_answered_with_its_own_instances_only(world):
    admin, x, y = world.client("ops"), world.client("x"), world.client("y")
    x.request("mine", URL)
    y.request("mine", URL)                 # the same reference, another requester
    for peer in (x, y):
        status, body, _ = changes(peer)
        assert status == 200
        principal = peer.principal()
        assert {i["requester"] for i in body["instances"]} == {principal}
        assert sorted(i["id"] for i in body["instances"]) == \
            sorted(i["id"] for i in admin.list_instances(requester=principal))
    # a cursor only filters by time: x's cursor given by y shows y nothing of x's
    status, body, _ = changes(y, f"since={cursor_now(x)}")
    assert status == 200
    assert all(i["requester"] == "master/y" for i in body["instances"])


# -- shutdown ------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_a_stopping_master_answers_its_long_polls_at_once(tmp_path, sig):
    data = tmp_path / "master"
    proc, url = start_master_process(str(data), secure=True)
    try:
        x = world_of(tmp_path, data, url).client("x")
        answer = {}

        def follow():
            try:
                answer["status"], answer["body"], _ = changes(x, "wait=30")
            except Exception as exc:  # noqa: BLE001 - reported below
                answer["error"] = exc

        poll = threading.Thread(target=follow, daemon=True)
        poll.start()
        time.sleep(1.0)
        assert poll.is_alive()                        # the poll waits at the master
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        poll.join(10)
        answered = time.monotonic() - t0
        proc.wait(15)
        stopped = time.monotonic() - t0
    finally:
        stop_process(proc)
    assert answer, f"the pending long poll was not answered {answered:.1f} s after SIGTERM"
    assert answer.get("status") == 200 and answer["body"]["instances"] == [], answer
    assert answered < 1.5
    log = (data / "serve.log").read_text()
    assert "Traceback" not in log and "[ERROR]" not in log, log[-3000:]
    # gunicorn's grace period is 10 s: the master did not wait for the poll's 30 s
    assert proc.returncode == 0 and stopped < 6
