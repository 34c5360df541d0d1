"""The certificate authority: init, issue, verify (every way a certificate can be refused),
renew, revoke, registration tokens, file modes, and no private key in any output."""
import datetime as dt
import json
import os
import stat
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from slapfed.ca import errors as ca_errors
from slapfed.ca import identity as ids
from slapfed.ca.authority import (KEY_FILE, REVOKED_FILE, TOKENS_FILE, CertificateAuthority,
                                  parse_serial)
from slapfed.ca.keys import csr_for, generate_key, public_key_from
from slapfed.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated

ALICE = ids.person("alice")
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


class Clock:
    """A settable clock for the CA (no sleeping in tests)."""

    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def authority(tmp_path, clock):
    return CertificateAuthority.init(tmp_path / "data" / "ca", "master-a", clock=clock)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def der_of(record) -> bytes:
    return x509.load_pem_x509_certificate(record.certificate_pem.encode()).public_bytes(
        serialization.Encoding.DER)


# -- init ------------------------------------------------------------------------------
def test_init_creates_key_0600_and_a_ten_year_self_signed_ca(authority, tmp_path):
    ca_dir = tmp_path / "data" / "ca"
    assert mode(ca_dir / KEY_FILE) == 0o600
    assert mode(ca_dir) == 0o700
    cert = authority.certificate
    assert cert.issuer == cert.subject and authority.name == "master-a"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert (cert.not_valid_after_utc - NOW).days == 3650


def test_key_is_0600_even_under_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        CertificateAuthority.init(tmp_path / "ca", "m")
    finally:
        os.umask(old)
    assert mode(tmp_path / "ca" / KEY_FILE) == 0o600


@pytest.mark.parametrize("leftover", ["ca.crt", "ca.key"], ids=["certificate", "key-only"])
def test_init_refuses_to_overwrite(authority, tmp_path, leftover):
    ca_dir = tmp_path / "data" / "ca"
    before = (ca_dir / KEY_FILE).read_bytes()
    if leftover == "ca.key":
        (ca_dir / "ca.crt").unlink()
    with pytest.raises(ca_errors.CAExists):
        CertificateAuthority.init(ca_dir, "again")
    assert (ca_dir / KEY_FILE).read_bytes() == before


def test_opening_a_directory_without_ca_says_how_to_make_one(tmp_path):
    with pytest.raises(ca_errors.CANotInitialized, match="slapfed ca init"):
        CertificateAuthority(tmp_path / "nothing")


# -- issue -----------------------------------------------------------------------------
KEY_MAKERS = {
    "ec-p256-csr": lambda: csr_for(ec.generate_private_key(ec.SECP256R1())),
    "ec-p384-csr": lambda: csr_for(ec.generate_private_key(ec.SECP384R1())),
    "rsa-2048-csr": lambda: csr_for(rsa.generate_private_key(65537, 2048)),
    "ed25519-csr": lambda: csr_for(ed25519.Ed25519PrivateKey.generate()),
    "csr-pem": lambda: csr_for(generate_key()).public_bytes(serialization.Encoding.PEM),
    "csr-der": lambda: csr_for(generate_key()).public_bytes(serialization.Encoding.DER),
    "public-key": lambda: generate_key().public_key(),
    "public-key-pem": lambda: generate_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
}


@pytest.mark.parametrize("make", KEY_MAKERS.values(), ids=KEY_MAKERS.keys())
def test_issue_then_verify(authority, make):
    record = authority.issue(ALICE, make(), days=30)
    assert authority.verify(record.certificate_pem) == ALICE
    assert authority.verify(der_of(record)) == ALICE
    assert record.not_after - record.not_before == dt.timedelta(days=30, minutes=5)


@pytest.mark.parametrize("material,fragment", [
    (lambda: b"garbage", "could not parse"),
    (lambda: csr_for(ec.generate_private_key(ec.SECP192R1())), "secp192r1"),
    (lambda: rsa.generate_private_key(65537, 1024).public_key(), "too small"),
    (lambda: generate_key().private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), "private key"),
], ids=["garbage", "weak-curve", "small-rsa", "private-key-given"])
def test_issue_refuses_bad_key_material(authority, material, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        authority.issue(ALICE, material())


def test_a_csr_with_a_broken_signature_is_refused():
    csr = csr_for(generate_key()).public_bytes(serialization.Encoding.DER)
    broken = csr[:-4] + bytes(b ^ 0xFF for b in csr[-4:])
    with pytest.raises(InvalidInput):
        public_key_from(broken)


def test_the_ca_decides_the_identity_not_the_csr(authority):
    key = generate_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "root (admin)")]))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier("slapfed://admin/root")]), critical=False)
           .sign(key, hashes.SHA256()))
    record = authority.issue(ALICE, csr)
    assert authority.verify(record.certificate_pem) == ALICE


