"""What the topology commands print: the readable tree (masters > sites > computers >
partitions > instances) as nested data and as text; where, path and failure domains as text.

Pure; depends on the sibling graph and locality modules.
"""
from __future__ import annotations

from ..core.leases import EXPIRED
from . import locality
from .files import SITE_LEVELS
from .graph import FederationGraph, UNKNOWN

LEVEL_WORD = {"continent": "continent", "country": "country", "lan": "LAN", "host": "host"}
NO_MASTER = "(no master)"


# -- the tree as data ------------------------------------------------------------------
def tree(fed: FederationGraph) -> dict:
    """{"masters": [master node...], "links": [...]} where a master node holds its site
    tree, each site its sub-sites and computers, each computer its partitions."""
    by_master: dict[str, list[str]] = {}
    for cid, rec in fed.computers.items():
        by_master.setdefault(rec.get("master") or NO_MASTER, []).append(cid)
    names = sorted(fed.masters.nodes, key=lambda n: (n != fed.local_master, n))
    if NO_MASTER in by_master:
        names.append(NO_MASTER)
    masters = []
    for name in names:
        attrs = fed.masters.nodes[name] if name in fed.masters else {}
        site = attrs.get("site")
        node = {"kind": "master", "name": name, "url": attrs.get("url"), "site": site,
                "parent": attrs.get("parent"), "instance": attrs.get("instance"),
                "role": attrs.get("role"), "epoch": attrs.get("epoch"),
                "replica_of": attrs.get("primary"), "mode": attrs.get("mode"),
                "lag_seconds": attrs.get("lag_seconds"),
                "local": name == fed.local_master and name != NO_MASTER,
                "locality": (fed.topology.locality_of(site)
                             if site in fed.topology.sites else None),
                "sites": [], "computers": [],
                "replicas": list(attrs.get("replicas") or ()),
                "replication": attrs.get("replication")}
        _place_computers(fed, node, sorted(by_master.get(name, ())))
        masters.append(node)
    links = [{"from": u, "to": v, **d} for u, v, d in sorted(
        fed.masters.edges(data=True), key=lambda e: (e[2]["latency_ms"], e[0], e[1]))]
    peers = [fed.peers[n] for n in sorted(fed.peers)]
    return {"masters": masters, "links": links, "peers": peers}


def _place_computers(fed: FederationGraph, master: dict, cids: list[str]) -> None:
    index: dict[tuple, dict] = {}
    for cid in cids:
        rec = fed.computers[cid]
        holder = master
        path: tuple = ()
        for level in SITE_LEVELS:
            name = rec["locality"].get(level)
            if name is None:
                continue
            path += ((level, name),)
            if path not in index:
                declared = fed.graph.nodes.get(f"{level}:{name}", {}).get("declared", False)
                site = {"kind": level, "name": name, "declared": declared, "sites": [],
                        "computers": []}
                index[path] = site
                holder["sites"].append(site)
            holder = index[path]
        holder["computers"].append(_computer(fed, rec))
    _sort(master)


def _sort(node: dict) -> None:
    node["sites"].sort(key=lambda s: s["name"])
    node["computers"].sort(key=lambda c: c["id"])
    for s in node["sites"]:
        _sort(s)


def _computer(fed: FederationGraph, rec: dict) -> dict:
    parts = []
    for p in rec.get("partitions") or ():
        iid = p.get("instance")
        parts.append({"id": p["id"], "address": p.get("address"),
                      "instance": _instance(fed, iid) if iid else None})
    return {"kind": "computer", "id": rec["id"], "labels": rec["labels"],
            "capabilities": rec["capabilities"], "declared": rec["declared"],
            "registered": rec["registered"], "expected_partitions": rec["expected_partitions"],
            "last_contact": rec.get("last_contact"), "lease": rec.get("lease"),
            "partitions": parts}


