"""Keys where they are used: generate a key, write it 0600 from the first byte, build a CSR,
load what a party sends (CSR or public key). Private keys go to files only, never to output.

Depends on cryptography, slapfed.core.errors and the standard library.
"""
from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..core.errors import Conflict, InvalidInput

KEY_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
MIN_RSA_BITS = 2048


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 key (~0.1 ms, against ~36 ms for RSA-2048)."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key) -> str:
    """``key`` as unencrypted PKCS8 PEM text, for a party that must be handed its key (a
    stock SlapOS node fetching its partition's key and certificate over mutual TLS)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def write_private_key(path: str | os.PathLike, key) -> Path:
    """Write ``key`` (PEM, unencrypted) to ``path``, created with mode 0600 from the start
    (never a window where it is readable by others) and never overwriting: raises Conflict
    when the file exists."""
    path = Path(path)
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    except FileExistsError:
        raise Conflict(f"{path} already exists; refusing to overwrite a private key") from None
    try:
        os.fchmod(fd, KEY_MODE)   # the umask may only have narrowed it; make it exact
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_private_key(path: str | os.PathLike):
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def make_private_dir(path: str | os.PathLike) -> Path:
    """Create (or keep) a directory readable by its owner only."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    return path


def csr_for(key) -> x509.CertificateSigningRequest:
    """A minimal CSR proving possession of ``key``. The CA decides the identity; whatever
    subject a CSR carries is ignored."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def check_public_key(public_key) -> None:
    """Refuse key types and sizes a master will not sign (InvalidInput)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ALLOWED_CURVES):
            raise InvalidInput(f"EC curve {public_key.curve.name} is not accepted "
                               f"(use secp256r1 or secp384r1)")
    elif isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise InvalidInput(f"RSA key of {public_key.key_size} bits is too small "
                               f"(at least {MIN_RSA_BITS})")
    elif not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise InvalidInput(f"key type {type(public_key).__name__} is not accepted "
                           f"(use EC P-256, RSA >= {MIN_RSA_BITS} or Ed25519)")


def public_key_from(material):
    """The public key a party asks to certify: a CSR (object, PEM or DER, signature checked),
    a public key object, or a PEM public key. Raises InvalidInput otherwise, its details
    naming the field ``csr`` (what the API's bodies and the CLI call the material)."""
    try:
        return _public_key_from(material)
    except InvalidInput as exc:
        if not exc.details:
            exc.details = [{"field": "csr", "problem": exc.message}]
        raise


def _public_key_from(material):
    if isinstance(material, x509.CertificateSigningRequest):
        csr = material
    elif isinstance(material, (bytes, str)):
        data = material.encode() if isinstance(material, str) else material
        if b"PRIVATE KEY" in data:
            raise InvalidInput("a private key was given where a CSR or public key belongs; "
                               "keep private keys where they are used")
        csr = _load_csr(data)
        if csr is None:
            try:
                key = serialization.load_pem_public_key(data)
            except (ValueError, UnsupportedAlgorithm):
                raise InvalidInput("expected a certificate signing request or a public key "
                                   "(PEM or DER); could not parse the input") from None
            check_public_key(key)
            return key
    else:
        check_public_key(material)
        return material
    if not csr.is_signature_valid:
        raise InvalidInput("the CSR's signature does not verify with its own public key")
    key = csr.public_key()
    check_public_key(key)
    return key


def _load_csr(data: bytes):
    loader = x509.load_pem_x509_csr if data.lstrip().startswith(b"-----") else x509.load_der_x509_csr
    try:
        return loader(data)
    except ValueError:
        return None
