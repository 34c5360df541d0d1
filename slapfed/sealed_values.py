"""Secrets on the side of a master's client: opening the connection parameters a node
sealed to this client's key, and sealing parameters to the partition an instance runs in.

Depends on ca.seal, ca.keys and core.sealed (and a MasterClient passed in). Used by the
CLI (``slapfed show``, ``request --secret``/``--secret-file``), by recipes that request
instances as their partition (profiles/master's replicas), and by anything that reads a
child master's ``admin-token``. A master only ever relays the sealed text.
"""
from __future__ import annotations

import time

from .core.sealed import PENDING, connection_context, is_sealed, parameter_context

SECRET_WAIT = 120.0      # seconds a new instance's partition may take to get its certificate


def read_key(path: str):
    """The private key in ``path`` (PEM)."""
    from .ca.keys import read_private_key
    return read_private_key(path)


def open_connection(inst: dict, key, why: str = "no key to open it with") -> tuple[dict, dict]:
    """(instance with its sealed connection parameters opened with ``key``, {parameter:
    why it does not open}). ``sealed`` in the result lists the parameters that were
    sealed; each opens for (instance id, parameter name) only. ``key`` None: nothing
    opens, for the reason ``why``."""
    conn = inst.get("connection") or {}
    names = sorted(k for k, v in conn.items() if is_sealed(v))
    if not names:
        return inst, {}
    from .ca.errors import SealedValueInvalid
    from .ca.seal import open_sealed

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


def opened_connection(inst: dict, key_path: str) -> dict:
    """The connection parameters of ``inst`` with every sealed one opened with the key in
    ``key_path`` (a client's identity.key). Raises SealedValueInvalid naming the first
    that does not open."""
    from .ca.errors import SealedValueInvalid
    out, problems = open_connection(inst, read_key(key_path))
    if problems:
        name = sorted(problems)[0]
        raise SealedValueInvalid(f"connection parameter {name!r} of {inst.get('reference')!r}"
                                 f" does not open: {problems[name]}",
                                 [{"field": f"connection.{name}", "problem": "does not open"}])
    return out["connection"]


def partition_recipient(inst: dict) -> dict | None:
    """The certificate of the partition an instance runs in: its placement's here; for
    a delegated instance, the one the far master reported at the end of the chain
    (the node there opens the values for this instance's id, core.sealed.bound_instance)."""
    rec = (inst.get("placement") or {}).get("recipient")
    if not rec and inst.get("delegation"):
        chain = inst["delegation"].get("chain") or [{}]
        rec = chain[-1].get("recipient") if isinstance(chain[-1], dict) else None
    return rec if isinstance(rec, dict) and rec.get("certificate") else None


def seal_to_partition(client, inst: dict | None, request, secrets: dict,
                      wait: float = SECRET_WAIT, label: str = "the instance") -> tuple[dict, dict]:
    """(secrets sealed to the partition the instance runs in, for (instance id,
    parameter), the instance as last seen): the master never sees them. ``inst`` is the
    instance as it is now (None: not requested yet). One that has no partition with a
    certificate yet is first requested with the secrets marked pending (``request``:
    parameters -> instance JSON), so that it is placed and its node has the partition
    certified without building anything; then the values are sealed to that
    certificate. Raises InvalidInput (no partition, no certificate in time)."""
    from .ca.seal import recipient_key, seal
    from .core.errors import InvalidInput

    if inst is None or not partition_recipient(inst):
        inst = request({k: PENDING for k in secrets})
    deadline = time.monotonic() + max(wait, 1.0)
    while not partition_recipient(inst):
        end = ((inst.get("delegation") or {}).get("chain") or [{}])[-1]
        if inst.get("shared") or (isinstance(end, dict) and end.get("host_instance")):
            raise InvalidInput(f"{label} runs on no partition of its own: secret "
                               "parameters cannot be sealed to it",
                               [{"field": "secret", "problem": "no partition"}])
        if time.monotonic() > deadline:
            raise InvalidInput(
                f"the partition of {label} has no certificate yet (is the master served "
                "over mutual TLS, and its node running?): secret parameters are sealed to "
                "it", [{"field": "secret", "problem": "no partition certificate"}])
        time.sleep(0.2)
        inst = client.show(inst["id"])
    key = recipient_key(partition_recipient(inst)["certificate"])
    return ({k: seal(v, key, parameter_context(inst["id"], k)) for k, v in secrets.items()},
            inst)
