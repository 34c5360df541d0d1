"""Opening storages from URIs (FileStorage, file://, ZEO) and schema generations."""
import json
import os

import pytest
from click.testing import CliRunner

from slapfed.cli.main import cli
from slapfed.core.errors import InvalidInput, StorageError
from slapfed.model import ROOT_KEY
from slapfed.store import generation_of, generations, open_db, parse_storage_uri
from slapfed.store.zeo import start_zeo_server


def root_app(db):
    conn = db.open()
    try:
        return conn.root()[ROOT_KEY]
    finally:
        conn.close()


def test_default_is_a_filestorage_in_the_data_dir(tmp_path):
    db = open_db(None, str(tmp_path / "data"))
    try:
        assert os.path.exists(tmp_path / "data" / "master.fs")
        assert generation_of(db) == generations.LATEST_GENERATION
        app = root_app(db)
        assert app.computers is not None and app.instances is not None
    finally:
        db.close()


def test_file_uri_names_the_file(tmp_path):
    path = tmp_path / "elsewhere" / "x.fs"
    db = open_db(f"file://{path}", None)
    db.close()
    assert path.exists()


@pytest.mark.parametrize("uri, data, kind", [
    (None, "/d", "file"), ("file", "/d", "file"), ("file:///a/b.fs", None, "file"),
    ("zeo://127.0.0.1:8100", None, "zeo"), ("zeo://[::1]:8100", None, "zeo"),
], ids=["none", "file", "file-uri", "zeo", "zeo-v6"])
def test_parse_storage_uri(uri, data, kind):
    assert parse_storage_uri(uri, data).kind == kind


@pytest.mark.parametrize("uri, data", [
    (None, None), ("file://relative.fs", None), ("zeo://host", None),
    ("zeo://host:99999", None), ("postgres://x", None),
], ids=["default-without-data", "relative-file", "zeo-without-port", "zeo-bad-port", "unknown"])
def test_bad_storage_uris_are_refused(uri, data):
    with pytest.raises(InvalidInput):
        parse_storage_uri(uri, data)


def test_second_process_cannot_open_a_filestorage(tmp_path):
    import subprocess
    import sys
    db = open_db(None, str(tmp_path))
    try:
        code = ("from slapfed.store import open_db\n"
                "from slapfed.core.errors import StorageError\n"
                f"try:\n    open_db(None, {str(tmp_path)!r})\n"
                "except StorageError as e:\n    print('refused:', e.message)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=30)
        assert "refused:" in out.stdout and "another process" in out.stdout, out.stderr
    finally:
        db.close()


def test_zeo_server_started_and_stopped_by_pid(tmp_path):
    server = start_zeo_server(str(tmp_path))
    try:
        assert server.host == "127.0.0.1" and server.port > 0 and server.alive()
        db = open_db(server.uri, None)
        try:
            assert generation_of(db) == generations.LATEST_GENERATION
        finally:
            db.close()
        db2 = open_db(server.uri, None)   # evolve already done: opening again is a no-op
        db2.close()
    finally:
        server.stop()
    assert not server.alive()
    # the data is a plain FileStorage afterwards
    db = open_db(None, str(tmp_path))
    assert generation_of(db) == generations.LATEST_GENERATION
    db.close()


def test_unreachable_zeo_is_a_storage_error():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    from slapfed.store import open_storage
    with pytest.raises(StorageError):
        open_storage(parse_storage_uri(f"zeo://127.0.0.1:{port}", None), wait_timeout=0.5)


def test_evolve_steps_run_once_and_record_the_generation(tmp_path, monkeypatch):
    calls = []

    def evolve_next(root):
        calls.append(1)
        root[ROOT_KEY].marker = "evolved"

    db = open_db(None, str(tmp_path))
    db.close()
    following = generations.LATEST_GENERATION + 1
    monkeypatch.setattr(generations, "EVOLVE_STEPS", generations.EVOLVE_STEPS + (evolve_next,))
    monkeypatch.setattr(generations, "LATEST_GENERATION", following)
    for _ in range(2):
        db = open_db(None, str(tmp_path))
        assert generation_of(db) == following and root_app(db).marker == "evolved"
        db.close()
    assert calls == [1]


def test_storage_from_newer_code_is_refused(tmp_path):
    import transaction
    db = open_db(None, str(tmp_path))
    conn = db.open()
    conn.root()[ROOT_KEY].generation = 99
    transaction.commit()
    conn.close()
    db.close()
    with pytest.raises(StorageError) as info:
        open_db(None, str(tmp_path))
    assert "generation 99" in info.value.message


def test_migrate_command(tmp_path):
    runner = CliRunner()
    first = runner.invoke(cli, ["master", "migrate", "--data", str(tmp_path), "--json"])
    assert first.exit_code == 0, first.output
    applied = [step.__name__ for step in generations.EVOLVE_STEPS]
    assert '"applied": ' + json.dumps(applied, indent=2).replace("\n", "\n  ") in first.output
    second = runner.invoke(cli, ["master", "migrate", "--data", str(tmp_path)])
    assert second.exit_code == 0 and "nothing to do" in second.output


def test_evolve3_records_each_instance_tree_owner(tmp_path):
    """Generation 3: root_requester on every instance, from the root of its tree."""
    import transaction
    from slapfed.model import Instance
    db = open_db(None, str(tmp_path))
    try:
        conn = db.open()
        app = conn.root()[ROOT_KEY]
        made = {}
        for iid, requester, parent in (("i-root", "person/alice", None),
                                       ("i-child", "i-root", "i-root"),
                                       ("i-grandchild", "i-child", "i-child"),
                                       ("i-other", "person/bob", None)):
            inst = Instance(iid, requester, iid, "/r.cfg", "h", "default", {}, {}, "started",
                            False, parent, 0.0)
            del inst.root_requester          # as written before generation 3
            app.instances[iid] = made[iid] = inst
        transaction.commit()
        assert made["i-grandchild"].root_requester is None
        generations.evolve3(conn.root())
        assert {i: made[i].root_requester for i in made} == {
            "i-root": "person/alice", "i-child": "person/alice",
            "i-grandchild": "person/alice", "i-other": "person/bob"}
        transaction.abort()
        conn.close()
    finally:
        db.close()