def _instance(fed: FederationGraph, iid: str) -> dict:
    inst = fed.instances.get(iid)
    if inst is None:
        return {"id": iid, "reference": None, "shared_instances": []}
    shared = [{"id": sid, "reference": fed.instances[sid]["reference"],
               "requester": fed.instances[sid]["requester"],
               "state": fed.instances[sid]["state"]}
              for sid in sorted(fed.instances) if fed.instances[sid].get("host_instance") == iid
              and fed.instances[sid]["shared"]]
    return {"id": iid, "reference": inst["reference"], "requester": inst["requester"],
            "state": inst["state"], "requested_state": inst["requested_state"],
            "software_type": inst["software_type"], "shared_instances": shared}


# -- the tree as text ------------------------------------------------------------------
def masters_tree_lines(data: dict) -> list[str]:
    """The tree of masters (parent → child masters it requested), when there is one."""
    masters = [m for m in data["masters"] if m["name"] != NO_MASTER]
    kids: dict = {}
    for m in masters:
        if m.get("parent"):
            kids.setdefault(m["parent"], []).append(m)
    if not kids:
        return []
    known = {m["name"] for m in masters}
    roots = [m for m in masters if not m.get("parent") or m["parent"] not in known]
    lines = ["tree of masters"]

    def walk(m: dict, prefix: str, last: bool, seen: frozenset) -> None:
        label = m["name"] + ("  [this master]" if m.get("local") else "")
        if m.get("url"):
            label += f"  {m['url']}"
        if m.get("instance"):
            label += f"  (instance {m['instance']})"
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{label}")
        below = [c for c in kids.get(m["name"], ()) if c["name"] not in seen]
        for i, child in enumerate(below):
            walk(child, prefix + ("   " if last else "│  "), i == len(below) - 1,
                 seen | {child["name"]})

    for i, m in enumerate(roots):
        walk(m, "", i == len(roots) - 1, frozenset({m["name"]}))
    return lines + [""]


def tree_text(data: dict, all_partitions: bool = False) -> str:
    lines: list[str] = masters_tree_lines(data)
    for m in data["masters"]:
        head = f"master {m['name']}"
        if m["name"] == NO_MASTER:
            head = "computers of no known master"
        else:
            if m.get("url"):
                head += f"  {m['url']}"
            if m.get("site"):
                loc = m.get("locality") or {}
                around = [loc[lvl] for lvl in locality.LEVELS
                          if loc.get(lvl) and loc[lvl] != m["site"]]
                head += f"  at {m['site']}" + (f" ({', '.join(around)})" if around else "")
            if m.get("local"):
                head += "  [this master]"
            if m.get("parent"):
                head += f"  [child of {m['parent']}, instance {m.get('instance')}]"
            if m.get("replica_of"):
                head += (f"  [replica of {m['replica_of']}, {m.get('mode') or 'async'}, "
                         f"epoch {m.get('epoch')}{lag_text(m.get('lag_seconds'))}]")
            elif m.get("role") and _replicated(m):
                head += (f"  [{m['role']}, epoch {m.get('epoch')}"
                         f"{lag_text(m.get('lag_seconds'))}]")
        lines.append(head)
        lines.extend(replication_lines(m))
        children = [("site", s) for s in m["sites"]] + [("computer", c)
                                                         for c in m["computers"]]
        if not children:
            lines.append("   (no computers)")
        _children_text(lines, children, "", all_partitions)
        lines.append("")
    if data["links"]:
        lines.append("links between masters")
        width = max(len(f"{ln['from']} <-> {ln['to']}") for ln in data["links"])
        for ln in data["links"]:
            pair = f"{ln['from']} <-> {ln['to']}"
            lines.append(f"  {pair:<{width}}  {_ms(ln['latency_ms']):>8}  cost {ln['cost']:g}"
                         f"  trust {ln['trust']}")
    if data.get("peers"):
        if data["links"]:
            lines.append("")
        lines.extend(peers_lines(data["peers"], next((m["name"] for m in data["masters"]
                                                      if m.get("local")), None)))
    return "\n".join(lines).rstrip() + "\n"


def _replicated(m: dict) -> bool:
    """Whether a master's role and epoch are worth saying: it has replicas, was promoted
    or is not a plain primary (a lone primary at epoch 1 is every master's default)."""
    rep = m.get("replication") or {}
    return bool(rep.get("replicas") or (m.get("epoch") or 1) > 1
                or m.get("role") not in (None, "primary"))


