"""The cdn sample (slapfed.samples.cdn): table tests of its pure half (site table,
routing, cache policy, the cache), then the proxy itself over loopback, in front of
small origins (conftest) started by the test on ports chosen at run time."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time

import pytest
from conftest import http_fetch as fetch

from slapfed.samples import cdn

FRONT = "http://127.0.0.2:10000/"
NOW = 1_700_000_000.0


def shared(sid, reference=None, **params):
    return {"id": sid, "reference": reference or sid, "parameters": params}


# -- the site table ---------------------------------------------------------------------
@pytest.mark.parametrize("entries, previous, served, errors", [
    ([shared("i-1", "shop", backend="http://b1/")], {}, {"shop": "i-1"}, {}),
    ([shared("i-1", "Shop 1", site="a", backend="https://b1:8443/base/")], {},
     {"a": "i-1"}, {}),
    ([shared("i-1", "a")], {}, {}, {"i-1": "parameter 'backend' is required"}),
    ([shared("i-1", "a", backend="ftp://b1/")], {}, {}, {"i-1": "not an http(s) URL"}),
    ([shared("i-1", "a", backend="http://b1/?x=1")], {}, {}, {"i-1": "without query"}),
    ([shared("i-1", "a", backend=["http://b1/"])], {}, {}, {"i-1": "must be a URL string"}),
    ([shared("i-1", "Shop 1", backend="http://b1/")], {}, {},
     {"i-1": "the reference (the default site) 'Shop 1' is not a site name"}),
    ([shared("i-1", "a", site="-a", backend="http://b1/")], {}, {},
     {"i-1": "parameter 'site' '-a' is not a site name"}),
    ([shared("i-2", "x", site="a", backend="http://b2/"),
      shared("i-1", "y", site="a", backend="http://b1/")], {}, {"a": "i-1"},
     {"i-2": "site 'a' is already served"}),
    ([shared("i-2", "x", site="a", backend="http://b2/"),
      shared("i-1", "y", site="a", backend="http://b1/")], {"a": "i-2"}, {"a": "i-2"},
     {"i-1": "site 'a' is already served"}),
    ([shared("i-1", "a", domain="Shop.Example.", backend="http://b1/"),
      shared("i-2", "b", domain="shop.example", backend="http://b2/")], {}, {"a": "i-1"},
     {"i-2": "domain 'shop.example' is already served"}),
    ([shared("i-1", "a", backend="http://b1/"),
      shared("i-2", "b", domain="a", backend="http://b2/")], {}, {"a": "i-1"},
     {"i-2": "domain 'a' is already served"}),
    ([shared("i-1", "a", domain="not a host", backend="http://b1/")], {}, {},
     {"i-1": "parameter 'domain' 'not a host' is not a host name"}),
    ([{"id": "i-1", "reference": "a", "parameters": "oops"}], {}, {},
     {"i-1": "not a JSON object"}),
], ids=["site-defaults-to-reference", "explicit-site-and-base-path", "backend-missing",
        "backend-not-http", "backend-with-query", "backend-not-a-string",
        "reference-is-no-site-name", "bad-site-name", "lowest-id-wins-a-new-name",
        "previous-owner-keeps-its-site", "domain-taken", "domain-is-another-site",
        "bad-domain", "parameters-not-an-object"])
def test_build_sites(entries, previous, served, errors):
    sites, connections = cdn.build_sites(entries, FRONT, previous)
    assert {name: site.instance_id for name, site in sites.items()} == served
    assert set(connections) == {e["id"] for e in entries}
    for sid, problem in errors.items():
        assert problem in connections[sid]["error"] and "url" not in connections[sid]
    for name, sid in served.items():
        assert connections[sid]["url"] == f"{FRONT}{name}/"
        assert connections[sid]["site"] == name
        assert connections[sid]["backend"] == sites[name].backend


def test_connections_of_a_site_name_the_domain_and_survive_the_table_file():
    sites, connections = cdn.build_sites(
        [shared("i-1", "a", backend="http://b1/", domain="Shop.Example")], FRONT)
    assert connections == {"i-1": {"url": FRONT + "a/", "site": "a", "backend": "http://b1/",
                                   "domain": "shop.example"}}
    again = cdn.sites_from_json(json.loads(json.dumps(cdn.table_json(sites))))
    assert again == sites and cdn.owners(again) == {"a": "i-1"}
    with pytest.raises(ValueError):
        cdn.sites_from_json({"sites": {"a": {"backend": "nope"}}})


# -- routing ----------------------------------------------------------------------------
ROUTES = cdn.Routes(cdn.build_sites([shared("i-a", "a", backend="http://b1/"),
                                     shared("i-b", "b", backend="http://b2/",
                                            domain="www.b.example")], FRONT)[0])


@pytest.mark.parametrize("host, raw_path, site, path", [
    ("127.0.0.2:10000", "/a/x/y?q=1", "a", "/x/y?q=1"),
    ("127.0.0.2", "/a", "a", "/"),
    ("127.0.0.2", "/a?q=1", "a", "/?q=1"),
    ("A:8080", "/b/x", "a", "/b/x"),
    ("www.B.example.", "/x", "b", "/x"),
    (None, "/b/", "b", "/"),
    ("127.0.0.2", "/c/x", None, None),
    ("127.0.0.2", "/", None, None),
    ("[::1]:80", "/ab/", None, None),
], ids=["path-prefix", "bare-prefix", "bare-prefix-with-query", "host-wins-over-path",
        "domain-any-case-final-dot", "no-host-header", "unknown-site", "root", "ipv6-host"])
def test_routes(host, raw_path, site, path):
    found = ROUTES.route(host, raw_path)
    if site is None:
        assert found is None
    else:
        assert (found[0].name, found[1]) == (site, path)


# -- cache policy -----------------------------------------------------------------------
HTTP_DATE_IN_30S = "Tue, 14 Nov 2023 22:13:50 GMT"   # NOW + 30 s


@pytest.mark.parametrize("method, status, request_headers, response_headers, ttl", [
    ("GET", 200, [], [], 60.0),
    ("HEAD", 200, [], [], 60.0),
    ("POST", 200, [], [], 0.0),
    ("GET", 404, [], [], 0.0),
    ("GET", 200, [], [("Cache-Control", "max-age=10")], 10.0),
    ("GET", 200, [], [("cache-control", "public, max-age=10, s-maxage=20")], 20.0),
    ("GET", 200, [], [("Cache-Control", "max-age=0")], 0.0),
    ("GET", 200, [], [("Cache-Control", "no-store")], 0.0),
    ("GET", 200, [], [("Cache-Control", "private, max-age=100")], 0.0),
    ("GET", 200, [], [("Cache-Control", 'no-cache="Set-Cookie"')], 0.0),
    ("GET", 200, [], [("Cache-Control", "public"), ("Cache-Control", "no-cache")], 0.0),
    ("GET", 200, [("Cache-Control", "no-store")], [], 0.0),
    ("GET", 200, [], [("Vary", "*")], 0.0),
    ("GET", 200, [], [("Set-Cookie", "id=1")], 0.0),
    ("GET", 200, [("Authorization", "Basic eA==")], [("Cache-Control", "max-age=5")], 0.0),
    ("GET", 200, [("Authorization", "Basic eA==")], [("Cache-Control", "s-maxage=5")], 5.0),
    ("GET", 200, [], [("Expires", HTTP_DATE_IN_30S)], 30.0),
    ("GET", 200, [], [("Expires", "0")], 0.0),
    ("GET", 200, [], [("Cache-Control", "max-age=7"), ("Expires", "0")], 7.0),
    ("GET", 200, [], [("Cache-Control", "max-age=soon")], 0.0),
], ids=["silent-backend-default-ttl", "head", "post", "not-200", "max-age",
        "s-maxage-wins", "max-age-0", "no-store", "private", "qualified-no-cache",
        "directives-over-two-headers", "client-no-store", "vary-star", "set-cookie",
        "authorization-private-by-default", "authorization-with-s-maxage", "expires",
        "invalid-expires", "max-age-beats-expires", "max-age-not-a-number"])
def test_response_ttl(method, status, request_headers, response_headers, ttl):
    assert cdn.response_ttl(method, status, request_headers, response_headers, 60.0,
                            NOW) == pytest.approx(ttl)


@pytest.mark.parametrize("headers, allowed", [
    ([], True),
    ([("Cache-Control", "max-age=60")], True),
    ([("Cache-Control", "no-cache")], False),
    ([("Cache-Control", "no-store")], False),
    ([("Cache-Control", "max-age=0")], False),
    ([("Pragma", "no-cache")], False),
], ids=["plain", "max-age", "no-cache", "no-store", "max-age-0", "pragma"])
def test_request_may_use_cache(headers, allowed):
    assert cdn.request_may_use_cache(headers) is allowed


def test_cache_expires_evicts_least_recently_used_and_honours_vary():
    cache = cdn.ResponseCache(max_bytes=10, max_entry=6)

    def entry(body, ttl=60):
        return cdn.Entry(200, [], body, NOW, ttl)

    assert cache.put("a", entry(b"aaaa")) and cache.put("b", entry(b"bbbb"))
    assert not cache.put("big", entry(b"x" * 7))           # larger than one entry may be
    assert cache.get("a", [], NOW + 1).body == b"aaaa"     # a is now the most recent
    cache.put("c", entry(b"cccc"))                         # 12 bytes > 10: b goes
    assert cache.get("b", [], NOW + 1) is None and cache.size == 8
    cache.put("short", entry(b"s", ttl=5))
    assert cache.get("short", [], NOW + 4) and cache.get("short", [], NOW + 5) is None
    cache.put("v", entry(b"gz"), [("Vary", "Accept-Encoding")], [("Accept-Encoding", "gzip")])
    assert cache.get("v", [("accept-encoding", "gzip")], NOW)
    assert cache.get("v", [], NOW) is None


@pytest.mark.parametrize("new, stale", [
    ({"a": ("http://b1/", None), "b": ("http://b2/", "b.example")}, set()),
    ({"a": ("http://b1/", None)}, {"b"}),
    ({"a": ("http://b9/", None), "b": ("http://b2/", "b.example")}, {"a"}),
    ({"a": ("http://b1/", None), "b": ("http://b2/", "other.example")}, {"b"}),
    ({"a": ("http://b1/", None), "b": ("http://b2/", "b.example"),
      "c": ("http://b3/", None)}, set()),
], ids=["same", "removed", "backend-changed", "domain-changed", "added"])
def test_a_new_table_makes_stale_only_the_sites_whose_route_changed(new, stale):
    old = {"a": cdn.Site("a", "http://b1/", "i-a"),
           "b": cdn.Site("b", "http://b2/", "i-b", domain="b.example")}
    new = {n: cdn.Site(n, backend, f"i-{n}-new", domain=domain)     # owners may change
           for n, (backend, domain) in new.items()}
    assert cdn.stale_sites(old, new) == stale


def test_the_cache_drops_the_entries_of_given_sites():
    cache = cdn.ResponseCache()
    for site in ("a", "b"):
        for path in ("/x", "/y"):
            cache.put(("GET", site, path), cdn.Entry(200, [], b"body", NOW, 60))
    assert cache.drop_sites({"a", "nope"}) == 2
    assert sorted(cache.entries) == [("GET", "b", "/x"), ("GET", "b", "/y")]
    assert cache.size == 8


def write_table(path, sites: dict) -> None:
    """Replace ``path`` atomically, as the recipe does."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(cdn.table_json(sites), fh)
    os.replace(tmp, path)


