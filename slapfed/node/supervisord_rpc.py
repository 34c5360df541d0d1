"""An XML-RPC namespace loaded INTO the node's supervisord: re-read one partition's group
file instead of the whole configuration, and change a running group in place.

Depends on supervisor only (it runs inside supervisord, which imports it by the
``[rpcinterface:slapfed]`` section the node writes). supervisord's own reloadConfig
re-parses every included file, so its cost grows with the number of partitions
(~0.4 s at 300); this reads one small file whatever the node's size. supervisord can
only replace a changed group whole (every process stopped, then started); updateGroup
adds, removes or replaces single programs and leaves the others running.
"""
from __future__ import annotations

import os

from supervisor.options import ProcessGroupConfig, UnhosedConfigParser
from supervisor.process import ProcessGroup
from supervisor.states import STOPPED_STATES
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

    def _loaded(self, name):
        return next((c for c in self.supervisord.options.process_group_configs
                     if c.name == name), None)

    def diffGroup(self, name):  # noqa: N802
        """What changed between the running group ``name`` and its configuration as last
        loaded (loadGroupFile): the programs added, removed and changed, and whether
        updateGroup can apply that in place (else the group must be removed and added).

        @param string name  the group
        @return struct      {added, removed, changed: array of program names,
                            in_place: boolean}
        """
        running = self.supervisord.process_groups.get(name)
        new = self._loaded(name)
        if running is None or new is None:
            raise RPCError(Faults.BAD_NAME, name)
        old = {c.name: c for c in running.config.process_configs}
        now = {c.name: c for c in new.process_configs}
        return {"added": sorted(set(now) - set(old)),
                "removed": sorted(set(old) - set(now)),
                "changed": sorted(n for n in set(now) & set(old) if now[n] != old[n]),
                "in_place": (type(running) is ProcessGroup
                             and type(running.config) is ProcessGroupConfig
                             and type(new) is ProcessGroupConfig
                             and running.config.priority == new.priority)}

    def updateGroup(self, name):  # noqa: N802
        """Make the running group ``name`` what its loaded configuration says, in place:
        programs added are created (they start by themselves when autostart is on),
        programs removed are forgotten, programs whose configuration changed are
        replaced; the others, and their processes, are left alone. Every program
        removed or replaced must be stopped first (STILL_RUNNING otherwise).

        @param string name  the group
        @return array       the programs created or replaced
        """
        diff = self.diffGroup(name)
        if not diff["in_place"]:
            raise RPCError(Faults.FAILED, f"group {name} cannot change in place: remove "
                                          "and add it")
        running = self.supervisord.process_groups[name]
        busy = [n for n in diff["removed"] + diff["changed"]
                if running.processes[n].get_state() not in STOPPED_STATES]
        if busy:
            raise RPCError(Faults.STILL_RUNNING, f"{name}: {', '.join(sorted(busy))}")
        new = self._loaded(name)
        configs = {c.name: c for c in new.process_configs}
        for program in diff["removed"]:
            del running.processes[program]
        made = diff["added"] + diff["changed"]
        for program in made:
            configs[program].create_autochildlogs()
            running.processes[program] = configs[program].make_process(running)
        running.config = new
        return sorted(made)


def make_interface(supervisord, **config):
    return GroupFiles(supervisord)
