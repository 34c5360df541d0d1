"""Buildout runner: generates the software and instance buildout.cfg files and runs them.

Depends on core, node.layout and zc.buildout (imported lazily, in the runner only).
Two runners share one interface, ``run(cfg, cwd, log_path, user=None, umask=None) ->
RunResult`` (``user``: the confine.Credentials of a partition user to run buildout as):
ForkRunner (default) warms zc.buildout up once in this process, then forks one child
per run (~10 ms for a light profile); SubprocessRunner starts a fresh interpreter
(~430 ms) and is kept as a fallback. Failures come back as results with a log tail;
only misuse raises. A run as a partition user never shares the agent's memory: the fork
runner forks it from a fork server (slapfed.node.zygote: a fresh interpreter with
zc.buildout warm, started once), the child drops to the user (groups, gid, uid) before
opening its log or running anything, and the agent reads the log back without following
symlinks.

Rendering: one writer (``render_sections``) for both generated files. Keys are plain
identifiers; values others gave (parameters, reference, software type and URL, shared
instances, provenance, the master's facts) go through slapfed.core.cfgvalue -- verbatim
when zc.buildout carries them unchanged, else a lossless encoding profiles decode (the
argument is in that module); the options buildout itself reads (``extends``,
directories) must be plain or nothing is written. Every raw value is also written, as
JSON, to ``${partition:parameters-file}`` (mode 0600). An instance the node cannot
write (a key that is not a plain identifier, a bad id, software type or hash, a value
that is not text) fails its partition with a clear log, before anything is written.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from ..core import cfgvalue
from ..core.fields import ID_RE, SOFTWARE_TYPE_RE
from . import confine
from .layout import InstallSettings, PartitionConfig, Paths

TAIL_BYTES = 4096
INSTANCE_PREFIX = "instance-"
INSTANCE_SUFFIX = ".cfg"


@dataclass(frozen=True)
class RunResult:
    ok: bool
    code: int
    log_tail: str
    seconds: float


@dataclass(frozen=True)
class SoftwareResult:
    ok: bool
    log_tail: str
    software_types: tuple[str, ...] = ()
    seconds: float = 0.0
    cache: str = ""       # what the shared cache of built releases did ('' without one)


@dataclass(frozen=True)
class InstanceResult:
    ok: bool
    log_tail: str
    seconds: float = 0.0
    connection: dict = field(default_factory=dict)
    shared_connections: dict = field(default_factory=dict)
    secret_connection: dict = field(default_factory=dict)   # to seal before it leaves
    secret_shared_connections: dict = field(default_factory=dict)   # {shared id: {..}}, same


def log_tail(path: str, size: int = TAIL_BYTES, base: str | None = None) -> str:
    """The last ``size`` bytes of a log file (decoded leniently), '' when absent. With
    ``base`` (a partition's directory), the file is read without following any symlink
    below it (a partition's user may have planted one), and only if it is a regular file."""
    data = confine.read_bytes(path, base, limit=size + 1)
    if data is None:
        return ""
    cut = len(data) > size
    text = data[-size:].decode("utf-8", "replace")
    if cut:
        text = "..." + text[text.find("\n") + 1:] if "\n" in text else text
    return text


# -- rendering buildout.cfg files ------------------------------------------------------
#
# One writer for every generated buildout file: keys must be plain identifiers, values
# go through slapfed.core.cfgvalue (verbatim when buildout carries them unchanged, else
# its lossless encoding), and the options buildout itself reads (extends, directories)
# must be plain or the file is not written. See slapfed.core.cfgvalue for the argument.


class UnsafeConfig(ValueError):
    """A key or value that cannot go into a buildout file: nothing is written."""


# sections whose keys others choose: there, buildout's own option names are refused too
OUTSIDE_KEYS = ("parameters",)


def _check_key(key, where: str, reserved: bool = True) -> None:
    problem = cfgvalue.key_problem(key, reserved)
    if problem:
        raise UnsafeConfig(f"{where} key {key!r} {problem}")


def buildout_value(value, where: str = "value") -> str:
    """Any JSON value as a buildout option value (cfgvalue.encode); UnsafeConfig when it
    is not text (a lone surrogate)."""
    try:
        return cfgvalue.encode(value)
    except ValueError as exc:
        raise UnsafeConfig(f"{where} {exc}") from None


def literal(value: str, where: str, spaces: bool = True) -> str:
    """A value buildout itself reads (a path, a URL): written as is, so it must be plain
    (and, for ``extends``, hold no whitespace: buildout splits it)."""
    if not isinstance(value, str) or not cfgvalue.is_plain(value) or (
            not spaces and any(c.isspace() for c in value)):
        raise UnsafeConfig(f"{where} {value!r} cannot be written into a buildout file "
                           "(it must be one line of printable characters without '${' "
                           + ("" if spaces else "or spaces ") + "and not end in '$')")
    return value


def comment(text: str) -> str:
    """A comment line: the text encoded like a value, so it never ends the line."""
    return "# " + buildout_value(text, "comment") + "\n"


def render_sections(sections, header: str = "") -> str:
    """The text of a buildout file: ``sections`` is [(name, {key: value})] with raw
    values (encoded here) or ``Literal`` values (checked plain, written as is)."""
    out = [header]
    for name, options in sections:
        _check_key(name, "section", reserved=False)
        out.append(f"[{name}]\n")
        for key, value in options.items():
            _check_key(key, f"[{name}]", reserved=name in OUTSIDE_KEYS)
            text = value.text if isinstance(value, Literal) else \
                buildout_value(value, f"[{name}] {key}")
            out.append(f"{key} = {text}\n")
        out.append("\n")
    return "".join(out)


@dataclass(frozen=True)
class Literal:
    """An option value buildout reads itself; checked by ``literal`` when made."""

    text: str

    @classmethod
    def of(cls, value: str, where: str, spaces: bool = True) -> "Literal":
        return cls(literal(value, where, spaces))


def _section(name: str, options: dict) -> str:
    return render_sections([(name, options)]).rstrip("\n") + "\n"


def release_location(url: str) -> str:
    """What the generated software buildout ``extends``: a path for paths and file://."""
    if url.startswith("file://"):
        return unquote(urlparse(url).path)
    return url


def release_directory(url: str) -> str:
    """Where a release's neighbour files live (a path, or a URL prefix)."""
    location = release_location(url)
    return location.rsplit("/", 1)[0] if "/" in location else "."


OFFLINE = InstallSettings()


def render_software_cfg(url: str, software_dir: str,
                        settings: InstallSettings = OFFLINE) -> str:
    """The software buildout: extends the release and tells it where it comes from
    (``${release:directory}``, since zc.buildout has no ``_profile_base_location_``).
    UnsafeConfig when the release's location cannot be written as ``extends``."""
    header = "# generated by the slapfed node: installs the release below; do not edit\n"
    options = {
        "extends": Literal.of(release_location(url), "release location", spaces=False),
        "directory": Literal.of(software_dir, "software directory"),
        "offline": "false" if settings.online else "true",
        "newest": "false",
    }
    if settings.download_cache:
        options["download-cache"] = Literal.of(settings.download_cache, "download cache")
    return render_sections([
        ("buildout", options),
        ("release", {
            "url": url,
            "directory": release_directory(url),
            "software": software_dir,
        }),
    ], header)


PARAMETERS_FILE = "parameters.json"


def parameters_file(paths: Paths, partition: PartitionConfig) -> str:
    """The JSON file holding the raw values of [parameters] and [partition]."""
    return os.path.join(paths.partition(partition.id).private, PARAMETERS_FILE)


def partition_section(paths: Paths, partition: PartitionConfig, computer: str,
                      instance: dict, software_dir: str) -> dict:
    """[partition] with raw values (render_sections encodes them)."""
    pp = paths.partition(partition.id)
    return {
        "id": partition.id,
        "path": pp.path,
        "address": partition.address,
        "port-base": str(partition.port_base),
        "port-count": str(partition.port_count),
        "computer": computer,
        "instance-id": instance["id"],
        "reference": instance.get("reference", ""),
        "software-type": instance.get("software_type") or "default",
        "software-url": instance.get("software_url", ""),
        "software": software_dir,
        "bin": os.path.join(software_dir, "bin"),
        "services": pp.services,
        "promises": pp.promises,
        "restore": pp.restore,
        "log": pp.log,
        "run": pp.run,
        "tmp": pp.tmp,
        "connection-file": pp.connection_file,
        "shared-connection-file": pp.shared_connection_file,
        "secret-connection-file": pp.secret_connection_file,
        "secret-shared-connection-file": pp.secret_shared_connection_file,
        "parameters-file": parameters_file(paths, partition),
        "usage-file": pp.usage_file,
        "python": sys.executable,
        "user": partition.user or "",
        "shared-instances": json.dumps(instance.get("shared_instances") or [],
                                       sort_keys=True),
        # the masters the instance's request crossed, root first (this master last)
        "provenance": " ".join(instance.get("provenance") or ()),
    }


SOFTWARE_HASH_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_instance(instance: dict) -> None:
    """What the node checks of an instance from its master before writing anything
    (a master or peer is not trusted blindly): UnsafeConfig naming the problem."""
    if not isinstance(instance.get("id"), str) or not ID_RE.match(instance["id"]):
        raise UnsafeConfig(f"instance id {instance.get('id')!r} must match {ID_RE.pattern}")
    stype = instance.get("software_type") or "default"
    if not isinstance(stype, str) or not SOFTWARE_TYPE_RE.match(stype):
        raise UnsafeConfig(f"software type {stype!r} must match {SOFTWARE_TYPE_RE.pattern}")
    shash = instance.get("software_hash")
    if not isinstance(shash, str) or not SOFTWARE_HASH_RE.fullmatch(shash):
        raise UnsafeConfig(f"software hash {shash!r} is not a software hash")
    params = instance.get("parameters") or {}
    if not isinstance(params, dict):
        raise UnsafeConfig(f"parameters must be a JSON object, got {type(params).__name__}")
    for key, value in params.items():
        _check_key(key, "parameter")
        buildout_value(value, f"parameter {key!r}")


def render_instance_cfg(profile: str, paths: Paths, partition: PartitionConfig,
                        computer: str, instance: dict, software_dir: str,
                        identity: dict | None = None) -> str:
    """The partition's buildout.cfg; ``identity`` adds the partition's own ``cert``,
    ``key``, ``ca`` and ``master-url`` to [partition] (paths only, never key material).
    UnsafeConfig (nothing to write) for a key or value that cannot be written."""
    check_instance(instance)
    pp = paths.partition(partition.id)
    header = comment(f"generated by the slapfed node for instance {instance['id']} "
                     f"revision {instance.get('revision')}; do not edit")
    return render_sections([
        ("buildout", {
            "extends": Literal.of(profile, "instance profile", spaces=False),
            "directory": Literal.of(pp.path, "partition directory"),
            "offline": "true",
            "newest": "false",
            "eggs-directory": Literal.of(os.path.join(software_dir, "eggs"), "eggs directory"),
            "develop-eggs-directory": Literal.of(os.path.join(software_dir, "develop-eggs"),
                                                 "develop-eggs directory"),
        }),
        ("partition", {**partition_section(paths, partition, computer, instance,
                                           software_dir), **(identity or {})}),
        ("parameters", dict(sorted((instance.get("parameters") or {}).items()))),
    ], header)


def render_parameters_json(paths: Paths, partition: PartitionConfig, computer: str,
                           instance: dict, software_dir: str,
                           identity: dict | None = None) -> str:
    """The raw values of [parameters] (as JSON values) and [partition], verbatim."""
    return json.dumps({
        "parameters": instance.get("parameters") or {},
        "partition": {**partition_section(paths, partition, computer, instance,
                                          software_dir), **(identity or {})},
    }, indent=1, sort_keys=True) + "\n"


def software_types(software_dir: str) -> tuple[str, ...]:
    """The software types a release offers: its instance-<type>.cfg files."""
    try:
        names = os.listdir(software_dir)
    except OSError:
        return ()
    out = []
    for name in names:
        if name.startswith(INSTANCE_PREFIX) and name.endswith(INSTANCE_SUFFIX):
            stype = name[len(INSTANCE_PREFIX):-len(INSTANCE_SUFFIX)]
            if SOFTWARE_TYPE_RE.match(stype):
                out.append(stype)
    return tuple(sorted(out))


# -- runners --------------------------------------------------------------------------


def _buildout_args(cfg: str) -> list[str]:
    return ["-U", "-c", cfg]


DEFAULT_TIMEOUT = 1800.0   # seconds one buildout run may take before it is killed


def _log_note(log_path: str):
    def note(text: str) -> None:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(text)
    return note


def _wait_or_kill(pid: int, timeout: float, note) -> int:
    """Wait for child ``pid`` (the leader of its own process group); past ``timeout``
    kill the whole group (TERM, then KILL) and ``note`` it (a callable, or the path of
    the node's own log to append the note to). Returns the exit code (negative: killed
    by that signal)."""
    if isinstance(note, str):
        note = _log_note(note)
    deadline = time.monotonic() + timeout
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if fd is not None:
                select.select([fd], [], [], left)
            else:
                time.sleep(min(0.02, left))
    finally:
        if fd is not None:
            os.close(fd)
    note(f"\nslapfed: buildout still running after {timeout:g}s; killed\n")
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        end = time.monotonic() + grace
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


_LIBC = None
PR_SET_PDEATHSIG = 1


def _prepare_die_with_parent():
    """Load libc (in the parent, before forking) for ``_die_with_parent``."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _LIBC = False
    return _LIBC


def _die_with_parent() -> None:
    """In a forked buildout child: be killed when the thread that forked it ends (an
    agent killed in the middle of an install must not leave that install running
    beside the one its next start begins)."""
    if _LIBC:
        with contextlib.suppress(Exception):
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _spawned(runner, pid: int) -> None:
    """Tell whoever asked (``runner.on_spawn``) the PID of the run just started: it is
    the leader of its own process group, to kill when the run must be abandoned."""
    hook = getattr(runner, "on_spawn", None)
    if hook is not None:
        hook(pid)


# a partition's log is opened by the child, as the partition's user, afresh: whatever the
# user left in its place (a symlink included) is unlinked first
LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
PARTITION_UMASK = 0o077     # a partition's files are its user's only
SOFTWARE_UMASK = 0o022      # a release's files are readable (not writable) by every user


def _confined_result(code: int, notes: list, log_path: str, cwd: str, started: float):
    tail = "" if code == 0 else log_tail(log_path, base=cwd) + "".join(notes)
    return RunResult(code == 0, code, tail, time.monotonic() - started)


class SubprocessRunner:
    """One fresh interpreter per run: slow (~430 ms) but shares nothing with the agent.

    As a partition user (``user``: confine.Credentials): the interpreter starts with
    that user's uid, gid and groups only and opens its log itself, as that user."""

    name = "subprocess"
    CODE = "import sys; from zc.buildout.buildout import main; main(sys.argv[1:])"
    CONFINED_CODE = (
        "import os, sys\n"
        "try:\n    os.unlink(sys.argv[1])\nexcept FileNotFoundError:\n    pass\n"
        f"fd = os.open(sys.argv[1], {LOG_FLAGS}, 0o600)\n"
        "os.dup2(fd, 1); os.dup2(fd, 2); os.close(fd)\n"
        "from zc.buildout.buildout import main; main(sys.argv[2:])\n")

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.on_spawn = None          # called with the PID of each run started

    def run(self, cfg: str, cwd: str, log_path: str, user: "confine.Credentials | None" = None,
            umask: int | None = None) -> RunResult:
        import subprocess

        started = time.monotonic()
        if user is not None:
            notes: list = []
            proc = subprocess.Popen(
                [sys.executable, "-c", self.CONFINED_CODE, log_path, *_buildout_args(cfg)],
                cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, user=user.uid,
                group=user.gid, extra_groups=list(user.groups),
                umask=PARTITION_UMASK if umask is None else umask,
                env=user.environment())
            _spawned(self, proc.pid)
            code = _wait_or_kill(proc.pid, self.timeout, notes.append)
            proc.returncode = code
            return _confined_result(code, notes, log_path, cwd, started)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-c", self.CODE, *_buildout_args(cfg)],
                                    cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    umask=-1 if umask is None else umask)
        _spawned(self, proc.pid)
        code = _wait_or_kill(proc.pid, self.timeout, _log_note(log_path))
        proc.returncode = code
        return RunResult(code == 0, code, "" if code == 0 else log_tail(log_path),
                         time.monotonic() - started)


def _buildout_child(prepare, cfg: str, cwd: str) -> None:
    """The body of a forked buildout child; never returns. ``prepare()`` sets the child
    up (session, credentials, umask, environment) and returns the fd of its log, which
    becomes its stdout and stderr; then buildout runs on ``cfg`` in ``cwd`` and the child
    exits with buildout's code (1 on any error, its traceback in the log)."""
    code = 1
    try:
        fd = prepare()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = sys.stdout
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(cwd)
        import zc.buildout.buildout
        try:
            zc.buildout.buildout.main(_buildout_args(cfg))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(code)


def confined_child(cfg: str, cwd: str, log_path: str, user, umask: int) -> None:
    """A buildout run as a partition user, in a process forked from the buildout fork
    server (slapfed.node.zygote; never from the agent: nothing of the agent's memory,
    none of its open files).
    Drops to the user first, then opens the log as that user (no symlink followed)."""
    def prepare() -> int:
        os.setsid()
        user.drop()
        os.umask(umask)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log_path)
        fd = os.open(log_path, LOG_FLAGS, 0o600)
        env = user.environment()       # the clean part of the server's, plus the user's
        os.environ.clear()
        os.environ.update(env)
        return fd

    _buildout_child(prepare, cfg, cwd)


