"""A master's ZEO server dies with its master: when the gunicorn arbiter of a
`master serve --start-zeo` is killed (SIGKILL: no cleanup runs), the ZEO server it
started ends within a second or so and lets go of the FileStorage lock, so that the
master starts again on the same data directory. Real master and ZEO processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import start_master_process, stop_process
from slapfed.core.errors import StorageError
from slapfed.procs import pid_alive, stop_pid, wait_for
from slapfed.store.zeo import PID_FILE, start_zeo_server, stop_orphaned_zeo, zeo_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _read_pid(path) -> int:
    return int(open(path).read().strip())


def test_killing_the_arbiter_takes_its_zeo_server_down_and_the_master_restarts(tmp_path):
    data = tmp_path / "master"
    proc, url = start_master_process(str(data), "--start-zeo", "--workers", "2")
    restarted = None
    try:
        found = zeo_of(str(data))
        assert found is not None and found[1] == proc.pid
        zeo = found[0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        wait_for(lambda: not pid_alive(zeo), 3, "the ZEO server to follow its master")
        assert not os.path.exists(data / "zeo.address")      # a clean shutdown
        restarted, url2 = start_master_process(str(data), "--start-zeo", "--workers", "2")
        import requests
        assert requests.get(url2 + "/api/v1/health", timeout=5).status_code == 200
        again = zeo_of(str(data))
        assert again is not None and again[1] == restarted.pid and again[0] != zeo
    finally:
        for p in (restarted, proc):
            if p is not None:
                stop_process(p, timeout=15)
        found = zeo_of(str(data))
        if found is not None:
            stop_pid(found[0], 5)


def test_a_zeo_server_whose_master_lives_is_never_stopped_by_another(tmp_path):
    server = start_zeo_server(str(tmp_path))
    try:
        assert zeo_of(str(tmp_path)) == (server.pid, os.getpid())
        with pytest.raises(StorageError, match=f"ZEO server {server.pid} of the running master"):
            start_zeo_server(str(tmp_path))
        assert server.alive()
    finally:
        server.stop()
    assert zeo_of(str(tmp_path)) is None
    assert stop_orphaned_zeo(str(tmp_path)) is None


def test_an_orphaned_zeo_server_is_stopped_before_a_new_one_starts(tmp_path):
    """The orphan of a master that predates the parent watch: no --parent-pid, its
    parent gone (reparented). Started through a shell that exits at once."""
    shell = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -m slapfed.store.zeo --data "{tmp_path}" '
                     f'</dev/null >/dev/null 2>&1 & echo $!'],
        capture_output=True, text=True, timeout=30, start_new_session=True)
    orphan = int(shell.stdout.strip())
    try:
        wait_for(lambda: (tmp_path / "zeo.address").exists()
                 and os.path.exists(tmp_path / PID_FILE), 30, "the orphan to listen")
        assert _read_pid(tmp_path / PID_FILE) == orphan
        server = start_zeo_server(str(tmp_path))
        try:
            assert not pid_alive(orphan)
            assert zeo_of(str(tmp_path)) == (server.pid, os.getpid())
        finally:
            server.stop()
    finally:
        stop_pid(orphan, 5)
