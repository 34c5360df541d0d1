"""Backups, restore and packing of a master's data directory (store.backup,
store.maintenance): on real FileStorages, a real CA directory and the real CLI."""
import datetime as dt
import json
import os
import stat
import subprocess
import sys

import pytest
import transaction
from persistent.mapping import PersistentMapping

from slapfed.ca.authority import CertificateAuthority
from slapfed.core.errors import BackupCorrupt, Conflict, InvalidInput, NotFound
from slapfed.store import backup as bk
from slapfed.store import maintenance, open_db


def _put(db, key, value, n=1):
    conn = db.open()
    try:
        box = conn.root().setdefault("test_box", PersistentMapping())
        for i in range(n):
            box[f"{key}-{i}" if n > 1 else key] = PersistentMapping({"v": value})
        transaction.commit()
    finally:
        conn.close()


def _read(data_dir, key):
    db = open_db(None, str(data_dir))
    try:
        conn = db.open()
        box = conn.root().get("test_box", {})
        value = box[key]["v"] if key in box else None
        conn.close()
        return value
    finally:
        db.close()


@pytest.fixture
def master_dir(tmp_path):
    """A master data directory: its FileStorage (kept open, as a running master does),
    a CA with an issued certificate and a token, peer credentials, runtime files."""
    data = tmp_path / "data"
    db = open_db(None, str(data))
    ca = CertificateAuthority.init(data / "ca", "m1")
    ca.token_for("c1")
    (data / "peers" / "bee").mkdir(parents=True)
    (data / "peers" / "bee" / "identity.key").write_text("peer key")
    os.chmod(data / "peers" / "bee" / "identity.key", 0o600)
    (data / "master.url").write_text("https://127.0.0.1:1234\n")
    (data / "tls").mkdir()
    (data / "tls" / "master.key").write_text("re-issued at start")
    yield data, db, ca
    db.close()


def test_backup_restore_roundtrip_keeps_identity_and_data(master_dir, tmp_path):
    data, db, ca = master_dir
    _put(db, "a", 1)
    result = bk.backup(data, tmp_path / "repo")
    assert result.kind == "full" and result.tid == db.storage.lastTransaction().hex()
    restored = bk.restore(tmp_path / "repo", tmp_path / "new")
    new = tmp_path / "new"
    assert restored.tid == result.tid and restored.url == "https://127.0.0.1:1234"
    for rel in ("ca/ca.key", "ca/ca.crt", "ca/tokens.json", "peers/bee/identity.key"):
        assert (new / rel).read_bytes() == (data / rel).read_bytes(), rel
    assert not (new / "tls").exists() and not (new / "master.url").exists()
    assert stat.S_IMODE(os.stat(new / "ca" / "ca.key").st_mode) == 0o600
    old_ca, new_ca = (CertificateAuthority(d / "ca").describe() for d in (data, new))
    assert {k: v for k, v in new_ca.items() if k not in ("directory", "certificate_file")} \
        == {k: v for k, v in old_ca.items() if k not in ("directory", "certificate_file")}
    assert _read(new, "a") == 1


def test_repository_is_private(master_dir, tmp_path):
    data, db, _ = master_dir
    bk.backup(data, tmp_path / "repo")
    for dirpath, dirnames, filenames in os.walk(tmp_path / "repo"):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700, dirpath
        for name in filenames:
            mode = stat.S_IMODE(os.stat(os.path.join(dirpath, name)).st_mode)
            assert mode == 0o600, os.path.join(dirpath, name)


def test_incremental_chain_restores_each_point(master_dir, tmp_path):
    data, db, _ = master_dir
    repo = tmp_path / "repo"
    points = []
    for i, kind in enumerate(("full", "incremental", "incremental")):
        _put(db, "k", i)
        r = bk.backup(data, repo)
        assert r.kind == kind
        points.append(r)
    assert bk.backup(data, repo).kind == "unchanged"       # nothing new: nothing copied
    docs = bk.manifests(repo)
    assert [d["parent"] for d in docs[1:]] == [d["id"] for d in docs[:-1]]
    for i, r in enumerate(points):
        out = tmp_path / f"at-{i}"
        got = bk.restore(repo, out, at=bk.parse_time(r.time))
        assert got.id == r.id and got.tid == r.tid
        assert _read(out, "k") == i
    with pytest.raises(NotFound):
        bk.restore(repo, tmp_path / "too-early", at=bk.parse_time("2000-01-01T00:00:00Z"))
    assert bk.backup(data, repo, full=True).kind == "full"


