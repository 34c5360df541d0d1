"""The logging options of every long-running command, declared once: --log-level,
--log-format and --log-file, and what they set up (slapfed.logs).

Depends on click and slapfed.logs.
"""
from __future__ import annotations

import click

from .. import logs


def log_options(command):
    """Add --log-level, --log-format and --log-file (passed as log_level, log_format,
    log_file)."""
    options = [
        click.option("--log-level", type=click.Choice(logs.LEVELS), default=None,
                     help=f"Least severe level logged for slapfed.* (default "
                          f"{logs.DEFAULT_LEVEL}); other libraries log from warning on."),
        click.option("--log-format", type=click.Choice(logs.FORMATS),
                     default=logs.DEFAULT_FORMAT, show_default=True,
                     help="text for people, json for pipelines: one object per line with "
                          "ts (ISO 8601, UTC), level, logger, message and the line's fields "
                          "(request_id, principal, method, path, status, duration_ms...)."),
        click.option("--log-file", type=click.Path(dir_okay=False), default=None,
                     metavar="FILE", help="Append the log to FILE (reopened when logrotate "
                                          "moves it) instead of stderr."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def setup_logging(log_level: str | None, log_format: str, log_file: str | None,
                  verbose: bool = False, quiet: bool = False) -> str:
    """Configure this process's logging; -v (debug) and -q (warning) are shortcuts that
    an explicit --log-level overrides. Returns the level chosen. (``master serve`` sets
    its logging up itself, once its options are checked: master.server.serve.)"""
    level = log_level or ("debug" if verbose else "warning" if quiet else logs.DEFAULT_LEVEL)
    logs.configure(level, log_format, log_file)
    return level
