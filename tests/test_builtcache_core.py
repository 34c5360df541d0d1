"""What the shared cache of built releases decides (slapfed.core.builtcache), and the
node's reading of a release's profiles for its key: tables, no files but tmp_path."""
from __future__ import annotations

import pytest

from slapfed.core import builtcache as core
from slapfed.core.builtcache import Member
from slapfed.node import builtcache

ROOT = "/srv/node/software/abc"


@pytest.mark.parametrize("name, kind, link, problem", [
    ("bin/tool", "file", "", None),
    ("parts", "dir", "", None),
    ("parts/", "dir", "", None),
    ("bin/python", "symlink", "../parts/py/bin/python", None),
    ("bin/python", "symlink", ROOT + "/parts/py/bin/python", None),
    ("eggs/x.egg", "symlink", "x-1.0.egg", None),
    ("", "file", "", "an empty name"),
    ("/etc/passwd", "file", "", "an absolute path"),
    ("../x", "file", "", "'..' segment"),
    ("a/../../x", "file", "", "'..' segment"),
    ("a//b", "file", "", "'..' segment"),
    ("./a", "file", "", "'..' segment"),
    ("a\nb", "file", "", "control character"),
    ("dev/null", "device", "", "a device"),
    ("hard", "hard link", "", "a hard link"),
    ("fifo", "FIFO", "", "a FIFO"),
    ("bin/python", "symlink", "/usr/bin/python3", "outside"),
    ("bin/python", "symlink", ROOT + "/../other/python", "outside"),
    ("bin/python", "symlink", "/srv/node/software/abcd/x", "outside"),
    ("bin/up", "symlink", "../..", "outside"),
    ("top", "symlink", "..", "outside"),
    ("x", "symlink", "", "empty target"),
])
def test_what_a_member_may_be(name, kind, link, problem):
    got = core.member_problem(name, kind, link, ROOT)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got, got


@pytest.mark.parametrize("members, problem", [
    ([Member("a", "dir"), Member("a/b", "file")], None),
    ([Member("a", "file"), Member("a", "file")], "a second member of that name"),
    ([Member("a", "dir"), Member("a/", "dir")], "a second member of that name"),
    ([Member("l", "symlink", "parts"), Member("l/x", "file")], "below a symbolic link"),
    ([Member("l", "symlink", "parts"), Member("l/d/x", "file")], "below a symbolic link"),
    ([Member("l", "symlink", "parts"), Member("lx", "file")], None),
])
def test_what_members_together_may_be(members, problem):
    got = core.members_problems(members, ROOT)
    assert (got == []) if problem is None else (len(got) == 1 and problem in got[0]), got


FACTS = {"url": "/r/software.cfg", "profiles": "p"}
KEY = core.entry_key(FACTS)
GOOD = core.Manifest(KEY, ROOT, "0" * 64, 10, FACTS, 1.5, "n1").to_json()


@pytest.mark.parametrize("change, problem", [
    ({}, None),
    ({"format": 2}, "format 1"),
    ({"key": "f" * 64}, "another entry"),
    ({"archive": "../x.tar"}, "another entry"),
    ({"software_dir": "/elsewhere"}, "absolute paths"),
    ({"facts": {"url": "other"}}, "facts differ"),
    ({"sha256": "xyz"}, "no sha256"),
    ({"size": -1}, "no size"),
    ({"size": True}, "no size"),
])
def test_a_manifest_is_read_only_for_its_own_install(change, problem):
    import json
    raw = json.dumps({**json.loads(GOOD), **change}).encode()
    got = core.read_manifest(raw, KEY, ROOT, FACTS)
    if problem is None:
        assert isinstance(got, core.Manifest) and got.size == 10 and got.built_by == "n1"
    else:
        assert isinstance(got, str) and problem in got, got


def test_garbage_is_not_a_manifest():
    assert "not JSON" in core.read_manifest(b"\xff{", KEY, ROOT, FACTS)
    assert "format 1" in core.read_manifest(b"[]", KEY, ROOT, FACTS)


def test_the_key_changes_with_every_fact():
    base = {"url": "u", "profiles": "p", "software_dir": "/s", "platform": {"python": "3"}}
    keys = {core.entry_key(base)}
    for k, v in [("url", "u2"), ("profiles", "p2"), ("software_dir", "/t"),
                 ("platform", {"python": "3.12"})]:
        keys.add(core.entry_key({**base, k: v}))
    assert len(keys) == 5
    assert core.entry_key(dict(reversed(base.items()))) == core.entry_key(base)


@pytest.mark.parametrize("text, extends", [
    ("[buildout]\nextends = a.cfg b.cfg\nparts =\n", ["a.cfg", "b.cfg"]),
    ("[buildout]\nextends =\n    a.cfg\n    ../b.cfg\nparts = x\n", ["a.cfg", "../b.cfg"]),
    ("[buildout]\nextends += c.cfg\n", ["c.cfg"]),
    ("[other]\nextends = no.cfg\n[buildout]\nparts =\n", []),
    ("# [buildout]\n[buildout]\n# extends = no.cfg\n", []),
])
def test_the_profiles_a_release_extends(text, extends):
    assert builtcache._extends_of(text) == extends


def test_the_profiles_digest_covers_the_release_and_what_it_extends(tmp_path):
    common = tmp_path / "common.cfg"
    common.write_text("[buildout]\n")
    rdir = tmp_path / "r"
    rdir.mkdir()
    sw = rdir / "software.cfg"
    sw.write_text("[buildout]\nextends = ../common.cfg\n")
    (rdir / "tool.c").write_text("int main(){return 0;}\n")
    first = builtcache.release_digest(str(sw))
    assert builtcache.release_digest(f"file://{sw}") == first
    (rdir / "tool.c").write_text("int main(){return 1;}\n")
    second = builtcache.release_digest(str(sw))
    common.write_text("[buildout]\nparts =\n")
    third = builtcache.release_digest(str(sw))
    assert len({first, second, third}) == 3
    sw.write_text("[buildout]\nextends = https://example.invalid/base.cfg\n")
    with pytest.raises(builtcache.NotCacheable, match="remote profile"):
        builtcache.release_digest(str(sw))
    with pytest.raises(builtcache.NotCacheable, match="remote profile"):
        builtcache.release_digest("https://example.invalid/software.cfg")


def test_node_format_keeps_the_shared_cache_until_changed(tmp_path):
    from click.testing import CliRunner

    from slapfed.cli.main import cli as main
    from slapfed.node.layout import InstallSettings, Paths, load_config

    root, shared = str(tmp_path / "node"), str(tmp_path / "built")
    base = ["node", "format", "--no-register", "--master", "http://127.0.0.1:1",
            "--computer", "c1", "--partitions", "0", "--root", root, "--single-user"]
    run = CliRunner().invoke
    assert run(main, base + ["--shared-cache", shared]).exit_code == 0
    assert run(main, base).exit_code == 0
    assert load_config(root).install_settings() == InstallSettings(
        False, Paths(root).download_cache, shared)
    assert run(main, base + ["--shared-cache", ""]).exit_code == 0
    assert load_config(root).install_settings().shared_cache is None
