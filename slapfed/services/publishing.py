"""What an instance publishes: the one step that records its connection parameters, and
the redeployment of the instance that requested it when they changed.

Depends on core.states. Steps run inside a use case's transaction (services.computers'
reports and publications, services.federation's relay of a peer's answer); no
transaction and no I/O here.
"""
from __future__ import annotations

from ..core.states import DESTROYED


def publish(app, inst, connection: dict, now: float, redeployed: set | None = None) -> bool:
    """``inst`` publishes ``connection``. Unchanged, nothing is written: False. Changed,
    it is recorded and, unless ``inst`` is being destroyed, the instance that requested
    it is redeployed (``redeploy_requester``) so that its buildout reads the new values,
    as SlapOS does. ``redeployed``: the ids already redeployed by the use case, which
    publishes several values in one transaction (one new revision each)."""
    if inst.connection == connection:
        return False
    inst.connection = dict(connection)
    inst.touch(now)
    if inst.requested_state != DESTROYED:
        redeploy_requester(app, inst, now, redeployed)
    return True


def requester_deployed_here(app, inst):
    """The instance whose deployment requested ``inst`` (a partition asked: its requester
    is that instance), when a node of this master deploys it: placed on a partition
    here, not delegated to a peer, not being destroyed. None otherwise: a person, an
    open order or a peer master requested it, or nothing here runs its requester."""
    requester = app.instances.get(inst.requester)
    if requester is None or not requester.placed or requester.delegated \
            or requester.requested_state == DESTROYED:
        return None
    return requester


def redeploy_requester(app, inst, now: float, redeployed: set | None = None) -> str | None:
    """SlapOS' bang of the requester: the instance that requested ``inst`` gets a new
    revision and its computer a new serial, so that its node runs its buildout again
    and it reads what ``inst`` now publishes. It requests ``inst`` again with what it
    asked before, which changes nothing (no new revision for ``inst``): parent and
    child publishing converge. Returns the id redeployed, or None (nothing to redeploy,
    or already done: in ``redeployed``, which the id joins)."""
    requester = requester_deployed_here(app, inst)
    if requester is None or (redeployed is not None and requester.id in redeployed):
        return None
    requester.bump_revision(now)
    app.computers[requester.computer_id].bump_serial()
    if redeployed is not None:
        redeployed.add(requester.id)
    return requester.id
