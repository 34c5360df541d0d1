"""``slapfed node ...``: format a node root, run its agent, inspect and stop it.

Depends on slapfed.node (layout, agent, supervisor), slapfed.client and cli.common.
"""
from __future__ import annotations

import logging
import os
import sys
import time

import click

from ..client import MasterClient
from ..core.errors import InvalidInput, SlapfedError
from .common import EXIT_BY_CODE, Exit, emit, error_boundary, json_option, parse_pairs
from .log_options import log_options, setup_logging

root_option = click.option("--root", required=True, type=click.Path(file_okay=False),
                           help="The node root directory (holds node.json).")


@click.group()
def node():
    """Format and run a node."""


def _format_options(func):
    """The options of ``node format``, shared with ``node boot`` (defined once)."""
    options = [
        click.option("--master", envvar="SLAPFED_MASTER", required=True,
                     help="Master URL (or $SLAPFED_MASTER)."),
        click.option("--computer", required=True, help="This computer's id on the master."),
        click.option("--partitions", type=click.IntRange(0, 4096), required=True,
                     help="How many partitions (re-running can add more, never removes)."),
        root_option,
        click.option("--host", default=None),
        click.option("--lan", default=None),
        click.option("--country", default=None),
        click.option("--continent", default=None),
        click.option("--label", "labels", multiple=True, metavar="K=V",
                     help="Label (repeatable)."),
        click.option("--capability", "capabilities", multiple=True, metavar="NAME",
                     help="Tag this computer (repeatable): it then only hosts instances whose "
                          "SLA asks capability=NAME."),
        click.option("--address-base", default=None, metavar="IP",
                     help="First partition address (default: 127.X.Y.1 derived from the "
                          "computer id)."),
        click.option("--port-base", type=click.IntRange(1, 65535), default=10000,
                     show_default=True),
        click.option("--port-count", type=click.IntRange(1, 65535), default=10,
                     show_default=True),
        click.option("--single-user", "single_user", is_flag=True,
                     help="Run every partition as the node's own user: partitions are then "
                          "NOT isolated from each other. Without it, a node run by root "
                          "gives each partition its own unix user (its Python must be "
                          "executable by every user); a node not run by root is always "
                          "single-user."),
        click.option("--users", is_flag=True, hidden=True,
                     help="Kept for compatibility: one unix user per partition is the "
                          "default for root."),
        click.option("--token", default=None, metavar="TOKEN",
                     help="One-time registration token (slapfed ca token): the node makes its "
                          "key in ROOT/etc, trades the token for its certificate and uses it "
                          "from then on."),
        click.option("--token-file", default=None, type=click.Path(dir_okay=False),
                     metavar="FILE", help="Read the token from FILE (an empty file: no token)."),
        click.option("--ca", "ca_file", default=None, type=click.Path(dir_okay=False),
                     metavar="FILE",
                     help="The master's CA certificate (DATA/ca/ca.crt), to verify the master; "
                          "needed with --token."),
        click.option("--online/--offline", "online", default=None,
                     help="Let release installs download what they need (sources, "
                          "patches, eggs) or not (the default for a new node). Kept in "
                          "node.json."),
        click.option("--download-cache", "download_cache", default=None, metavar="DIR",
                     type=click.Path(file_okay=False),
                     help="Where release installs keep their downloads (default "
                          "ROOT/var/cache/download; '' for the default again). Several "
                          "nodes may share one: a release installed once then installs "
                          "offline from it. Kept in node.json."),
        click.option("--shared-cache", "shared_cache", default=None, metavar="DIR",
                     type=click.Path(file_okay=False),
                     help="A cache of built releases, possibly shared by several nodes: a "
                          "release installed once is unpacked from it instead of built, "
                          "on a node whose software directory has the same path ('' for "
                          "none). Kept in node.json."),
        click.option("--supervisord", "supervisord", default=None,
                     type=click.Choice(["own", "external"]),
                     help="own (the default): the agent starts the node's supervisord; "
                          "external: 'slapfed node supervisord' runs it in the foreground "
                          "(a node deployed in a partition). Kept in node.json."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _blank_to_none(value):
    return value if value not in ("", None) else None


def _read_token(token, token_file) -> str | None:
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError as exc:
            raise InvalidInput(f"cannot read --token-file {token_file}: {exc.strerror}",
                               [{"field": "token_file", "problem": "unreadable"}]) from None
    return _blank_to_none(token)


def _format(opts: dict, enroll_again: bool):
    """Lay the node root out and enroll (with a token); returns its NodeConfig. With
    ``enroll_again`` False, a node that already holds a certificate keeps it and its
    token is never presented again (a spent token would be refused)."""
    from ..node.identity import enroll
    from ..node.layout import Paths, format_node, save_config

    if not opts["master"]:
        raise InvalidInput("--master is empty: the node needs its master's URL",
                           [{"field": "master", "problem": "required"}])
    config = format_node(
        opts["root"], opts["master"], opts["computer"], opts["partitions"],
        host=_blank_to_none(opts["host"]), lan=_blank_to_none(opts["lan"]),
        country=_blank_to_none(opts["country"]), continent=_blank_to_none(opts["continent"]),
        labels=parse_pairs(opts["labels"], "--label"), capabilities=opts["capabilities"],
        address_base=_blank_to_none(opts["address_base"]), port_base=opts["port_base"],
        port_count=opts["port_count"], users=opts["users"] or None,
        single_user=opts["single_user"], supervisord=opts["supervisord"],
        online=opts["online"], download_cache=opts["download_cache"],
        shared_cache=opts["shared_cache"])
    if not config.isolated and config.partitions:
        logging.getLogger("slapfed.node").warning(
            "node %s: %s", config.computer, config.isolation_text())
    token = _read_token(opts["token"], opts["token_file"])
    if token and (enroll_again or not config.tls):
        config.tls = enroll(Paths(config.root).etc, opts["master"], token, opts["ca_file"])
        save_config(config)
    return config


@node.command("format")
@_format_options
@click.option("--no-register", is_flag=True, help="Only write the local layout.")
@json_option
@error_boundary
def format_cmd(no_register, as_json, **opts):
    """Create the partitions and register the computer on the master (idempotent)."""
    config = _format(opts, enroll_again=True)
    master = config.master
    registered = None
    if not no_register:
        registered = MasterClient(master, **config.client_options()).register_computer(
            config.registration())
    data = {"root": config.root, "computer": config.computer, "master": config.master,
            "partitions": [p.spec() | {"user": p.user} for p in config.partitions],
            "isolated": config.isolated, "registered": registered is not None}
    lines = [f"node {config.computer} formatted in {config.root} with "
             f"{len(config.partitions)} partition(s)", config.isolation_text()]
    lines += [f"  {p.id}  {p.address}  ports {p.port_base}-{p.port_base + p.port_count - 1}"
              + (f"  user {p.user}" if p.user else "") for p in config.partitions]
    lines.append(f"registered on {master}" if registered is not None else "not registered")
    emit(data, as_json, "\n".join(lines))


def _agent(root, runner="fork", timeout=None):
    from ..node.agent import Agent

    def make_runner():          # at the first build (node.buildout: only then)
        from ..node.buildout import DEFAULT_TIMEOUT, make_runner
        return make_runner(runner, timeout or DEFAULT_TIMEOUT)

    return Agent(root, make_runner=make_runner)


runner_option = click.option("--runner", type=click.Choice(["fork", "subprocess"]),
                             default="fork", show_default=True,
                             help="How buildout runs: forked from the warm agent, or a "
                                  "fresh interpreter.")
timeout_option = click.option("--buildout-timeout", "buildout_timeout", type=click.FloatRange(1),
                              default=1800.0, show_default=True,
                              help="Seconds one buildout run may take; past it, it is killed "
                                   "and reported failed.")


def _listen_address(ctx, param, value):
    """HOST:PORT on loopback (the node's metrics answer anyone who can connect)."""
    if value is None:
        return None
    import ipaddress
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        if not sep or not ipaddress.ip_address(host).is_loopback or not 0 <= int(port) < 65536:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a loopback HOST:PORT (e.g. "
                                 "127.0.0.1:9102; port 0 picks a free one)") from None
    return host, int(port)


def _usage_interval(ctx, param, value):
    if value is not None and 0 < value < 1:
        raise click.BadParameter(f"{value:g} is below 1 (usage reports are in whole "
                                 "seconds; 0 turns them off)")
    return None if not value else value


def loop_options(command):
    """--interval, --promise-interval, --parallel-installs, --usage-interval and
    --metrics-listen of the node loop."""
    command = click.option(
        "--usage-interval", "usage_interval", type=click.FloatRange(0), default=60.0,
        show_default=True, callback=_usage_interval,
        help="Seconds between two usage reports to the master (what each partition "
             "used: CPU, memory, disk, the instance's own units; kept in ROOT/var/usage "
             "until the master acknowledges them); 0 sends none.")(command)
    command = click.option(
        "--metrics-listen", "metrics_listen", metavar="HOST:PORT", default=None,
        callback=_listen_address,
        help="Serve the agent's metrics (Prometheus text format) at "
             "http://HOST:PORT/metrics, on loopback only; the address bound is written "
             "to ROOT/var/metrics.address.")(command)
    command = click.option(
        "--parallel-installs", type=click.IntRange(0, 64), default=1, show_default=True,
        help="Release installs run apart from the partitions' actions, at most this many "
             "at once (0: one at a time inside the loop, holding every partition up)."
    )(command)
    command = click.option(
        "--promise-interval", type=click.FloatRange(0.1), default=30.0, show_default=True,
        help="Seconds between promise checks of a started partition.")(command)
    return click.option("--interval", type=click.FloatRange(0.05), default=2.0,
                        show_default=True, help="Seconds between cycles.")(command)


@node.command("run")
@root_option
@loop_options
@runner_option
@timeout_option
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@log_options
@error_boundary
def run_cmd(root, interval, promise_interval, parallel_installs, usage_interval,
            metrics_listen, runner, buildout_timeout, verbose, quiet, log_level, log_format,
            log_file):
    """Run the node loop until SIGTERM/SIGINT."""
    setup_logging(log_level, log_format, log_file, verbose, quiet)
    _run_loop(_agent(root, runner, buildout_timeout), interval, promise_interval,
              parallel_installs, metrics_listen, usage_interval)


def _run_loop(agent, interval, promise_interval, parallel_installs, metrics_listen,
              usage_interval=None) -> None:
    server = None
    if metrics_listen is not None:
        from ..metrics import NodeMetrics, serve
        metrics = NodeMetrics()
        agent.enable_metrics(metrics)
        server = serve(metrics, *metrics_listen)
        host, port = server.server_address[:2]
        address = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        os.makedirs(agent.paths.var, exist_ok=True)
        with open(os.path.join(agent.paths.var, "metrics.address"), "w") as f:
            f.write(address + "\n")
        logging.getLogger("slapfed.node").info("metrics at http://%s/metrics", address)
    try:
        agent.run(interval=interval, promise_interval=promise_interval,
                  parallel_installs=parallel_installs, usage_interval=usage_interval)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def _register_until_answered(config, log) -> None:
    """Register the computer, retrying while the master is unreachable (a node started
    with its master, or before it, waits for it instead of failing)."""
    from ..core.errors import MasterUnreachable

    delay = 0.5
    while True:
        try:
            MasterClient(config.master, **config.client_options()).register_computer(
                config.registration())
            return
        except MasterUnreachable as exc:
            log.warning("registering %s: %s; retrying in %gs", config.computer, exc.message,
                        delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


@node.command("boot")
@_format_options
@loop_options
@runner_option
@timeout_option
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@log_options
@error_boundary
def boot_cmd(interval, promise_interval, parallel_installs, usage_interval, metrics_listen,
             runner, buildout_timeout, verbose, quiet, log_level, log_format, log_file,
             **opts):
    """Format the node (idempotent; a node already enrolled never presents its token
    again), register it, then run the node loop: one command for a node deployed as a
    service (profiles/node)."""
    setup_logging(log_level, log_format, log_file, verbose, quiet)
    config = _format(opts, enroll_again=False)
    _register_until_answered(config, logging.getLogger("slapfed.node"))
    _run_loop(_agent(config.root, runner, buildout_timeout), interval, promise_interval,
              parallel_installs, metrics_listen, usage_interval)


@node.command("supervisord")
@root_option
@click.option("--identifier", default=None,
              help="supervisord's identifier (default: slapfed-<computer> from node.json).")
@error_boundary
def supervisord_cmd(root, identifier):
    """Run the node's supervisord in the FOREGROUND (it replaces this process), for a node
    whose node.json says supervisord=external: its agent then uses this one."""
    from ..core.errors import NotFound
    from ..node.layout import Paths, load_config
    from ..node.supervisor import EXTERNAL, Supervisor

    if identifier is None:
        try:
            identifier = f"slapfed-{load_config(root).computer}"
        except NotFound:
            identifier = "slapfed-node"
    sup = Supervisor(Paths(root), identifier, mode=EXTERNAL)
    sup.write_main_conf()
    argv = sup.foreground_argv()
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(sup.paths.root)
    os.execv(argv[0], argv)


class NodeUnhealthy(SlapfedError):
    """``slapfed node check``: the node is not (yet) formatted, supervised and known."""

    code = "node_unhealthy"


EXIT_BY_CODE[NodeUnhealthy.code] = Exit.FAILED


def _node_problems(root: str) -> tuple[list[str], dict]:
    from ..core.errors import NotFound
    from ..node.agent import read_agent_pid
    from ..node.layout import Paths, load_config
    from ..node.supervisor import Supervisor
    from ..procs import pid_alive

    try:
        config = load_config(root)
    except NotFound:
        return [f"{root} is not formatted yet (no node.json)"], {}
    paths = Paths(config.root)
    problems = []
    if not Supervisor(paths, mode=config.supervisord).running():
        problems.append(f"supervisord does not answer on {paths.supervisord_sock}")
    agent = read_agent_pid(paths)
    if agent is None or not pid_alive(agent):
        problems.append(f"no node agent runs on {config.root} "
                        f"({'no' if agent is None else 'stale'} {paths.agent_pid})")
    elif not os.path.exists(paths.desired):
        problems.append("the agent has not fetched its desired state yet")
    try:
        computer = MasterClient(config.master, **config.client_options()).show_computer(
            config.computer)
    except SlapfedError as exc:
        problems.append(f"the master does not show computer {config.computer}: {exc.message}")
        computer = {}
    facts = {"computer": config.computer, "master": config.master, "root": config.root,
             "partitions": len(computer.get("partitions") or [])}
    return problems, facts


@node.command("check")
@root_option
@click.option("--wait", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds to keep checking before giving up.")
@json_option
@error_boundary
def check_cmd(root, wait, as_json):
    """Exit 0 when the node is formatted, its supervisord answers, its agent runs and has
    fetched its desired state, and the master knows its computer; else exit 8 saying what
    is not."""
    deadline = time.monotonic() + wait
    while True:
        problems, facts = _node_problems(root)
        if not problems or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if problems:
        raise NodeUnhealthy(f"node in {root} is not healthy: {'; '.join(problems)}",
                            problems)
    emit(facts | {"ok": True}, as_json,
         f"node {facts['computer']} is up: {facts['partitions']} partition(s) on "
         f"{facts['master']}")


@node.command("once")
@root_option
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@runner_option
@timeout_option
@click.option("-v", "--verbose", is_flag=True, help="Log every step on stderr.")
@log_options
@json_option
@error_boundary
def once_cmd(root, dry_run, runner, buildout_timeout, verbose, log_level, log_format,
             log_file, as_json):
    """Run one cycle (or print its plan with --dry-run). Exit code 8 when a release or
    a partition failed in this cycle."""
    setup_logging(log_level, log_format, log_file, verbose, quiet=not verbose)
    agent = _agent(root, runner, buildout_timeout)
    if not dry_run:
        agent.usage_reporter()          # the cycle's promise runs open incidents too
    try:
        result = agent.once(dry_run=dry_run)
    finally:
        usage = None if dry_run else _report_usage(agent)
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
    data = result.to_json()
    if usage is not None:
        data["usage"] = usage
        if usage["spooled"]:
            said = f"report {usage['spooled']}"
        elif usage.get("due_in") is not None:
            said = f"next report due in {usage['due_in']:g}s"
        else:
            said = "interval started"
        lines.append(f"usage: {said}, {usage['sent']} sent, {len(usage['pending'])} kept "
                     "for later")
    emit(data, as_json, "\n".join(lines))
    if any(o.state == "failed" for o in result.outcomes):
        from .common import Exit
        sys.exit(int(Exit.FAILED))


ONCE_USAGE_INTERVAL = 60.0   # node once: seconds between two usage reports (run's default)


def _report_usage(agent):
    """``node once`` reports what it measured since the last report once that report is
    ONCE_USAGE_INTERVAL seconds old (the first time it only starts the interval; in
    between it samples and sends only what is spooled); a failure here never fails the
    cycle."""
    from ..core.errors import SlapfedError
    try:
        return agent.report_usage_now(due_after=ONCE_USAGE_INTERVAL)
    except (SlapfedError, OSError) as exc:
        logging.getLogger("slapfed.node").warning("usage report not made: %s", exc)
        return None


@node.command("status")
@root_option
@json_option
@error_boundary
def status_cmd(root, as_json):
    """The node's local view: partitions, applied revisions, supervisord processes."""
    data = _agent(root).status()
    lines = [f"node {data['computer']} (master {data['master']}), root {data['root']}",
             data["isolation"],
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
    """Stop the node's supervisord and every service it runs (by PID), then whatever the
    partitions still run outside it (the orphans of a supervisord that was killed)."""
    from ..node.layout import Paths, load_config
    from ..node.leftovers import stop_orphans
    from ..node.supervisor import Supervisor

    if not os.path.isdir(root):
        raise InvalidInput(f"{root} is not a directory",
                           [{"field": "root", "problem": "not a directory"}])
    config = load_config(root)
    paths = Paths(config.root)
    sup = Supervisor(paths)
    was_running = sup.shutdown()
    orphans = stop_orphans([(p.id, paths.partition(p.id).path, p.user)
                            for p in config.partitions])
    lines = ["supervisord and its services stopped" if was_running else
             "supervisord was not running"]
    lines += [f"  {pid}: stopped orphaned process(es) {', '.join(map(str, pids))}"
              for pid, pids in sorted(orphans.items())]
    emit({"root": config.root, "stopped": was_running, "orphans": orphans}, as_json,
         "\n".join(lines))
