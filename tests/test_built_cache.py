"""The shared cache of built releases, with real buildout runs: a release that downloads
its source (from a server on loopback) and compiles a program with the C compiler
(slapfed:build) is installed by node 1 online; node 1 is lost, node 2 is made at the
same root with the same cache, offline and with the network cut: it unpacks the built
software instead of compiling (faster, the very same files), a node at another path
builds, a corrupted entry is ignored and rebuilt, a hostile one is refused, and two
nodes filling one entry at once leave one sound entry."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading

import pytest
from test_install_cache import SOURCE, node_paths, source_server  # noqa: F401 (fixture)

from slapfed.core import builtcache as core
from slapfed.core.wire import software_hash
from slapfed.node import builtcache
from slapfed.node import buildout as nb
from slapfed.node.layout import InstallSettings

CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler on this machine")

FUNCTIONS = 200      # what the compiler chews on (about a second at -O2 here)


def c_source() -> str:
    funcs = "\n".join(
        f"static long f{i}(long x) {{ long s = 0; for (long j = 0; j < x; j++) "
        f"s += (j * {i + 3}) ^ (s >> {i % 7 + 1}); return s; }}" for i in range(FUNCTIONS))
    calls = " + ".join(f"f{i}(n)" for i in range(FUNCTIONS))
    return ("#include <stdio.h>\n#include <stdlib.h>\n" + funcs +
            "\nint main(int c, char **v) { long n = c > 1 ? atol(v[1]) : 3; "
            f'printf("%ld\\n", {calls}); return 0; }}\n')


def release(tmp_path, url: str) -> str:
    rdir = tmp_path / "release"
    rdir.mkdir()
    (rdir / "tool.c").write_text(c_source())
    md5 = hashlib.md5(SOURCE).hexdigest()
    (rdir / "software.cfg").write_text(f"""[buildout]
parts = sources tool instance-default

[sources]
recipe = slapfed:download
url = {url}
md5sum = {md5}

[tool]
recipe = slapfed:build
command =
    {CC}
    -O2
    -o
    tool
    ${{release:directory}}/tool.c

[instance-default]
recipe = slapfed:file
path = ${{buildout:directory}}/instance-default.cfg
content = [buildout]
""")
    return str(rdir / "software.cfg")


def tree(path: str) -> dict:
    """Every file, directory and link below ``path``: its kind, mode and content digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            st = os.lstat(full)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("dir", oct(st.st_mode & 0o7777))
            else:
                with open(full, "rb") as fh:
                    out[rel] = ("file", oct(st.st_mode & 0o7777),
                                hashlib.sha256(fh.read()).hexdigest())
    return out


@pytest.fixture(scope="module")
def runner():
    r = nb.ForkRunner()
    r.warm_up()
    return r


def run_tool(paths, h) -> str:
    tool = os.path.join(paths.software_dir(h), "parts", "tool", "tool")
    return subprocess.run([tool, "7"], capture_output=True, text=True, check=True).stdout


def entry(cache, key) -> str:
    return builtcache.entry_dir(cache, key)


def only_key(cache) -> str:
    keys = [n for n in os.listdir(builtcache.built_dir(cache)) if not n.startswith(".")]
    assert len(keys) == 1, keys
    return keys[0]


