"""Use cases on instances: request (the one verb), change state, destroy, list, show.

Depends on core, model, placement and services.tx/render/federation. Each write use case
is ONE transaction (retried on conflict) on the writer of the runtime it is given (``rt``,
services.runtime.Runtime), whose placement state and settings its steps use; a typed
error aborts it and nothing is written.
"""
from __future__ import annotations

from ..core import paging, sharing
from ..core.errors import Conflict, InvalidInput, NoCapacity, NotFound, UnknownSoftwareType
from ..core.sla import HOST_KEY
from ..core.states import DESTROYED, FAILED, PENDING, STARTED
from ..core.wire import InstanceRequest, evolve, software_hash
from ..model import Instance
from ..placement import Context
from ..placement.filters import FILTERS
from . import federation, placement, render
from .tx import clock, read, write

# Filters that judge where a shared instance's host runs (it gets no partition of its
# own, so release and capacity do not apply).
SHARED_FILTERS = tuple(n for n in placement.DEFAULT.filters if n not in ("release", "capacity",
                                                                          "capability"))
# Statuses of a non-shared instance that make it a fit host for shared instances.
HOSTABLE_STATUSES = (PENDING, STARTED)


# -- use cases ------------------------------------------------------------------
def request_instance(rt, req: InstanceRequest, recipient: dict | None = None,
                     forwarded: dict | None = None) -> tuple[bool, dict]:
    """Find or create the instance of (requester, reference) and converge it.

    ``recipient`` ({"certificate", "fingerprint"}): the requester's own certificate, the
    key its instances' secret connection parameters are sealed to (see
    _adopt_recipient). ``forwarded`` ({"certificate", "fingerprint", "instance"}): the
    recipient a peer master forwarding a delegation names, checked by the route; it is
    this one instance's (see _adopt_forwarded). Returns (created, instance JSON).
    Raises InvalidInput (unknown parent), UnknownSoftwareType, NoCapacity, Conflict. It
    runs on the writer connection, whose cache is never invalidated by this process; a
    repeated request that changes nothing modifies nothing, so its share of the group
    commit costs no write."""
    created, body, _answer = request_instance_answered(rt, req, recipient, forwarded)
    return created, body


def request_instance_answered(rt, req: InstanceRequest, recipient: dict | None = None,
                              forwarded: dict | None = None, keep_state: bool = False,
                              answer=None) -> tuple[bool, dict, object]:
    """``request_instance`` for an adapter that answers in its own terms (SLAP): the
    same one write, and (created, instance JSON, ``answer(app, inst)``) where ``answer``
    reads the instance as it stands once the use case ran, in the same transaction (no
    second read after the commit; None without ``answer``). ``keep_state``: an
    existing instance keeps its requested state (the request gave none); a new one
    gets ``req.state``."""
    def use_case(app):
        asked = req
        if keep_state:
            existing = app.find_instance(req.requester, req.reference)
            if existing is not None and existing.requested_state != req.state:
                asked = evolve(req, state=existing.requested_state)
        if recipient is not None:
            _adopt_recipient(app, asked.requester, asked.reference, recipient)
        if forwarded is not None:
            _adopt_forwarded(app, app.find_instance(asked.requester, asked.reference),
                             forwarded)
        unchanged = _render_if_unchanged(app, asked, rt.leases)
        if unchanged is not None:
            created, body = False, unchanged
            inst = app.find_instance(asked.requester, asked.reference) \
                if answer is not None else None
        else:
            now = clock()
            inst = app.find_instance(asked.requester, asked.reference)
            if inst is None:
                inst = _create(rt, app, asked, now)
                if recipient is not None:
                    inst.recipient = dict(recipient)
                _adopt_forwarded(app, inst, forwarded)
                created = True
            else:
                _update(rt, app, inst, asked, now)
                created = False
            body = render.instance_json(app, inst, rt.leases)
        return created, body, (answer(app, inst) if answer is not None else None)

    return write(rt, use_case)


def change_state(rt, instance_id: str, state: str) -> dict:
    """Set the requested state of an instance; placing it again if it had been destroyed.

    Raises NotFound, NoCapacity."""
    def use_case(app):
        inst = _get(app, instance_id)
        _set_requested_state(rt, app, inst, state, clock())
        return render.instance_json(app, inst, rt.leases)

    return write(rt, use_case)


