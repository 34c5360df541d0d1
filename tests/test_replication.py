"""Replication below the HTTP layer: shipping transactions between two real FileStorages
with identical TIDs, the pure decisions (who may write, who fences whom, which master a
node may follow), the replica's invitation and CA files, and the epoch in the model."""
import base64

import pytest
import transaction
import ZODB
from ZODB.FileStorage import FileStorage
from ZODB.utils import z64

from slapfed.core import replication as rep
from slapfed.core.errors import Fenced, InvalidInput, ReadOnly, ReplicaDiverged
from slapfed.core.replication import LocalRole
from slapfed.replication.local import read_role, write_role
from slapfed.replication.cafiles import install_ca_material
from slapfed.replication.setup import read_invitation
from slapfed.store import shipping


def _commit(db, **values):
    conn = db.open()
    conn.root().update(values)
    transaction.commit()
    conn.close()


@pytest.fixture
def storages(tmp_path):
    primary = ZODB.DB(FileStorage(str(tmp_path / "primary.fs")))
    replica = FileStorage(str(tmp_path / "replica.fs"))
    yield primary, replica, tmp_path
    primary.close()
    replica.close()


def tids(storage):
    return [t.tid for t in storage.iterator()]


def test_shipped_transactions_keep_their_tids_and_batches_resume(storages):
    primary, replica, _ = storages
    for i in range(5):
        _commit(primary, **{f"k{i}": i})
    first = shipping.read_after(primary.storage, z64, max_transactions=4)
    assert len(first.transactions) == 4 and first.more
    assert first.behind == 2 and first.behind_bytes > 0        # counted, not shipped
    # a first catch-up goes straight to the storage: no DB root of its own
    shipping.apply_to_storage(replica, first.transactions)
    db = ZODB.DB(replica)
    rest = shipping.read_after(primary.storage, replica.lastTransaction())
    assert len(rest.transactions) == 2 and not rest.more
    shipping.apply_transactions(db, rest.transactions)
    assert tids(replica) == tids(primary.storage)
    # a connection open before sees the new state (its cache was told)
    conn = db.open()
    _commit(primary, late=1)
    shipping.apply_transactions(db, shipping.read_after(
        primary.storage, replica.lastTransaction()).transactions)
    transaction.begin()
    assert conn.root()["late"] == 1 and conn.root()["k4"] == 4
    # asking again applies nothing twice
    assert shipping.apply_transactions(db, rest.transactions) is None
    assert shipping.read_after(primary.storage, replica.lastTransaction()).transactions == []


def test_a_position_the_primary_never_committed_is_refused_as_diverged(storages):
    primary, replica, _ = storages
    _commit(primary, a=1)
    ZODB.DB(replica)     # a DB commits a root of its own: a TID the primary never had
    with pytest.raises(ReplicaDiverged):
        shipping.read_after(primary.storage, replica.lastTransaction())
    with pytest.raises(ReplicaDiverged):
        shipping.read_after(primary.storage, b"\xff" * 8)


@pytest.mark.parametrize("body, field", [
    ("not an object", "transactions"),
    ({"tid": "zz", "records": []}, "tid"),
    ({"tid": "00" * 8, "status": "x", "records": []}, "status"),
    ({"tid": "00" * 8, "records": [{"oid": "00" * 8, "data": "%%%"}]}, "data"),
    ({"tid": "00" * 8, "records": ["x"]}, "records"),
], ids=["not-object", "bad-tid", "bad-status", "bad-base64", "bad-record"])
def test_a_malformed_shipped_transaction_is_invalid_input_naming_the_field(body, field):
    with pytest.raises(InvalidInput) as err:
        shipping.decode_transaction(body)
    assert err.value.details[0]["field"] == field


@pytest.mark.parametrize("role, error", [
    (LocalRole(), None),
    (LocalRole(rep.REPLICA, "r1", "https://p:1"), ReadOnly),
    (LocalRole(fenced_epoch=3, fenced_by="https://r1:2"), Fenced),
], ids=["primary", "replica", "fenced"])
def test_who_may_write(role, error):
    if error is None:
        rep.check_writable(role, 1, None)
        return
    with pytest.raises(error) as refused:
        rep.check_writable(role, 2, role.primary_url)
    assert (role.primary_url or role.fenced_by) in refused.value.message


