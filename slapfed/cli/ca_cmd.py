"""The ``slapfed ca`` group: init, issue, renew, revoke, list and token over a master's CA files.

Depends on slapfed.ca and the CLI plumbing. Works on the data directory directly (run it
on the master's machine, as the master's user); private keys are never printed.
"""
from __future__ import annotations

from pathlib import Path

import click

from ..ca import identity as ids
from ..ca.authority import (DEFAULT_DAYS, DEFAULT_TOKEN_TTL, REVOCATION_REASONS,
                            CertificateAuthority)
from ..core.errors import InvalidInput
from .common import emit, error_boundary, json_option

CA_SUBDIR = "ca"

data_option = click.option(
    "--data", "data_dir", required=True, metavar="DIR", type=click.Path(file_okay=False),
    help="The master's data directory; the CA lives in DIR/ca.")


def ca_dir(data_dir: str) -> Path:
    return Path(data_dir) / CA_SUBDIR


@click.group()
def ca():
    """The master's certificate authority: identities for people, computers, partitions
    and peer masters.

    \b
    Files: DATA/ca/ca.key (0600, never leaves), ca.crt (give it to clients),
    issued/<serial>.pem, revoked.json, tokens.json (hashes only).
    Exit codes: 0 ok, 3 invalid input, 4 no CA / unknown serial, 5 exists already.
    """


@ca.command()
@data_option
@click.option("--name", default="slapfed-master", show_default=True,
              help="Name of the CA (the master's name).")
@click.option("--days", type=int, default=3650, show_default=True, help="Validity of the CA.")
@json_option
@error_boundary
def init(data_dir, name, days, as_json):
    """Create the CA in DATA/ca (refuses to overwrite one)."""
    authority = CertificateAuthority.init(ca_dir(data_dir), name, days=days)
    facts = authority.describe()
    emit(facts, as_json, f"CA {facts['name']!r} created; give clients "
                         f"{facts['certificate_file']} (sha256 {facts['fingerprint']})")


@ca.command()
@data_option
@click.option("--role", required=True, type=click.Choice(ids.ROLES), help="Who the certificate is for.")
@click.option("--name", help="Person, admin or master name; computer id for a computer.")
@click.option("--computer", "computer_id", help="Computer id (role partition or computer).")
@click.option("--partition", "partition_id", help="Partition id (role partition).")
@click.option("--days", type=int, default=DEFAULT_DAYS, show_default=True)
@click.option("--host", "hosts", multiple=True, metavar="HOST",
              help="DNS name or IP the holder serves TLS on (a master); repeatable.")
@click.option("--csr", "csr_file", type=click.Path(dir_okay=False, exists=True),
              help="Certify this CSR (the key stays where it was made). Prints the certificate.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Generate the key here instead (identity.key 0600, identity.crt, ca.crt).")
@json_option
@error_boundary
def issue(data_dir, role, name, computer_id, partition_id, days, hosts, csr_file, out_dir,
          as_json):
    """Issue a certificate for one identity, from a CSR (--csr) or a key made here (--out)."""
    if (csr_file is None) == (out_dir is None):
        raise InvalidInput("give exactly one of --csr FILE (certify a key made elsewhere) or "
                           "--out DIR (make the key here)",
                           [{"field": "csr/out", "problem": "exactly one is required"}])
    identity = ids.make(role, name, computer_id, partition_id)
    authority = CertificateAuthority(ca_dir(data_dir))
    if out_dir is not None:
        files = authority.issue_with_new_key(identity, out_dir, days=days, hosts=hosts)
        emit(files.to_json(), as_json,
             f"issued {files.record.serial} for {identity.principal} until "
             f"{files.record.not_after.isoformat()}\n"
             f"  key:         {files.key_path} (0600, keep it here)\n"
             f"  certificate: {files.cert_path}\n  CA:          {files.ca_path}")
        return
    record = authority.issue(identity, Path(csr_file).read_bytes(), days=days, hosts=hosts)
    emit(record.to_json(with_certificate=True), as_json, record.certificate_pem.rstrip())


@ca.command()
@data_option
@click.argument("serial")
@click.option("--days", type=int, default=DEFAULT_DAYS, show_default=True)
@json_option
@error_boundary
def renew(data_dir, serial, days, as_json):
    """Issue a new certificate (same identity and key) for certificate SERIAL."""
    record = CertificateAuthority(ca_dir(data_dir)).renew(serial, days=days)
    emit(record.to_json(with_certificate=True), as_json, record.certificate_pem.rstrip())


@ca.command()
@data_option
@click.argument("serial")
@click.option("--reason", default="unspecified", show_default=True,
              type=click.Choice(sorted(REVOCATION_REASONS)))
@json_option
@error_boundary
def revoke(data_dir, serial, reason, as_json):
    """Revoke certificate SERIAL; a running master refuses it from its next request."""
    record = CertificateAuthority(ca_dir(data_dir)).revoke(serial, reason)
    emit(record.to_json(), as_json,
         f"revoked {record.serial} ({record.identity.principal}): {record.revoked['reason']}")


@ca.command(name="list")
@data_option
@json_option
@error_boundary
def list_(data_dir, as_json):
    """Every certificate issued by this CA (serial, identity, validity, revoked)."""
    records = CertificateAuthority(ca_dir(data_dir)).list()
    lines = [f"{'SERIAL':<40}  {'IDENTITY':<32}  {'NOT AFTER':<25}  REVOKED"]
    lines += [f"{r.serial:<40}  {r.identity.principal:<32}  {r.not_after.isoformat():<25}  "
              f"{r.revoked['reason'] if r.revoked else '-'}" for r in records]
    emit({"certificates": [r.to_json() for r in records]}, as_json, "\n".join(lines))


@ca.command()
@data_option
@click.option("--computer", "computer_id", required=True, help="The computer id it registers.")
@click.option("--ttl", type=int, default=DEFAULT_TOKEN_TTL, show_default=True,
              help="Seconds before the token expires.")
@json_option
@error_boundary
def token(data_dir, computer_id, ttl, as_json):
    """A one-time registration token for computer ID (shown once, stored hashed). It
    revokes any older unused token for the same computer."""
    secret = CertificateAuthority(ca_dir(data_dir)).token_for(computer_id, ttl)
    emit({"computer": computer_id, "ttl": ttl, "token": secret}, as_json, secret)