class _Zygote:
    """The agent's side of the buildout fork server (slapfed.node.zygote)."""

    def __init__(self):
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slapfed.node.zygote"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, close_fds=True, cwd="/")
        self.buf = b""
        if "ready" not in self.read(time.monotonic() + 120):
            raise OSError("the buildout fork server did not start")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def read(self, deadline: float) -> dict:
        """The next answer, {} past ``deadline``; OSError when the server is gone."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return {}
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise OSError("the buildout fork server exited")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - a server that does not leave is killed
            self.proc.kill()
            self.proc.wait(5)
        with contextlib.suppress(OSError):
            self.proc.stdout.close()


class ForkRunner:
    """Warm zc.buildout up once in this process, then fork a child per run.

    The child redirects its output to the log file, chdirs and calls buildout's main;
    the parent's cwd, logging and modules stay untouched."""

    name = "fork"

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        self.warm = False
        self.timeout = timeout
        self.on_spawn = None          # called with the PID of each run started
        self._zygote: _Zygote | None = None

    def close(self) -> None:
        """Stop the fork server of partition users' runs, if it was started."""
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def warm_up(self) -> None:
        """Import zc.buildout and run one tiny buildout in-process, restoring cwd and
        logging afterwards, so that forked children start with everything loaded."""
        if self.warm:
            return
        import tempfile

        import zc.buildout.buildout  # noqa: F401  (the import is the point)

        root = logging.getLogger()
        bl = logging.getLogger("zc.buildout")
        saved = (list(root.handlers), root.level, list(bl.handlers), bl.propagate, bl.level)
        cwd = os.getcwd()
        try:
            with tempfile.TemporaryDirectory(prefix="slapfed-warmup-") as tmp:
                cfg = os.path.join(tmp, "buildout.cfg")
                with open(cfg, "w") as fh:
                    fh.write(_section("buildout", {
                        "parts": "warm", "directory": tmp, "offline": "true",
                        "newest": "false"}) + _section("warm", {
                            "recipe": "slapfed:file", "path": os.path.join(tmp, "warm.txt"),
                            "content": "warm"}))
                os.chdir(tmp)
                with contextlib.redirect_stdout(io.StringIO()), \
                        contextlib.redirect_stderr(io.StringIO()):
                    b = zc.buildout.buildout.Buildout(cfg, [], False, "install", [])
                    b.install([])
        except (Exception, SystemExit):  # warm-up is an optimisation: fall back silently
            logging.getLogger(__name__).debug("buildout warm-up failed", exc_info=True)
        finally:
            os.chdir(cwd)
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
            bl.handlers[:] = saved[2]
            bl.propagate = saved[3]
            bl.setLevel(saved[4])
        self.warm = True

    def run(self, cfg: str, cwd: str, log_path: str, user: "confine.Credentials | None" = None,
            umask: int | None = None) -> RunResult:
        if user is not None:
            return self._run_confined(cfg, cwd, log_path, user,
                                      PARTITION_UMASK if umask is None else umask)
        self.warm_up()             # imports zc.buildout here, before the fork
        started = time.monotonic()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        _prepare_die_with_parent()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # child: never return from here
            def prepare() -> int:
                _die_with_parent()
                if os.getppid() != parent:
                    os._exit(1)           # the agent died before we asked
                os.setsid()   # its own process group, so a timeout kills what it started
                if umask is not None:
                    os.umask(umask)
                return fd

            _buildout_child(prepare, cfg, cwd)
        os.close(fd)
        _spawned(self, pid)
        code = _wait_or_kill(pid, self.timeout, _log_note(log_path))
        return RunResult(code == 0, code, "" if code == 0 else log_tail(log_path),
                         time.monotonic() - started)

    def _run_confined(self, cfg: str, cwd: str, log_path: str, user, umask: int) -> RunResult:
        """Run buildout as ``user`` in a child of the fork server: a child forked from
        this agent would hold the agent's memory (the node's key, every partition's
        parameters) while running the partition's recipes."""
        started = time.monotonic()
        if self._zygote is None or not self._zygote.alive():
            self._zygote = _Zygote()
        z, notes = self._zygote, []
        request = {"cfg": cfg, "cwd": cwd, "log": log_path, "user": user.name, "uid": user.uid,
                   "gid": user.gid, "groups": list(user.groups), "home": user.home,
                   "umask": umask}
        try:
            z.proc.stdin.write((json.dumps(request) + "\n").encode())
            z.proc.stdin.flush()
            answer = z.read(time.monotonic() + 60)
            if "pid" not in answer:
                raise OSError(answer.get("error") or "no answer from the buildout fork server")
            pid = answer["pid"]
            _spawned(self, pid)
            done = z.read(time.monotonic() + self.timeout)
            if "code" not in done:
                notes.append(f"\nslapfed: buildout still running after {self.timeout:g}s; "
                             f"killed\n")
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, sig)
                    done = z.read(time.monotonic() + 5.0)
                    if "code" in done:
                        break
            code = done.get("code", -signal.SIGKILL)
        except (OSError, ValueError) as exc:
            self.close()
            notes.append(f"\nslapfed: {exc}\n")
            code = 1
        return _confined_result(code, notes, log_path, cwd, started)


