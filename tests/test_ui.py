"""The dashboard's pure parts (slapfed.ui.guard, slapfed.ui.view) as tables, and its
Flask app against a fake client (no master, no browser): the token, Host and Origin
checks on every route, escaping of what the master says, the actions as the user."""
from __future__ import annotations

import json

import pytest

from slapfed.core.errors import Forbidden, InvalidInput, MasterUnreachable
from slapfed.ui import guard, server, view

TOKEN = "s3cret-token"
ALLOWED = guard.allowed_hosts("127.0.0.1", 8123)
HOST = "127.0.0.1:8123"


# -- guard -----------------------------------------------------------------------------
@pytest.mark.parametrize("given, ok", [
    (TOKEN, True), (None, False), ("", False), ("s3cret-toke", False), (TOKEN + "x", False),
    ("S3CRET-TOKEN", False), ("é", False),
])
def test_the_token_must_match_exactly(given, ok):
    assert guard.token_ok(TOKEN, given) is ok


def test_each_run_has_a_new_long_token():
    a, b = guard.new_token(), guard.new_token()
    assert a != b and len(a) >= 32


@pytest.mark.parametrize("text, parsed", [
    ("127.0.0.1:0", ("127.0.0.1", 0)), ("localhost:8080", ("localhost", 8080)),
    ("[::1]:9000", ("::1", 9000)), ("0.0.0.0:1", ("0.0.0.0", 1)),
])
def test_listen_addresses(text, parsed):
    assert guard.parse_listen(text) == parsed


@pytest.mark.parametrize("text", ["127.0.0.1", ":80", "127.0.0.1:x", "127.0.0.1:70000", ""])
def test_bad_listen_addresses_name_the_option(text):
    with pytest.raises(InvalidInput) as exc:
        guard.parse_listen(text)
    assert exc.value.details[0]["field"] == "listen"


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
    ("192.168.1.10", False), ("example.org", False), ("localhost.evil.example", False),
])
def test_only_loopback_is_loopback(host, loopback):
    assert guard.is_loopback(host) is loopback


def test_the_hosts_naming_the_server():
    assert ALLOWED == {"127.0.0.1:8123", "localhost:8123", "[::1]:8123"}
    assert guard.allowed_hosts("::1", 80) == {"[::1]:80", "127.0.0.1:80", "localhost:80"}
    assert guard.allowed_hosts("10.1.2.3", 80) == {"10.1.2.3:80"}


@pytest.mark.parametrize("origin, ok", [
    (None, True), ("http://127.0.0.1:8123", True), ("http://localhost:8123", True),
    ("http://127.0.0.1:8124", False), ("https://127.0.0.1:8123", False), ("null", False),
    ("http://evil.example:8123", False), ("http://127.0.0.1:8123/x", False), ("", False),
])
def test_origins(origin, ok):
    assert guard.origin_ok(origin, ALLOWED) is ok


def _refusal(method="GET", host=HOST, origin=None, fetch_site=None, token=TOKEN,
             header_token=None):
    found = guard.refusal(method=method, host=host, origin=origin, fetch_site=fetch_site,
                          token=token, header_token=header_token, expected=TOKEN,
                          allowed=ALLOWED)
    return None if found is None else found[0]


@pytest.mark.parametrize("kw, status", [
    ({}, None),
    ({"token": None, "header_token": TOKEN}, None),
    ({"host": "LOCALHOST:8123"}, None),
    ({"fetch_site": "same-origin"}, None),
    ({"fetch_site": "none"}, None),
    ({"token": None}, 403),
    ({"token": "wrong"}, 403),
    # DNS rebinding: the page's own name in Host
    ({"host": "evil.example:8123"}, 421),
    ({"host": None}, 421),
    ({"host": "127.0.0.1:8124"}, 421),
    # another page of this machine or elsewhere
    ({"origin": "http://evil.example"}, 403),
    ({"origin": "http://localhost:9999"}, 403),
    ({"fetch_site": "cross-site"}, 403),
    ({"fetch_site": "same-site"}, 403),          # another port of localhost
    # writes: the page's origin and the token in the header
    ({"method": "POST", "origin": "http://127.0.0.1:8123", "header_token": TOKEN}, None),
    ({"method": "POST", "origin": "http://127.0.0.1:8123"}, 403),      # token in query only
    ({"method": "POST", "header_token": TOKEN}, 403),                  # no Origin
    ({"method": "POST", "origin": "null", "header_token": TOKEN}, 403),
])
def test_who_is_refused(kw, status):
    assert _refusal(**kw) == status


