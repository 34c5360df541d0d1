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

# What a node says of a partition whose instance moved away (its computer was lost).
QUARANTINED = "quarantined"    # its services stopped, its data set aside, kept
ERASED = "erased"              # its data erased, as an administrator allowed
MOVED_REPORT_STATES = (QUARANTINED, ERASED)

# A software release supplied to a computer.
AVAILABLE = "available"    # desired: install it
# DESTROYED is also the desired state "uninstall it"
SUPPLY_STATES = (AVAILABLE, DESTROYED)
BUILDING = "building"      # observed: the node is installing it now
INSTALLED = "installed"    # observed: installed
SOFTWARE_STATUSES = (PENDING, BUILDING, INSTALLED, FAILED, DESTROYED)
SOFTWARE_REPORT_STATES = (BUILDING, INSTALLED, FAILED, DESTROYED)

DEFAULT_SOFTWARE_TYPE = "default"

# Locality levels, innermost first: a host is in a LAN, in a country, in a continent.
# Computers, SLAs (core.sla), topology files, placement and claims all speak of these.
LOCALITY_LEVELS = ("host", "lan", "country", "continent")

# How far this master trusts a peer master, weakest first.
TRUST_OBSERVE = "observe"      # read its summary only
TRUST_DELEGATE = "delegate"    # also send it requests
TRUST_FULL = "full"
TRUST_LEVELS = (TRUST_OBSERVE, TRUST_DELEGATE, TRUST_FULL)
DEFAULT_TRUST = TRUST_DELEGATE
DELEGATING_TRUSTS = (TRUST_DELEGATE, TRUST_FULL)    # the trusts requests are delegated to

# Where this master learnt of a peer.
ORIGIN_CLI = "cli"             # an admin added it (slapfed peer add)
ORIGIN_TOPOLOGY = "topology"   # the topology files declare the link
ORIGIN_CHILD = "child"         # a master one of its instances runs
PEER_ORIGINS = (ORIGIN_CLI, ORIGIN_TOPOLOGY, ORIGIN_CHILD)

# A delegated instance's forward to its peer (model.federation): queued, forwarded,
# unreachable (retrying with back-off), refused (retrying), closed (destroyed there).
FORWARD_STATES = ("queued", "forwarded", "unreachable", "refused", "closed")
