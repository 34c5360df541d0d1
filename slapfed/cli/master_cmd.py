"""``slapfed master ...``: run (serve) and administer (migrate) a master.

Depends on click, cli.common, cli.log_options, master.server and store. Listens on
loopback unless a non-loopback address is given explicitly.
"""
from __future__ import annotations

import click

from .. import logs
from ..core.errors import InvalidInput
from ..core.leases import DEFAULT_LEASE
from ..core.provenance import DEFAULT_MAX_DEPTH
from .common import (emit, env_default, error_boundary, invitation_options, json_option,
                     write_invitation)
from .log_options import log_options
from .user_cmd import make_client, master_option

DEFAULT_DATA = "slapfed-master"
DEFAULT_LISTEN = "127.0.0.1:8470"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT``, ``:PORT`` or ``PORT`` (host defaults to 127.0.0.1)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise InvalidInput(f"--listen {value!r} must look like HOST:PORT (port 0 picks a "
                           "free one)", [{"field": "listen", "problem": "bad port"}])
    return host, int(port)


@click.group()
def master():
    """Run a master."""


def _metrics_across_workers(data_dir: str) -> None:
    """Several workers: /metrics adds up what each counted (prometheus_client's
    multiprocess mode, in DATA/run/metrics, emptied at each start). Must run before
    prometheus_client is first imported."""
    import os
    import shutil
    directory = os.path.join(os.path.abspath(data_dir), "run", "metrics")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory     # slapfed.metrics.MULTIPROC_ENV


class DurationType(click.ParamType):
    """A duration (core.retention.parse_duration): 7d, 12h, 90m, 30s or seconds."""

    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        from ..core.errors import InvalidInput
        from ..core.retention import parse_duration
        try:
            return parse_duration(value)
        except InvalidInput as exc:
            self.fail(exc.details[0]["problem"], param, ctx)


@master.command()
@click.option("--data", "data_dir", default=lambda: env_default("SLAPFED_MASTER_DATA",
                                                                DEFAULT_DATA),
              show_default=f"$SLAPFED_MASTER_DATA or ./{DEFAULT_DATA}",
              help="Data directory (FileStorage, master.url, master.pid, ZEO files).")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True,
              help="HOST:PORT to bind; port 0 picks a free port (see DATA/master.url).")
@click.option("--storage", default=None,
              help="Storage URI: file (default), file:///abs/path.fs or zeo://HOST:PORT.")
@click.option("--start-zeo", is_flag=True,
              help="Start a ZEO server on 127.0.0.1 over DATA/master.fs (allows --workers).")
@click.option("--workers", default=1, show_default=True, type=int,
              help="gunicorn worker processes (more than 1 needs ZEO).")
@click.option("--threads", default=16, show_default=True, type=int,
              help="Threads per worker.")
@click.option("--access-log", "access_log_file", default=None, metavar="FILE",
              help="Write the access log (one line per request, on by default with the "
                   "rest of the log) to FILE instead; '-' for stderr.")
@click.option("--no-access-log", is_flag=True, help="No access log.")
@log_options
@click.option("--topology", "topology_files", multiple=True, metavar="FILE",
              type=click.Path(dir_okay=False),
              help="Topology file (TOML, repeatable): validated at start; fills the "
                   "locality of registering computers and refuses contradictions.")
@click.option("--name", "master_name", default=None, metavar="NAME",
              help="This master's name in the topology files (default: the only master "
                   "they declare).")
@click.option("--insecure-http", is_flag=True,
              help="Development mode: plain HTTP, no client certificates, every caller "
                   "acts as the local administrator. Refused unless HOST is loopback.")
@click.option("--max-depth", default=DEFAULT_MAX_DEPTH, show_default=True, type=int,
              help="Refuse a request that already crossed this many masters "
                   "(recursion_refused), and any request that already crossed this one.")
@click.option("--ancestor", "ancestry", multiple=True, metavar="NAME",
              help="A master above this one (repeatable, root first): the provenance of "
                   "requests that carry none.")
@click.option("--peer-retry-max", default=30.0, show_default=True, type=float,
              metavar="SECONDS",
              help="Longest back-off between two calls to a peer master that fails; a "
                   "peer that comes back is called again at once.")
@click.option("--backup-to", default=None, metavar="REPO", type=click.Path(file_okay=False),
              help="Back up DATA into REPO every --backup-every seconds (as `master "
                   "backup`); a failed backup is logged and retried.")
@click.option("--backup-every", default=3600.0, show_default=True, type=float,
              metavar="SECONDS", help="Period of the scheduled backups (with --backup-to).")
