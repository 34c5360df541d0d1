"""The master's gunicorn worker (master.worker): what it decides on a readable kept-alive
connection (peer_closed, over real loopback sockets) and its heartbeat's pace."""
from __future__ import annotations

import socket

import pytest

from slapfed.master import worker


@pytest.fixture
def pair():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    yield client, accepted
    for s in (client, accepted, server):
        s.close()


def test_a_client_that_closed_is_seen_closed(pair):
    client, accepted = pair
    client.close()
    assert worker.peer_closed(accepted)


def test_a_pending_request_is_left_for_the_worker_unread(pair):
    client, accepted = pair
    client.sendall(b"GET / HTTP/1.1\r\n\r\n")
    client.shutdown(socket.SHUT_WR)          # even when the client closed after sending
    assert not worker.peer_closed(accepted)
    assert accepted.recv(100).startswith(b"GET / ")     # nothing was consumed


def test_an_idle_open_connection_is_not_closed(pair):
    _client, accepted = pair
    assert not worker.peer_closed(accepted)


def test_heartbeat_touches_the_file_at_most_once_per_interval(monkeypatch):
    touched, now = [], [100.0]
    monkeypatch.setattr(worker.ThreadWorker, "notify", lambda self: touched.append(now[0]))
    monkeypatch.setattr(worker.time, "monotonic", lambda: now[0])
    w = worker.MasterWorker.__new__(worker.MasterWorker)   # no gunicorn config needed
    for step in (0.0, 0.3, 0.3, 0.3, 0.2, 0.5, 2.0):
        now[0] += step
        w.notify()
    assert touched == [100.0, 101.1, 103.6]
