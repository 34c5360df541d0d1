"""Where the CLI finds its master and requester: flag, then environment, then config file.

Depends on the standard library, core.errors and ca (to read the identity a local
certificate carries). The file is JSON:
``{"master": "https://127.0.0.1:8470", "ca": ".../ca.crt", "cert": ".../identity.crt",
"key": ".../identity.key"}`` (``requester`` only for a master in development mode) at
``$SLAPFED_CONFIG`` or ``~/.config/slapfed/client.json``. Paths are absolute.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.errors import InvalidInput

ENV_MASTER = "SLAPFED_MASTER"
ENV_REQUESTER = "SLAPFED_REQUESTER"
ENV_CONFIG = "SLAPFED_CONFIG"
CONFIG_KEYS = ("master", "requester", "ca", "cert", "key")
TLS_KEYS = ("ca", "cert", "key")
# The files `slapfed ca issue --out DIR` writes: what `config set --identity DIR` records.
IDENTITY_FILES = {"ca": "ca.crt", "cert": "identity.crt", "key": "identity.key"}


def config_path() -> Path:
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        return Path(explicit)
    return Path(os.path.expanduser("~")) / ".config" / "slapfed" / "client.json"


def read_config() -> dict:
    path = config_path()
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidInput(f"cannot read the client config {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"client config {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"client config {path} must hold a JSON object")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise InvalidInput(f"client config {path} has unknown keys {unknown} "
                           f"(known: {', '.join(CONFIG_KEYS)})")
    return data


def write_config(values: dict) -> Path:
    path = config_path()
    data = read_config()
    data.update({k: v for k, v in values.items() if v is not None})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def resolve_master(flag: str | None) -> str | None:
    return flag or os.environ.get(ENV_MASTER) or read_config().get("master")


def resolve_requester(flag: str | None) -> str:
    chosen = flag or os.environ.get(ENV_REQUESTER) or read_config().get("requester")
    if chosen:
        return chosen
    import getpass          # (only then: it imports termios)

    return getpass.getuser()


def resolve_tls() -> dict:
    """``{"ca", "cert", "key"}`` from the config file (None where unset)."""
    data = read_config()
    return {k: data.get(k) for k in TLS_KEYS}


def identity_files(directory: str) -> dict:
    """The three files of an identity directory, as absolute paths; InvalidInput listing
    every missing one."""
    base = Path(directory).expanduser().resolve()
    found = {k: str(base / name) for k, name in IDENTITY_FILES.items()}
    missing = [{"field": k, "problem": f"{found[k]} does not exist"}
               for k in IDENTITY_FILES if not Path(found[k]).is_file()]
    if missing:
        raise InvalidInput(f"{base} is not an identity directory (slapfed ca issue --out "
                           f"DIR writes one)", missing)
    return found


def certificate_identity(path: str) -> dict:
    """What the certificate file at ``path`` says, read locally: ``principal``, ``role``,
    ``name``, ``serial``, ``not_before``, ``not_after`` (ISO). The master takes who you are
    from this certificate. Raises InvalidInput when it is unreadable or carries no
    slapfed identity."""
    from ..ca.authority import CertificateRecord, load_certificate
    from ..core.errors import SlapfedError

    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the certificate {path}: {exc.strerror}",
                           [{"field": "cert", "problem": f"{path}: {exc.strerror}"}]) from None
    try:
        record = CertificateRecord.from_certificate(load_certificate(raw))
    except SlapfedError as exc:
        raise InvalidInput(f"the certificate {path} carries no usable identity: {exc.message}",
                           [{"field": "cert", "problem": exc.message}]) from None
    return {"principal": record.identity.principal, "role": record.identity.role,
            "name": record.identity.name, "serial": record.serial,
            "not_before": record.not_before.isoformat(), "not_after": record.not_after.isoformat()}
