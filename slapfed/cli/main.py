"""Entry point of the ``slapfed`` command: the root group and the user-facing verbs.

Depends on click and, only once a command is chosen, on the sibling module that holds
it (subcommand groups live in sibling modules): parsing ``slapfed node once`` imports
node_cmd alone, never the master, the topology or the demo.
"""
from __future__ import annotations

import gc
import importlib

if __name__ == "__main__":      # python -m slapfed.cli.main: as main() does, from here on
    gc.disable()

import click  # noqa: E402

from .. import __version__  # noqa: E402

# Every subcommand: its name -> (module of slapfed.cli, attribute). A module is imported
# when its command is run (or listed by --help / shell completion), not before.
LAZY_COMMANDS = {
    "master": ("master_cmd", "master"),
    "node": ("node_cmd", "node"),
    "demo": ("demo_cmd", "demo"),
    "topology": ("topology_cmd", "topology"),
    "ca": ("ca_cmd", "ca"),
    "peer": ("peer_cmd", "peer"),
    "ui": ("ui_cmd", "ui"),
    "request": ("user_cmd", "request"),
    "list": ("user_cmd", "list_"),
    "show": ("user_cmd", "show"),
    "start": ("user_cmd", "start"),
    "stop": ("user_cmd", "stop"),
    "destroy": ("user_cmd", "destroy"),
    "supply": ("user_cmd", "supply"),
    "computer": ("user_cmd", "computer"),
    "config": ("user_cmd", "config_group"),
    "whoami": ("user_cmd", "whoami"),
    # accounting: usage, statement, accounting prices
    "usage": ("accounting_cmd", "usage"),
    "statement": ("accounting_cmd", "statement"),
    "accounting": ("accounting_cmd", "accounting"),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported when first asked for by name; a
    command added with ``add_command`` is used as it is."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name]
            command = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
            self.commands[cmd_name] = command
        _started()
        return command


@click.group(cls=LazyGroup, lazy=LAZY_COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
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


def _started() -> None:
    """The command's module is imported: what start-up made (modules, classes, functions,
    none of them garbage) is frozen out of every later collection, and the collector,
    off until now, is on again before the command runs. Start-up allocates tens of
    thousands of objects: a dozen collections scanning them all, for nothing, cost a
    one-shot command (``node once``, ``request``) about 7 ms. Nothing happens when the
    process did not start through main() (click's test runner, a library)."""
    if not gc.isenabled() and _STARTING:
        gc.freeze()
        gc.enable()


_STARTING = __name__ == "__main__"


def main():  # console script
    global _STARTING
    if gc.isenabled():
        gc.disable()
        _STARTING = True
    cli(prog_name="slapfed")


if __name__ == "__main__":
    main()
