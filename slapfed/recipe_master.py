"""The slapfed:master recipe: prepares a master inside a partition at buildout time.

Depends on zc.buildout, slapfed.recipe (file helpers) and slapfed.ca (the authority).
It creates the master's CA once (idempotent), writes its topology file, the ZEO service,
and publishes url, CA certificate and a short-lived one-time enrolment token for the
requester (until the requester has enrolled). The credentials it publishes (the token,
the replicas' invitations) go to the partition's secret connection file, which the node
seals to the requester's certificate: a master only relays their sealed text. The
invitation each replica gets as a parameter is sealed to that replica's partition.
"""
from __future__ import annotations

import json
import os
import re

import zc.buildout

from .core.cfgvalue import decode
from .core.provenance import DEFAULT_MASTER_NAME
from .recipe import WRAPPER_MODE, _required, _write, render_wrapper

ADMIN_TOKEN_TTL = 15 * 60          # default life of the requester's token (admin-token-ttl)
MAX_ADMIN_TOKEN_TTL = 24 * 3600
PAIRING_TOKEN_TTL = 3600           # the parent's pairing token (it redeems it at once)
STORAGES = ("zeo", "file")
MAX_REPLICAS = 4                   # replicas=N: 0..4 replicas of a child master
REPLICA_MODES = ("sync", "async")
REPLICA_TYPE = "replica"           # the software type of a replica (instance-replica.cfg)
REPLICA_TOKEN_TTL = 24 * 3600      # a replica's one-time token (it enrols once, at start)
REPLICA_PORT_OFFSET = 1            # a replica serves on port-base + 1, as the primary
OWNER = "owner"                    # the admin identity the requester enrols as
LOCALITY = ("continent", "country", "lan", "host")
SEALED_SUFFIX = ".sealed.json"     # DATA/replicas/NAME.sealed.json: its sealed invitation
REPLICA_SEAL_WAIT = 30.0           # seconds a replica's partition may take to be certified


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


def topology_text(name: str, locality: dict[str, str]) -> str:
    """A topology file declaring this master at its site (empty when no site is given).

    Sites nest (continent ⊃ country ⊃ lan ⊃ host): the file needs every level. Every
    name is a quoted TOML string or key, so no value can add a key or a table."""
    if not all(locality.get(k) for k in LOCALITY):
        return ""
    site = ".".join(_toml(locality[k]) for k in ("continent", "country", "lan"))
    return (f'[sites.{site}]\nhosts = [{_toml(locality["host"])}]\n\n'
            f'[[masters]]\nname = {_toml(name)}\nsite = {_toml(locality["host"])}\n')


def _checked(name: str, option: str, value: str, pattern, what: str) -> str:
    """``value`` when it matches ``pattern`` (empty passes), else a UserError."""
    if value and not pattern.match(value):
        raise zc.buildout.UserError(f"[{name}] {option} must be {what} "
                                    f"({pattern.pattern}), got {value!r}")
    return value


def _products(name: str, options) -> list[str]:
    """The ``products`` option (NAME=URL pairs, whitespace separated, as core.products
    reads ``master serve --product``), each checked there; a UserError names every bad
    one. A URL that buildout would read as a substitution (``$``) is refused too."""
    raw = decode(options.get("products", "").strip())
    values = raw.split()
    if not values:
        return []
    from .core.errors import InvalidInput
    from .core.products import Products
    problems = [f"{v[:80]!r} holds a '$'" for v in values if "$" in v]
    try:
        Products.parse(values)
    except InvalidInput as exc:
        problems.extend(d["problem"] for d in exc.details)
    if problems:
        raise zc.buildout.UserError(f"[{name}] products must be NAME=URL pairs: "
                                    + "; ".join(problems[:5]))
    return values