RUNNERS = {"fork": ForkRunner, "subprocess": SubprocessRunner}


def make_runner(name: str = "fork", timeout: float = DEFAULT_TIMEOUT):
    try:
        return RUNNERS[name](timeout)
    except KeyError:
        raise ValueError(f"unknown buildout runner {name!r} (known: {', '.join(RUNNERS)})") \
            from None


# -- use cases -------------------------------------------------------------------------


def _fail(log_path: str, message: str, started: float, base: str | None = None,
          owner=None) -> str:
    confine.append_text(log_path, f"slapfed: {message}\n", base, owner=owner)
    return log_tail(log_path, base=base)


def install_software(paths: Paths, url: str, software_hash: str, runner,
                     settings: InstallSettings = OFFLINE) -> SoftwareResult:
    """Install a release into <root>/software/<hash>/ (idempotent; buildout decides),
    online or not and with a download cache as ``settings`` say. With a shared cache of
    built releases (``settings.shared_cache``), a sound entry for this very install is
    unpacked instead of building, and a successful build fills the entry."""
    started = time.monotonic()
    sdir = paths.software_dir(software_hash)
    os.makedirs(sdir, exist_ok=True)
    os.chmod(sdir, 0o755)      # partition users read and run the release, never write it
    os.makedirs(paths.log, exist_ok=True)
    log_path = paths.software_log(software_hash)
    location = release_location(url)
    if not urlparse(location).scheme and not os.path.isfile(location):
        with open(log_path, "w", encoding="utf-8"):
            pass
        tail = _fail(log_path, f"release {url} does not exist (no file {location})", started)
        return SoftwareResult(False, tail, (), time.monotonic() - started)
    try:
        if settings.download_cache:
            os.makedirs(settings.download_cache, exist_ok=True)
        text = render_software_cfg(url, sdir, settings)
    except UnsafeConfig as exc:
        with open(log_path, "w", encoding="utf-8"):
            pass
        tail = _fail(log_path, f"release {url!r} refused: {exc}", started)
        return SoftwareResult(False, tail, (), time.monotonic() - started)
    cfg = os.path.join(sdir, "buildout.cfg")
    key, entry_facts, cache_note = _cache_key(url, location, sdir, settings)
    if key:
        from . import builtcache            # tarfile and friends: only with a cache
        outcome = builtcache.unpack(settings.shared_cache, key, sdir, entry_facts)
        if outcome.hit:
            with open(cfg, "w", encoding="utf-8") as fh:
                fh.write(text)             # this node's own (online or not)
            types = software_types(sdir)
            if types:
                with open(log_path, "w", encoding="utf-8") as fh:
                    fh.write(f"slapfed: installed from the shared cache of built releases: "
                             f"{outcome.note}\n")
                return SoftwareResult(True, "", types, time.monotonic() - started,
                                      "unpacked: " + outcome.note)
            cache_note = "unpacked entry provides no instance profile; built again"
        else:
            cache_note = outcome.note
    with open(cfg, "w", encoding="utf-8") as fh:
        fh.write(text)
    result = runner.run(cfg, sdir, log_path, umask=SOFTWARE_UMASK)
    if cache_note:
        _log_note(log_path)(f"slapfed: shared cache of built releases: {cache_note}\n")
    if not result.ok:
        return SoftwareResult(False, result.log_tail or _fail(
            log_path, f"buildout exited with {result.code}", started), (), result.seconds,
            cache_note)
    types = software_types(sdir)
    if not types:
        tail = _fail(log_path, f"release {url} installed but provides no instance profile "
                               f"(expected {sdir}/instance-<type>.cfg)", started)
        return SoftwareResult(False, tail, (), time.monotonic() - started, cache_note)
    if key:
        from . import builtcache
        try:
            cache_note = "built; " + builtcache.publish(
                settings.shared_cache, key, sdir, entry_facts, time.monotonic() - started)
        except builtcache.NotCacheable as exc:
            cache_note = f"built; not stored: {exc}"
        except OSError as exc:       # a full or read-only cache never fails an install
            cache_note = f"built; not stored: {exc}"
            logging.getLogger("slapfed.node").warning(
                "built-part cache: cannot store release %s: %s", url, exc)
        _log_note(log_path)(f"slapfed: shared cache of built releases: {cache_note}\n")
    return SoftwareResult(True, "", types, time.monotonic() - started, cache_note)


