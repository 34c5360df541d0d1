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


def make_handler(payload: dict):
    from http.server import BaseHTTPRequestHandler

    import os

    body_root = json.dumps(dict(payload, pid=os.getpid())).encode()
    body_health = json.dumps({"status": "ok"}).encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "slapfed-hello/1"

        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path in ("/", ""):
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


def serve(address: str, port: int, payload: dict) -> None:
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer((address, port), make_handler(payload))
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
    parser.add_argument("--wait", type=float, default=0.0,
                        help="with --check: keep trying for this many seconds")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.check, args.wait)
    # the node hands over a value it cannot write verbatim encoded: show the value itself
    from slapfed.core.cfgvalue import decode
    payload = {"greeting": decode(args.greeting), "name": decode(args.name),
               "reference": decode(args.reference or args.name)}
    serve(args.address, args.port, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
