"""The slapfed:cdn-sites recipe of profiles/cdn: from the partition's shared instances,
the proxy's site table and each shared instance's connection parameters.

Depends on slapfed.recipe (its file writing) and the pure half of slapfed.samples.cdn.
Options: ``table`` (the site table to write, read by slapfed-cdn-front), ``url`` (the
proxy's base URL), ``shared-instances`` (default ``${partition:shared-instances}``) and
``shared-connection-file`` (default ``${partition:shared-connection-file}``), the JSON
object {shared instance id: connection parameters} the node reports to the master.
``shared-instances`` may arrive encoded (slapfed.core.cfgvalue): it is decoded.
``purge-keys`` (optional): a file (0600) of {shared instance id: purge key}; each served
site gets one (kept across instantiations) and publishes it as ``purge-key``.
``secret`` names (whitespace-separated) the per-site values that are secrets, as
slapfed:publish's ``secret`` does for the partition's own: those go, per shared
instance, into ``secret-shared-connection-file`` (default
``${partition:secret-shared-connection-file}``), and the node seals each to the
certificate of that shared instance's requester (never the host's) before it leaves
the partition. A node that gives no such file makes the part fail rather than publish a
secret in clear.
"""
from __future__ import annotations

import json
import secrets

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
        keys_path = options.get("purge-keys", "").strip()
        self.previous_keys = self._read_keys(keys_path) if keys_path else {}

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

    @staticmethod
    def _read_keys(path: str) -> dict:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def install(self):
        secret = self.options.get("secret", "").split()
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
        keys_path = self.options.get("purge-keys", "").strip()
        keys = None
        if keys_path:
            keys = cdn.purge_keys(shared, self.previous_keys,
                                  lambda: secrets.token_urlsafe(24))
        # before anything is written: a node that cannot seal gets no site at all
        secret_file = self._option_or_partition("secret-shared-connection-file") \
            if secret else None
        sites, connections = cdn.build_sites(shared, url, self.previous, keys)
        hidden = {sid: {k: conn.pop(k) for k in secret if k in conn}
                  for sid, conn in connections.items()}
        connection_file = self._option_or_partition("shared-connection-file")
        written = [table, connection_file]
        if keys_path:
            _write(keys_path, json.dumps(keys, indent=1, sort_keys=True) + "\n", 0o600)
            written.append(keys_path)
        if secret_file:
            _write(secret_file, json.dumps({s: v for s, v in hidden.items() if v}, indent=1,
                                           sort_keys=True) + "\n", 0o600)
            written.append(secret_file)
        _write(table, json.dumps(cdn.table_json(sites), indent=1, sort_keys=True) + "\n",
               0o644)
        _write(connection_file, json.dumps(connections, indent=1, sort_keys=True) + "\n",
               0o600)
        return written
