"""The requester's verbs: request, list, show, start, stop, destroy; and supply, computers,
config. Thin wrappers over MasterClient with one error boundary each.

Depends on slapfed.client, core and the CLI plumbing.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time

import click

from ..client import MasterClient
from ..core import leases, sharing, states
from ..core.errors import InvalidInput
from ..core.sealed import is_sealed
from . import completion, sealed
from . import config as cfg
from .common import Exit, InstanceFailed, emit, error_boundary, json_option, parse_pairs

master_option = click.option(
    "--master", "master_url", metavar="URL",
    help=f"Master URL (default: ${cfg.ENV_MASTER}, then the client config file).")
requester_option = click.option(
    "--as", "requester", metavar="NAME",
    help=f"Requester name (default: ${cfg.ENV_REQUESTER}, the config file, then your login).")


def make_client(master_url, requester=None) -> MasterClient:
    return MasterClient(cfg.resolve_master(master_url), requester=cfg.resolve_requester(requester),
                        **cfg.resolve_tls())


def absolute_release(url: str) -> str:
    """A release given as a local path (relative or not) becomes an absolute path."""
    if "://" in url or url.startswith("/"):
        return url
    if os.path.exists(url):
        return os.path.abspath(url)
    raise InvalidInput(f"software release {url!r} is neither a URL nor an existing path")


def parse_params(pairs, json_pairs) -> dict:
    params = parse_pairs(pairs, "--param")
    for k, v in parse_pairs(json_pairs, "--param-json").items():
        try:
            params[k] = json.loads(v)
        except ValueError as exc:
            raise click.BadParameter(f"{k}: {v!r} is not JSON ({exc})", param_hint="--param-json")
    return params


def delegation_chain(inst: dict, here: str = "here") -> str:
    """``here -> b -> c -> computer c-1 (lan tokyo-lan, asia)`` for a delegated instance."""
    d = inst.get("delegation")
    if not d:
        return ""
    hops = [here]
    for hop in d.get("chain") or [{"master": d["peer"]}]:
        if "master" in hop:
            hops.append(hop["master"])
        elif "computer" in hop:
            where = ", ".join(f"{k} {hop[k]}" for k in ("lan", "country", "continent")
                              if hop.get(k))
            hops.append(f"computer {hop['computer']}" + (f" ({where})" if where else ""))
        elif "host_instance" in hop:
            hops.append(f"shared on {hop['host_instance']}")
    return " -> ".join(hops)


def where_cell(inst: dict) -> str:
    place = inst.get("placement")
    if place:
        return f"{place['computer']}/{place['partition']}"
    d = inst.get("delegation")
    if d:
        return f"=> {d['peer']}" + (f" ({d['state']})" if d["state"] != "forwarded" else "")
    return "shared" if inst.get("shared") else "-"


def render_instance(inst: dict) -> str:
    st = inst["status"]
    place = inst.get("placement")
    where = (f"{place['computer']}/{place['partition']} ({place['address']})" if place
             else ("shared" if inst.get("shared") else "-"))
    d = inst.get("delegation")
    if d:
        where = f"delegated to {d['peer']} ({d['state']})"
    lines = [
        f"reference:  {inst['reference']}",
        f"id:         {inst['id']}",
        f"requester:  {inst['requester']}",
        f"software:   {inst['software_url']} [{inst['software_type']}]",
        f"requested:  {inst['requested_state']} (revision {inst['revision']})",
        f"status:     {st['state']} (reported revision {st['revision']}, at {st.get('reported_at') or '-'})",
        f"placement:  {where}",
    ]
    building = release_phrase(place) if place else None
    if building:
        lines.append(f"release:    {building}")
    if not inst.get("shared"):
        attached = len(inst.get("shared_instances") or ())
        lines.append(f"open to:    {sharing.describe(inst.get('open_to') or ())}"
                     + (f" ({attached} shared instance{'s' if attached != 1 else ''} "
                        "attached)" if attached else ""))
    elif inst.get("host_instance"):
        lines.append(f"host:       {inst['host_instance']}")
    if d:
        lines.append(f"chain:      {delegation_chain(inst)}")
        lines.append(f"remote:     {d['remote_reference']}"
                     + (f" (id {d['remote_id']} at {d['peer']})" if d.get("remote_id") else ""))
        if d.get("reason"):
            lines.append(f"delegation: {d['reason']}")
    if inst.get("sla"):
        alternatives = inst["sla"] if isinstance(inst["sla"], list) else [inst["sla"]]
        lines.append("sla:        " + " | else ".join(
            ", ".join(f"{k}={v}" for k, v in sorted(alt.items())) or "anywhere"
            for alt in alternatives))
    if inst.get("parameters"):
        lines.append("parameters:")
        lines += [f"  {k} = {'(secret, sealed to its partition)' if is_sealed(v) else v}"
                  for k, v in sorted(inst["parameters"].items())]
    if inst.get("connection"):
        lines.append("connection:")
        lines += [f"  {k} = {connection_text(inst, k)}" for k in sorted(inst["connection"])]
    for p in st.get("promises") or []:
        lines.append(f"promise:    {'ok  ' if p['ok'] else 'FAIL'} {p['name']} {p.get('message', '')}".rstrip())
    if st.get("log_tail") and st["state"] in (states.PENDING, states.UNKNOWN) \
            and (d or inst.get("shared") or st.get("reported_state")):
        lines.append(f"why:        {st['log_tail'].strip().splitlines()[-1]}")
    if st.get("log_tail") and st["state"] == states.FAILED:
        lines.append("log tail:")
        lines += ["  " + ln for ln in st["log_tail"].rstrip().splitlines()[-25:]]
    return "\n".join(lines)


def render_connection(inst: dict) -> str:
    if not inst.get("connection"):
        return f"{inst['reference']}: {inst['status']['state']} (no connection parameters yet)"
    return "\n".join(f"{k} = {connection_text(inst, k)}" for k in sorted(inst["connection"]))


def connection_text(inst: dict, key: str) -> str:
    """A connection parameter as shown: a value that stayed sealed says so."""
    if key in (inst.get("unopened") or {}):
        return "(sealed; does not open with your key)"
    return str(inst["connection"][key])


def release_phrase(place: dict) -> str | None:
    """What the instance's release is doing on its computer, in words; None once it is
    installed (or when the master does not say)."""
    rel = place.get("release")
    if not rel or rel["status"] == states.INSTALLED:
        return None
    where = place["computer"]
    if rel["status"] == states.BUILDING:
        retry = (f" (attempt {rel['failed_installs'] + 1}; last failure: {rel['reason']})"
                 if rel.get("failed_installs") else "")
        return f"installing the release on {where}{retry}"
    if rel["status"] == states.FAILED:
        return f"the release failed to install on {where}: {rel.get('reason') or 'see its log'}"
    return f"waiting for {where} to install the release"


def phase(inst: dict) -> str:
    """One line saying where an instance stands while someone waits for it."""
    st = inst["status"]
    d = inst.get("delegation")
    if st["state"] == states.UNKNOWN:
        why = (st.get("log_tail") or "").strip().splitlines()
        return "unknown" + (f": {why[-1]}" if why else "")
    if d:
        return f"delegated to {d['peer']} ({d['state']}), {st['state']}"
    place = inst.get("placement")
    current = st["revision"] == inst["revision"]
    if st["state"] == states.FAILED and current:
        return "failed"
    if current and st["state"] == inst["requested_state"]:
        return st["state"]
    if place is None:
        return "attaching to a host" if inst.get("shared") else "waiting for a place"
    building = release_phrase(place)
    if building:
        return building
    where = f"{place['computer']}/{place['partition']}"
    if inst["requested_state"] == states.DESTROYED:
        return f"destroying on {where}"
    if inst["requested_state"] == states.STOPPED:
        return f"stopping on {where}"
    return f"instantiating on {where} (buildout, services, promises)"


class Progress:
    """Prints each change of phase with the time since the wait began, on stderr (so
    that stdout holds only the answer); silent with --json."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.monotonic()
        self.last: str | None = None

    def __call__(self, inst: dict) -> None:
        if not self.enabled:
            return
        now = phase(inst)
        if now != self.last:
            self.last = now
            click.echo(f"{time.monotonic() - self.started:6.1f}s  {inst['reference']}: {now}",
                       err=True)


