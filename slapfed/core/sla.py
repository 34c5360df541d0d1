"""The SLA language: parsing a request's ``sla`` into ordered alternatives of placement terms.

Depends on core.errors and core.states only (pure, no I/O). Every
problem is collected (field + problem) and raised as one InvalidInput; unknown keys and
malformed values are refused, never ignored.

Language (one alternative is a JSON object; ``sla`` may be one object or an array of
objects tried in order, ``[{"continent": "europe"}, {}]`` = "Europe, else anywhere"):

- absolute keys: ``master`` (the master that must serve it: this one, or a peer the
  request is delegated to), ``computer_guid``, ``host``, ``lan``, ``country``, ``continent``,
  ``capability`` (a tag of the computer or of the partition), ``host_instance`` (shared
  requests only: the id of the instance to attach to, which must be open to the
  requester), and labels written ``label.KEY`` (``{"label.disk": "ssd"}`` = the
  computer's label ``disk`` is ``ssd``); values are non-empty strings.
- relative keys: ``same_host|lan|country|continent`` and
  ``different_host|lan|country|continent``; the value is the REFERENCE of another
  instance (of the same requester, else of the requester's instance tree), or an array
  of references, each of which must hold (``{"different_host": ["db-1", "db-2"]}``).
"""
from __future__ import annotations

import re
from typing import Any

from .errors import InvalidInput
from .record import Record
from .states import LOCALITY_LEVELS

# Nested sites, innermost first (the same order as topology.locality.LEVELS).
LEVELS = LOCALITY_LEVELS

PIN_KEY = "computer_guid"
CAPABILITY_KEY = "capability"
MASTER_KEY = "master"                       # the master that must serve it (federation)
HOST_KEY = "host_instance"                  # shared requests: the host to attach to
LOCALITY_KEYS = LEVELS                      # host, lan, country, continent
ABSOLUTE_KEYS = (MASTER_KEY, PIN_KEY) + LOCALITY_KEYS + (CAPABILITY_KEY, HOST_KEY)
LABEL_PREFIX = "label."
SAME, DIFFERENT = "same", "different"
RELATIVE_KEYS = tuple(f"{mode}_{level}" for mode in (SAME, DIFFERENT) for level in LEVELS)
ALL_KEYS = ABSOLUTE_KEYS + RELATIVE_KEYS
KNOWN_KEYS_TEXT = ", ".join(ALL_KEYS + ("label.KEY",))

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")     # capabilities, label keys
MAX_VALUE = 256
MAX_REFERENCE = 200
MAX_ALTERNATIVES = 8
MAX_REFERENCES_PER_KEY = 16


class Relative(Record):
    """``same_lan(db-1)``: the candidate must (not) share ``level`` with ``reference``."""

    mode: str          # SAME or DIFFERENT
    level: str         # one of LEVELS
    reference: str

    @property
    def key(self) -> str:
        return f"{self.mode}_{self.level}"

    def __str__(self) -> str:
        return f"{self.key}({self.reference})"


class Alternative(Record):
    """One set of conditions that must all hold; an empty one means "anywhere"."""

    absolute: tuple = ()      # ((key, value), ...) in ABSOLUTE_KEYS order
    labels: tuple = ()        # ((label key, value), ...) sorted
    relative: tuple = ()      # (Relative, ...) in RELATIVE_KEYS order, then reference order

    def get(self, key: str):
        for k, v in self.absolute:
            if k == key:
                return v
        return None

    @property
    def host(self) -> str | None:
        """The host instance a shared request names (``host_instance``), if any."""
        return self.get(HOST_KEY)

    @property
    def references(self) -> tuple:
        """The references this alternative names, in order, without repeats."""
        return tuple(dict.fromkeys(r.reference for r in self.relative))

    def to_json(self) -> dict:
        out = dict(self.absolute)
        out.update((LABEL_PREFIX + k, v) for k, v in self.labels)
        for rel in self.relative:
            prev = out.get(rel.key)
            if prev is None:
                out[rel.key] = rel.reference
            else:
                out[rel.key] = (prev if isinstance(prev, list) else [prev]) + [rel.reference]
        return out

    def describe(self) -> str:
        """``continent=europe, same_lan(db-1)``, or ``anywhere``."""
        parts = [f"{k}={v}" for k, v in self.absolute]
        parts += [f"{LABEL_PREFIX}{k}={v}" for k, v in self.labels]
        parts += [str(r) for r in self.relative]
        return ", ".join(parts) or "anywhere"


class Sla(Record):
    """Ordered alternatives; placement tries them in order and keeps the first that fits."""

    alternatives: tuple = (Alternative(),)

    @property
    def references(self) -> tuple:
        seen = {}
        for alt in self.alternatives:
            seen.update(dict.fromkeys(alt.references))
        return tuple(seen)

    def to_json(self):
        """The normal wire shape: one object for one alternative, else an array."""
        if len(self.alternatives) == 1:
            return self.alternatives[0].to_json()
        return [a.to_json() for a in self.alternatives]