def _cache_key(url: str, location: str, sdir: str, settings: InstallSettings):
    """(key, facts, '') of this install in the shared cache of built releases, or
    (None, None, why not); (None, None, '') without a cache."""
    if not settings.shared_cache:
        return None, None, ""
    from ..core import builtcache as core_builtcache
    from . import builtcache
    try:
        keyed = render_software_cfg(url, sdir, InstallSettings(False, settings.download_cache))
        entry_facts = builtcache.facts(url, location, sdir, keyed)
    except builtcache.NotCacheable as exc:
        return None, None, f"not used: {exc}"
    except UnsafeConfig as exc:
        return None, None, f"not used: {exc}"
    return core_builtcache.entry_key(entry_facts), entry_facts, ""


def read_connection(path: str, base: str | None = None) -> dict:
    """The JSON object an instance published in ``path`` ({} when none or unreadable):
    its connection parameters, or those of its shared instances. ``base``: the
    partition's directory (nothing below it is followed if it is a symlink)."""
    raw = confine.read_bytes(path, base)
    if raw is None:
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _refuse(pp, instance: dict, exc: UnsafeConfig, started: float,
            owner=None) -> InstanceResult:
    """Fail the partition for an instance the node will not write: the log says why."""
    confine.write_bytes(pp.buildout_log, b"", pp.path, owner=owner)
    tail = _fail(pp.buildout_log, f"instance {instance.get('id')!r} refused, nothing "
                                  f"written: {exc}", started, pp.path, owner)
    return InstanceResult(False, tail, time.monotonic() - started)