def test_the_table_file_is_reloaded_when_it_changes_and_kept_when_unusable(tmp_path):
    path = tmp_path / "sites.json"
    one = {"a": cdn.Site("a", "http://b1/", "i-a")}
    write_table(path, one)
    table = cdn.TableFile(str(path))
    assert table.load() == one and table.error is None
    first = table.digest
    assert table.poll() is None                              # unchanged: nothing to do
    write_table(path, one)
    assert table.poll() is None and table.digest == first    # rewritten, same content
    two = {**one, "b": cdn.Site("b", "http://b2/", "i-b")}
    write_table(path, two)
    assert table.poll() == two and table.digest != first
    path.write_text('{"sites": {"c": {"backend": "nope"}}}')
    assert table.poll() is None and "site 'c' of the table is malformed" in table.error
    path.unlink()
    assert table.poll() is None and "No such file" in table.error
    write_table(path, two)                                   # back as it was: no change
    assert table.poll() is None and table.error is None
    with pytest.raises(ValueError, match="cannot read"):
        cdn.TableFile(str(tmp_path / "absent.json")).load()


# -- the proxy over loopback ------------------------------------------------------------
class Front:
    """slapfed.samples.cdn's app served on 127.0.0.1 (a port chosen at bind time) by an
    event loop in a thread; ``clock`` is the proxy's, so tests can move time."""

    def __init__(self, sites: dict, ttl: float = 60.0, table=None, reload_interval=0.5,
                 **usage):
        from aiohttp import web

        self.now = NOW
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.cache = cdn.ResponseCache()
        app = cdn.make_app(sites, ttl, self.cache, clock=lambda: self.now, timeout=5,
                           table=table, reload_interval=reload_interval, **usage)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)

        async def start():
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            return self.runner.addresses[0][1]

        try:
            self.port = self._run(start())
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{self.port}/"

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self):
        if self.loop.is_closed():
            return                       # stopped already
        try:
            self._run(self.runner.cleanup())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture
