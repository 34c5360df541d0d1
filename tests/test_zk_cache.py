"""The node's sealing cache kept across agent restarts (node.sealing.Sealer with a store):
an unchanged secret is sent again as the very same sealed text after a restart; a
changed value or another recipient is sealed afresh; a corrupt or foreign cache file is
ignored (sealing afresh, logged once); the file stays bounded, 0600, and holds neither a
secret nor an unkeyed digest of one."""
import base64
import hashlib
import json
import logging
import os
import stat

import pytest
from test_zk import identity

from slapfed.core.sealed import is_sealed
from slapfed.node import sealing
from slapfed.node.layout import Paths
from slapfed.node.sealing import Sealer

# long enough that each form the scan looks for is distinctive (a form of a few
# characters would turn up by chance in random sealed text, digests or the key)
SECRETS = {"password": "hunter2-e4b81d9c", "token": "tk-0123456789abcdef",
           "pin": "pin-48213957"}


@pytest.fixture(scope="module")
def alice():
    return identity()


@pytest.fixture
def where(tmp_path):
    paths = Paths(str(tmp_path))
    os.makedirs(paths.var)
    return paths.sealed_cache, paths.sealing_key


def sealed_by(where, recipient, secrets=SECRETS, iid="i-1"):
    """(a restarted agent's sealer, what it sends): a new Sealer on the same files."""
    sealer = Sealer(*where)
    conn, withheld = sealer.connection(iid, {"url": "http://h/"}, secrets, recipient)
    assert withheld == {}
    sealer.save()
    return sealer, conn


def test_after_a_restart_an_unchanged_secret_is_sent_as_the_same_text(where, alice):
    _s, first = sealed_by(where, alice[1])
    _s, again = sealed_by(where, alice[1])
    assert again == first and all(is_sealed(first[k]) for k in SECRETS)
    # and it opens as before, for its place
    from slapfed.ca import seal
    assert seal.open_sealed(again["password"], alice[0], "connection/i-1/password") == \
        SECRETS["password"]


def test_after_a_restart_a_changed_value_or_a_renewed_certificate_is_sealed_afresh(
        where, alice):
    _s, first = sealed_by(where, alice[1])
    _s, changed = sealed_by(where, alice[1], {**SECRETS, "pin": "4321"})
    assert changed["pin"] != first["pin"]
    assert {k: changed[k] for k in ("password", "token")} == \
        {k: first[k] for k in ("password", "token")}
    _key, renewed = identity()
    _s, resealed = sealed_by(where, renewed, {**SECRETS, "pin": "4321"})
    assert all(resealed[k] != changed[k] for k in SECRETS)
    # another instance, same values: its own sealing (bound to its id)
    _s, other = sealed_by(where, renewed, {**SECRETS, "pin": "4321"}, iid="i-2")
    assert all(other[k] != resealed[k] for k in SECRETS)


def _corrupt(store, key_path, how):
    if how == "garbage":
        with open(store, "wb") as fh:
            fh.write(b"\x00not json{")
    elif how == "not-a-cache":
        with open(store, "w") as fh:
            json.dump(["entries"], fh)
    elif how == "other-version":
        raw = json.load(open(store))
        raw["version"] = 99
        json.dump(raw, open(store, "w"))
    elif how == "key-replaced":
        with open(key_path, "w") as fh:
            fh.write("ab" * 32 + "\n")
    elif how == "key-lost":
        os.unlink(key_path)
    elif how == "key-garbage":
        with open(key_path, "w") as fh:
            fh.write("no key here")


@pytest.mark.parametrize("how", ["garbage", "not-a-cache", "other-version", "key-replaced",
                                 "key-lost", "key-garbage"])
def test_a_corrupt_or_foreign_cache_is_ignored_once_and_sealing_goes_on(where, alice,
                                                                         caplog, how):
    _s, first = sealed_by(where, alice[1])
    _corrupt(*where, how)
    with caplog.at_level(logging.WARNING, logger="slapfed.node"):
        _s, again = sealed_by(where, alice[1])
        _s, third = sealed_by(where, alice[1])
    assert all(is_sealed(again[k]) and again[k] != first[k] for k in SECRETS)
    assert third == again                     # the file written afresh serves again
    warned = [r for r in caplog.records if "sealing cache" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]


