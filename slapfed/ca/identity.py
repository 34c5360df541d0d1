"""Who a certificate speaks for: the Identity value and its encoding in X509 (SAN URI + CN).

Depends on slapfed.core.errors, slapfed.ca.errors and cryptography's x509 objects only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..core.errors import InvalidInput
from .errors import NoIdentity

# Roles, as named constants (compare against these, never against literals).
PERSON = "person"          # a CLI user: requests instances and owns the trees they requested
ADMIN = "admin"            # an administrator: supplies releases, registers computers, issues certs
COMPUTER = "computer"      # a node agent, speaking for one computer
PARTITION = "partition"    # an instance, speaking for the partition it runs in
MASTER = "master"          # a peer master (delegations) or this master's own server identity
REPLICA = "replica"        # a replica master following this (primary) master's transactions
ROLES = (PERSON, ADMIN, COMPUTER, PARTITION, MASTER, REPLICA)

URI_SCHEME = "slapfed"
URI_PREFIX = URI_SCHEME + "://"

# Names never contain "/" or "%", so the URI needs no escaping and parses unambiguously.
# People and masters may use e-mail-like names; computers and partitions use the wire ids.
PRINCIPAL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}\Z")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
CN_MAX = 64   # X509 upper bound of a common name


@dataclass(frozen=True)
class Identity:
    """One party of the federation. ``name`` is the computer id for a computer and
    ``<computer>/<partition>`` for a partition; ``computer`` is set for both of those
    and ``partition`` for a partition only. Build them with the module's constructors."""

    role: str
    name: str
    computer: str | None = None
    partition: str | None = None

    def __post_init__(self):
        problems = identity_problems(self.role, self.name, self.computer, self.partition)
        if problems:
            raise InvalidInput(f"invalid identity {self.role}/{self.name}: "
                               f"{problems[0]['field']} {problems[0]['problem']}", problems)

    @property
    def principal(self) -> str:
        """The stable, role-qualified key of this party, e.g. ``person/alice``: what the
        master records as requester and compares ownership against."""
        return f"{self.role}/{self.name}"

    @property
    def uri(self) -> str:
        """The SAN URI, e.g. ``slapfed://partition/node-1/part3``."""
        return URI_PREFIX + self.principal

    @property
    def common_name(self) -> str:
        """A readable CN (identity is carried by the URI; the CN is for people and logs)."""
        return f"{self.name} ({self.role})"[:CN_MAX]

    def to_json(self) -> dict:
        body = {"role": self.role, "name": self.name, "uri": self.uri}
        if self.role == PARTITION:
            body.update(computer=self.computer, partition=self.partition)
        return body

    def __str__(self) -> str:
        return self.principal


def identity_problems(role, name, computer=None, partition=None) -> list[dict]:
    """Every problem of a would-be identity, as {field, problem} (empty when valid)."""
    problems = []
    if role not in ROLES:
        return [{"field": "role", "problem": f"{role!r} is not one of {', '.join(ROLES)}"}]
    if role == PARTITION:
        for field, value in (("computer", computer), ("partition", partition)):
            if not isinstance(value, str) or not ID_RE.match(value):
                problems.append({"field": field, "problem": f"{value!r} must match {ID_RE.pattern}"})
        if not problems and name != f"{computer}/{partition}":
            problems.append({"field": "name", "problem": "must be <computer>/<partition>"})
    elif role == COMPUTER:
        if not isinstance(name, str) or not ID_RE.match(name):
            problems.append({"field": "name", "problem": f"{name!r} must match {ID_RE.pattern}"})
        elif computer != name or partition is not None:
            problems.append({"field": "computer", "problem": "must equal the name"})
    else:
        if not isinstance(name, str) or not PRINCIPAL_NAME_RE.match(name):
            problems.append({"field": "name",
                             "problem": f"{name!r} must match {PRINCIPAL_NAME_RE.pattern}"})
        if computer is not None or partition is not None:
            problems.append({"field": "computer", "problem": f"is only for {COMPUTER}/{PARTITION}"})
    return problems


