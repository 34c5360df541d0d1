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


SECRET_WAIT = 120.0      # seconds a new instance's partition may take to get its certificate


def seal_parameters(client, reference: str, request, secrets: dict, wait: float) -> dict:
    """Secret parameters sealed to the partition the instance runs in, for (instance id,
    parameter): the master never sees them. An instance that has no partition with a
    certificate yet is first requested with the secrets marked pending (``request``:
    parameters -> instance JSON), so that it is placed and its node has the partition
    certified without building anything; then the values are sealed to that
    certificate. Raises InvalidInput (no partition, no certificate in time)."""
    import time

    from ..ca.seal import recipient_key, seal
    from ..core.errors import InvalidInput, NotFound
    from ..core.sealed import PENDING, parameter_context

    try:
        inst = client.find(reference)
    except NotFound:
        inst = None
    if inst is None or not partition_recipient(inst):
        inst = request({k: PENDING for k in secrets})
    deadline = time.monotonic() + max(wait, SECRET_WAIT)
    while not partition_recipient(inst):
        end = ((inst.get("delegation") or {}).get("chain") or [{}])[-1]
        if inst.get("shared") or (isinstance(end, dict) and end.get("host_instance")):
            raise InvalidInput(f"{reference!r} runs on no partition of its own: secret "
                               "parameters cannot be sealed to it",
                               [{"field": "secret", "problem": "no partition"}])
        if time.monotonic() > deadline:
            raise InvalidInput(
                f"the partition of {reference!r} has no certificate yet (is the master "
                "served over mutual TLS, and its node running?): secret parameters are "
                "sealed to it", [{"field": "secret", "problem": "no partition certificate"}])
        time.sleep(0.2)
        inst = client.show(inst["id"])
    key = recipient_key(partition_recipient(inst)["certificate"])
    return {k: seal(v, key, parameter_context(inst["id"], k)) for k, v in secrets.items()}


def partition_recipient(inst: dict) -> dict | None:
    """The certificate of the partition an instance runs in: its placement's here; for
    a delegated instance, the one the far master reported at the end of the chain
    (the node there opens the values for this instance's id, core.sealed.bound_instance)."""
    rec = (inst.get("placement") or {}).get("recipient")
    if not rec and inst.get("delegation"):
        chain = inst["delegation"].get("chain") or [{}]
        rec = chain[-1].get("recipient") if isinstance(chain[-1], dict) else None
    return rec if isinstance(rec, dict) and rec.get("certificate") else None


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