# -- view ------------------------------------------------------------------------------
NOW = 1_700_000_000.0


@pytest.mark.parametrize("iso, text", [
    (None, "never"), ("garbage", "never"),
    ("2023-11-14T22:13:16+00:00", "4 s ago"), ("2023-11-14T22:10:20+00:00", "3 min ago"),
    ("2023-11-14T19:13:20", "3 h ago"), ("2023-11-09T22:13:20+00:00", "5 days ago"),
    ("2023-11-14T22:14:20+00:00", "0 s ago"),            # a clock ahead: not negative
])
def test_ages(iso, text):
    assert view.age(iso, NOW) == text


@pytest.mark.parametrize("url, name", [
    ("/srv/profiles/hello/software.cfg", "hello"),
    ("https://example.org/releases/cdn/software.cfg", "cdn"),
    ("https://example.org/x/release.cfg", "release.cfg"), ("software.cfg", "software.cfg"),
])
def test_software_names(url, name):
    assert view.software_name(url) == name


def _inst(**kw):
    base = {"id": "i-1", "reference": "web", "requester": "person/alice", "revision": 2,
            "requested_state": "started", "software_url": "/p/hello/software.cfg",
            "software_type": "default", "shared": False, "parent": None, "children": [],
            "host_instance": None, "placement": None, "delegation": None, "connection": {},
            "status": {"state": "started", "revision": 2, "reported_at": None,
                       "log_tail": "", "promises": []}}
    return {**base, **kw}


PLACED = {"computer": "c-1", "partition": "p0", "address": "10.0.0.2",
          "locality": {"host": "h", "lan": "lan-a", "country": "fr", "continent": "europe"}}


@pytest.mark.parametrize("inst, hops", [
    (_inst(placement=PLACED), ["here", "c-1/p0 (10.0.0.2)"]),
    (_inst(), ["here", "not placed yet"]),
    (_inst(shared=True, host_instance="i-9"), ["here", "shared on i-9"]),
    (_inst(delegation={"peer": "b", "state": "forwarded", "chain": []}), ["here", "b"]),
    (_inst(delegation={"peer": "b", "state": "forwarded", "chain": [
        {"master": "b"}, {"master": "c"}, {"computer": "c-7", "lan": "tokyo", "continent": "asia"}]}),
     ["here", "b", "c", "computer c-7 (lan tokyo, continent asia)"]),
])
def test_where_an_instance_is_served(inst, hops):
    assert view.chain(inst, "here") == hops


def test_only_http_urls_become_links():
    items = view.connection_items({"url": "http://10.0.0.2:8080/", "b": "javascript:alert(1)",
                                   "c": "https://x.example/a b", "n": 3})
    assert [(i["key"], i["href"]) for i in items] == [
        ("b", None), ("c", None), ("n", None), ("url", "http://10.0.0.2:8080/")]
    assert items[2]["value"] == "3"


def test_an_instance_row_says_what_is_asked_and_what_is_seen():
    r = view.instance_row(_inst(requested_state="stopped", placement=PLACED,
                                status={"state": "started", "revision": 1,
                                        "log_tail": "a\nb\n", "promises": [
                                            {"name": "port", "ok": True}]}), NOW, "m")
    assert (r["state"], r["requested"], r["settled"]) == ("started", "stopped", False)
    assert r["buttons"] == ("start", "destroy") and r["log_tail"] == ["a", "b"]
    assert view.instance_row(_inst(), NOW, "m")["settled"] is True