# -- constructors -------------------------------------------------------------------
def person(name: str) -> Identity:
    return Identity(PERSON, name)


def admin(name: str) -> Identity:
    return Identity(ADMIN, name)


def master(name: str) -> Identity:
    return Identity(MASTER, name)


def replica(name: str) -> Identity:
    return Identity(REPLICA, name)


def computer(computer_id: str) -> Identity:
    return Identity(COMPUTER, computer_id, computer=computer_id)


def partition(computer_id: str, partition_id: str) -> Identity:
    return Identity(PARTITION, f"{computer_id}/{partition_id}", computer=computer_id,
                    partition=partition_id)


def make(role: str, name: str | None = None, computer_id: str | None = None,
         partition_id: str | None = None) -> Identity:
    """An identity from loose parts (the CLI's options): a partition needs computer and
    partition ids, a computer takes ``name`` or ``computer_id``, the others ``name``.
    Raises InvalidInput listing every problem."""
    if role == PARTITION:
        if name and not (computer_id or partition_id) and name.count("/") == 1:
            computer_id, partition_id = name.split("/")
        if not computer_id or not partition_id:
            raise InvalidInput("a partition identity needs its computer id and partition id",
                               [{"field": f, "problem": "is required"}
                                for f, v in (("computer", computer_id), ("partition", partition_id))
                                if not v])
        return partition(computer_id, partition_id)
    if role == COMPUTER:
        cid = name or computer_id
        if name and computer_id and name != computer_id:
            raise InvalidInput(f"computer identity: name {name!r} and computer {computer_id!r} "
                               f"differ; give one of them",
                               [{"field": "computer", "problem": "must equal the name"}])
        return computer(cid or "")
    return Identity(role, name or "")


# -- URI and certificates --------------------------------------------------------------
def parse_uri(uri: str) -> Identity:
    """``slapfed://role/name[/partition]`` → Identity; InvalidInput when malformed."""
    if not isinstance(uri, str) or not uri.startswith(URI_PREFIX):
        raise InvalidInput(f"{uri!r} is not a slapfed identity URI ({URI_PREFIX}<role>/<name>)")
    parts = uri[len(URI_PREFIX):].split("/")
    role = parts[0]
    if role == PARTITION and len(parts) == 3:
        return partition(parts[1], parts[2])
    if role != PARTITION and len(parts) == 2:
        return make(role, parts[1])
    raise InvalidInput(f"{uri!r} does not have the shape {URI_PREFIX}<role>/<name> "
                       f"(a partition: {URI_PREFIX}partition/<computer>/<partition>)")


def identity_uris(cert: x509.Certificate) -> list[str]:
    """Every slapfed URI among the certificate's subject alternative names."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
            if u.lower().startswith(URI_SCHEME + ":")]


def identity_of(cert: x509.Certificate) -> Identity:
    """The one slapfed identity a certificate carries. Raises NoIdentity when it has none,
    several, or a malformed one (the certificate speaks for nobody)."""
    uris = identity_uris(cert)
    if len(uris) != 1:
        found = "none" if not uris else f"{len(uris)}: {', '.join(uris)}"
        raise NoIdentity(f"certificate {cert.serial_number:x} must carry exactly one "
                         f"{URI_PREFIX} identity URI (found {found})")
    try:
        return parse_uri(uris[0])
    except InvalidInput as exc:
        raise NoIdentity(f"certificate {cert.serial_number:x}: {exc.message}") from None


def subject_for(identity: Identity, organization: str | None = None) -> x509.Name:
    """The readable subject: CN ``<name> (<role>)``, OU the role, O the issuing CA's name."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, identity.common_name),
             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, identity.role)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:CN_MAX]))
    return x509.Name(attrs)
