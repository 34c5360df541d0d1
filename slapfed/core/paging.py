"""Paging of the master's lists: page sizes, opaque cursors, and walking an ordered
collection one page at a time.

Pure (no I/O); depends on core.errors. A list is walked in the order of its keys (an
instance's or a computer's id); a cursor says "after this key" for one kind of list, so
a walk never skips nor repeats an item that exists from its first page to its last,
whatever is added or removed meanwhile (an item added during the walk shows up when its
key sorts after the cursor). Cursors are opaque to clients: base64url of a small JSON
array, checked when read back (400 naming the parameter).
"""
from __future__ import annotations

import base64
import binascii
import json

from .errors import InvalidInput

DEFAULT_LIMIT = 100            # items per page when the request names no limit
MAX_LIMIT = 1000               # the largest page a master answers
CURSOR_VERSION = 1
MAX_CURSOR_LENGTH = 2048       # longer than any cursor a master makes


def parse_limit(raw: str | None, field: str = "limit") -> int:
    """The page size asked for (DEFAULT_LIMIT when absent). Raises InvalidInput naming
    ``field`` unless it is a whole number in 1..MAX_LIMIT."""
    if raw is None:
        return DEFAULT_LIMIT
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidInput(f"invalid {field} {raw[:40]!r}: must be a whole number in "
                           f"1..{MAX_LIMIT}",
                           [{"field": field, "problem": f"must be a whole number in "
                                                       f"1..{MAX_LIMIT}"}])
    return int(text)


def make_cursor(kind: str, key) -> str:
    """The opaque cursor of list ``kind`` resuming after ``key`` (a string, or a list
    of strings for lists walked in sections)."""
    raw = json.dumps([CURSOR_VERSION, kind, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(raw: str | None, kind: str, field: str = "cursor", parts: int = 1):
    """The key a cursor of list ``kind`` resumes after (None without a cursor): a string,
    or a list of ``parts`` strings when ``parts`` > 1. Raises InvalidInput naming
    ``field`` for anything a master did not make for this list."""
    if raw is None:
        return None

    def bad(problem: str):
        return InvalidInput(f"invalid {field}: {problem} (give back the 'next' of the "
                            "previous page, unchanged)", [{"field": field, "problem": problem}])

    if not raw or len(raw) > MAX_CURSOR_LENGTH or not raw.isascii():
        raise bad("is not a cursor of this master")
    try:
        doc = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad("is not a cursor of this master") from None
    if not (isinstance(doc, list) and len(doc) == 3 and doc[0] == CURSOR_VERSION):
        raise bad("is not a cursor of this master")
    if doc[1] != kind:
        raise bad(f"is a cursor of another list ({str(doc[1])[:40]}), not of {kind}")
    key = doc[2]
    if parts == 1:
        if not isinstance(key, str):
            raise bad("is not a cursor of this master")
        return key
    if not (isinstance(key, list) and len(key) == parts
            and all(isinstance(k, str) for k in key)):
        raise bad("is not a cursor of this master")
    return key


def take(items, limit: int, keep=None):
    """One page of ``items`` ((key, value) pairs in key order, e.g. a BTree's items
    after the cursor's key): (page, last key) where page holds the first ``limit``
    results of ``keep(value)`` that are not None (every value when ``keep`` is None),
    and last key is the key of the last one when more results follow (the next page's
    cursor), else None. It looks one result ahead, so the last page says so itself."""
    page, last = [], None
    for key, value in items:
        out = value if keep is None else keep(value)
        if out is None:
            continue
        if len(page) == limit:
            return page, last
        page.append(out)
        last = key
    return page, None
