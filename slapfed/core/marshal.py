"""The marshal XML of the SLAP protocol (SlapOS' xml_marshaller documents): a bounded,
restricted decoder for what callers send, and an encoder for what the stock client's
whitelisting decoder accepts.

Depends on core.errors and the standard library's expat binding only (pure: no I/O).

A document is ``<marshal>`` around one value: ``none``, ``bool`` (1/0), ``int``, ``long``,
``float``, ``string`` (also ``unicode``; its text is XML-escaped twice, as the stock
encoder does, and unescaped once more after parsing), ``list``, ``tuple``, ``set``, ``dictionary``
(alternating key and value children) and ``reference`` (to a list or dictionary already
complete). Decoding is data only: a DOCTYPE, any entity declaration, an external
reference, an ``object`` (a class to build) or any other element is refused, and so are
documents over MAX_BYTES, deeper than MAX_DEPTH or with more than MAX_NODES elements.
Every refusal is one InvalidInput naming the form field and the problem.

Encoding adds ``SlapObject``: an instance of one of the four classes the stock client
rebuilds (Computer, ComputerPartition, SoftwareRelease, SoftwareInstance), given as its
constructor arguments and attributes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat

from .errors import InvalidInput

MAX_BYTES = 1024 * 1024        # one document (a form field); a full computer is larger
MAX_DEPTH = 32
MAX_NODES = 20_000
MAX_TEXT = 256 * 1024

CLIENT_MODULE = "slapos.slap.slap"
CLASSES = ("Computer", "ComputerPartition", "SoftwareRelease", "SoftwareInstance")

_SCALARS = ("none", "bool", "int", "long", "float", "string", "unicode")
_CONTAINERS = ("list", "tuple", "set", "dictionary")
ELEMENTS = ("marshal", "reference") + _SCALARS + _CONTAINERS


@dataclass(frozen=True)
class SlapObject:
    """An object of the stock client: ``cls`` one of CLASSES, ``args`` its constructor
    arguments, ``attributes`` set on it after construction."""

    cls: str
    args: tuple = ()
    attributes: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.cls not in CLASSES:
            raise ValueError(f"{self.cls!r} is not one of the client's classes {CLASSES}")


# -- decoding ----------------------------------------------------------------------------
class Refused(Exception):
    """A document refused while it is parsed: ``problem`` says why."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


class _Decoder:
    """Builds the value from expat events, checking every limit as it goes."""

    def __init__(self, max_depth: int, max_nodes: int):
        self.max_depth, self.max_nodes = max_depth, max_nodes
        self.stack: list = []            # frames: [tag, children or text parts, id]
        self.nodes = 0
        self.complete: dict[str, object] = {}
        self.result = _NOTHING
        self.seen_root = False

    def start(self, tag, attrs):
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise Refused(f"has more than {self.max_nodes} elements")
        if len(self.stack) >= self.max_depth:
            raise Refused(f"is nested deeper than {self.max_depth} levels")
        if tag not in ELEMENTS:
            what = "an object (a class to build)" if tag in ("object", "instance") else \
                f"element <{tag[:40]}>"
            raise Refused(f"holds {what}, which is not accepted here (known: "
                           f"{', '.join(ELEMENTS)})")
        if tag == "marshal":
            if self.stack or self.seen_root:
                raise Refused("has <marshal> inside a document")
            self.seen_root = True
        elif not self.stack:
            raise Refused(f"must start with <marshal>, not <{tag}>")
        elif self.stack[-1][0] in _SCALARS:
            raise Refused(f"has <{tag}> inside <{self.stack[-1][0]}>")
        self.stack.append([tag, [], attrs.get("id")])

    def text(self, data):
        if not self.stack:
            return
        frame = self.stack[-1]
        if frame[0] in _SCALARS:
            frame[1].append(data)
            if sum(map(len, frame[1])) > MAX_TEXT:
                raise Refused(f"has a text longer than {MAX_TEXT} characters")
        elif data.strip():
            raise Refused(f"has text inside <{frame[0]}>")

    def end(self, tag):
        frame = self.stack.pop()
        value = self._value(frame)
        if frame[0] in ("list", "dictionary", "set") and frame[2]:
            self.complete[frame[2]] = value
        if frame[0] == "marshal":
            self.result = value
            return
        self.stack[-1][1].append(value)

    def _value(self, frame):
        tag, parts, _id = frame
        if tag == "marshal":
            if len(parts) != 1:
                raise Refused(f"<marshal> must hold exactly one value, found {len(parts)}")
            return parts[0]
        if tag in _SCALARS:
            return _scalar(tag, "".join(parts))
        if tag == "reference":
            if parts:
                raise Refused("<reference> must be empty")
            ref = _id
            if ref not in self.complete:
                raise Refused(f"refers to {str(ref)[:40]!r}, which is not a complete list "
                               "or dictionary before it")
            return self.complete[ref]
        if tag == "list":
            return list(parts)
        if tag == "tuple":
            return tuple(parts)
        if tag == "set":
            try:
                return set(parts)
            except TypeError:
                raise Refused("a <set> holds a value that cannot be in a set") from None
        if len(parts) % 2:
            raise Refused("a <dictionary> holds an odd number of children (key, value, ...)")
        out = {}
        for key, value in zip(parts[::2], parts[1::2]):
            if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                raise Refused(f"a <dictionary> key is a {type(key).__name__}")
            out[key] = value
        return out