@click.option("--pack-every", default=86400.0, show_default=True, type=float,
              metavar="SECONDS", help="Pack the ZODB this often (0: never).")
@click.option("--pack-keep", default=86400.0, show_default=True, type=float,
              metavar="SECONDS", help="History an automatic pack keeps.")
@click.option("--lease", default=DEFAULT_LEASE, show_default=True,
              type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="A computer whose node has not polled or reported for this long shows "
                   "unknown (and so do its instances) and gets no new instance; nothing "
                   "it hosts is destroyed, moved or freed.")
@click.option("--rebuild-after", default=0.0, show_default=True,
              type=click.FloatRange(min=0), metavar="SECONDS",
              help="A computer whose lease has been out this long is declared lost by the "
                   "master itself, and what it hosts is placed again elsewhere (as "
                   "`slapfed computer lost` does). 0: never; only an administrator's "
                   "verdict moves anything.")
@click.option("--outbound-allow", "outbound_allow", multiple=True, metavar="CIDR[,CIDR]",
              help="Networks this master may connect to when it calls a URL it was given "
                   "(POST /peers, a child master's registration, every later call to a "
                   "peer); repeatable. A URL whose host resolves only elsewhere is "
                   "refused (outbound_refused) before any connection. Default: any.")
@click.option("--long-poll-max", default=60.0, show_default=True,
              type=click.FloatRange(min=0, max=60), metavar="SECONDS",
              help="Longest a long poll of this master (GET /federation/changes) waits "
                   "for a change; a peer asking longer gets its answer after this.")
@click.option("--replica-of", "replica_of", default=None, metavar="FILE",
              type=click.Path(dir_okay=False),
              help="Serve as a read-only replica of the primary of this invitation (from "
                   "`slapfed master replica invite`): enrol there, copy its CA, follow its "
                   "transactions.")
@click.option("--sync", is_flag=True,
              help="A sync replica: the primary acknowledges a write once this replica "
                   "holds it (bounded by the primary's --sync-timeout).")
@click.option("--sync-timeout", default=5.0, show_default=True, type=float,
              metavar="SECONDS",
              help="How long a write waits for a sync replica before the primary degrades "
                   "to asynchronous (logged, shown in `master status`).")
@click.option("--destroyed-retention", "destroyed_retention", default="30d",
              show_default=True, metavar="DURATION", type=DurationType(),
              help="Forget a destroyed instance (once its partition is freed) this long "
                   "after its last change: 7d, 12h, 90m, 30s or seconds; 0 keeps them "
                   "forever. Until then `slapfed list --all` shows it.")
@click.option("--primary-wait", default=0.0, show_default=True,
              type=click.FloatRange(min=0, max=86400), metavar="SECONDS",
              help="A new replica (--replica-of) whose primary does not answer yet tries "
                   "to enrol again for this long (a replica deployed beside its primary).")
@click.option("--promote", is_flag=True,
              help="If DATA holds a replica, make it the primary of a new epoch before "
                   "serving (as `master promote` does to a running replica); a primary's "
                   "DATA serves as it is. A child master's partition that took over its "
                   "replica's (it was rebuilt from it) starts so.")
@click.option("--peer-usage-interval", "peer_usage_interval", default=60.0,
              show_default=True, type=click.FloatRange(min=0), metavar="SECONDS",
              help="Pull each peer's usage feed (what this master's delegations used "
                   "there) this often, and soon after the peer reports a change; 0: "
                   "never.")
@click.option("--product", "products", multiple=True, metavar="NAME=URL",
              help="SlapOS' product alias: `slapos request REF product.NAME` asks for the "
                   "release URL (getSoftwareReleaseListFromSoftwareProduct); repeatable, "
                   "one URL per NAME. NAME is an id, URL a release a request may name.")