class MasterRecipe:
    """Options: ``data`` (the master's data directory), ``name``, ``address``,
    ``port-base``, ``storage`` (zeo or file), ``runzeo`` (the runzeo script), ``services``
    (where the ZEO wrapper goes), ``connection-file``; optional ``host``/``lan``/
    ``country``/``continent``, ``provenance`` (the masters above, space separated),
    ``max-depth``, ``register-with-parent`` (registers this master with the master that
    placed the partition, as the partition), ``admin-token-ttl`` (seconds the published
    admin-token lives, default 900), ``replicas``, ``replica-mode``,
    ``secret-connection-file`` (where the secrets published go, sealed by the node; default
    ``${partition:secret-connection-file}``), ``products`` (SlapOS' product aliases,
    NAME=URL pairs separated by whitespace: ``master serve --product``). Computes, for
    other parts: ``url``, ``zeo-port``, ``master-port``, ``storage-uri``, ``extra-args``
    (one serve argument per line)."""

    def __init__(self, buildout, name, options):
        self.buildout, self.name, self.options = buildout, name, options
        from .core.provenance import NAME_RE
        from .core.wire import ID_RE
        master = _checked(name, "name", _required(options, name, "name"), NAME_RE,
                          "a master name")
        for key in LOCALITY:
            _checked(name, key, options.get(key, "").strip(), ID_RE, "a site name")
        replicas = options.get("replicas", "").strip() or "0"
        # a master with replicas serves its own FileStorage (its replicas follow it)
        storage = options.get("storage", "").strip() or (
            "file" if replicas.isdigit() and int(replicas) else "zeo")
        if storage not in STORAGES:
            raise zc.buildout.UserError(f"[{name}] storage must be one of "
                                        f"{', '.join(STORAGES)}, got {storage!r}")
        address = _required(options, name, "address")
        try:
            base = int(_required(options, name, "port-base"))
        except ValueError:
            raise zc.buildout.UserError(f"[{name}] port-base must be an integer") from None
        data = _required(options, name, "data")
        options["master-port"] = str(base + 1)
        options["zeo-port"] = str(base)
        host = f"[{address}]" if ":" in address else address
        options["url"] = f"https://{host}:{base + 1}"
        options["storage-uri"] = f"zeo://{host}:{base}" if storage == "zeo" else "file"
        extra = [f"--ancestor\n{a}" for a in options.get("provenance", "").split()]
        depth = options.get("max-depth", "").strip()
        if depth and not re.fullmatch("[0-9]{1,4}", depth):
            raise zc.buildout.UserError(f"[{name}] max-depth must be a number, got {depth!r}")
        for ancestor in options.get("provenance", "").split():
            _checked(name, "provenance", ancestor, NAME_RE, "master names")
        if depth:
            extra.append(f"--max-depth\n{depth}")
        ttl = options.get("admin-token-ttl", "").strip() or str(ADMIN_TOKEN_TTL)
        if not ttl.isdigit() or not 60 <= int(ttl) <= MAX_ADMIN_TOKEN_TTL:
            raise zc.buildout.UserError(f"[{name}] admin-token-ttl must be 60.."
                                        f"{MAX_ADMIN_TOKEN_TTL} seconds, got {ttl!r}")
        options["admin-token-ttl"] = ttl
        if not replicas.isdigit() or int(replicas) > MAX_REPLICAS:
            raise zc.buildout.UserError(f"[{name}] replicas must be 0..{MAX_REPLICAS}, got "
                                        f"{replicas!r}")
        options["replicas"] = replicas
        mode = options.get("replica-mode", "").strip() or "sync"
        if mode not in REPLICA_MODES:
            raise zc.buildout.UserError(f"[{name}] replica-mode must be one of "
                                        f"{', '.join(REPLICA_MODES)}, got {mode!r}")
        options["replica-mode"] = mode
        if int(replicas) and storage != "file":
            # a replica follows a FileStorage served by the master itself
            raise zc.buildout.UserError(f"[{name}] replicas need storage = file (a "
                                        "replica follows the primary's own FileStorage)")
        if int(replicas):
            # -- rebuilt from a replica: when the parent master gave this instance the
            # partition of its replica (its computer was lost), the data directory holds
            # that replica; it becomes the primary, at a new epoch, as the master starts
            extra.append("--promote")
        extra.extend(f"--product\n{alias}" for alias in _products(name, options))
        locality = {k: options.get(k, "").strip() for k in LOCALITY}
        if topology_text(master, locality):
            extra.append(f"--topology\n{os.path.join(data, 'topology.toml')}")
        options["extra-args"] = "\n".join(extra)

    def install(self):
        from .ca import identity as ids
        from .ca.authority import CertificateAuthority
        from .ca.errors import CANotInitialized
        o, created = self.options, []
        data = o["data"]
        os.makedirs(data, mode=0o700, exist_ok=True)
        ca_dir = os.path.join(data, "ca")
        try:
            ca = CertificateAuthority(ca_dir)
        except CANotInitialized:
            ca = CertificateAuthority.init(ca_dir, f"{o['name']} CA"[:ids.CN_MAX])
        topology = topology_text(o["name"], {k: o.get(k, "").strip() for k in LOCALITY})
        if topology:
            path = os.path.join(data, "topology.toml")
            _write(path, topology, 0o644)
            created.append(path)
        if o["storage-uri"].startswith("zeo://"):
            zeo_dir = os.path.join(data, "zeo")
            os.makedirs(zeo_dir, exist_ok=True)
            wrapper = os.path.join(_required(o, self.name, "services"), "zeo")
            argv = [_required(o, self.name, "runzeo"), "-a",
                    f"{o['address']}:{o['zeo-port']}", "-f", os.path.join(zeo_dir, "master.fs")]
            _write(wrapper, render_wrapper(argv, {}), WRAPPER_MODE)
            created.append(wrapper)
        # -- sealed publication: credentials go to the secret connection file ------------
        secret_path = self.secret_connection_file()
        connection = {"name": o["name"], "url": o["url"], "ca-certificate": ca.certificate_pem,
                      "admin": ids.admin(OWNER).principal, "storage": o["storage-uri"]}
        secret = {"admin-token": self.admin_token(ca)}
        if _truthy(o.get("register-with-parent", "")):
            self.register_with_parent(ca)
        public, sealed = self.request_replicas(ca)
        connection.update(public)
        secret.update(sealed)
        path = _required(o, self.name, "connection-file")
        _write(secret_path, json.dumps(secret, indent=1, sort_keys=True) + "\n", 0o600)
        _write(path, json.dumps(connection, indent=1, sort_keys=True) + "\n", 0o600)
        created += [path, secret_path]
        return created

    def secret_connection_file(self) -> str:
        """Where the published secrets go: the node seals that file's values to the
        requester's certificate. A node that cannot seal gives none: the part fails
        rather than publish a credential in clear."""
        path = self.options.get("secret-connection-file", "").strip()
        if not path:
            try:
                path = self.buildout["partition"]["secret-connection-file"].strip()
            except KeyError:
                path = ""
        if not path:
            raise zc.buildout.UserError(
                f"[{self.name}] needs a secret-connection-file (or a [partition] "
                "secret-connection-file): the admin-token and the replicas' invitations "
                "are only published sealed, by a node that seals")
        return path

    def admin_token(self, ca: "CertificateAuthority") -> str:
        """The one-time token published for the requester: it trades it with a CSR of a
        key it makes itself (POST /api/v1/node-certificates); only its hash stays here.

        A fresh one at every run, living ``admin-token-ttl`` seconds, and revoking the one
        published before (the CA keeps one current token per identity): a token read
        later from the connection parameters is dead. Once the owner holds a valid
        certificate, nothing is published any more (and no token is left alive)."""
        from .ca import identity as ids
        owner = ids.admin(OWNER)
        if ca.holds_valid_certificate(owner):
            ca.withdraw_tokens(owner)
            return ""
        return ca.enrolment_token(owner, int(self.options["admin-token-ttl"]))

    def register_with_parent(self, ca: "CertificateAuthority") -> None:
        """Tell the master that placed this instance that it runs this master, as the
        partition itself (its own certificate; the node enrolled with a token gives it),
        with a one-time token of this master's CA for the parent: the parent redeems it
        and so becomes able to delegate here (the child is its peer)."""
        from .ca import identity as ids
        from .client import MasterClient
        from .core.errors import SlapfedError
        part = self.buildout["partition"]
        facts = {k: part.get(k, "").strip() for k in ("cert", "key", "ca", "master-url",
                                                      "instance-id")}
        missing = sorted(k for k, v in facts.items() if not v)
        if missing:
            raise zc.buildout.UserError(
                f"[{self.name}] register-with-parent needs the partition's own identity "
                f"([partition] {', '.join(missing)}): enrol the node with a token")
        client = MasterClient(facts["master-url"], ca=facts["ca"], cert=facts["cert"],
                              key=facts["key"], timeout=15)
        try:
            parent = client.health().get("name") or DEFAULT_MASTER_NAME
            token = ca.enrolment_token(ids.master(parent), PAIRING_TOKEN_TTL)
            client.register_child_master(facts["instance-id"], self.options["name"],
                                         self.options["url"], ca.certificate_pem, token)
        except SlapfedError as exc:
            raise zc.buildout.UserError(
                f"[{self.name}] could not register master {self.options['name']} with its "
                f"parent {facts['master-url']}: {exc.message}") from None

    # -- replicas=N ----------------------------------------------------------------------
    def replica_invitation(self, ca, name: str) -> str:
        """The invitation of replica ``name`` (what `slapfed master replica invite`
        writes, as one line of JSON), kept in DATA/replicas/NAME.json (0600) and handed
        out again unchanged, so that the replica's parameters stay the same from one run
        to the next; minted anew only while the replica has not enrolled and the token
        it holds has run out."""
        import time
        from .ca import identity as ids
        who = ids.replica(name)
        path = os.path.join(self.options["data"], "replicas", f"{name}.json")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
            fresh = time.time() - os.path.getmtime(path) < REPLICA_TOKEN_TTL - 600
            if text and (fresh or ca.holds_valid_certificate(who)):
                return text
        except FileNotFoundError:
            pass
        text = json.dumps({"primary": self.options["name"], "url": self.options["url"],
                           "for": name, "principal": who.principal,
                           "token": ca.enrolment_token(who, REPLICA_TOKEN_TTL),
                           "ca_certificate": ca.certificate_pem, "epoch": None},
                          sort_keys=True)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        _write(path, text + "\n", 0o600)
        return text

    def request_replicas(self, ca) -> tuple[dict, dict]:
        """replicas=N: request N instances of this release's ``replica`` software type as
        children of this instance, at the master that placed it (as the partition), each
        on another host than the primary and the replicas before it
        (different_host: the same computer never counts as another host); each gets its
        invitation as a secret parameter, sealed to the replica's partition
        (``sealed_invitation``), and the same invitation is published, sealed to the
        requester (``replica-K-invitation``). Replicas beyond N that were requested
        before are destroyed. Returns (public, secret) connection parameters."""
        count = int(self.options.get("replicas", "0") or 0)
        data = self.options["data"]
        known = sorted(n[:-5] for n in os.listdir(os.path.join(data, "replicas"))
                       if n.endswith(".json") and not n.endswith(SEALED_SUFFIX)
                       ) if os.path.isdir(os.path.join(data, "replicas")) else []
        if not count and not known:
            return {}, {}
        part = self.buildout["partition"]
        facts = {k: part.get(k, "").strip() for k in ("cert", "key", "ca", "master-url",
                                                      "instance-id", "reference",
                                                      "software-url")}
        missing = sorted(k for k, v in facts.items() if not v)
        if missing:
            raise zc.buildout.UserError(
                f"[{self.name}] replicas need the partition's own identity and facts "
                f"([partition] {', '.join(missing)}): enrol the node with a token")
        from .client import MasterClient
        from .core.errors import SlapfedError
        client = MasterClient(facts["master-url"], ca=facts["ca"], cert=facts["cert"],
                              key=facts["key"], timeout=15)
        published, secret = {"replicas": str(count)}, {}
        before = [facts["reference"]]
        try:
            for k in range(1, MAX_REPLICAS + 1):
                name = f"{self.options['name']}-replica-{k}"
                reference = f"{facts['reference']}-replica-{k}"
                if k > count:
                    if name in known:
                        client.request(reference, facts["software-url"], REPLICA_TYPE,
                                       state="destroyed", parent=facts["instance-id"])
                    continue
                self.forget_moved_replica(client, ca, name)
                invitation = self.replica_invitation(ca, name)
                sla = {"different_host": list(before)}

                def send(extra, reference=reference, name=name, sla=sla):
                    return client.request(reference, facts["software-url"], REPLICA_TYPE,
                                          parameters={"name": name,
                                                      "mode": self.options["replica-mode"],
                                                      **extra},
                                          sla=sla, parent=facts["instance-id"])
                self.sealed_invitation(client, name, invitation, send)
                secret[f"replica-{k}-invitation"] = invitation
                published[f"replica-{k}"] = reference
                before.append(reference)
        except SlapfedError as exc:
            raise zc.buildout.UserError(
                f"[{self.name}] could not request the replicas of master "
                f"{self.options['name']} at {facts['master-url']}: {exc.message}") from None
        return published, secret

    # -- a replica whose computer was lost: a new identity where it runs now -----------
    def forget_moved_replica(self, client, ca, name: str) -> bool:
        """When replica ``name`` no longer runs in the partition its invitation was
        sealed to (its computer was declared lost and its parent master placed it
        elsewhere: ``slapfed computer lost``), the identity it held there is ended: every
        certificate of ``replica/NAME`` is revoked at this master's CA (a lost machine
        that comes back can neither read the transaction stream nor register again) and
        its unused tokens are withdrawn; its invitation and the sealed text are
        forgotten, so a new invitation, with a new one-time token, is minted and sealed
        to the new partition. Returns whether it moved."""
        from .ca import identity as ids
        from .core.errors import NotFound
        folder = os.path.join(self.options["data"], "replicas")
        sealed_path = os.path.join(folder, f"{name}{SEALED_SUFFIX}")
        try:
            with open(sealed_path, encoding="utf-8") as f:
                kept = json.load(f)
        except (OSError, ValueError):
            return False
        if not isinstance(kept, dict) or not isinstance(kept.get("instance"), str) or \
                not isinstance(kept.get("partition"), list):
            return False                    # sealed before placements were kept
        try:
            inst = client.show(kept["instance"])
        except NotFound:
            return False                    # requested again anew: nothing held
        where = inst.get("placement") or {}
        now = [where.get("computer"), where.get("partition")]
        if now == kept["partition"]:
            return False
        who = ids.replica(name)
        revoked = [r.serial for r in ca.list() if r.identity == who and r.revoked is None]
        for serial in revoked:
            ca.revoke(serial, "superseded")
        ca.withdraw_tokens(who)
        for path in (sealed_path, os.path.join(folder, f"{name}.json")):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        import logging
        logging.getLogger(self.name).warning(
            "[%s] replica %s moved from %s to %s: %d certificate(s) of %s revoked; it "
            "gets a new invitation, sealed to its new partition", self.name, name,
            "/".join(map(str, kept["partition"])),
            "/".join(map(str, now)) if now[0] else "nowhere yet", len(revoked),
            who.principal)
        return True

    # -- sealed invitations: each replica's invitation sealed to its partition ----------
    def sealed_invitation(self, client, name: str, invitation: str, send) -> str | None:
        """Request replica ``name`` (``send``: parameters -> instance) with its
        invitation sealed to the certificate of the partition it runs in, as
        ``request --secret`` does: placed first with the invitation pending (its node
        has the partition certified and builds nothing), then sealed to that
        certificate. The sealed text is kept in DATA/replicas/NAME.sealed.json (0600)
        with the instance, the recipient and a digest of the invitation, and sent again
        unchanged while all three are the same: a run of this buildout then changes
        nothing at the parent (no new revision, the replica is not rebuilt). The master
        holding the instance only ever sees the sealed text. A partition whose node does
        not have it certified within REPLICA_SEAL_WAIT (that node is down) is left
        pending, and None returned: this master starts all the same, and a later run
        seals the invitation."""
        import hashlib
        from .core.errors import NotFound
        from .sealed_values import seal_to_partition
        path = os.path.join(self.options["data"], "replicas", f"{name}{SEALED_SUFFIX}")
        digest = hashlib.sha256(invitation.encode("utf-8")).hexdigest()
        try:
            with open(path, encoding="utf-8") as f:
                kept = json.load(f)
        except (OSError, ValueError):
            kept = None
        inst = None
        if isinstance(kept, dict) and isinstance(kept.get("instance"), str):
            try:
                inst = client.show(kept["instance"])
            except NotFound:
                inst = None
            recipient = ((inst or {}).get("placement") or {}).get("recipient") or {}
            if inst is not None and kept.get("digest") == digest and \
                    kept.get("fingerprint") == recipient.get("fingerprint") and \
                    isinstance(kept.get("sealed"), str):
                send({"invitation": kept["sealed"]})
                if "partition" not in kept:     # kept before placements were: add it
                    place = inst.get("placement") or {}
                    _write(path, json.dumps({**kept, "partition": [
                        place.get("computer"), place.get("partition")]},
                        sort_keys=True) + "\n", 0o600)
                return kept["sealed"]
        from .core.errors import InvalidInput
        try:
            sealed, inst = seal_to_partition(client, inst, send, {"invitation": invitation},
                                             REPLICA_SEAL_WAIT, f"replica {name}")
        except InvalidInput as exc:
            if [d.get("problem") for d in exc.details] != ["no partition certificate"]:
                raise
            # its node does not answer (yet): this master still starts; the replica
            # waits, its invitation pending, until a later run of this buildout seals it
            import logging
            logging.getLogger(self.name).warning(
                "[%s] replica %s: %s; it waits with its invitation pending", self.name,
                name, exc.message)
            return None
        send(sealed)
        _write(path, json.dumps({"instance": inst["id"], "digest": digest,
                                 "fingerprint": inst["placement"]["recipient"]["fingerprint"],
                                 "partition": [inst["placement"]["computer"],
                                               inst["placement"]["partition"]],
                                 "sealed": sealed["invitation"]}, sort_keys=True) + "\n",
               0o600)
        return sealed["invitation"]

    def update(self):
        return self.install()


