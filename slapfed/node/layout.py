"""The node's filesystem layout: node.json, partition directories, addresses and users.

Depends on core (wire, errors) and the standard library. ``format_node`` is idempotent:
existing partitions keep their address and ports, new ones are appended.
"""
from __future__ import annotations

import ipaddress
import json
import os
import pwd
import sys

from ..core.errors import InvalidInput, NotFound, SlapfedError
from ..core.record import Factory, MutableRecord, Record

CONFIG_NAME = "node.json"
DEFAULT_PORT_BASE = 10000
DEFAULT_PORT_COUNT = 10
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class LayoutError(SlapfedError):
    """The node root is missing, unreadable or cannot be formatted."""

    code = "node_layout"
    http_status = 500


class IsolationUnavailable(LayoutError):
    """Partition users could not run the node's runtime or reach its directories."""

    code = "isolation_unavailable"


class PartitionConfig(Record):
    id: str
    address: str
    port_base: int
    port_count: int
    user: str | None = None

    def spec(self) -> dict:
        return {"id": self.id, "address": self.address, "port_base": self.port_base,
                "port_count": self.port_count}


class InstallSettings(Record):
    """How a node installs releases: ``online`` lets buildout download what a release
    needs (sources, patches, eggs); ``download_cache`` (a directory, possibly shared by
    several nodes) keeps every download, so that a release installed once installs again
    offline, here or on a node rebuilt from nothing."""

    online: bool = False
    download_cache: str | None = None
    # a directory of built releases (possibly shared by several nodes): see
    # slapfed.node.builtcache; None: none
    shared_cache: str | None = None


class NodeConfig(MutableRecord):
    root: str
    master: str
    computer: str
    host: str | None = None
    lan: str | None = None
    country: str | None = None
    continent: str | None = None
    labels: dict = Factory(dict)
    partitions: list[PartitionConfig] = Factory(list)
    capabilities: list = Factory(list)
    tls: dict = Factory(dict)   # {"ca", "cert", "key"}: the node's identity files
    supervisord: str = "own"   # "external": run in the foreground by `slapfed node supervisord`
    online: bool = False       # release installs may download (buildout offline = false)
    download_cache: str | None = None   # None: ROOT/var/cache/download
    shared_cache: str | None = None     # built releases (slapfed.node.builtcache); None: none

    def install_settings(self) -> InstallSettings:
        return InstallSettings(self.online, self.download_cache or
                               Paths(self.root).download_cache, self.shared_cache)

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
        out = self.as_dict()             # (the containers copied, as asdict did)
        out.pop("root")
        out.update(labels=dict(self.labels), capabilities=list(self.capabilities),
                   tls=dict(self.tls), partitions=[p.as_dict() for p in self.partitions])
        return out

    @property
    def isolated(self) -> bool:
        """Every partition runs as its own unix user (False: single-user node)."""
        return bool(self.partitions) and all(p.user for p in self.partitions)

    def isolation_text(self) -> str:
        if self.isolated:
            return "isolation: each partition runs as its own unix user"
        return (f"single-user: every partition runs as {_me()}, the node's own user; "
                f"partitions are NOT isolated from each other")


def _me() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


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
    atomic_write_json(config_path(config.root), config.to_json(), mode=0o644)


def atomic_write_json(path: str, data, indent: int | None = 1, mode: int = 0o600) -> None:
    """Write the node's own JSON file ``path`` atomically, ``mode`` from the start (the
    node's state and desired state hold every partition's parameters: 0600)."""
    # json.dumps (one shot) uses the C encoder; json.dump would not
    text = json.dumps(data, indent=indent, sort_keys=True)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with open(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fd, mode)
        fh.write(text + "\n")
    os.replace(tmp, path)


# -- paths --------------------------------------------------------------------------


MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes on Linux