def instantiate(paths: Paths, partition: PartitionConfig, computer: str, instance: dict,
                runner, identity: dict | None = None) -> InstanceResult:
    """Run the instance buildout of ``instance`` in its partition (``identity``: the
    partition's certificate options for its [partition] section)."""
    started = time.monotonic()
    pp = paths.partition(partition.id)
    owner = confine.owner_ids(partition.user)
    user = confine.credentials(partition.user, pp.path)
    pp.ensure(owner)
    try:
        check_instance(instance)
    except UnsafeConfig as exc:
        return _refuse(pp, instance, exc, started, owner)
    sdir = paths.software_dir(instance["software_hash"])
    stype = instance.get("software_type") or "default"
    profile = os.path.join(sdir, f"{INSTANCE_PREFIX}{stype}{INSTANCE_SUFFIX}")
    if not os.path.isfile(profile):
        have = software_types(sdir)
        confine.write_bytes(pp.buildout_log, b"", pp.path, owner=owner)
        tail = _fail(pp.buildout_log,
                     f"release {instance.get('software_url')} has no software type {stype!r} "
                     f"(has: {', '.join(have) or 'none'})", started, pp.path, owner)
        return InstanceResult(False, tail, time.monotonic() - started)
    try:
        cfg = render_instance_cfg(profile, paths, partition, computer, instance, sdir,
                                  identity)
        raw = render_parameters_json(paths, partition, computer, instance, sdir, identity)
    except UnsafeConfig as exc:
        return _refuse(pp, instance, exc, started, owner)
    # the parameters may hold secrets: both files are the partition user's only, written
    # without following any symlink that user planted
    confine.write_bytes(parameters_file(paths, partition), raw.encode("utf-8"), pp.path,
                        0o600, owner)
    confine.write_bytes(pp.buildout_cfg, cfg.encode("utf-8"), pp.path, 0o600, owner)
    if user is None:
        result = runner.run(pp.buildout_cfg, pp.path, pp.buildout_log)
    else:
        result = runner.run(pp.buildout_cfg, pp.path, pp.buildout_log, user=user)
    if not result.ok:
        return InstanceResult(False, result.log_tail or _fail(
            pp.buildout_log, f"buildout exited with {result.code}", started, pp.path, owner),
            result.seconds)
    return InstanceResult(True, "", time.monotonic() - started,
                          read_connection(pp.connection_file, pp.path),
                          read_connection(pp.shared_connection_file, pp.path),
                          read_connection(pp.secret_connection_file, pp.path),
                          read_connection(pp.secret_shared_connection_file, pp.path))
