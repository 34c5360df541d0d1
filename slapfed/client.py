"""HTTP client of the master's /api/v1: used by the CLI, the node agent and benchmarks.

Depends on core (errors, fields, outbound, replication, answer_check: the answer models
as data, no pydantic) and slapfed.transport (its own HTTP/1.1: kept-alive connections, no
requests). Every method returns decoded JSON, checked against the answer's model
(core.answers, the schemas of the master's OpenAPI document, applied by
core.answer_check as pydantic would; an answer that does not match raises InvalidInput
naming the field), or raises a typed
SlapfedError rebuilt from the master's canonical error body; MasterUnreachable when no
answer came at all. Over HTTPS the master is verified against the CA certificate given
(``ca``; none given: certifi's bundle, as requests would) and the client proves itself
with ``cert``/``key``; no environment variable (REQUESTS_CA_BUNDLE, proxies) changes that.

A master refuses a certificate it does not trust (another CA's, an expired one) at the TLS
handshake, before any HTTP: the client reads why from the TLS alert the master sent and
raises the same typed 401 error the master's application would (``foreign_certificate``,
``certificate_expired``, ...), not MasterUnreachable. With TLS 1.3 that alert arrives
after the handshake, on the first read; a request whose body was still being sent may
see the connection closed instead, and then asks ``/health`` once to learn the verdict.
"""
from __future__ import annotations

import errno
import json
import logging
import socket
import ssl
import time
from urllib.parse import quote, urlsplit

from .ca import errors as ca_errors
from .core import replication as rep
from .core.errors import (Fenced, InvalidInput, MasterUnreachable, NoMasterGiven, ReadOnly,
                          SlapfedError, Timeout, Unauthenticated)
from .core.fields import software_hash
from .core.outbound import ANY, OutboundPolicy
from .transport import TRANSPORT_ERRORS, Transport, UnusableTLSFiles


class _Answers:
    """The answer models of core.answers by name (``A.Instance`` is "Instance"), checked
    by core.answer_check: the models as data, without importing pydantic (a model that
    is not data is checked by pydantic, imported then). Imported at the first check (a
    node's cycle with nothing to do reads no answer: the master says 304)."""

    @staticmethod
    def check(name: str, data, what: str = "answer"):
        from .core import answer_check
        return answer_check.check(name, data, what)

    def __getattr__(self, name):
        return name


A = _Answers()

API = "/api/v1"
log = logging.getLogger("slapfed.client")
# Seconds to open a connection (TCP and TLS handshakes): a master that accepts
# connections but does not answer (hung, stopped) is given up on this fast.
CONNECT_TIMEOUT = 5.0
JSON_HEADERS = {"Content-Type": "application/json"}

# The TLS alert a master sends about the client's certificate (OpenSSL's reason names:
# stable identifiers, not messages) -> the error it stands for, and what to say.
TLS_REFUSALS = {
    "TLSV1_ALERT_UNKNOWN_CA": (
        ca_errors.ForeignCertificate,
        "unknown CA (it was not issued by the master's certificate authority)"),
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": (ca_errors.CertificateExpired, "certificate expired"),
    "SSLV3_ALERT_CERTIFICATE_REVOKED": (ca_errors.CertificateRevoked, "certificate revoked"),
    "SSLV3_ALERT_BAD_CERTIFICATE": (
        ca_errors.BadCertificate, "bad certificate (not valid yet, or malformed)"),
    "TLSV1_ALERT_DECRYPT_ERROR": (
        ca_errors.InvalidCertificateSignature, "its signature does not verify"),
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": (Unauthenticated, "unsupported certificate"),
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": (Unauthenticated, "certificate unknown"),
    "TLSV1_ALERT_ACCESS_DENIED": (Unauthenticated, "access denied"),
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": (Unauthenticated, "a certificate is required"),
}
# What a write sees when the master closed the connection on a refused certificate
# before the alert could be read: worth asking again, without a body, to learn why.
_CUT_OFF = (ssl.SSLError, ConnectionResetError, BrokenPipeError)