_NOTHING = object()


def _scalar(tag: str, text: str):
    if tag in ("string", "unicode"):
        return unescape(text)       # the format escapes a string's text once more
    if tag == "none":
        if text.strip():
            raise Refused("<none> must be empty")
        return None
    if tag == "bool":
        value = text.strip()
        if value not in ("0", "1"):
            raise Refused(f"<bool> must be 0 or 1, not {value[:20]!r}")
        return value == "1"
    if tag in ("int", "long"):
        value = text.strip()
        if len(value) > 64:
            raise Refused(f"<{tag}> has more than 64 digits")
        try:
            return int(value)
        except ValueError:
            raise Refused(f"<{tag}> {value[:20]!r} is not an integer") from None
    try:
        return float(text.strip()[:64])
    except ValueError:
        raise Refused(f"<float> {text.strip()[:20]!r} is not a number") from None


def data_only_parser(start, end, text):
    """An expat parser of UTF-8 documents that reads data only: a DOCTYPE or any entity
    declaration raises Refused as it is met, processing instructions are skipped;
    ``start(name, attributes)``, ``end(name)`` and ``text(data)`` get the rest (each run
    of text at once)."""
    parser = expat.ParserCreate("utf-8")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse(*_args):
        raise Refused("declares a DOCTYPE or entities, which are not accepted")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.ProcessingInstructionHandler = lambda *a: None
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.buffer_text = True
    return parser