def _set_requested_state(rt, app, inst, state: str, now: float) -> None:
    """Inside a use case: ``inst`` asked to be ``state`` (a new revision when that is a
    change), then placed, attached, delegated or released to match."""
    if inst.requested_state != state:
        inst.requested_state = state
        inst.bump_revision(now)
        _document_changed(app, inst, now)
    _converge(rt, app, inst, now)


def register_child_master(rt, instance_id: str, reg) -> dict:
    """Record that the instance runs a child master (``reg``: ChildMasterRegistration).

    Raises NotFound, Conflict (a destroyed instance, or another master already there)."""
    def use_case(app):
        inst = _get(app, instance_id)
        if inst.requested_state == DESTROYED:
            raise Conflict(f"instance {inst.reference!r} is destroyed; it hosts no master")
        record = reg.to_json()
        if inst.child_master is not None and inst.child_master.get("name") != reg.name:
            raise Conflict(f"instance {inst.reference!r} already runs master "
                           f"{inst.child_master['name']!r}, not {reg.name!r}")
        now = clock()
        if reg.pairing_token:
            federation.adopt_child(rt.settings, app, inst, reg, now)
        if inst.child_master != record:
            inst.child_master = record
            inst.touch(now)
        return render.instance_json(app, inst, rt.leases)

    return write(rt, use_case)


def bang(rt, instance_id: str) -> dict:
    """Something broke in the instance (SLAP's softwareInstanceBang): a new revision,
    so that its node deploys it again. Raises NotFound."""
    def use_case(app):
        now = clock()
        inst = _get(app, instance_id)
        if inst.requested_state != DESTROYED:
            inst.bump_revision(now)
            _document_changed(app, inst, now)
        return render.instance_json(app, inst, rt.leases)

    return write(rt, use_case)


def destroy_instance(rt, instance_id: str) -> dict:
    """Request destruction; the partition is freed when the node reports it destroyed."""
    return change_state(rt, instance_id, DESTROYED)


def explain_request(rt, req: InstanceRequest) -> dict:
    """What requesting ``req`` would decide (placement, refusals per plugin), written
    nowhere. Raises InvalidInput (unknown parent or relative reference) and
    UnknownSoftwareType. It runs on the writer connection (the placement snapshot lives
    there) and modifies no object, so its transaction commits nothing."""
    def use_case(app):
        h = software_hash(req.software_url)
        check_software_type(app, req.software_url, h, req.software_type)
        out = placement.explain(rt.placement, app, req.requester, req.reference, h, req.sla, req.parent)

        def local_fit():
            return None if out.get("placed") else out.get("message")
        route = federation.route_request(rt.settings, app, req.software_url, req.software_type,
                                         req.shared, req.sla, req.provenance, local_fit)
        out["route"] = route.to_json()
        return out

    return write(rt, use_case)


def show_instance(conn, instance_id: str, leases=None) -> dict:
    """An instance; with the master's ``leases``, ``unknown`` while its computer's lease
    has run out."""
    return read(conn, lambda app: render.instance_json(app, _get(app, instance_id), leases))


def list_instances(conn, requester: str | None = None, reference: str | None = None,
                   state: str | None = None, status: str | None = None,
                   allow=None, leases=None) -> list[dict]:
    """Instances matching every given filter (``state``: requested state, ``status``:
    observed state, as shown: ``unknown`` while its computer's lease has run out, given
    the master's ``leases``), by requester then reference when a requester is given;
    ``allow(app, inst)``, when given, keeps only what the caller may read."""
    def query(app):
        return [body for _key, body in _matching(app, requester, reference, state, status,
                                                 allow, leases, None, False)]

    return read(conn, query)


def page_instances(conn, requester: str | None = None, reference: str | None = None,
                   state: str | None = None, status: str | None = None,
                   allow=None, leases=None, after: str | None = None,
                   limit: int = paging.DEFAULT_LIMIT,
                   hide_destroyed: bool = True) -> tuple[list[dict], str | None]:
    """One page of list_instances: (instances, the key to resume after or None at the
    end). The order is by id, or by reference when a requester is given (its index);
    ``after`` resumes after that key. ``hide_destroyed`` leaves out instances whose
    requested state is destroyed (unless ``state`` asks for some)."""
    def query(app):
        return paging.take(_matching(app, requester, reference, state, status, allow,
                                     leases, after, hide_destroyed and state is None),
                           limit)

    return read(conn, query)


def page_order(requester: str | None) -> str:
    """The name of the order a list of instances is walked in (its cursors' kind)."""
    return "instances-by-reference" if requester is not None else "instances"