def test_hosts_make_a_server_certificate(authority):
    record = authority.issue(ids.master("master-a"), generate_key().public_key(),
                             hosts=["master-a.example.org", "127.0.0.1"])
    cert = x509.load_pem_x509_certificate(record.certificate_pem.encode())
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.ExtendedKeyUsageOID.SERVER_AUTH in usages
    assert record.hosts == ("master-a.example.org", "127.0.0.1")
    assert authority.verify(cert) == ids.master("master-a")


@pytest.mark.parametrize("kwargs,fragment", [
    ({"days": 0}, "1..3650"),
    ({"days": 3651}, "1..3650"),
    ({"days": 3600}, "outlive its CA"),
    ({"hosts": ["bad host"]}, "neither an IP address"),
    ({"hosts": ["b\u00fccher.example"]}, "neither an IP address"),
    ({"hosts": ["tab\there"]}, "neither an IP address"),
    ({"hosts": ["a\r\nb.example"]}, "neither an IP address"),
    ({"hosts": ["${part:name}.example"]}, "neither an IP address"),
    ({"hosts": ["[x]"]}, "neither an IP address"),
    ({"not_before": NOW, "not_after": NOW - dt.timedelta(days=1)}, "before it starts"),
    ({"not_after": dt.datetime(2031, 1, 1)}, "time zone"),
], ids=["zero-days", "too-many-days", "outlives-ca", "bad-host", "non-ascii-host",
                        "control-in-host", "crlf-in-host", "substitution-in-host",
                        "section-as-host", "inverted-window", "naive-time"])
def test_issue_refuses_bad_validity_and_hosts(authority, clock, kwargs, fragment):
    clock.advance(days=365)
    with pytest.raises(InvalidInput, match=fragment):
        authority.issue(ALICE, generate_key().public_key(), **kwargs)


# -- verify: every refusal has its own code, all of them 401 ----------------------------
def _foreign(tmp_path, name):
    other = CertificateAuthority.init(tmp_path / f"other-{name}", name, clock=Clock())
    return other.issue(ALICE, generate_key().public_key()).certificate_pem


def _tampered(authority):
    der = der_of(authority.issue(ids.person("alice"), generate_key().public_key()))
    return der.replace(b"alice", b"alicf")   # subject and SAN: "alicf" never was signed


def _forged(authority):
    """Same issuer name and key id as our CA, signed by another key."""
    record = authority.issue(ALICE, generate_key().public_key())
    cert = x509.load_pem_x509_certificate(record.certificate_pem.encode())
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
               .public_key(cert.public_key()).serial_number(cert.serial_number)
               .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(generate_key(), hashes.SHA256())


REFUSED = {
    "expired": (lambda a, p: a.issue(ALICE, generate_key().public_key(),
                                     not_before=NOW - dt.timedelta(days=10),
                                     not_after=NOW - dt.timedelta(seconds=1)).certificate_pem,
                ca_errors.CertificateExpired),
    "not-yet-valid": (lambda a, p: a.issue(ALICE, generate_key().public_key(),
                                           not_before=NOW + dt.timedelta(days=1),
                                           not_after=NOW + dt.timedelta(days=2)).certificate_pem,
                      ca_errors.CertificateNotYetValid),
    "revoked": (lambda a, p: a.revoke(a.issue(ALICE, generate_key().public_key()).serial,
                                      "key_compromise").certificate_pem,
                ca_errors.CertificateRevoked),
    "foreign-ca": (lambda a, p: _foreign(p, "master-b"), ca_errors.ForeignCertificate),
    "foreign-ca-same-name": (lambda a, p: _foreign(p, "master-a"), ca_errors.ForeignCertificate),
    "tampered": (lambda a, p: _tampered(a), ca_errors.InvalidCertificateSignature),
    "forged-signature": (lambda a, p: _forged(a), ca_errors.InvalidCertificateSignature),
    "garbage": (lambda a, p: b"\x30\x03\x02\x01\x00", ca_errors.BadCertificate),
    "garbage-pem": (lambda a, p: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                    ca_errors.BadCertificate),
}


