"""Rendering model objects into the JSON documents of the API (plain dicts).

Depends on core (states, leases) and on model objects only through their attributes;
no I/O of its own. Persistent classes hold state, this module holds their wire shape.
A renderer given the master's ``leases`` (services.leases) shows a computer whose lease
ran out, and what it hosts, as ``unknown``, read at that moment: nothing is written,
and the stored status shows again once its node is heard from.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from ..core.states import DESTROYED, PENDING, UNKNOWN


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def software_json(sw) -> dict:
    return {"url": sw.url, "hash": sw.hash, "state": sw.state, "status": sw.status,
            "log_tail": sw.log_tail, "software_types": list(sw.software_types),
            "reported_at": iso(sw.reported_at), "failed_installs": sw.failed_installs}


def release_json(comp, software_hash: str) -> dict:
    """The state of one release on one computer, short: for an instance's placement."""
    sw = comp.software.get(software_hash)
    if sw is None:
        return {"status": PENDING, "reported_at": None, "failed_installs": 0, "reason": None}
    reason = None
    if sw.failed_installs and sw.log_tail.strip():
        reason = sw.log_tail.strip().splitlines()[-1][:500]
    return {"status": sw.status, "reported_at": iso(sw.reported_at),
            "failed_installs": sw.failed_installs, "reason": reason}


def partition_json(p) -> dict:
    return {"id": p.id, "address": p.address, "port_base": p.port_base,
            "port_count": p.port_count, "instance": p.instance_id,
            "capabilities": list(p.capabilities), "moved": moved_json(p)}


def moved_json(p) -> dict | None:
    """A partition whose instance moved away (its computer was lost): which instance,
    whether the node set its data aside, whether an administrator let it erase them."""
    if p.moved_instance is None:
        return None
    return {"instance": p.moved_instance, "quarantined": bool(p.quarantined),
            "wipe": bool(p.wipe)}


def lost_json(comp) -> dict | None:
    if not comp.lost:
        return None
    return {"at": iso(comp.lost_at), "reason": comp.lost_reason}


def fresher(*times):
    """The latest of the times given (None: none known)."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


def lease_json(lease, comp=None) -> dict | None:
    """A computer's lease (core.leases.Lease) in its wire shape, with the transitions
    the computer ``comp`` records (services.lease_marks); None without a lease."""
    if lease is None:
        return None
    body = {"state": lease.state, "expires_at": iso(lease.expires_at),
            "interval": lease.interval}
    if comp is not None:
        body.update(ran_out_at=iso(comp.lease_out_at), back_at=iso(comp.lease_back_at))
    return body


def unreachable_reason(comp_id: str, last_contact: float | None, lease) -> str:
    seen = iso(last_contact) if last_contact is not None else "never"
    return f"computer {comp_id} last seen {seen}, lease {lease.interval:g} s ran out"


def computer_json(comp, leases=None) -> dict:
    lease = None if leases is None else leases.lease(comp.id)
    last = comp.last_contact if lease is None else fresher(comp.last_contact,
                                                            lease.renewed_at)
    body = {"id": comp.id, "host": comp.host, "lan": comp.lan, "country": comp.country,
            "continent": comp.continent, "labels": dict(comp.labels),
            "capabilities": list(comp.capabilities), "last_contact": iso(last),
            "serial": comp.serial, "lost": lost_json(comp),
            "partitions": [partition_json(p) for p in comp.partitions.values()],
            "software": [software_json(sw) for sw in comp.software.values()]}
    if lease is not None:
        body["lease"] = lease_json(lease, comp)
    return body


def serving_computer(app, inst) -> str | None:
    """The computer an instance runs on: its own partition's, or its host instance's."""
    if inst.computer_id is not None:
        return inst.computer_id
    if inst.host_id is not None:
        host = app.instances.get(inst.host_id)
        if host is not None:
            return host.computer_id
    return None


def unreachable(app, inst, leases) -> str | None:
    """Why an instance's reported status cannot be trusted now (its computer's lease
    ran out), or None."""
    if leases is None or inst.delegated or inst.status["state"] == DESTROYED:
        return None
    cid = serving_computer(app, inst)
    if cid is None:
        return None
    lease = leases.lease(cid)
    if not lease.expired:
        return None
    comp = app.computers.get(cid)
    last = fresher(None if comp is None else comp.last_contact, lease.renewed_at)
    return unreachable_reason(cid, last, lease)


def placement_json(app, inst) -> dict | None:
    if inst.partition_id is None:
        return None
    comp = app.computers[inst.computer_id]
    p = comp.partitions[inst.partition_id]
    return {"computer": inst.computer_id, "partition": p.id, "address": p.address,
            "port_base": p.port_base, "port_count": p.port_count,
            "locality": {"host": comp.host, "lan": comp.lan, "country": comp.country,
                         "continent": comp.continent},
            "release": release_json(comp, inst.software_hash),
            "recipient": None if p.recipient is None else dict(p.recipient)}


def host_placement_json(app, inst) -> dict | None:
    """A shared instance's host, where it runs: computer, partition and address."""
    host = app.instances.get(inst.host_id) if inst.shared and inst.host_id else None
    if host is None or host.partition_id is None:
        return None
    p = app.computers[host.computer_id].partitions[host.partition_id]
    return {"computer": host.computer_id, "partition": p.id, "address": p.address}


