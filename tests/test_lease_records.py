"""A real master process (`master serve --lease 1.5`, development mode) over its
FileStorage, and over ZEO with two gunicorn workers: a node's polls, however many, write
nothing while its lease is live; its lease running out is one transaction (written by
the maintenance owner, whichever worker that is, and never again while it stays out);
its next poll is one more transaction; then nothing again. Counted with the master's
own transaction stream (GET /replication/transactions)."""
from __future__ import annotations

import time

import pytest
from conftest import computer_body

from slapfed.client import MasterClient
from slapfed.procs import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LEASE = 1.5
POLL = 0.3              # how often the "node" polls, as the harness's node agent does


def transactions_after(client: MasterClient, tid: str) -> list[str]:
    return [t["tid"] for t in client.replication_transactions(tid)["transactions"]]


def last_tid(client: MasterClient) -> str:
    return client.replication_status()["last_tid"]


def polls(client: MasterClient, seconds: float) -> int:
    """Poll the desired state as a node does, every POLL seconds for ``seconds``."""
    etag, n = None, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        etag, _doc = client.desired_state("c1", etag)
        n += 1
        time.sleep(POLL)
    return n


@pytest.mark.parametrize("storage", [(), ("--start-zeo", "--workers", "2")],
                         ids=["filestorage", "zeo-2-workers"])
def test_one_transaction_when_the_lease_runs_out_and_one_when_its_node_is_back(
        master_server, storage):
    url = master_server("--lease", str(LEASE), *storage)
    client = MasterClient(url, timeout=10)
    client.register_computer(computer_body("c1", 1))
    client.desired_state("c1")                     # the first poll records the contact
    live = last_tid(client)

    # live: many polls, no transaction
    assert polls(client, 2 * LEASE) >= 5
    assert last_tid(client) == live
    assert client.show_computer("c1")["lease"]["state"] == "live"

    # the node stops: its lease runs out, the maintenance owner records it, once
    stopped = time.monotonic()
    wait_for(lambda: client.show_computer("c1")["lease"]["ran_out_at"], 10 + LEASE,
             "the run out recorded", interval=0.05)
    recorded = time.monotonic() - stopped
    lease = client.show_computer("c1")["lease"]
    assert lease["state"] == "expired" and lease["ran_out_at"] == lease["expires_at"]
    out = transactions_after(client, live)
    assert len(out) == 1, out
    # it stays out: looked at again and again (every worker), never written again
    end = time.monotonic() + 2.0                   # four maintenance periods
    while time.monotonic() < end:
        assert client.show_computer("c1")["lease"]["state"] == "expired"
        time.sleep(POLL)
    assert transactions_after(client, live) == out

    # the node polls again: one transaction records it back, then polls write nothing
    client.desired_state("c1")
    back = transactions_after(client, out[0])
    assert len(back) == 1, back
    lease = client.show_computer("c1")["lease"]
    assert lease["state"] == "live" and lease["ran_out_at"] is None and lease["back_at"]
    polls(client, 2 * LEASE)
    assert transactions_after(client, out[0]) == back
    print(f"\nlease {LEASE:g} s ({'+'.join(storage) or 'FileStorage'}): run out recorded "
          f"{recorded:.2f} s after the last poll; 1 transaction out, 1 back")
