"""The master's live state as the topology sees it: computers with locality and partitions,
instances with placement. Read-only; one read transaction.

Depends on services.tx and services.render; returns plain dicts (the ``live`` part of
GET /api/v1/topology) that slapfed.topology.graph builds on.
"""
from __future__ import annotations

from ..core import paging
from ..core.states import DESTROYED, UNKNOWN
from . import render
from .federation import forward_counts, peer_json
from .tx import read

# What the topology shows of each peer (its link's state), not its credentials' details.
# The software type of a child master's replica (profiles/master, replicas=N): such a
# child of a child master's instance, of the same release, is shown as its replica.
REPLICA_TYPE = "replica"
PEER_FIELDS = ("name", "url", "origin", "trust", "paired", "link", "last_contact",
               "last_error", "pending_forwards", "latency_ms", "site", "instance")


def live_state(conn, leases=None) -> dict:
    """{"computers": [...], "instances": [...], "masters": [...], "peers": [...]}: every
    computer, every instance, the child masters instances run (registered with this
    master) and this master's peers with the state of each link. Given the master's
    ``leases``, each computer has its lease and what runs on a computer whose lease ran
    out is ``unknown``."""
    return live_page(conn, leases)[0]


def live_page(conn, leases=None, after: list | None = None,
              limit: int | None = None) -> tuple[dict, list | None]:
    """One page of the live state: (live dict, where the next page resumes or None).

    A walk takes computers (by id) then instances (by id), ``limit`` of them together
    per page (every one when ``limit`` is None); ``after`` is [section, key] of the last
    item of the previous page. The child masters are those the page's instances run;
    the peers come with the first page only."""
    def query(app):
        section, key = after if after is not None else (COMPUTERS, None)
        budget = limit
        computers, instances, masters, peers = [], [], [], []
        nxt = None
        if section == COMPUTERS:
            found = (app.computers.items() if key is None
                     else app.computers.items(min=key, excludemin=True))
            if budget is None:
                computers = [_computer_row(c, leases) for _k, c in found]
            else:
                computers, last = paging.take(found, budget,
                                              lambda c: _computer_row(c, leases))
                if last is not None:
                    nxt = [COMPUTERS, last]
                budget -= len(computers)
            key = None
        if nxt is None and (budget is None or budget > 0):
            found = (app.instances.items() if key is None
                     else app.instances.items(min=key, excludemin=True))
            if budget is None:
                rows = [(inst, _instance_row(app, inst, leases)) for _k, inst in found]
            else:
                rows, last = paging.take(found, budget,
                                         lambda i: (i, _instance_row(app, i, leases)))
                if last is not None:
                    nxt = [INSTANCES, last]
            for inst, row in rows:
                instances.append(row)
                if inst.child_master is not None:
                    entry = {"name": inst.child_master["name"],
                             "url": inst.child_master["url"], "instance": inst.id,
                             "reference": inst.reference}
                    replicas = replicas_of(app, inst)
                    if replicas:                   # replicas=N (profiles/master)
                        entry["replicas"] = replicas
                    masters.append(entry)
        elif nxt is None and _any(app.instances):
            nxt = [INSTANCES, ""]          # the page is full: the instances come next
        if after is None:
            counts = forward_counts(app)
            for peer in app.peers.values():
                doc = peer_json(app, peer, counts)
                peers.append({**{k: doc[k] for k in PEER_FIELDS},
                              "forwards": sum(doc["forwards"].values())})
        out = {"computers": computers, "instances": instances, "masters": masters,
               "peers": peers}
        if after is None:
            out["replication"] = replication_json(app)
        return out, nxt

    return read(conn, query)


COMPUTERS, INSTANCES = "computers", "instances"     # the sections of a walk, in order
SECTIONS = (COMPUTERS, INSTANCES)


def _any(tree) -> bool:
    try:
        tree.minKey()
    except ValueError:
        return False
    return True


def _computer_row(comp, leases) -> dict:
    lease = None if leases is None else leases.lease(comp.id)
    last = comp.last_contact if lease is None else render.fresher(
        comp.last_contact, lease.renewed_at)
    row = {
        "id": comp.id, **comp.locality, "labels": dict(comp.labels),
        "capabilities": list(getattr(comp, "capabilities", ())),
        "last_contact": render.iso(last),
        "partitions": [render.partition_json(p) for p in comp.partitions.values()]}
    if lease is not None:
        row["lease"] = render.lease_json(lease, comp)
    return row


def _instance_row(app, inst, leases) -> dict:
    place = render.placement_json(app, inst)
    why = render.unreachable(app, inst, leases)
    return {
        "id": inst.id, "reference": inst.reference, "requester": inst.requester,
        "parent": inst.parent, "children": list(inst.children),
        "shared": inst.shared, "host_instance": inst.host_id,
        "software_url": inst.software_url, "software_type": inst.software_type,
        "requested_state": inst.requested_state,
        "state": UNKNOWN if why else inst.status["state"], "reason": why,
        "placement": None if place is None else {
            "computer": place["computer"], "partition": place["partition"],
            "address": place["address"]},
        "delegation": render.delegation_json(app, inst)}


def replication_json(app) -> dict:
    """This master's epoch, who held each epoch, and the replicas it knows of."""
    return {"epoch": app.epoch,
            "epochs": [{"epoch": e, "primary": n, "at": render.iso(t)} for e, n, t in app.epochs],
            "replicas": [{"name": n, "url": u, "mode": m} for n, u, m in app.replicas]}


def replicas_of(app, inst) -> list[dict]:
    """The replicas a child master's instance requested (its children of the replica
    software type of the same release), with where each runs and what it publishes
    (its URL, its role as it was deployed)."""
    out = []
    for cid in inst.children:
        child = app.instances.get(cid)
        if (child is None or child.software_type != REPLICA_TYPE
                or child.software_url != inst.software_url
                or child.requested_state == DESTROYED):
            continue
        place = render.placement_json(app, child)
        out.append({"name": child.parameters.get("name"), "reference": child.reference,
                    "instance": child.id, "url": (child.connection or {}).get("url"),
                    "mode": child.parameters.get("mode"),
                    "computer": None if place is None else place["computer"],
                    "state": child.status["state"]})
    return sorted(out, key=lambda r: (r["reference"] or ""))