def front(origins):
    """Two origins and the proxy over sites a, b (domain www.b.example) and down."""
    one, two = origins("one"), origins("two")
    closed = socket.socket()            # bound, never listening: connections are refused
    closed.bind(("127.0.0.1", 0))
    made = []
    try:
        sites, _ = cdn.build_sites([
            shared("i-a", "a", backend=one.url),
            shared("i-b", "b", backend=two.url + "base/", domain="www.b.example"),
            shared("i-d", "down", backend=f"http://127.0.0.1:{closed.getsockname()[1]}/"),
        ], FRONT)
        made.append(Front(sites))
        yield made[0], one, two
    finally:
        for f in made:
            f.stop()
        closed.close()


def test_second_get_is_a_hit_until_the_ttl_runs_out(front):
    proxy, one, _ = front
    status, headers, body = fetch(proxy.url + "a/page?x=1")
    assert status == 200 and headers["X-Cache"] == "MISS"
    assert json.loads(body) == {"backend": "one", "path": "/page?x=1", "hits": 1,
                                "forwarded_host": f"127.0.0.1:{proxy.port}"}
    status, headers, again = fetch(proxy.url + "a/page?x=1")
    assert status == 200 and headers["X-Cache"] == "HIT" and again == body
    assert one.hits == 1
    status, headers, head = fetch(proxy.url + "a/page?x=1", method="HEAD")
    assert headers["X-Cache"] == "HIT" and head == b""
    assert headers["Content-Length"] == str(len(body))
    # the client may bypass the cache; the default TTL (60 s) ends it for everyone
    assert fetch(proxy.url + "a/page?x=1",
                 headers={"Cache-Control": "no-cache"})[1]["X-Cache"] == "MISS"
    proxy.now += 61
    status, headers, late = fetch(proxy.url + "a/page?x=1")
    assert headers["X-Cache"] == "MISS" and json.loads(late)["hits"] == 3


