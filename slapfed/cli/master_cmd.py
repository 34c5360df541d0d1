"""``slapfed master ...``: run and administer a master."""
import click


@click.group()
def master():
    """Run a master."""
