"""The README's first command: `slapfed demo start` brings up a master over mutual TLS,
a node, the hello service and a master requested from the master; `demo stop` leaves
no process behind; and the demo starts again on the data it kept, as many times as
wanted, never taking a status from an earlier run as proof that a service runs now."""
import json
import subprocess

import pytest

from slapfed.procs import pid_alive, slapfed_argv


def _start(base):
    done = subprocess.run(slapfed_argv("demo", "start", "--dir", str(base)),
                          capture_output=True, text=True, timeout=360)
    pids = []
    if (base / "demo.json").exists():
        pids = list(json.loads((base / "demo.json").read_text())["pids"].values())
    return done, pids


def _stop_and_check(base, pids):
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


@pytest.mark.timeout(700)
def test_the_demo_starts_stops_and_starts_again_cleanly(tmp_path):
    base = tmp_path / "demo"
    for run in ("first", "second"):
        pids = []
        try:
            done, pids = _start(base)
            assert done.returncode == 0, f"{run} start:\n{done.stdout}{done.stderr}"
            out = done.stdout
            assert "Traceback" not in done.stderr, done.stderr
            assert "master answers at https://" in out
            assert '"greeting": "bonjour"' in out          # the service answered, now
            assert "chain of masters: demo-root -> demo-child" in out
            assert "knows you as admin/owner" in out
            if run == "second":
                assert "kept the identity an earlier run enrolled" in out
        finally:
            _stop_and_check(base, pids)
