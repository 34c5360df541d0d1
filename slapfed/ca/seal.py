"""Sealed values: a secret readable only by the holder of one private key, and only where
it was meant to be read.

Depends on cryptography (its HPKE, RFC 9180) and slapfed.ca.errors. A value is sealed to
a P-256 public key (a certificate's: a person's, a partition's) with HPKE in base mode,
suite DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM. The ``context`` (for example
``connection/<instance id>/<key>``) goes into HPKE's ``info``: a value sealed for one
place does not open in another, so whoever relays it (a master, a peer) can neither read
it nor move it to another parameter or instance. Every sealing draws a fresh ephemeral
key: the same value sealed twice gives two different texts.

On the wire and in storage a sealed value is one printable string,
``slapfed-sealed:1:<base64url of the HPKE output, unpadded>``, so that it travels
wherever a parameter's string value does and is told apart at a glance.
"""
from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from ..core.sealed import MAX_PLAINTEXT, MAX_SEALED, PREFIX, is_sealed  # noqa: F401
from .errors import SealedValueInvalid

SUITE = Suite(KEM.P256, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
INFO = b"slapfed sealed value v1\x00"
MAX_CONTEXT = 512


def recipient_key(certificate_pem: str | bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a certificate (PEM), to seal to. SealedValueInvalid when
    it is not a certificate or holds another kind of key."""
    data = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    try:
        key = x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        raise SealedValueInvalid("the recipient is not a PEM certificate",
                                 [{"field": "recipient", "problem": "not a certificate"}]) \
            from None
    _check_curve(key)
    return key


def fingerprint(certificate_pem: str | bytes) -> str:
    """The SHA-256 of a certificate (hex, as ca.authority gives it): which key a value
    was sealed to, told apart without the certificate."""
    from cryptography.hazmat.primitives import hashes

    data = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    try:
        return x509.load_pem_x509_certificate(data).fingerprint(hashes.SHA256()).hex()
    except ValueError:
        raise SealedValueInvalid("the recipient is not a PEM certificate",
                                 [{"field": "recipient", "problem": "not a certificate"}]) \
            from None


def recipient_from_der(der: bytes) -> dict | None:
    """A TLS peer's certificate (DER) as the recipient of sealed values,
    {"certificate" (PEM), "fingerprint"}; None when it holds no P-256 key (nothing can
    be sealed to it) or does not parse."""
    from cryptography.hazmat.primitives import hashes, serialization

    try:
        cert = x509.load_der_x509_certificate(bytes(der))
        _check_curve(cert.public_key())
    except (ValueError, SealedValueInvalid):
        return None
    return {"certificate": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "fingerprint": cert.fingerprint(hashes.SHA256()).hex()}


def recipient_from_pem(pem: str) -> dict | None:
    """A certificate (PEM) as the recipient of sealed values (see recipient_from_der)."""
    from cryptography.hazmat.primitives import serialization

    try:
        der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(
            serialization.Encoding.DER)
    except ValueError:
        return None
    return recipient_from_der(der)


def _check_curve(key) -> None:
    if not isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)) \
            or key.curve.name != "secp256r1":
        raise SealedValueInvalid("values are sealed to P-256 keys only",
                                 [{"field": "recipient", "problem": "not a P-256 key"}])


def _info(context: str) -> bytes:
    if not isinstance(context, str) or not context or len(context) > MAX_CONTEXT:
        raise SealedValueInvalid(f"a sealed value needs a context of 1..{MAX_CONTEXT} "
                                 "characters", [{"field": "context", "problem": "invalid"}])
    return INFO + context.encode("utf-8")


def seal(value: str, recipient: ec.EllipticCurvePublicKey, context: str) -> str:
    """``value`` sealed to ``recipient`` for ``context``."""
    _check_curve(recipient)
    data = value.encode("utf-8")
    if len(data) > MAX_PLAINTEXT:
        raise SealedValueInvalid(f"a secret is at most {MAX_PLAINTEXT} bytes, this one "
                                 f"{len(data)}", [{"field": "value", "problem": "too long"}])
    sealed = SUITE.encrypt(data, recipient, _info(context))
    return PREFIX + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def open_sealed(text: str, private_key: ec.EllipticCurvePrivateKey, context: str) -> str:
    """The value ``text`` holds. SealedValueInvalid, saying which, when it is not a
    sealed value, was sealed to another key or for another context, or was altered."""
    _check_curve(private_key)
    if not is_sealed(text):
        raise SealedValueInvalid("not a sealed value", [{"field": "value",
                                                         "problem": f"must start {PREFIX}"}])
    if len(text) > MAX_SEALED:
        raise SealedValueInvalid("sealed value too long", [{"field": "value",
                                                            "problem": "too long"}])
    body = text[len(PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise SealedValueInvalid("a sealed value that is not base64url",
                                 [{"field": "value", "problem": "not base64url"}]) from None
    try:
        data = SUITE.decrypt(raw, private_key, _info(context))
    except (InvalidTag, ValueError):
        raise SealedValueInvalid(
            f"the sealed value does not open with this key for {context!r}: sealed to "
            "someone else, for another place, or altered",
            [{"field": "value", "problem": "does not open"}]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SealedValueInvalid("a sealed value that is not UTF-8 text",
                                 [{"field": "value", "problem": "not text"}]) from None


def open_all(values: dict, private_key, context_of) -> tuple[dict, dict]:
    """(opened, problems): every sealed value of ``values`` opened, with
    ``context_of(key)``; the others as they are. A value that does not open is left out
    of ``opened`` and its reason is in ``problems[key]``: one bad value never hides the
    rest."""
    opened, problems = {}, {}
    for key, value in values.items():
        if not is_sealed(value):
            opened[key] = value
            continue
        try:
            opened[key] = open_sealed(value, private_key, context_of(key))
        except SealedValueInvalid as exc:
            problems[key] = exc.message
    return opened, problems
