"""The federation as one networkx graph: sites, masters, computers, partitions, instances.

Pure (no I/O): built from a files.Topology plus the master's live state given as plain
dicts (the ``live`` part of GET /api/v1/topology); depends on networkx, core.errors and
the sibling topology modules. Dict indexes kept beside the graph answer lookups that a
scan of the graph would make slow.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import networkx as nx

from ..core.errors import InvalidInput, NotFound
from . import locality
from .files import EMPTY, SITE_LEVELS, TRUST_LEVELS, Topology

# Node kinds, outermost first; the order of rows in drawings.
KINDS = ("master", "continent", "country", "lan", "host", "computer", "partition", "instance")
# Edge kinds.
CONTAINS = "contains"         # continent > country > lan > host > computer > partition
RUNS = "runs"                 # partition -> the instance it hosts
HOSTS_SHARED = "hosts_shared"  # host instance -> shared instance attached to it
REQUESTED = "requested"       # parent instance -> child instance (the instance tree)
MANAGES = "manages"           # master -> computer registered with (or declared for) it
LOCATED_AT = "located_at"     # master -> the site it runs at
PARENT_OF = "parent_of"       # master -> a child master one of its instances runs
LINK = "link"                 # master <-> master (both directions, same attributes)
REPLICATES = "replicates"     # primary master -> a replica of it (role, epoch on the nodes)
# Failure domain levels, innermost first.
DOMAIN_LEVELS = ("computer",) + locality.LEVELS
UNKNOWN = "(unknown)"


def node_id(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def partition_node(computer_id: str, partition_id: str) -> str:
    return f"partition:{computer_id}/{partition_id}"


@dataclass
class FederationGraph:
    """The graph, a masters-only view for paths, and indexes. Build it with ``build``."""

    graph: nx.DiGraph
    masters: nx.Graph
    topology: Topology
    local_master: str | None = None
    # indexes
    computers: dict = field(default_factory=dict)        # id -> computer record
    by_site: dict = field(default_factory=dict)          # level -> name -> [computer ids]
    instances: dict = field(default_factory=dict)        # id -> instance record
    by_reference: dict = field(default_factory=dict)     # reference -> [instance ids]
    located: dict = field(default_factory=dict)          # instance id -> (computer, partition)
    peers: dict = field(default_factory=dict)            # name -> the local master's peer record

    # -- lookups ---------------------------------------------------------------------
    def computer(self, computer_id: str) -> dict:
        try:
            return self.computers[computer_id]
        except KeyError:
            raise NotFound(f"no computer {computer_id!r} in the topology or on the master "
                           f"({len(self.computers)} known)") from None

    def computers_in(self, level: str, name: str) -> list[str]:
        """Ids of the computers in site ``name`` of ``level`` (an index lookup)."""
        return list(self.by_site.get(level, {}).get(name, ()))

    def instance(self, ref: str, requester: str | None = None) -> dict:
        """An instance by id, or by reference (and requester when several hold it).

        Raises NotFound, InvalidInput (ambiguous reference)."""
        if ref in self.instances:
            return self.instances[ref]
        ids = self.by_reference.get(ref, [])
        if requester is not None:
            ids = [i for i in ids if self.instances[i]["requester"] == requester]
        if not ids:
            who = f" of requester {requester!r}" if requester else ""
            raise NotFound(f"no instance with id or reference {ref!r}{who}")
        if len(ids) > 1:
            holders = sorted(self.instances[i]["requester"] for i in ids)
            raise InvalidInput(f"reference {ref!r} is held by {len(ids)} requesters "
                               f"({', '.join(holders)}); name one with --as or give the "
                               "instance id", [{"field": "reference",
                                                "problem": "ambiguous"}])
        return self.instances[ids[0]]

    def location_of(self, instance_id: str) -> tuple[str, str] | None:
        """(computer, partition) an instance runs on; a shared instance runs in its host's
        partition. None when not placed."""
        seen = set()
        iid = instance_id
        while iid is not None and iid not in seen:
            seen.add(iid)
            if iid in self.located:
                return self.located[iid]
            inst = self.instances.get(iid)
            iid = inst.get("host_instance") if inst else None
        return None

    # -- queries ---------------------------------------------------------------------
    def relation(self, computer_a: str, computer_b: str) -> str:
        """host | lan | country | continent | none: the innermost site both share."""
        a, b = self.computer(computer_a), self.computer(computer_b)
        if computer_a == computer_b:
            return "host"          # one machine, whether or not its host is named
        return locality.relation(a["locality"], b["locality"])

    def where(self, ref: str, requester: str | None = None) -> dict:
        """Where an instance runs: computer, partition, address, sites, master.

        Raises NotFound, InvalidInput (ambiguous reference)."""
        inst = self.instance(ref, requester)
        out = {"instance": inst["id"], "reference": inst["reference"],
               "requester": inst["requester"], "shared": inst["shared"],
               "state": inst.get("state"), "requested_state": inst.get("requested_state"),
               "host_instance": None, "placed": False, "computer": None, "partition": None,
               "address": None, "port_base": None, "port_count": None, "master": None,
               **dict.fromkeys(locality.LEVELS),
               # delegated instances: the masters beyond this one, in order
               "delegation": []}
        d = inst.get("delegation")
        if d:
            chain = d.get("chain") or [{"master": d.get("peer")}]
            out["delegation"] = [h["master"] for h in chain if h.get("master")]
            out["master"] = out["delegation"][-1] if out["delegation"] else None
            last = chain[-1]
            if last.get("computer"):
                out.update(placed=True, computer=last["computer"],
                           partition=last.get("partition"),
                           **{lv: last.get(lv) for lv in locality.LEVELS})
            return out
        host_id = inst.get("host_instance")
        if inst["shared"] and host_id:
            host = self.instances.get(host_id, {})
            out["host_instance"] = {"id": host_id, "reference": host.get("reference")}
        loc = self.location_of(inst["id"])
        if loc is None:
            return out
        cid, pid = loc
        comp = self.computers[cid]
        part = self.graph.nodes[partition_node(cid, pid)]
        out.update(placed=True, computer=cid, partition=pid, address=part.get("address"),
                   port_base=part.get("port_base"), port_count=part.get("port_count"),
                   master=comp.get("master"), **comp["locality"])
        return out

    def instance_tree(self, instance_id: str) -> list[str]:
        """The ids of the instance tree ``instance_id`` belongs to: its root (following
        parents) and every descendant, root first."""
        root = instance_id
        seen = {root}
        while True:
            parent = self.instances[root].get("parent")
            if parent is None or parent not in self.instances or parent in seen:
                break
            root = parent
            seen.add(root)
        out, todo, seen = [], [root], set()
        while todo:
            iid = todo.pop(0)
            if iid in seen or iid not in self.instances:
                continue
            seen.add(iid)
            out.append(iid)
            todo.extend(sorted(self.instances[iid].get("children") or ()))
        return out

    def failure_domains(self, ref: str, requester: str | None = None) -> dict:
        """The failure domains of the instance tree of ``ref``: for each level (computer,
        host, LAN, country, continent), which domains hold its instances and how many of
        them each one's loss would take down. ``survives`` names, per level, whether the
        loss of any single domain leaves at least one instance running."""
        start = self.instance(ref, requester)
        tree = self.instance_tree(start["id"])
        placed, unplaced = {}, []
        for iid in tree:
            inst = self.instances[iid]
            if inst.get("requested_state") == "destroyed":
                continue
            loc = self.location_of(iid)
            if loc is None:
                unplaced.append(inst["reference"])
            else:
                placed[iid] = loc[0]
        total = len(placed)
        levels = {}
        for level in DOMAIN_LEVELS:
            groups: dict[str, list[str]] = defaultdict(list)
            for iid, cid in placed.items():
                name = cid if level == "computer" else (
                    self.computers[cid]["locality"].get(level) or UNKNOWN)
                groups[name].append(self.instances[iid]["reference"])
            levels[level] = sorted(
                ({"name": name, "count": len(refs), "instances": sorted(refs),
                  "share": round(len(refs) / total, 3) if total else 0.0}
                 for name, refs in groups.items()),
                key=lambda d: (-d["count"], d["name"]))
        survives = {level: bool(total) and all(d["count"] < total for d in doms)
                    and not any(d["name"] == UNKNOWN for d in doms)
                    for level, doms in levels.items()}
        root = self.instances[tree[0]]
        return {"root": {"id": root["id"], "reference": root["reference"],
                         "requester": root["requester"]},
                "instances": len(tree), "placed": total, "unplaced": sorted(unplaced),
                "domains": levels, "survives": survives}

    def path(self, master_a: str, master_b: str, min_trust: str | None = None) -> dict:
        """The lowest-latency path between two masters over links of at least
        ``min_trust``: hops with latency/cost/trust, totals, the weakest trust.

        Raises NotFound (unknown master, or no path), InvalidInput (bad trust)."""
        for name in (master_a, master_b):
            if name not in self.masters:
                known = ", ".join(sorted(self.masters)) or "none"
                raise NotFound(f"no master {name!r} in the topology (known: {known})")
        floor = 0
        if min_trust is not None:
            if min_trust not in TRUST_LEVELS:
                raise InvalidInput(f"trust must be one of {', '.join(TRUST_LEVELS)}, got "
                                   f"{min_trust!r}", [{"field": "min_trust",
                                                       "problem": "unknown trust level"}])
            floor = TRUST_LEVELS.index(min_trust)
        edges = self.masters.edges
        # links the live state shows down carry nothing now: routes go around them
        view = nx.subgraph_view(self.masters, filter_edge=lambda u, v: (
            TRUST_LEVELS.index(edges[u, v]["trust"]) >= floor
            and edges[u, v].get("state") != "down"))
        try:
            names = nx.dijkstra_path(view, master_a, master_b, weight="latency_ms")
        except nx.NetworkXNoPath:
            why = f" over links of trust {min_trust} or more" if min_trust else ""
            down = sorted(f"{u}-{v}" for u, v, e in edges(data=True) if e.get("state") == "down")
            if down:
                why += f" (links down now: {', '.join(down)})"
            raise NotFound(f"no path from master {master_a!r} to {master_b!r}{why}") from None
        hops = []
        for u, v in zip(names, names[1:]):
            e = edges[u, v]
            hops.append({"from": u, "to": v, "latency_ms": e["latency_ms"], "cost": e["cost"],
                         "trust": e["trust"], "state": e.get("state"),
                         "declared": not e.get("live", False)})
        weakest = min((h["trust"] for h in hops), key=TRUST_LEVELS.index, default=None)
        return {"from": master_a, "to": master_b, "masters": names, "hops": hops,
                "latency_ms": round(sum(h["latency_ms"] for h in hops), 3),
                "cost": round(sum(h["cost"] for h in hops), 3), "weakest_trust": weakest}


# -- building ------------------------------------------------------------------------
def build(topology: Topology | None = None, live: dict | None = None,
          local_master: str | None = None) -> FederationGraph:
    """Build the graph from a topology and the live state of one master.

    ``live``: {"master": name|None, "computers": [computer...], "instances": [instance...]}
    as GET /api/v1/topology answers; its computers are managed by ``local_master``
    (default: live["master"]). Pure: nothing here reads files or the network."""
    topology = topology or EMPTY
    live = live or {}
    local_master = local_master or live.get("master")
    g = nx.DiGraph()
    fg = FederationGraph(graph=g, masters=nx.Graph(), topology=topology,
                         local_master=local_master)
    by_site: dict = {lvl: defaultdict(list) for lvl in locality.LEVELS}
    fg.by_site = by_site

    # sites, outermost first so that parents exist before children
    for level in SITE_LEVELS:
        for site in topology.sites.values():
            if site.level == level:
                _add_site(g, level, site.name, site.parent, declared=True,
                          description=site.description)

    # masters and the masters-only view
    for m in topology.masters.values():
        _add_master(fg, m.name, url=m.url, site=m.site, declared=True,
                    description=m.description)
    if local_master and local_master not in fg.masters:
        _add_master(fg, local_master, url=None, site=None, declared=False, description="")
    if local_master:
        g.nodes[node_id("master", local_master)]["local"] = True
        if live.get("replication"):       # its role, epoch, epochs and replicas
            fg.masters.nodes[local_master]["replication"] = dict(live["replication"])
    for ln in topology.links:
        attrs = {"kind": LINK, "latency_ms": ln.latency_ms, "cost": ln.cost,
                 "trust": ln.trust, "description": ln.description}
        g.add_edge(node_id("master", ln.a), node_id("master", ln.b), **attrs)
        g.add_edge(node_id("master", ln.b), node_id("master", ln.a), **attrs)
        fg.masters.add_edge(ln.a, ln.b, latency_ms=ln.latency_ms, cost=ln.cost,
                            trust=ln.trust)

    # child masters: run by instances of this master and registered with it
    for raw in live.get("masters") or ():
        if raw["name"] not in fg.masters:
            _add_master(fg, raw["name"], url=raw.get("url"), site=None, declared=False,
                        description=f"runs in instance {raw.get('reference')}")
        fg.masters.nodes[raw["name"]].update(parent=local_master, instance=raw.get("instance"),
                                             replicas=list(raw.get("replicas") or ()))
        if local_master:
            g.add_edge(node_id("master", local_master), node_id("master", raw["name"]),
                       kind=PARENT_OF, instance=raw.get("instance"))

    # the local master's peers (the masters it delegates to) and the state of each link:
    # a paired peer is a link of the masters' graph even where no file declares it
    for raw in live.get("peers") or ():
        name = raw["name"]
        fg.peers[name] = dict(raw)
        if name not in fg.masters:
            _add_master(fg, name, url=raw.get("url"), site=None, declared=False,
                        description=f"peer of {local_master}")
        if not local_master or name == local_master:
            continue
        state = raw.get("link") or "unknown"
        if fg.masters.has_edge(local_master, name):      # declared: the live state on it
            fg.masters.edges[local_master, name]["state"] = state
            for u, v in ((local_master, name), (name, local_master)):
                if g.has_edge(node_id("master", u), node_id("master", v)):
                    g.edges[node_id("master", u), node_id("master", v)]["state"] = state
            continue
        trust = raw.get("trust") if raw.get("trust") in TRUST_LEVELS else TRUST_LEVELS[0]
        attrs = {"kind": LINK, "latency_ms": float(raw.get("latency_ms") or 0.0),
                 "cost": float(raw.get("cost") or 0.0), "trust": trust,
                 "description": "paired peer", "state": state, "live": True}
        for a, b in ((local_master, name), (name, local_master)):
            key = (node_id("master", a), node_id("master", b))
            if g.has_edge(*key) and g.edges[key].get("kind") == PARENT_OF:
                # a child master paired as a peer: one edge, parent_of with the link's facts
                g.edges[key].update({k: v for k, v in attrs.items() if k != "kind"})
            else:
                g.add_edge(*key, **attrs)
        fg.masters.add_edge(local_master, name, latency_ms=attrs["latency_ms"],
                            cost=attrs["cost"], trust=trust, state=state, live=True)

    # replication: the local master's role and epoch, and the replicas it knows of
    replication = live.get("replication") or {}
    epoch = replication.get("epoch")
    if local_master and replication.get("role"):
        here = node_id("master", local_master)
        g.nodes[here].update(role=replication["role"], epoch=epoch)
        fg.masters.nodes[local_master].update(role=replication["role"], epoch=epoch)
    for raw in replication.get("replicas") or ():
        name = raw["name"]
        if name == local_master:
            continue
        if name not in fg.masters:
            _add_master(fg, name, url=raw.get("url"), site=None, declared=False,
                        description=f"replica of {local_master}")
        facts = {"role": "replica", "epoch": epoch, "mode": raw.get("mode"),
                 "primary": local_master, "lag_seconds": raw.get("lag_seconds")}
        g.nodes[node_id("master", name)].update(facts)
        fg.masters.nodes[name].update(facts)
        if local_master:
            g.add_edge(node_id("master", local_master), node_id("master", name),
                       kind=REPLICATES, mode=raw.get("mode"), epoch=epoch,
                       lag_seconds=raw.get("lag_seconds"))

    # computers: declared ones, then the registered ones (which win on locality)
    for c in topology.computers.values():
        fg.computers[c.id] = {
            "id": c.id, "master": c.master, "locality": topology.locality_of(c.site),
            "labels": dict(c.labels), "capabilities": list(c.capabilities),
            "expected_partitions": c.partitions, "declared": True, "registered": False,
            "last_contact": None, "description": c.description}
    for raw in live.get("computers") or ():
        rec = fg.computers.get(raw["id"])
        loc = {lvl: raw.get(lvl) for lvl in locality.LEVELS}
        if rec is None:
            rec = fg.computers[raw["id"]] = {
                "id": raw["id"], "labels": {}, "capabilities": [],
                "expected_partitions": None, "declared": False, "description": ""}
        rec.update(master=local_master or rec.get("master"), registered=True,
                   last_contact=raw.get("last_contact"), lease=raw.get("lease"),
                   labels={**rec.get("labels", {}), **(raw.get("labels") or {})})
        if any(loc.values()):
            rec["locality"] = loc
        rec.setdefault("locality", loc)
        if raw.get("capabilities"):
            rec["capabilities"] = sorted(set(rec["capabilities"]) | set(raw["capabilities"]))
        rec["partitions"] = raw.get("partitions") or []
    for cid, rec in sorted(fg.computers.items()):
        _add_computer(fg, rec)

    # instances
    for raw in live.get("instances") or ():
        rec = {k: raw.get(k) for k in (
            "id", "reference", "requester", "parent", "shared", "host_instance",
            "software_url", "software_type", "requested_state", "state", "delegation")}
        rec["children"] = list(raw.get("children") or ())
        rec["shared"] = bool(rec["shared"])
        fg.instances[rec["id"]] = rec
        fg.by_reference.setdefault(rec["reference"], []).append(rec["id"])
        g.add_node(node_id("instance", rec["id"]), kind="instance", name=rec["id"],
                   label=rec["reference"], reference=rec["reference"],
                   requester=rec["requester"], state=rec["state"],
                   requested_state=rec["requested_state"], shared=rec["shared"],
                   software_type=rec["software_type"], software_url=rec["software_url"])
        place = raw.get("placement")
        if place:
            pnode = partition_node(place["computer"], place["partition"])
            if pnode in g:
                g.add_edge(pnode, node_id("instance", rec["id"]), kind=RUNS)
                fg.located[rec["id"]] = (place["computer"], place["partition"])
    for iid, rec in fg.instances.items():
        if rec["shared"] and rec["host_instance"] in fg.instances:
            g.add_edge(node_id("instance", rec["host_instance"]), node_id("instance", iid),
                       kind=HOSTS_SHARED)
        if rec["parent"] in fg.instances:
            edge = (node_id("instance", rec["parent"]), node_id("instance", iid))
            if g.has_edge(*edge):       # a parent hosting its own shared child: one edge
                g.edges[edge]["requested"] = True
            else:
                g.add_edge(*edge, kind=REQUESTED, requested=True)
            parent = fg.instances[rec["parent"]]
            if iid not in parent["children"]:
                parent["children"].append(iid)
    for refs in fg.by_reference.values():
        refs.sort()
    return fg


def _add_site(g: nx.DiGraph, level: str, name: str, parent: str | None, *, declared: bool,
              description: str = "") -> str:
    nid = node_id(level, name)
    if nid not in g:
        g.add_node(nid, kind=level, name=name, label=name, declared=declared,
                   description=description)
        if parent is not None:
            outer = SITE_LEVELS[SITE_LEVELS.index(level) - 1]
            g.add_edge(node_id(outer, parent), nid, kind=CONTAINS)
    return nid


def _add_master(fg: FederationGraph, name: str, *, url, site, declared, description) -> None:
    nid = node_id("master", name)
    fg.graph.add_node(nid, kind="master", name=name, label=name, url=url, site=site,
                      declared=declared, description=description, local=False)
    fg.masters.add_node(name, url=url, site=site)
    if site and site in fg.topology.sites:
        fg.graph.add_edge(nid, node_id(fg.topology.sites[site].level, site), kind=LOCATED_AT)


def _site_chain(g: nx.DiGraph, loc: dict) -> str | None:
    """Make sure the sites of a locality exist (outermost first); the innermost's node."""
    parent = None
    inner = None
    for level in SITE_LEVELS:
        name = loc.get(level)
        if name is None:
            continue
        nid = node_id(level, name)
        if nid not in g:
            # A site only the live state knows; hang it under the closest known parent.
            outer_ok = parent is not None and SITE_LEVELS.index(g.nodes[parent]["kind"]) \
                == SITE_LEVELS.index(level) - 1
            _add_site(g, level, name, g.nodes[parent]["name"] if outer_ok else None,
                      declared=False)
        parent = inner = nid
    return inner


