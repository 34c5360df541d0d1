"""Opening, on the requester's side, the connection parameters a node sealed to its key.

Depends on sealed_values (ca.seal), core.sealed and cli.config (the client's key: ``key`` of the client
config, the one its certificate proves). A master only ever holds the sealed text; the
CLI opens each value for (instance id, parameter name), so a value moved to another
instance or parameter does not open. A value that does not open (another key, altered,
no key configured) is named with its reason and left sealed; the others still open.
"""
from __future__ import annotations

import click

from ..core.sealed import is_sealed
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
    """(instance with its sealed connection parameters opened with the client's key,
    {parameter: why it does not open}). ``sealed`` in the result lists the parameters
    that were sealed."""
    conn = inst.get("connection") or {}
    if not any(is_sealed(v) for v in conn.values()):
        return inst, {}
    from ..sealed_values import open_connection
    key, why = _private_key()
    return open_connection(inst, key, why or "")


def seal_parameters(client, reference: str, request, secrets: dict, wait: float) -> dict:
    """Secret parameters sealed to the partition the instance REFERENCE runs in
    (sealed_values.seal_to_partition: placed first, its secrets pending, when it has no
    partition certificate yet). Raises InvalidInput."""
    from ..core.errors import NotFound
    from ..sealed_values import SECRET_WAIT, seal_to_partition

    try:
        inst = client.find(reference)
    except NotFound:
        inst = None
    return seal_to_partition(client, inst, request, secrets, max(wait, SECRET_WAIT),
                             repr(reference))[0]


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
