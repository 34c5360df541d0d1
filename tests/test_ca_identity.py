"""Identities: round trips through the SAN URI and real certificates, refusals, and the CA layer's imports."""
import ast
from pathlib import Path

import pytest
from cryptography import x509

from slapfed.ca import errors as ca_errors
from slapfed.ca import identity as ids
from slapfed.ca.authority import CertificateAuthority
from slapfed.ca.keys import csr_for, generate_key
from slapfed.core.errors import InvalidInput


@pytest.fixture
def authority(tmp_path):
    return CertificateAuthority.init(tmp_path / "ca", "master-a")


ROUND_TRIPS = [
    (ids.person("alice"), "slapfed://person/alice", "alice (person)"),
    (ids.person("alice.smith+ops@example.org"), "slapfed://person/alice.smith+ops@example.org",
     "alice.smith+ops@example.org (person)"),
    (ids.admin("root"), "slapfed://admin/root", "root (admin)"),
    (ids.computer("node-1"), "slapfed://computer/node-1", "node-1 (computer)"),
    (ids.partition("node-1", "part3"), "slapfed://partition/node-1/part3", "node-1/part3 (partition)"),
    (ids.master("provider-b"), "slapfed://master/provider-b", "provider-b (master)"),
]


@pytest.mark.parametrize("identity,uri,cn", ROUND_TRIPS, ids=lambda v: getattr(v, "principal", None))
def test_identity_round_trips_through_its_uri(identity, uri, cn):
    assert identity.uri == uri
    assert identity.common_name == cn
    assert ids.parse_uri(uri) == identity


@pytest.mark.parametrize("identity,uri,cn", ROUND_TRIPS, ids=lambda v: getattr(v, "principal", None))
def test_identity_round_trips_through_a_certificate(authority, identity, uri, cn):
    record = authority.issue(identity, csr_for(generate_key()))
    cert = x509.load_pem_x509_certificate(record.certificate_pem.encode())
    assert ids.identity_of(cert) == identity
    assert authority.verify(record.certificate_pem) == identity
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == cn


def test_partition_identity_carries_its_computer_and_partition():
    part = ids.partition("node-1", "part3")
    assert (part.role, part.name, part.computer, part.partition) == (
        "partition", "node-1/part3", "node-1", "part3")
    assert part.to_json() == {"role": "partition", "name": "node-1/part3",
                              "uri": "slapfed://partition/node-1/part3",
                              "computer": "node-1", "partition": "part3"}


def test_long_names_keep_a_readable_cn_within_the_x509_limit():
    long = ids.partition("c" * 64, "p" * 64)
    assert len(long.common_name) == ids.CN_MAX
    assert ids.parse_uri(long.uri) == long


@pytest.mark.parametrize("args", [
    ("person", "al/ice"), ("person", ""), ("person", "-alice"), ("person", "a" * 129),
    ("wizard", "merlin"), ("computer", "node 1"), ("computer", "a" * 65),
], ids=["slash", "empty", "leading-dash", "too-long", "unknown-role", "space-in-computer",
        "computer-too-long"])
def test_invalid_identities_are_refused(args):
    with pytest.raises(InvalidInput):
        ids.make(*args)


@pytest.mark.parametrize("kwargs,fields", [
    ({"role": "partition", "name": "x"}, ["computer", "partition"]),
    ({"role": "partition", "computer_id": "n1"}, ["partition"]),
    ({"role": "computer", "name": "n1", "computer_id": "n2"}, ["computer"]),
], ids=["partition-without-ids", "partition-without-partition", "computer-name-mismatch"])
def test_make_names_every_missing_part(kwargs, fields):
    with pytest.raises(InvalidInput) as exc:
        ids.make(**kwargs)
    assert [d["field"] for d in exc.value.details] == fields


@pytest.mark.parametrize("kwargs,expected", [
    ({"role": "partition", "name": "n1/p1"}, ids.partition("n1", "p1")),
    ({"role": "partition", "computer_id": "n1", "partition_id": "p1"}, ids.partition("n1", "p1")),
    ({"role": "computer", "computer_id": "n1"}, ids.computer("n1")),
    ({"role": "computer", "name": "n1"}, ids.computer("n1")),
    ({"role": "master", "name": "b"}, ids.master("b")),
], ids=["partition-by-name", "partition-by-ids", "computer-by-id", "computer-by-name", "master"])
def test_make_from_cli_parts(kwargs, expected):
    assert ids.make(**kwargs) == expected


@pytest.mark.parametrize("uri", [
    "https://person/alice", "slapfed://person", "slapfed://person/alice/extra",
    "slapfed://partition/node-1", "slapfed://computer/n1/p1", "slapfed://nobody/x",
], ids=["other-scheme", "no-name", "extra-segment", "partition-without-partition",
        "computer-with-partition", "unknown-role"])
def test_malformed_uris_are_refused(uri):
    with pytest.raises(InvalidInput):
        ids.parse_uri(uri)


def _signed(authority, san_names):
    """A certificate signed by the CA's own key with exactly these SANs (bypassing issue)."""
    import datetime as dt
    from cryptography.hazmat.primitives import hashes
    key = generate_key()
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([]))
               .issuer_name(authority.certificate.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1)))
    if san_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(san_names), critical=False)
    return builder.sign(authority._signing_key(), hashes.SHA256())


@pytest.mark.parametrize("san", [
    [],
    [x509.DNSName("alice.example.org")],
    [x509.UniformResourceIdentifier("slapfed://person/alice"),
     x509.UniformResourceIdentifier("slapfed://admin/alice")],
    [x509.UniformResourceIdentifier("slapfed://person/al%2Fice")],
], ids=["no-san", "dns-only", "two-identities", "malformed-identity"])
def test_certificates_without_exactly_one_identity_speak_for_nobody(authority, san):
    cert = _signed(authority, san)
    with pytest.raises(ca_errors.NoIdentity):
        ids.identity_of(cert)
    with pytest.raises(ca_errors.NoIdentity):
        authority.verify(cert)


def test_the_ca_certificate_itself_is_no_identity(authority):
    with pytest.raises(ca_errors.NoIdentity):
        authority.verify(authority.certificate_pem)


CA_FORBIDDEN = ("slapfed.model", "slapfed.store", "slapfed.services", "slapfed.master",
                "slapfed.node", "slapfed.cli", "slapfed.client", "slapfed.placement",
                "slapfed.topology", "flask", "ZODB", "requests")


@pytest.mark.parametrize("path", sorted(Path(ids.__file__).parent.glob("*.py")), ids=lambda p: p.name)
def test_the_ca_layer_depends_on_core_and_cryptography_only(path):
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            package = {0: "", 1: "slapfed.ca.", 2: "slapfed."}[node.level]
            names = [package + (node.module or "")]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        bad += [n for n in names for f in CA_FORBIDDEN if n == f or n.startswith(f + ".")]
    assert bad == []
    assert path.read_text().startswith('"""')


@pytest.mark.parametrize("role,name,extra", [
    ("person", "alice\n", {}),
    ("admin", "root\n", {}),
    ("computer", "node-1\n", {"computer": "node-1\n"}),
    ("partition", "node-1/p0\n", {"computer": "node-1", "partition": "p0\n"}),
], ids=["person", "admin", "computer", "partition"])
def test_a_name_ending_in_a_newline_is_no_identity(role, name, extra):
    from slapfed.ca.identity import identity_problems
    assert identity_problems(role, name, **extra)