def lag_text(lag) -> str:
    """``, lag 0.02 s`` when a replica's lag is known, else nothing."""
    return "" if lag is None else f", lag {lag:.2f} s"


def replication_lines(m: dict) -> list[str]:
    """A master's epoch and replicas (this master: as its database says; a child master:
    the replicas its instance requested, where they run)."""
    lines = []
    rep = m.get("replication")
    # (this master's role and epoch are in its heading, its replicas are masters of
    # their own below it: only the history of the epochs is said here)
    if rep and rep.get("epochs"):
        held = ", ".join(f"{e['epoch']}: {e['primary']}" for e in rep["epochs"])
        lines.append(f"   promotions: {held}")
    for r in m.get("replicas") or ():
        lines.append(f"   replica {r.get('name') or r['reference']}  {r.get('url') or '-'}  "
                     f"[instance {r['instance']} on {r.get('computer') or '-'}, "
                     f"{r.get('state')}]")
    return lines


def peers_lines(peers: list[dict], local: str | None) -> list[str]:
    """This master's peers and their links: up/down, last contact, pending forwards."""
    lines = [f"peers of {local}" if local else "peers"]
    width = max(len(p["name"]) for p in peers)
    for p in peers:
        state = p["link"] if p.get("paired") else "not paired"
        line = (f"  {p['name']:<{width}}  {state:<10}  {p.get('origin') or '-':<8}  "
                f"trust {p.get('trust') or '-':<8}  last contact {p.get('last_contact') or '-'}"
                f"  pending {p.get('pending_forwards', 0)}/{p.get('forwards', 0)} forwards")
        if p.get("url"):
            line += f"  {p['url']}"
        lines.append(line)
        if p.get("last_error"):
            lines.append(f"  {'':<{width}}  error: {p['last_error']}")
    return lines


def _children_text(lines, children, prefix, all_partitions) -> None:
    for i, (kind, node) in enumerate(children):
        last = i == len(children) - 1
        branch, cont = ("└─ ", "   ") if last else ("├─ ", "│  ")
        if kind == "site":
            mark = "" if node["declared"] else "  (not in the topology files)"
            title = f"{LEVEL_WORD[node['kind']]} {node['name']}{mark}"
            if node["kind"] == "host" and not node["sites"] and len(node["computers"]) == 1:
                # one computer on its host: one line for both
                comp = node["computers"][0]
                lines.append(f"{prefix}{branch}{title} · {_computer_line(comp)}")
                _partitions_text(lines, comp, prefix + cont, all_partitions)
                continue
            lines.append(f"{prefix}{branch}{title}")
            sub = [("site", s) for s in node["sites"]] + [("computer", c)
                                                          for c in node["computers"]]
            _children_text(lines, sub, prefix + cont, all_partitions)
        else:
            lines.append(f"{prefix}{branch}{_computer_line(node)}")
            _partitions_text(lines, node, prefix + cont, all_partitions)


def _computer_line(c: dict) -> str:
    parts = c["partitions"]
    used = sum(1 for p in parts if p["instance"])
    out = f"computer {c['id']}"
    if c["registered"]:
        out += f"  {used}/{len(parts)} partitions used"
    else:
        expected = c["expected_partitions"]
        out += "  not registered" + (f" ({expected} partitions expected)"
                                     if expected is not None else "")
    if c["labels"]:
        out += "  " + " ".join(f"{k}={v}" for k, v in sorted(c["labels"].items()))
    if c["capabilities"]:
        out += "  [" + ", ".join(c["capabilities"]) + "]"
    lease = c.get("lease") or {}
    if lease.get("state") == EXPIRED:
        out += f"  unknown: lease ran out at {lease.get('expires_at')}, last contact " \
               f"{c.get('last_contact') or '-'}"
    return out


