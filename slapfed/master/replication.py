"""Routes of replication: inviting a replica, its registration, the transaction stream it
follows (a long poll that also confirms what it holds), the CA material it serves with,
the status (role, epoch, replicas and their lag, last backup) and promotion; and the two
hooks every request passes: a replica or a fenced primary refuses writes (409
``read_only`` / ``fenced``) before any view runs, and every answer says the epoch, the
role and the masters of this epoch (headers a node and a client learn from).

Depends on Flask, ca, core, store (shipping, backup), services.replication, replication
(its runtime and set-up) and master.auth/request.
"""
from __future__ import annotations

import re
import time

from flask import Blueprint, current_app, g, jsonify, request

from ..ca import identity as ids
from ..core import replication as rep
from ..core.errors import Conflict, InvalidInput
from ..core.replication import LocalRole
from ..core.wire import Promotion, ReplicaInvitation, ReplicaRegistration
from ..peering.peers import check_peer_url
from ..replication.cafiles import ca_material
from ..services import replication as svc
from ..services import tx
from ..store import backup as bk
from ..store import shipping
from .auth import authority, current_identity
from .request import WRITE_METHODS, json_body, runtime, settings

blueprint = Blueprint("replication", __name__)

MAX_WAIT = 60.0
# decimal seconds, as a JSON number is written (an exponent too: 1e-05); no sign but
# that of -0.0, no hex, no inf/nan (the range check refuses what overflows)
WAIT_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")
# Writes a replica or a fenced primary still answers: they change nothing (explain) or
# are the one write a replica makes (its promotion, which decides by itself).
ALWAYS_ANSWERED = frozenset({"instances.explain_placement", "replication.promote"})
MAINTENANCE_EXTENSION = "slapfed.maintenance"


def install(app, rt) -> None:
    """Refuse writes where this master may not write; say the epoch on every answer."""
    def refuse_writes():
        if (request.method in (*WRITE_METHODS, "DELETE")
                and request.endpoint in current_app.view_functions
                and request.endpoint not in ALWAYS_ANSWERED):
            runtime().replication.check_writable()

    def epoch_headers(response):
        r = current_app.extensions.get("slapfed")
        if r is not None and not r.closed:
            try:
                response.headers.update(r.replication.headers())
            except Exception:  # noqa: BLE001 - a header must never fail an answer
                pass
        return response

    def name_the_action():
        who = getattr(getattr(g, "identity", None), "principal", None)
        tx.ACTION.set(f"{request.method} {request.path[:200]}"
                      + (f" by {who}" if who else ""))

    app.before_request(refuse_writes)
    app.before_request(name_the_action)
    app.after_request(epoch_headers)


@blueprint.post("/replication/invitations")
def invite():
    """A one-time token with which replica NAME enrols here (only its hash is kept)."""
    body = ReplicaInvitation.from_json(json_body())
    kwargs = {"ttl": body.ttl} if body.ttl else {}
    identity = ids.replica(body.name)
    token = authority().enrolment_token(identity, **kwargs)
    return jsonify({"name": body.name, "principal": identity.principal, "token": token,
                    "ca_certificate": authority().certificate_pem,
                    "primary": settings().here,
                    "epoch": runtime().replication.view().epoch}), 201


@blueprint.put("/replication/replicas/<name>")
def register_replica(name):
    """A replica says where it serves and in which mode (sync: writes wait for it). Its
    URL is one this master calls (the fence watch asks it for its epoch): refused
    (outbound_refused) outside master serve --outbound-allow."""
    body = ReplicaRegistration.from_json(json_body())
    if body.url is not None:
        check_peer_url(settings().outbound, body.url)
    before = {r.name: r.url for r in svc.replication_view(runtime()).replicas}
    view = svc.record_replica(runtime(), name, body.url, body.mode)
    runtime().replication.forget_view()
    if name in before and before[name] != body.url:
        # another replica under that name (its computer was lost, it runs elsewhere
        # now): what the one before confirmed says nothing of what this one holds
        runtime().replication.forget_acks(name)
    return jsonify({"name": name, "url": body.url, "mode": body.mode, "epoch": view.epoch})


