"""The ``slapfed topology`` group: check, show, export, path and where over the federation graph.

Depends on slapfed.topology (files, graph, report, draw), slapfed.client and the CLI plumbing.
"""
from __future__ import annotations

import json
import sys

import click

from ..core.errors import InvalidInput
from ..topology import files as topology_files
from .common import Exit, emit, error_boundary, json_option


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
            click.echo(f"slapfed: {len(exc.details)} problem(s) in the topology:", err=True)
            for d in exc.details:
                click.echo(f"  {d['field']}: {d['problem']}", err=True)
        sys.exit(int(Exit.INVALID))
    counts = topology_counts(topo)
    emit({"ok": True, "files": list(files), "counts": counts}, as_json,
         f"{', '.join(files)}: ok ({describe_counts(counts)})")


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
