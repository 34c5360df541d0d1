"""The node's filesystem layout: node.json, partition directories, addresses and users.

Depends on core (wire, errors) and the standard library. ``format_node`` is idempotent:
existing partitions keep their address and ports, new ones are appended.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

from ..core.errors import InvalidInput, NotFound, SlapfedError
from ..core.wire import ComputerRegistration

CONFIG_NAME = "node.json"
DEFAULT_PORT_BASE = 10000
DEFAULT_PORT_COUNT = 10
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class LayoutError(SlapfedError):
    """The node root is missing, unreadable or cannot be formatted."""

    code = "node_layout"
    http_status = 500


@dataclass(frozen=True)
class PartitionConfig:
    id: str
    address: str
    port_base: int
    port_count: int
    user: str | None = None

    def spec(self) -> dict:
        return {"id": self.id, "address": self.address, "port_base": self.port_base,
                "port_count": self.port_count}


@dataclass
class NodeConfig:
    root: str
    master: str
    computer: str
    host: str | None = None
    lan: str | None = None
    country: str | None = None
    continent: str | None = None
    labels: dict = field(default_factory=dict)
    partitions: list[PartitionConfig] = field(default_factory=list)
    capabilities: list = field(default_factory=list)
    tls: dict = field(default_factory=dict)   # {"ca", "cert", "key"}: the node's identity files
    supervisord: str = "own"   # "external": run in the foreground by `slapfed node supervisord`

    def client_options(self) -> dict:
        """MasterClient keyword arguments for this node's identity (none over plain HTTP)."""
        return {k: self.tls.get(k) for k in ("ca", "cert", "key")} if self.tls else {}

    def registration(self) -> dict:
        """The ComputerRegistration body sent to the master."""
        return {"id": self.computer, "host": self.host, "lan": self.lan,
                "country": self.country, "continent": self.continent,
                "labels": dict(self.labels), "capabilities": list(self.capabilities),
                "partitions": [p.spec() for p in self.partitions]}

    def partition(self, pid: str) -> PartitionConfig | None:
        for p in self.partitions:
            if p.id == pid:
                return p
        return None

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("root")
        return out


def config_path(root: str) -> str:
    return os.path.join(root, CONFIG_NAME)


def load_config(root: str) -> NodeConfig:
    """Read <root>/node.json. Raises NotFound when absent, LayoutError when malformed."""
    root = os.path.abspath(root)
    path = config_path(root)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist: format the node first "
                          f"(slapfed node format --root {root} ...)") from None
    except (OSError, ValueError) as exc:
        raise LayoutError(f"cannot read {path}: {exc}") from None
    try:
        parts = [PartitionConfig(**p) for p in raw.pop("partitions", [])]
        return NodeConfig(root=root, partitions=parts, **raw)
    except TypeError as exc:
        raise LayoutError(f"{path} is not a slapfed node config: {exc}") from None


def save_config(config: NodeConfig) -> None:
    atomic_write_json(config_path(config.root), config.to_json())


def atomic_write_json(path: str, data, indent: int | None = 1) -> None:
    # json.dumps (one shot) uses the C encoder; json.dump would not
    text = json.dumps(data, indent=indent, sort_keys=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)


# -- paths --------------------------------------------------------------------------


MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes on Linux


def _socket_path(wanted: str) -> str:
    """<root>/var/supervisord.sock, or a name in the temp dir when that path is too long."""
    if len(wanted.encode()) <= MAX_SOCKET_PATH:
        return wanted
    import tempfile

    digest = hashlib.sha256(wanted.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"slapfed-{digest}.sock")


