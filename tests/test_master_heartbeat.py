"""gunicorn's workers keep their liveness file on tmpfs when the machine has one (no disk
metadata write per turn of a worker's event loop), and fall back to the temporary
directory where that directory is missing."""
import os

import pytest

from slapfed.master.server import HEARTBEAT_DIR, MasterApplication, ServeOptions, heartbeat_dir


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: tmp, "itself"),
    (lambda tmp: tmp / "missing", None),
    (lambda tmp: (tmp / "a-file").write_text("") and tmp / "a-file", None),
], ids=["writable-dir", "missing", "not-a-directory"])
def test_heartbeat_dir_is_a_directory_the_workers_can_write(tmp_path, make, expected):
    candidate = make(tmp_path)
    assert heartbeat_dir(str(candidate)) == (str(candidate) if expected == "itself" else None)


def test_the_master_hands_gunicorn_the_heartbeat_dir(tmp_path):
    app = MasterApplication(ServeOptions(data_dir=str(tmp_path), insecure_http=True), None)
    expected = HEARTBEAT_DIR if os.path.isdir(HEARTBEAT_DIR) and os.access(
        HEARTBEAT_DIR, os.W_OK | os.X_OK) else None
    assert app.cfg.worker_tmp_dir == expected
