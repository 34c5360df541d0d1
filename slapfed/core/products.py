"""The product aliases of a master, as its operator gives them at start (``master serve
--product NAME=URL``): SlapOS' ``product.NAME`` stands for one software release URL, which
SLAP's ``getSoftwareReleaseListFromSoftwareProduct`` answers (slapos request NAME
product.kvm).

Depends on core (errors, record, wire: a name is checked as an id, a URL as a request's
``software_url``, by the same wire types). Nothing here reads a file or the environment.
"""
from __future__ import annotations

from .errors import InvalidInput
from .record import OptionRecord
from .wire import ProductAlias

OPTION = "--product"
FIELD = "product"


class Products(OptionRecord):
    """``aliases``: (name, url) pairs in the order given, names unique; empty: none.
    Parsed from ``--product`` values, each ``NAME=URL`` (the URL may hold ``=``):
    InvalidInput names ``product`` for every value that is not a NAME=URL pair, a name
    that is not an id, a URL a request could not name, or a name given twice."""

    aliases: tuple = ()
    OPTION = OPTION

    @classmethod
    def _from_values(cls, values: list) -> tuple:
        aliases, problems, seen = [], [], set()
        for value in values:
            name, sep, url = value.partition("=")
            if not sep:
                problems.append({"field": FIELD, "problem": (
                    f"{value[:80]!r} is not NAME=URL (such as "
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
        return (tuple(aliases),), problems

    def releases_of(self, name: str) -> list[str]:
        """The releases of product ``name``, best first: its URL, or [] (no such product)."""
        return [url for product, url in self.aliases if product == name]

    def releases_like(self, url: str) -> list[str]:
        """The releases of the product ``url`` belongs to, best first: [url] when some
        product stands for it, else []."""
        return [url] if any(u == url for _name, u in self.aliases) else []


NO_PRODUCTS = Products()
