"""The sample service of profiles/hello: a tiny JSON web server, plus its health check.

GET / answers {"greeting", "name", "reference", "pid"} (each decoded when the node
handed it over encoded, see slapfed.core.cfgvalue); GET /health answers {"status"}.

Depends on the standard library and slapfed.core.cfgvalue. ``slapfed-hello-web --address A --port P ...``
serves; ``slapfed-hello-web --check URL [--wait S]`` is the promise (exit 0 = healthy).
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def make_handler(payload: dict, data_file: str | None = None):
    from http.server import BaseHTTPRequestHandler

    import os

    body_root = json.dumps(dict(payload, pid=os.getpid())).encode()
    body_health = json.dumps({"status": "ok"}).encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "slapfed-hello/1"

        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path in ("/", "") and data_file:
                self._send(200, json.dumps(dict(payload, pid=os.getpid(),
                                                data=_read(data_file))).encode())
            elif self.path in ("/", ""):
                self._send(200, body_root)
            elif self.path == "/health":
                self._send(200, body_health)
            else:
                self._send(404, json.dumps({"error": f"no route {self.path}"}).encode())

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))
            sys.stdout.flush()

    return Handler


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


def backup(source: str, target_dir: str, every: float, until=None) -> None:
    """Copy ``source`` into ``target_dir`` whenever it changed (the instance's backup
    service: its data survive its computer), until ``until()`` (default: forever)."""
    import os
    import shutil
    last = None
    target = os.path.join(target_dir, os.path.basename(source))
    while until is None or not until():
        try:
            stamp = os.stat(source).st_mtime_ns
        except OSError:
            stamp = None
        if stamp is not None and stamp != last:
            try:
                if _read(target) != _read(source):      # a restored copy is not written back
                    os.makedirs(target_dir, exist_ok=True)
                    tmp = os.path.join(target_dir, f".{os.getpid()}.tmp")
                    shutil.copyfile(source, tmp)
                    os.chmod(tmp, 0o644)    # the instance's next partition reads it
                    os.replace(tmp, target)
                    print(f"backed up {source} to {target_dir}", flush=True)
                last = stamp
            except OSError as exc:          # the location is away: try again, keep serving
                print(f"backup of {source} to {target_dir} failed: {exc}", flush=True)
        time.sleep(every)


def restore(location: str, target: str) -> int:
    """The restore step: bring ``target`` back from the backup at ``location``."""
    import os
    import shutil
    source = os.path.join(location, os.path.basename(target))
    if not os.path.isfile(source):
        print(f"no backup at {source}: nothing to restore")
        return 0
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)
    print(f"restored {target} from {source}")
    return 0


def serve(address: str, port: int, payload: dict, data_file: str | None = None) -> None:
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer((address, port), make_handler(payload, data_file))
    print(f"hello: serving {payload} on http://{address}:{port}/", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def check(url: str, wait: float) -> int:
    """GET ``url`` until it answers 200 or ``wait`` seconds pass; print why not."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + wait
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        try:
            with opener.open(url, timeout=2) as resp:
                if resp.status == 200:
                    print(f"{url} answered 200")
                    return 0
                problem = f"{url} answered HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            problem = f"{url} answered HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            problem = f"{url} is unreachable: {getattr(exc, 'reason', exc)}"
        if time.monotonic() >= deadline:
            print(problem)
            return 1
        time.sleep(0.05)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="slapfed-hello-web", description=__doc__)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", default="hello")
    parser.add_argument("--greeting", default="hello")
    parser.add_argument("--reference", default="")
    parser.add_argument("--check", metavar="URL", help="health check mode: GET URL")
    parser.add_argument("--data", metavar="FILE", help="serve FILE's text as data")
    parser.add_argument("--backup", metavar="FILE", help="backup mode: copy FILE to --to")
    parser.add_argument("--to", metavar="DIR", help="with --backup: the backup location")
    parser.add_argument("--every", type=float, default=0.5, help="with --backup: seconds")
    parser.add_argument("--restore", metavar="FILE",
                        help="restore mode: FILE from the backup location given as argument")
    parser.add_argument("location", nargs="?", help="with --restore: the backup location")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="with --check: keep trying for this many seconds")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.check, args.wait)
    if args.backup:
        backup(args.backup, args.to, args.every)
        return 0
    if args.restore:
        return restore(args.location or "", args.restore)
    # the node hands over a value it cannot write verbatim encoded: show the value itself
    from slapfed.core.cfgvalue import decode
    payload = {"greeting": decode(args.greeting), "name": decode(args.name),
               "reference": decode(args.reference or args.name)}
    serve(args.address, args.port, payload, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
