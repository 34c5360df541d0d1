"""``slapfed peer``: pairing with peer masters and the delegation policy.

Depends on the CLI plumbing and slapfed.client. Pairing takes two commands, one on each
master: ``peer invite NAME`` on the master that will serve (it prints an invitation:
its URL, CA certificate and a one-time token for NAME), then ``peer add`` on the master
that will delegate, which trades the token for an identity of its own there.
"""
from __future__ import annotations

import functools
import json
import tomllib

import click

from ..core.errors import InvalidInput
from ..core.states import TRUST_LEVELS
from .common import emit, error_boundary, invitation_options, json_option, write_invitation
from .user_cmd import make_client, master_option


@click.group()
def peer():
    """Peer masters: pair, list, forget; the delegation policy."""


@peer.command()
@click.argument("name")
@invitation_options("This master's URL as the peer reaches it (default: --master).")
@master_option
@error_boundary
def invite(name, public_url, ttl, out, master_url):
    """Invite master NAME to delegate here: print an invitation (URL, CA certificate,
    one-time token) to hand to NAME's operator for `slapfed peer add`."""
    client = make_client(master_url)
    answer = client.create_master_token(name, ttl)
    me = client.health().get("name")
    write_invitation({"peer": me, "url": public_url or client.url, "for": name,
                      "principal": answer["principal"], "token": answer["token"],
                      "ca_certificate": answer["ca_certificate"]}, out, name)