def test_no_store_is_never_served_from_the_cache(front):
    proxy, one, _ = front
    for _ in range(2):
        status, headers, _body = fetch(proxy.url + "a/private")
        assert status == 200 and headers["X-Cache"] == "MISS"
        assert headers["Cache-Control"] == "no-store"
    assert one.hits == 2


def test_sites_are_routed_by_path_and_by_host(front):
    proxy, one, two = front
    by_path = json.loads(fetch(proxy.url + "b/x")[2])
    assert by_path["backend"] == "two" and by_path["path"] == "/base/x"
    by_host = fetch(proxy.url + "x", host="WWW.B.example")
    assert json.loads(by_host[2])["path"] == "/base/x" and by_host[1]["X-Cache"] == "HIT"
    assert json.loads(fetch(proxy.url + "b/x", host="a")[2])["backend"] == "one"
    assert two.hits == 1


def test_other_methods_pass_through(front):
    proxy, one, _ = front
    for n in (1, 2):
        status, headers, body = fetch(proxy.url + "a/form", method="POST", data=b"k=v")
        assert (status, body, headers["X-Cache"]) == (201, b"posted k=v", "MISS")
        assert one.hits == n


def test_unknown_site_is_a_404_that_says_how_to_reach_a_site(front):
    proxy, _, _ = front
    status, headers, body = fetch(proxy.url + "nope/x")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == "unknown_site"
    assert "'/nope/x'" in error["message"] and "/<site>/" in error["message"]


def test_unreachable_backend_is_a_502_naming_the_site(front):
    proxy, _, _ = front
    status, _, body = fetch(proxy.url + "down/x")
    error = json.loads(body)["error"]
    assert status == 502 and error["code"] == "backend_unreachable"
    assert "site 'down'" in error["message"]
    assert fetch(proxy.url + "a/still-fine")[0] == 200


def test_health_path_answers_whatever_the_host(front):
    proxy, _, _ = front
    for host in (None, "a"):
        status, _, body = fetch(proxy.url + ".well-known/slapfed-cdn", host=host)
        assert status == 200 and json.loads(body) == {"status": "ok", "sites": 3,
                                                      "pid": os.getpid(), "table": None}