def _socket_path(wanted: str) -> str:
    """<root>/var/supervisord.sock, or a name in the temp dir when that path is too long."""
    if len(wanted.encode()) <= MAX_SOCKET_PATH:
        return wanted
    import hashlib
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
        self.download_cache = os.path.join(self.var, "cache", "download")
        # what supervisord captures of each partition's services: <services_log>/<pid>/,
        # node-owned (supervisord opens these files as root: never in a partition's
        # directory, where its user could plant a symlink)
        self.services_log = os.path.join(self.var, "services")
        self.supervisord_conf = os.path.join(self.etc, "supervisord.conf")
        self.supervisord_d = os.path.join(self.etc, "supervisord.d")
        self.supervisord_sock = _socket_path(os.path.join(self.var, "supervisord.sock"))
        self.supervisord_pid = os.path.join(self.var, "supervisord.pid")
        self.state = os.path.join(self.var, "state.json")
        self.agent_pid = os.path.join(self.var, "agent.pid")
        self.desired = os.path.join(self.var, "desired.json")
        # partitions whose instance moved away (their computer was declared lost), set
        # aside here, node-owned, until the master lets the node erase them
        self.quarantine = os.path.join(self.var, "quarantine")
        # accounting: the usage state and the spool of reports not yet acknowledged
        self.usage = os.path.join(self.var, "usage")
        # the sealing cache (node.sealing): sealed texts and keyed digests of the secrets
        # they hold, and the node-local key of those digests; both 0600, node-owned
        self.sealed_cache = os.path.join(self.var, "sealed.json")
        self.sealing_key = os.path.join(self.var, "sealing.key")

    def software_dir(self, software_hash: str) -> str:
        return os.path.join(self.software, software_hash)

    def software_log(self, software_hash: str) -> str:
        return os.path.join(self.log, f"software-{software_hash}.log")

    def partition(self, pid: str) -> "PartitionPaths":
        return PartitionPaths(os.path.join(self.partitions, pid))

    def group_conf(self, pid: str) -> str:
        return os.path.join(self.supervisord_d, f"{pid}.conf")

    def service_log_dir(self, pid: str) -> str:
        return os.path.join(self.services_log, pid)

    def quarantined(self, pid: str, instance_id: str) -> str:
        """Where the data of ``instance_id``, moved away from ``pid``, is kept."""
        return os.path.join(self.quarantine, f"{pid}--{instance_id}")

    def skeleton(self) -> list[str]:
        return [self.software, self.partitions, self.etc, self.supervisord_d, self.var,
                self.log, self.services_log]

    def modes(self) -> dict:
        """The mode of each skeleton directory: partition users traverse the root, the
        partitions and the service logs, read and execute the software, nothing else."""
        return {self.software: 0o755, self.partitions: 0o711, self.etc: 0o700,
                self.supervisord_d: 0o700, self.var: 0o711, self.log: 0o700,
                self.services_log: 0o711}


class PartitionPaths:
    """The directories the [partition] section exposes to instance profiles."""

    def __init__(self, path: str):
        self.path = path
        self.services = os.path.join(path, "etc", "service")
        self.promises = os.path.join(path, "etc", "promise")
        # restore steps: run (with the backup location as argument) before the first start
        # of an instance rebuilt here after its computer was lost
        self.restore = os.path.join(path, "etc", "restore")
        self.log = os.path.join(path, "var", "log")
        self.run = os.path.join(path, "var", "run")
        self.tmp = os.path.join(path, "tmp")
        self.private = os.path.join(path, ".slapfed")
        self.connection_file = os.path.join(self.private, "connection.json")
        # a host of shared instances publishes theirs here: {shared id: {key: value}}
        self.shared_connection_file = os.path.join(self.private, "shared-connection.json")
        # the connection parameters the instance declared secret: sealed before they leave
        self.secret_connection_file = os.path.join(self.private, "secret-connection.json")
        # a host's secret values for its shared instances ({shared id: {key: value}}):
        # each sealed to that shared instance's requester before it leaves
        self.secret_shared_connection_file = os.path.join(self.private,
                                                          "secret-shared-connection.json")
        self.buildout_cfg = os.path.join(path, "buildout.cfg")
        self.buildout_log = os.path.join(self.private, "buildout.log")
        # {service: sha256 of its wrapper} when the node last (re)started each service
        self.services_record = os.path.join(self.private, "services.json")
        # written once the restore steps ran: the data are this partition's own since
        self.restored_marker = os.path.join(self.private, "restored.json")
        # the instance appends its own units and incidents here, one JSON object a line
        # (${partition:usage-file}); the node reads it as the tenant's data
        self.usage_file = os.path.join(path, "var", "usage.jsonl")

    def skeleton(self) -> list[str]:
        return [self.services, self.promises, self.restore, self.log, self.run, self.tmp,
                self.private]

    def ensure(self, owner: tuple[int, int] | None = None) -> None:
        """The skeleton directories, made without following a symlink below the
        partition's directory, owned by ``owner`` (uid, gid) when given."""
        from .confine import makedirs

        os.makedirs(self.path, exist_ok=True)     # in the node's own partitions directory
        for d in self.skeleton():
            makedirs(self.path, d, 0o700 if d == self.private else 0o755, owner)

    def wipe(self) -> None:
        """Remove everything inside the partition directory, keeping the directory."""
        import shutil
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
    import hashlib

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
    import hashlib

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
    import subprocess

    delay = 0.05
    for attempt in range(8):
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True)
            return
        except FileNotFoundError:
            raise LayoutError("useradd is not available: cannot create partition users") \
                from None
        except subprocess.CalledProcessError as exc:
            try:
                pwd.getpwnam(name)      # made meanwhile by another node formatting
                return
            except KeyError:
                pass
            # /etc/passwd locked by another useradd: try again a little later
            if attempt == 7 or "lock" not in (exc.stderr or "").lower():
                raise LayoutError(f"useradd {name} failed: {exc.stderr.strip()}") from None
            import time
            time.sleep(delay)
            delay *= 2