def status_json(status: dict, unreachable: str | None = None) -> dict:
    """An instance's status; ``unreachable`` (why its computer is not heard from) shows
    it ``unknown`` with that reason, and what was last reported in ``reported_state``."""
    body = {"state": status["state"], "revision": status["revision"],
            "reported_at": iso(status["reported_at"]), "log_tail": status["log_tail"],
            "promises": [dict(p) for p in status["promises"]]}
    if unreachable is not None:
        body.update(state=UNKNOWN, reported_state=status["state"],
                    log_tail=f"{unreachable}; last reported {status['state']}")
    elif status["state"] == UNKNOWN and status.get("reported_state"):
        # delegated: the peer shows it unknown (its computer's lease ran out there)
        body["reported_state"] = status["reported_state"]
    return body


def sla_json(sla):
    """An instance's SLA in its wire shape: one object, or an array of alternatives."""
    if isinstance(sla, (list, tuple)):
        return [dict(alt) for alt in sla]
    return dict(sla)


def instance_json(app, inst, leases=None) -> dict:
    return {"id": inst.id, "reference": inst.reference, "requester": inst.requester,
            "parent": inst.parent, "children": list(inst.children),
            "software_url": inst.software_url, "software_hash": inst.software_hash,
            "software_type": inst.software_type, "parameters": dict(inst.parameters),
            "sla": sla_json(inst.sla), "requested_state": inst.requested_state,
            "shared": inst.shared, "revision": inst.revision,
            "placement": placement_json(app, inst), "host_instance": inst.host_id,
            "host_placement": host_placement_json(app, inst),
            "shared_instances": list(inst.shared_ids), "open_to": list(inst.open_to),
            "status": status_json(inst.status, unreachable(app, inst, leases)),
            "connection": dict(inst.connection),
            "provenance": list(inst.provenance),
            "child_master": None if inst.child_master is None else dict(inst.child_master),
            "delegation": delegation_json(app, inst),
            "created_at": iso(inst.created_at), "updated_at": iso(inst.updated_at)}


def delegation_json(app, inst) -> dict | None:
    """Where a delegated instance is served: the peer, the state of its forward, and the
    chain beyond the peer (masters, then the computer), as the peer reported it."""
    if not inst.delegated:
        return None
    fwd = app.forwards.get(inst.id)
    if fwd is None:
        return None
    return {"peer": fwd.peer, "state": fwd.state, "reason": fwd.reason,
            "remote_reference": fwd.remote_reference, "remote_id": fwd.remote_id,
            "accepted": fwd.accepted, "attempts": fwd.attempts,
            "next_attempt_at": iso(fwd.next_attempt_at) if fwd.attempts else None,
            "fallbacks": list(fwd.fallbacks), "chain": [dict(c) for c in fwd.chain],
            "updated_at": iso(fwd.updated_at)}


def desired_instance_json(app, inst) -> dict:
    instances = app.instances
    shared, shared_recipients = [], {}
    for sid in inst.shared_ids:
        s = instances[sid]
        shared.append({"id": s.id, "reference": s.reference, "parameters": s.parameters})
        if s.recipient is not None:
            shared_recipients[s.id] = dict(s.recipient)
    out = _desired_instance(inst, shared)
    if inst.restore_from:
        out["restore_from"] = inst.restore_from
    if inst.takes_over:
        out["takes_over"] = inst.takes_over
    if inst.children_moved:
        out["children_moved"] = inst.children_moved
    if inst.recipient is not None:
        # who the node seals the instance's secret connection parameters to
        out["recipient"] = dict(inst.recipient)
    if shared_recipients:
        # who the node seals each shared instance's secrets to: its own requester (kept
        # apart from shared_instances, which the partition's buildout sees)
        out["shared_recipients"] = shared_recipients
    return out


def shared_recipients_key(app, inst) -> tuple:
    """What of a host's shared instances' recipients its desired entry shows (they change
    without a revision of the host): (shared id, fingerprint) of each."""
    instances = app.instances
    return tuple((sid, (instances[sid].recipient or {}).get("fingerprint"))
                 for sid in inst.shared_ids)


def _desired_instance(inst, shared) -> dict:
    return {"id": inst.id, "reference": inst.reference, "requester": inst.requester,
            "software_url": inst.software_url, "software_hash": inst.software_hash,
            "software_type": inst.software_type, "parameters": inst.parameters,
            "requested_state": inst.requested_state, "revision": inst.revision,
            "shared_instances": shared, "provenance": list(inst.provenance)}


def desired_partition_text(app, p, inst) -> str:
    """One partition entry of a desired-state document, JSON-encoded; a partition whose
    instance moved away says so (``moved``: the node sets its data aside, and erases
    them once ``wipe`` is true)."""
    entry = {"id": p.id, "address": p.address, "port_base": p.port_base,
             "port_count": p.port_count,
             "instance": None if inst is None else desired_instance_json(app, inst)}
    if p.moved_instance is not None:
        entry["moved"] = {"instance": p.moved_instance, "wipe": bool(p.wipe)}
    return json.dumps(entry, separators=(",", ":"))


def desired_state_bytes(app, comp, serial: int, partition_texts) -> bytes:
    """Assemble a desired-state document from its already-encoded partition entries."""
    software = [{"url": sw.url, "hash": sw.hash, "state": sw.state}
                for sw in comp.software.values()]
    head = json.dumps({"computer": comp.id, "serial": serial, "software": software},
                      separators=(",", ":"))
    return (head[:-1] + ',"partitions":[' + ",".join(partition_texts) + "]}").encode("utf-8")
