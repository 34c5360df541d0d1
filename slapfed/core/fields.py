"""The patterns and limits of wire fields that code outside the master needs too (the
node agent, the buildout runner, the client), and the key of a software release.

Depends on the standard library and core.cfgvalue only -- never on pydantic: a node's
cycle and the CLI read these without building the wire types. core.wire declares the
bodies with them (and re-exports them: ``from slapfed.core.wire import ID_RE`` works).
"""
from __future__ import annotations

import hashlib
import re

from . import cfgvalue

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
SOFTWARE_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
PARAMETER_KEY_RE = re.compile(r"^" + cfgvalue.KEY_RE.pattern + r"\Z")  # + key_problem
MAX_LOG_TAIL = 64 * 1024


def software_hash(url: str) -> str:
    """The key of a software release on disk and in routes: stable for a URL."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