@error_boundary
def serve(data_dir, listen, storage, start_zeo, workers, threads, access_log_file,
          no_access_log, log_level, log_format, log_file, topology_files, master_name,
          insecure_http, max_depth, ancestry, peer_retry_max, backup_to, backup_every,
          pack_every, pack_keep, lease, rebuild_after, outbound_allow, long_poll_max,
          replica_of, sync, sync_timeout, destroyed_retention, primary_wait,
          promote, peer_usage_interval, products):
    """Serve the master API with gunicorn until SIGTERM or Ctrl-C: HTTPS with client
    certificates from DATA/ca (created on first start), or plain HTTP on loopback with
    --insecure-http. Logs to stderr (--log-file), with one access line per request."""
    if workers > 1:
        _metrics_across_workers(data_dir)
    from ..master.server import ServeOptions, serve as run_server
    host, port = parse_listen(listen)
    opts = ServeOptions(data_dir=data_dir, host=host, port=port, storage=storage,
                        start_zeo=start_zeo, workers=workers, threads=threads,
                        access_log=not no_access_log, access_log_file=access_log_file,
                        log_level=log_level or logs.DEFAULT_LEVEL, log_format=log_format,
                        log_file=log_file,
                        topology_files=topology_files,
                        master_name=master_name, insecure_http=insecure_http,
                        max_depth=max_depth, ancestry=tuple(ancestry),
                        peer_retry_max=peer_retry_max, backup_to=backup_to,
                        backup_every=backup_every, pack_every=pack_every,
                        pack_keep=pack_keep, lease=lease,
                        rebuild_after=rebuild_after,
                        outbound_allow=tuple(outbound_allow), long_poll_max=long_poll_max,
                        replica_of=replica_of, sync=sync, sync_timeout=sync_timeout,
                        destroyed_retention=destroyed_retention, primary_wait=primary_wait,
                        peer_usage_interval=peer_usage_interval, promote=promote,
                        products=tuple(products))
    run_server(opts)


@master.command()
@click.option("--data", "data_dir", default=lambda: env_default("SLAPFED_MASTER_DATA",
                                                                DEFAULT_DATA),
              show_default=f"$SLAPFED_MASTER_DATA or ./{DEFAULT_DATA}",
              help="Data directory of the master.")
@click.option("--storage", default=None,
              help="Storage URI: file (default), file:///abs/path.fs or zeo://HOST:PORT.")
@json_option
@error_boundary
def migrate(data_dir, storage, as_json):
    """Apply the pending schema generations (evolve steps) and print them."""
    from ..store import LATEST_GENERATION, evolve, open_db
    db = open_db(storage, data_dir, evolve_schema=False)
    try:
        ran = evolve(db)
    finally:
        db.close()
    result = {"generation": LATEST_GENERATION, "applied": ran}
    text = (f"applied {', '.join(ran)}; now at generation {LATEST_GENERATION}" if ran
            else f"nothing to do; already at generation {LATEST_GENERATION}")
    emit(result, as_json, text)


DATA_OPTION = click.option(
    "--data", "data_dir", default=lambda: env_default("SLAPFED_MASTER_DATA", DEFAULT_DATA),
    show_default=f"$SLAPFED_MASTER_DATA or ./{DEFAULT_DATA}",
    help="Data directory of the master.")


@master.command()
@DATA_OPTION
@click.option("--to", "repo", required=True, metavar="REPO", type=click.Path(file_okay=False),
              help="Backup repository (created 0700; it holds the CA key).")
@click.option("--full", is_flag=True, help="A full backup even when an incremental would do.")
@click.option("--storage", default=None,
              help="Storage URI of the master: file (default) or file:///abs/path.fs.")
@json_option
@error_boundary
def backup(data_dir, repo, full, storage, as_json):
    """Back up the master (running or not) into REPO: its ZODB (incremental, compressed),
    CA, peer credentials and topology files as one point in time, verified, recorded by
    a manifest written last."""
    from ..store.backup import backup as run_backup
    result = run_backup(data_dir, repo, storage=storage, full=full)
    emit(result.to_json(), as_json,
         f"backup {result.id} ({result.kind}, {result.zodb_bytes} bytes of ZODB up to "
         f"transaction {result.tid}, {result.files} files, {result.new_objects} new) "
         f"written to {repo} in {result.seconds:.2f}s")


def _at_option(command):
    return click.option("--at", default=None, metavar="TIME",
                        help="The latest backup at or before this ISO 8601 time "
                             "(default: the latest).")(command)


@master.command()
@click.option("--from", "repo", required=True, metavar="REPO",
              type=click.Path(file_okay=False, exists=True), help="Backup repository.")
@click.option("--data", "data_dir", required=True, metavar="NEWDIR",
              type=click.Path(file_okay=False),
              help="The data directory to create (must not exist, or be empty).")
@_at_option
@json_option
@error_boundary
def restore(repo, data_dir, at, as_json):
    """Rebuild a master's data directory from a backup: same CA, so every certificate it
    issued stays valid; start it on its old URL and its nodes and peers come back."""
    from ..store.backup import parse_time, restore as run_restore
    result = run_restore(repo, data_dir, parse_time(at) if at else None)
    hint = ""
    if result.url:
        listen = result.url.split("://", 1)[-1]
        topo = "".join(f" --topology {p}" for p in result.topology)
        name = f" --name {result.master_name}" if result.master_name else ""
        hint = (f"; start it with: slapfed master serve --data {result.data_dir} "
                f"--listen {listen}{topo}{name}")
    emit(result.to_json(), as_json,
         f"restored backup {result.id} ({result.time}, transaction {result.tid}, "
         f"{result.files} files) into {result.data_dir} in {result.seconds:.2f}s{hint}")


