"""Background processes started by slapfed itself (demo, benchmarks, tests): start with a
log file, wait for readiness, stop by PID (SIGTERM, then SIGKILL) — never by name.

Depends on the standard library only (signal and subprocess imported when used: a
node's cycle with nothing to do starts and stops nothing).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


class Proc:
    """A child process started in its own session, logging to a file."""

    def __init__(self, argv: list[str], log: Path, cwd: str | None = None, env: dict | None = None):
        self.argv = argv
        self.log = Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        import subprocess

        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=cwd, env=env, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, size: int = 3000) -> str:
        try:
            data = self.log.read_bytes()
        except OSError:
            return ""
        return data[-size:].decode("utf-8", "replace")

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop it by PID; then whatever is left of the process group it leads (e.g.
        a server's workers when the server itself had to be killed)."""
        code = stop_pid(self.pid, timeout, popen=self.popen)
        stop_group(self.pid)
        return code


def stop_group(pgid: int, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, the processes left in group ``pgid`` (one we started with
    its own session, so its id is our child's PID)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone; a child of ours is reaped)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_pid(pid: int, timeout: float = 10.0, popen: subprocess.Popen | None = None):
    """SIGTERM ``pid`` and wait; SIGKILL it if it is still there after ``timeout``.
    Returns the exit code when ``popen`` is given, else None."""
    def gone() -> bool:
        return popen.poll() is not None if popen is not None else not pid_alive(pid)

    import signal

    for sig, grace in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if gone():
            break
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.02)
    return popen.returncode if popen is not None else None


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05, proc: Proc | None = None):
    """Poll ``predicate`` until it returns a truthy value; raise RuntimeError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{what}: process {proc.pid} exited with {proc.popen.returncode}; "
                               f"log tail:\n{proc.log_tail()}")
        if time.monotonic() >= deadline:
            tail = f"; log tail:\n{proc.log_tail()}" if proc is not None else ""
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}{tail}")
        time.sleep(interval)


def slapfed_argv(*args: str) -> list[str]:
    """argv running the slapfed CLI with this interpreter (works without bin/ on PATH)."""
    return [sys.executable, "-m", "slapfed.cli.main", *args]
