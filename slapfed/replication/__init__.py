"""Master replicas: the role a data directory plays (local), the primary's side of the
transaction stream (sync acknowledgements, fencing), and the replica's follower.

Depends on core, ca, client, enrol, store (shipping), services and logs/locks. The
decisions that need no I/O live in core.replication.
"""