def test_the_front_follows_its_table_and_keeps_the_cache_of_unchanged_sites(origins,
                                                                             tmp_path,
                                                                             capsys):
    one, two = origins("one"), origins("two")
    path = tmp_path / "sites.json"
    write_table(path, {"a": cdn.Site("a", one.url, "i-a")})
    table = cdn.TableFile(str(path))
    proxy = Front(table.load(), table=table, reload_interval=0.05)
    try:
        def served_table():
            return json.loads(fetch(proxy.url + ".well-known/slapfed-cdn")[2])

        def wait_for_table():
            deadline = time.monotonic() + 10
            while served_table()["table"] != cdn.table_digest(path.read_bytes()):
                assert time.monotonic() < deadline, served_table()
                time.sleep(0.02)

        assert fetch(proxy.url + "a/page")[1]["X-Cache"] == "MISS"
        assert fetch(proxy.url + "a/page")[1]["X-Cache"] == "HIT"
        assert fetch(proxy.url + "b/page")[0] == 404

        # a second site: served at once, and the first one's cache survives
        write_table(path, {"a": cdn.Site("a", one.url, "i-a"),
                           "b": cdn.Site("b", two.url, "i-b")})
        deadline = time.monotonic() + 10
        while fetch(proxy.url + "b/page")[0] == 404:          # seen by the poll alone
            assert time.monotonic() < deadline
            time.sleep(0.02)
        status, headers, body = fetch(proxy.url + "a/page")
        assert headers["X-Cache"] == "HIT" and one.hits == 1
        assert json.loads(fetch(proxy.url + "b/page")[2])["backend"] == "two"

        # a table that does not parse is refused; the one in place keeps serving
        health = proxy.url + ".well-known/slapfed-cdn"
        assert cdn.check(health, 0, str(path)) == 0                 # the promise passes
        path.write_text("{not json")
        answer = served_table()
        assert "cannot use" in answer["table_error"] and answer["sites"] == 2
        assert fetch(proxy.url + "a/page")[1]["X-Cache"] == "HIT"
        capsys.readouterr()
        assert cdn.check(health, 0.1, str(path)) == 1               # ... and now fails
        assert "does not serve the table of" in capsys.readouterr().out

        # site a moves to another backend: its cached responses go, b's stay
        write_table(path, {"a": cdn.Site("a", two.url, "i-a"),
                           "b": cdn.Site("b", two.url, "i-b")})
        wait_for_table()
        assert "table_error" not in served_table()
        status, headers, body = fetch(proxy.url + "a/page")
        assert headers["X-Cache"] == "MISS" and json.loads(body)["backend"] == "two"
        assert fetch(proxy.url + "b/page")[1]["X-Cache"] == "HIT"

        # a removed site is no longer served, nor kept in the cache
        write_table(path, {"b": cdn.Site("b", two.url, "i-b")})
        wait_for_table()
        assert fetch(proxy.url + "a/page")[0] == 404
        assert [key for key in proxy.cache.entries if key[1] == "a"] == []
    finally:
        proxy.stop()


def test_the_front_process_reloads_its_table_on_sighup(origins, tmp_path):
    """The real slapfed-cdn-front process, polling too rarely to notice by itself: a
    SIGHUP makes it load the new table at once."""
    import signal
    import subprocess
    import sys

    from conftest import stop_process

    one = origins("one")
    path = tmp_path / "sites.json"
    write_table(path, {})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path / "front.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "slapfed.samples.cdn", "--address",
                             "127.0.0.1", "--port", str(port), "--table", str(path),
                             "--reload-interval", "3600"], stdout=log, stderr=log)
    log.close()
    url = f"http://127.0.0.1:{port}/"
    try:
        assert cdn.check(url + ".well-known/slapfed-cdn", 20) == 0, \
            (tmp_path / "front.log").read_text()
        write_table(path, {"a": cdn.Site("a", one.url, "i-a")})
        assert fetch(url + "a/page")[0] == 404                # not polled yet
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while fetch(url + "a/page")[0] != 200:
            assert time.monotonic() < deadline and proc.poll() is None, \
                (tmp_path / "front.log").read_text()
            time.sleep(0.02)
        assert "site table" in (tmp_path / "front.log").read_text()
    finally:
        stop_process(proc)


# -- accounting per site ----------------------------------------------------------------
def test_the_instance_id_pattern_is_the_wire_one():
    from slapfed.core.wire import ID_RE
    assert cdn.ID_RE.pattern == ID_RE.pattern


@pytest.mark.parametrize("served, counts, dropped", [
    ([("i-a", 10, False, False)], {"i-a": [1, 10, 0, 0]}, 0),
    ([("i-a", 10, False, False), ("i-a", 5, True, False), ("i-b", 120, False, True)],
     {"i-a": [2, 15, 1, 0], "i-b": [1, 120, 0, 1]}, 0),
    ([("i-a", 1, False, False), ("i-b", 1, False, False), ("i-c", 1, False, False),
      ("i-a", 1, True, False)], {"i-a": [2, 2, 1, 0], "i-b": [1, 1, 0, 0]}, 1),
    ([("", 5, False, False), ("not an id", 5, False, False)], {}, 2),
], ids=["one-request", "per-site-sums", "bounded-ids", "sites-without-an-id"])
def test_site_usage_counts_per_shared_instance(served, counts, dropped):
    usage = cdn.SiteUsage(limit=2)
    for request in served:
        usage.record(*request)
    assert usage.counts == counts and usage.dropped == dropped
    assert usage.take() == counts and usage.counts == {}


