"""The product aliases of a master, as its operator gives them at start (``master serve
--product NAME=URL``): SlapOS' ``product.NAME`` stands for one software release URL, which
SLAP's ``getSoftwareReleaseListFromSoftwareProduct`` answers (slapos request NAME
product.kvm).

Depends on core (errors, record, wire: a name is checked as an id, a URL as a request's
``software_url``, by the same wire types). Nothing here reads a file or the environment.
"""
from __future__ import annotations

from .errors import InvalidInput
from .record import Record
from .wire import ProductAlias

OPTION = "--product"
FIELD = "product"


class Products(Record):
    """``aliases``: (name, url) pairs in the order given, names unique; empty: none."""

    aliases: tuple = ()

    @classmethod
    def parse(cls, values) -> "Products":
        """From ``--product`` values, each ``NAME=URL`` (the URL may hold ``=``). Raises
        InvalidInput naming ``product`` for every value that is not a NAME=URL pair, a
        name that is not an id, a URL a request could not name, or a name given twice."""
        if isinstance(values, Products):
            return values
        if isinstance(values, str):
            values = [values]
        aliases, problems, seen = [], [], set()
        for value in values or ():
            name, sep, url = str(value).partition("=")
            if not sep:
                problems.append({"field": FIELD, "problem": (
                    f"{str(value)[:80]!r} is not NAME=URL (such as "
                    "kvm=https://example.org/kvm/software.cfg)")})
                continue
            try:
                alias = ProductAlias.from_json({"name": name, "url": url})
            except InvalidInput as exc:
                problems.extend({"field": FIELD, "problem": (
                    f"{name[:64]!r}: its {d.get('field')} {d.get('problem')}")}
                    for d in exc.details)
                continue
            if alias.name in seen:
                problems.append({"field": FIELD, "problem": (
                    f"{alias.name!r} is given more than once (one URL per product)")})
                continue
            seen.add(alias.name)
            aliases.append((alias.name, alias.url))
        if problems:
            raise InvalidInput(f"invalid {OPTION}: {problems[0]['problem']}", problems)
        return cls(tuple(aliases))

    def releases_of(self, name: str) -> list[str]:
        """The releases of product ``name``, best first: its URL, or [] (no such product)."""
        return [url for product, url in self.aliases if product == name]

    def releases_like(self, url: str) -> list[str]:
        """The releases of the product ``url`` belongs to, best first: [url] when some
        product stands for it, else []."""
        return [url] if any(u == url for _name, u in self.aliases) else []


NO_PRODUCTS = Products()
