"""profiles/cdn under real buildout runs (offline, in tmp_path): the release installs its
proxy script, and each instantiation writes the site table, the proxy's service and
promise, and the connection parameters of the partition and of its shared instances."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from slapfed.core.wire import software_hash
from slapfed.node import buildout as nb
from slapfed.node.layout import PartitionConfig, Paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CDN = os.path.join(REPO, "profiles", "cdn", "software.cfg")
PART = PartitionConfig("part0", "127.31.0.7", 10000, 10)
FRONT = "http://127.31.0.7:10000/"


@pytest.fixture(scope="module")
def runner():
    r = nb.ForkRunner()
    r.warm_up()
    return r


@pytest.fixture(scope="module")
def cdn_node(tmp_path_factory, runner):
    """A node root with the cdn release installed once for the whole module."""
    paths = Paths(str(tmp_path_factory.mktemp("node")))
    for d in paths.skeleton():
        os.makedirs(d)
    result = nb.install_software(paths, CDN, software_hash(CDN), runner)
    assert result.ok, result.log_tail
    return paths


def instance(shared=(), revision=1, **params):
    return {"id": "i-front", "reference": "front", "software_url": CDN,
            "software_hash": software_hash(CDN), "software_type": "default",
            "parameters": params, "revision": revision, "shared_instances": list(shared)}


def shared(sid, **params):
    return {"id": sid, "reference": sid, "parameters": params}


def table_of(paths):
    with open(os.path.join(paths.partition("part0").path, "etc", "cdn-sites.json")) as fh:
        return json.load(fh)["sites"]


def test_release_installs_the_proxy_script(cdn_node):
    sdir = cdn_node.software_dir(software_hash(CDN))
    assert nb.software_types(sdir) == ("default",)
    out = subprocess.run([os.path.join(sdir, "bin", "slapfed-cdn-front"), "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--table" in out.stdout


def test_instance_without_shared_instances_serves_an_empty_table(cdn_node, runner):
    result = nb.instantiate(cdn_node, PART, "c1", instance(**{"cache-ttl": "5"}), runner)
    assert result.ok, result.log_tail
    assert result.connection == {"url": FRONT}
    assert result.shared_connections == {}
    assert table_of(cdn_node) == {}
    pp = cdn_node.partition("part0")
    front = open(os.path.join(pp.services, "front")).read()
    assert "--cache-ttl=5" in front and "--port=10000" in front
    assert "cdn-sites.json" in front
    assert f"--usage-file={pp.usage_file}" in front     # the front counts per site there
    assert "--usage-flush=5" in front
    promise = open(os.path.join(pp.promises, "front")).read()
    assert f"--check={FRONT}.well-known/slapfed-cdn" in promise
    assert "--table=" in promise and "cdn-sites.json" in promise


def test_a_new_site_leaves_the_front_wrapper_alone(cdn_node, runner):
    """The front follows its table file: a new shared instance rewrites the table, not
    the wrapper, so the node leaves the running front (and its cache) alone."""
    wrapper = os.path.join(cdn_node.partition("part0").services, "front")
    assert nb.instantiate(cdn_node, PART, "c1", instance(), runner).ok
    before = open(wrapper).read()
    one = [shared("i-a", site="a", backend="http://127.0.0.1:8001/")]
    result = nb.instantiate(cdn_node, PART, "c1", instance(one, revision=2), runner)
    assert result.ok, result.log_tail
    assert set(table_of(cdn_node)) == {"a"}
    assert open(wrapper).read() == before


def test_each_shared_instance_gets_a_route_or_the_reason_why_not(cdn_node, runner):
    sites = [shared("i-a", site="a", backend="http://127.0.0.1:8001/"),
             shared("i-b", site="b", backend="http://127.0.0.1:8002/", domain="b.example"),
             shared("i-c", site="c")]
    result = nb.instantiate(cdn_node, PART, "c1", instance(sites, revision=2), runner)
    assert result.ok, result.log_tail
    assert result.shared_connections["i-a"] == {
        "url": FRONT + "a/", "site": "a", "backend": "http://127.0.0.1:8001/"}
    assert result.shared_connections["i-b"]["domain"] == "b.example"
    assert "'backend' is required" in result.shared_connections["i-c"]["error"]
    assert sorted(table_of(cdn_node)) == ["a", "b"]
    # the file the node reads is the partition's shared-connection-file
    pp = cdn_node.partition("part0")
    assert nb.read_connection(pp.shared_connection_file) == result.shared_connections
    assert f"shared-connection-file = {pp.shared_connection_file}" in open(pp.buildout_cfg).read()


def test_a_site_stays_with_its_owner_across_instantiations(cdn_node, runner):
    first = [shared("i-b", site="shop", backend="http://127.0.0.1:8002/")]
    assert nb.instantiate(cdn_node, PART, "c1", instance(first, revision=3), runner).ok
    # i-a sorts first, but i-b served "shop" already: i-a is told it is taken
    second = first + [shared("i-a", site="shop", backend="http://127.0.0.1:8001/")]
    result = nb.instantiate(cdn_node, PART, "c1", instance(second, revision=4), runner)
    assert result.ok, result.log_tail
    assert table_of(cdn_node)["shop"]["instance"] == "i-b"
    assert "already served" in result.shared_connections["i-a"]["error"]
    # once i-b is gone, i-a gets it
    result = nb.instantiate(cdn_node, PART, "c1", instance(second[1:], revision=5), runner)
    assert table_of(cdn_node)["shop"]["instance"] == "i-a"
    assert result.shared_connections == {"i-a": {
        "url": FRONT + "shop/", "site": "shop", "backend": "http://127.0.0.1:8001/"}}
