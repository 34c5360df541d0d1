"""Replicas over the real thing: gunicorn masters on loopback, mutual TLS, FileStorage.

A replica enrols with its invitation, serves with the primary's CA (the same admin
certificate works there), follows the primary's transactions with identical TIDs,
resumes after a restart, refuses writes (409 read_only naming the primary), and in sync
mode holds the primary's answers until it has their transaction — boundedly. Promotion
records a larger epoch, which fences the old primary (409 fenced)."""
import json
import os
import time

import pytest

from conftest import computer_body, slapfed_cli
from slapfed.core.errors import Fenced, ReadOnly
from slapfed.procs import wait_for

COMPUTER = computer_body("c1", partitions=1)


def computers(client):
    return {c["id"] for c in client.list_computers()}


def last_tid(client):
    return client.replication_status()["last_tid"]


def caught_up(primary, replica):
    return last_tid(primary) == last_tid(replica)


def test_an_async_replica_follows_its_primary_and_refuses_writes(master_set, tmp_path):
    master_set.start("primary", "--backup-to", str(tmp_path / "repo"))
    master_set.replica("primary", "r1")
    primary, replica = master_set.admin("primary"), master_set.admin("r1")

    primary.register_computer(COMPUTER)
    primary.supply("c1", "/srv/release-a")
    wait_for(lambda: "c1" in computers(replica) and caught_up(primary, replica), 10,
             "the replica to have the primary's writes")
    assert replica.show_computer("c1")["software"] == primary.show_computer("c1")["software"]

    # the same history, transaction for transaction (restore keeps the primary's TIDs)
    status = replica.replication_status()
    assert status["role"] == "replica" and status["epoch"] == 1
    assert status["follower"]["connected"] and status["follower"]["lag_seconds"] == 0.0
    assert status["follower"]["transactions_behind"] == 0
    seen = primary.replication_status()["replicas"]
    assert [(r["name"], r["mode"], r["transactions_behind"]) for r in seen] == \
        [("r1", "async", 0)]
    # the topology carries the lag too, and `topology show` says it
    shown = primary.topology()["live"]["replication"]["replicas"]
    assert [(r["name"], r["lag_seconds"]) for r in shown] == [("r1", 0.0)]

    # every write is refused with read_only, naming the primary; nothing is written
    before = last_tid(replica)
    with pytest.raises(ReadOnly) as refused:
        replica.supply("c1", "/srv/release-b")
    assert master_set.urls["primary"] in refused.value.message
    assert {"field": "primary", "problem": master_set.urls["primary"]} in refused.value.details
    with pytest.raises(ReadOnly):
        replica.register_computer(computer_body("c2", partitions=1))
    assert last_tid(replica) == before
    assert replica.health()["role"] == "replica"

    # master status: role, epoch, replicas with their lag, the last backup and its age
    wait_for(lambda: (primary.replication_status()["last_backup"] or {}).get("time"), 30,
             "the scheduled backup at start")
    env = dict(os.environ, SLAPFED_CONFIG=str(master_set.base / "root.json"))
    doc = json.loads(slapfed_cli("master", "status", "--json", env=env).stdout)
    assert doc["role"] == "primary" and doc["epoch"] == 1
    assert doc["last_backup"]["age_seconds"] >= 0
    text = slapfed_cli("master", "status", env=env).stdout
    assert "role: primary   epoch: 1" in text and "r1 " in text and "last backup: " in text
    assert "ago) in" in text
    tree = slapfed_cli("topology", "show", "--master", master_set.urls["primary"],
                       env=env).stdout
    # (these masters have no name, so the replica is not known as the primary's own)
    assert "[replica, epoch 1, lag 0.00 s]" in tree, tree


