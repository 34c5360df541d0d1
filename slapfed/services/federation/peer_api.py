"""What a peer master asks of this one: its summary and the long poll of the instances
the peer delegated here.

Depends on core and services (tx, render); reads only (the long poll waits on the writer's
commits).
"""
from __future__ import annotations

import threading
import time

from ...core import sharing
from ...core.errors import InvalidInput
from ...core.states import DESTROYED
from .. import render
from ..tx import read


# -- what a peer asks of this master --------------------------------------------------------
def summary(conn, settings, asker: str | None = None) -> dict:
    """What this master offers its peers: where its computers are, what they are
    supplied, the hosts of shared instances it runs, free partitions, and what its own
    peers offer (``reach``, hops counted from here), never routing back to ``asker``;
    ``settings``: this master's name and depth limit."""
    s = settings

    def query(app):
        localities, software, caps, free = {}, set(), set(), 0
        for comp in app.computers.values():
            loc = {"host": comp.host, "lan": comp.lan, "country": comp.country,
                   "continent": comp.continent}
            localities[tuple(loc.values())] = {k: v for k, v in loc.items() if v}
            for sw in comp.software.values():
                if sw.state != DESTROYED:
                    software.add(sw.url)
            caps.update(comp.capabilities)
            for p in comp.partitions.values():
                caps.update(p.capabilities)
                if p.instance_id is None:
                    free += 1
        hosting = set()
        for h, stype, iid in app.hosts_by_release.keys():
            inst = app.instances.get(iid)
            if inst is not None and inst.placed and inst.requested_state != DESTROYED \
                    and _open_to_peer(inst, asker):
                hosting.add((inst.software_url, stype))
        reach = []
        for peer in app.peers.values():
            if peer.name == asker or not peer.paired or not peer.summary:
                continue
            doc = peer.summary
            reach.append({"master": peer.name, "hops": 1,
                          **{k: doc.get(k) for k in ("localities", "software", "hosting",
                                                     "capabilities", "free_partitions")}})
            for far in doc.get("reach") or ():
                if far.get("master") in (asker, s.here):
                    continue
                reach.append({**far, "hops": int(far.get("hops") or 1) + 1})
        return {"name": s.here, "localities": sorted(localities.values(),
                                                     key=lambda d: sorted(d.items())),
                "software": sorted(software), "hosting": sorted(list(h) for h in hosting),
                "capabilities": sorted(caps), "free_partitions": free,
                "reach": [r for r in reach if r["hops"] < s.max_depth]}

    return read(conn, query)


def _open_to_peer(host, asker: str | None) -> bool:
    """Whether the peer ``asker`` may attach shared instances to ``host``, so that the
    summary may tell it the host exists: opened to it (or to everyone), or requested by
    it. A host closed to the asker is not listed (an admin, asker None, sees all)."""
    if asker is None:
        return True
    peer = f"{sharing.PEER_ROLE}/{asker}"
    return sharing.EVERYONE in host.open_to or peer in host.open_to or host.owner == peer


def changes(conn, requester: str, since: str | None,
            leases=None) -> tuple[str, list[dict]]:
    """Instances of ``requester`` committed after cursor ``since`` (a transaction id,
    hex; None = all), and the new cursor. An instance is reported when it or the
    computer it runs on was committed after the cursor: a computer records its lease's
    transitions (it ran out, its node came back: services.lease_marks), and the
    instances it serves are then reported, rendered with ``leases`` (the master's lease
    table: ``unknown`` while their computer's lease is out). The cursor is the newest
    serial seen, so a commit after this read is never missed."""
    floor = bytes.fromhex(since) if since else b""

    def query(app):
        newest = floor
        out = []
        computers: dict[str, bytes] = {}      # computer id -> its serial, read once
        for iid in app.instance_ids_of(requester):
            inst = app.instances[iid]
            inst._p_activate()
            serial = inst._p_serial
            cid = render.serving_computer(app, inst)
            if cid is not None:
                if cid not in computers:
                    computers[cid] = _serial_of(app.computers.get(cid))
                serial = max(serial, computers[cid])
            if serial > floor:
                out.append(render.instance_json(app, inst, leases))
            if serial > newest:
                newest = serial
        return newest.hex(), out

    return read(conn, query)


def _serial_of(obj) -> bytes:
    if obj is None:
        return b""
    obj._p_activate()
    return obj._p_serial


def wait_changes(rt, requester: str, since: str | None, wait: float,
                 stopping: threading.Event | None = None, poll: float = 0.1,
                 conn=None) -> tuple[str, list[dict]]:
    """``changes`` (read on ``conn``, else on the runtime's DB; rendered with the
    runtime's leases), waiting up to ``wait`` seconds for one (a long poll woken by the
    commits of the runtime's writer, and reading again every ``poll`` seconds for those
    of other processes: a lease recorded out by another worker's maintenance). Once
    ``stopping`` is set (the master shuts down) it answers at once with what it has,
    without reading again: the database may be closing."""
    deadline = time.monotonic() + max(0.0, wait)
    source = rt if conn is None else conn
    committed = rt.writer.committed
    while True:
        cursor, items = changes(source, requester, since, rt.leases)
        left = deadline - time.monotonic()
        if items or left <= 0 or (stopping is not None and stopping.is_set()):
            return cursor, items
        with committed:
            committed.wait(min(poll, left))
        if stopping is not None and stopping.is_set():
            return cursor, items


def check_cursor(value) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) != 16:
        raise InvalidInput("invalid cursor: must be the 16 hex digits a previous answer "
                           "gave", [{"field": "since", "problem": "not a cursor"}])
    if not all(c in "0123456789abcdefABCDEF" for c in value):  # bytes.fromhex skips spaces
        raise InvalidInput("invalid cursor: must be hex digits",
                           [{"field": "since", "problem": "not hex"}])
    return value
