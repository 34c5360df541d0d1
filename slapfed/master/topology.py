"""The master's topology: the files it was started with, locality filling at registration,
and GET /api/v1/topology (the files plus the live state the CLI draws).

Depends on Flask, topology.files, services.topology_state and master.request. The files are
read once, when the app is built (its runtime keeps them); nothing here runs on the
request_instance path.
"""
from __future__ import annotations

import dataclasses

from flask import Blueprint, jsonify, request

from ..core import claims, paging
from ..core.errors import InvalidInput
from ..services.topology_state import SECTIONS, live_page
from ..topology import files
from .pages import page_args
from .request import connection, runtime

blueprint = Blueprint("topology", __name__)


@dataclasses.dataclass(frozen=True)
class MasterTopology:
    topology: files.Topology
    name: str | None

    def declared_peers(self) -> list[dict]:
        """The peers the files declare for this master: the other end of each link of
        its, with what the link says (trust, latency, cost), the peer's site and, when a
        link names an invitation for this master, what pairing needs (url, CA, token)."""
        if not self.name:
            return []
        invited = {inv.peer: inv for inv in files.read_invitations(self.topology,
                                                                   self.name)[0]}
        out = []
        for link in self.topology.links:
            if self.name not in (link.a, link.b):
                continue
            other = link.other(self.name)
            master = self.topology.masters.get(other)
            inv = invited.get(other)
            out.append({"name": other, "trust": link.trust, "latency_ms": link.latency_ms,
                        "cost": link.cost, "site": master.site if master else None,
                        "url": inv.url if inv else (master.url if master else None),
                        "ca_certificate": inv.ca_certificate if inv else None,
                        "token": inv.token if inv else None})
        return out


def load_topology(paths, name: str | None) -> MasterTopology:
    """Read the topology files and settle this master's name in them.

    Without ``name``, a topology declaring exactly one master names this one. Raises
    InvalidInput (every problem of the files, or a name the files do not declare)."""
    topo = files.load(paths) if paths else files.EMPTY
    if name is None and len(topo.masters) == 1:
        name = next(iter(topo.masters))
    if name is not None and topo.masters and name not in topo.masters:
        known = ", ".join(sorted(topo.masters))
        raise InvalidInput(f"--name {name!r} is not a master of the topology (declared: "
                           f"{known})", [{"field": "name", "problem": f"not among {known}"}])
    return MasterTopology(topo, name)


def master_topology() -> MasterTopology:
    """The topology the app was started with (its runtime holds it)."""
    return runtime().topology


def complete_registration(reg):
    """A registration completed from the topology: the outer levels of its locality filled
    from the sites; for a computer the files declare, its labels (the registration's win)
    and its capabilities (when the registration gives none).

    Raises InvalidInput naming every contradiction of locality with the topology."""
    mt = master_topology()
    topo = mt.topology
    if not topo.sites and not topo.computers:
        return reg
    given = {"host": reg.host, "lan": reg.lan, "country": reg.country,
             "continent": reg.continent}
    filled, problems = topo.complete_locality(reg.id, given)
    if problems:
        first = problems[0]
        raise InvalidInput(f"computer {reg.id} contradicts the topology: {first['field']} "
                           f"{first['problem']}", problems)
    changes = {k: v for k, v in filled.items() if given[k] != v}
    declared = topo.computers.get(reg.id)
    if declared is not None:
        labels = {**declared.labels, **reg.labels}
        if labels != reg.labels:
            changes["labels"] = labels
        if declared.capabilities and not getattr(reg, "capabilities", None) \
                and hasattr(reg, "capabilities"):
            changes["capabilities"] = tuple(sorted(declared.capabilities))
    return dataclasses.replace(reg, **changes) if changes else reg


def declared_facts(computer_id: str) -> claims.ComputerFacts | None:
    """What the topology files declare of a computer (its site's locality, labels,
    capabilities), which they own; None when they do not declare it."""
    topo = master_topology().topology
    declared = topo.computers.get(computer_id)
    if declared is None:
        return None
    return claims.ComputerFacts(labels=dict(declared.labels),
                                capabilities=tuple(sorted(declared.capabilities)),
                                **topo.locality_of(declared.site))


def complete_facts(computer_id: str, facts: claims.ComputerFacts) -> claims.ComputerFacts:
    """An administrator's facts for a computer, completed and checked like a registration
    (raises InvalidInput naming every contradiction with the topology files)."""
    from ..core.wire import ComputerRegistration
    reg = complete_registration(ComputerRegistration(
        computer_id, labels=dict(facts.labels), capabilities=tuple(facts.capabilities),
        **facts.locality()))
    return dataclasses.replace(facts, labels=dict(reg.labels),
                               capabilities=tuple(reg.capabilities),
                               **{k: getattr(reg, k) for k in claims.LOCALITY_FIELDS})


@blueprint.get("/topology")
def show():
    """The topology files and one page of the live state: computers then instances,
    ``limit`` of them together, with ``next`` (the cursor of the next page, or null);
    peers and replicas come with the first page."""
    limit, after = page_args(request.args, "topology", parts=2)
    if after is not None and after[0] not in SECTIONS:
        raise InvalidInput("invalid cursor: is not a cursor of this master (give back the "
                           "'next' of the previous page, unchanged)",
                           [{"field": "cursor", "problem": "is not a cursor of this master"}])
    mt = master_topology()
    live, last = live_page(connection(), runtime().leases, after, limit)
    if "replication" in live:      # first page: this master's role as its data says
        live["replication"]["role"] = runtime().replication.role().state
        lags = runtime().replication.lags()
        for r in live["replication"]["replicas"]:
            r["lag_seconds"] = lags.get(r["name"])
    return jsonify({"master": mt.name, "topology": mt.topology.to_json(),
                    "live": {"master": mt.name, **live},
                    "next": None if last is None else paging.make_cursor("topology", last)})
