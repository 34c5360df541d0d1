"""An XML-RPC namespace loaded INTO the node's supervisord: re-read one partition's group
file instead of the whole configuration.

Depends on supervisor only (it runs inside supervisord, which imports it by the
``[rpcinterface:slapfed]`` section the node writes). supervisord's own reloadConfig
re-parses every included file, so its cost grows with the number of partitions
(~0.4 s at 300); this reads one small file whatever the node's size.
"""
from __future__ import annotations

import os

from supervisor.options import UnhosedConfigParser
from supervisor.xmlrpc import Faults, RPCError

ADDED, CHANGED, UNCHANGED, REMOVED, ABSENT = "added", "changed", "unchanged", "removed", "absent"


class GroupFiles:
    """The ``slapfed`` namespace of the node's supervisord."""

    def __init__(self, supervisord):
        self.supervisord = supervisord

    def loadGroupFile(self, name, path):  # noqa: N802 - XML-RPC method names are camelCase
        """Make supervisord's configuration of group ``name`` what ``path`` says (absent
        file: no such group), without touching running processes.

        @param string name  the group
        @param string path  its config file
        @return string      added, changed, unchanged, removed or absent: what the
                            caller must still do with addProcessGroup/removeProcessGroup
        """
        options = self.supervisord.options
        new = None
        if os.path.exists(path):
            parser = UnhosedConfigParser()
            parser.expansions = options.environ_expansions
            try:
                parser.read(path)
                groups = options.process_groups_from_parser(parser)
            except ValueError as exc:
                raise RPCError(Faults.CANT_REREAD, f"{path}: {exc}") from None
            new = next((g for g in groups if g.name == name), None)
        options.process_group_configs = [
            c for c in options.process_group_configs if c.name != name] + ([new] if new else [])
        running = self.supervisord.process_groups.get(name)
        if new is None:
            return REMOVED if running is not None else ABSENT
        if running is None:
            return ADDED
        return UNCHANGED if running.config == new else CHANGED


def make_interface(supervisord, **config):
    return GroupFiles(supervisord)