def wait_and_check(client: MasterClient, inst: dict, wait: float,
                   progress: Progress | None = None) -> dict:
    inst = client.wait_ready(inst["id"], wait, on_poll=progress)
    if inst["status"]["state"] == states.FAILED:
        tail = inst["status"].get("log_tail", "").rstrip().splitlines()[-15:]
        raise InstanceFailed(f"instance {inst['reference']!r} failed", tail)
    return inst


def parse_sla_pairs(pairs, what: str) -> dict:
    """``k=v`` SLA terms into one alternative; a relative key (same_*/different_*) given
    several times names several instances, any other key given twice is an error."""
    out: dict = {}
    for item in pairs:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not of the form key=value", param_hint=what)
        k, v = (part.strip() for part in item.split("=", 1))
        if not k:
            raise click.BadParameter(f"{item!r} has an empty key", param_hint=what)
        if k not in out:
            out[k] = v
        elif k.startswith(("same_", "different_")):
            prev = out[k]
            out[k] = (prev if isinstance(prev, list) else [prev]) + [v]
        else:
            raise click.BadParameter(f"{k} is given twice", param_hint=what)
    return out


def build_sla(sla_pairs, fallbacks):
    """The wire ``sla``: the --sla terms, then each --sla-fallback in order (an array
    when there is any fallback); ``--sla-fallback ''`` means anywhere."""
    first = parse_sla_pairs(sla_pairs, "--sla")
    if not fallbacks:
        return first
    rest = [parse_sla_pairs([t for t in text.split(",") if t.strip()], "--sla-fallback")
            for text in fallbacks]
    return [first] + rest