def link_options(command):
    """--trust, --cost, --latency-ms, --site: what this master knows of a peer's link;
    the command gets them as ``link`` (only those given)."""
    options = [
        click.option("--trust", type=click.Choice(TRUST_LEVELS),
                     default=None,
                     help="observe: read its summary only; delegate: also send it requests."),
        click.option("--cost", type=float, default=None,
                     help="Relative cost of delegating there."),
        click.option("--latency-ms", type=float, default=None),
        click.option("--site", default=None, help="The peer's site in this master's topology.")]

    @functools.wraps(command)
    def wrapper(*args, trust, cost, latency_ms, site, **kwargs):
        link = {k: v for k, v in (("trust", trust), ("cost", cost),
                                  ("latency_ms", latency_ms), ("site", site)) if v is not None}
        return command(*args, link=link, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@peer.command()
@click.argument("invitation", type=click.File("r"))
@click.option("--name", default=None, help="The peer's name here (default: its own).")
@link_options
@master_option
@json_option
@error_boundary
def add(invitation, name, link, master_url, as_json):
    """Pair with the peer of INVITATION (a file from `slapfed peer invite`, - for stdin):
    this master makes a key, trades the token for a certificate there, and records the
    peer with what it offers."""
    try:
        inv = json.load(invitation)
    except ValueError as exc:
        raise InvalidInput(f"the invitation is not JSON ({exc})",
                           [{"field": "invitation", "problem": "malformed JSON"}]) from None
    if not isinstance(inv, dict) or not all(k in inv for k in ("url", "token",
                                                               "ca_certificate")):
        raise InvalidInput("the invitation lacks url, token or ca_certificate",
                           [{"field": "invitation", "problem": "incomplete"}])
    body = {"name": name or inv.get("peer"), "url": inv["url"], "token": inv["token"],
            "ca_certificate": inv["ca_certificate"], **link}
    out = make_client(master_url).add_peer(body)
    emit(out, as_json, f"paired with {out['name']} at {out['url']} as {out['principal']}; "
                       f"it offers {len(out['summary']['localities'])} site(s), "
                       f"{len(out['summary']['software'])} release(s)")


def render_peers(peers: list[dict]) -> str:
    rows = [f"{'PEER':16} {'LINK':10} {'ORIGIN':8} {'TRUST':8} {'LAST CONTACT':26} "
            f"{'PENDING':8} {'FORWARDS':10} URL"]
    for p in peers:
        total = sum(p["forwards"].values())
        link = "lost" if p.get("lost") else p["link"] if p["paired"] else "not paired"
        rows.append(f"{p['name'][:16]:16} {link:10} {p['origin']:8} {p['trust']:8} "
                    f"{(p['last_contact'] or '-'):26} {p['pending_forwards']:<8} {total:<10} "
                    f"{p['url']}")
        if p.get("last_error"):
            rows.append(f"  error: {p['last_error']}")
        usage = p.get("usage")
        if usage:
            rows.append(f"  usage: {usage['recorded']} entr"
                        f"{'y' if usage['recorded'] == 1 else 'ies'} recorded (feed at "
                        f"{usage['cursor']} of {usage['head']}, last read "
                        f"{usage['pulled_at'] or '-'})"
                        + (f", {usage['skipped']} skipped: {usage['last_problem']}"
                           if usage["skipped"] else ""))
        if p.get("lost"):
            rows.append(f"  lost since {p['lost']['at']}: {p['lost']['reason']}; "
                        f"{len(p.get('orphans') or ())} orphan(s) to destroy there if it "
                        "comes back")
    return "\n".join(rows)


@peer.command(name="list")
@master_option
@json_option
@error_boundary
def list_(master_url, as_json):
    """The peers, the state of each link and their pending forwards."""
    peers = make_client(master_url).list_peers()
    emit({"peers": peers}, as_json, render_peers(peers))


@peer.command(name="set")
@click.argument("name")
@link_options
@master_option
@json_option
@error_boundary
def set_(name, link, master_url, as_json):
    """Change what this master knows of peer NAME's link (e.g. trust a child master a
    person owns with --trust delegate); its pairing stays."""
    out = make_client(master_url).update_peer(name, link)
    emit(out, as_json, f"peer {name}: trust {out['trust']}, cost {out['cost']:g}, latency "
                       f"{out['latency_ms'] if out['latency_ms'] is not None else '-'} ms, "
                       f"site {out['site'] or '-'}")


@peer.command()
@click.argument("name")
@master_option
@json_option
@error_boundary
def remove(name, master_url, as_json):
    """Forget peer NAME (refused while it serves delegated instances)."""
    out = make_client(master_url).remove_peer(name)
    emit(out, as_json, f"peer {name} forgotten")


@peer.command()
@click.argument("name")
@click.option("--reason", default="", metavar="TEXT", help="Recorded with the verdict.")
@click.option("--dry-run", is_flag=True, help="Show what would move; change nothing.")
@master_option
@json_option
@error_boundary
def lost(name, reason, dry_run, master_url, as_json):
    """Declare peer NAME lost (admins): nothing is delegated to it any more; what it
    served for this master goes to a fallback peer or comes back here, as the delegation
    policy routes it; what it may still run is recorded as orphans. `peer remove` then
    works."""
    out = make_client(master_url).declare_peer_lost(name, reason, dry_run)
    lines = [f"peer {name} {'would be' if dry_run else 'is'} lost; "
             f"{len(out['peer']['orphans'])} orphan(s) recorded there"]
    for m in out["moves"]:
        to = m.get("to") or {}
        where = (f"peer {to['peer']}" if "peer" in to else
                 f"{to['computer']}/{to['partition']}" if "computer" in to else
                 f"host {to['host']}" if "host" in to else "")
        text = {"moved": f"-> {where}", "destroyed": "destroyed (nothing to wait for)",
                "not_placed": f"NOT PLACED: {m.get('reason')}"}[m["outcome"]]
        lines.append(f"  {m['reference']} ({m['instance']}): {text}")
    emit(out, as_json, "\n".join(lines))


@peer.group()
def policy():
    """The delegation policy: rules (release, software type, shared -> peers) and auto."""


@policy.command(name="show")
@master_option
@json_option
@error_boundary
def policy_show(master_url, as_json):
    doc = make_client(master_url).policy()
    lines = [f"auto: {'on' if doc['auto'] else 'off'} (no local fit -> a peer that fits)"]
    for i, r in enumerate(doc["rules"], 1):
        what = ", ".join(f"{k}={r[k]}" for k in ("release", "software_type", "shared") if k in r)
        lines.append(f"{i}. {what or 'every request'} [{r['when']}] -> "
                     f"{' then '.join(r['to'])}" + ("" if r["fallback"] else " (no fallback)"))
    emit(doc, as_json, "\n".join(lines))


@policy.command(name="set")
@click.argument("file", type=click.File("rb"))
@master_option
@json_option
@error_boundary
def policy_set(file, master_url, as_json):
    """Replace the policy with FILE (TOML or JSON: auto = true, [[rules]] ...)."""
    raw = file.read()
    try:
        doc = json.loads(raw)
    except ValueError:
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"the policy file is neither JSON nor TOML ({exc})",
                               [{"field": "file", "problem": str(exc)}]) from None
    out = make_client(master_url).set_policy(doc)
    emit(out, as_json, f"policy set: {len(out['rules'])} rule(s), auto "
                       f"{'on' if out['auto'] else 'off'}")