@pytest.mark.parametrize("requester, you, buttons", [
    ("person/alice", "person/alice", ("stop", "destroy")),
    ("0123abcd", "person/alice", ("stop", "destroy")),      # a child in alice's tree
    ("person/alice", "admin/root", ()),                     # the master would refuse
    ("person/alice", None, ("stop", "destroy")),
])
def test_buttons_only_where_the_user_may_act(requester, you, buttons):
    assert view.instance_row(_inst(requester=requester), NOW, "m", you)["buttons"] == buttons


def test_rows_put_destroyed_instances_last():
    rows = view.instance_rows([_inst(id="1", reference="a", requested_state="destroyed"),
                               _inst(id="2", reference="b")], NOW, "m")
    assert [r["reference"] for r in rows] == ["b", "a"]


def test_computers_and_peers():
    c = view.computer_row({"id": "c-1", "lan": "lan-a", "country": "fr", "partitions": [
        {"id": "p0", "instance": "i-1"}, {"id": "p1", "instance": None}],
        "lease": {"state": "expired"}, "last_contact": "2023-11-14T22:13:00+00:00"}, NOW)
    assert (c["where"], c["used"], c["free"], c["state"], c["last_contact"]) == (
        "fr / lan-a", 1, 1, "unknown", "20 s ago")
    p = view.peer_row({"name": "b", "link": "down", "last_error": "refused",
                       "last_contact": None, "forwards": {"forwarded": 2, "queued": 1},
                       "pending_forwards": 1}, NOW)
    assert (p["link"], p["lag"], p["forwards"], p["pending"]) == ("down", "never", 3, 1)


def test_a_users_picture_holds_their_instances_where_they_run():
    fed = view.federation(None, [_inst(placement=PLACED),
                                 _inst(id="i-2", reference="elsewhere",
                                       delegation={"peer": "b", "state": "forwarded"})], "m")
    assert fed.located == {"i-1": ("c-1", "p0")}
    assert set(fed.instances) == {"i-1", "i-2"}
    svg = view.picture(fed)
    assert svg.startswith("<svg") and "web" in svg and "c-1" in svg


# -- the app, against a fake client ----------------------------------------------------
class FakeClient:
    url = "https://master.example:8470"
    requester = None

    def __init__(self, instances=None, forbidden=("topology", "list_peers")):
        self.instances = instances if instances is not None else [_inst(placement=PLACED)]
        self.forbidden = set(forbidden)
        self.calls = []
        self.down = False

    def _maybe(self, name, value):
        self.calls.append(name)
        if self.down:
            raise MasterUnreachable("cannot reach the master")
        if name in self.forbidden:
            raise Forbidden(f"person/alice may not {name}")
        return value

    def health(self):
        return self._maybe("health", {"status": "ok", "name": "m"})

    def whoami(self):
        return self._maybe("whoami", {"principal": "person/alice",
                                      "development_mode": False})

    def list_instances(self, **filters):
        return self._maybe("list_instances", self.instances)

    def topology(self):
        return self._maybe("topology", None)

    def list_computers(self):
        return self._maybe("list_computers", [])

    def list_peers(self):
        return self._maybe("list_peers", [])

    def change_state(self, iid, state):
        self.calls.append(("change_state", iid, state))
        return {**_inst(), "requested_state": state}

    def destroy(self, iid):
        self.calls.append(("destroy", iid))
        return {**_inst(), "requested_state": "destroyed"}


@pytest.fixture
def app_of():
    made = []

    def make(client=None):
        dash = server.Dashboard(client or FakeClient(), interval=60)
        made.append(dash)
        app = server.create_app(dash, TOKEN, ALLOWED)
        return dash, app.test_client()
    yield make
    for d in made:
        d.stop()


def _get(c, path, **headers):
    return c.get(path, headers={"Host": HOST, **headers})


def test_the_page_shows_the_instance_and_says_what_is_not_shown(app_of):
    _dash, c = app_of()
    resp = _get(c, f"/?token={TOKEN}")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert 'data-reference="web"' in page and 'data-state="started"' in page
    assert "c-1/p0 (10.0.0.2)" in page and "<svg" in page
    assert "Not shown: person/alice may not list_peers." in page
    assert f'content="{TOKEN}"' in page
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/", "/events", "/picture.svg", "/static/dashboard.js",
                                  "/nowhere"])