def request_options(command):
    """The options of `request`, shared by `request --dry-run` and `topology explain`."""
    for option in reversed([
        click.argument("reference", shell_complete=completion.references),
        click.argument("software_url"),
        click.option("--type", "software_type", default=states.DEFAULT_SOFTWARE_TYPE,
                     show_default=True,
                     help="Software type (which instance profile of the release)."),
        click.option("--param", "params", multiple=True, metavar="K=V",
                     help="Instance parameter (repeatable)."),
        click.option("--param-json", "params_json", multiple=True, metavar="K=JSON",
                     help="Instance parameter given as JSON (repeatable)."),
        click.option("--sla", "sla", multiple=True, metavar="K=V",
                     help="Placement condition (repeatable, all must hold): computer_guid, "
                          "host, lan, country, continent, capability, label.KEY, or "
                          "same_/different_ host|lan|country|continent = another instance's "
                          "reference, e.g. --sla continent=europe --sla different_host=db-1."),
        click.option("--sla-fallback", "sla_fallbacks", multiple=True, metavar="'K=V,K=V'",
                     help="An alternative tried when the previous ones fit nowhere "
                          "(repeatable, in order); '' means anywhere."),
        click.option("--state", type=click.Choice(states.REQUESTED_STATES),
                     default=states.STARTED, show_default=True),
        click.option("--shared", is_flag=True,
                     help="Ask for a shared instance (no partition of its own)."),
        click.option("--parent", metavar="INSTANCE_ID", help="Request as a child of this "
                     "instance.", shell_complete=completion.instance_ids),
        master_option,
        requester_option,
        json_option,
    ]):
        command = option(command)
    return command


def explain_request(client, reference, software_url, software_type, params, params_json, sla,
                    sla_fallbacks, state, shared, parent) -> dict:
    return client.explain(reference, absolute_release(software_url), software_type,
                          parse_params(params, params_json), build_sla(sla, sla_fallbacks),
                          state, shared, parent)


def render_decision(d: dict) -> str:
    """A placement decision (POST /placements) as text a person reads top-down."""
    if d["placed"]:
        n = len(d["attempts"])
        head = (f"{d['reference']}: would go to {d['computer']}/{d['partition']} "
                f"(alternative {d['alternative'] + 1} of {n}: "
                f"{d['attempts'][d['alternative']]['sla']})")
    else:
        head = d["message"]
    lines = [head]
    if d.get("current"):
        lines.append(f"  already placed on {d['current']['computer']}/"
                     f"{d['current']['partition']}; a repeated request keeps it there")
    for ref, a in sorted((d.get("anchors") or {}).items()):
        lines.append(f"  {ref} runs on {a['computer']}" if a["computer"]
                     else f"  {ref} {a['why']}")
    for a in d["attempts"]:
        lines.append(f"  [{a['alternative'] + 1}] {a['sla']}: {a['feasible']} of "
                     f"{a['candidates']} computers fit"
                     + (f", {a['scored']} scored" if a["scored"] else ""))
        for r in a["refusals"]:
            sample = f"  e.g. {', '.join(r['sample'])}" if r.get("sample") else ""
            lines.append(f"        {r['count']:>6} refused by {r['reason']}"
                         f" [{r['plugin']}]{sample}")
        for t in a["top"]:
            parts = ", ".join(f"{k} {v:g}" for k, v in t["scores"].items())
            lines.append(f"        score {t['score']:.3f} {t['computer']} ({parts})")
    route = d.get("route")
    if route:
        if route["kind"] == "delegate":
            lines.append(f"route: delegated to {' then '.join(route['peers'])} "
                         f"({route['reason']})")
        else:
            lines.append(f"route: served here ({route['reason']})")
        for c in route.get("considered") or ():
            lines.append(f"        peer {c['peer']}: {c['verdict']}")
    lines.append("nothing written (dry run)")
    return "\n".join(lines)


