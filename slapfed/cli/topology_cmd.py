"""The ``slapfed topology`` group: check, show, export, path and where over the federation graph.

Depends on slapfed.topology (files, graph, report, draw), slapfed.client and the CLI plumbing.
"""
from __future__ import annotations

import json
import sys

import click

from ..client import MasterClient
from ..core.errors import InvalidInput
from ..topology import files as topology_files
from ..topology import graph as topology_graph
from ..topology import report
from . import completion
from . import config as cfg
from .common import Exit, echo_error, emit, error_boundary, json_option

master_option = click.option(
    "--master", "master_url", metavar="URL",
    help=f"Master URL (default: ${cfg.ENV_MASTER}, then the client config file; not "
         "used when only --file is given).")
file_option = click.option(
    "--file", "-f", "topology_paths", multiple=True, type=click.Path(dir_okay=False),
    metavar="FILE", help="Topology file (repeatable). Alone: read offline. With --master: "
                         "these files replace the master's, merged with its live state.")


def load_federation(master_url, topology_paths, need_live=False):
    """The federation graph from local files and/or a master's GET /topology.

    Raises InvalidInput (files), MasterUnreachable (no master when one is needed)."""
    topo = topology_files.load(topology_paths) if topology_paths else None
    url = master_url or (None if topology_paths and not need_live
                         else cfg.resolve_master(None))
    live = None
    if url or topo is None or need_live:
        view = MasterClient(url, **cfg.resolve_tls()).topology()
        live = view["live"]
        if topo is None:
            topo = topology_files.Topology.from_json(view["topology"])
    return topology_graph.build(topo, live)


requester_as_option = click.option("--as", "requester", metavar="NAME", default=None,
                                   help="Requester holding REFERENCE, when several do.")


@click.group()
def topology():
    """Inspect the federation's topology: sites, masters, computers, placements.

    \b
    Topology files are TOML (see topology/README.md); every command takes --json.
    Exit codes: 0 ok, 3 invalid topology or input, 4 unknown master/instance/computer,
    6 master unreachable.
    """


@topology.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@json_option
@error_boundary
def check(files, as_json):
    """Validate topology FILES (together: they may refer to each other). Works offline.

    Prints every problem with its file, line and key; exits 3 when there is any."""
    try:
        topo = topology_files.load(files)
    except InvalidInput as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "files": list(files),
                                   "problems": exc.details}, indent=2))
        else:
            echo_error(exc)
        sys.exit(int(Exit.INVALID))
    counts = topology_counts(topo)
    emit({"ok": True, "files": list(files), "counts": counts}, as_json,
         f"{', '.join(files)}: ok ({describe_counts(counts)})")


@topology.command()
@master_option
@file_option
@click.option("--all-partitions", is_flag=True, help="List free partitions one by one.")
@json_option
@error_boundary
def show(master_url, topology_paths, all_partitions, as_json):
    """Print the federation as a tree: masters > sites > computers > partitions > instances."""
    fed = load_federation(master_url, topology_paths)
    data = report.tree(fed)
    emit(data, as_json, report.tree_text(data, all_partitions).rstrip("\n"))


@topology.command()
@click.option("--format", "fmt", type=click.Choice(["json", "dot", "svg", "png"]),
              default="svg", show_default=True, help="json: node-link data; dot: Graphviz "
              "text; svg/png: a picture drawn by slapfed (no Graphviz needed).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write to this file (default: standard output; png needs -o).")
@click.option("--all-partitions", is_flag=True,
              help="Draw free partitions one by one (default: one box per computer).")
