"""Values and keys in generated buildout files: what zc.buildout carries verbatim, and
the one lossless encoding of everything else.

Depends on the standard library only (pure; the recipes import it inside buildout).

Every value the node writes into a buildout file comes from someone else (a tenant's
parameters, reference and software type, shared instances' data, the master's facts).
Nothing in such a value may start a line, a section, an option, a comment or a
substitution. What zc.buildout 6 does with a value (zc/buildout/configparser.py,
zc/buildout/buildout.py), and so what can pass through it unchanged:

- It opens files in text mode with universal newlines: ``\\r``, ``\\n`` and ``\\r\\n`` end
  a line; a line starting with ``[`` is a section, ``#``/``;`` a comment, a non-blank
  character an option, whitespace a continuation. A value holding any of them would be
  read as buildout code. (``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 and
  U+2029 do not end a buildout line, but ``str.splitlines`` -- recipes' commands -- does.)
- The first line of a value is ``strip()``-ed (every Unicode space); continuation lines
  are stripped or right-stripped, blank ones dropped or kept, then the whole is dedented:
  leading/trailing whitespace, indentation and blank lines do not survive.
- ``${section:option}`` is substituted, and substituted *again* when a recipe reads the
  cooked value; ``$$`` is kept as ``$$`` (never turned into ``$``), so no escape yields a
  literal ``${``. A value ending in ``$`` makes ``${`` with a following ``{...}``.
- Every option of an installed part, substitutions resolved, is written to
  ``.installed.cfg`` and read back at the next run: a bare ``\\r`` there starts a line
  too, so a ``\\r`` that reaches any option becomes buildout's own state (a fake part
  whose "installed files" the next run deletes). A ``\\r`` can never be carried.
- Recipes (slapfed:service) split commands on line breaks: a multi-line value inside a
  command would add arguments.

Hence the choice: a value is written **verbatim** when it is *plain* -- one line of
printable characters (``str.isprintable``: no control, format, line/paragraph separator
or non-ASCII space characters), no leading/trailing space, no ``${``, not ending in
``$`` and not starting with the prefix below. Then ``${parameters:KEY}`` is exactly the
value given. Any other value is written **encoded**: ``slapfed-b64:`` followed by the
base64 of its UTF-8 bytes (ASCII letters, digits, ``+/=``), which survives every step
above and decodes losslessly with :func:`decode` (shell: strip the prefix,
``base64 -d``). The slapfed recipes decode an option (or a command's argument line)
that is exactly one encoded value; a program given one inside a longer argument decodes
it itself. The raw values are also in the JSON file ``${partition:parameters-file}``.
Plain values are the common case (names, URLs, numbers, sentences, non-ASCII text);
multi-line text (a PEM) and text with control characters are encoded.

zc.buildout decodes files with the locale's encoding; the node writes UTF-8. Under a
non-UTF-8 locale non-ASCII text would be garbled, never split: no UTF-8 sequence holds
the bytes of ``\r`` or ``\n``, and plain values never start a line (the JSON file is
exact whatever the locale).

Non-string JSON values are their compact JSON text (``3``, ``true``, ``{"a": 1}``), then
plain or encoded like any text. A value holding a lone surrogate is not text: refused.

Keys become option names, so they must be **plain identifiers**: ``KEY_RE``, not ending
in ``-`` (``key- = v`` is buildout's "remove from" operator), and not ``recipe`` (it
would turn [parameters] into a part that buildout installs).
"""
from __future__ import annotations

import base64
import binascii
import json
import re

PREFIX = "slapfed-b64:"
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
RESERVED_KEYS = ("recipe",)
KEY_RULE = ("a plain identifier (a letter or '_', then at most 127 letters, digits, "
            "'_', '.' or '-')")


def is_plain(text: str) -> bool:
    """Whether buildout carries ``text`` verbatim as an option value (see module doc)."""
    return (text.isprintable() and not text.startswith(" ") and not text.endswith(" ")
            and "${" not in text and not text.endswith("$") and not text.startswith(PREFIX))


def has_lone_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def as_text(value) -> str:
    """A parameter as text: strings as they are, other JSON values as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def encode(value) -> str:
    """``value`` as a buildout option value: verbatim when plain, else encoded.
    Raises ValueError for a value holding a lone surrogate."""
    text = as_text(value)
    if is_plain(text):
        return text
    if has_lone_surrogate(text):
        raise ValueError("holds a lone surrogate (not text)")
    return PREFIX + base64.b64encode(text.encode("utf-8")).decode("ascii")


def is_encoded(text: str) -> bool:
    return isinstance(text, str) and text.startswith(PREFIX)


def decode(text: str) -> str:
    """The value behind an option value: ``text`` itself unless it is an encoded value
    (then its decoding; text that only looks encoded is returned as is)."""
    if not is_encoded(text):
        return text
    try:
        return base64.b64decode(text[len(PREFIX):], validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return text


def key_problem(key, reserved: bool = True) -> str | None:
    """Why ``key`` cannot be an option name, or None (``reserved``: also refuse the
    names buildout gives a meaning, for keys chosen by someone else)."""
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        return f"must be {KEY_RULE}"
    if key.endswith("-"):
        return "must not end in '-' (buildout reads 'key- = v' as its remove operator)"
    if reserved and key in RESERVED_KEYS:
        return "is reserved by buildout (it would turn the section into a part)"
    return None


def text_problem(text: str) -> str | None:
    """Why an identifying string (reference, name, URL...) is refused, or None: control
    characters (C0, DEL, C1), line/paragraph separators, lone surrogates."""
    for c in text:
        o = ord(c)
        if o < 32 or 0x7f <= o <= 0x9f or c in "\u2028\u2029":
            return "must not contain control characters or line breaks"
        if 0xd800 <= o <= 0xdfff:
            return "must not contain lone surrogates"
    return None
