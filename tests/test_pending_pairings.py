"""A one-time pairing token is a file in the master's data directory while it waits to
be redeemed, never a row of the database: the FileStorage holds only its digest, and the
file goes once the pairing is done or the peer is forgotten."""
import stat

from slapfed.services import federation as fed
from slapfed.services.federation import pending

from conftest import make_runtime

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
TOKEN = "pairing-Q7w9e2r4t6y8u0"


def _fs_bytes(tmp_path) -> bytes:
    return (tmp_path / "master" / "master.fs").read_bytes()


def test_a_pending_token_lives_in_a_0600_file_and_the_database_keeps_its_digest(
        master_db, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rt = make_runtime(master_db, data_dir=str(data))
    try:
        fed.save_peer(rt, "east", "https://127.0.0.9:1", PEM, credentials=None,
                      pairing_token=TOKEN)
        assert fed.pending_pairings(rt) == [("east", "https://127.0.0.9:1", PEM, TOKEN)]
        files = list((data / "peers" / "pending").iterdir())
        assert len(files) == 1 and files[0].read_text() == TOKEN
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
        assert stat.S_IMODE((data / "peers" / "pending").stat().st_mode) == 0o700
        stored = _fs_bytes(tmp_path)
        assert TOKEN.encode() not in stored
        assert pending.digest(TOKEN).encode() in stored

        # a token that is not the awaited one is never redeemed
        assert not fed.complete_pairing(rt, "east", "another", str(data / "c"), "master/x", {})
        assert fed.complete_pairing(rt, "east", TOKEN, str(data / "c"), "master/x", {})
        assert not files[0].exists()
        assert fed.pending_pairings(rt) == []
        assert fed.show_peer(rt, "east")["paired"] is True
    finally:
        rt.close()


def test_a_replaced_or_forgotten_pairing_leaves_no_token_behind(master_db, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rt = make_runtime(master_db, data_dir=str(data))
    try:
        fed.save_peer(rt, "west", "https://127.0.0.9:2", PEM, credentials=None,
                      pairing_token="first-token-1")
        fed.save_peer(rt, "west", "https://127.0.0.9:2", PEM, credentials=None,
                      pairing_token="second-token-2")
        assert [t for *_, t in fed.pending_pairings(rt)] == ["second-token-2"]
        assert not fed.complete_pairing(rt, "west", "first-token-1", "c", "master/x", {})
        fed.remove_peer(rt, "west")
        assert list((data / "peers" / "pending").iterdir()) == []
    finally:
        rt.close()


def test_a_file_edited_to_another_token_is_not_used(master_db, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rt = make_runtime(master_db, data_dir=str(data))
    try:
        fed.save_peer(rt, "north", "https://127.0.0.9:3", PEM, credentials=None,
                      pairing_token=TOKEN)
        (path,) = (data / "peers" / "pending").iterdir()
        path.write_text("forged")
        assert fed.pending_pairings(rt) == []
    finally:
        rt.close()