def test_counts_given_back_add_to_new_ones_within_the_bound():
    usage = cdn.SiteUsage(limit=2)
    usage.record("i-a", 10, True, False)
    taken = usage.take()
    usage.record("i-b", 3, False, False)
    usage.record("i-a", 4, False, False)
    usage.give_back(taken)
    assert usage.counts == {"i-a": [2, 14, 1, 0], "i-b": [1, 3, 0, 0]}
    usage.give_back({"i-c": [4, 40, 0, 0]})             # one site more than the bound
    assert "i-c" not in usage.counts and usage.dropped == 4


def test_usage_lines_are_lines_the_node_takes():
    from slapfed.node.usage import parse_lines
    lines = cdn.usage_lines({"i-b": [2, 300, 0, 1], "i-a": [1, 0, 0, 0],
                             "not an id": [5, 5, 5, 5]})
    assert [(sid, i) for sid, i, _ in lines] == [("i-a", 0), ("i-b", 0), ("i-b", 1),
                                                 ("i-b", 3)]
    assert lines[0][2] == b'{"resource": "x-requests", "quantity": 1, "shared": "i-a"}\n'
    read = parse_lines(b"".join(line for _, _, line in lines))
    assert read.bad == 0 and sorted(read.units) == [
        ("x-bytes-served", "i-b", 300.0), ("x-requests", "i-a", 1.0),
        ("x-requests", "i-b", 2.0), ("x-upstream-errors", "i-b", 1.0)]


@pytest.mark.parametrize("where, left, torn", [
    ("nothing", [3, 120, 0, 0], False),
    ("inside-the-first", [3, 120, 0, 0], True),
    ("after-the-first", [0, 120, 0, 0], False),
    ("inside-the-second", [0, 120, 0, 0], True),
    ("everything", None, False),
])
def test_a_write_cut_short_gives_back_the_lines_not_written_whole(where, left, torn):
    lines = cdn.usage_lines({"i-a": [3, 120, 0, 0]})
    first, second = (len(line) for _, _, line in lines)
    written = {"nothing": 0, "inside-the-first": 5, "after-the-first": first,
               "inside-the-second": first + 1, "everything": first + second}[where]
    assert cdn.unwritten(lines, written) == ({"i-a": left} if left else {}, torn)


def read_usage(path) -> tuple[dict, int, int]:
    """The usage-file as the node reads it: ({(resource, shared): summed quantity},
    lines, bad lines); every line is complete."""
    from slapfed.node.usage import parse_lines
    data = path.read_bytes() if path.exists() else b""
    read = parse_lines(data)
    assert read.consumed == len(data)
    sums: dict = {}
    for resource, sid, quantity in read.units:
        sums[(resource, sid)] = sums.get((resource, sid), 0) + quantity
    return sums, data.count(b"\n"), read.bad


def wait_until(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.01)


@pytest.fixture
def counting_front(origins, tmp_path):
    """The proxy over sites a (i-a), b (i-b, domain www.b.example) and down (i-d),
    flushing its counts to tmp_path/usage.jsonl every 0.2 s."""
    one, two = origins("one"), origins("two")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    made = []
    try:
        sites, _ = cdn.build_sites([
            shared("i-a", "a", backend=one.url),
            shared("i-b", "b", backend=two.url, domain="www.b.example"),
            shared("i-d", "down", backend=f"http://127.0.0.1:{closed.getsockname()[1]}/"),
        ], FRONT)
        log = cdn.UsageLog(str(tmp_path / "usage.jsonl"), cdn.SiteUsage())
        made.append(Front(sites, usage_log=log, usage_flush=0.2))
        yield made[0], log, tmp_path / "usage.jsonl"
    finally:
        for f in made:
            f.stop()
        closed.close()


