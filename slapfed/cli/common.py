"""Shared CLI plumbing: exit codes, the one error boundary, output in text or --json.

Depends on core.errors and click.
"""
from __future__ import annotations

import enum
import functools
import json
import os
import sys

import click

from ..ca import errors as ca_errors
from ..core import errors
from . import problems


class Exit(enum.IntEnum):
    """Documented exit codes of every slapfed command."""

    OK = 0
    ERROR = 1            # unexpected failure
    USAGE = 2            # bad command line (click's own code)
    INVALID = 3          # the master (or the CLI) refused the input as invalid
    NOT_FOUND = 4
    CONFLICT = 5         # conflict or no capacity
    UNREACHABLE = 6      # no answer from the master
    TIMEOUT = 7          # --wait ran out
    FAILED = 8           # the instance (or release) reported failure
    FORBIDDEN = 9        # authentication or authorization refused
    STORAGE = 10         # the master's storage cannot be used (held by another process...)


EXIT_BY_CODE = {
    errors.InvalidInput.code: Exit.INVALID,
    errors.UnknownSoftwareType.code: Exit.INVALID,
    errors.PayloadTooLarge.code: Exit.INVALID,
    errors.UnsupportedMediaType.code: Exit.INVALID,
    errors.OutboundRefused.code: Exit.INVALID,
    errors.UriTooLong.code: Exit.INVALID,
    errors.HeaderFieldsTooLarge.code: Exit.INVALID,
    errors.BackupCorrupt.code: Exit.INVALID,     # a damaged backup is refused input
    errors.NotFound.code: Exit.NOT_FOUND,
    errors.Conflict.code: Exit.CONFLICT,
    errors.NoCapacity.code: Exit.CONFLICT,
    errors.RecursionRefused.code: Exit.CONFLICT,
    errors.MasterUnreachable.code: Exit.UNREACHABLE,
    errors.StorageError.code: Exit.STORAGE,
    errors.NoMasterGiven.code: Exit.USAGE,
    errors.MasterStopping.code: Exit.UNREACHABLE,
    errors.Timeout.code: Exit.TIMEOUT,
    errors.Unauthenticated.code: Exit.FORBIDDEN,
    errors.Forbidden.code: Exit.FORBIDDEN,
    errors.FactNotOwned.code: Exit.FORBIDDEN,
    errors.ReportRefused.code: Exit.CONFLICT,
    errors.ReferenceTaken.code: Exit.CONFLICT,
    errors.ReadOnly.code: Exit.CONFLICT,          # a replica: write to the primary
    errors.Fenced.code: Exit.CONFLICT,            # a demoted primary: write to the new one
    errors.ReplicaDiverged.code: Exit.CONFLICT,
}


class InstanceFailed(errors.SlapfedError):
    """Client side: the instance reached the failed state while the CLI waited."""

    code = "instance_failed"


EXIT_BY_CODE[InstanceFailed.code] = Exit.FAILED

# The CA's errors take the exit code of the core error they refine (401 → FORBIDDEN, ...).
for _klass in ca_errors.CA_ERRORS:
    _base = next(b for b in _klass.__mro__[1:] if b.code in EXIT_BY_CODE)
    EXIT_BY_CODE[_klass.code] = EXIT_BY_CODE[_base.code]


def echo_error(exc: errors.SlapfedError) -> None:
    """The error on stderr for people: its message, then one ``field: problem`` line per
    detail the message does not already say (cli.problems)."""
    for line in problems.error_lines(exc.message, exc.details):
        click.echo(line, err=True)


def error_boundary(func):
    """Turn every SlapfedError into one clear line on stderr and a documented exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except errors.SlapfedError as exc:
            ctx = click.get_current_context(silent=True)
            as_json = bool(ctx and ctx.find_root().params.get("as_json")) or bool(
                ctx and ctx.params.get("as_json"))
            if as_json:
                click.echo(json.dumps(exc.to_json()), err=True)
            else:
                echo_error(exc)
            sys.exit(int(EXIT_BY_CODE.get(exc.code, Exit.ERROR)))

    return wrapper


def emit(data, as_json: bool, text: str | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or the human ``text`` rendering."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(text if text is not None else json.dumps(data, indent=2, sort_keys=True))


def parse_pairs(pairs, what: str) -> dict:
    """``k=v`` options into a dict; a missing ``=`` is a usage error naming the option."""
    out = {}
    for item in pairs:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not of the form key=value", param_hint=what)
        k, v = item.split("=", 1)
        if not k:
            raise click.BadParameter(f"{item!r} has an empty key", param_hint=what)
        out[k] = v
    return out


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def invitation_options(url_help: str):
    """--url, --ttl and --out of a command that writes an invitation (a peer's, a
    replica's); the command gets them as ``public_url``, ``ttl`` and ``out``."""
    def apply(command):
        for option in reversed([
            click.option("--url", "public_url", default=None, metavar="URL", help=url_help),
            click.option("--ttl", type=int, default=None, help="Token lifetime in seconds."),
            click.option("--out", type=click.Path(dir_okay=False), default=None,
                         help="Write the invitation to this file (mode 0600) instead of "
                              "stdout."),
        ]):
            command = option(command)
        return command
    return apply


def write_invitation(invitation: dict, out: str | None, what: str) -> None:
    """The invitation as JSON on stdout, or in ``out`` created 0600 (it holds a token)."""
    text = json.dumps(invitation, indent=2) + "\n"
    if not out:
        click.echo(text, nl=False)
        return
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    click.echo(f"invitation for {what} written to {out} (the token is single use)")


def env_default(name: str, default=None):
    return os.environ.get(name, default)
