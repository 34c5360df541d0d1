"""A former primary rejoining as a replica, over the real thing (gunicorn masters,
mutual TLS, FileStorage), and the pure search for the history two masters share.

The old primary took async writes its replica never got, then died; the replica was
promoted. Restarted as it was, the old primary is fenced (it refuses every write). One
command (`master serve --replica-of` with the new primary's invitation, on its old data
directory) makes it a replica: the shared history is kept, the writes only it held are
moved aside into DATA/diverged/ — never merged — and it follows the new primary."""
import json
import os
import signal

import pytest

from conftest import computer_body, slapfed_cli
from slapfed.core import replication as rep
from slapfed.core.errors import Fenced, ReadOnly
from slapfed.core.replication import LocalRole
from slapfed.procs import wait_for


# -- the pure part: where two histories part -----------------------------------------------
@pytest.mark.parametrize("local, theirs, expected", [
    ([], [], -1),
    ([1, 2, 3], [1, 2, 3], 2),                 # a prefix: nothing to set aside
    ([1, 2, 3], [1, 2, 3, 7, 8], 2),           # the new primary went on
    ([1, 2, 3, 4, 5], [1, 2, 3, 6], 2),        # 4 and 5 never reached it
    ([1, 2, 3, 4, 5], [1, 6], 0),
    ([4, 5], [1, 6], -1),                      # nothing in common
    (list(range(1, 1001)), list(range(1, 618)), 616),
], ids=["empty", "same", "primary-ahead", "tail-diverged", "only-root", "none", "large"])
def test_the_common_prefix_is_the_last_transaction_both_hold(local, theirs, expected):
    asked = []

    def held(tid):
        asked.append(tid)
        return tid in set(theirs)
    assert rep.common_prefix(local, held) == expected
    assert len(asked) <= max(1, len(local)).bit_length() + 1     # a binary search


@pytest.mark.parametrize("local, epoch, health, refused", [
    (LocalRole(fenced_epoch=2, fenced_by="https://r1"), 1,
     {"role": "primary", "epoch": 2}, None),
    (LocalRole(), 1, {"role": "primary", "epoch": 3}, None),
    (LocalRole(), 2, {"role": "primary", "epoch": 2}, "larger epoch"),
    (LocalRole(), 1, {"role": "replica", "epoch": 2}, "not a primary"),
    (LocalRole(), 1, {"role": "fenced", "epoch": 2}, "not a primary"),
    (LocalRole(), 1, None, "does not answer"),
    (LocalRole(rep.REPLICA, "r2", "https://old"), 1, {"role": "primary", "epoch": 2}, None),
], ids=["fenced", "replaced-while-down", "same-epoch", "a-replica", "a-fenced-one",
        "silent", "a-replica-of-another"])
def test_a_primary_rejoins_only_the_primary_of_a_larger_epoch(local, epoch, health,
                                                             refused):
    why = rep.rejoin_refusal(local, epoch, health)
    assert (why is None) if refused is None else (refused in why), why


# -- the real thing -------------------------------------------------------------------------
def releases(client, computer="ledger"):
    return {s["url"] for s in client.show_computer(computer)["software"]}


def last_tid(client):
    return client.replication_status()["last_tid"]


def test_a_fenced_primary_rejoins_as_a_replica_setting_aside_what_it_alone_held(
        master_set, tmp_path):
    ms = master_set
    ms.start("p")
    r1_url = ms.replica("p", "r1")
    port = r1_url.rsplit(":", 1)[1]
    p, r1 = ms.admin("p"), ms.admin("r1")
    p.register_computer(computer_body("ledger", partitions=1))
    shared = {f"/srv/shared-{i}" for i in range(3)}
    for url in sorted(shared):
        p.supply("ledger", url)
    wait_for(lambda: last_tid(r1) == last_tid(p), 15, "the replica to catch up")

    # the replica stops; the (async) primary acknowledges writes it never gets, then dies
    ms.stop("r1")
    unacked = {f"/srv/only-at-p-{i}" for i in range(3)}
    for url in sorted(unacked):
        p.supply("ledger", url)
    os.killpg(ms.procs["p"].pid, signal.SIGKILL)
    ms.procs.pop("p").popen.wait(10)

    # the replica comes back on its URL (its primary is gone: it serves what it has) and
    # is promoted; the new primary takes writes
    ms.start("r1", "--replica-of", str(tmp_path / "r1.invitation.json"),
             "--listen", f"127.0.0.1:{port}")
    assert ms.urls["r1"] == r1_url
    assert r1.promote()["epoch"] == 2
    r1.supply("ledger", "/srv/after-promotion")

    # the old primary, restarted as it was: fenced (it asks its replica at start)
    ms.start("p")
    old = ms.admin("p")
    assert old.health()["role"] == "fenced"
    with pytest.raises(Fenced):
        old.supply("ledger", "/srv/split-brain")
    ms.stop("p")

    # what a rejoin would do, first (it changes no data)
    invitation = ms.invite("r1", "p")
    env = dict(os.environ, SLAPFED_CONFIG=str(tmp_path / "root.json"))
    plan = json.loads(slapfed_cli("master", "rejoin", "--data", str(tmp_path / "p"),
                                  "--replica-of", str(invitation), "--dry-run", "--json",
                                  env=env).stdout)
    assert plan["dry_run"] and plan["role_before"] == "fenced" and plan["primary_epoch"] == 2
    assert len(plan["set_aside"]) >= len(unacked), plan
    assert all("/ledger/software" in n for n in plan["notes"][-len(unacked):]), plan["notes"]
    assert not (tmp_path / "p" / "diverged").exists()
    size_before = (tmp_path / "p" / "master.fs").stat().st_size

    # one command: serve it as a replica of the new primary
    ms.start("p", "--replica-of", str(invitation))
    old = ms.admin("p")
    assert old.health()["role"] == "replica" and old.health()["epoch"] == 2
    wait_for(lambda: last_tid(old) == last_tid(r1), 15, "the rejoined replica to catch up")
    assert releases(old) == shared | {"/srv/after-promotion"} == releases(r1)
    with pytest.raises(ReadOnly):
        old.supply("ledger", "/srv/split-brain")
    r1.supply("ledger", "/srv/after-rejoin")
    wait_for(lambda: "/srv/after-rejoin" in releases(old), 15, "the replica to follow")
    seen = {r["name"]: r for r in r1.replication_status()["replicas"]}
    assert "p" in seen and seen["p"]["url"] == ms.urls["p"]

    # what it alone held is in a file the operator can read, and the old storage whole
    [aside] = list((tmp_path / "p" / "diverged").iterdir())
    doc = json.loads((aside / "transactions.json").read_text())
    assert [t["tid"] for t in doc["transactions"]] == plan["set_aside"]
    assert doc["primary"] == r1_url and doc["primary_epoch"] == 2
    assert doc["common_tid"] == plan["common_tid"]
    assert any(r["class"] and r["data"] for t in doc["transactions"] for r in t["records"])
    assert (aside / "master.fs").stat().st_size == size_before
    assert oct((aside / "transactions.json").stat().st_mode & 0o777) == "0o600"
    assert "moved aside" in (tmp_path / "p.log").read_text()