# -- --secret-file: a secret parameter read from a file (never in argv) ----------------
def read_secret_files(pairs, hint: str = "--secret-file") -> dict:
    """``K=PATH`` options into {K: the text of PATH, one final newline dropped}; a file
    that cannot be read, is not UTF-8 text or is larger than a secret may be is a usage
    error naming the option and the file."""
    from ..core.sealed import MAX_PLAINTEXT
    out = {}
    for key, path in parse_pairs(pairs, hint).items():
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_PLAINTEXT + 3)
        except OSError as exc:
            raise click.BadParameter(f"{key}: cannot read {path}: {exc.strerror}",
                                     param_hint=hint) from None
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        if len(data) > MAX_PLAINTEXT:
            raise click.BadParameter(f"{key}: {path} holds more than {MAX_PLAINTEXT} bytes "
                                     "(the most a secret may be)", param_hint=hint)
        try:
            out[key] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise click.BadParameter(f"{key}: {path} is not UTF-8 text",
                                     param_hint=hint) from None
    return out


@click.command()
@request_options
@click.option("--wait", type=float, default=0.0, metavar="SECONDS",
              help="Wait until the instance reaches the requested state, then print its "
                   "connection parameters.")
@click.option("--dry-run", is_flag=True,
              help="Print where the instance would go and why (candidates, refusals per "
                   "plugin, scores); write nothing.")
@click.option("--open-to", "open_to", multiple=True, metavar="PRINCIPAL",
              help="Let PRINCIPAL attach shared instances to this one (repeatable): "
                   "person/NAME, or master/PEER for what a peer master delegates here. "
                   "Without it only your own shared requests attach; asking again "
                   "without it closes the instance again (others' are detached).")
@click.option("--open-to-all", "open_to_all", is_flag=True,
              help="Let everyone attach shared instances to this one.")
@click.option("--secret", "secret_pairs", multiple=True, metavar="K=V",
              help="A secret parameter (repeatable): sealed to the partition the instance "
                   "runs in, so that only its node opens it; the master never sees it. "
                   "Each request with --secret makes a new revision.")
@click.option("--secret-file", "secret_files", multiple=True, metavar="K=PATH",
              help="A secret parameter read from the file PATH (repeatable; a final "
                   "newline is dropped), so that it never shows in the process list; "
                   "sealed as --secret is.")
@error_boundary
def request(reference, software_url, software_type, params, params_json, sla, sla_fallbacks,
            state, shared, parent, wait, dry_run, open_to, open_to_all, master_url, requester,
            as_json, secret_pairs=(), secret_files=()):
    """Ask the master for REFERENCE, an instance of SOFTWARE_URL (a buildout profile).

    Asking again with the same REFERENCE updates the same instance. A --shared request
    attaches to a host open to you (--sla host_instance=ID names one)."""
    if open_to and open_to_all:
        raise click.BadParameter("give either --open-to PRINCIPAL... or --open-to-all",
                                 param_hint="--open-to-all")
    opening = [sharing.EVERYONE] if open_to_all else list(open_to)
    client = make_client(master_url, requester)
    if dry_run:
        decision = explain_request(client, reference, software_url, software_type, params,
                                   params_json, sla, sla_fallbacks, state, shared, parent)
        emit(decision, as_json, render_decision(decision))
        route = decision.get("route") or {}
        if not decision["placed"] and route.get("kind") != "delegate":
            sys.exit(int(Exit.CONFLICT))      # as the real request would: no partition fits
        return
    parameters = parse_params(params, params_json)

    def send(extra: dict) -> dict:
        return client.request(reference, absolute_release(software_url), software_type,
                              {**parameters, **extra}, build_sla(sla, sla_fallbacks),
                              state, shared, parent, opening)
    secrets = parse_pairs(secret_pairs, "--secret")
    from_files = read_secret_files(secret_files)
    twice = sorted(set(secrets) & set(from_files))
    if twice:
        raise click.BadParameter(f"{', '.join(twice)} given both as --secret and "
                                 "--secret-file", param_hint="--secret-file")
    secrets.update(from_files)
    both = sorted(set(secrets) & set(parameters))
    if both:
        raise click.BadParameter(f"{', '.join(both)} given both as --param and --secret",
                                 param_hint="--secret")
    inst = send(sealed.seal_parameters(client, reference, send, secrets, wait)
                if secrets else {})
    if wait > 0:
        inst = wait_and_check(client, inst, wait, Progress(not as_json))
    inst, unopened = sealed.open_instance(inst)
    emit(inst, as_json, render_connection(inst) if wait > 0 else render_instance(inst))
    sealed.report_unopened(inst, unopened, fatal=wait > 0)


