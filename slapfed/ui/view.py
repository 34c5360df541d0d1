"""What the dashboard shows, made from the master's answers: pure, no I/O.

Depends on slapfed.topology (graph, draw) and core (states, leases). Every function takes
decoded JSON as the master answered it (and ``now``, seconds since the epoch) and returns
plain values for the templates; text from the master is data, escaped by the templates
(and by the SVG drawing), never markup.
"""
from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from ..core import leases, states
from ..topology import draw
from ..topology import graph as topology_graph
from ..topology.files import Topology

LOG_LINES = 30
ACTIONS = ("start", "stop", "destroy")
# The states an instance may be asked for from each button, and which buttons make sense
# for an instance in a requested state.
BUTTONS = {states.STARTED: ("stop", "destroy"), states.STOPPED: ("start", "destroy"),
           states.DESTROYED: ()}
LEASE_WORDS = {leases.LIVE: "up", leases.EXPIRED: "unknown", leases.NONE: "new"}


def parse_time(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        when = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def age(iso: str | None, now: float) -> str:
    """``4 s ago``, ``3 min ago``, ``2 h ago``, ``5 days ago``; ``never`` without a time."""
    when = parse_time(iso)
    if when is None:
        return "never"
    s = max(0.0, now - when)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 90 * 60:
        return f"{s / 60:.0f} min ago"
    if s < 36 * 3600:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} days ago"


def clock(now: float) -> str:
    """``14:03:27`` (UTC): when the page was last brought up to date."""
    return dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%H:%M:%S UTC")