@pytest.mark.parametrize("make,error", REFUSED.values(), ids=REFUSED.keys())
def test_verify_refuses_with_a_distinct_code(authority, tmp_path, make, error):
    cert = make(authority, tmp_path)
    with pytest.raises(error) as exc:
        authority.verify(cert)
    assert isinstance(exc.value, Unauthenticated) and exc.value.http_status == 401
    assert exc.value.code == error.code
    assert authority.name in exc.value.message or exc.value.code != "foreign_certificate"


def test_every_refusal_code_is_distinct():
    codes = [klass.code for klass in ca_errors.CA_ERRORS]
    assert len(codes) == len(set(codes))


def test_a_remembered_certificate_still_expires(authority, clock):
    record = authority.issue(ALICE, generate_key().public_key(), days=1)
    assert authority.verify(der_of(record)) == ALICE
    clock.advance(days=2)
    with pytest.raises(ca_errors.CertificateExpired):
        authority.verify(der_of(record))


def test_a_revocation_is_honoured_on_the_next_call_by_another_process_view(authority, tmp_path, clock):
    record = authority.issue(ALICE, generate_key().public_key())
    assert authority.verify(der_of(record)) == ALICE            # remembered as good
    other_process = CertificateAuthority(tmp_path / "data" / "ca", clock=clock)
    other_process.revoke(record.serial, "key_compromise")
    with pytest.raises(ca_errors.CertificateRevoked):
        authority.verify(der_of(record))


def test_revocations_seen_after_many_quick_writes(authority, tmp_path, clock):
    """Every atomic rewrite gives revoked.json a new inode: no change goes unseen even
    within one mtime tick."""
    records = [authority.issue(ids.person(f"u{i}"), generate_key().public_key()) for i in range(5)]
    for r in records:
        authority.verify(der_of(r))
    other = CertificateAuthority(tmp_path / "data" / "ca", clock=clock)
    for r in records:
        other.revoke(r.serial)
        with pytest.raises(ca_errors.CertificateRevoked):
            authority.verify(der_of(r))


# -- renew and revoke ------------------------------------------------------------------
def test_renew_keeps_identity_key_and_hosts_with_a_new_serial(authority, clock):
    key = generate_key()
    old = authority.issue(ids.master("m"), key.public_key(), days=10, hosts=["m.example"])
    clock.advance(days=5)
    new = authority.renew(old.serial, days=30)
    assert new.serial != old.serial and new.identity == old.identity and new.hosts == old.hosts
    new_cert = x509.load_pem_x509_certificate(new.certificate_pem.encode())
    assert new_cert.public_key() == key.public_key()
    assert authority.verify(old.certificate_pem) == authority.verify(new.certificate_pem)


def test_renewing_an_expired_certificate_works(authority, clock):
    old = authority.issue(ALICE, generate_key().public_key(), days=1)
    clock.advance(days=3)
    assert authority.verify(authority.renew(old.serial).certificate_pem) == ALICE


@pytest.mark.parametrize("call,error", [
    (lambda a, s: a.renew("abcdef"), NotFound),
    (lambda a, s: a.revoke("abcdef"), NotFound),
    (lambda a, s: a.revoke(s, "because"), InvalidInput),
    (lambda a, s: a.revoke("not-hex"), InvalidInput),
    (lambda a, s: a.renew(a.revoke(s).serial), Conflict),
], ids=["renew-unknown", "revoke-unknown", "unknown-reason", "not-a-serial", "renew-revoked"])
def test_renew_and_revoke_refusals(authority, call, error):
    serial = authority.issue(ALICE, generate_key().public_key()).serial
    with pytest.raises(error):
        call(authority, serial)


def test_revoking_twice_keeps_the_first_reason(authority, clock):
    serial = authority.issue(ALICE, generate_key().public_key()).serial
    first = authority.revoke(serial, "key_compromise")
    clock.advance(hours=1)
    again = authority.revoke(serial, "superseded")
    assert again.revoked == first.revoked == {"reason": "key_compromise",
                                              "revoked_at": NOW.isoformat()}


@pytest.mark.parametrize("text,serial", [
    ("ff", 255), ("0xFF", 255), ("0f:f0", 0xFF0), (" Ab ", 0xAB), (17, 17),
], ids=["hex", "prefix", "colons", "spaces-case", "int"])
def test_serials_are_read_leniently(text, serial):
    assert parse_serial(text) == serial


