"""A master's certificate authority over its directory (<data>/ca): init, issue, renew, revoke,
list, verify (with a per-request revocation check) and one-time computer registration tokens.

Depends on cryptography, slapfed.core.errors and the slapfed.ca modules. Private keys are
never returned, listed or logged: the CA's own key stays in ca.key (0600); other keys are
generated where they are used and only their public half (a CSR) reaches the CA.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..core.errors import Conflict, InvalidInput, NotFound, StorageError
from . import identity as ids
from .errors import (BadCertificate, CAExists, CANotInitialized, CertificateExpired,
                     CertificateNotYetValid, CertificateRevoked, ForeignCertificate,
                     InvalidCertificateSignature, InvalidToken, TokenExpired)
from .identity import Identity
from .keys import generate_key, make_private_dir, public_key_from, write_private_key

log = logging.getLogger("slapfed.ca")

# Files of <data>/ca/
KEY_FILE = "ca.key"             # the CA's private key, 0600, created with that mode
CERT_FILE = "ca.crt"            # the CA certificate: what every client is given to trust
ISSUED_DIR = "issued"           # issued/<serial hex>.pem, one per certificate ever issued
REVOKED_FILE = "revoked.json"   # {serial hex: {reason, revoked_at, identity}}, atomic writes
TOKENS_FILE = "tokens.json"     # {sha256(token): {computer | role+name, expires_at}}, hashes
                                # only, 0600; at most one live token per identity
LOCK_FILE = "lock"              # flock serialising read-modify-write of the JSON files

# Files written beside a locally generated identity (issue_with_new_key).
LOCAL_KEY_FILE = "identity.key"
LOCAL_CERT_FILE = "identity.crt"
LOCAL_CA_FILE = "ca.crt"

CA_DAYS = 3650
DEFAULT_DAYS = 365
MAX_DAYS = 3650
DEFAULT_TOKEN_TTL = 900             # seconds: enrolment tokens are short-lived by default
MAX_TOKEN_TTL = 30 * 24 * 3600
TOKEN_PREFIX = "sft1."              # recognisable in a paste; the rest is 256 random bits
CLOCK_SKEW = dt.timedelta(minutes=5)   # issued certificates start this much in the past
VERIFY_CACHE_SIZE = 4096

# Revocation reasons (RFC 5280 names, snake_case), kept for a CRL to come.
REVOCATION_REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "ca_compromise": x509.ReasonFlags.ca_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
}

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def parse_serial(value) -> int:
    """A serial given as int or hex text (``0x`` prefix and ``:`` separators allowed)."""
    if isinstance(value, int):
        return value
    text = str(value).strip().lower().replace(":", "")
    text = text[2:] if text.startswith("0x") else text
    try:
        serial = int(text, 16)
    except ValueError:
        raise InvalidInput(f"{value!r} is not a certificate serial (hexadecimal)",
                           [{"field": "serial", "problem": "must be hexadecimal"}]) from None
    return serial


def load_certificate(data) -> x509.Certificate:
    """A certificate from an object, PEM (str/bytes) or DER; BadCertificate otherwise."""
    if isinstance(data, x509.Certificate):
        return data
    raw = data.encode() if isinstance(data, str) else bytes(data)
    try:
        if raw.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError:
        raise BadCertificate("the client certificate could not be parsed as X509 (PEM or DER)") from None


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class CertificateRecord:
    """What the CA knows of one certificate it issued. Public material only."""

    serial: str
    identity: Identity
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint: str
    hosts: tuple[str, ...] = ()
    revoked: dict | None = None        # {"reason", "revoked_at"} once revoked
    certificate_pem: str = field(default="", repr=False)

    def to_json(self, with_certificate: bool = False) -> dict:
        body = {"serial": self.serial, "identity": self.identity.to_json(),
                "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
                "fingerprint": self.fingerprint, "hosts": list(self.hosts),
                "revoked": self.revoked is not None}
        if self.revoked is not None:
            body["revocation"] = dict(self.revoked)
        if with_certificate:
            body["certificate"] = self.certificate_pem
        return body

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, revoked: dict | None = None):
        return cls(serial=serial_hex(cert.serial_number), identity=ids.identity_of(cert),
                   not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                   fingerprint=fingerprint(cert), hosts=tuple(hosts_of(cert)), revoked=revoked,
                   certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode())


@dataclass(frozen=True)
class LocalIdentityFiles:
    """Where issue_with_new_key wrote a locally generated identity (no key material here)."""

    record: CertificateRecord
    key_path: Path
    cert_path: Path
    ca_path: Path

    def to_json(self) -> dict:
        return {**self.record.to_json(), "key_file": str(self.key_path),
                "certificate_file": str(self.cert_path), "ca_file": str(self.ca_path)}


def hosts_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return ([str(v) for v in san.get_values_for_type(x509.DNSName)]
            + [str(v) for v in san.get_values_for_type(x509.IPAddress)])


_DNS_NAME = re.compile(r"(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\Z")


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        # a DNS name in a certificate is letters, digits, '-', '_', '.' and a leading
        # '*.' (an internationalised one in its xn-- form): anything else (spaces,
        # CR/LF, '${', brackets, non-ASCII) is refused here, not by the X.509 library
        if not _DNS_NAME.match(host) or len(host) > 253:
            raise InvalidInput(f"{host!r} is neither an IP address nor a DNS name",
                               [{"field": "hosts", "problem": f"{host!r} is not a host"}]) from None
        return x509.DNSName(host)


class RevocationList:
    """The revoked serials, held in memory and reloaded when revoked.json changes.

    ``contains`` costs one stat of the file plus a set lookup; the file is only re-read
    when its (inode, mtime, size) changed. Writers replace the file atomically, so every
    change gives it a new inode and is seen on the very next call."""

    def __init__(self, path: Path):
        self.path = path
        self._stamp = None
        self._serials: frozenset[int] = frozenset()

    def _current_stamp(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self) -> None:
        stamp = self._current_stamp()
        if stamp == self._stamp:
            return
        entries = read_json(self.path)
        self._serials = frozenset(int(s, 16) for s in entries)
        self._stamp = stamp

    def contains(self, serial: int) -> bool:
        self.refresh()
        return serial in self._serials


def read_json(path: Path) -> dict:
    """A CA state file ({} when absent). A corrupt one raises StorageError (503): the CA
    fails closed rather than guess, e.g., which certificates are revoked."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StorageError(f"{path} is not valid JSON ({exc}); restore it from a backup") from None
    if not isinstance(data, dict):
        raise StorageError(f"{path} must hold a JSON object; restore it from a backup")
    return data


