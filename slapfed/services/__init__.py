"""Use cases of the master: one write transaction each, retried on conflict.

Depends on core, model, placement and federation (routing). The web layer parses bodies
with core.wire and calls these with the master's runtime (services.runtime.Runtime: its
writer, placement state and settings) for writes, a connection for reads; nothing here
knows HTTP and nothing here keeps state of its own between calls.
"""
from .computers import (
    bang_computer, keep_only_requested_children, record_partition_certificate,
    list_computers, publish_connection, register_computer, report_hosted, report_partition,
    report_software, set_computer_facts, show_computer, supply, unsupply,
)
from .desired import DesiredStateRenderer, desired_state
from .instances import (
    bang, change_state, destroy_instance, explain_request, list_instances, register_child_master,
    request_instance,
    show_instance,
)
from .lost import declare_lost, declare_peer_lost, report_moved, wipe as wipe_computer
from .rename import rename_hosted, rename_instance
from .runtime import MasterSettings, Runtime
from .tx import app_root, read, write

# paging of the lists (core.paging)
from .computers import page_computers  # noqa: E402
from .instances import page_instances, page_order  # noqa: E402
# a request answered in the adapter's own terms (SLAP), in the same one write
from .instances import request_instance_answered  # noqa: E402

__all__ = [
    "register_computer", "set_computer_facts", "list_computers", "show_computer", "supply",
    "unsupply",
    "report_software", "report_partition", "report_hosted", "publish_connection", "bang",
    "bang_computer", "keep_only_requested_children", "desired_state", "DesiredStateRenderer",
    "request_instance", "explain_request", "change_state", "destroy_instance", "list_instances",
    "register_child_master", "declare_lost", "wipe_computer", "report_moved",
    "declare_peer_lost",
    "show_instance", "MasterSettings", "Runtime", "app_root", "read", "write",
    "page_computers", "page_instances", "page_order",
    "record_partition_certificate",
    "request_instance_answered",
    "rename_hosted", "rename_instance",
]