@click.command(name="list")
@master_option
@requester_option
@click.option("--everyone", is_flag=True, help="List every requester's instances.")
@click.option("--all", "include_destroyed", is_flag=True,
              help="Destroyed instances too (left out by default; the master forgets "
                   "them after its --destroyed-retention).")
@json_option
@error_boundary
def list_(master_url, requester, everyone, include_destroyed, as_json):
    """List instances (yours, or everyone's with --everyone); destroyed ones with --all.
    Every page of the master's list is read. With --json, the connection parameters
    sealed to you are opened with your key, as `show --json` does (``sealed`` names
    them); one that does not open (sealed to someone else, altered) stays sealed and is
    named with its reason under ``unopened``."""
    client = make_client(master_url, requester)
    instances = client.list_instances(requester=None if everyone else client.requester,
                                      include_destroyed=include_destroyed)
    if as_json:        # (cryptography is loaded only when a value is sealed)
        instances = [sealed.open_instance(i)[0] for i in instances]
    rows = [f"{'REFERENCE':24} {'REQUESTED':10} {'STATUS':10} {'WHERE':24} SOFTWARE"]
    for i in instances:
        where = where_cell(i)
        rows.append(f"{i['reference'][:24]:24} {i['requested_state']:10} {i['status']['state']:10} "
                    f"{where[:24]:24} {i['software_url']} [{i['software_type']}]")
    emit({"instances": instances}, as_json, "\n".join(rows))


@click.command()
@click.argument("reference", shell_complete=completion.references)
@master_option
@requester_option
@json_option
@error_boundary
def show(reference, master_url, requester, as_json):
    """Show one of your instances by REFERENCE."""
    inst, unopened = sealed.open_instance(make_client(master_url, requester).find(reference))
    emit(inst, as_json, render_instance(inst))
    sealed.report_unopened(inst, unopened)


def _state_command(name: str, target: str, doc: str):
    @click.command(name=name, help=doc)
    @click.argument("reference", shell_complete=completion.references)
    @click.option("--wait", type=float, default=0.0, metavar="SECONDS",
                  help="Wait until the node confirms.")
    @master_option
    @requester_option
    @json_option
    @error_boundary
    def command(reference, wait, master_url, requester, as_json):
        client = make_client(master_url, requester)
        inst = client.find(reference)
        inst = (client.destroy(inst["id"]) if target == states.DESTROYED
                else client.change_state(inst["id"], target))
        if wait > 0:
            inst = wait_and_check(client, inst, wait, Progress(not as_json))
        emit(inst, as_json, f"{inst['reference']}: requested {inst['requested_state']}, "
                            f"status {inst['status']['state']}")
    return command


start = _state_command("start", states.STARTED, "Ask for REFERENCE to run.")
stop = _state_command("stop", states.STOPPED, "Ask for REFERENCE to stop (its partition is kept).")
destroy = _state_command("destroy", states.DESTROYED,
                         "Destroy REFERENCE: its node wipes the partition and frees it.")


@click.command()
@click.argument("software_url")
@click.option("--computer", "computer_id", required=True, metavar="ID")
@click.option("--remove", is_flag=True, help="Unsupply: uninstall the release from the computer.")
@master_option
@json_option
@error_boundary
def supply(software_url, computer_id, remove, master_url, as_json):
    """Supply SOFTWARE_URL to a computer (its node installs it once)."""
    client = make_client(master_url)
    url = absolute_release(software_url)
    sw = client.unsupply(computer_id, url) if remove else client.supply(computer_id, url)
    emit(sw, as_json, f"{computer_id}: {url} {sw.get('state')} (status {sw.get('status')})")


@click.group()
def computer():
    """Inspect computers known to the master; change their facts (admins)."""


def computer_state(c: dict) -> str:
    """What a computer's lease says of its node: up, unknown (not heard from within its
    lease) or new (never heard from)."""
    lease = c.get("lease") or {}
    if c.get("lost"):
        return "lost"
    return {leases.LIVE: "up", leases.EXPIRED: states.UNKNOWN,
            leases.NONE: "new"}.get(lease.get("state"), "-")


