"""Entry point of the ``slapfed`` command: the root group and the user-facing verbs.

Depends on every layer below the CLI; subcommand groups live in sibling modules.
"""
from __future__ import annotations

import click

from .. import __version__
from .master_cmd import master
from .node_cmd import node
from .user_cmd import COMMANDS
from .demo_cmd import demo
from .topology_cmd import topology
from .ca_cmd import ca
from .peer_cmd import peer
from .ui_cmd import ui


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slapfed")
def cli():
    """slapfed: a federated, recursive cloud orchestrator. One verb: request.

    \b
    Exit codes: 0 ok, 1 unexpected error, 2 usage, 3 invalid input, 4 not found,
    5 conflict or no capacity, 6 master unreachable, 7 timeout, 8 instance failed,
    9 authentication/authorization refused.

    \b
    Shell completion (instance references too): in ~/.bashrc
      eval "$(_SLAPFED_COMPLETE=bash_source slapfed)"
    (zsh: zsh_source in ~/.zshrc; fish: fish_source > ~/.config/fish/completions/slapfed.fish)
    """


cli.add_command(master)
cli.add_command(node)
cli.add_command(demo)
cli.add_command(topology)
cli.add_command(ca)
cli.add_command(peer)
cli.add_command(ui)
for _command in COMMANDS:
    cli.add_command(_command)
# accounting: usage, statement, accounting prices
from .accounting_cmd import COMMANDS as ACCOUNTING_COMMANDS  # noqa: E402
for _command in ACCOUNTING_COMMANDS:
    cli.add_command(_command)


def main():  # console script
    cli(prog_name="slapfed")


if __name__ == "__main__":
    main()