ANYWHERE = Sla()


def _alternative(raw: Any, field: str, problems: list, own_reference: str | None) -> Alternative:
    if not isinstance(raw, dict):
        problems.append({"field": field, "problem": f"must be a JSON object of placement "
                                                    f"conditions, got {type(raw).__name__}"})
        return Alternative()
    absolute, labels, relative = {}, {}, []
    for key, value in raw.items():
        where = f"{field}.{key}"
        if key in RELATIVE_KEYS:
            refs = value if isinstance(value, list) else [value]
            if not refs or len(refs) > MAX_REFERENCES_PER_KEY:
                problems.append({"field": where, "problem": f"must name 1 to "
                                 f"{MAX_REFERENCES_PER_KEY} instance references"})
                continue
            mode, level = key.split("_", 1)
            for ref in refs:
                if not isinstance(ref, str) or not ref or len(ref) > MAX_REFERENCE:
                    problems.append({"field": where, "problem": "must be the reference of "
                                     "another instance (a non-empty string of at most "
                                     f"{MAX_REFERENCE} characters) or an array of them"})
                elif own_reference is not None and ref == own_reference:
                    problems.append({"field": where, "problem": f"names the instance being "
                                     f"requested ({ref!r}); name another instance"})
                else:
                    relative.append(Relative(mode, level, ref))
            continue
        if key in ABSOLUTE_KEYS or key.startswith(LABEL_PREFIX):
            if not isinstance(value, str) or not value or len(value) > MAX_VALUE:
                problems.append({"field": where, "problem": f"must be a non-empty string of at "
                                                            f"most {MAX_VALUE} characters"})
                continue
            if key in (CAPABILITY_KEY, MASTER_KEY, HOST_KEY) and not NAME_RE.match(value):
                what = {CAPABILITY_KEY: "capability name", MASTER_KEY: "master name",
                        HOST_KEY: "instance id"}[key]
                problems.append({"field": where, "problem": f"{value!r} is not a {what} "
                                                            f"({NAME_RE.pattern})"})
                continue
            if key in ABSOLUTE_KEYS:
                absolute[key] = value
                continue
            label = key[len(LABEL_PREFIX):]
            if not NAME_RE.match(label):
                problems.append({"field": where, "problem": f"label key {label!r} must match "
                                                            f"{NAME_RE.pattern}"})
                continue
            labels[label] = value
            continue
        problems.append({"field": where, "problem": f"unknown SLA key (known: {KNOWN_KEYS_TEXT})"})
    _contradictions(relative, field, problems)
    relative = sorted(set(relative), key=lambda r: (RELATIVE_KEYS.index(r.key), r.reference))
    return Alternative(tuple((k, absolute[k]) for k in ABSOLUTE_KEYS if k in absolute),
                       tuple(sorted(labels.items())), tuple(relative))


def _contradictions(relative: list, field: str, problems: list) -> None:
    """same_L(x) with different_M(x) where L is nested in M can never hold (same host
    implies same LAN, country and continent)."""
    for same in relative:
        if same.mode != SAME:
            continue
        for diff in relative:
            if (diff.mode == DIFFERENT and diff.reference == same.reference
                    and LEVELS.index(same.level) <= LEVELS.index(diff.level)):
                problems.append({"field": f"{field}.{diff.key}", "problem": f"{diff} "
                                 f"contradicts {same}: no computer can satisfy both"})


def parse_sla(raw: Any, field: str = "sla", own_reference: str | None = None,
              problems: list | None = None) -> Sla:
    """Parse an ``sla`` value (None, an object or an array of objects) into an Sla.

    With ``problems`` given, appends to it and returns what parsed; otherwise raises
    InvalidInput listing every problem."""
    collect = [] if problems is None else problems
    start = len(collect)
    if raw is None:
        sla = ANYWHERE
    elif isinstance(raw, list):
        if not raw:
            collect.append({"field": field, "problem": "an empty array of alternatives; use {} "
                                                       "for anywhere"})
        elif len(raw) > MAX_ALTERNATIVES:
            collect.append({"field": field, "problem": f"has {len(raw)} alternatives, the "
                                                       f"limit is {MAX_ALTERNATIVES}"})
        sla = Sla(tuple(_alternative(a, f"{field}[{i}]", collect, own_reference)
                        for i, a in enumerate(raw[:MAX_ALTERNATIVES])) or (Alternative(),))
    elif isinstance(raw, dict):
        sla = Sla((_alternative(raw, field, collect, own_reference),))
    else:
        collect.append({"field": field, "problem": "must be a JSON object (one alternative) or "
                                                   f"an array of objects, got {type(raw).__name__}"})
        sla = ANYWHERE
    if problems is None and len(collect) > start:
        first = collect[0]
        more = f" (and {len(collect) - 1} more)" if len(collect) > 1 else ""
        raise InvalidInput(f"invalid sla: {first['field']} {first['problem']}{more}", collect)
    return sla


def is_capability_name(name: Any) -> bool:
    return isinstance(name, str) and bool(NAME_RE.match(name))
