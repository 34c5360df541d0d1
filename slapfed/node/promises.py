"""Promises: run every executable of a partition's etc/promise directory, with a timeout.

Depends on the standard library and node.supervisor (for the executable listing).
Promises of one partition run concurrently under one deadline; each gives
{name, ok, message} (exit 0 = ok, stdout+stderr = message). With a partition user, a
promise runs with that user's uid, gid and groups only (never root's groups).
"""
from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time

from .confine import credentials
from .supervisor import list_services

DEFAULT_TIMEOUT = 20.0
MAX_MESSAGE = 2000


def _message(fh) -> str:
    fh.seek(0)
    text = fh.read().decode("utf-8", "replace").strip()
    return text[-MAX_MESSAGE:]


def run_promises(promise_dir: str, timeout: float = DEFAULT_TIMEOUT, cwd: str | None = None,
                 user: str | None = None, args: tuple = ()) -> list[dict]:
    """Run the promises of one partition (or its restore steps: the same contract, each
    given ``args``); never raises for a failing or hanging one."""
    started = []
    results = {}
    creds = credentials(user, cwd)
    confined = {} if creds is None else {
        "user": creds.uid, "group": creds.gid, "extra_groups": list(creds.groups),
        "env": creds.environment(), "umask": 0o077}
    for name, path in list_services(promise_dir):
        out = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen([path, *args], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd,
                                    start_new_session=True, **confined)
        except OSError as exc:
            out.close()
            results[name] = {"name": name, "ok": False, "message": f"cannot run {path}: {exc}"}
            continue
        started.append((name, proc, out))
    deadline = time.monotonic() + timeout
    for name, proc, out in started:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
            ok = proc.returncode == 0
            message = _message(out)
            if not ok and not message:
                message = f"exited with code {proc.returncode}"
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
            ok, message = False, f"timed out after {timeout:g}s; output: {_message(out)}"
        finally:
            out.close()
        results[name] = {"name": name, "ok": ok, "message": message}
    return [results[n] for n in sorted(results)]


def summary(results: list[dict]) -> str:
    """The failed promises as text, for a failure report's log tail."""
    return "\n".join(f"promise {r['name']} failed: {r['message']}" for r in results
                     if not r["ok"])