def _add_computer(fg: FederationGraph, rec: dict) -> None:
    g = fg.graph
    cid = rec["id"]
    nid = node_id("computer", cid)
    parts = rec.get("partitions") or []
    g.add_node(nid, kind="computer", name=cid, label=cid, master=rec.get("master"),
               labels=rec["labels"], capabilities=rec["capabilities"],
               declared=rec["declared"], registered=rec["registered"],
               expected_partitions=rec["expected_partitions"],
               last_contact=rec.get("last_contact"), **rec["locality"],
               partitions=len(parts), used=sum(1 for p in parts if p.get("instance")))
    site = _site_chain(g, rec["locality"])
    if site is not None:
        g.add_edge(site, nid, kind=CONTAINS)
    for level in locality.LEVELS:
        name = rec["locality"].get(level)
        if name is not None:
            fg.by_site[level][name].append(cid)
    master = rec.get("master")
    if master and node_id("master", master) in g:
        g.add_edge(node_id("master", master), nid, kind=MANAGES)
    for p in parts:
        pnode = partition_node(cid, p["id"])
        g.add_node(pnode, kind="partition", name=p["id"], label=p["id"], computer=cid,
                   address=p.get("address"), port_base=p.get("port_base"),
                   port_count=p.get("port_count"), instance=p.get("instance"))
        g.add_edge(nid, pnode, kind=CONTAINS)
