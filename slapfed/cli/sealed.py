"""Opening, on the requester's side, the connection parameters a node sealed to its key.

Depends on ca.seal, core.sealed and cli.config (the client's key: ``key`` of the client
config, the one its certificate proves). A master only ever holds the sealed text; the
CLI opens each value for (instance id, parameter name), so a value moved to another
instance or parameter does not open. A value that does not open (another key, altered,
no key configured) is named with its reason and left sealed; the others still open.
"""
from __future__ import annotations

import click

from ..core.sealed import connection_context, is_sealed
from . import config as cfg
from .common import Exit

_KEYS: dict = {}


def _private_key():
    """The client's private key (cached per path), or (None, why)."""
    path = cfg.resolve_tls().get("key")
    if not path:
        return None, "no key in the client config (slapfed config set --identity DIR)"
    if path in _KEYS:
        return _KEYS[path], None
    from ..ca.keys import read_private_key
    try:
        key = read_private_key(path)
    except (OSError, ValueError, TypeError) as exc:
        return None, f"cannot read the client key {path}: {exc}"
    _KEYS[path] = key
    return key, None


def open_instance(inst: dict) -> tuple[dict, dict]:
    """(instance with its sealed connection parameters opened, {parameter: why it does
    not open}). ``sealed`` in the result lists the parameters that were sealed."""
    conn = inst.get("connection") or {}
    names = sorted(k for k, v in conn.items() if is_sealed(v))
    if not names:
        return inst, {}
    from ..ca.errors import SealedValueInvalid
    from ..ca.seal import open_sealed

    key, why = _private_key()
    opened, problems = dict(conn), {}
    for name in names:
        if key is None:
            problems[name] = why
            continue
        try:
            opened[name] = open_sealed(conn[name], key, connection_context(inst["id"], name))
        except SealedValueInvalid as exc:
            problems[name] = exc.message
    out = {**inst, "connection": opened, "sealed": names}
    if problems:
        out["unopened"] = problems
    return out, problems


def report_unopened(inst: dict, problems: dict, fatal: bool = True) -> None:
    """Name on stderr each parameter that did not open, then exit 3 (what could be
    opened was printed) when ``fatal``; else (a request answered before its node
    published) only warn."""
    if not problems:
        return
    word = "error" if fatal else "warning"
    for name, why in sorted(problems.items()):
        click.echo(f"{word}: connection parameter {name!r} of {inst['reference']!r} does "
                   f"not open: {why}", err=True)
    if fatal:
        raise SystemExit(int(Exit.INVALID))
