"""How every long-running slapfed command logs: one handler (stderr or a file), text for
people or one JSON object per line for pipelines, and the request being served.

Depends on the standard library only, so that every layer may use it. ``slapfed.*``
logs at the chosen level; other libraries (ZODB, ZEO, zc.buildout) only from WARNING on.
Structured facts travel as ``extra={...}`` fields of a record; the JSON form carries them
as keys, the text form keeps to the message, which must say who, what and the outcome on
its own. Nothing here decides what is secret: callers never pass secrets to a logger.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys

ROOT = "slapfed"
ACCESS = "slapfed.access"           # one line per HTTP request the master answers
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
DEFAULT_LEVEL = "info"
DEFAULT_FORMAT = "text"
OTHERS_LEVEL = logging.WARNING      # libraries below slapfed: only what goes wrong

# The request a thread is serving (set by the master's access middleware): every line
# logged meanwhile carries its id, so an operator can join a request's lines.
REQUEST_ID = contextvars.ContextVar("slapfed_request_id", default=None)
PRINCIPAL = contextvars.ContextVar("slapfed_principal", default=None)   # who it is for

# Attributes every LogRecord has: anything else on a record is a structured field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", (), None))) \
    | {"message", "asctime", "taskName"}
_BASE_KEYS = ("ts", "level", "logger", "message")
# C0/C1 control characters except tab: a value cannot start a line of its own.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
CONTINUATION = "\n    "       # how a multi-line message goes on in the text format


def iso_utc(created: float) -> str:
    """A record's time as ISO 8601 in UTC with milliseconds: 2024-05-01T12:00:00.123Z."""
    return dt.datetime.fromtimestamp(created, dt.timezone.utc) \
        .isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _escape(match) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def escape_controls(text: str) -> str:
    """``text`` with line breaks and other control characters shown as escapes, so that
    data logged inside a line (a path, a name) can never forge another line."""
    return _CONTROL.sub(_escape, text)


def text_message(text: str) -> str:
    """A message as the text format writes it: control characters escaped, and every
    line after the first indented, so that no line of it can pass for a record."""
    return _CONTROL_BUT_NEWLINE.sub(_escape, text).replace("\n", CONTINUATION)


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@?#]*@")


def redact_url(url: str) -> str:
    """``url`` without the user and password it may carry (``https://u:p@host/`` →
    ``https://REDACTED@host/``)."""
    return _USERINFO.sub(r"\1REDACTED@", str(url))


def fields_of(record: logging.LogRecord) -> dict:
    """The structured fields a record carries (its ``extra``), in the order given."""
    return {k: v for k, v in vars(record).items()
            if k not in _RECORD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, then the record's fields
    (request_id, principal, method, path, status, duration_ms...), and ``exception``
    (the formatted traceback, as one string) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": iso_utc(record.created), "level": record.levelname.lower(),
               "logger": record.name, "message": record.getMessage()}
        for key, value in fields_of(record).items():
            if key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123Z INFO slapfed.ca: message [request_id]``; lines after
    the first (a log tail, a traceback) indented, control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        line = (f"{iso_utc(record.created)} {record.levelname} {record.name}: "
                f"{text_message(record.getMessage())}")
        request_id = getattr(record, "request_id", None)
        if request_id and record.name != ACCESS:      # an access line names them already
            who = getattr(record, "principal", None)
            line += f" [{request_id}{' ' + who if who else ''}]"
        if record.exc_info:
            line += CONTINUATION + text_message(self.formatException(record.exc_info))
        if record.stack_info:
            line += CONTINUATION + text_message(self.formatStack(record.stack_info))
        return line


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (and ``principal``, once known) to every record logged while a
    request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", REQUEST_ID), ("principal", PRINCIPAL)):
            if getattr(record, name, None) is None:
                value = var.get()
                if value is not None:
                    setattr(record, name, value)
        return True


class _Stderr(logging.StreamHandler):
    """The process's own stderr (file descriptor 2), even while ``sys.stderr`` is swapped
    for a while (a test runner, a redirect): log lines never land in command output."""

    def __init__(self):
        super().__init__(sys.__stderr__ or sys.stderr)


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    return JsonFormatter() if fmt == "json" else TextFormatter()


def level_number(level: str) -> int:
    if str(level).lower() not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    return getattr(logging, str(level).upper())


def _handler(fmt: str, path: str | None) -> logging.Handler:
    if path in (None, "", "-"):
        handler = _Stderr()
    else:
        from logging.handlers import WatchedFileHandler   # follows logrotate's moves
        handler = WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(RequestIdFilter())
    handler._slapfed = True
    return handler


def _drop_ours(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if getattr(handler, "_slapfed", False):
            logger.removeHandler(handler)
            handler.close()


def configure(level: str = DEFAULT_LEVEL, fmt: str = DEFAULT_FORMAT, file: str | None = None,
              access: bool = True, access_file: str | None = None) -> None:
    """Set up logging for this process (again: replaces what an earlier call set up).

    ``slapfed.*`` at ``level`` (debug, info, warning, error), everything else from
    WARNING, to ``file`` (default stderr) as ``fmt`` (text or json). The access log
    (``slapfed.access``) goes with the rest, or to ``access_file`` when given, or
    nowhere when ``access`` is False. Raises ValueError for an unknown level or format."""
    number = level_number(level)
    _skip_unused_record_facts()
    root = logging.getLogger()
    _drop_ours(root)
    root.addHandler(_handler(fmt, file))
    root.setLevel(max(OTHERS_LEVEL, number))
    logging.getLogger(ROOT).setLevel(number)
    access_log = logging.getLogger(ACCESS)
    _drop_ours(access_log)
    access_log.disabled = not access
    access_log.propagate = True
    access_log.setLevel(logging.NOTSET)
    if access and access_file not in (None, ""):
        access_log.addHandler(_handler(fmt, access_file))
        access_log.propagate = False


def _skip_unused_record_facts() -> None:
    """Neither format shows a record's source line, thread or process: logging need not
    find them for every record (the calling frame's walk, the thread's name and the
    multiprocessing lookups are a tenth of the cost of a master's access line). These
    switches are logging's documented ones for this."""
    logging._srcfile = None              # no findCaller: pathname, lineno, funcName
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def hand_over(logger: logging.Logger) -> None:
    """Let a library's own logger (gunicorn's) write through our handler and format:
    its handlers are dropped and its records go up to ours."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
