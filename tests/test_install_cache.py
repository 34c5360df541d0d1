"""Releases that can be rebuilt: a node may install online, every download goes through
the node's download cache, and a cache shared by nodes lets a release installed once be
installed again with the network cut. Real buildout runs of a release that downloads a
source from a server on loopback (the slapfed:download recipe); the server is stopped
before the second install."""
from __future__ import annotations

import hashlib
import http.server
import os
import threading

import pytest

from slapfed.core.wire import software_hash
from slapfed.node import buildout as nb
from slapfed.node.layout import InstallSettings, Paths, format_node, load_config

SOURCE = b"the sources of release 1.0\n" * 100


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def source_server(tmp_path):
    """A file server on loopback (port chosen at run time) holding one source tarball;
    yields (url, requests served, stop)."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "hello-src-1.0.tar.gz").write_bytes(SOURCE)
    served = []

    class Handler(_Quiet):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=str(www), **kw)

        def do_GET(self):  # noqa: N802
            served.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stopped = []

    def stop():
        if not stopped:
            server.shutdown()
            server.server_close()
            thread.join(10)
            stopped.append(True)
    yield f"http://127.0.0.1:{server.server_port}/hello-src-1.0.tar.gz", served, stop
    stop()


def release(tmp_path, url: str) -> str:
    """A release whose install downloads ``url`` (checked by its md5)."""
    rdir = tmp_path / "release"
    rdir.mkdir()
    md5 = hashlib.md5(SOURCE).hexdigest()
    (rdir / "software.cfg").write_text(f"""[buildout]
parts = sources instance-default

[sources]
recipe = slapfed:download
url = {url}
md5sum = {md5}

[instance-default]
recipe = slapfed:file
path = ${{buildout:directory}}/instance-default.cfg
content = [buildout]
""")
    return str(rdir / "software.cfg")


def node_paths(tmp_path, name) -> Paths:
    paths = Paths(str(tmp_path / name))
    for d in paths.skeleton():
        os.makedirs(d, exist_ok=True)
    return paths


@pytest.fixture(scope="module")
def runner():
    r = nb.ForkRunner()
    r.warm_up()
    return r


def test_a_shared_download_cache_installs_a_release_again_offline(tmp_path, source_server,
                                                                   runner):
    url, served, stop = source_server
    sw = release(tmp_path, url)
    h = software_hash(sw)
    cache = str(tmp_path / "shared-cache")

    # node a installs online: the source is downloaded once, into the shared cache
    a = node_paths(tmp_path, "a")
    done = nb.install_software(a, sw, h, runner, InstallSettings(True, cache))
    assert done.ok, done.log_tail
    assert served == ["/hello-src-1.0.tar.gz"]
    got = os.path.join(a.software_dir(h), "parts", "sources", "hello-src-1.0.tar.gz")
    assert open(got, "rb").read() == SOURCE
    assert any(os.scandir(cache))

    # the network is cut: node b (offline, same cache) installs from the cache alone
    stop()
    b = node_paths(tmp_path, "b")
    done = nb.install_software(b, sw, h, runner, InstallSettings(False, cache))
    assert done.ok, done.log_tail
    got = os.path.join(b.software_dir(h), "parts", "sources", "hello-src-1.0.tar.gz")
    assert open(got, "rb").read() == SOURCE
    assert served == ["/hello-src-1.0.tar.gz"]          # nothing was asked again

    # without that cache the same offline install fails, saying why
    c = node_paths(tmp_path, "c")
    done = nb.install_software(c, sw, h, runner, InstallSettings(False, str(tmp_path / "own")))
    assert not done.ok
    assert "offline mode" in done.log_tail


def test_an_offline_node_never_downloads(tmp_path, source_server, runner):
    url, served, _stop = source_server
    sw = release(tmp_path, url)
    paths = node_paths(tmp_path, "n")
    done = nb.install_software(paths, sw, software_hash(sw), runner,
                               InstallSettings(False, str(tmp_path / "cache")))
    assert not done.ok and "offline mode" in done.log_tail
    assert served == []


def test_a_source_that_does_not_match_its_checksum_is_refused(tmp_path, source_server,
                                                             runner):
    url, _served, _stop = source_server
    sw = release(tmp_path, url)
    text = open(sw).read().replace(hashlib.md5(SOURCE).hexdigest(), "0" * 32)
    open(sw, "w").write(text)
    paths = node_paths(tmp_path, "m")
    done = nb.install_software(paths, sw, software_hash(sw), runner,
                               InstallSettings(True, str(tmp_path / "cache")))
    assert not done.ok and "MD5 checksum mismatch" in done.log_tail


def test_format_keeps_the_install_settings_until_changed(tmp_path):
    root = str(tmp_path / "node")
    cfg = format_node(root, "http://127.0.0.1:1", "c1", 0, single_user=True, check=False)
    assert cfg.install_settings() == InstallSettings(False, Paths(root).download_cache)
    format_node(root, "http://127.0.0.1:1", "c1", 0, single_user=True, check=False,
                online=True, download_cache=str(tmp_path / "shared"))
    format_node(root, "http://127.0.0.1:1", "c1", 0, single_user=True, check=False)
    assert load_config(root).install_settings() == InstallSettings(
        True, str(tmp_path / "shared"))
    format_node(root, "http://127.0.0.1:1", "c1", 0, single_user=True, check=False,
                online=False, download_cache="")
    assert load_config(root).install_settings() == InstallSettings(
        False, Paths(root).download_cache)