@pytest.mark.parametrize("mine, theirs, role, fenced", [
    (1, 2, "primary", True),
    (2, 2, "primary", False),
    (3, 2, "primary", False),
    (1, 2, "replica", False),
    (1, 2, "fenced", False),
    (1, "2", "primary", False),
    (1, True, "primary", False),
], ids=["larger", "equal", "smaller", "a-replica", "a-fenced-one", "a-string", "a-bool"])
def test_only_a_primary_of_a_larger_epoch_fences(mine, theirs, role, fenced):
    assert rep.fences(mine, theirs, role) is fenced


@pytest.mark.parametrize("health, highest, ok", [
    ({"role": "primary", "epoch": 2}, 2, True),
    ({"role": "primary", "epoch": 3}, 2, True),
    ({"role": "primary", "epoch": 1}, 2, False),
    ({"role": "replica", "epoch": 2}, 2, False),
    ({"role": "fenced", "epoch": 2}, 1, False),
    ({"status": "ok"}, 0, True),              # a master from before replicas
    (None, 0, False),
], ids=["same", "larger", "older", "replica", "fenced", "no-epoch", "no-answer"])
def test_a_node_follows_only_a_primary_at_least_as_new_as_what_it_saw(health, highest, ok):
    assert rep.acceptable(health, highest) is ok


def test_candidates_try_the_others_first_and_each_once():
    assert rep.candidates("https://a", "https://a", ["https://b", "https://a", "https://c"]) \
        == ["https://b", "https://c", "https://a"]
    assert rep.parse_masters("https://a  ftp://x http://b " + "https://" + "y" * 400) == \
        ("https://a", "http://b")
    assert [rep.parse_epoch(v) for v in ("3", "0", "-1", "x", None)] == [3, None, None,
                                                                        None, None]


def test_the_role_file_round_trips_and_defaults_to_primary(tmp_path):
    assert read_role(tmp_path) == LocalRole()
    role = LocalRole(rep.REPLICA, "r1", "https://p:1", True)
    write_role(tmp_path, role)
    assert read_role(tmp_path) == role
    (tmp_path / "replication.json").write_text("{not json")
    assert read_role(tmp_path) == LocalRole()


def test_an_invitation_names_what_it_lacks(tmp_path):
    path = tmp_path / "inv.json"
    path.write_text('{"url": "https://p:1", "token": ""}')
    with pytest.raises(InvalidInput) as err:
        read_invitation(path)
    assert {d["field"] for d in err.value.details} == {
        "replica_of.token", "replica_of.ca_certificate", "replica_of.for"}
    with pytest.raises(InvalidInput, match="no invitation"):
        read_invitation(tmp_path / "missing.json")