def test_each_site_s_requests_and_bytes_reach_the_usage_file_in_batches(counting_front):
    """Requests of every kind to three sites: the lines the front appends sum, per shared
    instance, to exactly the requests it served, the body bytes the client received,
    its cache hits and the backend failures; requests of no site count for none."""
    proxy, log, path = counting_front
    sent = {"i-a": [0, 0, 0, 0], "i-b": [0, 0, 0, 0], "i-d": [0, 0, 0, 0]}

    def call(sid, url, **kw):
        status, headers, body = fetch(url, **kw)
        c = sent[sid]
        c[0] += 1
        c[1] += len(body)
        c[2] += headers.get("X-Cache") == "HIT"
        c[3] += status in (502, 504)
        return status

    for _ in range(40):                                   # a burst: one miss, then hits
        assert call("i-a", proxy.url + "a/page") == 200
    wait_until(lambda: read_usage(path)[0], "a first batch")
    for n in range(3):
        assert call("i-a", proxy.url + "a/x/private") == 200     # no-store: never a hit
        assert call("i-a", proxy.url + "a/form", method="POST", data=b"n=%d" % n) == 201
        assert call("i-b", proxy.url + "p", host="www.b.example") == 200
        assert call("i-b", proxy.url + "b/q?n=1") == 200
        assert call("i-d", proxy.url + "down/page") == 502
    assert call("i-a", proxy.url + "a/page", method="HEAD") == 200     # a hit, no body
    assert fetch(proxy.url + "nowhere/page")[0] == 404               # no site: not counted
    assert fetch(proxy.url + ".well-known/slapfed-cdn")[0] == 200
    proxy.stop()                                           # its last flush
    sums, lines, bad = read_usage(path)
    for sid, (requests, body_bytes, hits, errors) in sent.items():
        assert sums.get(("x-requests", sid)) == requests, sid
        assert sums.get(("x-bytes-served", sid)) == body_bytes, sid
        assert sums.get(("x-cache-hits", sid), 0) == hits, sid
        assert sums.get(("x-upstream-errors", sid), 0) == errors, sid
    assert sent["i-a"][:3] == [47, sent["i-a"][1], 40] and sent["i-d"][3] == 3
    assert {sid for _, sid in sums} == set(sent) and bad == 0
    assert lines < 40 and log.lines == lines and log.error is None   # batches, not requests


@pytest.mark.parametrize("failure", ["missing-directory", "full-disk", "a-symlink"])
def test_a_usage_file_that_cannot_be_written_fails_no_request_and_loses_no_count(
        failure, origins, tmp_path):
    one = origins("one")
    sites, _ = cdn.build_sites([shared("i-a", "a", backend=one.url)], FRONT)
    var, elsewhere = tmp_path / "var", tmp_path / "elsewhere"
    target = var / "usage.jsonl"
    if failure == "full-disk":
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full here")
        var.mkdir()
    elif failure == "a-symlink":
        var.mkdir()
        target.symlink_to(elsewhere)
    log = cdn.UsageLog("/dev/full" if failure == "full-disk" else str(target),
                       cdn.SiteUsage())
    proxy = Front(sites, usage_log=log, usage_flush=0.05)
    try:
        for _ in range(5):
            assert fetch(proxy.url + "a/page")[0] == 200
        wait_until(lambda: log.error is not None, "a failed flush")
        assert log.error.startswith("cannot append to ") and log.usage.counts["i-a"][0] == 5
        assert fetch(proxy.url + "a/page")[0] == 200
        # writable again: what was counted meanwhile arrives with the next flush
        if failure == "missing-directory":
            var.mkdir()
        elif failure == "full-disk":
            log.path = str(target)
        else:
            target.unlink()
        assert fetch(proxy.url + "a/page")[0] == 200
        wait_until(lambda: log.error is None, "a flush that works again")
    finally:
        proxy.stop()
    sums, _, bad = read_usage(target)
    assert sums[("x-requests", "i-a")] == 7 and sums[("x-cache-hits", "i-a")] == 6
    assert bad == 0 and not elsewhere.exists()


def start_front(tmp_path, table, *args, **popen):
    """The real slapfed-cdn-front process on a free port: (process, its URL)."""
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    popen.setdefault("stdout", open(tmp_path / "front.log", "ab"))
    proc = subprocess.Popen([sys.executable, "-m", "slapfed.samples.cdn", "--address",
                             "127.0.0.1", "--port", str(port), "--table", str(table), *args],
                            stderr=subprocess.STDOUT, **popen)
    url = f"http://127.0.0.1:{port}/"
    if cdn.check(url + ".well-known/slapfed-cdn", 20) != 0:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the front did not start: exit {proc.poll()}")
    return proc, url


def stop_front(proc) -> int:
    import signal
    import subprocess
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def test_the_front_process_writes_what_it_counted_when_it_stops(origins, tmp_path):
    """Flushing only once an hour, the real front still leaves every request counted:
    SIGTERM (how supervisord stops it) makes it write its counts before it exits."""
    one = origins("one")
    table, usage = tmp_path / "sites.json", tmp_path / "usage.jsonl"
    write_table(table, {"a": cdn.Site("a", one.url, "i-a")})
    proc, url = start_front(tmp_path, table, "--usage-file", str(usage),
                            "--usage-flush", "3600")
    try:
        received = sum(len(fetch(url + "a/page")[2]) for _ in range(9))
        assert not usage.exists()
    finally:
        assert stop_front(proc) == 0
    sums, lines, bad = read_usage(usage)
    assert sums == {("x-requests", "i-a"): 9, ("x-bytes-served", "i-a"): received,
                    ("x-cache-hits", "i-a"): 8}
    assert (lines, bad) == (3, 0)