def _matching(app, requester, reference, state, status, allow, leases, after,
              hide_destroyed):
    """(key, instance JSON) of the instances matching the filters, in key order
    (id; reference within one requester), after key ``after``."""
    if requester is not None and reference is not None:
        inst = app.find_instance(requester, reference)
        found = [] if inst is None or (after is not None and reference <= after) \
            else [(reference, inst)]
    elif requester is not None:
        found = ((ref, app.instances[iid]) for ref, iid in app.references_of(requester,
                                                                             after))
    elif after is not None:
        found = app.instances.items(min=after, excludemin=True)
    else:
        found = app.instances.items()
    for key, inst in found:
        if reference is not None and inst.reference != reference:
            continue
        if state is not None and inst.requested_state != state:
            continue
        if hide_destroyed and inst.requested_state == DESTROYED:
            continue
        if allow is not None and not allow(app, inst):
            continue
        body = render.instance_json(app, inst, leases)
        if status is not None and body["status"]["state"] != status:
            continue
        yield key, body


# -- steps (no transaction handling below this line) -----------------------------
def _get(app, instance_id: str):
    inst = app.instances.get(instance_id)
    if inst is None:
        raise NotFound(f"no instance with id {instance_id!r}")
    return inst


def _create(rt, app, req: InstanceRequest, now: float):
    parent = None
    if req.parent is not None:
        parent = app.instances.get(req.parent)
        if parent is None:
            raise InvalidInput(f"invalid request: parent {req.parent!r} is not an instance",
                               [{"field": "parent", "problem": f"no instance with id "
                                                              f"{req.parent!r}"}])
    h = software_hash(req.software_url)
    check_software_type(app, req.software_url, h, req.software_type)
    inst = Instance(app.new_instance_id(), req.requester, req.reference, req.software_url, h,
                    req.software_type, req.parameters, req.sla, req.state, req.shared,
                    req.parent, now,
                    root_requester=parent.owner if parent is not None else req.requester)
    inst.provenance = tuple(req.provenance)
    if req.open_to:
        inst.open_to = tuple(req.open_to)
    app.add_instance(inst)
    if parent is not None:
        parent.add_child(inst.id)
    _converge(rt, app, inst, now)
    return inst


def _adopt_recipient(app, requester: str, reference: str, recipient: dict) -> None:
    """The requester's certificate becomes the one its instances' secrets are sealed to.
    All of a requester's instances hold the same one, so one of them (the one asked
    for, else the first) tells whether it changed; when it did (a renewed certificate,
    or instances from before sealing), every instance of the requester takes it and
    the computers hosting them get a new desired state: no revision, nothing is built
    again, their nodes seal the secrets again."""
    fp = recipient["fingerprint"]
    probe = app.find_instance(requester, reference)
    if probe is None:
        first = next(iter(app.instance_ids_of(requester)), None)
        probe = None if first is None else app.instances[first]
    if probe is None or (probe.recipient or {}).get("fingerprint") == fp:
        return
    for iid in app.instance_ids_of(requester):
        inst = app.instances[iid]
        if (inst.recipient or {}).get("fingerprint") != fp:
            inst.recipient = dict(recipient)
            _recipient_changed(app, inst)


# -- sealing through delegation -----------------------------------------------------------
def _adopt_forwarded(app, inst, forwarded: dict | None) -> None:
    """The recipient a forwarding peer named becomes ``inst``'s own: unlike a
    requester's certificate (_adopt_recipient), it is not shared by the requester's
    other instances (a peer forwards for many requesters). A change (a renewed
    certificate at the origin) gives the computer hosting it a new desired state (its
    node seals again, nothing is rebuilt); a delegated instance is pushed again to its
    own peer with it (services.federation.forwards: the forward's pushed_recipient)."""
    if inst is None or forwarded is None or inst.recipient == forwarded:
        return
    inst.recipient = dict(forwarded)
    _recipient_changed(app, inst)


def _recipient_changed(app, inst) -> None:
    """The computer whose node seals ``inst``'s secrets gets a new desired state: its
    own, or its host's for a shared instance (the host's node seals the values it
    publishes for it)."""
    if inst.placed:
        app.computers[inst.computer_id].bump_serial()
    elif inst.attached:
        host = app.instances.get(inst.host_id)
        if host is not None and host.placed:
            app.computers[host.computer_id].bump_serial()