def test_ca_material_is_written_only_under_the_names_a_ca_holds(tmp_path):
    ca = tmp_path / "ca"
    written = install_ca_material(ca, {"ca.crt": "C", "ca.key": "K", "issued/ab12.pem": "P",
                                       "../evil": "x", "issued/../../evil.pem": "x",
                                       "tokens.json": "{}", "issued/a b.pem": "x"})
    assert written == 3
    assert sorted(p.relative_to(ca).as_posix() for p in ca.rglob("*") if p.is_file()) == \
        ["ca.crt", "ca.key", "issued/ab12.pem"]
    assert (ca / "ca.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "evil").exists()


def test_the_epoch_only_grows_and_promotion_records_who_holds_it(master_runtime):
    from slapfed.services import replication as svc
    assert svc.replication_view(master_runtime).epoch == 1
    svc.record_replica(master_runtime, "r1", "https://r1:1", "sync")
    svc.record_replica(master_runtime, "r2", None, "async")
    view = svc.promote(master_runtime, "r1", 1000.0)
    assert view.epoch == 2 and view.epochs == ((2, "r1", 1000.0),)
    assert [r.name for r in view.replicas] == ["r2"]
    assert svc.promote(master_runtime, "r2", 2000.0).epoch == 3
    with pytest.raises(InvalidInput) as err:
        svc.record_replica(master_runtime, "bad name", "ftp://x", "maybe")
    assert {d["field"] for d in err.value.details} == {"name", "url", "mode"}


def test_shipped_data_is_base64_of_the_stored_pickle(storages):
    primary, _, _ = storages
    _commit(primary, x=1)
    txn = shipping.read_after(primary.storage, z64).transactions[-1]
    rec = txn["records"][0]
    data, _tid = primary.storage.load(bytes.fromhex(rec["oid"]))
    assert base64.b64decode(rec["data"]) == data


@pytest.mark.parametrize("url, status", [
    ("https://r1.example:8443", 200),
    ("https://r\u00e9plica.example", 400),        # not ASCII: no header could carry it
    ("https://r1.example/\x7f", 400),
    ("https://r1 example", 400),
], ids=["ascii", "non-ascii", "control", "space"])
def test_a_replica_url_is_one_every_answer_can_name_in_its_headers(api, master_app, url,
                                                                   status):
    from conftest import last_tid
    db = master_app.extensions["slapfed"].db
    before = last_tid(db)
    r = api.put("/api/v1/replication/replicas/r1", json={"url": url, "mode": "async"})
    assert r.status_code == status, r.get_json()
    health = api.get("/api/v1/health")
    assert health.status_code == 200
    masters = health.headers[rep.MASTERS_HEADER]
    if status == 200:
        assert url in masters.split()
    else:
        assert r.get_json()["error"]["details"][0]["field"] == "url"
        assert last_tid(db) == before and url not in masters


def test_asking_after_a_tid_outside_the_history_confirms_nothing(api, master_app):
    """A rejoining master asks about TIDs only it may hold: such a question is refused
    (replica_diverged) and confirms nothing a sync write could count on."""
    from conftest import last_tid
    rt = master_app.extensions["slapfed"]
    mine = last_tid(rt.db)
    r = api.get("/api/v1/replication/transactions", query_string={"after": "7f" * 8})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "replica_diverged"
    assert rt.replication.acks() == {}
    r = api.get("/api/v1/replication/transactions", query_string={"after": mine.hex()})
    assert r.status_code == 200
    assert [tid for tid, _ in rt.replication.acks().values()] == [mine]


@pytest.mark.parametrize("role, epoch, role_after", [
    (LocalRole(rep.REPLICA, name="r1", primary_url="https://old:1", sync=True), 2,
     LocalRole(rep.PRIMARY, name="r1")),
    (LocalRole(), None, LocalRole()),
    (LocalRole(fenced_epoch=3, fenced_by="https://new:1"), None,
     LocalRole(fenced_epoch=3, fenced_by="https://new:1")),
], ids=["replica-becomes-the-primary", "primary-serves-as-it-is", "fenced-stays-fenced"])
def test_serve_promote_makes_a_replicas_data_directory_the_primary_of_a_new_epoch(
        tmp_path, role, epoch, role_after):
    """`master serve --promote` (a child master rebuilt in its replica's partition):
    the replica's name holds the new epoch and leaves the replicas it knew of."""
    from slapfed.replication.setup import promote_in_place
    from slapfed.services import replication as svc
    from slapfed.services.tx import app_root
    from slapfed.store import open_db
    db = open_db("file", str(tmp_path))
    with db.transaction() as conn:
        app_root(conn).replicas = (("r1", "https://r1:1", "sync"), ("r2", None, "async"))
    db.close()
    write_role(tmp_path, role)
    assert promote_in_place(str(tmp_path), "file") == epoch
    assert read_role(tmp_path) == role_after
    db = open_db("file", str(tmp_path))
    try:
        view = svc.replication_view(db)
    finally:
        db.close()
    if epoch:
        assert view.epoch == 2 and [(e, n) for e, n, _t in view.epochs] == [(2, "r1")]
        assert [r.name for r in view.replicas] == ["r2"]
    else:
        assert view.epoch == 1 and len(view.replicas) == 2


def test_an_enrolment_that_failed_leaves_no_identity_so_it_can_be_tried_again(tmp_path):
    """A new replica enrols while its primary (just rebuilt) is not answering yet: each
    failed attempt leaves no key behind, or the next one would refuse the directory."""
    import socket

    from slapfed.ca.authority import CertificateAuthority
    from slapfed.core.errors import MasterUnreachable
    from slapfed.enrol import enrol
    ca = CertificateAuthority.init(tmp_path / "ca", "test CA")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]            # closed once left: nobody answers there
    for _attempt in range(2):
        with pytest.raises(MasterUnreachable):
            enrol(f"https://127.0.0.1:{port}", ca.certificate_pem, "token", tmp_path / "id")
        assert not (tmp_path / "id" / "identity.key").exists()
        assert not (tmp_path / "id" / "identity.crt").exists()