@master.command(name="verify-backup")
@click.option("--from", "repo", required=True, metavar="REPO",
              type=click.Path(file_okay=False, exists=True), help="Backup repository.")
@_at_option
@click.option("--all", "every", is_flag=True, help="Verify every backup of REPO.")
@json_option
@error_boundary
def verify_backup(repo, at, every, as_json):
    """Check a backup (the latest, or --at, or --all) byte for byte against its manifest.
    Exit 1 (backup_corrupt) naming the first damaged file."""
    from ..store.backup import parse_time, verify
    checked = verify(repo, parse_time(at) if at else None, every)
    emit({"backups": checked}, as_json,
         "\n".join(f"{c['id']} {c['kind']} {c['time']} ok" for c in checked))


@master.command()
@DATA_OPTION
@click.option("--keep", default=86400.0, show_default=True, type=float, metavar="SECONDS",
              help="Keep the history younger than this.")
@click.option("--storage", default=None,
              help="Storage URI: file (default), file:///abs/path.fs or zeo://HOST:PORT.")
@click.option("--timeout", default=600.0, show_default=True, type=float, metavar="SECONDS",
              help="How long to wait for a running master to pack.")
@json_option
@error_boundary
def pack(data_dir, keep, storage, timeout, as_json):
    """Pack the master's ZODB (running or not): drop the history older than --keep and
    what nothing references any more."""
    from ..store.maintenance import pack as run_pack
    result = run_pack(data_dir, keep, storage, timeout)
    sizes = (f": {result.size_before} -> {result.size_after} bytes"
             if result.size_before is not None else "")
    emit(result.to_json(), as_json,
         f"packed (history older than {keep:g}s removed, via {result.via}){sizes} in "
         f"{result.seconds:.2f}s")


@master.command()
@click.argument("url")
@click.option("--ca", "ca_file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="CA certificate that must have issued the master's server certificate.")
@click.option("--wait", default=0.0, show_default=True, type=float,
              help="Keep trying for this many seconds before giving up.")
@json_option
@error_boundary
def health(url, ca_file, wait, as_json):
    """Check that the master at URL answers GET /api/v1/health over TLS verified with the
    CA certificate (a promise of profiles/master). Exit 6 when it does not answer."""
    import time

    from ..core.errors import MasterUnreachable
    from ..transport import TRANSPORT_ERRORS, Transport, UnusableTLSFiles
    deadline = time.monotonic() + max(wait, 0.0)
    session = Transport()              # verified against --ca only, whatever the environment
    while True:
        try:
            resp = session.get(url.rstrip("/") + "/api/v1/health", verify=ca_file, timeout=5)
            if resp.status_code == 200:
                body = resp.json()
                emit(body, as_json, f"{url} answers (schema generation "
                                    f"{body.get('generation')})")
                return
            problem = f"HTTP {resp.status_code}"
        except (*TRANSPORT_ERRORS, UnusableTLSFiles, ValueError) as exc:
            problem = str(exc)
        if time.monotonic() >= deadline:
            raise MasterUnreachable(f"master {url} does not answer its health check: {problem}")
        time.sleep(0.3)


@master.command()
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False),
              help="Write the document to this file instead of standard output.")
@error_boundary
def openapi(out_file):
    """Print the OpenAPI 3.1 document of the HTTP API, the one every master serves at
    GET /api/v1/openapi.json (for client generators and API checkers)."""
    import json

    from ..master.openapi import openapi_document
    text = json.dumps(openapi_document(), indent=2) + "\n"
    if out_file is None:
        click.echo(text, nl=False)
        return
    with open(out_file, "w", encoding="utf-8") as out:
        out.write(text)


# -- replicas, promotion, status ---------------------------------------------------------
@master.group()
def replica():
    """Replicas of this master: invite one (it then runs `master serve --replica-of`)."""


@replica.command()
@click.argument("name")
@invitation_options("The primary's URL as the replica reaches it (default: --master).")
@master_option
@error_boundary
def invite(name, public_url, ttl, out, master_url):
    """Invite replica NAME (admins): write an invitation (the primary's URL, its CA
    certificate, a one-time token kept there hashed) for `master serve --replica-of`."""
    client = make_client(master_url)
    answer = client.invite_replica(name, ttl)
    write_invitation({"primary": answer.get("primary"), "url": public_url or client.url,
                      "for": name, "principal": answer["principal"],
                      "token": answer["token"], "ca_certificate": answer["ca_certificate"],
                      "epoch": answer.get("epoch")}, out, f"replica {name}")