def _render_if_unchanged(app, req: InstanceRequest, leases=None) -> dict | None:
    """The instance JSON when ``req`` would change nothing at all, else None."""
    inst = app.find_instance(req.requester, req.reference)
    if inst is None or not (
            req.shared == inst.shared and req.software_url == inst.software_url
            and req.software_type == inst.software_type and req.state == inst.requested_state
            and req.parameters == inst.parameters and req.sla == inst.sla
            and tuple(req.open_to) == tuple(inst.open_to)):
        return None
    if inst.delegated:
        converged = True        # the forwarder pushes what changed to the peer
    elif inst.requested_state == DESTROYED:
        converged = not inst.attached and (inst.placed or inst.status["state"] == DESTROYED)
    else:
        converged = inst.attached if inst.shared else inst.placed
    return render.instance_json(app, inst, leases) if converged else None


def _update(rt, app, inst, req: InstanceRequest, now: float) -> None:
    """Apply a repeated request; the revision bumps only if something it covers changed."""
    if req.shared != inst.shared:
        if inst.placed or inst.attached:
            raise Conflict(
                f"instance {inst.reference!r} is {'shared' if inst.shared else 'not shared'}; "
                "the shared flag cannot change while it is placed (destroy it first or "
                "use another reference)")
        app.unindex_release(inst)
        app.forget_awaiting(inst)
        inst.shared = req.shared
        app.index_release(inst)
    changed = False
    if req.software_url != inst.software_url or req.software_type != inst.software_type:
        _change_release(app, inst, req.software_url, req.software_type, now)
        changed = True
    if req.parameters != inst.parameters:
        inst.parameters = dict(req.parameters)
        changed = True
    if req.state != inst.requested_state:
        inst.requested_state = req.state
        changed = True
    if req.sla != inst.sla:
        inst.sla = copy_sla(req.sla)   # applies at the next placement; never moves it now
        inst.touch(now)
    if tuple(req.open_to) != tuple(inst.open_to):
        inst.open_to = tuple(req.open_to)
        inst.touch(now)
        _enforce_opening(rt, app, inst, now)
    if changed:
        inst.bump_revision(now)
        _document_changed(app, inst, now)
    _converge(rt, app, inst, now)


def _change_release(app, inst, url: str, software_type: str, now: float) -> None:
    h = software_hash(url)
    check_software_type(app, url, h, software_type)
    if inst.shared_ids:
        raise Conflict(f"instance {inst.reference!r} hosts {len(inst.shared_ids)} shared "
                       "instances; its release and software type cannot change")
    if inst.placed:
        comp = app.computers[inst.computer_id]
        if h not in comp.available_release_hashes():
            raise Conflict(f"instance {inst.reference!r} is on computer {comp.id}, which is "
                           f"not supplied release {url}; supply it there first")
    if inst.attached:
        _detach_shared(app, inst, now)
    app.unindex_release(inst)
    app.forget_awaiting(inst)
    inst.software_url, inst.software_hash, inst.software_type = url, h, software_type
    app.index_release(inst)


def copy_sla(sla):
    """A private copy of an SLA in its wire shape (an object, or an array of objects)."""
    if isinstance(sla, (list, tuple)):
        return [dict(alt) for alt in sla]
    return dict(sla or {})


def check_software_type(app, url: str, h: str, software_type: str) -> None:
    """UnknownSoftwareType when some computer reported the release's types without it.

    Reads only the computers the release was supplied to (App.supplied index)."""
    known = set()
    for cid in app.computer_ids_supplied(h):
        comp = app.computers.get(cid)
        sw = None if comp is None else comp.software.get(h)
        if sw is not None and sw.software_types:
            known.update(sw.software_types)
    if known and software_type not in known:
        raise UnknownSoftwareType(
            f"software type {software_type!r} is not provided by release {url} "
            f"(known: {', '.join(sorted(known))})",
            [{"field": "software_type", "problem": f"not among {sorted(known)}"}])


def _document_changed(app, inst, now: float) -> None:
    """Bump the serial of the computer whose desired-state document shows ``inst``."""
    if inst.placed:
        app.computers[inst.computer_id].bump_serial()
    elif inst.attached:
        host = app.instances.get(inst.host_id)
        if host is not None:
            host.bump_revision(now)
            _document_changed(app, host, now)


def _converge(rt, app, inst, now: float) -> None:
    """Place, attach, delegate or detach so the instance matches its requested state; a
    host that may take shared instances then takes those waiting for it."""
    _converge_one(rt, app, inst, now)
    app.note_awaiting(inst)
    if not inst.shared:
        _offer_host(rt, app, inst, now)


