"""The master's server TLS context: built once per worker process, shared by every
connection (master.server.ServerContext, gunicorn's ssl_context hook)."""
from __future__ import annotations

import ssl

import pytest

from slapfed.master import server


def _factory(made):
    def build():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        made.append(ctx)
        return ctx
    return build


def test_one_context_per_process_for_every_connection():
    made = []
    hook = server.ServerContext()
    first = hook(None, _factory(made))
    assert [hook(None, _factory(made)) for _ in range(5)] == [first] * 5
    assert made == [first]
    assert first.minimum_version == ssl.TLSVersion.TLSv1_2
    assert first.num_tickets == 0


@pytest.mark.parametrize("tickets", [0, 2])
def test_tickets_as_configured(tickets):
    assert server.ServerContext(tickets)(None, _factory([])).num_tickets == tickets


def test_a_forked_worker_builds_its_own(monkeypatch):
    made = []
    hook = server.ServerContext()
    parent = hook(None, _factory(made))
    monkeypatch.setattr(server.os, "getpid", lambda: -1)     # as seen after a fork
    child = hook(None, _factory(made))
    assert child is not parent and made == [parent, child]
    assert hook(None, _factory(made)) is child