def write_json_atomically(path: Path, data: dict, mode: int) -> None:
    """Write to a temporary file created with ``mode``, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CertificateAuthority:
    """The CA kept in ``directory``. Opening needs only ca.crt; the private key is read
    when something is signed. Raises CANotInitialized when the directory holds no CA."""

    def __init__(self, directory, clock: Clock = utcnow):
        self.directory = Path(directory)
        self.clock = clock
        cert_path = self.directory / CERT_FILE
        try:
            pem = cert_path.read_bytes()
        except FileNotFoundError:
            raise CANotInitialized(f"no certificate authority in {self.directory} "
                                   f"(run: slapfed ca init --data <master data dir>)") from None
        self.certificate = x509.load_pem_x509_certificate(pem)
        self.certificate_pem = pem.decode()
        self._ski = self.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest
        self._key = None
        self.revocations = RevocationList(self.directory / REVOKED_FILE)
        self._verified: dict[bytes, tuple[Identity, int, dt.datetime, dt.datetime]] = {}

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def init(cls, directory, name: str, days: int = CA_DAYS, clock: Clock = utcnow):
        """Create the CA: an EC P-256 key (ca.key, 0600 from creation) and a self-signed
        certificate named ``name`` valid ``days``. Raises CAExists rather than overwrite."""
        directory = Path(directory)
        if not name or len(name) > ids.CN_MAX:
            raise InvalidInput(f"CA name {name!r} must be 1 to {ids.CN_MAX} characters",
                               [{"field": "name", "problem": "length 1..64"}])
        _check_days(days)
        make_private_dir(directory)
        (directory / ISSUED_DIR).mkdir(mode=0o755, exist_ok=True)
        if (directory / CERT_FILE).exists():
            raise CAExists(f"{directory} already holds a certificate authority; "
                           f"refusing to overwrite it")
        key = generate_key()
        try:
            write_private_key(directory / KEY_FILE, key)
        except Conflict:
            raise CAExists(f"{directory / KEY_FILE} already exists; refusing to overwrite "
                           f"the CA's key") from None
        now = clock()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "slapfed")])
        pub = key.public_key()
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject).public_key(pub)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
                .sign(key, hashes.SHA256()))
        tmp = directory / f".{CERT_FILE}.tmp"
        tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        os.replace(tmp, directory / CERT_FILE)
        log.info("certificate authority %r created in %s", name, directory)
        return cls(directory, clock)

    @property
    def name(self) -> str:
        return self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

    def describe(self) -> dict:
        """Public facts of the CA (no key material)."""
        return {"name": self.name, "directory": str(self.directory),
                "certificate_file": str(self.directory / CERT_FILE),
                "fingerprint": fingerprint(self.certificate),
                "not_before": self.certificate.not_valid_before_utc.isoformat(),
                "not_after": self.certificate.not_valid_after_utc.isoformat()}

    def _signing_key(self):
        if self._key is None:
            pem = (self.directory / KEY_FILE).read_bytes()
            self._key = serialization.load_pem_private_key(pem, password=None)
        return self._key

    # -- issuing -------------------------------------------------------------------------
    def issue(self, identity: Identity, material, days: int = DEFAULT_DAYS, hosts=(),
              not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None) -> CertificateRecord:
        """Certify ``material`` (a CSR — preferred: the key stays where it was made — or a
        public key) as ``identity`` for ``days``, or for the explicit window
        [not_before, not_after]. ``hosts`` (DNS names, IPs) make it usable by a TLS server.
        The identity is the CA's decision: whatever subject a CSR asks for is ignored.
        Raises InvalidInput (bad material, window, hosts)."""
        public_key = public_key_from(material)
        if not_before is None and not_after is None:
            _check_days(days)
        for moment in (not_before, not_after):
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput(f"validity bound {moment.isoformat()} needs a time zone")
        start = not_before or (self.clock() - CLOCK_SKEW)
        end = not_after or (start + CLOCK_SKEW + dt.timedelta(days=days))
        if end <= start:
            raise InvalidInput(f"certificate validity ends ({end.isoformat()}) before it starts "
                               f"({start.isoformat()})")
        ca_end = self.certificate.not_valid_after_utc
        if end > ca_end:
            raise InvalidInput(f"a certificate may not outlive its CA: asked until "
                               f"{end.isoformat()}, the CA ends {ca_end.isoformat()}")
        san = [x509.UniformResourceIdentifier(identity.uri)] + [_host_name(h) for h in hosts]
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if hosts else [])
        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        ca_key = self._signing_key()
        cert = (x509.CertificateBuilder()
                .subject_name(ids.subject_for(identity, self.name))
                .issuer_name(self.certificate.subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=is_rsa, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        issued = self.directory / ISSUED_DIR
        issued.mkdir(mode=0o755, exist_ok=True)
        path = issued / f"{serial_hex(cert.serial_number)}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        log.info("issued certificate %s for %s until %s", serial_hex(cert.serial_number),
                 identity.principal, end.isoformat(),
                 extra={"serial": serial_hex(cert.serial_number),
                        "subject": identity.principal, "not_after": end.isoformat()})
        return CertificateRecord.from_certificate(cert)

    def issue_with_new_key(self, identity: Identity, out_dir, days: int = DEFAULT_DAYS,
                           hosts=()) -> LocalIdentityFiles:
        """For a party on this very machine, when asked explicitly: generate its key into
        ``out_dir`` (0700 directory, key 0600, never overwritten: Conflict), then write its
        certificate and the CA certificate beside it. Returns paths, never the key."""
        out = make_private_dir(out_dir)
        key_path, cert_path, ca_path = (out / LOCAL_KEY_FILE, out / LOCAL_CERT_FILE,
                                        out / LOCAL_CA_FILE)
        if cert_path.exists():
            raise Conflict(f"{cert_path} already exists; choose another directory")
        key = generate_key()
        write_private_key(key_path, key)
        try:
            record = self.issue(identity, key.public_key(), days=days, hosts=hosts)
        except BaseException:
            key_path.unlink()    # do not leave a key without its certificate
            raise
        cert_path.write_text(record.certificate_pem)
        ca_path.write_text(self.certificate_pem)
        return LocalIdentityFiles(record, key_path, cert_path, ca_path)

    def renew(self, serial, days: int = DEFAULT_DAYS) -> CertificateRecord:
        """A new certificate (new serial) for the same identity, key and hosts. The old one
        stays valid until it expires, so its holder can switch over. Raises NotFound, and
        Conflict for a revoked certificate."""
        cert = self._issued_certificate(parse_serial(serial))
        if self.revocations.contains(cert.serial_number):
            raise Conflict(f"certificate {serial_hex(cert.serial_number)} is revoked; "
                           f"issue a new one instead of renewing it")
        return self.issue(ids.identity_of(cert), cert.public_key(), days=days,
                          hosts=hosts_of(cert))

    # -- revocation ----------------------------------------------------------------------
    def revoke(self, serial, reason: str = "unspecified") -> CertificateRecord:
        """Revoke an issued certificate; honoured by ``verify`` on the next call, in every
        process reading this directory. Revoking twice keeps the first revocation.
        Raises NotFound (never issued here) and InvalidInput (unknown reason)."""
        if reason not in REVOCATION_REASONS:
            raise InvalidInput(f"unknown revocation reason {reason!r} "
                               f"(known: {', '.join(REVOCATION_REASONS)})",
                               [{"field": "reason", "problem": "unknown"}])
        cert = self._issued_certificate(parse_serial(serial))
        key = serial_hex(cert.serial_number)
        with self._locked():
            entries = read_json(self.directory / REVOKED_FILE)
            if key not in entries:
                entries[key] = {"reason": reason, "revoked_at": self.clock().isoformat(),
                                "identity": ids.identity_of(cert).principal}
                write_json_atomically(self.directory / REVOKED_FILE, entries, 0o644)
                log.info("revoked certificate %s (%s): %s", key, entries[key]["identity"],
                         reason, extra={"serial": key, "subject": entries[key]["identity"],
                                        "reason": reason})
        return CertificateRecord.from_certificate(cert, _revocation_facts(entries[key]))

    def is_revoked(self, serial) -> bool:
        return self.revocations.contains(parse_serial(serial))

    # -- reading -------------------------------------------------------------------------
    def list(self) -> list[CertificateRecord]:
        """Every certificate issued here, oldest first, with its revocation if any."""
        revoked = read_json(self.directory / REVOKED_FILE)
        records = []
        for path in sorted((self.directory / ISSUED_DIR).glob("*.pem")):
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            entry = revoked.get(serial_hex(cert.serial_number))
            records.append(CertificateRecord.from_certificate(
                cert, _revocation_facts(entry) if entry else None))
        records.sort(key=lambda r: (r.not_before, r.serial))
        return records

    def show(self, serial) -> CertificateRecord:
        cert = self._issued_certificate(parse_serial(serial))
        entry = read_json(self.directory / REVOKED_FILE).get(serial_hex(cert.serial_number))
        return CertificateRecord.from_certificate(cert, _revocation_facts(entry) if entry else None)

    def _issued_certificate(self, serial: int) -> x509.Certificate:
        path = self.directory / ISSUED_DIR / f"{serial_hex(serial)}.pem"
        try:
            return x509.load_pem_x509_certificate(path.read_bytes())
        except FileNotFoundError:
            raise NotFound(f"no certificate with serial {serial_hex(serial)} was issued by "
                           f"this CA (see: slapfed ca list)") from None

    # -- verification --------------------------------------------------------------------
    def verify(self, certificate) -> Identity:
        """Who presents ``certificate`` (object, PEM or DER). Raises, all Unauthenticated
        (401): BadCertificate, ForeignCertificate, InvalidCertificateSignature,
        CertificateNotYetValid, CertificateExpired, CertificateRevoked, NoIdentity.

        Meant to run on every request: a certificate verified once is remembered (by its
        DER bytes), so later calls cost a dict lookup, a time comparison and the
        revocation check (one stat)."""
        if isinstance(certificate, x509.Certificate):
            der = certificate.public_bytes(serialization.Encoding.DER)
        elif isinstance(certificate, (bytes, bytearray)) and not bytes(certificate).lstrip().startswith(b"-----"):
            der = bytes(certificate)
        else:
            der = None
        known = self._verified.get(der) if der is not None else None
        if known is None:
            cert = load_certificate(certificate if der is None else der)
            der = cert.public_bytes(serialization.Encoding.DER)
            known = self._verified.get(der) or self._verify_signature(cert)
            if len(self._verified) >= VERIFY_CACHE_SIZE:
                self._verified.clear()
            self._verified[der] = known
        identity, serial, start, end = known
        now = self.clock()
        if now < start:
            raise CertificateNotYetValid(f"certificate {serial_hex(serial)} of "
                                         f"{identity.principal} is valid from {start.isoformat()}")
        if now > end:
            raise CertificateExpired(f"certificate {serial_hex(serial)} of {identity.principal} "
                                     f"expired at {end.isoformat()}; ask for a renewal")
        if self.revocations.contains(serial):
            raise CertificateRevoked(f"certificate {serial_hex(serial)} of "
                                     f"{identity.principal} is revoked")
        return identity

    def _verify_signature(self, cert: x509.Certificate):
        ours = self.certificate
        aki = _authority_key_id(cert)   # None: the signature check below decides
        if cert.issuer != ours.subject or (aki is not None and aki != self._ski):
            raise ForeignCertificate(f"certificate {serial_hex(cert.serial_number)} "
                                     f"({cert.subject.rfc4514_string()}) was not issued by "
                                     f"this master's CA {self.name!r}")
        try:
            cert.verify_directly_issued_by(ours)
        except (InvalidSignature, ValueError, TypeError):
            raise InvalidCertificateSignature(
                f"certificate {serial_hex(cert.serial_number)} names CA {self.name!r} as issuer "
                f"but its signature does not verify") from None
        identity = ids.identity_of(cert)
        return identity, cert.serial_number, cert.not_valid_before_utc, cert.not_valid_after_utc

    # -- registration tokens -------------------------------------------------------------
    def token_for(self, computer_id: str, ttl: int = DEFAULT_TOKEN_TTL) -> str:
        """A one-time token with which the node of ``computer_id`` gets its certificate
        (``redeem``) within ``ttl`` seconds. Only its SHA-256 is stored; the token itself
        is returned once and exists nowhere else."""
        return self.enrolment_token(ids.computer(computer_id), ttl)

    def enrolment_token(self, identity: Identity, ttl: int = DEFAULT_TOKEN_TTL) -> str:
        """A one-time token that ``redeem`` trades, with a CSR, for a certificate of
        ``identity`` (a computer, or e.g. the admin a master release hands its requester,
        so that no private key is ever made for someone else). Only its hash is kept.

        One current token per identity: a new one revokes every older token of the same
        identity still unused, so a token published before (in an instance's parameters
        or connection parameters) is dead once its successor exists."""
        if not isinstance(ttl, int) or not 1 <= ttl <= MAX_TOKEN_TTL:
            raise InvalidInput(f"token lifetime {ttl!r} must be 1..{MAX_TOKEN_TTL} seconds",
                               [{"field": "ttl", "problem": f"1..{MAX_TOKEN_TTL}"}])
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        entry = ({"computer": identity.name} if identity.role == ids.COMPUTER
                 else {"role": identity.role, "name": identity.name})
        entry["expires_at"] = (now + dt.timedelta(seconds=ttl)).isoformat()
        with self._locked():
            live = self._live_tokens(now)
            tokens = {h: e for h, e in live.items() if _token_identity(e) != identity}
            tokens[_token_hash(token)] = entry
            write_json_atomically(self.directory / TOKENS_FILE, tokens, 0o600)
        superseded = len(live) - (len(tokens) - 1)
        log.info("enrolment token issued for %s (ttl %ss%s)", identity.principal, ttl,
                 f", {superseded} older one(s) revoked" if superseded else "",
                 extra={"subject": identity.principal, "ttl": ttl})
        return token

    def withdraw_tokens(self, identity: Identity) -> int:
        """Revoke every unused token of ``identity``; returns how many there were."""
        now = self.clock()
        with self._locked():
            live = self._live_tokens(now)
            kept = {h: e for h, e in live.items() if _token_identity(e) != identity}
            write_json_atomically(self.directory / TOKENS_FILE, kept, 0o600)
        if len(live) != len(kept):
            log.info("%d enrolment token(s) of %s revoked", len(live) - len(kept),
                     identity.principal)
        return len(live) - len(kept)

    def holds_valid_certificate(self, identity: Identity) -> bool:
        """Whether some certificate of ``identity`` issued here is neither expired nor
        revoked (e.g. the owner of a child master has enrolled)."""
        now = self.clock()
        return any(r.identity == identity and r.revoked is None
                   and r.not_before <= now < r.not_after for r in self.list())

    def redeem(self, token: str, material, days: int = DEFAULT_DAYS) -> CertificateRecord:
        """Spend a one-time token: certify ``material`` (the holder's CSR) as the identity
        the token was made for. Single use. Raises InvalidToken (unknown, used, malformed),
        TokenExpired, InvalidInput (bad CSR — the token is then not spent)."""
        public_key = public_key_from(material)
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
            log.warning("enrolment refused: not a slapfed registration token")
            raise InvalidToken("this is not a slapfed registration token")
        digest = _token_hash(token)
        now = self.clock()
        with self._locked():
            tokens = read_json(self.directory / TOKENS_FILE)
            entry = tokens.pop(digest, None)
            if entry is None:
                log.warning("enrolment refused: unknown, used or superseded token")
                raise InvalidToken("unknown or already used registration token (or one "
                                   "superseded by a newer token for the same identity, or "
                                   "long expired); ask an administrator for a new one "
                                   "(slapfed ca token)")
            live = {h: e for h, e in tokens.items() if not _token_expired(e, now)}
            write_json_atomically(self.directory / TOKENS_FILE, live, 0o600)
        identity = _token_identity(entry)
        if _token_expired(entry, now):
            log.warning("enrolment refused: the token for %s expired at %s",
                        identity.principal, entry["expires_at"],
                        extra={"subject": identity.principal})
            raise TokenExpired(f"the registration token for {identity.principal} "
                               f"expired at {entry['expires_at']}; ask for a new one")
        log.info("enrolment token for %s redeemed", identity.principal,
                 extra={"subject": identity.principal})
        return self.issue(identity, public_key, days=days)

    def _live_tokens(self, now) -> dict:
        return {h: e for h, e in read_json(self.directory / TOKENS_FILE).items()
                if not _token_expired(e, now)}

    @contextlib.contextmanager
    def _locked(self):
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)   # closing releases the lock


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _token_identity(entry: dict) -> Identity:
    return (ids.computer(entry["computer"]) if "computer" in entry
            else ids.make(entry["role"], entry["name"]))


def _token_expired(entry: dict, now: dt.datetime) -> bool:
    return dt.datetime.fromisoformat(entry["expires_at"]) <= now


def _revocation_facts(entry: dict) -> dict:
    return {"reason": entry.get("reason"), "revoked_at": entry.get("revoked_at")}


def _check_days(days) -> None:
    if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"validity of {days!r} days must be 1..{MAX_DAYS}",
                           [{"field": "days", "problem": f"1..{MAX_DAYS}"}])