def test_a_malformed_or_altered_entry_is_sealed_again(where, alice, caplog):
    _s, first = sealed_by(where, alice[1], {**SECRETS, "other": "x"})
    store = where[0]
    raw = json.load(open(store))
    bad = {e[1]: e for e in raw["entries"]}
    bad["pin"][4] = "not sealed"                      # not a sealed value
    bad["token"][3] = "zz"                            # not a digest
    text = bad["password"][4]                         # altered on disk: sealed again
    bad["password"][4] = text[:40] + ("B" if text[40] != "B" else "C") + text[41:]
    json.dump(raw, open(store, "w"))
    with caplog.at_level(logging.WARNING, logger="slapfed.node"):
        _s, again = sealed_by(where, alice[1], {**SECRETS, "other": "x"})
    assert all(again[k] != first[k] for k in SECRETS)
    assert again["other"] == first["other"]                     # the sound entry kept
    from slapfed.ca import seal
    assert seal.open_sealed(again["password"], alice[0], "connection/i-1/password") == \
        SECRETS["password"]
    assert any("2 malformed entries" in r.getMessage() for r in caplog.records)


def forms(value: str) -> list[bytes]:
    """A value as the bytes it could leave on disk: as it is, hex, base64 (each
    alignment, without the edges), and its unkeyed digests (SHA-256, SHA-1, MD5,
    BLAKE2b)."""
    raw = value.encode()
    found = [raw, raw.hex().encode()]
    for pad in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            found.append(enc(b"\0" * pad + raw).rstrip(b"=")[4:-4])
    for digest in [hashlib.new(a, raw).digest() for a in ("sha256", "sha1", "md5")] + \
            [hashlib.blake2b(raw, digest_size=32).digest()]:
        found += [digest, digest.hex().encode(), base64.b64encode(digest).rstrip(b"="),
                  base64.urlsafe_b64encode(digest).rstrip(b"=")]
    return [f for f in found if len(f) >= 8]


def test_the_files_hold_no_secret_nor_an_unkeyed_digest_of_one_and_are_0600(where, alice):
    sealed_by(where, alice[1])
    sealed_by(where, alice[1], {"password": SECRETS["password"], "token": SECRETS["token"]}, "i-2")
    for path in where:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600, path
        data = open(path, "rb").read()
        hits = [v for v in SECRETS.values() if any(f in data for f in forms(v))]
        assert hits == [], (path, hits)
    # the same value in two places: two unrelated digests (the file does not even say
    # that they are equal)
    entries = json.load(open(where[0]))["entries"]
    digests = [e[3] for e in entries if e[1] == "password"]
    assert len(digests) == 2 and digests[0] != digests[1]


def test_the_cache_is_bounded_oldest_entries_go_first(where, alice, monkeypatch):
    monkeypatch.setattr(sealing, "MAX_CACHED", 4)
    sealer = Sealer(*where)
    for i in range(6):
        sealer.connection(f"i-{i}", {}, {"pw": "x"}, alice[1])
    sealer.save()
    entries = json.load(open(where[0]))["entries"]
    assert [e[0] for e in entries] == ["i-2", "i-3", "i-4", "i-5"]
    monkeypatch.setattr(sealing, "MAX_CACHED_CHARS", 2 * len(entries[0][4]) + 10)
    sealer.connection("i-9", {}, {"pw": "x"}, alice[1])
    sealer.save()
    assert [e[0] for e in json.load(open(where[0]))["entries"]] == ["i-5", "i-9"]


def test_nothing_to_seal_reads_and_writes_nothing(where, alice):
    sealer = Sealer(*where)
    assert sealer.connection("i-1", {"url": "u"}, {}, alice[1]) == ({"url": "u"}, {})
    sealer.save()
    assert not any(os.path.exists(p) for p in where)
    # an unchanged cycle does not rewrite the file
    sealed_by(where, alice[1])
    before = os.stat(where[0]).st_mtime_ns, open(where[0], "rb").read()
    s, _ = sealed_by(where, alice[1])
    assert not s._dirty
    assert (os.stat(where[0]).st_mtime_ns, open(where[0], "rb").read()) == before
