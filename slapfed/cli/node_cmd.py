"""``slapfed node ...``: format a node root, run its agent, inspect and stop it.

Depends on slapfed.node (layout, agent, supervisor), slapfed.client and cli.common.
"""
from __future__ import annotations

import logging
import os
import sys

import click

from ..client import MasterClient
from ..core.errors import InvalidInput
from .common import emit, error_boundary, json_option, parse_pairs

root_option = click.option("--root", required=True, type=click.Path(file_okay=False),
                           help="The node root directory (holds node.json).")


@click.group()
def node():
    """Format and run a node."""


@node.command("format")
@click.option("--master", envvar="SLAPFED_MASTER", required=True,
              help="Master URL (or $SLAPFED_MASTER).")
@click.option("--computer", required=True, help="This computer's id on the master.")
@click.option("--partitions", type=click.IntRange(0, 4096), required=True,
              help="How many partitions (re-running can add more, never removes).")
@root_option
@click.option("--host", default=None)
@click.option("--lan", default=None)
@click.option("--country", default=None)
@click.option("--continent", default=None)
@click.option("--label", "labels", multiple=True, metavar="K=V", help="Label (repeatable).")
@click.option("--capability", "capabilities", multiple=True, metavar="NAME",
              help="Tag this computer (repeatable): it then only hosts instances whose SLA "
                   "asks capability=NAME.")
@click.option("--address-base", default=None, metavar="IP",
              help="First partition address (default: 127.X.Y.1 derived from the computer id).")
@click.option("--port-base", type=click.IntRange(1, 65535), default=10000, show_default=True)
@click.option("--port-count", type=click.IntRange(1, 65535), default=10, show_default=True)
@click.option("--users", is_flag=True,
              help="One unix user per partition (root only; the node's Python must be "
                   "executable by every user).")
@click.option("--no-register", is_flag=True, help="Only write the local layout.")
@click.option("--token", default=None, metavar="TOKEN",
              help="One-time registration token (slapfed ca token): the node makes its key "
                   "in ROOT/etc, trades the token for its certificate and uses it from then on.")
@click.option("--ca", "ca_file", default=None, type=click.Path(dir_okay=False), metavar="FILE",
              help="The master's CA certificate (DATA/ca/ca.crt), to verify the master; "
                   "needed with --token.")
@json_option
@error_boundary
def format_cmd(master, computer, partitions, root, host, lan, country, continent, labels,
               capabilities, address_base, port_base, port_count, users, no_register, token,
               ca_file, as_json):
    """Create the partitions and register the computer on the master (idempotent)."""
    from ..node.identity import enroll
    from ..node.layout import Paths, format_node, save_config

    config = format_node(root, master, computer, partitions, host=host, lan=lan,
                         country=country, continent=continent,
                         labels=parse_pairs(labels, "--label"), capabilities=capabilities,
                         address_base=address_base,
                         port_base=port_base, port_count=port_count, users=users)
    if token:
        config.tls = enroll(Paths(config.root).etc, master, token, ca_file)
        save_config(config)
    registered = None
    if not no_register:
        registered = MasterClient(master, **config.client_options()).register_computer(
            config.registration())
    data = {"root": config.root, "computer": config.computer, "master": config.master,
            "partitions": [p.spec() | {"user": p.user} for p in config.partitions],
            "registered": registered is not None}
    lines = [f"node {config.computer} formatted in {config.root} with "
             f"{len(config.partitions)} partition(s)"]
    lines += [f"  {p.id}  {p.address}  ports {p.port_base}-{p.port_base + p.port_count - 1}"
              + (f"  user {p.user}" if p.user else "") for p in config.partitions]
    lines.append(f"registered on {master}" if registered is not None else "not registered")
    emit(data, as_json, "\n".join(lines))


def _agent(root, runner="fork", timeout=None):
    from ..node.agent import Agent
    from ..node.buildout import DEFAULT_TIMEOUT, make_runner

    return Agent(root, runner=make_runner(runner, timeout or DEFAULT_TIMEOUT))


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


runner_option = click.option("--runner", type=click.Choice(["fork", "subprocess"]),
                             default="fork", show_default=True,
                             help="How buildout runs: forked from the warm agent, or a "
                                  "fresh interpreter.")
