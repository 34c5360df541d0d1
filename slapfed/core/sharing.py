"""Shared hosting by consent: who may attach shared instances to a host, and the words a
refused requester reads.

Depends on nothing but the standard library (pure, no I/O). A host instance accepts a
shared instance only when both belong to the same owner (the requester of the instance
tree's root), or when the host's requester opened it to that owner's principal, or to
everyone. The refusals below are worded so that they never tell a requester anything
about other tenants: not their instances' ids or references, not whether a host closed
to it exists.
"""
from __future__ import annotations

import re

EVERYONE = "*"                 # ``open_to: ["*"]``: any requester may attach
# The roles whose principals own instance trees (ca.identity: person, admin, master).
OWNER_ROLES = ("person", "admin", "master")
# ``person/bob``, ``master/b``; a bare name is what a development master records.
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}"
PRINCIPAL_RE = re.compile(rf"^(?:(?:{'|'.join(OWNER_ROLES)})/)?{_NAME}\Z")
MAX_OPEN_TO = 64


def parse_open_to(raw, field: str, problems: list) -> tuple:
    """The ``open_to`` of a request: () (owner only), ("*",) (everyone), or sorted
    principals without repeats. Appends {field, problem} items to ``problems``."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append({"field": field, "problem": "must be a JSON array of principals "
                         f"(e.g. [\"person/bob\", \"master/b\"]) or [\"{EVERYONE}\"], "
                         f"got {type(raw).__name__}"})
        return ()
    if len(raw) > MAX_OPEN_TO:
        problems.append({"field": field, "problem": f"names {len(raw)} principals, the limit "
                                                    f"is {MAX_OPEN_TO}"})
        return ()
    out, before = set(), len(problems)
    for i, who in enumerate(raw):
        if who == EVERYONE:
            out.add(who)
        elif not isinstance(who, str) or not PRINCIPAL_RE.match(who):
            problems.append({"field": f"{field}[{i}]", "problem": f"{str(who)[:80]!r} is not "
                             f"a principal ({'|'.join(OWNER_ROLES)}/NAME) nor {EVERYONE!r}"})
        else:
            out.add(who)
    if EVERYONE in out and len(out) > 1:
        problems.append({"field": field, "problem": f"{EVERYONE!r} (everyone) cannot be "
                                                    "combined with principals"})
    if len(problems) > before:
        return ()
    return tuple(sorted(out))


PEER_ROLE = "master"


def opens_to(open_to, host_owner: str, owner: str, named: bool = False) -> bool:
    """Whether a host of ``host_owner`` opened as ``open_to`` accepts shared instances of
    ``owner`` (both: the requester of their tree's root); ``named``: the shared request
    names that host (``host_instance``).

    A host a peer master requested here (owner ``master/NAME``) speaks for all of that
    peer's tenants, so being the same owner is not consent there: the peer's shared
    requests attach to it only when they name it, or when it is opened explicitly."""
    if EVERYONE in open_to or owner in open_to:
        return True
    if owner != host_owner:
        return False
    return named or not host_owner.startswith(PEER_ROLE + "/")


def describe(open_to) -> str:
    """``owner only``, ``everyone``, or the principals, comma-separated."""
    if not open_to:
        return "owner only"
    if EVERYONE in open_to:
        return "everyone"
    return ", ".join(open_to)


# -- what a refused requester reads: the same words whatever exists ---------------------
def waiting_for_a_host(software_url: str, software_type: str, owner: str) -> str:
    return (f"no host open to {owner} yet: waiting for a started instance of "
            f"{software_url} with software type {software_type!r} whose owner opens it "
            f"to {owner} (the shared instance attaches then)")


def named_host_refused(host_id: str, owner: str) -> str:
    return (f"host instance {host_id} is not available to {owner}: no started instance "
            f"of this release and software type with that id is open to it (ask its owner "
            f"to open it to {owner}; the shared instance attaches then)")


def host_closed(owner: str) -> str:
    return (f"its host is no longer open to {owner}; the shared instance attaches again "
            f"when a host is opened to {owner}")


def host_gone(owner: str) -> str:
    return (f"its host was destroyed; the shared instance attaches again when a host is "
            f"open to {owner}")