@computer.command(name="list")
@master_option
@json_option
@error_boundary
def computer_list(master_url, as_json):
    """List computers with their locality and free partitions."""
    comps = make_client(master_url).list_computers()
    rows = [f"{'COMPUTER':20} {'HOST':12} {'LAN':10} {'COUNTRY':8} {'CONTINENT':10} "
            f"{'FREE':>5} {'USED':>5} {'STATE':8} LAST CONTACT"]
    for c in comps:
        used = sum(1 for p in c["partitions"] if p["instance"] or p.get("moved"))
        rows.append(f"{c['id'][:20]:20} {(c['host'] or '-')[:12]:12} {(c['lan'] or '-')[:10]:10} "
                    f"{(c['country'] or '-')[:8]:8} {(c['continent'] or '-')[:10]:10} "
                    f"{len(c['partitions']) - used:5d} {used:5d} {computer_state(c):8} "
                    f"{c.get('last_contact') or '-'}")
    emit({"computers": comps}, as_json, "\n".join(rows))


@computer.command(name="show")
@click.argument("computer_id")
@master_option
@json_option
@error_boundary
def computer_show(computer_id, master_url, as_json):
    """Show a computer: partitions, their instances, supplied releases."""
    c = make_client(master_url).show_computer(computer_id)
    lines = [f"computer {c['id']}  host={c['host']} lan={c['lan']} country={c['country']} "
             f"continent={c['continent']}  {computer_state(c)}, last contact "
             f"{c.get('last_contact') or '-'}"]
    for s in c["software"]:
        line = f"  software {s['url']}  {s['state']}/{s['status']}"
        if s.get("failed_installs"):
            why = (s.get("log_tail") or "").strip().splitlines()
            line += (f" after {s['failed_installs']} failed install(s)"
                     + (f": {why[-1]}" if why else ""))
        lines.append(line)
    if c.get("lost"):
        lines.append(f"  LOST since {c['lost']['at']}: {c['lost']['reason']}")
    for p in c["partitions"]:
        moved = p.get("moved")
        held = p["instance"] or (
            f"moved away: {moved['instance']} ("
            f"{'wipe allowed' if moved['wipe'] else 'quarantined' if moved['quarantined'] else 'data kept'})"
            if moved else "free")
        lines.append(f"  {p['id']:10} {p['address']:16} ports {p['port_base']}+{p['port_count']}"
                     f"  {held}")
    emit(c, as_json, "\n".join(lines))


@computer.command(name="set")
@click.argument("computer_id")
@click.option("--host", default=None, metavar="NAME", help="Its host ('' clears it).")
@click.option("--lan", default=None, metavar="NAME", help="Its LAN ('' clears it).")
@click.option("--country", default=None, metavar="NAME", help="Its country ('' clears it).")
@click.option("--continent", default=None, metavar="NAME",
              help="Its continent ('' clears it).")
@click.option("--label", "labels", multiple=True, metavar="K=V",
              help="Replace its labels with these (repeatable).")
@click.option("--no-labels", is_flag=True, help="Remove every label.")
@click.option("--capability", "capabilities", multiple=True, metavar="NAME",
              help="Replace its capabilities with these (repeatable).")
@click.option("--no-capabilities", is_flag=True, help="Remove every capability.")
@master_option
@json_option
@error_boundary
def computer_set(computer_id, host, lan, country, continent, labels, no_labels, capabilities,
                 no_capabilities, master_url, as_json):
    """Change a computer's locality, labels or capabilities (admins): the facts its node
    may not change itself. Only what is given changes."""
    changes = {k: (v or None) for k, v in (("host", host), ("lan", lan), ("country", country),
                                           ("continent", continent)) if v is not None}
    if labels or no_labels:
        changes["labels"] = {} if no_labels else parse_pairs(labels, "--label")
    if capabilities or no_capabilities:
        changes["capabilities"] = [] if no_capabilities else list(capabilities)
    if not changes:
        raise click.UsageError("give at least one of --host, --lan, --country, --continent, "
                               "--label, --no-labels, --capability, --no-capabilities")
    c = make_client(master_url).set_computer(computer_id, changes)
    emit(c, as_json, f"computer {c['id']}  host={c['host']} lan={c['lan']} "
                     f"country={c['country']} continent={c['continent']}  labels="
                     f"{','.join(f'{k}={v}' for k, v in sorted(c['labels'].items())) or '-'}  "
                     f"capabilities={','.join(c['capabilities']) or '-'}")