timeout_option = click.option("--buildout-timeout", "buildout_timeout", type=click.FloatRange(1),
                              default=1800.0, show_default=True,
                              help="Seconds one buildout run may take; past it, it is killed "
                                   "and reported failed.")


@node.command("run")
@root_option
@click.option("--interval", type=click.FloatRange(0.05), default=2.0, show_default=True,
              help="Seconds between cycles.")
@click.option("--promise-interval", type=click.FloatRange(0.1), default=30.0,
              show_default=True, help="Seconds between promise checks of a started partition.")
@runner_option
@timeout_option
@click.option("-v", "--verbose", is_flag=True)
@error_boundary
def run_cmd(root, interval, promise_interval, runner, buildout_timeout, verbose):
    """Run the node loop until SIGTERM/SIGINT."""
    _setup_logging(verbose)
    _agent(root, runner, buildout_timeout).run(interval=interval, promise_interval=promise_interval)


@node.command("once")
@root_option
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@runner_option
@timeout_option
@click.option("-v", "--verbose", is_flag=True, help="Log every step on stderr.")
@json_option
@error_boundary
def once_cmd(root, dry_run, runner, buildout_timeout, verbose, as_json):
    """Run one cycle (or print its plan with --dry-run). Exit code 8 when a release or
    a partition failed in this cycle."""
    _setup_logging(verbose, quiet=not verbose)
    result = _agent(root, runner, buildout_timeout).once(dry_run=dry_run)
    lines = []
    if dry_run:
        lines.append("plan (dry run, nothing changed):" if result.plan else
                     "nothing to do")
        lines += [f"  {line}" for line in result.plan.describe()]
    else:
        lines.append(f"{len(result.plan)} action(s) in {result.seconds:.3f}s"
                     if result.plan else f"nothing to do ({result.seconds:.3f}s)")
        for o in result.outcomes:
            lines.append(f"  {o.target}: {o.state} ({o.seconds:.3f}s)")
            if o.state == "failed" and o.log_tail:
                lines += ["    " + line for line in o.log_tail.strip().splitlines()[-10:]]
    emit(result.to_json(), as_json, "\n".join(lines))
    if any(o.state == "failed" for o in result.outcomes):
        from .common import Exit
        sys.exit(int(Exit.FAILED))


@node.command("status")
@root_option
@json_option
@error_boundary
def status_cmd(root, as_json):
    """The node's local view: partitions, applied revisions, supervisord processes."""
    data = _agent(root).status()
    lines = [f"node {data['computer']} (master {data['master']}), root {data['root']}",
             f"supervisord: {'running' if data['supervisord'] else 'not running'}"]
    for h, sw in data["software"].items():
        lines.append(f"release {sw['url']}: {sw['status']}"
                     + (f" (types: {', '.join(sw['software_types'])})"
                        if sw["software_types"] else ""))
    for p in data["partitions"]:
        inst = f"{p['instance_id']} r{p['revision']} {p['state']}" if p["instance_id"] \
            else "free"
        procs = ", ".join(f"{n}={s}" for n, s in sorted(p["processes"].items()))
        lines.append(f"  {p['id']:<8} {p['address']:<15} {inst}" + (f"  [{procs}]" if procs
                                                                    else ""))
    if data["outbox"]:
        lines.append(f"reports waiting for the master: {', '.join(data['outbox'])}")
    emit(data, as_json, "\n".join(lines))


@node.command("stop")
@root_option
@json_option
@error_boundary
def stop_cmd(root, as_json):
    """Stop the node's supervisord and every service it runs (by PID)."""
    from ..node.layout import Paths, load_config
    from ..node.supervisor import Supervisor

    if not os.path.isdir(root):
        raise InvalidInput(f"{root} is not a directory",
                           [{"field": "root", "problem": "not a directory"}])
    config = load_config(root)
    sup = Supervisor(Paths(config.root))
    was_running = sup.shutdown()
    emit({"root": config.root, "stopped": was_running}, as_json,
         "supervisord and its services stopped" if was_running else
         "supervisord was not running")
