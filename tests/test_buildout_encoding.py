"""Tenant data never becomes buildout code: the node's one encoder (slapfed.core.cfgvalue,
slapfed.node.buildout.render_*) against zc.buildout's own parser and substitution, the
node's refusals, real buildout runs of hostile values, and the master's refusals."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zc.buildout.buildout
import zc.buildout.configparser

from slapfed.core import cfgvalue
from slapfed.core.errors import InvalidInput
from slapfed.core.wire import InstanceRequest, software_hash
from slapfed.node import buildout as nb
from slapfed.node.layout import PartitionConfig, Paths

PART = PartitionConfig("part0", "127.31.0.1", 10000, 10)
HASH = "0123456789abcdef0123456789abcdef"

# what starts a line, a section, an option, a comment or a substitution somewhere
NASTY = ["\r", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
         "\u2029", "\t", " ", "  ", "\n\n", "\n ", "[", "]", "[web]", "=", ":", "#", ";",
         "$", "$$", "${", "$${", "${x:y}", "${partition:path}", "$${parameters:a}", "{",
         "}", "\u00a0", "\u3000", "\ufeff", "\x00", "\x7f", "recipe = slapfed:file",
         "%(__buildout_space_n__)s", cfgvalue.PREFIX, "é", "日本"]
texts = st.lists(st.one_of(st.sampled_from(NASTY),
                           st.characters(exclude_categories=("Cs",))),
                 max_size=10).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6)
keys = st.from_regex(cfgvalue.KEY_RE, fullmatch=True).filter(
    lambda k: cfgvalue.key_problem(k) is None)


def instance(params, reference="web-1", **extra):
    return {"id": "i1", "reference": reference, "software_url": "/srv/r/software.cfg",
            "software_hash": HASH, "software_type": "default", "revision": 1,
            "parameters": params, "shared_instances": [], **extra}


def parse_like_buildout(path: str) -> dict:
    """The file as zc.buildout reads it (it opens files in text mode: universal newlines)."""
    with open(path) as fh:
        return zc.buildout.configparser.parse(fh, path)


@contextlib.contextmanager
def quiet_buildout():
    """Buildout objects print and configure logging; keep this process as it was."""
    root = logging.getLogger()
    bl = logging.getLogger("zc.buildout")
    saved = (list(root.handlers), root.level, list(bl.handlers), bl.propagate, bl.level)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        bl.handlers[:] = saved[2]
        bl.propagate = saved[3]
        bl.setLevel(saved[4])


PARTITION_KEYS = set(nb.partition_section(Paths("/n"), PART, "c1", instance({}), "/s"))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(params=st.dictionaries(keys, json_values, max_size=4), reference=texts,
       computer=texts)
def test_any_value_reaches_the_profile_exactly_and_adds_nothing(tmp_path, params, reference,
                                                                computer):
    """Render through the real functions, read with zc.buildout's parser and a real
    Buildout object over a profile referencing every value: exactly the expected
    sections and options, and every value back, verbatim or decoded."""
    paths = Paths(str(tmp_path / "node"))
    sdir = paths.software_dir(HASH)
    os.makedirs(paths.partition(PART.id).path, exist_ok=True)
    names = sorted(params)
    profile = tmp_path / "instance-default.cfg"
    profile.write_text(
        "[buildout]\nparts =\n\n[parameters]\ndefault-only = kept\n\n[probe]\n"
        + "".join(f"p{i} = ${{parameters:{k}}}\nin{i} = <${{parameters:{k}}}>\n"
                  for i, k in enumerate(names))
        + "ref = ${partition:reference}\ncomputer = ${partition:computer}\n")
    inst = instance(params, reference)
    cfg = tmp_path / "buildout.cfg"
    cfg.write_text(nb.render_instance_cfg(str(profile), paths, PART, computer, inst, sdir),
                   encoding="utf-8")

    parsed = parse_like_buildout(str(cfg))
    assert set(parsed) == {"buildout", "partition", "parameters"}
    assert set(parsed["parameters"]) == set(params)
    assert set(parsed["partition"]) == PARTITION_KEYS
    assert set(parsed["buildout"]) == {"extends", "directory", "offline", "newest",
                                       "eggs-directory", "develop-eggs-directory"}
    for key, value in params.items():
        assert parsed["parameters"][key] == cfgvalue.encode(value)

    with quiet_buildout():
        b = zc.buildout.buildout.Buildout(str(cfg), [], False, "install", [])
    assert set(b._raw) == {"buildout", "partition", "parameters", "probe", "versions"}
    assert set(b._raw["parameters"]) == set(params) | {"default-only"}
    assert b["buildout"]["parts"] == ""
    probe = b["probe"]
    for i, key in enumerate(names):
        text = cfgvalue.as_text(params[key])
        got = probe[f"p{i}"]
        assert cfgvalue.decode(got) == text
        assert got == text or got.startswith(cfgvalue.PREFIX)
        assert probe[f"in{i}"] == f"<{got}>"
    assert cfgvalue.decode(probe["ref"]) == reference
    assert cfgvalue.decode(probe["computer"]) == computer


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_encode_is_plain_or_encoded_and_decodes_exactly(value):
    text = cfgvalue.as_text(value)
    out = cfgvalue.encode(value)
    assert cfgvalue.decode(out) == text
    assert out == text if cfgvalue.is_plain(text) else out.startswith(cfgvalue.PREFIX)
    # what is written never holds anything that ends a line for any reader
    assert out.isprintable() and len(out.splitlines()) <= 1 and "${" not in out


@settings(max_examples=200, deadline=None)
@given(key=st.text(max_size=12))
def test_a_key_that_is_not_a_plain_identifier_never_reaches_a_file(key):
    params = {key: "v"}
    if cfgvalue.key_problem(key) is None:
        assert f"\n{key} = v\n" in nb.render_instance_cfg("/p.cfg", Paths("/n"), PART, "c1",
                                                          instance(params), "/s")
        return
    with pytest.raises(nb.UnsafeConfig, match="parameter key"):
        nb.render_instance_cfg("/p.cfg", Paths("/n"), PART, "c1", instance(params), "/s")
    with pytest.raises(InvalidInput) as err:
        InstanceRequest.from_json({"reference": "r", "software_url": "/srv/x.cfg",
                                   "parameters": params})
    assert {d["field"] for d in err.value.details} == {f"parameters.{key}"}


def test_software_buildout_parses_to_exactly_its_sections(tmp_path):
    url = "file:///srv/rel%20eases/hello/software.cfg"     # a space after unquoting
    with pytest.raises(nb.UnsafeConfig, match="release location"):
        nb.render_software_cfg(url, str(tmp_path))
    url = "https://example.invalid/r/software.cfg?x=${a:b}"
    with pytest.raises(nb.UnsafeConfig, match="release location"):
        nb.render_software_cfg(url, str(tmp_path))
    url = "/srv/releases/hello/software.cfg"
    cfg = tmp_path / "buildout.cfg"
    cfg.write_text(nb.render_software_cfg(url, str(tmp_path)))
    parsed = parse_like_buildout(str(cfg))
    assert parsed["release"] == {"url": url, "directory": "/srv/releases/hello",
                                 "software": str(tmp_path)}
    assert set(parsed) == {"buildout", "release"}


# -- the node refuses, writes nothing and says why ------------------------------------
@pytest.mark.parametrize("change, words", [
    ({"parameters": {"a\r[web]": "x"}}, "parameter key 'a\\r[web]'"),
    ({"parameters": {"greeting\n": "x"}}, "parameter key 'greeting\\n'"),
    ({"parameters": {"recipe": "slapfed:service"}}, "parameter key 'recipe' is reserved"),
    ({"parameters": {"greeting-": "hello"}}, "must not end in '-'"),
    ({"parameters": {"a": "bad \ud800 text"}}, "lone surrogate"),
    ({"software_type": "../../etc"}, "software type '../../etc'"),
    ({"software_type": "default\n"}, "software type 'default\\n'"),
    ({"software_hash": "../x"}, "software hash '../x'"),
    ({"id": "i1\r[web]"}, "instance id 'i1\\r[web]'"),
], ids=["cr-key", "newline-key", "recipe-key", "operator-key", "surrogate-value",
        "type-traversal", "type-newline", "hash-traversal", "id"])
def test_the_node_refuses_an_instance_it_cannot_write(tmp_path, change, words):
    paths = Paths(str(tmp_path))
    result = nb.instantiate(paths, PART, "c1", {**instance({}), **change}, runner=None)
    assert not result.ok
    assert "refused, nothing written" in result.log_tail and words in result.log_tail
    pp = paths.partition(PART.id)
    assert not os.path.exists(pp.buildout_cfg)
    assert not os.path.exists(nb.parameters_file(paths, PART))


def test_an_unusable_release_location_fails_its_install_clearly(tmp_path):
    paths = Paths(str(tmp_path))
    os.makedirs(paths.log)
    url = "https://example.invalid/${x:y}/software.cfg"
    result = nb.install_software(paths, url, software_hash(url), runner=None)
    assert not result.ok and "release location" in result.log_tail
    assert not os.path.exists(os.path.join(paths.software_dir(software_hash(url)),
                                           "buildout.cfg"))


# -- real buildout runs of hostile values ---------------------------------------------
HOSTILE = {
    "cr": "x\r[web]\rcommand = /bin/touch /tmp/slapfed-pwned",
    "crlf": "x\r\n[publish]\r\ninjected = yes",
    "newline": "line 1\n\n  line 3  \n",
    "separators": "a\x0bb\x0cc\x1cd\x1de\x1ef\x85g\u2028h\u2029i",
    "substitution": "${partition:path} $${x} ${buildout:directory}",
    "trailing-dollar": "cost $",
    "spaces": "  padded  ",
    "comment": "# not a comment",
    "prefix": cfgvalue.PREFIX + "AAAA",
    "plain": "bonjour à tous",
}
PROBE = """[buildout]
parts = out publish

