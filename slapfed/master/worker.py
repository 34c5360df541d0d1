"""The master's gunicorn worker: gunicorn's gthread worker, with less work per connection.

Depends on gunicorn only. Two things gthread does on every turn of its event loop, or
for every connection, that a master need not:

- its heartbeat (``notify``: a utime of the worker's liveness file) runs on every turn
  of the loop, so once or twice per request; the arbiter only looks whether the file
  is older than ``timeout`` (60 s). Here it is touched at most once per
  ``HEARTBEAT_EVERY`` seconds (the loop turns at least once a second anyway).
- a kept-alive connection its client then closes (the stock SLAP client, the CLI and
  the node close theirs after each call) becomes readable, and gthread hands it to a
  pool thread to find out there is nothing to read, then back to its main loop to close
  it: a pool round trip for nothing. Here the main loop looks first (a peek at the
  TCP level, below TLS, which never blocks and consumes nothing): no byte and the end
  of the stream means the client is gone, and the connection is closed at once. Any
  byte (a request, a TLS alert) goes the usual way.
"""
from __future__ import annotations

import socket
import time

from gunicorn.workers.gthread import ThreadWorker

HEARTBEAT_EVERY = 1.0       # seconds between two touches of the liveness file, at most


def peer_closed(sock) -> bool:
    """True when ``sock`` (plain or TLS, readable) holds no byte and its peer has
    closed: a peek at the TCP level, without blocking and without consuming anything.
    False when anything is there or when the peek cannot tell."""
    try:
        data = socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True             # reset or broken: nothing to answer there either
    return data == b""


class MasterWorker(ThreadWorker):
    """gunicorn's gthread worker with a coarser heartbeat and closed connections closed
    in the main loop (see the module's docstring)."""

    _last_notify = 0.0

    def notify(self):
        now = time.monotonic()
        if now - self._last_notify >= HEARTBEAT_EVERY:
            self._last_notify = now
            super().notify()

    def on_client_socket_readable(self, conn, client):
        keepalived = getattr(self, "keepalived_conns", None)
        if keepalived is not None and peer_closed(client):
            self.poller.unregister(client)
            keepalived.remove(conn)
            self.nr_conns -= 1
            conn.close()
            return
        super().on_client_socket_readable(conn, client)