def test_list_shows_public_facts_and_revocations(authority, clock):
    a = authority.issue(ALICE, generate_key().public_key())
    clock.advance(seconds=1)
    b = authority.issue(ids.computer("node-1"), generate_key().public_key())
    authority.revoke(b.serial, "cessation_of_operation")
    listed = [r.to_json() for r in authority.list()]
    assert [(r["serial"], r["identity"]["uri"], r["revoked"]) for r in listed] == [
        (a.serial, "slapfed://person/alice", False), (b.serial, "slapfed://computer/node-1", True)]
    assert listed[1]["revocation"]["reason"] == "cessation_of_operation"
    assert set(listed[0]) == {"serial", "identity", "not_before", "not_after", "fingerprint",
                              "hosts", "revoked"}


# -- local identities (the key made here, on request) -----------------------------------
def test_issue_with_new_key_writes_0600_key_cert_and_ca(authority, tmp_path):
    files = authority.issue_with_new_key(ALICE, tmp_path / "alice")
    assert mode(files.key_path) == 0o600 and mode(tmp_path / "alice") == 0o700
    key = serialization.load_pem_private_key(files.key_path.read_bytes(), None)
    cert = x509.load_pem_x509_certificate(files.cert_path.read_bytes())
    assert cert.public_key() == key.public_key()
    assert files.ca_path.read_text() == authority.certificate_pem
    assert authority.verify(files.cert_path.read_bytes()) == ALICE
    assert "PRIVATE" not in json.dumps(files.to_json())


def test_issue_with_new_key_never_overwrites(authority, tmp_path):
    authority.issue_with_new_key(ALICE, tmp_path / "alice")
    before = (tmp_path / "alice" / "identity.key").read_bytes()
    with pytest.raises(Conflict):
        authority.issue_with_new_key(ALICE, tmp_path / "alice")
    assert (tmp_path / "alice" / "identity.key").read_bytes() == before


# -- registration tokens ---------------------------------------------------------------
def test_a_token_buys_one_computer_certificate_once(authority):
    token = authority.token_for("node-1", ttl=60)
    record = authority.redeem(token, csr_for(generate_key()))
    assert authority.verify(record.certificate_pem) == ids.computer("node-1")
    with pytest.raises(ca_errors.InvalidToken, match="already used"):
        authority.redeem(token, csr_for(generate_key()))


def test_an_expired_token_is_refused(authority, clock):
    token = authority.token_for("node-1", ttl=60)
    clock.advance(seconds=61)
    with pytest.raises(ca_errors.TokenExpired):
        authority.redeem(token, csr_for(generate_key()))


@pytest.mark.parametrize("token", ["", "sft1.", "sft1.unknown", "node-1", None],
                         ids=["empty", "prefix-only", "unknown", "no-prefix", "none"])
def test_unknown_tokens_are_refused(authority, token):
    authority.token_for("node-1")
    with pytest.raises(ca_errors.InvalidToken):
        authority.redeem(token, csr_for(generate_key()))


def test_a_bad_csr_does_not_spend_the_token(authority):
    token = authority.token_for("node-1")
    with pytest.raises(InvalidInput):
        authority.redeem(token, b"not a csr")
    assert authority.redeem(token, csr_for(generate_key())).identity == ids.computer("node-1")


def test_tokens_are_stored_hashed_0600_and_expired_ones_purged(authority, tmp_path, clock):
    path = tmp_path / "data" / "ca" / TOKENS_FILE
    old = authority.token_for("node-0", ttl=10)
    clock.advance(seconds=11)
    token = authority.token_for("node-1", ttl=60)
    text = path.read_text()
    assert token not in text and token.split(".", 1)[1] not in text and old not in text
    assert mode(path) == 0o600
    assert [e["computer"] for e in json.loads(text).values()] == ["node-1"]


@pytest.mark.parametrize("computer,ttl", [("bad id", 60), ("node-1", 0), ("node-1", 10**9)],
                         ids=["bad-computer", "zero-ttl", "huge-ttl"])
def test_token_for_refuses_bad_input(authority, computer, ttl):
    with pytest.raises(InvalidInput):
        authority.token_for(computer, ttl)


# -- private keys never leave ---------------------------------------------------------------
def test_no_private_key_in_any_record_or_log(authority, tmp_path, caplog):
    caplog.set_level("DEBUG", logger="slapfed.ca")
    files = authority.issue_with_new_key(ALICE, tmp_path / "alice")
    record = authority.issue(ids.admin("root"), csr_for(generate_key()))
    authority.redeem(authority.token_for("n1"), csr_for(generate_key()))
    authority.revoke(record.serial)
    outputs = [json.dumps(r.to_json(with_certificate=True)) for r in authority.list()]
    outputs += [json.dumps(files.to_json()), json.dumps(authority.describe()), caplog.text]
    ca_key = (tmp_path / "data" / "ca" / KEY_FILE).read_text()
    local_key = files.key_path.read_text()
    for text in outputs:
        assert "PRIVATE KEY" not in text
        assert ca_key.splitlines()[1] not in text and local_key.splitlines()[1] not in text
    assert "issued certificate" in caplog.text    # the log does say what happened


