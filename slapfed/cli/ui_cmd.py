"""``slapfed ui``: the operator's dashboard, a local web server acting as the user.

Depends on slapfed.ui (guard, server), slapfed.client and the CLI plumbing. Like
``kubectl proxy``: it reads the user's client config (master URL, CA, certificate, key),
listens on loopback, and calls the master as the user; the browser needs no certificate.
"""
from __future__ import annotations

import os
import sys

import click

from ..core.errors import InvalidInput
from ..ui import guard
from .common import error_boundary
from .user_cmd import make_client, master_option, requester_option

DEFAULT_LISTEN = "127.0.0.1:0"


@click.command()
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Where to listen; port 0 takes a free one. Loopback only, unless "
                   "--allow-non-loopback.")
@click.option("--allow-non-loopback", is_flag=True,
              help="Listen on a non-loopback address anyway. Anyone who reaches it with "
                   "the token acts as you, and plain HTTP carries the token in clear: "
                   "prefer an SSH tunnel to a loopback port.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              metavar="SECONDS", help="How often to ask the master while a page is open.")
@click.option("--url-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the dashboard's URL (with its token) to FILE (mode 0600).")
@click.option("--open", "open_browser", is_flag=True, help="Open the URL in a browser.")
@master_option
@requester_option
@error_boundary
def ui(listen, allow_non_loopback, interval, url_file, open_browser, master_url, requester):
    """Serve a live dashboard of the federation, as you, on this machine.

    \b
    It shows the federation as a picture, your instances (state, placement or
    delegation chain, connection parameters, log tail), computers and peers where the
    master lets you read them, and follows changes live. Buttons start, stop and
    destroy your instances with the same calls as `slapfed start|stop|destroy`.
    Every request must carry the random token of this run (in the printed URL); a
    page of another name or origin is refused. Ctrl-C stops it."""
    host, port = guard.parse_listen(listen)
    if not guard.is_loopback(host) and not allow_non_loopback:
        raise InvalidInput(
            f"--listen {listen}: {host} is not a loopback address; the dashboard acts "
            "as you, so it listens on this machine only (give --allow-non-loopback to "
            "listen there anyway, or tunnel: ssh -L PORT:127.0.0.1:PORT)",
            [{"field": "listen", "problem": f"{host} is not loopback"}])
    from ..ui.server import Server

    client = make_client(master_url, requester)
    client.timeout = min(client.timeout, 15.0)
    who = client.whoami()["principal"]          # fail now on a wrong identity or URL
    try:
        server = Server(client, host, port, interval)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {listen}: {exc.strerror}",
                           [{"field": "listen", "problem": str(exc.strerror)}]) from None
    if not guard.is_loopback(host):
        click.echo(f"warning: listening on {host}, not loopback: anyone who can reach it "
                   "and learns the token acts as you", err=True)
    if url_file:
        fd = os.open(url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(server.url + "\n")
    click.echo(f"slapfed ui: the dashboard of {client.url}, acting as {who}")
    click.echo(f"    {server.url}")
    click.echo("Open that URL (the token is part of it); Ctrl-C stops the dashboard.")
    sys.stdout.flush()
    if open_browser:
        import webbrowser
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