@computer.command(name="lost")
@click.argument("computer_id")
@click.option("--reason", default="", metavar="TEXT", help="Recorded with the verdict.")
@click.option("--dry-run", is_flag=True, help="Show what would move; change nothing.")
@master_option
@json_option
@error_boundary
def computer_lost(computer_id, reason, dry_run, master_url, as_json):
    """Declare a computer lost (admins): nothing is placed there any more, and each
    instance it hosts is placed again elsewhere under its own SLA, keeping its id and
    reference; a child master is rebuilt from its replica (same CA, its replica's URL),
    never placed again empty. Its old partitions keep their data (the node sets them
    aside if it ever comes back) until `slapfed computer wipe`."""
    answer = make_client(master_url).declare_lost(computer_id, reason, dry_run)
    lines = [f"computer {computer_id} {'would be' if dry_run else 'is'} lost"
             + (f" ({answer['computer']['lost']['reason']})"
                if (answer['computer'].get('lost') or {}).get('reason') else "")]
    for m in answer["moves"]:
        to = m.get("to") or {}
        where = (f"{to['computer']}/{to['partition']}" if "computer" in to
                 else f"peer {to['peer']}" if "peer" in to else "")
        text = {"moved": f"-> {where}", "destroyed": "destroyed (nothing to wait for)",
                "not_placed": f"NOT PLACED: {m.get('reason')}",
                "rebuilt": f"rebuilt from its replica {to.get('from')} -> {where} (promoted "
                           "there; a new replica follows)"}[m["outcome"]]
        lines.append(f"  {m['reference']} ({m['instance']}) from {m['partition']}: {text}")
    if not answer["moves"]:
        lines.append("  it hosted no instance")
    emit(answer, as_json, "\n".join(lines))


@computer.command(name="wipe")
@click.argument("computer_id")
@click.option("--partition", "partition_id", default=None, metavar="ID",
              help="Only this partition (default: every partition whose instance moved; "
                   "that also returns a lost computer to service).")
@master_option
@json_option
@error_boundary
def computer_wipe(computer_id, partition_id, master_url, as_json):
    """Let the node erase the data it kept of instances that moved away (admins). The
    partitions are free again once the node reports them erased."""
    c = make_client(master_url).wipe_computer(computer_id, partition_id)
    wiping = [p["id"] for p in c["partitions"] if (p.get("moved") or {}).get("wipe")]
    emit(c, as_json, f"computer {c['id']}: wipe allowed of "
                     f"{', '.join(wiping) or 'nothing (no partition holds moved data)'}"
                     + ("" if c.get("lost") else "; placeable"))


@click.group(name="config")
def config_group():
    """Read or write the client config file."""


@config_group.command(name="set")
@click.option("--master", "master_url", metavar="URL")
@click.option("--requester", metavar="NAME",
              help="Requester name, for a master in development mode only.")
@click.option("--identity", "identity_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Identity directory written by `slapfed ca issue --out DIR`: records "
                   "its CA certificate, certificate and key.")
@error_boundary
def config_set(master_url, requester, identity_dir):
    """Record the master URL, your identity and/or requester name for later commands."""
    if not master_url and not requester and not identity_dir:
        raise click.UsageError("give --master, --identity and/or --requester")
    values = {"master": master_url, "requester": requester}
    if identity_dir:
        values.update(cfg.identity_files(identity_dir))
    path = cfg.write_config(values)
    click.echo(f"wrote {path}")


@config_group.command(name="enrol")
@click.option("--master", "master_url", metavar="URL", required=True)
@click.option("--ca", "ca_file", metavar="FILE", required=True,
              type=click.Path(exists=True, dir_okay=False),
              help="The master's CA certificate (PEM), e.g. a child master's ca-certificate.")
@click.option("--token", help="The one-time token the master gave you (e.g. a child "
              "master's admin-token, as `slapfed show` opens it).")
@click.option("--token-file", "token_file", metavar="FILE",
              help="Read the token from FILE instead (a final newline is dropped), so that "
                   "it never shows in the process list.")
@click.option("--out", "out_dir", metavar="DIR", required=True, type=click.Path(file_okay=False),
              help="Where to make your key and keep your certificate.")
@error_boundary
def config_enrol(master_url, ca_file, token, out_dir, token_file=None):
    """Trade a one-time token for an identity (the key is made here) and record it."""
    from ..enrol import enrol
    if (token is None) == (token_file is None):
        raise click.UsageError("give the token with either --token or --token-file")
    if token_file is not None:
        token = read_secret_files([f"token={token_file}"], "--token-file")["token"].strip()

    with open(ca_file, encoding="utf-8") as fh:
        client = enrol(master_url, fh.read(), token, out_dir)
    who = client.whoami()["principal"]
    path = cfg.write_config({"master": master_url, **cfg.identity_files(out_dir)})
    click.echo(f"enrolled as {who}; wrote {path}")


