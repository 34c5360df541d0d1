"""Named states; code compares against these constants, never against literals.

Depends on nothing.
"""
from __future__ import annotations

# What a requester asks an instance to be.
STARTED = "started"
STOPPED = "stopped"
DESTROYED = "destroyed"
REQUESTED_STATES = (STARTED, STOPPED, DESTROYED)

# What the node last observed of an instance (instance status).
PENDING = "pending"        # placed, no report yet for the current revision
FAILED = "failed"          # buildout, a service or a promise failed; see log_tail
UNKNOWN = "unknown"        # delegated, and the peer serving it cannot be reached now
# plus STARTED, STOPPED, DESTROYED
INSTANCE_STATUSES = (PENDING, STARTED, STOPPED, DESTROYED, FAILED, UNKNOWN)
PARTITION_REPORT_STATES = (STARTED, STOPPED, DESTROYED, FAILED)

# A software release supplied to a computer.
AVAILABLE = "available"    # desired: install it
# DESTROYED is also the desired state "uninstall it"
SUPPLY_STATES = (AVAILABLE, DESTROYED)
INSTALLED = "installed"    # observed: installed
SOFTWARE_STATUSES = (PENDING, INSTALLED, FAILED, DESTROYED)
SOFTWARE_REPORT_STATES = (INSTALLED, FAILED, DESTROYED)

DEFAULT_SOFTWARE_TYPE = "default"

# SLA keys understood by placement (the language itself is core.sla): locality levels,
# innermost first, then every key; labels are written "label.KEY".
SLA_LOCALITY_KEYS = ("host", "lan", "country", "continent")
SLA_KEYS = (("master", "computer_guid",) + SLA_LOCALITY_KEYS + ("capability",)
            + tuple(f"{m}_{lv}" for m in ("same", "different") for lv in SLA_LOCALITY_KEYS))