def test_a_restarted_replica_resumes_from_its_last_transaction(master_set):
    master_set.start("primary")
    invitation = master_set.invite("primary", "r1")
    master_set.start("r1", "--replica-of", str(invitation))
    primary, replica = master_set.admin("primary"), master_set.admin("r1")
    primary.register_computer(COMPUTER)
    wait_for(lambda: caught_up(primary, replica), 10, "the replica to catch up")
    at_stop = last_tid(replica)

    master_set.stop("r1")
    primary.supply("c1", "/srv/while-down")
    # same command line: the token is spent, the identity kept; it catches up from at_stop
    master_set.start("r1", "--replica-of", str(invitation))
    replica = master_set.admin("r1")
    wait_for(lambda: caught_up(primary, replica), 10, "the restarted replica to catch up")
    assert last_tid(replica) > at_stop
    assert "/srv/while-down" in {s["url"] for s in replica.show_computer("c1")["software"]}
    log = (master_set.base / "r1.log").read_text()
    assert "caught up with" in log and "(1 transaction(s))" in log.split("enrolled")[-1]


def test_a_sync_write_is_answered_once_the_replica_has_it_and_degrades_when_it_is_gone(
        master_set):
    master_set.start("primary", "--sync-timeout", "1")
    master_set.replica("primary", "r1", "--sync")
    primary, replica = master_set.admin("primary"), master_set.admin("r1")
    wait_for(lambda: primary.replication_status()["replicas"] and
             primary.replication_status()["replicas"][0]["confirmed_tid"], 10,
             "the sync replica to follow")

    for i in range(5):
        primary.supply("c1", f"/srv/r{i}") if i else primary.register_computer(COMPUTER)
        # acknowledged: the replica holds it already, no waiting here
        assert last_tid(replica) >= last_tid(primary)

    master_set.stop("r1")
    started = time.monotonic()
    primary.supply("c1", "/srv/after-loss")          # waits the bounded time, then degrades
    waited = time.monotonic() - started
    assert 0.9 <= waited < 5, waited
    status = primary.replication_status()
    assert status["degraded_since"] is not None
    started = time.monotonic()
    primary.supply("c1", "/srv/degraded")            # degraded: answered without waiting
    assert time.monotonic() - started < 0.9
    assert "SYNC REPLICATION DEGRADED" in (master_set.base / "primary.log").read_text()

    # the replica back and caught up: sync again
    master_set.start("r1", "--replica-of", str(master_set.base / "r1.invitation.json"),
                     "--sync")
    wait_for(lambda: primary.replication_status()["degraded_since"] is None, 15,
             "sync replication to be restored")
    primary.supply("c1", "/srv/sync-again")
    assert last_tid(master_set.admin("r1")) >= last_tid(primary)


def test_promotion_records_a_larger_epoch_and_fences_the_old_primary(master_set):
    master_set.start("primary", "--sync-timeout", "1")
    master_set.replica("primary", "r1", "--sync")
    old, new = master_set.admin("primary"), master_set.admin("r1")
    old.register_computer(COMPUTER)
    wait_for(lambda: caught_up(old, new), 10, "the replica to catch up")

    env = dict(os.environ, SLAPFED_CONFIG=str(master_set.base / "root.json"))
    out = json.loads(slapfed_cli("master", "promote", "--master", master_set.urls["r1"],
                                 "--json", env=env).stdout)
    assert out["epoch"] == 2 and out["role"] == "primary"
    # a write to the old primary right away is never acknowledged: either it is fenced
    # already, or its sync replica (promoted) does not confirm and it learns why
    with pytest.raises(Fenced):
        old.supply("c1", "/srv/racing-the-promotion")
    new.supply("c1", "/srv/on-the-new-primary")       # the new primary takes writes
    assert new.health()["epoch"] == 2

    # the old primary, still running, sees epoch 2 at its replica and fences itself
    wait_for(lambda: old.health()["role"] == "fenced", 10, "the old primary to be fenced")
    with pytest.raises(Fenced) as refused:
        old.supply("c1", "/srv/split-brain")
    assert "epoch 2" in refused.value.message and master_set.urls["r1"] in refused.value.message
    status = json.loads(slapfed_cli("master", "status", "--master", master_set.urls["primary"],
                                    "--json", env=env).stdout)
    assert status["role"] == "fenced" and status["fenced_epoch"] == 2
    text = slapfed_cli("master", "status", "--master", master_set.urls["r1"], env=env).stdout
    assert "role: primary   epoch: 2" in text