def _causes(exc: BaseException):
    """``exc`` and every exception it wraps (as causes, contexts, ``reason`` attributes
    and arguments)."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(x for x in (e.__cause__, e.__context__, getattr(e, "reason", None),
                                *getattr(e, "args", ()))
                    if isinstance(x, BaseException))


def tls_refusal(exc: BaseException):
    """(error class, reason) when ``exc`` carries a TLS alert refusing our certificate."""
    for e in _causes(exc):
        if isinstance(e, ssl.SSLError) and e.reason in TLS_REFUSALS:
            return TLS_REFUSALS[e.reason]
    return None


# -- the outbound policy (core.outbound), applied where a connection is opened ------------
def resolve(host: str, port: int) -> list[tuple]:
    """(family, type, proto, sockaddr) of each address ``host`` resolves to for a TCP
    connection to ``port``; empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        return []
    return [(af, kind, proto, sa) for af, kind, proto, _, sa in infos]


def check_outbound(policy: OutboundPolicy, url: str, field: str = "url") -> None:
    """Refuse ``url`` (OutboundRefused naming ``field``) unless its host resolves to an
    address ``policy`` allows; InvalidInput when it has no host or a bad port. Resolves
    only when the policy restricts anything; connects to nothing."""
    if not policy.restricted:
        return
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise InvalidInput(f"{field} {url!r} is not a URL: {exc}",
                           [{"field": field, "problem": f"is not a URL: {exc}"}]) from None
    if not host:
        raise InvalidInput(f"{field} {url!r} names no host",
                           [{"field": field, "problem": "names no host"}])
    port = port or (443 if parts.scheme == "https" else 80)
    refusal = policy.refusal(field, host, [sa[0] for *_, sa in resolve(host, port)])
    if refusal is not None:
        raise refusal


def _open_allowed(policy: OutboundPolicy, host: str, port: int, timeout, source_address,
                  socket_options) -> socket.socket:
    """A TCP connection to the first address of ``host`` that ``policy`` allows: the
    addresses checked are the ones connected to (a name resolving elsewhere by the time
    of the connection cannot slip through). OutboundRefused before any connection when
    none is allowed."""
    infos = resolve(host, port)
    allowed = [i for i in infos if policy.allows(i[3][0])]
    if not allowed:
        raise policy.refusal("url", host, [sa[0] for *_, sa in infos])
    err = None
    for af, kind, proto, sa in allowed:
        sock = None
        try:
            sock = socket.socket(af, kind, proto)
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is None or isinstance(timeout, (int, float)):
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sa)
            return sock
        except OSError as exc:
            err = exc
            if sock is not None:
                sock.close()
    raise err


def _outbound_opener(policy: OutboundPolicy):
    """The transport's socket opener connecting only where ``policy`` allows."""
    def open_socket(host: str, port: int, timeout) -> socket.socket:
        return _open_allowed(policy, host, port, timeout, None, None)
    return open_socket


def _cut_off(exc: BaseException) -> bool:
    return any(isinstance(e, _CUT_OFF) or getattr(e, "errno", None) in (errno.ECONNRESET,
                                                                       errno.EPIPE)
               for e in _causes(exc))


