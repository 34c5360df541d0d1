"""The README's first command: `slapfed demo start` brings up a master over mutual TLS,
a node, the hello service and a master requested from the master; `demo stop` leaves
no process behind."""
import json
import subprocess

import pytest

from slapfed.procs import pid_alive, slapfed_argv


@pytest.mark.timeout(400)
def test_the_demo_starts_a_federation_and_stops_it_cleanly(tmp_path):
    base = tmp_path / "demo"
    try:
        done = subprocess.run(slapfed_argv("demo", "start", "--dir", str(base)),
                              capture_output=True, text=True, timeout=360)
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert "master answers at https://" in out
        assert '"greeting": "bonjour"' in out
        assert "chain of masters: demo-root -> demo-child" in out
        assert "knows you as admin/owner" in out
        pids = list(json.loads((base / "demo.json").read_text())["pids"].values())
    finally:
        stopped = subprocess.run(slapfed_argv("demo", "stop", "--dir", str(base)),
                                 capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(pid_alive(p) for p in pids)
    for pid_file in base.rglob("*.pid"):
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            continue
        assert not pid_alive(pid), f"{pid_file} names a live process"
