"""``slapfed demo start|stop``: a master and a node on this machine, the sample service
requested and answering. Processes run in the background; their PIDs are kept in
<dir>/demo.json so ``demo stop`` stops exactly them.

The master serves HTTPS with client certificates; the demo issues an administrator
identity for you (<dir>/identity) and a one-time token for its node from the master's CA,
so nobody touches a certificate. Depends on slapfed.client, slapfed.ca, slapfed.procs and
the CLI plumbing.
"""
from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import click

from ..ca import identity as ids
from ..ca.authority import LOCAL_CA_FILE, LOCAL_CERT_FILE, LOCAL_KEY_FILE, CertificateAuthority
from ..client import MasterClient
from ..core.errors import SlapfedError
from ..procs import Proc, slapfed_argv, stop_pid, wait_for
from .common import error_boundary

REPO = Path(__file__).resolve().parents[2]
COMPUTER = "demo-node"


def _say(msg: str) -> None:
    click.echo(click.style("==> ", fg="green", bold=True) + msg)


def _run_cli(*args: str, cwd: Path) -> None:
    import subprocess
    done = subprocess.run(slapfed_argv(*args), cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SlapfedError(f"`slapfed {' '.join(args)}` failed: {done.stderr.strip() or done.stdout.strip()}")


@click.group()
def demo():
    """Run a small demo federation on this machine."""


@demo.command(name="start")
@click.option("--dir", "directory", default="demo", show_default=True, type=click.Path(),
              help="Where the demo keeps its master data, node root and logs.")
@click.option("--partitions", default=3, show_default=True)
@click.option("--profiles", "profiles", type=click.Path(exists=True, file_okay=False),
              default=str(REPO / "profiles"), show_default=True)
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for the service.")
@error_boundary
def demo_start(directory, partitions, profiles, timeout):
    """Start a master and a node, request the hello service and show it answering."""
    base = Path(directory).resolve()
    state_file = base / "demo.json"
    if state_file.exists():
        raise SlapfedError(f"a demo already runs from {base} (stop it: slapfed demo stop --dir {directory})")
    base.mkdir(parents=True, exist_ok=True)
    release = str(Path(profiles).resolve() / "hello" / "software.cfg")
    state = {"pids": {}}

    def save():
        state_file.write_text(json.dumps(state, indent=2))

    _say(f"starting a master (embedded FileStorage in {base / 'master'})")
    url_file = base / "master" / "master.url"
    url_file.unlink(missing_ok=True)
    master = Proc(slapfed_argv("master", "serve", "--data", str(base / "master"),
                               "--listen", "127.0.0.1:0", "--name", "demo-root"), base / "master.log")
    state["pids"]["master"] = master.pid
    save()
    try:
        wait_for(lambda: url_file.exists() and url_file.read_text().strip(), 30,
                 "the master to listen", proc=master)
        master_url = url_file.read_text().strip()
        state["master"] = master_url
        save()
        ca = CertificateAuthority(base / "master" / "ca")
        tls = _demo_identity(ca, base / "identity")
        client = MasterClient(master_url, **tls)
        wait_for(lambda: _healthy(client), 15, "the master to answer", proc=master)
        _say(f"master answers at {master_url}")

        _say(f"formatting node {COMPUTER!r} with {partitions} partitions in {base / 'node'}")
        _run_cli("node", "format", "--master", master_url, "--computer", COMPUTER,
                 "--partitions", str(partitions), "--root", str(base / "node"),
                 "--host", "demo-host", "--lan", "demo-lan", "--country", "fr",
                 "--continent", "europe", "--token", ca.token_for(COMPUTER, ttl=600),
                 "--ca", tls["ca"], *_isolation_flags(base), cwd=base)
        node_started = time.time()
        node = Proc(slapfed_argv("node", "run", "--root", str(base / "node"), "--interval", "1"),
                    base / "node.log")
        state["pids"]["node"] = node.pid
        state["node_root"] = str(base / "node")
        save()

        _say(f"supplying {release} to {COMPUTER}")
        client.supply(COMPUTER, release)
        _say("requesting instance 'hello-demo' (greeting=bonjour)")
        inst = client.request("hello-demo", release, parameters={"greeting": "bonjour"})
        t0 = time.monotonic()
        # only what the node reported since it started counts (a status kept from an
        # earlier run of the demo is not proof that the service runs now)
        inst = client.wait_ready(inst["id"], timeout, reported_after=node_started)
        if inst["status"]["state"] != "started":
            raise SlapfedError(f"hello-demo is {inst['status']['state']}:\n{inst['status']['log_tail']}")
        _say(f"hello-demo started in {time.monotonic() - t0:.1f}s; connection parameters:")
        for k, v in sorted(inst["connection"].items()):
            click.echo(f"    {k} = {v}")
        url = inst["connection"].get("url")
        if url:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    body = resp.read().decode()
            except OSError as exc:
                raise SlapfedError(f"hello-demo reports started but {url} does not answer: "
                                   f"{getattr(exc, 'reason', exc)}") from None
            _say(f"GET {url} ->")
            click.echo(f"    {body.strip()}")
        _child_master(client, base, Path(profiles).resolve() / "master" / "software.cfg",
                      timeout, node_started)
    except BaseException:
        click.echo(f"slapfed: the demo did not come up; logs are in {base}; stopping it", err=True)
        _stop(base)
        raise

    cfg_file = base / "client.json"
    cfg_file.write_text(json.dumps({"master": master_url, **tls}, indent=2) + "\n")
    click.echo(f"""
The master and the node keep running in the background (logs: {base}/master.log, {base}/node.log).
Look around:
    export SLAPFED_CONFIG={cfg_file}
    slapfed list                      # your instances
    slapfed show hello-demo           # one instance, with its connection parameters
    slapfed computer show {COMPUTER}     # partitions and supplied releases
    slapfed request hello-demo {release} --param greeting=hi --wait 60
    slapfed stop hello-demo --wait 30 ; slapfed start hello-demo --wait 30
    slapfed destroy hello-demo --wait 30
    slapfed node status --root {base / 'node'}
    slapfed topology show             # the tree of masters, with demo-child under the root
    SLAPFED_CONFIG={base / 'child-client.json'} slapfed computer list   # the child master
(slapfed is {Path(sys.executable).parent / 'slapfed'}; activate the virtualenv or use that path.)
Stop everything (node services, node, master) with:  make demo-stop   (or: slapfed demo stop --dir {directory})""")


def _demo_identity(ca: CertificateAuthority, directory: Path) -> dict:
    """The demo user's administrator identity (made once, kept with the demo's data)."""
    files = {"ca": str(directory / LOCAL_CA_FILE), "cert": str(directory / LOCAL_CERT_FILE),
             "key": str(directory / LOCAL_KEY_FILE)}
    if not Path(files["cert"]).exists():
        ca.issue_with_new_key(ids.admin("demo"), directory)
    return files


def _child_master(client: MasterClient, base: Path, release: Path, timeout: float,
                  node_started: float) -> None:
    """Recursion: request a master from the master, enrol as its owner, and call it."""
    from ..enrol import enrol

    _say(f"requesting a master from the master: instance 'child-master' of {release}")
    client.supply(COMPUTER, str(release))
    t0 = time.monotonic()
    inst = client.request("child-master", str(release),
                          parameters={"name": "demo-child", "register-with-parent": "true"})
    inst = client.wait_ready(inst["id"], timeout, reported_after=node_started)
    if inst["status"]["state"] != "started":
        raise SlapfedError(f"child-master is {inst['status']['state']}:\n"
                           f"{inst['status']['log_tail']}")
    conn = inst["connection"]
    _say(f"child-master started in {time.monotonic() - t0:.1f}s (ZEO + master in one "
         f"partition); it serves {conn['url']} with its own CA")
    owner = base / "child-owner"
    if (owner / "identity.crt").exists():      # an earlier run of this demo enrolled
        child = MasterClient(conn["url"], ca=str(owner / "ca.crt"),
                             cert=str(owner / "identity.crt"), key=str(owner / "identity.key"))
        wait_for(lambda: _healthy(child), 30, "the child master to answer")
        how = "kept the identity an earlier run enrolled"
    else:
        from ..sealed_values import opened_connection
        token = opened_connection(inst, client.cert[1])["admin-token"]   # sealed to us
        child = enrol(conn["url"], conn["ca-certificate"], token, owner)
        how = "enrolled with its one-time token"
    who = child.whoami()["principal"]
    chain = " -> ".join(inst["provenance"] + [conn["name"]])
    _say(f"{how}: the child master knows you as {who}; "
         f"chain of masters: {chain}")
    (base / "child-client.json").write_text(json.dumps({
        "master": conn["url"], "ca": child.verify, "cert": child.cert[0], "key": child.cert[1]},
        indent=2) + "\n")


def _isolation_flags(base: Path) -> list:
    """``--single-user`` (said aloud) when, as root, partition users could not run this
    runtime or reach the demo directory (a checkout under a 0700 directory): a real node
    refuses that, but the demo is for trying slapfed out, not for isolating tenants."""
    import os

    if os.geteuid() != 0:
        return []
    from ..node.layout import IsolationUnavailable, check_runtime

    try:
        check_runtime(None, reach=[str(base)])
    except IsolationUnavailable as exc:
        _say(f"single-user node: {exc.message}")
        return ["--single-user"]
    return []


def _healthy(client: MasterClient) -> bool:
    try:
        client.health()
        return True
    except SlapfedError:
        return False


def _stop(base: Path) -> list[str]:
    state_file = base / "demo.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return []
    stopped = []
    node_pid = state.get("pids", {}).get("node")
    if node_pid:
        stop_pid(node_pid)
        stopped.append(f"node agent (pid {node_pid})")
    if state.get("node_root") and Path(state["node_root"], "node.json").exists():
        import subprocess
        subprocess.run(slapfed_argv("node", "stop", "--root", state["node_root"]),
                       capture_output=True, timeout=60)
        stopped.append("the node's supervisord and its services")
    master_pid = state.get("pids", {}).get("master")
    if master_pid:
        stop_pid(master_pid)
        stopped.append(f"master (pid {master_pid})")
    state_file.unlink(missing_ok=True)
    return stopped


@demo.command(name="stop")
@click.option("--dir", "directory", default="demo", show_default=True, type=click.Path())
@error_boundary
def demo_stop(directory):
    """Stop the demo's node services, node agent and master (data is kept)."""
    base = Path(directory).resolve()
    stopped = _stop(base)
    if not stopped:
        click.echo(f"no demo runs from {base}")
        return
    for what in stopped:
        _say(f"stopped {what}")
    click.echo(f"data kept in {base}; remove it with: rm -rf {directory}")