def _partitions_text(lines, c: dict, prefix: str, all_partitions: bool) -> None:
    rows: list[tuple[str, list[str]]] = []
    free = []
    for p in c["partitions"]:
        inst = p["instance"]
        if inst is None:
            if all_partitions:
                rows.append((f"{p['id']}  {p['address']}  free", []))
            else:
                free.append(p["id"])
            continue
        ref = inst["reference"] or "?"
        text = f"{p['id']}  {p['address']}  {ref} ({inst['id']}"
        if inst.get("state"):
            text += f", {inst['state']}"
        if inst.get("requester"):
            text += f", by {inst['requester']}"
        text += ")"
        rows.append((text, [f"shared {s['reference']} ({s['id']}, by {s['requester']})"
                            for s in inst["shared_instances"]]))
    if free:
        shown = ", ".join(free[:4]) + (f", ... {free[-1]}" if len(free) > 4 else "")
        rows.append((f"{len(free)} free: {shown}", []))
    for i, (text, shared) in enumerate(rows):
        last = i == len(rows) - 1
        branch, cont = ("└─ ", "   ") if last else ("├─ ", "│  ")
        lines.append(f"{prefix}{branch}{text}")
        for j, s in enumerate(shared):
            lines.append(f"{prefix}{cont}{'└─ ' if j == len(shared) - 1 else '├─ '}{s}")


def _ms(value: float) -> str:
    return f"{value:g} ms"


# -- where, path, failure domains ------------------------------------------------------
def where_text(w: dict) -> str:
    lines = [f"instance:   {w['reference']} ({w['instance']}, requested by {w['requester']})"]
    if w["shared"]:
        host = w.get("host_instance")
        lines.append(f"shared on:  {host['reference']} ({host['id']})" if host
                     else "shared on:  - (not attached to a host instance yet)")
    if not w["placed"]:
        lines.append("placement:  - (not placed: "
                     f"{w.get('state') or 'pending'})")
    else:
        ports = (f", ports {w['port_base']}-{w['port_base'] + w['port_count'] - 1}"
                 if w.get("port_base") and w.get("port_count") else "")
        lines += [f"computer:   {w['computer']}",
                  f"partition:  {w['partition']} ({w['address'] or 'at the remote master'}"
                  f"{ports})"]
        for level in locality.LEVELS:
            lines.append(f"{LEVEL_WORD[level] + ':':<11} {w.get(level) or '-'}")
        lines.append(f"master:     {w.get('master') or '-'}")
    chain = w.get("delegation") or []
    lines.append("delegation: " + ("this master -> " + " -> ".join(chain) if chain
                                   else "- (placed by this "
                                                                      "master, no delegation)"))
    return "\n".join(lines)


def path_text(p: dict) -> str:
    if len(p["masters"]) == 1:
        return f"{p['from']} is {p['to']}: no hop"
    lines = [f"{' -> '.join(p['masters'])}"]
    width = max(len(f"{h['from']} -> {h['to']}") for h in p["hops"])
    for h in p["hops"]:
        hop = f"{h['from']} -> {h['to']}"
        link = "" if h.get("state") in (None, "up") else f"  link {h['state']}"
        origin = "" if h.get("declared", True) else "  (paired, not in the topology files)"
        lines.append(f"  {hop:<{width}}  {_ms(h['latency_ms']):>9}  cost {h['cost']:g}  "
                     f"trust {h['trust']}{link}{origin}")
    lines.append(f"total: {_ms(p['latency_ms'])}, cost {p['cost']:g}, "
                 f"{len(p['hops'])} hop{'s' if len(p['hops']) > 1 else ''}, weakest trust "
                 f"{p['weakest_trust']}")
    return "\n".join(lines)


def domains_text(fd: dict) -> str:
    root = fd["root"]
    lines = [f"instance tree of {root['reference']} ({root['id']}, by {root['requester']}): "
             f"{fd['instances']} instance(s), {fd['placed']} placed"]
    if fd["unplaced"]:
        lines.append(f"not placed: {', '.join(fd['unplaced'])}")
    total = fd["placed"]
    for level, doms in fd["domains"].items():
        word = LEVEL_WORD.get(level, level)
        verdict = ("survives the loss of any one " + word if fd["survives"][level]
                   else "a single " + word + " loss can take down every instance"
                   if total else "nothing placed")
        lines.append(f"{word}s: {len(doms)}  - {verdict}")
        for d in doms:
            name = d["name"] if d["name"] != UNKNOWN else "(unknown)"
            lines.append(f"  {name:<24} {d['count']}/{total}  {', '.join(d['instances'])}")
    return "\n".join(lines)