class Paths:
    """Every path of a node root, in one place."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.software = os.path.join(self.root, "software")
        self.partitions = os.path.join(self.root, "partitions")
        self.etc = os.path.join(self.root, "etc")
        self.var = os.path.join(self.root, "var")
        self.log = os.path.join(self.var, "log")
        self.supervisord_conf = os.path.join(self.etc, "supervisord.conf")
        self.supervisord_d = os.path.join(self.etc, "supervisord.d")
        self.supervisord_sock = _socket_path(os.path.join(self.var, "supervisord.sock"))
        self.supervisord_pid = os.path.join(self.var, "supervisord.pid")
        self.state = os.path.join(self.var, "state.json")
        self.agent_pid = os.path.join(self.var, "agent.pid")
        self.desired = os.path.join(self.var, "desired.json")

    def software_dir(self, software_hash: str) -> str:
        return os.path.join(self.software, software_hash)

    def software_log(self, software_hash: str) -> str:
        return os.path.join(self.log, f"software-{software_hash}.log")

    def partition(self, pid: str) -> "PartitionPaths":
        return PartitionPaths(os.path.join(self.partitions, pid))

    def group_conf(self, pid: str) -> str:
        return os.path.join(self.supervisord_d, f"{pid}.conf")

    def skeleton(self) -> list[str]:
        return [self.software, self.partitions, self.etc, self.supervisord_d, self.var, self.log]


class PartitionPaths:
    """The directories the [partition] section exposes to instance profiles."""

    def __init__(self, path: str):
        self.path = path
        self.services = os.path.join(path, "etc", "service")
        self.promises = os.path.join(path, "etc", "promise")
        self.log = os.path.join(path, "var", "log")
        self.run = os.path.join(path, "var", "run")
        self.tmp = os.path.join(path, "tmp")
        self.private = os.path.join(path, ".slapfed")
        self.connection_file = os.path.join(self.private, "connection.json")
        # a host of shared instances publishes theirs here: {shared id: {key: value}}
        self.shared_connection_file = os.path.join(self.private, "shared-connection.json")
        self.buildout_cfg = os.path.join(path, "buildout.cfg")
        self.buildout_log = os.path.join(self.private, "buildout.log")
        # {service: sha256 of its wrapper} when the node last (re)started each service
        self.services_record = os.path.join(self.private, "services.json")

    def skeleton(self) -> list[str]:
        return [self.services, self.promises, self.log, self.run, self.tmp, self.private]

    def ensure(self) -> None:
        for d in self.skeleton():
            os.makedirs(d, exist_ok=True)

    def wipe(self) -> None:
        """Remove everything inside the partition directory, keeping the directory."""
        if not os.path.isdir(self.path):
            os.makedirs(self.path, exist_ok=True)
            return
        for name in os.listdir(self.path):
            target = os.path.join(self.path, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)


# -- addresses ----------------------------------------------------------------------


def default_address_base(computer: str) -> str:
    """127.X.Y.1 with X, Y from a hash of the computer id: two nodes on one host differ."""
    digest = hashlib.sha256(computer.encode()).digest()
    x = 1 + digest[0] % 254          # never 127.0.x.x (the usual 127.0.0.1 lives there)
    y = digest[1] % 200              # leaves room to grow into the next /24 blocks
    return f"127.{x}.{y}.1"


def partition_address(base: str, index: int) -> str:
    """The address of partition ``index``: a loopback base must stay inside 127.0.0.0/8
    (any address there can be bound without set-up); another base is taken as given."""
    start = ipaddress.ip_address(base)
    try:
        addr = start + index
    except ipaddress.AddressValueError:
        addr = None
    if addr is None or (start in LOOPBACK and (addr not in LOOPBACK
                                               or addr == LOOPBACK.broadcast_address)):
        raise InvalidInput(f"partition {index} would get address {addr or 'beyond IPv4'}, "
                           f"outside {'127.0.0.0/8' if start in LOOPBACK else 'IPv4'}",
                           [{"field": "address_base", "problem": f"{base} leaves no room for "
                                                                 f"{index + 1} partitions"}])
    return str(addr)


def partition_user(computer: str, index: int) -> str:
    short = hashlib.sha256(computer.encode()).hexdigest()[:6]
    return f"slapfed-{short}-{index}"


def ensure_user(name: str, home: str) -> None:
    """Create a system user (no login, no home creation) unless it exists. Root only."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--no-create-home", "--home-dir", home,
           "--shell", "/usr/sbin/nologin", name]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise LayoutError("useradd is not available: cannot create partition users") from None
    except subprocess.CalledProcessError as exc:
        raise LayoutError(f"useradd {name} failed: {exc.stderr.strip()}") from None