def test_revoked_file_is_plain_json_of_serials(authority, tmp_path):
    serial = authority.issue(ALICE, generate_key().public_key()).serial
    authority.revoke(serial)
    data = json.loads((tmp_path / "data" / "ca" / REVOKED_FILE).read_text())
    assert list(data) == [serial] and data[serial]["identity"] == "person/alice"


# -- cost: what the master pays on every request --------------------------------------------
def test_measured_cost_of_verify_with_revocation_check(authority, capsys):
    for i in range(50):
        authority.revoke(authority.issue(ids.person(f"gone{i}"), generate_key().public_key()).serial)
    der = der_of(authority.issue(ALICE, generate_key().public_key()))
    n = 5000
    authority.verify(der)
    start = time.perf_counter()
    for _ in range(n):
        authority.verify(der)
    warm = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for _ in range(n):
        authority.revocations.contains(1)
    revocation = (time.perf_counter() - start) / n
    cold_n = 200
    start = time.perf_counter()
    for _ in range(cold_n):
        authority._verified.clear()
        authority.verify(der)
    cold = (time.perf_counter() - start) / cold_n
    with capsys.disabled():
        print(f"\n[ca cost] verify, remembered certificate + revocation check: {warm * 1e6:.1f} µs; "
              f"revocation check alone (stat + set): {revocation * 1e6:.1f} µs; "
              f"first verify (parse + ECDSA signature): {cold * 1e6:.0f} µs")
    assert warm < 100e-6 and cold < 5e-3


@pytest.mark.parametrize("content", ["{not json", "[]"], ids=["malformed", "not-an-object"])
def test_a_corrupt_revocation_file_fails_closed(authority, tmp_path, content):
    from slapfed.core.errors import StorageError
    record = authority.issue(ALICE, generate_key().public_key())
    (tmp_path / "data" / "ca" / REVOKED_FILE).write_text(content)
    with pytest.raises(StorageError, match="restore it from a backup"):
        authority.verify(record.certificate_pem)


# -- one current token per identity --------------------------------------------------------
def test_a_new_token_revokes_the_older_unused_ones_of_the_same_identity(authority):
    old = authority.token_for("node-1", ttl=600)
    other = authority.token_for("node-2", ttl=600)
    owner_old = authority.enrolment_token(ids.admin("owner"))
    new = authority.token_for("node-1", ttl=600)
    owner_new = authority.enrolment_token(ids.admin("owner"))
    for dead in (old, owner_old):
        with pytest.raises(ca_errors.InvalidToken, match="superseded"):
            authority.redeem(dead, csr_for(generate_key()))
    for alive, who in ((new, ids.computer("node-1")), (other, ids.computer("node-2")),
                       (owner_new, ids.admin("owner"))):
        assert authority.redeem(alive, csr_for(generate_key())).identity == who


def test_withdrawn_tokens_are_dead(authority):
    token = authority.enrolment_token(ids.admin("owner"))
    keep = authority.token_for("node-1")
    assert authority.withdraw_tokens(ids.admin("owner")) == 1
    assert authority.withdraw_tokens(ids.admin("owner")) == 0
    with pytest.raises(ca_errors.InvalidToken):
        authority.redeem(token, csr_for(generate_key()))
    assert authority.redeem(keep, csr_for(generate_key())).identity == ids.computer("node-1")


def test_tokens_are_short_lived_by_default(authority, tmp_path, clock):
    from slapfed.ca.authority import DEFAULT_TOKEN_TTL
    assert DEFAULT_TOKEN_TTL == 900
    token = authority.token_for("node-1")
    clock.advance(seconds=DEFAULT_TOKEN_TTL + 1)
    with pytest.raises(ca_errors.TokenExpired):
        authority.redeem(token, csr_for(generate_key()))


def test_holding_a_valid_certificate(authority, clock):
    owner = ids.admin("owner")
    assert not authority.holds_valid_certificate(owner)
    record = authority.redeem(authority.enrolment_token(owner), csr_for(generate_key()))
    assert authority.holds_valid_certificate(owner)
    authority.revoke(record.serial)
    assert not authority.holds_valid_certificate(owner)