def loads(data: bytes | str, name: str = "body", *, max_bytes: int = MAX_BYTES,
          max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES):
    """The value of a marshal document; ``name`` (the form field it came in) names the
    problem. Raises InvalidInput for anything that is not a plain, bounded document."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > max_bytes:
        raise _invalid(name, f"is {len(data)} bytes long, the limit is {max_bytes}")
    decoder = _Decoder(max_depth, max_nodes)
    parser = data_only_parser(decoder.start, decoder.end, decoder.text)
    try:
        parser.Parse(data, True)
    except Refused as exc:
        raise _invalid(name, exc.problem) from None
    except expat.ExpatError as exc:
        raise _invalid(name, f"is not well-formed XML ({expat.errors.messages.get(exc.code, exc)}"
                             f", line {exc.lineno})") from None
    except RecursionError:
        raise _invalid(name, "is nested too deep") from None
    if decoder.result is _NOTHING:
        raise _invalid(name, "holds no <marshal> value")
    return decoder.result


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _invalid(name: str, problem: str) -> InvalidInput:
    return InvalidInput(f"invalid {name}: the marshal document {problem}",
                        [{"field": name, "problem": f"the marshal document {problem}"}])


# -- encoding ----------------------------------------------------------------------------
def dumps(value) -> bytes:
    """The marshal document of ``value`` (None, bool, int, float, str, bytes (UTF-8),
    list, tuple, set, dict, SlapObject). Dictionary keys are sorted, as the client's
    own encoder does. Raises TypeError for anything else."""
    out: list[str] = ["<marshal>"]
    _encode(value, out, [0])
    out.append("</marshal>")
    return "".join(out).encode("utf-8")


def _next_id(counter: list) -> str:
    counter[0] += 1
    return f"i{counter[0]}"


def _string(value: str) -> str:
    if "&" in value or "<" in value or ">" in value:
        value = escape(escape(value))
    return f"<string>{value}</string>"


def _encode(value, out: list, counter: list) -> None:
    # strings are most of any document: written in place in lists and dictionaries,
    # without a call per item, and escaped only when they must be
    kind = type(value)
    if kind is str:
        out.append(_string(value))
    elif value is None:
        out.append("<none/>")
    elif value is True or value is False:
        out.append(f"<bool>{int(value)}</bool>")
    elif kind is dict or (kind is not list and isinstance(value, dict)):
        out.append(f'<dictionary id="{_next_id(counter)}">')
        keys = list(value)
        if all(type(k) is str for k in keys):
            keys.sort()                     # what _sort_key orders them by, faster
        else:
            keys.sort(key=_sort_key)
        for key in keys:
            item = value[key]
            if type(key) is str:
                if type(item) is str:
                    out.append(f"{_string(key)}{_string(item)}")
                    continue
                out.append(_string(key))
            else:
                _encode(key, out, counter)
            _encode(item, out, counter)
        out.append("</dictionary>")
    elif isinstance(value, int):
        out.append(f"<int>{value}</int>" if -10 ** 24 < value < 10 ** 24
                   else f"<long>{value}</long>")
    elif isinstance(value, float):
        out.append(f"<float>{value!r}</float>")
    elif isinstance(value, str):
        out.append(f"<string>{escape(escape(value))}</string>")
    elif isinstance(value, bytes):
        out.append(f"<string>{escape(escape(value.decode('utf-8')))}</string>")
    elif isinstance(value, (list, tuple)):
        out.append(f'<list id="{_next_id(counter)}">' if isinstance(value, list)
                   else "<tuple>")
        for item in value:
            if type(item) is str:
                out.append(_string(item))
            else:
                _encode(item, out, counter)
        out.append("</list>" if isinstance(value, list) else "</tuple>")
    elif isinstance(value, (set, frozenset)):
        out.append(f'<set id="{_next_id(counter)}">')
        for item in sorted(value, key=repr):
            _encode(item, out, counter)
        out.append("</set>")
    elif isinstance(value, SlapObject):
        out.append(f'<object id="{_next_id(counter)}" module="{CLIENT_MODULE}" '
                   f'class="{value.cls}">')          # both checked: plain names
        _encode(tuple(value.args), out, counter)
        _encode(dict(value.attributes), out, counter)
        out.append("</object>")
    else:
        raise TypeError(f"cannot marshal a {type(value).__name__}")


def _sort_key(key):
    return (type(key).__name__, key) if isinstance(key, (str, int, float)) else \
        (type(key).__name__, repr(key))


def string_element(value: str) -> str:
    """``<string>`` of ``value``, escaped as every string of a document is."""
    return _string(value)


def encode_fragment(value, counter: list | None = None) -> str:
    """The marshal XML of one value without the ``<marshal>`` wrapper (to assemble a
    large document from cached parts); ``counter`` numbers the ids."""
    out: list[str] = []
    _encode(value, out, counter if counter is not None else [0])
    return "".join(out)