def validity(not_after: str | None, now: dt.datetime | None = None) -> str:
    """``until 2026-05-01 10:00 UTC (in 364 days)`` / ``expired on ... (3 days ago)``."""
    if not not_after:
        return "-"
    try:
        end = dt.datetime.fromisoformat(not_after)
    except ValueError:
        return not_after
    if end.tzinfo is None:
        end = end.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    shown = end.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    days = (end - now).total_seconds() / 86400
    if days < 0:
        return f"expired on {shown} ({_days(-days)} ago)"
    return f"until {shown} (in {_days(days)})"


def _days(days: float) -> str:
    if days < 1:
        hours = max(1, round(days * 24))
        return f"{hours} hour{'s' if hours != 1 else ''}"
    n = int(days)
    return f"{n} day{'s' if n != 1 else ''}"


def render_whoami(body: dict, master: str, requester: str | None = None,
                  now: dt.datetime | None = None) -> str:
    """GET /whoami as text: who the master takes you for, and with which certificate."""
    ident = body.get("identity") or {}
    lines = [f"principal:   {body.get('principal')}",
             f"role:        {ident.get('role')}",
             f"name:        {ident.get('name')}"]
    for key in ("computer", "partition"):
        if ident.get(key):
            lines.append(f"{key + ':':13}{ident[key]}")
    cert = body.get("certificate")
    if cert:
        lines.append(f"certificate: serial {cert['serial']}, valid "
                     f"{validity(cert.get('not_after'), now)}")
    if body.get("development_mode"):
        lines.append("mode:        development: the master reads no certificate and acts "
                     "for everyone as this administrator")
        lines.append(f"requester:   {requester or 'anonymous'} (the name this CLI sends; "
                     "instances are recorded under it)")
    lines.append(f"master:      {master}")
    return "\n".join(lines)


@click.command()
@master_option
@requester_option
@json_option
@error_boundary
def whoami(master_url, requester, as_json):
    """Print who the master thinks you are: the principal of your certificate (role,
    name), and the certificate's serial and expiry."""
    client = make_client(master_url, requester)
    body = client.whoami()
    emit(body, as_json, render_whoami(body, client.url, client.requester))


def _source(env: str, key: str, fallback: str = "unset") -> str:
    """Where a value ``config show`` prints comes from."""
    if os.environ.get(env):
        return f"${env}"
    if cfg.read_config().get(key):
        return "config file"
    return fallback


@config_group.command(name="show")
@json_option
@error_boundary
def config_show(as_json):
    """Print the effective configuration, where each value comes from, and the identity
    your certificate carries (read from the file; `slapfed whoami` asks the master).

    With a certificate the master takes who you are from it and no requester name is
    sent; without one, the requester name is sent to a master in development mode."""
    tls = cfg.resolve_tls()
    identity, problem = None, None
    if tls["cert"]:
        try:
            identity = cfg.certificate_identity(tls["cert"])
        except InvalidInput as exc:
            problem = exc.message
    requester = None if tls["cert"] else cfg.resolve_requester(None)
    data = {"config_file": str(cfg.config_path()), "master": cfg.resolve_master(None),
            "identity": identity, "requester": requester, **tls}
    master_from = _source(cfg.ENV_MASTER, "master")
    lines = [f"config file: {data['config_file']}",
             f"master:      {data['master'] or '-'} ({master_from})"]
    if identity:
        lines.append(f"identity:    {identity['principal']} (from the certificate, serial "
                     f"{identity['serial']}, valid {validity(identity['not_after'])}); the "
                     "master decides who you are from it: `slapfed whoami` asks it")
    elif problem:
        lines.append(f"identity:    none usable: {problem}")
    else:
        lines.append("identity:    none (no certificate: slapfed config set --identity DIR)")
        lines.append(f"requester:   {requester} "
                     f"({_source(cfg.ENV_REQUESTER, 'requester', 'your login')}; sent "
                     "only to a master in development mode, which takes it as given)")
    lines += [f"{k + ':':13}{tls[k] or '-'}" for k in cfg.TLS_KEYS]
    emit(data, as_json, "\n".join(lines))


COMMANDS = [request, list_, show, start, stop, destroy, supply, computer, config_group, whoami]
