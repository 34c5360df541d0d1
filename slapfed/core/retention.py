"""How long a master keeps destroyed instances: the retention option, written as a
duration (``7d``, ``12h``, ``90m``, ``30s`` or plain seconds), and how often the
maintenance loop looks for instances to forget.

Pure (no I/O); depends on core.errors.
"""
from __future__ import annotations

import math
import re

from .errors import InvalidInput

DEFAULT_RETENTION = 30 * 86400.0     # destroyed instances are forgotten after 30 days
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
MIN_PERIOD, MAX_PERIOD = 1.0, 3600.0
BATCH = 200                          # instances forgotten per transaction
MAX_BATCHES = 10                     # transactions per pass of the maintenance loop


def parse_duration(text: str, field: str = "destroyed_retention") -> float:
    """Seconds of a duration: a number with an optional unit (s, m, h, d, w); 0 is
    allowed. Raises InvalidInput naming ``field``."""
    match = _DURATION.match(str(text)) if text is not None else None
    value = float(match.group(1)) * UNITS[match.group(2) or "s"] if match else math.nan
    if not math.isfinite(value):
        raise InvalidInput(f"invalid {field} {str(text)[:40]!r}: a duration such as 7d, "
                           "12h, 90m, 30s or a number of seconds",
                           [{"field": field, "problem": "must be a duration such as 7d, "
                                                       "12h, 90m, 30s or seconds"}])
    return value


def purge_period(retention: float) -> float:
    """How often the maintenance loop looks for destroyed instances older than
    ``retention``: a tenth of it, between a second and an hour."""
    return min(MAX_PERIOD, max(MIN_PERIOD, retention / 10))