def _converge_one(rt, app, inst, now: float) -> None:
    if inst.delegated:
        federation.converge_delegated(app, inst, now)
        return
    if inst.requested_state == DESTROYED:
        if inst.child_master is not None:
            inst.child_master = None     # the master it ran is going away with it
            federation.forget_child(app, inst)
        if inst.attached:
            _detach_shared(app, inst, now)
        if not inst.placed and inst.status["state"] != DESTROYED:
            # Nothing runs anywhere: destruction is complete at once.
            inst.set_status(state=DESTROYED, revision=inst.revision, log_tail="", promises=())
        return
    if inst.shared:
        if not inst.attached:
            _serve_shared(rt, app, inst, now)
    elif not inst.placed:
        _serve(rt, app, inst, now, lambda: _place(rt, app, inst))


def _serve(rt, app, inst, now: float, serve_here) -> None:
    """Serve the instance here (``serve_here``) or delegate it to a peer, as routing
    decides. Serving here is tried only when routing asks whether it would fit (a
    success is kept: the decision is then local)."""
    local_error: list = []

    def local_fit():
        try:
            serve_here()
        except NoCapacity as exc:
            local_error.append(exc)
            return exc.message
        return None

    route = federation.route_request(rt.settings, app, inst.software_url, inst.software_type, inst.shared,
                                     inst.sla, inst.provenance, local_fit)
    if route.delegated:
        federation.delegate(rt.settings, app, inst, route, now)
        return
    if inst.placed or inst.attached:
        return
    if local_error:
        raise local_error[0]
    serve_here()


def _place(rt, app, inst) -> None:
    placement.place(rt.placement, app, inst)
    inst.set_status(state=PENDING, log_tail="", promises=())
    inst.connection = {}


def _host_refusal(ctx, view) -> str | None:
    for name in SHARED_FILTERS:
        reason = FILTERS[name].fits(view, ctx)
        if reason is not None:
            return reason
    return None


def _may_host(host, inst) -> bool:
    """Whether ``host`` could take shared instance ``inst`` now: a started, placed
    non-shared instance of the same release and type, open to ``inst``'s owner."""
    return (host.id != inst.id and not host.shared and host.placed
            and host.requested_state == STARTED and host.status["state"] in HOSTABLE_STATUSES
            and host.software_hash == inst.software_hash
            and host.software_type == inst.software_type and _consents(host, inst))


def _consents(host, inst) -> bool:
    """Whether ``host``'s requester let ``inst``'s owner attach to it (core.sharing)."""
    alts = inst.sla if isinstance(inst.sla, (list, tuple)) else [inst.sla or {}]
    named = any(alt.get(HOST_KEY) == host.id for alt in alts)
    return sharing.opens_to(host.open_to, host.owner, inst.owner, named)


def _choose_host(rt, app, inst, only=None):
    """The first host, by SLA alternative then id, that takes shared instance ``inst``
    (``only``: consider that host alone), and {refusal reason: count} over the hosts open
    to its owner that an alternative naming no host refused. Hosts closed to the owner
    are never looked at further, so nothing here depends on what they are."""
    request = placement.request_of(rt.placement, app, inst)
    snap = placement.snapshot_of(rt.placement, app)
    refused: dict = {}
    released = None
    for alternative in request.sla.alternatives:
        named = alternative.host
        if only is not None:
            cands = [only] if named in (None, only.id) else []
        elif named is not None:
            cands = [c for c in (app.instances.get(named),) if c is not None]
        else:
            if released is None:
                released = [app.instances[iid] for iid in app.instance_ids_of_release(
                    inst.software_hash, inst.software_type)]
            cands = released
        ctx = Context(request, alternative, snap)
        for cand in cands:
            if not _may_host(cand, inst):
                continue
            view = snap.get(cand.computer_id)
            reason = "computer unknown" if view is None else _host_refusal(ctx, view)
            if reason is None:
                return cand, refused
            if named is None:
                refused[reason] = refused.get(reason, 0) + 1
    return None, refused


def _named_hosts(inst) -> tuple:
    """The hosts a shared instance's SLA names when every alternative names one (it
    then waits for those only), else ()."""
    alts = inst.sla if isinstance(inst.sla, (list, tuple)) else [inst.sla or {}]
    named = tuple(dict.fromkeys(alt.get(HOST_KEY) for alt in alts))
    return () if None in named else named


