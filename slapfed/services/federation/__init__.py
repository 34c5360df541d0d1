"""Use cases of federation, one module per part: ``peers`` (the peer masters, pairing,
child masters), ``policy`` (the delegation policy, routing a request), ``forwards`` (the
forward table's state machine the forwarder drives) and ``peer_api`` (what peers ask).

Depends on its submodules only; it re-exports their public names so callers may write
``federation.save_peer``.
"""
from .forwards import (
    CONTACT_INTERVAL, Push, apply_changes, backoff, converge_delegated, delegate, due_pushes,
    forwarded_sla,
    mark_contacted, peer_back, peer_unreachable, record_accepted, record_failure,
    remote_reference, store_summary,
)
from .peer_api import changes, check_cursor, summary, wait_changes
from .peers import (
    adopt_child, complete_pairing, declare_peers, forget_child, forward_counts, list_peers,
    open_forwards_of, peer_credentials, peer_json, pending_pairings, record_pairing_failure,
    remove_peer, save_peer, show_peer, update_peer,
)
from .policy import peer_views, policy_of, route_request, set_policy, show_policy

__all__ = [
    "CONTACT_INTERVAL", "Push", "apply_changes", "backoff", "converge_delegated", "delegate",
    "due_pushes", "forwarded_sla",
    "mark_contacted", "peer_back", "peer_unreachable", "record_accepted", "record_failure",
    "remote_reference", "store_summary",
    "changes", "check_cursor", "summary", "wait_changes",
    "adopt_child", "complete_pairing", "declare_peers", "forget_child", "forward_counts",
    "list_peers", "open_forwards_of", "peer_credentials", "peer_json", "pending_pairings",
    "record_pairing_failure", "remove_peer", "save_peer", "show_peer", "update_peer",
    "peer_views", "policy_of", "route_request", "set_policy", "show_policy",
]