class MasterReplicaRecipe:
    """A replica of a child master (software type ``replica``). Options: ``data``,
    ``name``, ``invitation`` (the one-line JSON its primary published, a secret parameter
    the node opened; read through cfgvalue.decode), ``mode`` (sync or
    async), ``address``, ``port-base``, ``connection-file``. Writes the invitation
    (0600) and its primary's CA certificate into DATA; computes ``url``,
    ``master-port``, ``invitation-file``, ``ca-file`` and ``extra-args``."""

    def __init__(self, buildout, name, options):
        self.buildout, self.name, self.options = buildout, name, options
        from .ca.identity import PRINCIPAL_NAME_RE
        _checked(name, "name", _required(options, name, "name"), PRINCIPAL_NAME_RE,
                 "a replica name")
        mode = options.get("mode", "").strip() or "sync"
        if mode not in REPLICA_MODES:
            raise zc.buildout.UserError(f"[{name}] mode must be one of "
                                        f"{', '.join(REPLICA_MODES)}, got {mode!r}")
        # the invitation comes as a secret parameter: the node opened it and wrote it
        # through the buildout encoder (slapfed.core.cfgvalue), which it may have encoded
        try:
            inv = json.loads(decode(_required(options, name, "invitation")))
        except ValueError:
            raise zc.buildout.UserError(f"[{name}] invitation must be the JSON its primary "
                                        "published") from None
        wanted = ("url", "token", "ca_certificate", "for")
        if not isinstance(inv, dict) or any(not isinstance(inv.get(k), str) or not inv[k]
                                            for k in wanted):
            raise zc.buildout.UserError(f"[{name}] invitation lacks one of "
                                        f"{', '.join(wanted)}")
        if inv["for"] != options["name"]:
            raise zc.buildout.UserError(f"[{name}] the invitation is for {inv['for']!r}, "
                                        f"not {options['name']!r}")
        self.invitation = inv
        address = _required(options, name, "address")
        try:
            base = int(_required(options, name, "port-base"))
        except ValueError:
            raise zc.buildout.UserError(f"[{name}] port-base must be an integer") from None
        data = _required(options, name, "data")
        host = f"[{address}]" if ":" in address else address
        options["master-port"] = str(base + REPLICA_PORT_OFFSET)
        options["url"] = f"https://{host}:{base + REPLICA_PORT_OFFSET}"
        options["invitation-file"] = os.path.join(data, "invitation.json")
        options["ca-file"] = os.path.join(data, "primary-ca.crt")
        options["extra-args"] = "--sync" if mode == "sync" else ""
        options["mode"] = mode

    def install(self):
        o, inv = self.options, self.invitation
        os.makedirs(o["data"], mode=0o700, exist_ok=True)
        _write(o["invitation-file"], json.dumps(inv) + "\n", 0o600)
        _write(o["ca-file"], inv["ca_certificate"], 0o644)
        connection = {"name": o["name"], "url": o["url"], "role": "replica",
                      "primary": inv["url"], "mode": o["mode"],
                      "ca-certificate": inv["ca_certificate"]}
        path = _required(o, self.name, "connection-file")
        _write(path, json.dumps(connection, indent=1, sort_keys=True) + "\n", 0o600)
        return [o["invitation-file"], o["ca-file"], path]

    def update(self):
        return self.install()