def software_name(url: str) -> str:
    """A release's short name: the folder of ``.../hello/software.cfg``, else the last
    part of the URL or path."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if len(parts) >= 2 and parts[-1] == "software.cfg":
        return parts[-2]
    return parts[-1] if parts else url


def chain(inst: dict, here: str) -> list[str]:
    """Where an instance is served, hop by hop: ``[here, b, computer c-1 (lan x)]`` for a
    delegated one, ``[here, computer/partition (address)]`` for a local one."""
    d = inst.get("delegation")
    if d:
        hops = [here]
        for hop in d.get("chain") or [{"master": d.get("peer")}]:
            if hop.get("master"):
                hops.append(hop["master"])
            elif hop.get("computer"):
                where = ", ".join(f"{k} {hop[k]}" for k in ("lan", "country", "continent")
                                  if hop.get(k))
                hops.append(f"computer {hop['computer']}" + (f" ({where})" if where else ""))
            elif hop.get("host_instance"):
                hops.append(f"shared on {hop['host_instance']}")
        return hops
    place = inst.get("placement")
    if place:
        return [here, f"{place['computer']}/{place['partition']}"
                      + (f" ({place['address']})" if place.get("address") else "")]
    if inst.get("shared"):
        host = inst.get("host_instance")
        return [here, f"shared on {host}" if host else "shared (not attached yet)"]
    return [here, "not placed yet"]


def connection_items(connection: dict | None, sealed=(), unopened=None) -> list[dict]:
    """Connection parameters in key order; a value that is an http(s) URL gets a link
    (no other scheme: a value is data from the instance, not a place to send anyone).
    ``sealed``: the parameters that were sealed to the user (opened by the dashboard,
    server.Opener); such a value is marked ``secret`` and never linked (the page shows it
    in the instance's details only); ``unopened``: {parameter: why it stayed sealed}."""
    out = []
    sealed, unopened = set(sealed or ()), unopened or {}
    for key, value in sorted((connection or {}).items()):
        text = value if isinstance(value, str) else repr(value)
        secret = key in sealed
        href = text if not secret and urlsplit(text).scheme in ("http", "https") \
            and " " not in text else None
        item = {"key": key, "value": text, "href": href, "secret": secret}
        if key in unopened:
            item.update(value=None, problem=str(unopened[key]))
        out.append(item)
    return out


def mine(inst: dict, you: str | None) -> bool:
    """Whether ``you`` may act on this instance as far as the page can tell: it is yours,
    or a child one of your instances requested (its requester is an instance id, not a
    principal). The master decides anyway; this only spares buttons it would refuse."""
    requester = inst.get("requester") or ""
    return you is None or requester == you or "/" not in requester


def instance_row(inst: dict, now: float, here: str, you: str | None = None) -> dict:
    status = inst.get("status") or {}
    state = status.get("state") or states.PENDING
    requested = inst.get("requested_state")
    tail = (status.get("log_tail") or "").rstrip().splitlines()[-LOG_LINES:]
    settled = status.get("revision") == inst.get("revision") and state == requested
    return {
        "id": inst["id"], "reference": inst["reference"], "requester": inst.get("requester"),
        "software": software_name(inst.get("software_url") or ""),
        "software_url": inst.get("software_url"), "software_type": inst.get("software_type"),
        "requested": requested, "state": state, "settled": settled,
        "reported": age(status.get("reported_at"), now),
        "chain": chain(inst, here), "delegated": bool(inst.get("delegation")),
        "connection": connection_items(inst.get("connection"), inst.get("sealed"),
                                       inst.get("unopened")),
        "promises": [{"name": p.get("name"), "ok": bool(p.get("ok")),
                      "message": p.get("message") or ""} for p in status.get("promises") or ()],
        "log_tail": tail, "shared": bool(inst.get("shared")),
        "child_master": (inst.get("child_master") or {}).get("name"),
        "buttons": BUTTONS.get(requested, ()) if mine(inst, you) else (),
    }


def instance_rows(instances: list[dict], now: float, here: str,
                  you: str | None = None) -> list[dict]:
    """Instances by reference, destroyed ones last."""
    rows = [instance_row(i, now, here, you) for i in instances]
    return sorted(rows, key=lambda r: (r["requested"] == states.DESTROYED, r["reference"],
                                       r["id"]))


def computer_row(c: dict, now: float) -> dict:
    parts = c.get("partitions") or []
    used = sum(1 for p in parts if p.get("instance"))
    lease = c.get("lease") or {}
    where = " / ".join(c[k] for k in ("continent", "country", "lan", "host") if c.get(k))
    return {"id": c["id"], "where": where or "-", "used": used, "free": len(parts) - used,
            "state": LEASE_WORDS.get(lease.get("state"), "-"),
            "last_contact": age(c.get("last_contact"), now),
            "lease_expires": lease.get("expires_at"),
            "software": [{"name": software_name(s.get("url") or ""), "url": s.get("url"),
                          "status": s.get("status")} for s in c.get("software") or ()]}


def peer_row(p: dict, now: float) -> dict:
    """A peer with its link (up, down, unknown) and lag: how long since it answered."""
    return {"name": p["name"], "url": p.get("url"), "link": p.get("link") or "unknown",
            "trust": p.get("trust"), "latency_ms": p.get("latency_ms"),
            "paired": bool(p.get("paired")), "lag": age(p.get("last_contact"), now),
            "pending": p.get("pending_forwards") or 0,
            "forwards": sum((p.get("forwards") or {}).values())
            if isinstance(p.get("forwards"), dict) else (p.get("forwards") or 0),
            "last_error": p.get("last_error")}


def own_live(instances: list[dict], master: str | None) -> dict:
    """The live state (GET /topology's ``live`` shape) of what the user can see: their
    instances and the computers and partitions these run on, for a user who may not
    read the master's whole topology."""
    computers: dict = {}
    live_instances = []
    for inst in instances:
        place = inst.get("placement")
        if place:
            comp = computers.setdefault(place["computer"], {
                "id": place["computer"], **(place.get("locality") or {}), "partitions": []})
            comp["partitions"].append({"id": place["partition"],
                                       "address": place.get("address"),
                                       "instance": inst["id"]})
        live_instances.append({
            "id": inst["id"], "reference": inst["reference"],
            "requester": inst.get("requester"), "parent": inst.get("parent"),
            "children": inst.get("children") or [], "shared": inst.get("shared"),
            "host_instance": inst.get("host_instance"),
            "software_url": inst.get("software_url"),
            "software_type": inst.get("software_type"),
            "requested_state": inst.get("requested_state"),
            "state": (inst.get("status") or {}).get("state"),
            "placement": place, "delegation": inst.get("delegation")})
    return {"master": master, "computers": list(computers.values()),
            "instances": live_instances, "masters": [], "peers": []}


def federation(topology_view: dict | None, instances: list[dict],
               master: str | None) -> topology_graph.FederationGraph:
    """The graph to draw: the master's whole topology when the user may read it,
    else the user's own instances and where they run."""
    if topology_view is not None:
        live = dict(topology_view.get("live") or {})
        live["master"] = live.get("master") or master
        return topology_graph.build(Topology.from_json(topology_view["topology"]), live)
    return topology_graph.build(None, own_live(instances, master))


def picture(fed: topology_graph.FederationGraph) -> str:
    """The federation as SVG (drawn by slapfed.topology: the same picture as
    ``slapfed topology export --format svg``)."""
    return draw.svg(draw.layout(fed))


def counts(rows: list[dict]) -> dict:
    """How many instances are in each observed state (for the header)."""
    out: dict = {}
    for r in rows:
        out[r["state"]] = out.get(r["state"], 0) + 1
    return dict(sorted(out.items()))