def chown_tree(path: str, user: str) -> None:
    entry = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(path):
        os.lchown(dirpath, entry.pw_uid, entry.pw_gid)
        for name in filenames + dirnames:
            os.lchown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)


# -- format -------------------------------------------------------------------------


def plan_partitions(existing: list[PartitionConfig], count: int, computer: str,
                    address_base: str | None, port_base: int, port_count: int,
                    users: bool) -> list[PartitionConfig]:
    """Existing partitions unchanged, plus new ones up to ``count`` (pure)."""
    base = address_base or default_address_base(computer)
    try:
        ipaddress.IPv4Address(base)
    except ValueError:
        raise InvalidInput(f"--address-base {base!r} is not an IPv4 address",
                           [{"field": "address_base", "problem": "not an IPv4 address"}]) from None
    out = list(existing)
    taken = {p.id for p in existing}
    for i in range(count):
        pid = f"part{i}"
        if pid in taken:
            continue
        out.append(PartitionConfig(
            id=pid, address=partition_address(base, i), port_base=port_base,
            port_count=port_count, user=partition_user(computer, i) if users else None))
    return out


def format_node(root: str, master: str, computer: str, partitions: int, *,
                host=None, lan=None, country=None, continent=None, labels=None,
                capabilities=(), address_base: str | None = None, port_base: int = DEFAULT_PORT_BASE,
                port_count: int = DEFAULT_PORT_COUNT, users: bool = False,
                supervisord: str | None = None) -> NodeConfig:
    """Create (or extend) the node root and write node.json. Does not talk to the master.
    ``supervisord`` ("own" or "external") is kept from an existing node.json when None.

    Raises InvalidInput for bad arguments, LayoutError for filesystem/user problems."""
    root = os.path.abspath(root)
    reg = ComputerRegistration.from_json(
        {"id": computer, "host": host, "lan": lan, "country": country,
         "continent": continent, "labels": labels or {},
         "capabilities": list(capabilities)})
    if partitions < 0:
        raise InvalidInput("--partitions must be >= 0",
                           [{"field": "partitions", "problem": "must be >= 0"}])
    if users and os.geteuid() != 0:
        raise InvalidInput("--users needs root (it creates one unix user per partition)",
                           [{"field": "users", "problem": "requires root"}])
    if supervisord not in (None, "own", "external"):
        raise InvalidInput(f"supervisord mode {supervisord!r} is neither own nor external",
                           [{"field": "supervisord", "problem": "must be own or external"}])
    existing, tls, mode = [], {}, supervisord or "own"
    if os.path.exists(config_path(root)):
        old = load_config(root)
        tls = dict(old.tls)
        mode = supervisord or old.supervisord
        if old.computer != computer:
            raise LayoutError(f"{root} is already formatted for computer {old.computer!r}, "
                              f"not {computer!r}")
        existing = old.partitions
    config = NodeConfig(
        root=root, master=master, computer=reg.id, host=reg.host, lan=reg.lan,
        country=reg.country, continent=reg.continent, labels=dict(reg.labels),
        capabilities=list(reg.capabilities), partitions=plan_partitions(existing, partitions, computer, address_base, port_base,
                                   port_count, users), tls=tls, supervisord=mode)
    paths = Paths(root)
    try:
        for d in paths.skeleton():
            os.makedirs(d, exist_ok=True)
        for p in config.partitions:
            pp = paths.partition(p.id)
            os.makedirs(pp.path, exist_ok=True)
            if p.user:
                ensure_user(p.user, pp.path)
                chown_tree(pp.path, p.user)
        save_config(config)
    except OSError as exc:
        raise LayoutError(f"cannot format {root}: {exc}") from None
    return config


def node_python() -> str:
    return sys.executable