[parameters]
v = default

[out]
recipe = slapfed:file
path = ${partition:path}/etc/out
content = ${parameters:v}

[publish]
recipe = slapfed:publish
value = ${parameters:v}
"""


@pytest.fixture(scope="module")
def probe_node(tmp_path_factory):
    """A node root with a "release" holding the probe profile (no install needed)."""
    paths = Paths(str(tmp_path_factory.mktemp("node")))
    sdir = paths.software_dir(HASH)
    os.makedirs(sdir)
    with open(os.path.join(sdir, "instance-default.cfg"), "w") as fh:
        fh.write(PROBE)
    runner = nb.ForkRunner()
    runner.warm_up()
    return paths, runner


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_values_reach_files_and_connections_verbatim_twice(probe_node, name):
    """Twice: the second run reads the .installed.cfg the first one wrote."""
    paths, runner = probe_node
    value = HOSTILE[name]
    pp = paths.partition(PART.id)
    for revision in (1, 2):
        result = nb.instantiate(paths, PART, "c1", instance({"v": value}, revision=revision),
                                runner)
        assert result.ok, result.log_tail
        assert result.connection == {"value": value}
        with open(os.path.join(pp.path, "etc", "out"), encoding="utf-8", newline="") as fh:
            assert fh.read() == (value if value.endswith("\n") else value + "\n")
        installed = parse_like_buildout(os.path.join(pp.path, ".installed.cfg"))
        assert set(installed) == {"buildout", "out", "publish"}
        assert installed["buildout"]["parts"] == "out publish"
    with open(nb.parameters_file(paths, PART), encoding="utf-8") as fh:
        raw = json.load(fh)
    assert raw["parameters"] == {"v": value}
    assert os.stat(nb.parameters_file(paths, PART)).st_mode & 0o777 == 0o600
    assert not os.path.exists("/tmp/slapfed-pwned")


# -- the master refuses what cannot be written ----------------------------------------
API = "/api/v1"
URL = "/srv/releases/hello/software.cfg"


@pytest.fixture
def ready(api, master_factories):
    assert api.post(f"{API}/computers", json=master_factories.computer("c1", 3)).status_code == 201
    assert api.post(f"{API}/computers/c1/software", json={"url": URL}).status_code == 200
    return api


@pytest.mark.parametrize("body, field", [
    ({"parameters": {"a\r[web]": "x"}}, "parameters.a\r[web]"),
    ({"parameters": {"name\n": "x"}}, "parameters.name\n"),
    ({"parameters": {"recipe": "slapfed:service"}}, "parameters.recipe"),
    ({"parameters": {"greeting-": "x"}}, "parameters.greeting-"),
    ({"parameters": {"a b": "x"}}, "parameters.a b"),
    ({"shared": True, "parameters": {"x=y": "1"}}, "parameters.x=y"),
    ({"reference": "web\r[web]"}, "reference"),
    ({"reference": "web\x85"}, "reference"),
    ({"reference": "web\u2028x"}, "reference"),
    ({"reference": "web\x7f"}, "reference"),
    ({"software_type": "default\n"}, "software_type"),
    ({"software_url": "/srv/a b/software.cfg"}, "software_url"),
    ({"software_url": "/srv/${x:y}/software.cfg"}, "software_url"),
    ({"requester": "me\x9b"}, "requester"),
    ({"sla": {"capability": "gpu\n"}}, "sla.capability"),
    ({"provenance": ["m1\n"]}, "provenance[0]"),
], ids=["cr-key", "newline-key", "recipe-key", "operator-key", "space-key", "shared-key",
        "cr-reference", "nel-reference", "ls-reference", "del-reference", "type-newline",
        "url-space", "url-substitution", "requester-c1", "sla-newline", "provenance-newline"])
def test_the_master_refuses_keys_and_names_that_cannot_be_written(ready, master_db, body,
                                                                  field):
    before = master_db.storage.lastTransaction()
    resp = ready.post(f"{API}/instances", json={"reference": "web-1", "software_url": URL,
                                                **body})
    assert resp.status_code == 400, resp.data
    err = resp.json["error"]
    assert err["code"] == "invalid_input"
    assert [d["field"] for d in err["details"]] == [field]
    assert master_db.storage.lastTransaction() == before


def test_the_master_keeps_any_value_as_data(ready):
    value = HOSTILE["cr"] + HOSTILE["separators"] + HOSTILE["substitution"]
    resp = ready.post(f"{API}/instances", json={"reference": "web-1", "software_url": URL,
                                                "parameters": {"greeting": value}})
    assert resp.status_code == 201, resp.data
    assert resp.json["parameters"] == {"greeting": value}


@pytest.mark.parametrize("body, field", [
    ({"reference": "web\ud800"}, "reference"),
    ({"software_type": "def\udfffault"}, "software_type"),
    ({"requester": "me\ud83d"}, "requester"),
    ({"software_url": "/srv/\ud800/software.cfg"}, "software_url"),
], ids=["reference", "software-type", "requester", "software-url"])
def test_identifying_strings_refuse_lone_surrogates(body, field):
    with pytest.raises(InvalidInput) as err:
        InstanceRequest.from_json({"reference": "web-1", "software_url": URL, **body})
    assert [d["field"] for d in err.value.details] == [field]


def test_computer_registration_refuses_control_characters_in_names_and_labels():
    from slapfed.core.wire import ComputerRegistration
    with pytest.raises(InvalidInput) as err:
        ComputerRegistration.from_json({"id": "c1\n", "host": "h\x85", "labels": {
            "disk": "ssd\u2028", "k\r": "v"}, "partitions": []})
    assert {d["field"] for d in err.value.details} == {"id", "host", "labels.disk",
                                                       "labels.k\r"}
