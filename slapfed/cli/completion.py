"""Shell completion of instance references and ids: the caller's instances, as the master
lists them.

Depends on slapfed.client and the CLI config. Click calls these while the shell waits
(``_SLAPFED_COMPLETE=bash_complete``, ``zsh_complete``, ``fish_complete``), so they are
quick and quiet: one listing with a short timeout, and no completion at all, nothing
printed, on any error (no master configured, master down, refused, not an identity).
The master is taken from ``--master`` when given before the word being completed, and the
requester from ``--as``, as the command itself would; else from the environment and the
client config file. click.shell_completion is imported only when completing (a command
run does not need it).
"""
from __future__ import annotations

from ..client import MasterClient
from . import config as cfg

# Seconds to connect and to read: the shell waits for us.
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0


def caller_instances(params: dict, timeout: float | None = None) -> list[dict]:
    """The instances the caller holds: its requester name against a master in development
    mode, else the principal its certificate carries (read locally: no extra round trip).
    ``params``: the command's options parsed so far. Raises like MasterClient."""
    tls = cfg.resolve_tls()
    client = MasterClient(cfg.resolve_master(params.get("master_url")),
                          timeout=timeout or READ_TIMEOUT,
                          connect_timeout=CONNECT_TIMEOUT,
                          requester=cfg.resolve_requester(params.get("requester")), **tls)
    who = client.requester
    if who is None and tls["cert"]:
        who = cfg.certificate_identity(tls["cert"])["principal"]
    return client.list_instances(requester=who)


def _items(ctx, incomplete: str, key: str, describe) -> list[CompletionItem]:
    from click.shell_completion import CompletionItem

    try:
        instances = caller_instances(ctx.params if ctx is not None else {})
        seen, items = set(), []
        for inst in sorted(instances, key=lambda i: str(i.get(key))):
            value = inst.get(key)
            if isinstance(value, str) and value.startswith(incomplete) and value not in seen:
                seen.add(value)
                items.append(CompletionItem(value, help=describe(inst)))
        return items
    except Exception:   # noqa: BLE001 - completion must never break the shell
        return []


def _state(inst: dict) -> str:
    status = (inst.get("status") or {}).get("state", "?")
    return f"{inst.get('requested_state', '?')}, {status}"


def references(ctx, param, incomplete: str) -> list[CompletionItem]:
    """``shell_complete`` of a REFERENCE argument: references of the caller's instances
    starting with ``incomplete`` (described by requested state and status)."""
    return _items(ctx, incomplete, "reference", _state)


def instance_ids(ctx, param, incomplete: str) -> list[CompletionItem]:
    """``shell_complete`` of an INSTANCE_ID (``--parent``): ids, described by reference."""
    return _items(ctx, incomplete, "id", lambda i: f"{i.get('reference')} ({_state(i)})")
