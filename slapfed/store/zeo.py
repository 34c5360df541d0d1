"""Starting and stopping a ZEO server subprocess over a FileStorage in a data directory.

Depends on ZEO (runzeo) and the standard library. The server binds 127.0.0.1 on a port
chosen at run time and writes the address it got to <data>/zeo.address; the parent
reads it back and keeps the child's PID to stop it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

from ..core.errors import StorageError
from ..procs import pid_alive, stop_pid

ZEO_STORAGE_NAME = "master.fs"
ADDRESS_FILE = "zeo.address"
PID_FILE = "zeo.pid"
LOG_FILE = "zeo.log"


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
    address_file = os.path.join(data_dir, ADDRESS_FILE)
    if os.path.exists(address_file):
        os.unlink(address_file)
    log_path = os.path.join(data_dir, LOG_FILE)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "slapfed.store.zeo", "--data", data_dir,
             "--address", f"{host}:{port}"],
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
    args = parser.parse_args(argv)
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