def _wait_param(args) -> float:
    raw = args.get("wait", "0")
    try:
        if not WAIT_RE.match(raw):
            raise ValueError
        wait = float(raw)
        if not 0 <= wait <= MAX_WAIT:
            raise ValueError
    except ValueError:
        raise InvalidInput(f"invalid parameters: wait must be a number of seconds in "
                           f"0..{MAX_WAIT:g}",
                           [{"field": "wait", "problem": f"must be a number of seconds in "
                                                         f"0..{MAX_WAIT:g}"}]) from None
    return wait


@blueprint.get("/replication/transactions")
def transactions():
    """Long poll: the transactions committed after ``after``, as stored (at most a batch;
    ``more`` says others follow), waiting up to ``wait`` seconds for one. Asking after
    a TID confirms that the replica holds it durably (a sync write waits for that)."""
    args = request.args
    problems = [{"field": k, "problem": "unknown parameter (known: after, wait)"}
                for k in args if k not in ("after", "wait")]
    if problems:
        raise InvalidInput(f"invalid parameters: {problems[0]['field']} "
                           f"{problems[0]['problem']}", problems)
    after = shipping.parse_tid(args.get("after", shipping.ZERO_TID), "after")
    wait = _wait_param(args)
    rt = runtime()
    repl = rt.replication
    role = repl.role()
    if role.role != rep.PRIMARY:
        rep.check_writable(role, repl.view().epoch, role.primary_url)
    storage = rt.db.storage
    deadline = time.monotonic() + wait
    committed = rt.writer.committed
    acknowledged = False
    while True:
        batch = shipping.read_after(storage, after)   # ReplicaDiverged: not in its history
        if not acknowledged:
            # only a TID of this history confirms anything (a rejoining master asks
            # about TIDs that may be its own alone)
            repl.acknowledge(current_identity().name, after)
            acknowledged = True
        left = deadline - time.monotonic()
        if batch.transactions or left <= 0 or rt.stopping.is_set():
            break
        with committed:
            committed.wait(min(0.1, left))   # woken by this process's commits
    return jsonify({"transactions": batch.transactions, "last_tid": batch.last_tid.hex(),
                    "more": batch.more, "behind": batch.behind,
                    "behind_bytes": batch.behind_bytes, "epoch": repl.view().epoch})


@blueprint.get("/replication/ca")
def ca():
    """The CA's key, certificate, issued certificates and revocations (replicas only)."""
    return jsonify({"files": ca_material(authority().directory)})


def last_backup() -> dict | None:
    m = current_app.extensions.get(MAINTENANCE_EXTENSION)
    repo = getattr(getattr(m, "opts", None), "backup_to", None)
    if not repo:
        return None
    try:
        docs = bk.manifests(repo)
    except (OSError, ValueError):
        return {"repository": repo, "id": None, "time": None, "age_seconds": None}
    if not docs:
        return {"repository": repo, "id": None, "time": None, "age_seconds": None}
    doc = docs[-1]
    at = bk.parse_time(doc["time"]).timestamp()
    return {"repository": repo, "id": doc.get("id"), "time": doc["time"],
            "tid": doc.get("tid"), "age_seconds": max(0.0, time.time() - at)}


@blueprint.get("/replication/status")
def status():
    doc = runtime().replication.status()
    doc["last_backup"] = last_backup()
    return jsonify(doc)


@blueprint.post("/replication/promotion")
def promote():
    """This replica becomes the primary: it stops following, records a new epoch (one
    more than the largest it holds) and takes writes; the old primary, once it sees the
    larger epoch, refuses them (fenced)."""
    Promotion.from_json(json_body())
    rt = runtime()
    repl = rt.replication
    role = repl.role()
    if role.fenced_epoch is not None:
        repl.check_writable()                      # raises Fenced
    if role.role == rep.PRIMARY:
        raise Conflict(f"this master is the primary already (epoch {repl.view().epoch})",
                       [{"field": "role", "problem": "is primary"}])
    follower = repl.follower
    if follower is not None:
        follower.stop()
        repl.follower = None
    name = role.name or settings().here
    view = svc.promote(rt, name, time.time())
    repl.roles.set(LocalRole(rep.PRIMARY, name=name))
    repl.forget_view()
    repl.start_watcher()
    if settings().forwarder and rt.forwarder is None:
        rt.start_forwarder()
    return jsonify({"role": rep.PRIMARY, "name": name, "epoch": view.epoch,
                    "previous_primary": role.primary_url})