class MasterClient:
    """``timeout``: seconds to wait for each read of an answer once connected;
    ``connect_timeout`` (default CONNECT_TIMEOUT, at most ``timeout``): seconds to open
    the connection, TLS handshake included. A call over either raises
    MasterUnreachable. ``outbound`` (core.outbound.OutboundPolicy): connect only to the
    addresses it allows (a master calling a peer); any other raises OutboundRefused
    before a connection is opened."""

    def __init__(self, url: str, timeout: float = 30.0, requester: str | None = None,
                 ca: str | None = None, cert: str | None = None, key: str | None = None,
                 connect_timeout: float | None = None, outbound: OutboundPolicy = ANY):
        if not url:
            raise NoMasterGiven("no master URL given (use --master, SLAPFED_MASTER "
                                    "or the client config file)")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        # With a certificate the master decides who we are; the requester name is only
        # sent to a master in development mode (no certificate).
        self.requester = None if cert else requester
        self.verify = ca if ca else True
        self.cert = (cert, key) if cert and key else (cert or None)
        self._principal = None
        self.outbound = outbound
        # Kept-alive connections to the master (``session.close()`` closes them).
        self.session = Transport(_outbound_opener(outbound) if outbound.restricted else None)
        # Failover (enable_failover): the masters of the current epoch and the highest
        # epoch seen, learned from every answer's Slapfed-Epoch / Slapfed-Masters headers.
        self.failover = False
        self.configured_url = self.url
        self.highest_epoch = 0
        self.masters: tuple[str, ...] = ()
        self.on_learn = None        # called with (url, epoch, masters) when they change

    # -- failover ---------------------------------------------------------------
    def enable_failover(self, highest_epoch: int = 0, masters=(), url: str | None = None,
                        on_learn=None) -> "MasterClient":
        """Follow the primary across promotions: when the master stops answering (or
        answers that it is a replica, fenced, or at an epoch older than one seen), try
        the masters learned from its answers, and follow the first that is a primary at
        an epoch at least ``highest_epoch``. ``url``: where to start (e.g. the master a
        node followed last); ``on_learn(url, epoch, masters)`` is told of changes."""
        self.failover = True
        self.highest_epoch = max(self.highest_epoch, int(highest_epoch or 0))
        self.masters = tuple(masters or ())
        if url:
            self.url = url.rstrip("/")
        self.on_learn = on_learn
        return self

    def failover_state(self) -> dict:
        return {"url": self.url, "epoch": self.highest_epoch, "masters": list(self.masters)}

    def _learn(self, resp) -> None:
        """Record the epoch and masters an answer carries; Fenced when this master
        answers at an epoch older than one seen (it was demoted: never follow it)."""
        epoch = rep.parse_epoch(resp.headers.get(rep.EPOCH_HEADER))
        if epoch is None:
            return
        if epoch < self.highest_epoch:
            raise Fenced(f"the master at {self.url} answers at epoch {epoch}, older than "
                         f"epoch {self.highest_epoch} seen already: it was demoted",
                         [{"field": "epoch", "problem": f"{epoch} < {self.highest_epoch}"}])
        masters = rep.parse_masters(resp.headers.get(rep.MASTERS_HEADER))
        changed = epoch > self.highest_epoch or (masters and masters != self.masters)
        self.highest_epoch = epoch
        if masters:
            self.masters = masters
        if changed and self.on_learn is not None:
            self.on_learn(self.url, self.highest_epoch, self.masters)

    def fail_over(self) -> bool:
        """Find a master to follow (see enable_failover); True when one was found (it may
        be the current one, back and still the primary)."""
        for url in rep.candidates(self.url, self.configured_url, self.masters):
            try:
                resp = self.session.get(url + API + "/health", timeout=(1.0, 2.0),
                                        verify=self.verify, cert=self.cert)
                health = resp.json() if resp.status_code == 200 else None
            except (*TRANSPORT_ERRORS, ValueError, UnusableTLSFiles):
                continue
            if rep.acceptable(health, self.highest_epoch):
                if url != self.url:
                    log.warning(
                        "following the primary at %s (epoch %s) instead of %s", url,
                        health.get("epoch", 1), self.url)
                    self.url = url
                    self.highest_epoch = max(self.highest_epoch, health.get("epoch", 1))
                    if self.on_learn is not None:
                        self.on_learn(self.url, self.highest_epoch, self.masters)
                return True
        return False

    # -- plumbing ---------------------------------------------------------------
    def timeouts(self) -> tuple[float, float]:
        """(connect, read) seconds of every call."""
        connect = CONNECT_TIMEOUT if self.connect_timeout is None else self.connect_timeout
        return min(connect, self.timeout), self.timeout

    def _call(self, method: str, path: str, json_body=None, params=None, headers=None,
              expect_304=False):
        try:
            return self._call_once(method, path, json_body, params, headers, expect_304)
        except (MasterUnreachable, ReadOnly, Fenced):
            if not self.failover or not self.fail_over():
                raise
            return self._call_once(method, path, json_body, params, headers, expect_304)

    def _call_once(self, method: str, path: str, json_body=None, params=None, headers=None,
                   expect_304=False):
        url = self.url + API + path
        body = None
        if json_body is not None:
            headers = {**JSON_HEADERS, **(headers or {})}
            try:
                body = json.dumps(json_body, allow_nan=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"the body of {method} {path} cannot be sent as JSON: "
                                   f"{exc}", [{"field": "body", "problem": str(exc)}]) from None
        try:
            resp = self.session.request(method, url, body=body, params=params,
                                        headers=headers, timeout=self.timeouts(),
                                        verify=self.verify, cert=self.cert)
        except TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, probe=json_body is not None) from None
        except UnusableTLSFiles as exc:
            raise InvalidInput(f"cannot use the TLS file {exc.path} to reach the master at "
                               f"{self.url}: {exc.reason}",
                               [{"field": exc.field, "problem": str(exc)}]) from None
        except ValueError as exc:     # not an http(s) URL
            raise InvalidInput(f"master URL {self.url!r}: {exc}",
                               [{"field": "master", "problem": str(exc)}]) from None
        if self.failover:
            self._learn(resp)
        if expect_304 and resp.status_code == 304:
            return resp
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"error": {"code": "error",
                                  "message": f"master answered HTTP {resp.status_code}: "
                                             f"{resp.text[:200]}"}}
            raise SlapfedError.from_json(resp.status_code, body)
        return resp

    def _unreachable(self, exc: Exception, probe: bool) -> SlapfedError:
        """The error for a request that got no HTTP answer: the master's refusal of our
        certificate when its TLS layer said so, else MasterUnreachable."""
        refusal = tls_refusal(exc)
        if refusal is None and probe and self.cert is not None and _cut_off(exc):
            try:        # a write cut off before the alert was read: ask without a body
                self.session.get(self.url + API + "/health", timeout=self.timeouts(),
                                 verify=self.verify, cert=self.cert).close()
            except TRANSPORT_ERRORS as again:
                refusal = tls_refusal(again)
        if refusal is not None:
            klass, reason = refusal
            cert = self.cert[0] if isinstance(self.cert, tuple) else self.cert
            return klass(f"the master at {self.url} does not trust this certificate: "
                         f"{reason}", [{"field": "certificate",
                                        "problem": f"{cert}: {reason}"}])
        return MasterUnreachable(f"cannot reach the master at {self.url}: {exc}")

    def _json(self, *args, answer=None, **kw):
        resp = self._call(*args, **kw)
        data = resp.json() if resp.content else None
        if answer is not None:
            A.check(answer, data, f"answer to {args[0]} {args[1]}")
        return data

    # -- general ----------------------------------------------------------------
    def health(self) -> dict:
        return self._json("GET", "/health", answer=A.Health)

    def openapi(self) -> dict:
        return self._json("GET", "/openapi.json")

    # -- identity ---------------------------------------------------------------
    def whoami(self) -> dict:
        return self._json("GET", "/whoami", answer=A.WhoAmI)

    def principal(self) -> str | None:
        """Who this client is to the master (``person/alice``); None without a certificate."""
        if self.cert is None:
            return None
        if self._principal is None:
            self._principal = self.whoami()["principal"]
        return self._principal

    def redeem_token(self, token: str, csr_pem: str) -> dict:
        """A node's computer certificate for its one-time token and CSR (public route)."""
        return self._json("POST", "/node-certificates", json_body={"token": token,
                                                                   "csr": csr_pem},
                          answer=A.IssuedCertificate)

    def certify_partition(self, computer_id: str, partition_id: str, csr_pem: str) -> dict:
        return self._json("POST", f"/computers/{quote(computer_id, safe='')}/partitions/"
                                  f"{quote(partition_id, safe='')}/certificate",
                          json_body={"csr": csr_pem}, answer=A.IssuedCertificate)

    def create_token(self, computer_id: str, ttl: int | None = None) -> dict:
        body = {"computer": computer_id}
        if ttl:
            body["ttl"] = ttl
        return self._json("POST", "/tokens", json_body=body, answer=A.Token)

    # -- instances (the requester's side) --------------------------------------
    def request(self, reference: str, software_url: str, software_type: str = "default",
                parameters: dict | None = None, sla: dict | None = None, state: str = "started",
                shared: bool = False, parent: str | None = None,
                open_to=None) -> dict:
        """``open_to``: who else may attach shared instances to this one (principals,
        or ``["*"]`` for everyone); None or empty: its owner only."""
        body = {"reference": reference, "software_url": software_url,
                "software_type": software_type, "parameters": parameters or {},
                "sla": sla or {}, "state": state, "shared": shared}
        if self.requester:
            body["requester"] = self.requester
        if parent:
            body["parent"] = parent
        if open_to:
            body["open_to"] = list(open_to)
        return self._json("POST", "/instances", json_body=body, answer=A.Instance)

    def list_instances(self, include_destroyed: bool = False, **filters) -> list[dict]:
        """Every instance matching ``filters`` (requester, reference, state, status), all
        pages walked; destroyed ones only with ``include_destroyed`` (or a state)."""
        params = {k: v for k, v in filters.items() if v is not None}
        if include_destroyed:
            params["all"] = "1"
        return [i for page in self.walk("/instances", params, A.InstanceList)
                for i in page["instances"]]

    def show(self, instance_id: str) -> dict:
        return self._json("GET", f"/instances/{quote(instance_id, safe='')}",
                          answer=A.Instance)

    def find(self, reference: str) -> dict:
        """The instance this client's requester holds under ``reference``."""
        params = {"reference": reference}
        requester = self.requester or self.principal()
        if requester:
            params["requester"] = requester
        params["all"] = "1"             # a destroyed one may be started again
        found = self._json("GET", "/instances", params=params, answer=A.InstanceList)["instances"]
        if not found:
            from .core.errors import NotFound
            who = f" for requester {requester!r}" if requester else ""
            raise NotFound(f"no instance with reference {reference!r}{who}")
        return found[0]

    def change_state(self, instance_id: str, state: str) -> dict:
        return self._json("PUT", f"/instances/{quote(instance_id, safe='')}/state",
                          json_body={"state": state}, answer=A.Instance)

    def register_child_master(self, instance_id: str, name: str, url: str,
                              ca_certificate: str, pairing_token: str | None = None) -> dict:
        """The partition hosting ``instance_id`` registers the master it runs (with a
        one-time token of that master for this one, the parent pairs with it as a peer)."""
        body = {"name": name, "url": url, "ca_certificate": ca_certificate}
        if pairing_token:
            body["pairing_token"] = pairing_token
        return self._json("PUT", f"/instances/{instance_id}/child-master", json_body=body,
                          answer=A.Instance)

    def destroy(self, instance_id: str) -> dict:
        return self._json("DELETE", f"/instances/{quote(instance_id, safe='')}",
                          answer=A.Instance)

    def wait_ready(self, instance_id: str, timeout: float, interval: float = 0.2,
                   on_poll=None, reported_after: float | None = None) -> dict:
        """Poll until the instance reports its requested state for its current revision;
        ``on_poll(instance)`` sees every answer (progress). With ``reported_after`` (a
        UNIX time, e.g. when its node was restarted), only a report made after it counts.

        Raises Timeout, or returns the instance (check ``status.state`` for failed)."""
        deadline = time.monotonic() + timeout
        while True:
            inst = self.show(instance_id)
            if on_poll is not None:
                on_poll(inst)
            status = inst["status"]
            if status["revision"] == inst["revision"] and status["state"] in (
                    inst["requested_state"], "failed") and (
                    reported_after is None or _after(status.get("reported_at"), reported_after)):
                return inst
            if time.monotonic() >= deadline:
                raise Timeout(f"instance {inst['reference']!r} is {status['state']} after "
                              f"{timeout:g}s (wanted {inst['requested_state']})")
            time.sleep(interval)

    # -- computers (administration and nodes) ----------------------------------
    def register_computer(self, registration: dict) -> dict:
        return self._json("POST", "/computers", json_body=registration, answer=A.Computer)

    def list_computers(self) -> list[dict]:
        """Every computer the caller may read, all pages walked."""
        return [c for page in self.walk("/computers", {}, A.ComputerList)
                for c in page["computers"]]

    def show_computer(self, computer_id: str) -> dict:
        return self._json("GET", f"/computers/{quote(computer_id, safe='')}",
                          answer=A.Computer)

    def set_computer(self, computer_id: str, changes: dict) -> dict:
        """Admins: change a computer's facts (locality, labels, capabilities)."""
        return self._json("PATCH", f"/computers/{quote(computer_id, safe='')}",
                          json_body=changes, answer=A.Computer)

    def supply(self, computer_id: str, url: str, state: str = "available") -> dict:
        return self._json("POST", f"/computers/{quote(computer_id, safe='')}/software",
                          json_body={"url": url, "state": state}, answer=A.Software)

    def unsupply(self, computer_id: str, url: str) -> dict:
        return self._json("DELETE", f"/computers/{quote(computer_id, safe='')}/software/"
                                    f"{software_hash(url)}", answer=A.Software)

    def desired_state(self, computer_id: str, etag: str | None = None):
        """Returns (etag, document) or (etag, None) when nothing changed since ``etag``."""
        # a large document comes gzip-compressed (the transport decodes it, bounded)
        headers = {"Accept-Encoding": "gzip"}
        if etag:
            headers["If-None-Match"] = etag
        resp = self._call("GET", f"/computers/{quote(computer_id, safe='')}/desired-state",
                          headers=headers, expect_304=True)
        if resp.status_code == 304:
            return etag, None
        return resp.headers.get("ETag"), A.check(A.DesiredState, resp.json(),
                                                 "desired state")

    def report_software(self, computer_id: str, url: str, status: str, log_tail: str = "",
                        software_types=()) -> dict:
        return self._json(
            "PUT", f"/computers/{quote(computer_id, safe='')}/software/{software_hash(url)}/status",
            json_body={"status": status, "log_tail": log_tail,
                       "software_types": list(software_types)}, answer=A.Software)

    def report_partition(self, computer_id: str, partition_id: str, report: dict) -> dict:
        return self._json(
            "PUT", f"/computers/{quote(computer_id, safe='')}/partitions/"
                   f"{quote(partition_id, safe='')}/status", json_body=report,
            answer=A.Instance)

    def report_moved(self, computer_id: str, partition_id: str, report: dict) -> dict:
        """A node: a partition whose instance moved away is quarantined, or erased."""
        return self._json(
            "PUT", f"/computers/{quote(computer_id, safe='')}/partitions/"
                   f"{quote(partition_id, safe='')}/moved", json_body=report,
            answer=A.Partition)

    def declare_lost(self, computer_id: str, reason: str = "", dry_run: bool = False) -> dict:
        """Admins: the computer is lost; what it hosts is placed again elsewhere."""
        body: dict = {"dry_run": dry_run}
        if reason:
            body["reason"] = reason
        return self._json("POST", f"/computers/{quote(computer_id, safe='')}/lost",
                          json_body=body, answer=A.LostAnswer)

    def wipe_computer(self, computer_id: str, partition_id: str | None = None) -> dict:
        """Admins: let the node erase the data kept of instances that moved away."""
        body = {} if partition_id is None else {"partition": partition_id}
        return self._json("POST", f"/computers/{quote(computer_id, safe='')}/wipe",
                          json_body=body, answer=A.Computer)

    # -- topology -----------------------------------------------------------------
    def topology(self) -> dict:
        """The master's topology files and live state (GET /topology), all pages walked:
        the computers, instances and child masters of every page, the rest (files,
        peers, replicas, role, epoch) as the first page says."""
        view = None
        for page in self.walk("/topology", {}, A.TopologyView):
            if view is None:
                view = page
                continue
            for key in ("computers", "instances", "masters"):
                view["live"][key].extend(page["live"][key])
        view["next"] = None
        return view

    # -- paging (core.paging): every list route answers one page and a cursor ------------
    PAGE_SIZE = 500

    def walk(self, path: str, params: dict, answer, limit: int | None = None):
        """The pages of list ``path`` (one answer each), following ``next`` to the end.
        Raises InvalidInput when a master hands back a cursor it already gave (a walk
        that would never end)."""
        params = dict(params, limit=str(limit or self.PAGE_SIZE))
        seen = set()
        while True:
            page = self._json("GET", path, params=params, answer=answer)
            yield page
            cursor = page.get("next")
            if cursor is None:
                return
            if cursor in seen:
                raise InvalidInput(f"{path}: the master gave cursor {cursor[:40]!r} twice")
            seen.add(cursor)
            params["cursor"] = cursor

    # -- placement (explain without writing) -----------------------------------
    def explain(self, reference: str, software_url: str, software_type: str = "default",
                parameters: dict | None = None, sla: dict | list | None = None,
                state: str = "started", shared: bool = False,
                parent: str | None = None) -> dict:
        """The decision ``request`` with the same arguments would make, and why
        (POST /placements); the master writes nothing."""
        body = {"reference": reference, "software_url": software_url,
                "software_type": software_type, "parameters": parameters or {},
                "sla": sla if sla is not None else {}, "state": state, "shared": shared}
        if self.requester:
            body["requester"] = self.requester
        if parent:
            body["parent"] = parent
        return self._json("POST", "/placements", json_body=body, answer=A.PlacementDecision)

    # -- federation ---------------------------------------------------------------
    def create_master_token(self, master_name: str, ttl: int | None = None) -> dict:
        """A one-time token with which master ``master_name`` gets an identity here (the
        first half of peering: give it, with this master's URL and CA, to that master)."""
        body = {"master": master_name}
        if ttl:
            body["ttl"] = ttl
        return self._json("POST", "/tokens", json_body=body, answer=A.Token)

    def forward(self, body: dict) -> dict:
        """POST /instances with a whole request body (a delegating master's call)."""
        return self._json("POST", "/instances", json_body=body, answer=A.Instance)

    def changes(self, since: str | None = None, wait: float = 0.0) -> dict:
        """The instances this master requested here that changed after cursor ``since``
        (GET /federation/changes), waiting up to ``wait`` seconds for one."""
        params = {"wait": f"{wait:g}"}
        if since:
            params["since"] = since
        return self._json("GET", "/federation/changes", params=params, answer=A.Changes)

    def summary(self) -> dict:
        return self._json("GET", "/federation/summary", answer=A.FederationSummary)

    def list_peers(self) -> list[dict]:
        return self._json("GET", "/peers", answer=A.PeerList)["peers"]

    def show_peer(self, name: str) -> dict:
        return self._json("GET", f"/peers/{quote(name, safe='')}", answer=A.Peer)

    def add_peer(self, body: dict) -> dict:
        return self._json("POST", "/peers", json_body=body, answer=A.Peer)

    def update_peer(self, name: str, changes: dict) -> dict:
        return self._json("PATCH", f"/peers/{quote(name, safe='')}", json_body=changes,
                          answer=A.Peer)

    def remove_peer(self, name: str) -> dict:
        return self._json("DELETE", f"/peers/{quote(name, safe='')}", answer=A.Peer)

    def declare_peer_lost(self, name: str, reason: str = "", dry_run: bool = False) -> dict:
        """Admins: the peer is lost; what it served for us goes elsewhere."""
        body: dict = {"dry_run": dry_run}
        if reason:
            body["reason"] = reason
        return self._json("POST", f"/peers/{quote(name, safe='')}/lost", json_body=body,
                          answer=A.PeerLostAnswer)

    def policy(self) -> dict:
        return self._json("GET", "/federation/policy", answer=A.DelegationPolicy)

    # -- replication -------------------------------------------------------------
    def invite_replica(self, name: str, ttl: int | None = None) -> dict:
        """Admins: a one-time token with which replica ``name`` enrols here."""
        body = {"name": name}
        if ttl:
            body["ttl"] = ttl
        return self._json("POST", "/replication/invitations", json_body=body,
                          answer=A.ReplicaToken)

    def register_replica(self, name: str, url: str | None, mode: str) -> dict:
        return self._json("PUT", f"/replication/replicas/{quote(name, safe='')}",
                          json_body={"url": url, "mode": mode}, answer=A.Replica)

    def replication_transactions(self, after: str, wait: float = 0.0) -> dict:
        """The transactions committed after TID ``after`` (16 hex digits), waiting up to
        ``wait`` seconds for one; asking also confirms ``after`` is held durably."""
        return self._json("GET", "/replication/transactions",
                          params={"after": after, "wait": f"{wait:g}"},
                          answer=A.Transactions)

    def replication_ca(self) -> dict:
        return self._json("GET", "/replication/ca", answer=A.CAMaterial)

    def replication_status(self) -> dict:
        return self._json("GET", "/replication/status", answer=A.ReplicationStatus)

    def promote(self) -> dict:
        """Admins: make this master (a replica) the primary at a new epoch."""
        return self._json("POST", "/replication/promotion", json_body={},
                          answer=A.Promoted)

    def set_policy(self, doc: dict) -> dict:
        return self._json("PUT", "/federation/policy", json_body=doc,
                          answer=A.DelegationPolicy)

    # -- accounting -------------------------------------------------------------------
    def report_usage(self, computer_id: str, report: dict) -> dict:
        """A node: one usage report ({"accepted", "duplicate"}: the same report id again
        is a duplicate, acknowledged and not counted twice)."""
        return self._json("POST", f"/computers/{quote(computer_id, safe='')}/usage",
                          json_body=report, answer=A.UsageAck)

    def statement(self, period: str, owner: str | None = None, peer: str | None = None,
                  group: str | None = None) -> dict:
        params = {"period": period, **{k: v for k, v in (("owner", owner), ("peer", peer),
                                                         ("group", group)) if v}}
        return self._json("GET", "/statements", params=params, answer=A.Statement)

    def instance_usage(self, instance_id: str, since: str | None = None,
                       until: str | None = None) -> dict:
        params = {k: v for k, v in (("since", since), ("until", until)) if v}
        return self._json("GET", f"/instances/{quote(instance_id, safe='')}/usage",
                          params=params, answer=A.InstanceUsage)

    def prices(self) -> dict:
        return self._json("GET", "/accounting/prices", answer=A.PriceListAnswer)

    def set_prices(self, doc: dict) -> dict:
        return self._json("PUT", "/accounting/prices", json_body=doc,
                          answer=A.PriceListAnswer)

    # -- usage across delegation -------------------------------------------------------
    def usage_feed(self, since: int = 0, limit: int | None = None) -> dict:
        """A peer master: the usage of the instances it requested here, after cursor
        ``since`` (GET /federation/usage)."""
        params = {"since": str(int(since))}
        if limit:
            params["limit"] = str(int(limit))
        return self._json("GET", "/federation/usage", params=params, answer=A.UsageFeed)


def _after(iso_time: str | None, when: float) -> bool:
    """Is the master's ISO 8601 time ``iso_time`` (…Z) at or after UNIX time ``when``?"""
    if not iso_time:
        return False
    from datetime import datetime
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp() >= when
