"""The ``slapfed topology`` group: check, show, export, path and where over the federation graph.

Depends on slapfed.topology (files, graph, render), slapfed.client and the CLI plumbing.
"""
from __future__ import annotations

import click


@click.group()
def topology():
    """Inspect the federation's topology: sites, masters, computers, placements."""