@master_option
@file_option
@json_option
@error_boundary
def export(fmt, output, all_partitions, master_url, topology_paths, as_json):
    """Export the federation graph as JSON, Graphviz dot, SVG or PNG."""
    from ..topology import draw
    fed = load_federation(master_url, topology_paths)
    if fmt == "png" and not output:
        raise InvalidInput("png is binary: give -o FILE.png",
                           [{"field": "output", "problem": "is required for png"}])
    if fmt == "json":
        data = (json.dumps(draw.node_link(fed), indent=2, sort_keys=True) + "\n").encode()
    elif fmt == "dot":
        data = draw.dot(fed).encode()
    elif fmt == "svg":
        data = draw.svg(draw.layout(fed, all_partitions)).encode()
    else:
        data = draw.png(draw.layout(fed, all_partitions))
    if output:
        with open(output, "wb") as f:
            f.write(data)
        summary = {"format": fmt, "output": output, "bytes": len(data),
                   "nodes": fed.graph.number_of_nodes(), "edges": fed.graph.number_of_edges()}
        emit(summary, as_json, f"wrote {output} ({fmt}, {len(data)} bytes, "
                               f"{summary['nodes']} nodes, {summary['edges']} edges)")
    else:
        click.echo(data.decode(), nl=False)


@topology.command()
@click.argument("master_a")
@click.argument("master_b")
@click.option("--min-trust", type=click.Choice(topology_files.TRUST_LEVELS), default=None,
              help="Only use links of at least this trust (observe < delegate < full).")
@master_option
@file_option
@json_option
@error_boundary
def path(master_a, master_b, min_trust, master_url, topology_paths, as_json):
    """The lowest-latency path from MASTER_A to MASTER_B: hops with latency, cost, trust."""
    fed = load_federation(master_url, topology_paths)
    found = fed.path(master_a, master_b, min_trust)
    emit(found, as_json, report.path_text(found))


@topology.command()
@click.argument("reference", shell_complete=completion.references)
@requester_as_option
@master_option
@file_option
@json_option
@error_boundary
def where(reference, requester, master_url, topology_paths, as_json):
    """Where instance REFERENCE (or an instance id) runs: computer, partition, address,
    host, LAN, country, continent, master; shared instances name their host instance."""
    fed = load_federation(master_url, topology_paths, need_live=True)
    found = fed.where(reference, requester)
    emit(found, as_json, report.where_text(found))


@topology.command()
@click.argument("reference", shell_complete=completion.references)
@requester_as_option
@master_option
@file_option
@json_option
@error_boundary
def domains(reference, requester, master_url, topology_paths, as_json):
    """Failure domains of the instance tree of REFERENCE: which computer, host, LAN,
    country or continent holds how many of its instances."""
    fed = load_federation(master_url, topology_paths, need_live=True)
    found = fed.failure_domains(reference, requester)
    emit(found, as_json, report.domains_text(found))


def topology_counts(topo) -> dict:
    plural = {"continent": "continents", "country": "countries", "lan": "lans",
              "host": "hosts"}
    counts = dict.fromkeys(plural.values(), 0)
    for site in topo.sites.values():
        counts[plural[site.level]] += 1
    return {**counts, "masters": len(topo.masters), "computers": len(topo.computers),
            "links": len(topo.links)}


def describe_counts(counts: dict) -> str:
    def n(key, one, many=None):
        v = counts[key]
        return f"{v} {one if v == 1 else (many or one + 's')}"
    return ", ".join((n("continents", "continent"), n("countries", "country", "countries"),
                      n("lans", "LAN"), n("hosts", "host"), n("masters", "master"),
                      n("computers", "computer"), n("links", "link")))


# ====================================================================================
# -- `slapfed topology explain` (placement helper's block: the same arguments as
# `slapfed request`; it asks POST /api/v1/placements, which writes nothing) ----------
# ====================================================================================
from .common import emit as _emit, error_boundary as _error_boundary  # noqa: E402
from .user_cmd import (  # noqa: E402
    explain_request as _explain_request, make_client as _make_client,
    render_decision as _render_decision, request_options as _request_options,
)


@topology.command()
@_request_options
@_error_boundary
def explain(reference, software_url, software_type, params, params_json, sla, sla_fallbacks,
            state, shared, parent, master_url, requester, as_json):
    """Where REFERENCE would be placed and why: candidates, refusals per plugin, scores
    and the choice, per SLA alternative. Same arguments as `slapfed request`; nothing
    is written (like `slapfed request --dry-run`)."""
    client = _make_client(master_url, requester)
    decision = _explain_request(client, reference, software_url, software_type, params,
                                params_json, sla, sla_fallbacks, state, shared, parent)
    _emit(decision, as_json, _render_decision(decision))
