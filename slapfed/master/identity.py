"""Routes of identities: whoami, token redemption by nodes, partition certificates, and the
administration of certificates (issue, list, revoke) and registration tokens.

Depends on Flask, ca (authority, identity), core.wire and master.auth. Every answer carries
public material only (certificates, serials, identities): a private key never reaches this
module — callers send certificate signing requests.
"""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..ca import identity as ids
from ..ca.authority import DEFAULT_DAYS, CertificateRecord, load_certificate
from ..core.wire import (CertificateIssue, CertificateSigning, Revocation, TokenCreation,
                         TokenRedemption)
from .. import services
from ..ca.seal import recipient_from_pem
from .request import json_body, runtime
from .auth import PEER_CERT_ENVIRON, authority, current_identity, insecure

blueprint = Blueprint("identity", __name__)


def _issued(record) -> dict:
    """A new certificate with the CA certificate that verifies it (public material)."""
    return {**record.to_json(with_certificate=True),
            "ca_certificate": authority().certificate_pem}


@blueprint.get("/whoami")
def whoami():
    """Who the caller is, and which of its certificates proved it (None in development
    mode, where no certificate is read)."""
    identity = current_identity()
    return jsonify({"identity": identity.to_json(), "principal": identity.principal,
                    "development_mode": insecure(), "certificate": _presented()})


def _presented() -> dict | None:
    """Serial and validity window of the certificate the caller presented (already
    verified by the guard): public facts, for the caller to see which one it used."""
    der = None if insecure() else request.environ.get(PEER_CERT_ENVIRON)
    if not der:
        return None
    record = CertificateRecord.from_certificate(load_certificate(bytes(der)))
    body = record.to_json()
    return {k: body[k] for k in ("serial", "not_before", "not_after", "fingerprint")}


@blueprint.post("/node-certificates")
def redeem_token():
    """Public: the token is the credential. A node sends its one-time token and the CSR
    of a key it made itself; it gets its computer certificate and the CA certificate."""
    body = TokenRedemption.from_json(json_body())
    return jsonify(_issued(authority().redeem(body.token, body.csr))), 201


@blueprint.post("/computers/<cid>/partitions/<pid>/certificate")
def certify_partition(cid, pid):
    """A node has the key its partition generated certified as that partition."""
    body = CertificateSigning.from_json(json_body())
    record = authority().issue(ids.partition(cid, pid), body.csr)
    recipient = recipient_from_pem(record.certificate_pem)
    if recipient is not None:      # the key secret parameters are sealed to
        services.record_partition_certificate(runtime(), cid, pid, recipient)
    return jsonify(_issued(record)), 201


@blueprint.get("/certificates")
def list_certificates():
    return jsonify({"certificates": [r.to_json() for r in authority().list()]})


@blueprint.post("/certificates")
def issue_certificate():
    body = CertificateIssue.from_json(json_body())
    identity = ids.make(body.role, body.name)
    record = authority().issue(identity, body.csr, days=body.days or DEFAULT_DAYS,
                               hosts=body.hosts)
    return jsonify(_issued(record)), 201


@blueprint.post("/certificates/<serial>/revocation")
def revoke_certificate(serial):
    body = Revocation.from_json(json_body())
    return jsonify(authority().revoke(serial, body.reason).to_json())


@blueprint.post("/tokens")
def create_token():
    """A one-time registration token for a computer, or for a peer master (shown once;
    only its hash is kept)."""
    body = TokenCreation.from_json(json_body())
    kwargs = {"ttl": body.ttl} if body.ttl else {}
    if body.master is not None:
        identity = ids.master(body.master)
        return jsonify({"master": body.master, "principal": identity.principal,
                        "token": authority().enrolment_token(identity, **kwargs),
                        "ca_certificate": authority().certificate_pem}), 201
    return jsonify({"computer": body.computer,
                    "token": authority().token_for(body.computer, **kwargs)}), 201