def chown_tree(path: str, user: str) -> None:
    """Give ``path`` and everything below to ``user``, never following a symlink."""
    from .confine import chown_tree as _chown

    entry = pwd.getpwnam(user)
    _chown(path, entry.pw_uid, entry.pw_gid)


PARTITION_MODE = 0o700
SERVICE_LOG_MODE = 0o750


def prepare_partition_dir(paths: "Paths", p: PartitionConfig) -> None:
    """The partition's directory 0700, and its service log directory (root-owned, group
    of the partition's user, 0750), owned by the partition's user when it has one."""
    pp = paths.partition(p.id)
    os.makedirs(pp.path, exist_ok=True)
    logs = paths.service_log_dir(p.id)
    os.makedirs(logs, exist_ok=True)
    fd = os.open(pp.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if p.user:
            entry = pwd.getpwnam(p.user)
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
            os.chown(logs, 0, entry.pw_gid)
        os.fchmod(fd, PARTITION_MODE)
    finally:
        os.close(fd)
    os.chmod(logs, SERVICE_LOG_MODE if p.user else 0o700)


# -- can partition users run the node's runtime? --------------------------------------

# Run as a partition user (or nobody): the interpreter starts (so it and every directory
# above it, and the venv's pyvenv.cfg, are reachable), slapfed imports, the packages the
# instance buildout and the services load can be read, and the node's directories can
# be traversed. Exit 3 with the path that failed on stderr.
_PROBE = r"""
import importlib.util, os, sys
def fail(what, path):
    sys.stderr.write(f"{what}\t{path}\n"); sys.exit(3)
try:
    import slapfed
except Exception as exc:
    fail("import", getattr(exc, "filename", None) or "slapfed")
for name in ("slapfed", "zc.buildout", "setuptools", "supervisor"):
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        spec = None
    if spec is None or not spec.origin:
        fail("import", name)
    try:
        open(spec.origin, "rb").close()
    except OSError:
        fail("read", spec.origin)
try:
    import importlib.metadata as md
    md.distribution("slapfed").read_text("entry_points.txt")
except Exception:
    fail("import", "slapfed (its distribution's metadata)")
for path in sys.argv[1:]:
    if not os.access(path, os.X_OK):
        fail("reach", path)
"""


def _blocker(path: str) -> tuple[str, int] | None:
    """The first directory above (or at) ``path`` that others cannot traverse, with its
    mode; or the file itself when others cannot read it."""
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    for i in range(1, len(parts)):
        d = os.sep.join(parts[:i]) or os.sep
        try:
            mode = os.stat(d).st_mode
        except OSError:
            return None
        if not mode & 0o001:
            return d, mode & 0o7777
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if os.path.isdir(path):
        return (path, mode & 0o7777) if not mode & 0o001 else None
    return (path, mode & 0o7777) if not mode & 0o004 else None


def _probe_user(fallback: str | None):
    for name in ("nobody", fallback):
        if not name:
            continue
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry
    return None


RUNTIME_FIX = ("create the venv with Debian's /usr/bin/python3 (make PYTHON=/usr/bin/python3)"
               " or pass --single-user")
ROOT_FIX = ("put the node root where every user can traverse (each directory above it "
            "mode o+x), or pass --single-user")


def check_runtime(paths: "Paths", fallback_user: str | None = None,
                  reach: list | None = None) -> None:
    """Refuse (LayoutError) when partition users could not run the node's runtime: run a
    probe interpreter as ``nobody`` (or ``fallback_user``) with dropped privileges, and
    name the path that stops it and the fix. ``reach``: the directories they must reach
    (by default the node's software, partitions and service logs)."""
    entry = _probe_user(fallback_user)
    if entry is None:
        raise LayoutError("cannot check that partition users can run the node's Python: "
                          "neither nobody nor a partition user exists")
    exe = sys.executable
    real = os.path.realpath(exe)
    reach = reach or [paths.software, paths.partitions, paths.services_log]
    import subprocess

    try:
        from .confine import clean_environment

        env = {**clean_environment(), "HOME": "/"}     # what partition processes get
        done = subprocess.run([exe, "-c", _PROBE, *reach], cwd="/", capture_output=True,
                              text=True, timeout=60, user=entry.pw_uid, group=entry.pw_gid,
                              extra_groups=[], env=env)
        failed = None if done.returncode == 0 else done.stderr.strip()
    except PermissionError:
        failed = f"exec\t{exe}"
    except (OSError, subprocess.SubprocessError) as exc:
        raise LayoutError(f"cannot check that partition users can run {exe}: {exc}") from None
    if failed is None:
        return
    last = failed.splitlines()[-1] if failed else ""
    what, _, where = last.partition("\t") if "\t" in last else ("run", "", last)
    if what == "reach":
        blocker = _blocker(where)
        why = f": {blocker[0]} is mode {blocker[1]:04o}" if blocker else ""
        raise IsolationUnavailable(f"partition users cannot reach {where}{why}; {ROOT_FIX}")
    for candidate in (exe, real, where):
        blocker = _blocker(candidate) if candidate and os.path.isabs(candidate) else None
        if blocker:
            verb = "execute" if candidate in (exe, real) else "read"
            raise IsolationUnavailable(f"partition users cannot {verb} {candidate}: "
                                       f"{blocker[0]} is mode {blocker[1]:04o}; {RUNTIME_FIX}")
    raise IsolationUnavailable(f"partition users cannot run {exe} (as {entry.pw_name}: "
                               f"cannot {what} {where}); {RUNTIME_FIX}")


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


def isolation_mode(users: bool | None, single_user: bool, euid: int | None = None) -> bool:
    """Whether partitions get their own unix users (pure). Root: yes unless
    ``single_user``; any other user: never (``users`` True is then an error)."""
    root = (os.geteuid() if euid is None else euid) == 0
    if users and single_user:
        raise InvalidInput("--users and --single-user contradict each other",
                           [{"field": "single_user", "problem": "conflicts with --users"}])
    if users and not root:
        raise InvalidInput("--users needs root (it creates one unix user per partition); "
                           "a node that is not root is single-user",
                           [{"field": "users", "problem": "requires root"}])
    return root and not single_user


def format_node(root: str, master: str, computer: str, partitions: int, *,
                host=None, lan=None, country=None, continent=None, labels=None,
                capabilities=(), address_base: str | None = None, port_base: int = DEFAULT_PORT_BASE,
                port_count: int = DEFAULT_PORT_COUNT, users: bool | None = None,
                single_user: bool = False, supervisord: str | None = None,
                check: bool = True, online: bool | None = None,
                download_cache: str | None = None,
                shared_cache: str | None = None) -> NodeConfig:
    """Create (or extend) the node root and write node.json. Does not talk to the master.
    ``supervisord`` ("own" or "external"), ``online``, ``download_cache`` and
    ``shared_cache`` are kept from an existing node.json when None ('' for either cache:
    the default again, none for the shared cache).

    A node formatted by root gives each partition its own unix user (created with
    useradd), its directory 0700 owned by that user, unless ``single_user``; a node
    that is not root is single-user. Before that, a probe run as an unprivileged user
    checks that partition users can run the node's Python and reach its directories
    (``check``). ``users`` (the former --users) only confirms the default.

    Raises InvalidInput for bad arguments, LayoutError for filesystem/user problems."""
    from ..core.wire import ComputerRegistration      # pydantic: only when formatting

    root = os.path.abspath(root)
    reg = ComputerRegistration.from_json(
        {"id": computer, "host": host, "lan": lan, "country": country,
         "continent": continent, "labels": labels or {},
         "capabilities": list(capabilities)})
    if partitions < 0:
        raise InvalidInput("--partitions must be >= 0",
                           [{"field": "partitions", "problem": "must be >= 0"}])
    isolate = isolation_mode(users, single_user)
    if supervisord not in (None, "own", "external"):
        raise InvalidInput(f"supervisord mode {supervisord!r} is neither own nor external",
                           [{"field": "supervisord", "problem": "must be own or external"}])
    existing, tls, mode = [], {}, supervisord or "own"
    reset_cache = download_cache == ""          # '' asks for the default again
    if download_cache:
        download_cache = os.path.abspath(download_cache)
    reset_shared = shared_cache == ""
    if shared_cache:
        shared_cache = os.path.abspath(shared_cache)
    if os.path.exists(config_path(root)):
        old = load_config(root)
        tls = dict(old.tls)
        mode = supervisord or old.supervisord
        online = old.online if online is None else online
        if download_cache is None and not reset_cache:
            download_cache = old.download_cache
        if shared_cache is None and not reset_shared:
            shared_cache = old.shared_cache
        if old.computer != computer:
            raise LayoutError(f"{root} is already formatted for computer {old.computer!r}, "
                              f"not {computer!r}")
        existing = old.partitions
        owned = [p.id for p in existing if p.user]
        if owned and not isolate:
            raise LayoutError(
                f"partitions {', '.join(owned)} of {root} run as their own unix users; "
                + ("a node that is not root cannot run them" if os.geteuid() != 0 else
                   "--single-user would leave them isolated and the new ones not: "
                   "format another root for a single-user node"))
        if isolate:
            # a node formatted single-user gets isolated: its partitions get their users
            # (and their files), their services run as them from their next start
            existing = [p if p.user else PartitionConfig(
                p.id, p.address, p.port_base, p.port_count, partition_user(computer, i))
                for i, p in enumerate(existing)]
    config = NodeConfig(
        root=root, master=master, computer=reg.id, host=reg.host, lan=reg.lan,
        country=reg.country, continent=reg.continent, labels=dict(reg.labels),
        capabilities=list(reg.capabilities), partitions=plan_partitions(existing, partitions, computer, address_base, port_base,
                                   port_count, isolate), tls=tls, supervisord=mode,
        online=bool(online), download_cache=download_cache or None,
        shared_cache=shared_cache or None)
    paths = Paths(root)
    try:
        if not os.path.isdir(root):
            os.makedirs(root, exist_ok=True)
            os.chmod(root, 0o755)
        for d in paths.skeleton():
            os.makedirs(d, exist_ok=True)
        for d, dmode in paths.modes().items():
            os.chmod(d, dmode)
        first = config.partitions[0] if config.partitions else None
        if isolate and check:
            if _probe_user(None) is None and first is not None:
                ensure_user(first.user, paths.partition(first.id).path)
            check_runtime(paths, first.user if first else None)
        for p in config.partitions:
            pp = paths.partition(p.id)
            if p.user:
                ensure_user(p.user, pp.path)
                if os.path.isdir(pp.path) and not os.path.islink(pp.path) \
                        and os.lstat(pp.path).st_uid != pwd.getpwnam(p.user).pw_uid:
                    chown_tree(pp.path, p.user)     # a partition that was single-user
            prepare_partition_dir(paths, p)
        save_config(config)
    except OSError as exc:
        raise LayoutError(f"cannot format {root}: {exc}") from None
    return config
