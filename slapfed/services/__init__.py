"""Use cases of the master: one write transaction each, retried on conflict.

Depends on core, model, placement. The web layer parses bodies with core.wire and
calls these; nothing here knows HTTP.
"""
from .computers import (
    list_computers, register_computer, report_partition, report_software, set_computer_facts,
    show_computer, supply, unsupply,
)
from .desired import DesiredStateRenderer, desired_state
from .instances import (
    change_state, destroy_instance, explain_request, list_instances, register_child_master,
    request_instance,
    show_instance,
)
from .placement import configure as configure_placement
from .tx import WRITE_LOCK, app_root, close_writer, read, write

__all__ = [
    "register_computer", "set_computer_facts", "list_computers", "show_computer", "supply",
    "unsupply",
    "report_software", "report_partition", "desired_state", "DesiredStateRenderer",
    "request_instance", "explain_request", "change_state", "destroy_instance", "list_instances",
    "register_child_master",
    "show_instance", "configure_placement", "WRITE_LOCK", "app_root", "close_writer", "read", "write",
]