@master.command()
@master_option
@json_option
@error_boundary
def promote(master_url, as_json):
    """Make the replica at --master the primary (admins): it stops following, records a
    new epoch and takes writes; the old primary is fenced once it sees that epoch."""
    out = make_client(master_url).promote()
    emit(out, as_json, f"{out['name']} is the primary at epoch {out['epoch']} (it followed "
                       f"{out.get('previous_primary') or '-'})")


def render_status(doc: dict) -> str:
    lines = [f"role: {doc['role']}   epoch: {doc['epoch']}   name: {doc.get('name')}",
             f"primary: {doc.get('primary_url') or '-'}"]
    if doc.get("fenced_by"):
        lines.append(f"FENCED by {doc['fenced_by']} (epoch {doc['fenced_epoch']})")
    if doc.get("degraded_since"):
        lines.append(f"SYNC DEGRADED since {doc['degraded_since']:.0f} (unix time): writes "
                     "are acknowledged without a replica")
    follower = doc.get("follower")
    if follower:
        lag = follower.get("lag_seconds")
        lines.append(f"following {follower['primary']} ({follower['mode']}): "
                     f"{'connected' if follower['connected'] else 'NOT connected'}, lag "
                     f"{'-' if lag is None else f'{lag:.3f}s'} ("
                     f"{follower.get('transactions_behind') or 0} transaction(s), "
                     f"{follower.get('bytes_behind') or 0} bytes behind), at "
                     f"{follower['applied_tid']}"
                     + (f", error: {follower['last_error']}" if follower.get("last_error")
                        else ""))
    lines.append(f"{'REPLICA':16} {'MODE':6} {'LAG':>9} {'TXNS':>6} {'BYTES':>10} URL")
    for r in doc["replicas"]:
        lag = "-" if r["lag_seconds"] is None else f"{r['lag_seconds']:.3f}s"
        txns = "-" if r["transactions_behind"] is None else str(r["transactions_behind"])
        size = "-" if r["bytes_behind"] is None else str(r["bytes_behind"])
        lines.append(f"{r['name'][:16]:16} {r['mode']:6} {lag:>9} {txns:>6} {size:>10} "
                     f"{r['url'] or '-'}")
    backup = doc.get("last_backup")
    if backup is None:
        lines.append("last backup: - (served without --backup-to)")
    elif backup.get("time") is None:
        lines.append(f"last backup: none yet in {backup['repository']}")
    else:
        lines.append(f"last backup: {backup['time']} ({backup['age_seconds']:.0f}s ago) in "
                     f"{backup['repository']}")
    return "\n".join(lines)


@master.command()
@master_option
@json_option
@error_boundary
def status(master_url, as_json):
    """The master's role (primary, replica, fenced), epoch, replicas with their lag, and
    its last backup with its age (admins)."""
    doc = make_client(master_url).replication_status()
    emit(doc, as_json, render_status(doc))


# -- a former primary rejoining ------------------------------------------------------------
@master.command()
@DATA_OPTION
@click.option("--replica-of", "replica_of", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, exists=True),
              help="An invitation of the new primary (`slapfed master replica invite NAME` "
                   "there).")
@click.option("--sync", is_flag=True, help="Rejoin as a sync replica.")
@click.option("--dry-run", is_flag=True,
              help="Say what would be kept and set aside; change no data (the invitation "
                   "is spent: the identity is made).")
@json_option
@error_boundary
def rejoin(data_dir, replica_of, sync, dry_run, as_json):
    """Make a stopped former primary (fenced, or replaced while it was down) a replica of
    the new primary: keep the history both hold, move what only DATA holds (writes the
    new primary never got) aside into DATA/diverged/TIME/ (never merged), then serve it
    with `master serve --data DATA --replica-of FILE`."""
    import os

    from ..replication.rejoin import rejoin as run_rejoin
    from ..store import parse_storage_uri
    data_dir = os.path.abspath(data_dir)
    spec = parse_storage_uri(None, data_dir)
    result = run_rejoin(data_dir, os.path.abspath(replica_of), spec.path, sync, dry_run)
    hint = "" if dry_run else (f"\nserve it with: slapfed master serve --data {data_dir} "
                               f"--replica-of {replica_of}{' --sync' if sync else ''}")
    emit(result.to_json(), as_json, result.text() + hint)