def _attach_shared(rt, app, inst, now: float) -> None:
    """Attach a shared instance to the first started host of its release and type that
    is open to its owner and whose computer satisfies the SLA (alternatives in order;
    locality, labels, relative keys; ``host_instance`` names the host). Raises
    NoCapacity, worded the same whether or not hosts closed to the owner exist."""
    host, refused = _choose_host(rt, app, inst)
    if host is None:
        why = ", ".join(f"{n} refused by {r}" for r, n in sorted(refused.items()))
        named = _named_hosts(inst)
        if named:
            text = sharing.named_host_refused(" or ".join(named), inst.owner)
        else:
            text = (f"no started instance of {inst.software_url} with software type "
                    f"{inst.software_type!r} open to {inst.owner}"
                    + (f" fits ({why})" if why else " exists here"))
        raise NoCapacity(f"no host for shared instance {inst.reference}: {text}",
                         [{"reason": r, "count": n} for r, n in sorted(refused.items())])
    _attach(app, inst, host, now)


def _attach(app, inst, host, now: float) -> None:
    inst.host_id = host.id
    host.attach_shared(inst.id)
    host.bump_revision(now)
    _document_changed(app, host, now)
    inst.set_status(state=PENDING, log_tail="", promises=())
    inst.touch(now)


def _serve_shared(rt, app, inst, now: float) -> None:
    """Attach (or delegate) a shared instance; with no host to take it here, it waits:
    ``failed`` when its SLA names hosts (none of them takes it), else ``pending``. In
    both cases it attaches once a host is opened to its owner (``_offer_host``)."""
    try:
        _serve(rt, app, inst, now, lambda: _attach_shared(rt, app, inst, now))
    except NoCapacity:
        named = _named_hosts(inst)
        if named:
            _set_waiting(inst, FAILED, sharing.named_host_refused(" or ".join(named),
                                                                  inst.owner), now)
        else:
            _set_waiting(inst, PENDING, sharing.waiting_for_a_host(
                inst.software_url, inst.software_type, inst.owner), now)


def _set_waiting(inst, state: str, why: str, now: float) -> None:
    if inst.connection:
        inst.connection = {}
    if inst.status["state"] != state or inst.status["log_tail"] != why:
        inst.set_status(state=state, log_tail=why, promises=())
        inst.touch(now)


def _offer_host(rt, app, host, now: float) -> None:
    """A host that may take shared instances attaches those waiting for one that it is
    open to (their SLA permitting), in id order."""
    if host.shared or host.delegated or not host.placed or host.requested_state != STARTED \
            or host.status["state"] not in HOSTABLE_STATUSES:
        return
    for sid in app.instance_ids_awaiting(host.software_hash, host.software_type):
        waiting = app.instances.get(sid)
        if waiting is None or not waiting.awaits_host or not _consents(host, waiting):
            continue
        chosen, _refused = _choose_host(rt, app, waiting, only=host)
        if chosen is not None:
            _attach(app, waiting, host, now)
            app.note_awaiting(waiting)


def _enforce_opening(rt, app, host, now: float) -> None:
    """The host's opening narrowed: shared instances whose owner it is no longer open to
    are detached; each moves to another host open to it, or is ``failed`` saying its host
    closed (and attaches again once a host opens to it)."""
    for sid in tuple(host.shared_ids):
        shared = app.instances.get(sid)
        if shared is None or _consents(host, shared):
            continue
        _detach_shared(app, shared, now)
        _rehost(rt, app, shared, now, FAILED, sharing.host_closed(shared.owner))


def _rehost(rt, app, shared, now: float, state: str, why: str) -> None:
    """A shared instance lost its host: attach it to another host open to it, else show
    ``state`` and ``why`` and wait for one."""
    other, _refused = _choose_host(rt, app, shared)
    if other is not None:
        _attach(app, shared, other, now)
    else:
        _set_waiting(shared, state, why, now)
    app.note_awaiting(shared)


def host_gone(rt, app, shared, now: float) -> None:
    """The partition of ``shared``'s host was freed (its host is destroyed): the
    computers' report use case calls this for each shared instance it held."""
    shared.host_id = None
    shared.connection = {}
    _rehost(rt, app, shared, now, PENDING, sharing.host_gone(shared.owner))


def _detach_shared(app, inst, now: float) -> None:
    host = app.instances.get(inst.host_id)
    inst.host_id = None
    inst.connection = {}        # what the host published for it no longer holds
    if host is not None and host.detach_shared(inst.id):
        host.bump_revision(now)
        _document_changed(app, host, now)
