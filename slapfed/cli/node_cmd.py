"""``slapfed node ...``: format and run a node agent."""
import click


@click.group()
def node():
    """Format and run a node."""
