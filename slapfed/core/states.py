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
# plus STARTED, STOPPED, DESTROYED
INSTANCE_STATUSES = (PENDING, STARTED, STOPPED, DESTROYED, FAILED)
PARTITION_REPORT_STATES = (STARTED, STOPPED, DESTROYED, FAILED)

# A software release supplied to a computer.
AVAILABLE = "available"    # desired: install it
# DESTROYED is also the desired state "uninstall it"
SUPPLY_STATES = (AVAILABLE, DESTROYED)
INSTALLED = "installed"    # observed: installed
SOFTWARE_STATUSES = (PENDING, INSTALLED, FAILED, DESTROYED)
SOFTWARE_REPORT_STATES = (INSTALLED, FAILED, DESTROYED)

DEFAULT_SOFTWARE_TYPE = "default"

# Absolute SLA keys understood by placement (relative keys arrive with topology).
SLA_LOCALITY_KEYS = ("host", "lan", "country", "continent")
SLA_KEYS = ("computer_guid",) + SLA_LOCALITY_KEYS