def test_a_lost_node_rebuilt_at_the_same_path_unpacks_instead_of_building(
        tmp_path, source_server, runner):  # noqa: F811
    url, served, stop = source_server
    sw = release(tmp_path, url)
    h = software_hash(sw)
    downloads, shared = str(tmp_path / "downloads"), str(tmp_path / "built")

    # node 1 installs online: downloads, compiles, and fills the shared cache
    one = node_paths(tmp_path, "node")
    built = nb.install_software(one, sw, h, runner, InstallSettings(True, downloads, shared))
    assert built.ok, built.log_tail
    assert built.cache.startswith("built; stored as entry"), built.cache
    assert served == ["/hello-src-1.0.tar.gz"]
    key = only_key(shared)
    manifest = json.load(open(os.path.join(entry(shared, key), core.MANIFEST)))
    assert manifest["software_dir"] == one.software_dir(h)
    before, output = tree(one.software_dir(h)), run_tool(one, h)

    # node 1 is lost; node 2 is made at the same root, offline, with the network cut
    shutil.rmtree(one.root)
    stop()
    two = node_paths(tmp_path, "node")
    got = nb.install_software(two, sw, h, runner, InstallSettings(False, downloads, shared))
    assert got.ok, got.log_tail
    assert got.cache.startswith("unpacked: "), got.cache
    assert got.software_types == ("default",)
    assert served == ["/hello-src-1.0.tar.gz"]                # nothing downloaded
    after = tree(two.software_dir(h))
    # the very same files, but for the generated buildout.cfg: this node's own (offline)
    assert after.pop("buildout.cfg") != before.pop("buildout.cfg")
    assert "offline = true" in open(os.path.join(two.software_dir(h), "buildout.cfg")).read()
    assert after == before
    assert run_tool(two, h) == output
    assert got.seconds < built.seconds, (got.seconds, built.seconds)
    print(f"built in {built.seconds:.2f} s, unpacked in {got.seconds:.2f} s")
    assert "installed from the shared cache" in open(two.software_log(h)).read()

    # a node at another path builds (offline, from the download cache), and keeps the
    # entry of the first path
    other = node_paths(tmp_path, "elsewhere")
    again = nb.install_software(other, sw, h, runner, InstallSettings(False, downloads, shared))
    assert again.ok, again.log_tail
    assert again.cache.startswith("built; stored"), again.cache
    assert run_tool(other, h) == output
    assert os.path.isfile(os.path.join(entry(shared, key), core.MANIFEST))


