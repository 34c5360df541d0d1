"""Starting and stopping a ZEO server subprocess over a FileStorage in a data directory.

Depends on ZEO (runzeo) and the standard library. The server binds 127.0.0.1 on a port
chosen at run time and writes the address it got to <data>/zeo.address; the parent
reads it back and keeps the child's PID to stop it.

The server dies with the process that started it (the master's arbiter): it asks the
kernel for SIGTERM when its parent goes (PR_SET_PDEATHSIG) and a watchdog thread
checks, every 0.2 s, that its parent is still the one named by ``--parent-pid``; either
way it shuts down cleanly and lets go of the FileStorage lock. It stays in its own
session (a Ctrl-C in the master's terminal reaches the master, which stops it in
order). A ZEO server still holding a data directory whose master is gone (an orphan,
found by <data>/zeo.pid and /proc) is stopped by PID before a new one starts there.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from ..core.errors import StorageError
from ..procs import pid_alive, stop_pid

ZEO_STORAGE_NAME = "master.fs"
ADDRESS_FILE = "zeo.address"
PID_FILE = "zeo.pid"
LOG_FILE = "zeo.log"
WATCH_INTERVAL = 0.2
PR_SET_PDEATHSIG = 1

log = logging.getLogger("slapfed.store")


@dataclass
class ZeoServer:
    """A running ZEO server subprocess."""

    host: str
    port: int
    pid: int
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"zeo://{self.host}:{self.port}"

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return pid_alive(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server by PID, then SIGKILL if it does not exit in ``timeout``."""
        stop_pid(self.pid, timeout, self.process)


def start_zeo_server(data_dir: str, host: str = "127.0.0.1", port: int = 0,
                     timeout: float = 30.0) -> ZeoServer:
    """Start ``runzeo`` on <data_dir>/master.fs and wait until it listens.

    Raises StorageError (with the server's log tail) when it does not come up."""
    data_dir = os.path.abspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    stop_orphaned_zeo(data_dir)
    address_file = os.path.join(data_dir, ADDRESS_FILE)
    if os.path.exists(address_file):
        os.unlink(address_file)
    log_path = os.path.join(data_dir, LOG_FILE)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "slapfed.store.zeo", "--data", data_dir,
             "--address", f"{host}:{port}", "--parent-pid", str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StorageError(f"the ZEO server for {data_dir} exited with code "
                               f"{process.returncode}: {_tail(log_path)}")
        if os.path.exists(address_file):
            with open(address_file, encoding="utf-8") as f:
                text = f.read().strip()
            if text:
                got_host, _, got_port = text.rpartition(":")
                return ZeoServer(got_host, int(got_port), process.pid, process)
        time.sleep(0.02)
    stop_pid(process.pid, 5, process)
    raise StorageError(f"the ZEO server for {data_dir} did not listen within {timeout:g}s: "
                       f"{_tail(log_path)}")


def _argv_of(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [os.fsdecode(a) for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _ppid_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == name:
            return argv[i + 1]
    return None


def zeo_of(data_dir: str) -> tuple[int, int | None] | None:
    """(PID, the PID of the master that started it) of the ZEO server that
    <data_dir>/zeo.pid names, when that process runs and really is slapfed's ZEO
    server for that very directory (checked in /proc); else None."""
    data_dir = os.path.abspath(data_dir)
    try:
        with open(os.path.join(data_dir, PID_FILE), encoding="utf-8") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    argv = _argv_of(pid)
    if pid == os.getpid() or not pid_alive(pid) or "slapfed.store.zeo" not in argv \
            or os.path.abspath(_option(argv, "--data") or "") != data_dir:
        return None
    parent = _option(argv, "--parent-pid")
    return pid, int(parent) if parent and parent.isdigit() else None


def stop_orphaned_zeo(data_dir: str, timeout: float = 10.0) -> int | None:
    """Stop (by PID) the ZEO server still serving ``data_dir`` after the master that
    started it died; returns its PID (None when there was none). Raises StorageError
    when that master still runs: two masters never share a data directory."""
    found = zeo_of(data_dir)
    if found is None:
        return None
    pid, parent = found
    ppid = _ppid_of(pid)
    if parent is not None and ppid == parent and pid_alive(parent):
        raise StorageError(f"{data_dir} is already served by the ZEO server {pid} of the "
                           f"running master {parent}; stop that master first")
    if parent is None and ppid not in (None, 1):
        raise StorageError(f"{data_dir} is already served by the ZEO server {pid} "
                           f"(started by process {ppid}); stop it first")
    log.warning("stopping the orphaned ZEO server %d of %s (its master %s is gone)",
                pid, data_dir, parent if parent is not None else "")
    stop_pid(pid, timeout)
    return pid


def _bind_to_parent(parent: int) -> None:
    """End this server (SIGTERM: a clean shutdown) when ``parent`` is no longer our
    parent: at once if it is already gone, by PR_SET_PDEATHSIG where the kernel has it,
    and by a watchdog thread in any case (PDEATHSIG follows the thread that started us)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        sys.exit(f"slapfed ZEO server: the master {parent} is already gone")

    def watch():
        while os.getppid() == parent:
            time.sleep(WATCH_INTERVAL)
        print(f"slapfed ZEO server: the master {parent} is gone; stopping", file=sys.stderr,
              flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="zeo-parent-watch", daemon=True).start()


def _tail(path: str, size: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "(no log)"


def _serve(argv: list[str]) -> None:
    """The subprocess: runzeo, reporting its bound address to <data>/zeo.address."""
    import argparse

    from ZEO import runzeo

    parser = argparse.ArgumentParser(prog="python -m slapfed.store.zeo")
    parser.add_argument("--data", required=True)
    parser.add_argument("--address", default="127.0.0.1:0")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="End when this process (the master) is gone.")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        _bind_to_parent(args.parent_pid)
    data_dir = os.path.abspath(args.data)
    address_file = os.path.join(data_dir, ADDRESS_FILE)

    class Server(runzeo.ZEOServer):
        def create_server(self):
            super().create_server()
            host, port = self.server.addr[:2]
            tmp = address_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(f"{host}:{port}\n")
            os.replace(tmp, address_file)

        def close_server(self):
            super().close_server()
            try:
                os.unlink(address_file)
            except FileNotFoundError:
                pass

    options = runzeo.ZEOOptions()
    options.realize(["-a", args.address, "-f", os.path.join(data_dir, ZEO_STORAGE_NAME),
                     "--pid-file", os.path.join(data_dir, PID_FILE)])
    Server(options).main()


if __name__ == "__main__":
    _serve(sys.argv[1:])