def test_every_route_wants_the_token_and_this_host(app_of, path):
    _dash, c = app_of()
    assert _get(c, path).status_code == 403
    assert _get(c, f"{path}?token=nope").status_code == 403
    assert c.get(f"{path}?token={TOKEN}",
                 headers={"Host": "rebound.example:8123"}).status_code == 421
    assert _get(c, f"{path}?token={TOKEN}",
                Origin="http://evil.example").status_code == 403


def test_what_the_master_says_is_escaped(app_of):
    evil = _inst(reference="<script>alert(1)</script>", placement=PLACED,
                 connection={"x": "<img src=x onerror=alert(1)>"},
                 status={"state": "failed", "revision": 2, "log_tail": "</pre><b>x</b>",
                         "promises": []})
    _dash, c = app_of(FakeClient([evil]))
    page = _get(c, f"/?token={TOKEN}").get_data(as_text=True)
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_an_unreachable_master_keeps_the_last_answer_and_says_so(app_of):
    client = FakeClient()
    dash, c = app_of(client)
    dash.refresh()
    client.down = True
    dash.refresh()
    assert dash.snapshot.error and dash.snapshot.instances == client.instances
    assert "master unreachable" in dash.sections["status"]
    assert 'data-reference="web"' in dash.sections["instances"]


def test_a_refused_read_is_not_asked_again(app_of):
    client = FakeClient()
    dash, _c = app_of(client)
    dash.refresh()
    dash.refresh()
    assert client.calls.count("list_peers") == 1 and client.calls.count("list_computers") == 2
    assert client.calls.count("whoami") == 1


def test_the_event_stream_sends_the_sections_then_only_what_changed(app_of):
    client = FakeClient()
    dash, c = app_of(client)
    resp = _get(c, f"/events?token={TOKEN}")
    assert resp.mimetype == "text/event-stream"
    chunks = iter(resp.iter_encoded())
    event = next(chunks).decode()
    assert event.startswith("event: sections\ndata: ")
    sent = json.loads(event.split("data: ", 1)[1])
    assert set(sent) == set(server.SECTIONS)
    client.instances = [{**client.instances[0], "requested_state": "stopped",
                         "status": {**client.instances[0]["status"], "state": "stopped"}}]
    dash.refresh()
    changed = json.loads(next(chunks).decode().split("data: ", 1)[1])
    assert 'data-state="stopped"' in changed["instances"] and "peers" not in changed
    resp.close()


def _post(c, body, token=TOKEN, origin=f"http://{HOST}"):
    headers = {"Host": HOST}
    if origin:
        headers["Origin"] = origin
    if token:
        headers[guard.TOKEN_HEADER] = token
    return c.post("/action", json=body, headers=headers)


def test_actions_call_the_master_as_the_user(app_of):
    client = FakeClient()
    dash, c = app_of(client)
    dash.refresh()
    resp = _post(c, {"instance": "i-1", "action": "stop"})
    assert resp.status_code == 200 and "requested stopped" in resp.get_json()["message"]
    assert ("change_state", "i-1", "stopped") in client.calls
    assert _post(c, {"instance": "i-1", "action": "destroy"}).status_code == 200
    assert ("destroy", "i-1") in client.calls


@pytest.mark.parametrize("body, status", [
    ({"instance": "i-1", "action": "reboot"}, 400),
    ({"instance": "", "action": "stop"}, 400),
    ({"instance": "i-1", "action": "stop", "extra": 1}, 400),
    ([1], 400),
    ({"instance": "someone-elses", "action": "stop"}, 404),
])
def test_bad_actions_are_refused_and_do_nothing(app_of, body, status):
    client = FakeClient()
    dash, c = app_of(client)
    dash.refresh()
    resp = _post(c, body)
    assert resp.status_code == status and resp.get_json()["error"]["message"]
    assert not [x for x in client.calls if isinstance(x, tuple)]


@pytest.mark.parametrize("kw", [{"token": None}, {"origin": None},
                                {"origin": "http://evil.example"}])