def test_a_corrupted_entry_is_ignored_removed_and_built_again(tmp_path, source_server,
                                                               runner):  # noqa: F811
    url, _served, _stop = source_server
    sw = release(tmp_path, url)
    h = software_hash(sw)
    downloads, shared = str(tmp_path / "downloads"), str(tmp_path / "built")
    one = node_paths(tmp_path, "node")
    assert nb.install_software(one, sw, h, runner,
                               InstallSettings(True, downloads, shared)).ok
    key = only_key(shared)
    archive = os.path.join(entry(shared, key), core.ARCHIVE)
    with open(archive, "r+b") as fh:             # one byte flipped in the middle
        fh.seek(os.path.getsize(archive) // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    shutil.rmtree(one.root)
    two = node_paths(tmp_path, "node")
    got = nb.install_software(two, sw, h, runner, InstallSettings(False, downloads, shared))
    assert got.ok, got.log_tail
    assert got.cache.startswith("built; stored"), got.cache    # rebuilt, entry refilled
    log = open(two.software_log(h)).read()
    assert "does not match its manifest" in log
    assert run_tool(two, h).strip()
    # the new entry is sound: a third node at that path unpacks it
    shutil.rmtree(two.root)
    three = node_paths(tmp_path, "node")
    got = nb.install_software(three, sw, h, runner, InstallSettings(False, downloads, shared))
    assert got.ok and got.cache.startswith("unpacked: "), got.cache


def _hostile_entry(shared: str, key: str, sdir: str, facts: dict, add) -> None:
    """Entry ``key`` whose archive holds what ``add(tar)`` puts there, with a manifest
    that matches it (as a writer with access to the cache could make)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("instance-default.cfg")
        data = b"[buildout]\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        add(tar)
    raw = buf.getvalue()
    where = builtcache.entry_dir(shared, key)
    os.makedirs(where)
    with open(os.path.join(where, core.ARCHIVE), "wb") as fh:
        fh.write(raw)
    with open(os.path.join(where, core.MANIFEST), "w") as fh:
        fh.write(core.Manifest(key, sdir, hashlib.sha256(raw).hexdigest(), len(raw),
                               facts).to_json())


def _file(name, data=b"x"):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return add


def _link(name, target, kind=tarfile.SYMTYPE):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tar.addfile(info)
    return add


def _device(name):
    def add(tar):
        info = tarfile.TarInfo(name)
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        tar.addfile(info)
    return add


def _below_link(tar):
    _link("up", "parts")(tar)
    _file("up/escaped")(tar)


@pytest.mark.parametrize("add, problem", [
    (_file("../outside"), "'..' segment"),
    (_file("/tmp/slapfed-absolute-member"), "absolute path"),
    (_link("bin/python", "/usr/bin/python3"), "outside"),
    (_link("parts/up", "../../.."), "outside"),
    (_link("hard", "/etc/passwd", tarfile.LNKTYPE), "hard link"),
    (_device("null"), "device"),
    (_below_link, "below a symbolic link"),
], ids=["dotdot", "absolute", "symlink-absolute-outside", "symlink-relative-outside",
        "hardlink", "device", "below-a-link"])
def test_a_hostile_entry_is_refused_and_the_release_built(tmp_path, runner, add, problem):
    rdir = tmp_path / "release"
    rdir.mkdir()
    (rdir / "software.cfg").write_text("""[buildout]
parts = instance-default

[instance-default]
recipe = slapfed:file
path = ${buildout:directory}/instance-default.cfg
content = [buildout]
""")
    sw = str(rdir / "software.cfg")
    h = software_hash(sw)
    shared, downloads = str(tmp_path / "built"), str(tmp_path / "downloads")
    paths = node_paths(tmp_path, "node")
    sdir = paths.software_dir(h)
    cfg = nb.render_software_cfg(sw, sdir, InstallSettings(False, downloads))
    facts = builtcache.facts(sw, sw, sdir, cfg)
    key = core.entry_key(facts)
    _hostile_entry(shared, key, sdir, facts, add)
    got = nb.install_software(paths, sw, h, runner, InstallSettings(False, downloads, shared))
    assert got.ok, got.log_tail
    assert got.cache.startswith("built; stored"), got.cache    # refused, built, refilled
    assert problem in open(paths.software_log(h)).read()
    assert not os.path.lexists(tmp_path / "outside")
    assert not os.path.lexists("/tmp/slapfed-absolute-member")
    assert sorted(os.listdir(paths.software)) == [h]      # no staging left


def test_two_nodes_filling_one_entry_at_once_leave_one_sound_entry(tmp_path):
    sdir = str(tmp_path / "software" / "abc")
    os.makedirs(os.path.join(sdir, "parts", "p"))
    with open(os.path.join(sdir, "parts", "p", "data"), "wb") as fh:
        fh.write(os.urandom(1 << 20))
    with open(os.path.join(sdir, "instance-default.cfg"), "w") as fh:
        fh.write("[buildout]\n")
    os.symlink("parts/p/data", os.path.join(sdir, "data-link"))
    shared = str(tmp_path / "built")
    facts = {"anything": "the same for both"}
    key = core.entry_key(facts)
    start, said = threading.Barrier(4), []

    def fill():
        start.wait()
        said.append(builtcache.publish(shared, key, sdir, facts, 1.0))
    threads = [threading.Thread(target=fill) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(s.startswith("stored") for s in said) == 1, said
    assert os.listdir(builtcache.built_dir(shared)) == [key]   # no temporary left
    dest = str(tmp_path / "elsewhere" / "abc")
    os.makedirs(os.path.dirname(dest))
    # sound: unpacked at its own path it gives the same tree
    shutil.move(sdir, dest)
    got = builtcache.unpack(shared, key, sdir, facts)
    assert got.hit, got.note
    assert tree(sdir) == tree(dest)


def test_an_entry_for_another_path_is_never_unpacked(tmp_path):
    sdir = str(tmp_path / "a" / "sw")
    os.makedirs(sdir)
    open(os.path.join(sdir, "instance-default.cfg"), "w").write("[buildout]\n")
    shared, facts = str(tmp_path / "built"), {"f": 1}
    key = core.entry_key(facts)
    assert builtcache.publish(shared, key, sdir, facts, 0.5).startswith("stored")
    other = str(tmp_path / "b" / "sw")
    got = builtcache.unpack(shared, key, other, facts)
    assert not got.hit and "absolute paths" in got.note
    assert not os.path.exists(other)


def test_a_build_command_that_fails_fails_the_install_and_stores_nothing(tmp_path, runner):
    rdir = tmp_path / "release"
    rdir.mkdir()
    (rdir / "software.cfg").write_text(f"""[buildout]
parts = broken instance-default

[broken]
recipe = slapfed:build
command = {CC} -o tool does-not-exist.c

[instance-default]
recipe = slapfed:file
path = ${{buildout:directory}}/instance-default.cfg
content = [buildout]
""")
    sw = str(rdir / "software.cfg")
    h = software_hash(sw)
    shared = str(tmp_path / "built")
    paths = node_paths(tmp_path, "node")
    got = nb.install_software(paths, sw, h, runner,
                              InstallSettings(False, str(tmp_path / "dl"), shared))
    assert not got.ok
    assert f"[broken] {CC} exited with 1" in got.log_tail
    assert not os.path.isdir(builtcache.built_dir(shared)) or \
        not os.listdir(builtcache.built_dir(shared))
