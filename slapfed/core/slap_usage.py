"""SlapOS usage journals (what ``slapos node report`` sends to ``useComputer``): a
bounded, data-only reader, and the names slapfed records their resources under.

Depends on core.errors, core.accounting and core.marshal's data-only expat parser (pure:
no I/O).

A journal is ``<journal>`` around ``<transaction>`` elements, each with ``<movement>``
elements; a movement names a ``resource``, the partition it was measured on
(``reference``: slapgrid writes the partition's id there) and a ``quantity``. Titles,
prices, VAT, categories and the transaction's own fields are read over: the master's
price list prices what it records. A DOCTYPE or entity declaration, a document over
MAX_BYTES, deeper than MAX_DEPTH, with more than MAX_NODES elements or MAX_MOVEMENTS
movements, a movement without its three fields or with a quantity that is not a finite
number of at least 0, are each refused with one InvalidInput naming the field and the
movement.

A SlapOS resource is free text ("CPU Consumption", "service_module/cpu_load_percent"):
slapfed's own resource names (core.accounting.RESOURCES) are kept as given, anything else
is recorded as a custom counter, ``x-`` and the text in lower case with every run of
other characters than ``a-z0-9_`` made one ``-`` (``x-cpu-consumption``); a name that
would be longer than the 40 characters a custom resource may have keeps its first 31
and 8 hexadecimal digits of the text's sha256.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from xml.parsers import expat

from .accounting import CUSTOM_RE, RESOURCES
from .errors import InvalidInput
from .marshal import Refused, data_only_parser

FIELD = "use_string"            # the form field of useComputer that carries the journal
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 8
MAX_NODES = 50_000
MAX_MOVEMENTS = 8_192
MAX_TEXT = 1_024                # one field of a movement
CUSTOM_PREFIX = "x-"
CUSTOM_MAX = 40                 # characters after the prefix (core.accounting.CUSTOM_RE)
_SLUG_RE = re.compile(r"[^a-z0-9_]+")
_WANTED = ("resource", "reference", "quantity")


@dataclass(frozen=True)
class Movement:
    """One movement of a journal: ``index`` its place among the journal's movements
    (from 0), ``partition`` the reference it names."""

    index: int
    resource: str
    partition: str
    quantity: float


def resource_name(text: str) -> str:
    """The resource slapfed records a SlapOS resource under (see the module docstring)."""
    if text in RESOURCES or CUSTOM_RE.match(text):
        return text
    slug = _SLUG_RE.sub("-", text.lower()).strip("-") or "unnamed"
    if len(slug) > CUSTOM_MAX:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
        slug = slug[:CUSTOM_MAX - 9].rstrip("-") + "-" + digest
    return CUSTOM_PREFIX + slug


class _Reader:
    """Collects the movements from expat events, checking every limit as it goes."""

    def __init__(self):
        self.path: list[str] = []
        self.nodes = 0
        self.movements: list[dict] = []
        self.field: str | None = None
        self.text: list[str] = []

    def start(self, name, _attrs):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise Refused(f"has more than {MAX_NODES} elements")
        if len(self.path) >= MAX_DEPTH:
            raise Refused(f"is nested deeper than {MAX_DEPTH} elements")
        if not self.path and name != "journal":
            raise Refused(f"is a <{name[:40]}>, not a <journal>")
        if name == "movement" and self.path[-1:] == ["transaction"]:
            if len(self.movements) >= MAX_MOVEMENTS:
                raise Refused(f"has more than {MAX_MOVEMENTS} movements")
            self.movements.append({})
        elif self.path[-1:] == ["movement"] and name in _WANTED:
            self.field, self.text = name, []
        self.path.append(name)

    def end(self, name):
        self.path.pop()
        if self.field == name and self.path[-1:] == ["movement"]:
            movement = self.movements[-1]
            if name in movement:
                raise Refused(f"movement {len(self.movements) - 1} gives <{name}> twice")
            movement[name] = "".join(self.text).strip()
            self.field = None

    def chars(self, data):
        if self.field is not None:
            self.text.append(data)
            if sum(len(t) for t in self.text) > MAX_TEXT:
                raise Refused(f"movement {len(self.movements) - 1} has a <{self.field}> "
                               f"longer than {MAX_TEXT} characters")


def invalid(problem: str) -> InvalidInput:
    """The one error of a bad journal: ``problem`` names what, under FIELD."""
    return InvalidInput(f"invalid usage journal: {FIELD} {problem}",
                        [{"field": FIELD, "problem": problem}])


def movements(data: bytes | str) -> list[Movement]:
    """The movements of a journal, in order; InvalidInput for anything else."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_BYTES:
        raise invalid(f"is longer than {MAX_BYTES} bytes")
    reader = _Reader()
    parser = data_only_parser(reader.start, reader.end, reader.chars)
    try:
        parser.Parse(raw, True)
    except Refused as exc:
        raise invalid(exc.problem) from None
    except expat.ExpatError as exc:
        raise invalid(f"is not well-formed XML ({expat.errors.messages.get(exc.code, exc)}"
                       f", line {exc.lineno})") from None
    out = []
    for i, found in enumerate(reader.movements):
        missing = [f for f in _WANTED if not found.get(f)]
        if missing:
            raise invalid(f"movement {i} has no <{missing[0]}>")
        try:
            quantity = float(found["quantity"])
        except ValueError:
            quantity = math.nan
        if not math.isfinite(quantity) or quantity < 0:
            raise invalid(f"movement {i} has a quantity that is not a finite number of "
                           f"at least 0: {found['quantity'][:40]!r}")
        out.append(Movement(i, found["resource"], found["reference"], quantity))
    return out


def per_partition(found: list[Movement]) -> dict[str, dict[str, float]]:
    """{partition: {slapfed resource: quantity}}: the movements of one partition and
    resource (after naming, see ``resource_name``) added up."""
    out: dict[str, dict[str, float]] = {}
    for m in found:
        usage = out.setdefault(m.partition, {})
        name = resource_name(m.resource)
        usage[name] = usage.get(name, 0.0) + m.quantity
    return out


def report_id(computer_id: str, data: bytes | str) -> str:
    """The id a journal is recorded under: the same journal again (a node retrying) is a
    duplicate. slapgrid dates each journal it builds to the second."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return f"{computer_id}:slap-{hashlib.sha256(raw).hexdigest()[:32]}"