def test_a_write_from_elsewhere_is_refused(app_of, kw):
    client = FakeClient()
    dash, c = app_of(client)
    dash.refresh()
    assert _post(c, {"instance": "i-1", "action": "stop"}, **kw).status_code == 403
    assert not [x for x in client.calls if isinstance(x, tuple)]


# -- the command line: refusals before anything is asked of the master -----------------
@pytest.mark.parametrize("args, says", [
    (["--listen", "0.0.0.0:0"], "0.0.0.0 is not a loopback address"),
    (["--listen", "192.168.1.10:8080"], "--allow-non-loopback"),
    (["--listen", "nonsense"], "is not of the form HOST:PORT"),
])
def test_slapfed_ui_refuses_other_addresses_than_loopback(args, says, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from slapfed.cli.main import cli
    monkeypatch.setenv("SLAPFED_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.setenv("SLAPFED_MASTER", "https://127.0.0.1:9")     # never reached
    done = CliRunner().invoke(cli, ["ui", *args])
    assert done.exit_code == 3, done.output
    assert says in done.output


# -- secrets sealed to the user: opened here, shown in the details only -----------------
def _sealed_world(tmp_path):
    """(client key file, an instance with a value sealed to it, one sealed to someone
    else, and a public URL)."""
    from cryptography.hazmat.primitives import serialization
    from test_zk import identity

    from slapfed.ca import seal

    mine, me = identity()
    _theirs, them = identity("person/bob")
    key_file = tmp_path / "identity.key"
    key_file.write_bytes(mine.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))

    def to(who, value, name):
        return seal.seal(value, seal.recipient_key(who["certificate"]),
                         f"connection/i-1/{name}")
    inst = _inst(placement=PLACED, connection={
        "url": "http://10.0.0.2:8080/", "password": to(me, "<hunter2>", "password"),
        "admin": to(me, "https://admin:pw@10.0.0.2/", "admin"),
        "other": to(them, "not yours", "other")})
    return str(key_file), inst


def test_the_opener_opens_what_is_sealed_to_the_user_once_per_text(tmp_path, monkeypatch):
    from slapfed.ca import seal

    key_file, inst = _sealed_world(tmp_path)
    opener = server.Opener(key_file)
    out = opener(inst)
    assert out["connection"]["password"] == "<hunter2>"
    assert out["connection"]["url"] == "http://10.0.0.2:8080/"
    assert out["sealed"] == ["admin", "other", "password"]
    assert set(out["unopened"]) == {"other"} and "does not open" in out["unopened"]["other"]
    assert inst["connection"]["password"].startswith("slapfed-sealed:1:")  # not changed
    calls, real = [], seal.open_sealed
    monkeypatch.setattr(seal, "open_sealed", lambda *a: calls.append(a) or real(*a))
    assert opener(inst) == out and calls == []          # the next poll opens nothing
    # moved to another instance, a value does not open there
    moved = opener({**inst, "id": "i-2"})
    assert set(moved["unopened"]) == {"admin", "other", "password"} and len(calls) == 3
    # without a key nothing opens, and the reason says so
    none = server.Opener(None)(inst)
    assert set(none["unopened"]) == {"admin", "other", "password"}
    assert "no key" in none["unopened"]["password"]


def test_an_opened_secret_shows_in_the_details_only_escaped_never_linked(tmp_path, app_of):
    key_file, inst = _sealed_world(tmp_path)
    dash, c = app_of(FakeClient([inst]))
    dash.opener = server.Opener(key_file)
    page = _get(c, f"/?token={TOKEN}").get_data(as_text=True)
    main_row, details = page.split('<tr class="more">', 1)
    assert "hunter2" not in main_row and "secret, in details" in main_row
    assert "sealed, does not open" in main_row
    assert "<code class=\"secret-value\">&lt;hunter2&gt;</code>" in details
    assert "https://admin:pw@10.0.0.2/" in details and 'href="https://admin' not in page
    assert 'href="http://10.0.0.2:8080/"' in main_row              # public: a link
    assert "not yours" not in page and "does not open with your key" in details