def test_a_write_cut_short_by_a_full_file_is_mended_and_nothing_counts_twice(origins,
                                                                             tmp_path):
    """The real front with its file size limit (RLIMIT_FSIZE) at 150 bytes, less than
    one batch: the first write is cut short, the next ones fail; once the limit is lifted
    the front ends the cut line and writes what was not written whole: read as the node
    reads it, one bad line and exactly every request."""
    import resource
    import subprocess

    one, two = origins("one"), origins("two")
    table, usage = tmp_path / "sites.json", tmp_path / "usage.jsonl"
    write_table(table, {"a": cdn.Site("a", one.url, "i-a"), "b": cdn.Site("b", two.url, "i-b")})

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (150, resource.RLIM_INFINITY))

    proc, url = start_front(tmp_path, table, "--usage-file", str(usage), "--usage-flush",
                            "0.1", preexec_fn=small_files, stdout=subprocess.DEVNULL)
    try:
        received = {"i-a": 0, "i-b": 0}
        for n in range(6):
            received["i-a"] += len(fetch(url + "a/page")[2])
            received["i-b"] += len(fetch(url + f"b/page{n % 2}")[2])
        wait_until(lambda: usage.exists() and usage.stat().st_size == 150, "a cut write")
        received["i-a"] += len(fetch(url + "a/more")[2])
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    finally:
        assert stop_front(proc) == 0
    sums, _, bad = read_usage(usage)
    assert bad == 1
    assert sums[("x-requests", "i-a")] == 7 and sums[("x-requests", "i-b")] == 6
    assert sums[("x-bytes-served", "i-a")] == received["i-a"]
    assert sums[("x-bytes-served", "i-b")] == received["i-b"]
    assert sums[("x-cache-hits", "i-a")] == 5 and sums[("x-cache-hits", "i-b")] == 4


# -- a site's purge key ------------------------------------------------------------------
def test_each_served_site_gets_a_purge_key_kept_across_tables_and_only_its_digest_in_it():
    made = iter(["k-new-1", "k-new-2"])
    entries = [shared("i-a", "a", backend="http://b1/"), shared("i-b", "b"),
               shared("i-c", "c", backend="http://b3/")]
    keys = cdn.purge_keys(entries, {"i-a": "k-old", "i-gone": "k-gone"}, lambda: next(made))
    assert keys == {"i-a": "k-old", "i-b": "k-new-1", "i-c": "k-new-2"}
    sites, conns = cdn.build_sites(entries, FRONT, keys=keys)
    assert conns["i-a"]["purge-key"] == "k-old" and conns["i-c"]["purge-key"] == "k-new-2"
    assert "purge-key" not in conns["i-b"]             # refused: no site, no key
    table = json.dumps(cdn.table_json(sites))
    assert "k-old" not in table and "k-new-2" not in table
    again = cdn.sites_from_json(json.loads(table))
    assert again["a"].purges_with("k-old") and not again["a"].purges_with("k-new-2")
    assert not again["a"].purges_with(None) and not again["a"].purges_with("")
    assert cdn.stale_sites(again, cdn.build_sites(entries, FRONT)[0]) == set()


def test_a_purge_drops_the_site_s_cache_for_the_holder_of_its_key_only(origins):
    one = origins("one")
    sites, conns = cdn.build_sites([shared("i-a", "a", backend=one.url),
                                    shared("i-b", "b", backend=one.url)], FRONT,
                                   keys={"i-a": "key-a", "i-b": "key-b"})
    proxy = Front(sites)
    try:
        purge = proxy.url + cdn.PURGE_PATH.lstrip("/")
        assert fetch(proxy.url + "a/p")[1]["X-Cache"] == "MISS"
        assert fetch(proxy.url + "b/p")[1]["X-Cache"] == "MISS"
        for name, key in (("a", "key-b"), ("a", None), ("nosuch", "key-a")):
            status, _h, body = fetch(purge + name, method="POST", data=b"",
                                     headers={cdn.PURGE_HEADER: key} if key else {})
            assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"
        assert fetch(proxy.url + "a/p")[1]["X-Cache"] == "HIT"
        status, _h, body = fetch(purge + "a", method="POST", data=b"",
                                 headers={cdn.PURGE_HEADER: "key-a"})
        assert status == 200 and json.loads(body) == {"site": "a", "purged": 1}
        assert fetch(proxy.url + "a/p")[1]["X-Cache"] == "MISS"
        assert fetch(proxy.url + "b/p")[1]["X-Cache"] == "HIT"       # b's cache stays
    finally:
        proxy.stop()
