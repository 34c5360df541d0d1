"""The outbound policy of a master: the networks it may connect to when a request's body
names a URL for it to call (a peer to pair with, a child master to adopt) and whenever it
calls a peer afterwards. A guard against being made to call what it must not (server-side
request forgery): its own administration ports, a cloud's metadata service, the LAN.

Depends on core.errors only; nothing here resolves or connects (the adapters do:
slapfed.client resolves a host, asks ``refusal`` of every address, and connects only to
allowed ones). No networks given: every address is allowed (the policy is off).
"""
from __future__ import annotations

import ipaddress

from .errors import OutboundRefused
from .record import OptionRecord

OPTION = "--outbound-allow"
FIELD = "outbound_allow"


class OutboundPolicy(OptionRecord):
    """``networks``: the CIDRs a master may connect to; empty: any address. Parsed from
    ``--outbound-allow`` values, each one CIDR or a comma-separated list of them
    (``127.0.0.0/8,::1``; a bare address is its /32 or /128): InvalidInput names every
    entry that is not a network."""

    networks: tuple = ()
    OPTION = OPTION

    @classmethod
    def _from_values(cls, values: list) -> tuple:
        networks, problems = [], []
        for value in values:
            for part in value.split(","):
                if not part.strip():
                    continue
                try:
                    networks.append(ipaddress.ip_network(part.strip(), strict=False))
                except ValueError:
                    problems.append({"field": FIELD, "problem": (
                        f"{part.strip()!r} is not an IP network (CIDR such as 10.1.0.0/16 "
                        "or fd00::/8, or an address)")})
        return (tuple(dict.fromkeys(networks)),), problems

    @property
    def restricted(self) -> bool:
        return bool(self.networks)

    def allows(self, address: str) -> bool:
        """Whether ``address`` (an IP address as text) may be connected to. An IPv4
        address mapped into IPv6 (``::ffff:10.0.0.1``) counts as the IPv4 address."""
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)

    def describe(self) -> str:
        return ",".join(str(n) for n in self.networks) if self.networks else "any"

    def refusal(self, field: str, host: str, addresses) -> OutboundRefused | None:
        """None when some address of ``addresses`` (what ``host`` resolved to) is
        allowed, else the error naming ``field``: its host resolves only outside the
        allowed networks, or (no addresses) does not resolve."""
        addresses = list(dict.fromkeys(addresses))
        if any(self.allows(a) for a in addresses):
            return None
        if not addresses:
            problem = (f"host {host!r} does not resolve, so it cannot be checked against "
                       f"this master's {OPTION} {self.describe()}")
        else:
            problem = (f"host {host!r} resolves to {', '.join(addresses[:4])}, outside "
                       f"this master's {OPTION} {self.describe()}")
        return OutboundRefused(f"this master may not call {field}: {problem}",
                               [{"field": field, "problem": problem}])


ANY = OutboundPolicy()
