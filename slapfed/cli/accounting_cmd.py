"""Accounting verbs: ``slapfed usage``, ``slapfed statement`` and ``slapfed accounting
prices``. Thin wrappers over MasterClient with one error boundary each.

Depends on slapfed.client, core.accounting and the CLI plumbing.
"""
from __future__ import annotations

import csv
import io
import json

import click

from ..core.errors import InvalidInput, NotFound
from . import completion
from .common import emit, error_boundary, json_option
from .user_cmd import make_client, master_option, requester_option


def _number(value: float) -> str:
    return f"{value:.6g}" if value != int(value) or abs(value) >= 1e15 else str(int(value))


def _where(where: dict | None) -> str:
    if not where:
        return "-"
    return where["name"] if where["kind"] == "computer" else f"peer {where['name']}"


def render_usage(doc: dict) -> str:
    state = " (destroyed)" if doc["destroyed"] else ""
    out = [f"{doc['reference']} ({doc['instance_id']}){state} of {doc['owner']}, "
           f"requested by {doc['requester']}",
           f"  release {doc['release']} ({doc['software_type']})",
           f"  from {doc['since']} to {doc['until']}"]
    if not doc["days"]:
        out.append("  no usage recorded")
    for day in doc["days"]:
        items = ", ".join(f"{u['resource']} {_number(u['quantity'])} {u['unit']}"
                          for u in day["usage"])
        out.append(f"  {day['day']} on {_where(day['where'])}: {items}")
    if doc["totals"]:
        out.append("  total: " + ", ".join(f"{u['resource']} {_number(u['quantity'])} "
                                           f"{u['unit']}" for u in doc["totals"]))
    for inc in doc["incidents"]:
        out.append(f"  incident {inc['kind']} {inc['name']} from {inc['start']} to "
                   f"{inc['end'] or '(open)'} ({inc['seconds']} s) {inc['detail']}".rstrip())
    return "\n".join(out)


@click.command()
@click.argument("reference", shell_complete=completion.references)
@click.option("--since", metavar="YYYY-MM-DD", help="First day (default: 29 days ago).")
@click.option("--until", metavar="YYYY-MM-DD", help="Last day, inclusive (default: today).")
@master_option
@requester_option
@json_option
@error_boundary
def usage(reference, since, until, master_url, requester, as_json):
    """What one of your instances used, per day (REFERENCE, or an instance id; a
    destroyed instance's history stays)."""
    client = make_client(master_url, requester)
    try:
        iid = client.find(reference)["id"]
    except NotFound:
        if not reference.startswith("i-"):
            raise
        iid = reference
    doc = client.instance_usage(iid, since, until)
    emit(doc, as_json, render_usage(doc))


COLUMNS = ("release", "software_type", "where", "requester", "instances", "resource",
           "kind", "quantity", "unit", "amount")


def statement_rows(doc: dict):
    """One row per line and resource (and one per line without usage, for its incidents)."""
    for line in doc["lines"]:
        base = {"release": line["release"] or "", "software_type": line["software_type"] or "",
                "where": _where(line["where"]) if line["where"] else "",
                "requester": line["requester"] or "", "instances": line["instances"]}
        for u in line["usage"]:
            yield {**base, "resource": u["resource"], "kind": u["kind"],
                   "quantity": _number(u["quantity"]), "unit": u["unit"],
                   "amount": u.get("amount") or ""}


def render_statement(doc: dict) -> str:
    currency = f" ({doc['currency']})" if doc["currency"] else ""
    out = [f"statement of {doc['owner']} for {doc['period']} ({doc['start']} to "
           f"{doc['end']}){currency}"]
    if not doc["lines"]:
        out.append("no usage recorded")
    for line in doc["lines"]:
        head = [x for x in (line["release"], line["software_type"],
                            f"on {_where(line['where'])}" if line["where"] else None,
                            f"requested by {line['requester']}" if line["requester"] else None)
                if x]
        out.append(f"{' '.join(head) or '(all)'}: {line['instances']} instance(s)"
                   + (f", {line['amount']} {doc['currency']}" if line.get("amount") else ""))
        for u in line["usage"]:
            amount = f"  {u['amount']}" if u.get("amount") else ""
            out.append(f"  {u['resource']:<22} {_number(u['quantity']):>16} {u['unit']:<5}"
                       f"{amount}")
        inc = line["incidents"]
        if inc["count"]:
            out.append(f"  incidents: {inc['count']} ({inc['seconds']} s)")
    totals = doc["totals"]
    if totals["usage"]:
        out.append("total:")
        for u in totals["usage"]:
            out.append(f"  {u['resource']:<22} {_number(u['quantity']):>16} {u['unit']}")
    if totals["incidents"]["count"]:
        out.append(f"  incidents: {totals['incidents']['count']} "
                   f"({totals['incidents']['seconds']} s)")
    if totals.get("amount") is not None:
        out.append(f"  amount: {totals['amount']} {doc['currency']}")
    return "\n".join(out)


def statement_csv(doc: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in statement_rows(doc):
        writer.writerow(row)
    return buf.getvalue().rstrip("\n")


@click.command()
@click.option("--owner", metavar="PRINCIPAL", help="Whose statement, e.g. person/alice "
              "(admins; default: yours).")
@click.option("--peer", metavar="NAME", help="What peer NAME's delegations used here.")
@click.option("--period", required=True, metavar="YYYY-MM|YYYY-MM-DD",
              help="A month or a day (UTC).")
@click.option("--group", metavar="DIMS", help="Comma-separated among release, "
              "software_type, where, requester (default release,software_type,where).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]),
              default="table", show_default=True)
@master_option
@requester_option
@error_boundary
def statement(owner, peer, period, group, fmt, master_url, requester):
    """Usage over a period, grouped by release, software type and where it ran, with
    incidents, and amounts when the master has a price list."""
    if owner and peer:
        raise click.UsageError("give --owner or --peer, not both")
    doc = make_client(master_url, requester).statement(period, owner=owner, peer=peer,
                                                       group=group)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    elif fmt == "csv":
        click.echo(statement_csv(doc))
    else:
        click.echo(render_statement(doc))


@click.group()
def accounting():
    """The master's accounting settings."""


@accounting.group()
def prices():
    """The price list statements use (admins set it)."""


def render_prices(doc: dict) -> str:
    if not doc["prices"]:
        return "no price list"
    out = [f"currency {doc['currency']}, amounts rounded to {doc['precision']} decimal(s)"]
    for p in doc["prices"]:
        out.append(f"  {p['resource']:<22} {p['price']} per {p['per']}  ({p['release']})")
    return "\n".join(out)


@prices.command(name="show")
@master_option
@json_option
@error_boundary
def prices_show(master_url, as_json):
    """Show the price list."""
    doc = make_client(master_url).prices()
    emit(doc, as_json, render_prices(doc))


@prices.command(name="set")
@click.argument("file", type=click.File("r"))
@master_option
@json_option
@error_boundary
def prices_set(file, master_url, as_json):
    """Replace the price list with FILE (JSON: {"currency": "EUR", "precision": 2,
    "prices": [{"release": URL or "*", "resource": "cpu_seconds", "price": "0.01",
    "per": "3600"}]})."""
    try:
        doc = json.load(file)
    except ValueError as exc:
        raise InvalidInput(f"{file.name} is not JSON: {exc}",
                           [{"field": "file", "problem": f"is not JSON: {exc}"}]) from None
    answer = make_client(master_url).set_prices(doc)
    emit(answer, as_json, render_prices(answer))


COMMANDS = [usage, statement, accounting]
