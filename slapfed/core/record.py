"""Frozen value objects that cost next to nothing to declare: ``Record``.

A dataclass costs about a millisecond to create (it writes and compiles the source of
its methods), which every command that imports the module pays at start-up; the node's
planner alone declares sixteen. A ``Record`` subclass is declared the same way (fields
are the annotated class attributes, in order, base classes' first; a class attribute
gives the default) and behaves like a ``@dataclass(frozen=True)``: keyword or
positional construction, equality and hash on the fields (of the same class only), a
``Name(field=value, ...)`` repr, no assignment. ``Factory(callable)`` gives a default
made anew for every instance (``field(default_factory=...)``); a field named in
``_not_compared`` takes no part in equality nor hash, one in ``_not_hashed`` no part in
the hash only. ``replace(**changes)`` is ``dataclasses.replace``; ``as_dict()`` the
fields as a flat dict (values as they are). The fields live in the instance's
``__dict__``, so ``vars()`` works. Annotations of ``ClassVar`` are not fields.
``MutableRecord``: the same, fields assignable (a ``@dataclass`` not frozen).

Depends on nothing.
"""
from __future__ import annotations

from .errors import InvalidInput

_MISSING = object()


class Factory:
    """A default made by calling ``make()`` for each new instance."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


class FrozenRecordError(AttributeError):
    """Assigning to (or deleting) a field of a frozen record."""


class Record:
    __slots__ = ()
    _fields: tuple = ()
    _defaults: dict = {}
    _compared: tuple = ()
    _hashed: tuple = ()
    _not_compared: tuple = ()
    _not_hashed: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__annotations__", {})
        fields = list(cls._fields)
        defaults = dict(cls._defaults)
        for name, annotation in own.items():
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            if name not in fields:
                fields.append(name)
            value = cls.__dict__.get(name, _MISSING)
            if value is not _MISSING:
                defaults[name] = value
        seen_default = False
        for name in fields:
            if name in defaults:
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {name!r} follows default argument")
        cls._fields = tuple(fields)
        cls._defaults = defaults
        cls._compared = tuple(f for f in fields if f not in cls._not_compared)
        cls._hashed = tuple(f for f in cls._compared if f not in cls._not_hashed)

    def __init__(self, *args, **kwargs):
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}.__init__() takes {len(fields) + 1} "
                            f"positional arguments but {len(args) + 1} were given")
        values = dict(zip(fields, args))
        for name, value in kwargs.items():
            if name in values:
                raise TypeError(f"{type(self).__name__}.__init__() got multiple values "
                                f"for argument {name!r}")
            if name not in fields:
                raise TypeError(f"{type(self).__name__}.__init__() got an unexpected "
                                f"keyword argument {name!r}")
            values[name] = value
        if len(values) < len(fields):
            defaults = self._defaults
            missing = []
            for name in fields:
                if name not in values:
                    default = defaults.get(name, _MISSING)
                    if default is _MISSING:
                        missing.append(name)
                    elif type(default) is Factory:
                        values[name] = default.make()
                    else:
                        values[name] = default
            if missing:
                raise TypeError(f"{type(self).__name__}.__init__() missing {len(missing)} "
                                f"required argument(s): "
                                f"{', '.join(repr(m) for m in missing)}")
        # in the fields' order (the repr and as_dict() follow it)
        self.__dict__.update({name: values[name] for name in fields} if kwargs else values)

    def __setattr__(self, name, value):
        raise FrozenRecordError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise FrozenRecordError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        d = self.__dict__
        inner = ", ".join(f"{f}={d[f]!r}" for f in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        a, b = self.__dict__, other.__dict__
        return tuple(a[f] for f in self._compared) == tuple(b[f] for f in self._compared)

    def __hash__(self) -> int:
        d = self.__dict__
        return hash(tuple(d[f] for f in self._hashed))

    def replace(self, **changes):
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return type(self)(**{**self.__dict__, **changes})

    def as_dict(self) -> dict:
        """The fields, in order, values as they are (not converted)."""
        return dict(self.__dict__)


class MutableRecord(Record):
    """A ``Record`` whose fields may be assigned (``@dataclass``, not frozen): unhashable,
    as a dataclass with equality is."""

    __slots__ = ()
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__
    __hash__ = None



class OptionRecord(Record):
    """A record parsed from the values of a repeatable command-line option ``OPTION``
    (core.outbound, core.products): ``parse`` takes them as given (one string is one
    value, None none, a record of the class itself as it is) and raises one InvalidInput
    listing every problem; a subclass gives ``_from_values(values) -> (the record's
    fields, problems)``, each problem a detail naming its option's field."""

    __slots__ = ()
    OPTION = ""

    @classmethod
    def parse(cls, values):
        if isinstance(values, cls):
            return values
        if isinstance(values, str):
            values = [values]
        fields, problems = cls._from_values([str(v) for v in values or ()])
        if problems:
            raise InvalidInput(f"invalid {cls.OPTION}: {problems[0]['problem']}", problems)
        return cls(*fields)

    @classmethod
    def _from_values(cls, values: list) -> tuple:
        raise NotImplementedError