def test_a_corrupted_backup_is_detected_and_refused(master_dir, tmp_path):
    data, db, _ = master_dir
    repo = tmp_path / "repo"
    _put(db, "x", "y" * 1000, n=50)
    bk.backup(data, repo)
    doc = bk.manifests(repo)[-1]
    fsz = repo / bk.ZODB_DIR / doc["zodb"]["chain"][0]["file"]
    raw = bytearray(fsz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    fsz.write_bytes(bytes(raw))
    with pytest.raises(BackupCorrupt, match="damaged"):
        bk.verify(repo)
    with pytest.raises(BackupCorrupt, match="damaged"):
        bk.restore(repo, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new")]


def test_a_corrupted_data_file_is_refused(master_dir, tmp_path):
    data, db, _ = master_dir
    repo = tmp_path / "repo"
    bk.backup(data, repo)
    key = next(e for e in bk.manifests(repo)[-1]["files"] if e["path"] == "ca/ca.key")
    obj = repo / bk.OBJECTS_DIR / key["sha256"][:2] / key["sha256"]
    obj.write_bytes(obj.read_bytes()[:-3])
    with pytest.raises(BackupCorrupt, match="ca/ca.key"):
        bk.verify(repo, every=True)
    with pytest.raises(BackupCorrupt):
        bk.restore(repo, tmp_path / "new")


def test_restore_refuses_a_non_empty_directory(master_dir, tmp_path):
    data, db, _ = master_dir
    bk.backup(data, tmp_path / "repo")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "something").write_text("mine")
    with pytest.raises(InvalidInput, match="not an empty directory"):
        bk.restore(tmp_path / "repo", tmp_path / "busy")
    assert os.listdir(tmp_path / "busy") == ["something"]
    (tmp_path / "empty").mkdir()
    assert bk.restore(tmp_path / "repo", tmp_path / "empty").files > 0


def test_a_half_written_backup_is_never_taken_for_a_good_one(master_dir, tmp_path):
    data, db, _ = master_dir
    repo = tmp_path / "repo"
    _put(db, "k", "first")
    good = bk.backup(data, repo)
    _put(db, "k", "second")

    def crash(*_a, **_k):
        raise OSError("disk full")
    real = bk.write_private_atomically
    bk.write_private_atomically = lambda path, content: (
        crash() if path.parent.name == bk.MANIFESTS_DIR else real(path, content))
    try:
        with pytest.raises(OSError):
            bk.backup(data, repo)
    finally:
        bk.write_private_atomically = real
    assert [d["id"] for d in bk.manifests(repo)] == [good.id]
    assert _read(bk.restore(repo, tmp_path / "r1").data_dir, "k") == "first"
    again = bk.backup(data, repo)            # the leftovers are cleaned, the chain holds
    assert again.kind == "incremental"
    assert _read(bk.restore(repo, tmp_path / "r2").data_dir, "k") == "second"


def test_one_backup_at_a_time(master_dir, tmp_path):
    data, db, _ = master_dir
    repo = tmp_path / "repo"
    bk.private_dir(repo)
    with bk.file_lock(repo / bk.REPO_LOCK):
        with pytest.raises(Conflict, match="already running"):
            bk.backup(data, repo, wait=0)


def test_remote_zeo_and_nested_repository_are_refused(master_dir, tmp_path):
    data, db, _ = master_dir
    with pytest.raises(InvalidInput, match="ZEO"):
        bk.backup(data, tmp_path / "repo", storage="zeo://127.0.0.1:9")
    with pytest.raises(InvalidInput, match="outside"):
        bk.backup(data, data / "backups")


def test_topology_files_are_kept(master_dir, tmp_path):
    data, db, _ = master_dir
    topo = tmp_path / "etc" / "site.toml"
    topo.parent.mkdir()
    topo.write_text("# a topology\n")
    (data / "topology.json").write_text(json.dumps({"files": [str(topo)], "name": "m1"}))
    bk.backup(data, tmp_path / "repo")
    got = bk.restore(tmp_path / "repo", tmp_path / "new")
    assert got.master_name == "m1" and len(got.topology) == 1
    assert open(got.topology[0]).read() == "# a topology\n"
    assert json.loads((tmp_path / "new" / "topology.json").read_text())["files"] == got.topology


def test_pack_shrinks_the_file_and_keeps_current_data(tmp_path):
    data = tmp_path / "data"
    db = open_db(None, str(data))
    for i in range(30):
        _put(db, "k", "v" * 2000 + str(i), n=20)
    db.close()
    fs = data / "master.fs"
    before = fs.stat().st_size
    result = maintenance.pack(str(data), keep=0)
    assert result.size_after < before / 5 and fs.stat().st_size == result.size_after
    assert _read(data, "k-3") == "v" * 2000 + "29"
    assert not (data / "master.fs.old").exists()


def test_pack_of_a_running_master_is_done_by_its_maintenance_thread(tmp_path):
    data = tmp_path / "data"
    db = open_db(None, str(data))                  # holds the FileStorage, as a master
    try:
        for i in range(10):
            _put(db, "k", "v" * 2000 + str(i), n=10)
        m = maintenance.Maintenance(db, maintenance.MaintenanceOptions(
            str(data), str(data / "master.fs"), pack_every=0)).start()
        try:
            result = maintenance.pack(str(data), keep=0, timeout=30)
        finally:
            m.stop()
        assert result.via == "master" and result.size_after < result.size_before
        conn = db.open()
        assert conn.root()["test_box"]["k-1"]["v"].endswith("9")
        conn.close()
    finally:
        db.close()


def test_bad_keep_is_refused(tmp_path):
    with pytest.raises(InvalidInput):
        maintenance.pack(str(tmp_path), keep=-1)


def test_cli_backup_restore_verify(master_dir, tmp_path):
    data, db, _ = master_dir
    repo, new = tmp_path / "repo", tmp_path / "new"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "slapfed.cli.main", "master", *args],
                              capture_output=True, text=True, timeout=60)
    done = cli("backup", "--data", str(data), "--to", str(repo), "--json")
    assert done.returncode == 0, done.stderr
    backup_id = json.loads(done.stdout)["id"]
    done = cli("verify-backup", "--from", str(repo), "--all", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["backups"][0]["id"] == backup_id
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    done = cli("restore", "--from", str(repo), "--data", str(new), "--at", now)
    assert done.returncode == 0, done.stderr
    assert "--listen 127.0.0.1:1234" in done.stdout
    done = cli("restore", "--from", str(repo), "--data", str(new))
    assert done.returncode == 3 and "not an empty directory" in done.stderr
    done = cli("restore", "--from", str(repo), "--data", str(tmp_path / "x"), "--at", "soon")
    assert done.returncode == 3 and "ISO 8601" in done.stderr
