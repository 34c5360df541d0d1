"""Which services of a started partition to start, restart or leave running (pure).

Depends on the standard library only: no I/O, no supervisord. The agent passes, per
service (an executable of the partition's services directory): the digest of its
wrapper now, the digest recorded when the node last (re)started it, and the state
supervisord reports for its program. A service running its current wrapper is left
alone, so its connections and memory survive an instantiation that changed something
else; one running another wrapper (or when no record says which) restarts; one that
does not run (never started, stopped, exited, fatal) starts; one failing to start
(BACKOFF) or stopping is stopped for good and started afresh. Services that appeared
or vanished are the supervisord group's business (``Supervisor.sync_group``): a program
the group sync has just created runs, or is about to run, its current wrapper, so it
is started, never restarted.
"""
from __future__ import annotations

from dataclasses import dataclass

# supervisord states of a process that runs (or is being started) and should keep doing so
UP_STATES = ("RUNNING", "STARTING")


@dataclass(frozen=True)
class ServicePlan:
    """Service names, each in exactly one tuple, sorted."""

    start: tuple = ()      # not running: start it
    restart: tuple = ()    # running, or trying to, with another wrapper: stop, then start
    keep: tuple = ()       # running its current wrapper: leave it alone

    def describe(self) -> str:
        parts = [f"{what} {', '.join(names)}" for what, names in
                 (("restart", self.restart), ("start", self.start), ("keep", self.keep))
                 if names]
        return "; ".join(parts) or "no services"


def plan_services(current: dict, recorded: dict | None, states: dict,
                  created: frozenset | set = frozenset()) -> ServicePlan:
    """The plan for the services ``current`` ({service: digest of its wrapper now}).

    ``recorded``: {service: digest} when each was last (re)started, None when the node
    has no record (then every running service is restarted: what it runs is unknown);
    ``states``: {service: supervisord state name, or None when it has no program};
    ``created``: services whose program the group sync has just created or replaced."""
    start, restart, keep = [], [], []
    for name in sorted(current):
        state = states.get(name)
        if state in ("BACKOFF", "STOPPING"):
            # failing to start, or on its way down: stopped for good (which ends
            # supervisord's retries), then started afresh with its wrapper of now
            restart.append(name)
        elif state not in UP_STATES or name in created:
            start.append(name)           # stopped, exited, fatal, unknown, or just created
        elif recorded is None or recorded.get(name) != current[name]:
            restart.append(name)
        else:
            keep.append(name)
    return ServicePlan(tuple(start), tuple(restart), tuple(keep))
