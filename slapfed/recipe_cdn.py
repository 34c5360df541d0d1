"""The slapfed:cdn-sites recipe of profiles/cdn: from the partition's shared instances,
the proxy's site table and each shared instance's connection parameters.

Depends on slapfed.recipe (its file writing) and the pure half of slapfed.samples.cdn.
Options: ``table`` (the site table to write, read by slapfed-cdn-front), ``url`` (the
proxy's base URL), ``shared-instances`` (default ``${partition:shared-instances}``) and
``shared-connection-file`` (default ``${partition:shared-connection-file}``), the JSON
object {shared instance id: connection parameters} the node reports to the master.
``shared-instances`` may arrive encoded (slapfed.core.cfgvalue): it is decoded.
"""
from __future__ import annotations

import json

import zc.buildout

from .core.cfgvalue import decode
from .recipe import _Recipe, _required, _write
from .samples import cdn


class CdnSitesRecipe(_Recipe):
    """Writes ``table`` and the shared connection file; a site keeps its owner."""

    def __init__(self, buildout, name, options):
        super().__init__(buildout, name, options)
        # Read now: buildout runs every constructor before it uninstalls a part whose
        # options changed (and with it, the table), so this is the table in place.
        self.previous = self._previous_owners(_required(options, name, "table"))

    def _option_or_partition(self, key: str) -> str:
        value = self.options.get(key, "").strip()
        if value:
            return value
        try:
            return self.buildout["partition"][key]
        except KeyError:
            raise zc.buildout.UserError(
                f"[{self.name}] needs {key!r} (or a [partition] {key})") from None

    @staticmethod
    def _previous_owners(path: str) -> dict:
        try:
            with open(path, encoding="utf-8") as fh:
                return cdn.owners(cdn.sites_from_json(json.load(fh)))
        except (OSError, ValueError):
            return {}

    def install(self):
        table = _required(self.options, self.name, "table")
        url = _required(self.options, self.name, "url")
        if not url.endswith("/"):
            url += "/"
        raw = self._option_or_partition("shared-instances")
        try:
            shared = json.loads(decode(raw))
        except ValueError as exc:
            raise zc.buildout.UserError(
                f"[{self.name}] shared-instances is not JSON: {exc}") from None
        if not isinstance(shared, list):
            raise zc.buildout.UserError(
                f"[{self.name}] shared-instances must be a JSON list, got "
                f"{type(shared).__name__}")
        sites, connections = cdn.build_sites(shared, url, self.previous)
        connection_file = self._option_or_partition("shared-connection-file")
        _write(table, json.dumps(cdn.table_json(sites), indent=1, sort_keys=True) + "\n",
               0o644)
        _write(connection_file, json.dumps(connections, indent=1, sort_keys=True) + "\n",
               0o600)
        return [table, connection_file]
