"""Typed errors of the certificate authority, each with a stable code for clients and the CLI.

Depends on slapfed.core.errors only. Every failure to prove who you are is an
Unauthenticated (401); refusals of what you asked are Forbidden (403) and live in core.
"""
from __future__ import annotations

from ..core import errors as core


class BadCertificate(core.Unauthenticated):
    """The bytes presented are not a parsable X509 certificate."""

    code = "bad_certificate"


class ForeignCertificate(core.Unauthenticated):
    """The certificate was issued by another certificate authority than this master's."""

    code = "foreign_certificate"


class InvalidCertificateSignature(core.Unauthenticated):
    """The certificate names this CA as issuer but its signature does not verify (tampered)."""

    code = "invalid_certificate_signature"


class CertificateExpired(core.Unauthenticated):
    code = "certificate_expired"


class CertificateNotYetValid(core.Unauthenticated):
    code = "certificate_not_yet_valid"


class CertificateRevoked(core.Unauthenticated):
    code = "certificate_revoked"


class NoIdentity(core.Unauthenticated):
    """The certificate carries no slapfed identity, or more than one."""

    code = "no_identity"


class InvalidToken(core.Unauthenticated):
    """A registration token that is unknown, already used or malformed."""

    code = "invalid_token"


class TokenExpired(core.Unauthenticated):
    code = "token_expired"


class CANotInitialized(core.NotFound):
    """The data directory holds no certificate authority yet (run ``slapfed ca init``)."""

    code = "ca_not_initialized"


class CAExists(core.Conflict):
    """``init`` refuses to overwrite an existing certificate authority."""

    code = "ca_exists"


class SealedValueInvalid(core.InvalidInput):
    """A sealed value that does not open: not a sealed value, sealed to another key, for
    another place (its context), or tampered with. Nothing it was meant for is used."""

    code = "sealed_value_invalid"


CA_ERRORS: tuple[type[core.SlapfedError], ...] = (
    BadCertificate, ForeignCertificate, InvalidCertificateSignature, CertificateExpired,
    CertificateNotYetValid, CertificateRevoked, NoIdentity, InvalidToken, TokenExpired,
    CANotInitialized, CAExists, SealedValueInvalid,
)
