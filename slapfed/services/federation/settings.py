"""Federation settings of each database: this master's name, the depth limit and the
longest back-off between calls to a failing peer.

Depends on core.provenance only.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from ...core.provenance import DEFAULT_MAX_DEPTH

DEFAULT_RETRY_MAX = 30.0          # seconds: the longest back-off between two attempts
FIRST_RETRY = 0.5


# -- per-database settings --------------------------------------------------------------
@dataclass
class FederationSettings:
    here: str = "master"
    max_depth: int = DEFAULT_MAX_DEPTH
    retry_max: float = DEFAULT_RETRY_MAX


_settings: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_settings_lock = threading.Lock()


def configure(db, here: str | None = None, max_depth: int | None = None,
              retry_max: float | None = None) -> FederationSettings:
    with _settings_lock:
        s = _settings.get(db)
        if s is None:
            s = _settings[db] = FederationSettings()
    if here:
        s.here = here
    if max_depth:
        s.max_depth = max_depth
    if retry_max:
        s.retry_max = float(retry_max)
    return s


def settings_of(db) -> FederationSettings:
    return configure(db)


def _settings_app(app) -> FederationSettings:
    return settings_of(app._p_jar.db())


def backoff(db, failures: int) -> float:
    """Seconds to wait after ``failures`` failed calls in a row (>= 1): doubling from
    FIRST_RETRY, at most the master's --peer-retry-max."""
    return min(FIRST_RETRY * 2 ** (failures - 1), settings_of(db).retry_max)

