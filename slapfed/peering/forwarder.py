"""The forwarder: works through the forward table, calling peer masters.

Depends on services (federation use cases), peering.peers (credentials, pairing) and
core.errors. One forwarder runs per data directory (a file lock elects it among gunicorn
workers). Its threads:

- the pusher: requests every due forward at its peer (a small pool; one call per
  instance at a time) and records the answer — accepted, or a failure with back-off;
- one watcher per paired peer: a long poll of the peer's ``/federation/changes``
  applying status and connection parameters as soon as the peer commits them; when
  the peer stops answering, its instances show ``unknown`` and the poll retries with
  back-off, then reads everything again (so nothing changed meanwhile is missed);
- while a long poll waits, the peer is probed (``/health``, every PROBE_INTERVAL
  seconds, PROBE_TIMEOUT to answer): a peer that accepts connections but answers
  nothing (hung, stopped) is down, and its instances ``unknown``, within
  PROBE_INTERVAL + PROBE_TIMEOUT seconds, not at the end of the long poll;
- every ``summary_interval`` the peers' summaries are read again, and child masters
  waiting to be paired are paired;
- one usage puller per paired peer: every ``peer_usage_interval`` seconds (and soon
  after the long poll reported a change) it pulls the peer's usage feed
  (``/federation/usage``) from the cursor recorded here, and records each answer with its
  cursor in one transaction (services.accounting.record_peer_usage); a failing peer is
  retried with the same back-off, never holding up the others.

Nothing here decides routing or destroys anything: a peer being unreachable only
delays.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ..core.errors import MasterUnreachable, SlapfedError
from ..locks import try_exclusive_lock
from ..logs import redact_url
from ..services import accounting
from ..services import federation as fed
from .peers import client_for, pair

log = logging.getLogger("slapfed.federation")

LOCK_FILE = "forwarder.lock"
IDLE_INTERVAL = 0.5            # the pusher looks at the table at least this often
SUMMARY_INTERVAL = 30.0
PUSH_WORKERS = 8
# Every call to a peer: seconds to connect (TCP and TLS), then to read each part of the
# answer; a long poll reads for its wait plus POLL_MARGIN.
CONNECT_TIMEOUT = 3.0
CALL_TIMEOUT = 10.0
POLL_MARGIN = 3.0
# A peer being long-polled is asked /health this often, answering within PROBE_TIMEOUT.
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0
USAGE_LIMIT = 500              # entries per pull of a peer's usage feed


def _reason(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text if len(text) <= 300 else text[:297] + "..."


def _transient(exc: Exception) -> bool:
    return isinstance(exc, MasterUnreachable) or (
        isinstance(exc, SlapfedError) and getattr(exc, "http_status", 500) >= 500)


class Forwarder:
    """The forwarder of a runtime (services.runtime.Runtime): its use cases run on the
    runtime's writer; its data directory and long-poll wait come from its settings."""

    def __init__(self, rt, summary_interval: float = SUMMARY_INTERVAL,
                 timeout: float = CALL_TIMEOUT):
        self.rt = rt
        self.data_dir = rt.settings.data_dir
        self.poll_wait = rt.settings.peer_poll_wait
        self.outbound = rt.settings.outbound
        self.summary_interval = summary_interval
        self.timeout = timeout
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watchers: dict[str, threading.Thread] = {}
        self._inflight: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(PUSH_WORKERS, thread_name_prefix="slapfed-push")
        self._peers: dict[str, tuple[str, str]] = {}     # name -> (url, credentials)
        self._summaries_at: dict[str, float] = {}
        self._pairings: dict[str, tuple[bool, float, int]] = {}   # name -> busy, due, failures
        self._polling: set[str] = set()        # peers with a long poll waiting now
        self._probes: dict[str, float] = {}    # peer -> when its last probe started
        self._probing: set[str] = set()
        self._hung: set[str] = set()           # peers a probe found not answering
        self._lock_fd = None
        self.usage_interval = getattr(rt.settings, "peer_usage_interval", 0.0)
        self._pullers: dict[str, threading.Thread] = {}
        self._usage_kicks: dict[str, threading.Event] = {}

    # -- life -------------------------------------------------------------------------
    def start(self) -> bool:
        """Start unless another process of this data directory runs the forwarder;
        returns whether this one runs it."""
        if self.data_dir:
            fd = try_exclusive_lock(os.path.join(self.data_dir, LOCK_FILE))
            if fd is None:
                return False
            self._lock_fd = fd
        t = threading.Thread(target=self._run, name="slapfed-forwarder", daemon=True)
        t.start()
        self._threads.append(t)
        return True

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the threads, waiting ``timeout`` seconds in all for them (a thread
        blocked on an unreachable storage is a daemon: it does not hold the process)."""
        self._stop.set()
        self._wake.set()
        for kick in list(self._usage_kicks.values()):
            kick.set()
        deadline = time.monotonic() + timeout
        for t in (list(self._threads) + list(self._watchers.values())
                  + list(self._pullers.values())):
            t.join(max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def kick(self) -> None:
        """Something was delegated or changed: look at the table now."""
        self._wake.set()

    # -- the pusher -------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            next_at = None
            try:
                self._refresh_peers()
                self._probe_polled()
                pushes, next_at = fed.due_pushes(self.rt)
                for push in pushes:
                    self._submit(push)
            except Exception:  # noqa: BLE001 - the forwarder must outlive any one failure
                log.exception("forwarder cycle failed")
            wait = IDLE_INTERVAL
            if next_at is not None:
                wait = max(0.0, min(wait, next_at - time.time()))
            self._wake.wait(wait)

    def _submit(self, push) -> None:
        with self._lock:
            if push.instance_id in self._inflight:
                return
            self._inflight.add(push.instance_id)
        try:
            self._pool.submit(self._push, push)
        except RuntimeError:          # shutting down
            with self._lock:
                self._inflight.discard(push.instance_id)

    def _push(self, push) -> None:
        try:
            peer = self._peers.get(push.peer)
            if peer is None:
                fed.record_failure(self.rt, push.instance_id, push.peer,
                                   f"{push.peer} is not a paired peer of this master", False)
                return
            if not push.contacted:
                fed.mark_contacted(self.rt, push.instance_id, push.peer)
            client = client_for(peer[1], peer[0], self.timeout, CONNECT_TIMEOUT, self.outbound)
            try:
                answer = client.forward(push.body)
            except SlapfedError as exc:
                fed.record_failure(self.rt, push.instance_id, push.peer, _reason(exc),
                                   _transient(exc))
                log.warning("forwarding instance %s to peer %s failed (%s): %s",
                            push.instance_id, push.peer,
                            "will retry" if _transient(exc) else "refused", _reason(exc),
                            extra={"instance": push.instance_id, "peer": push.peer,
                                   "error": exc.code})
                return
            fed.record_accepted(self.rt, push.instance_id, push.peer, push.revision, answer,
                                push.recipient)
            log.info("instance %s (revision %s) forwarded to peer %s: accepted",
                     push.instance_id, push.revision, push.peer,
                     extra={"instance": push.instance_id, "peer": push.peer})
        except Exception:  # noqa: BLE001
            log.exception("forwarding instance %s to %s failed", push.instance_id, push.peer)
        finally:
            with self._lock:
                self._inflight.discard(push.instance_id)
            self._wake.set()

    # -- peers: credentials, summaries, watchers ------------------------------------------
    def _refresh_peers(self) -> None:
        self._peers = fed.peer_credentials(self.rt)
        now = time.monotonic()
        for name, (url, creds) in self._peers.items():
            if name not in self._watchers or not self._watchers[name].is_alive():
                t = threading.Thread(target=self._watch, args=(name,),
                                     name=f"slapfed-watch-{name}", daemon=True)
                self._watchers[name] = t
                t.start()
            if self.usage_interval > 0 and (name not in self._pullers
                                            or not self._pullers[name].is_alive()):
                self._usage_kicks.setdefault(name, threading.Event())
                t = threading.Thread(target=self._pull_usage, args=(name,),
                                     name=f"slapfed-usage-{name}", daemon=True)
                self._pullers[name] = t
                t.start()
            if now - self._summaries_at.get(name, -1e9) >= self.summary_interval:
                self._summaries_at[name] = now
                self._pool.submit(self._read_summary, name, url, creds)
        if self.data_dir:
            for name, url, ca_pem, token in fed.pending_pairings(self.rt):
                with self._lock:
                    busy, due, failures = self._pairings.get(name, (False, 0.0, 0))
                    if busy or due > now:
                        continue
                    self._pairings[name] = (True, due, failures)
                self._pool.submit(self._pair, name, url, ca_pem, token)

    def _read_summary(self, name: str, url: str, creds: str) -> None:
        try:
            fed.store_summary(self.rt, name, client_for(creds, url, self.timeout,
                                                        CONNECT_TIMEOUT,
                                                        self.outbound).summary())
        except SlapfedError as exc:
            log.info("peer %s: summary not read: %s", name, _reason(exc))
        except Exception:  # noqa: BLE001
            log.exception("reading the summary of peer %s failed", name)

    def _pair(self, name: str, url: str, ca_pem: str, token: str) -> None:
        """Redeem a peer's pending token (a child master's, or an invitation a topology
        file names); retried with back-off while the peer does not answer yet."""
        ok = False
        try:
            p = pair(self.data_dir, name, url, ca_pem, token, self.timeout, self.outbound)
            ok = fed.complete_pairing(self.rt, name, token, p.credentials, p.principal,
                                      p.summary)
            if ok:
                log.info("paired with peer %s at %s as %s", name, redact_url(url),
                         p.principal, extra={"peer": name, "url": redact_url(url)})
        except SlapfedError as exc:
            fed.record_pairing_failure(self.rt, name, f"pairing failed: {_reason(exc)}")
            log.warning("pairing with peer %s at %s failed: %s", name, redact_url(url),
                        _reason(exc), extra={"peer": name, "url": redact_url(url),
                                             "error": exc.code})
        except Exception:  # noqa: BLE001
            log.exception("pairing with %s failed", name)
        finally:
            with self._lock:
                failures = 0 if ok else self._pairings.get(name, (0, 0, 0))[2] + 1
                delay = 0.0 if ok else fed.backoff(self.rt.settings, failures)
                self._pairings[name] = (False, time.monotonic() + delay, failures)
            self._wake.set()

    def _watch(self, name: str) -> None:
        since, failures = None, 0
        client, client_of = None, None
        try:
            while not self._stop.is_set():
                peer = self._peers.get(name)
                if peer is None:
                    return
                if client_of != peer:          # first poll, or new credentials / URL
                    if client is not None:
                        client.session.close()
                    client = client_for(peer[1], peer[0], self.poll_wait + POLL_MARGIN,
                                        CONNECT_TIMEOUT, self.outbound)
                    client_of = peer
                since, failures = self._poll(name, client, since, failures)
        finally:
            if client is not None:
                client.session.close()

    def _poll(self, name: str, client, since, failures: int) -> tuple:
        """One long poll of peer ``name``; returns the next (cursor, failures)."""
        wait = 0 if failures else self.poll_wait
        try:
            # after a failure, ask without waiting: the peer is back as soon as it
            # answers, even when nothing of ours changed there
            if wait:
                with self._lock:
                    self._polling.add(name)
            try:
                answer = client.changes(since, wait=wait)
            finally:
                with self._lock:
                    self._polling.discard(name)
        except SlapfedError as exc:
            with self._lock:
                self._hung.discard(name)
            # at every failure, not only the first: the pusher may have reached the
            # peer (and had an instance accepted) since the previous one
            try:
                fed.peer_unreachable(self.rt, name, _reason(exc))
            except Exception:  # noqa: BLE001
                log.exception("recording peer %s unreachable failed", name)
            # once per outage at WARNING; the retries that follow at DEBUG
            log.log(logging.DEBUG if failures else logging.WARNING,
                    "peer %s unreachable: %s", name, _reason(exc),
                    extra={"peer": name, "error": exc.code})
            failures += 1
            self._stop.wait(fed.backoff(self.rt.settings, failures))
            return None, failures            # read everything again once it answers
        except Exception:  # noqa: BLE001
            log.exception("watching peer %s failed", name)
            self._stop.wait(1.0)
            return since, failures
        with self._lock:
            hung = name in self._hung
            self._hung.discard(name)
        if hung and not failures:
            log.info("peer %s answers again", name, extra={"peer": name})
            try:
                fed.peer_back(self.rt, name)
            except Exception:  # noqa: BLE001
                log.exception("recording peer %s back failed", name)
            self._wake.set()
        if failures:
            log.info("peer %s answers again after %d failed call(s)", name, failures,
                     extra={"peer": name})
            failures = 0
            try:
                fed.peer_back(self.rt, name)
            except Exception:  # noqa: BLE001
                log.exception("recording peer %s back failed", name)
            self._wake.set()
        try:
            if answer.get("instances"):
                fed.apply_changes(self.rt, name, answer["instances"])
                self.kick_usage(name)
            elif since is None:
                fed.apply_changes(self.rt, name, [])      # records the contact
            if hung:
                return None, failures    # its instances were shown unknown: read them all
            return answer.get("cursor") or since, failures
        except Exception:  # noqa: BLE001
            log.exception("applying changes of peer %s failed", name)
            self._stop.wait(1.0)
            return since, failures

    # -- probes of the peers being long-polled ------------------------------------------
    def _probe_polled(self) -> None:
        """Ask every peer whose long poll is waiting whether it still answers."""
        now = time.monotonic()
        with self._lock:
            due = [n for n in self._polling if n not in self._probing
                   and now - self._probes.get(n, -1e9) >= PROBE_INTERVAL]
            for name in due:
                self._probing.add(name)
                self._probes[name] = now
        for name in due:
            try:
                self._pool.submit(self._probe, name)
            except RuntimeError:          # shutting down
                with self._lock:
                    self._probing.discard(name)

    def _probe(self, name: str) -> None:
        client = None
        try:
            peer = self._peers.get(name)
            if peer is None:
                return
            client = client_for(peer[1], peer[0], PROBE_TIMEOUT, PROBE_TIMEOUT, self.outbound)
            try:
                client.health()
                with self._lock:
                    hung = name in self._hung
                if hung:
                    self._recover(name, client)
            except SlapfedError as exc:
                if not _transient(exc):
                    return
                with self._lock:
                    first = name not in self._hung and name in self._polling
                    if first:
                        self._hung.add(name)
                if first:
                    reason = f"does not answer within {PROBE_TIMEOUT:g} s: {_reason(exc)}"
                    fed.peer_unreachable(self.rt, name, reason)
                    log.warning("peer %s unreachable: %s", name, reason,
                                extra={"peer": name, "error": exc.code})
        except Exception:  # noqa: BLE001
            log.exception("probing peer %s failed", name)
        finally:
            if client is not None:
                client.session.close()
            with self._lock:
                self._probing.discard(name)

    def _recover(self, name: str, client) -> None:
        """A peer a probe found hung answers again, while the watcher's long poll may
        still wait: read everything it holds of ours now (its instances were shown
        unknown), and call what waits on it."""
        client.timeout = self.timeout
        answer = client.changes(None, wait=0)
        with self._lock:
            if name not in self._hung:
                return                   # the watcher recovered first
            self._hung.discard(name)
        log.info("peer %s answers again", name, extra={"peer": name})
        fed.peer_back(self.rt, name)
        fed.apply_changes(self.rt, name, answer.get("instances") or [])
        self._wake.set()

    # -- usage flowing back: each peer's usage feed -------------------------------------
    def kick_usage(self, name: str) -> None:
        """Pull peer ``name``'s usage feed now (something of ours changed there)."""
        kick = self._usage_kicks.get(name)
        if kick is not None:
            kick.set()

    def _pull_usage(self, name: str) -> None:
        """Pull peer ``name``'s usage feed until stopped: at once while it says more
        follows, then every usage_interval seconds (or when kicked); after a failure,
        again after the back-off. The cursor is read from the ledger at every pull: an
        answer lost, or this process killed before it committed, is asked again."""
        kick = self._usage_kicks.setdefault(name, threading.Event())
        client, client_of, failures = None, None, 0
        try:
            while not self._stop.is_set():
                peer = self._peers.get(name)
                if peer is None:
                    return
                if client_of != peer:
                    if client is not None:
                        client.session.close()
                    client = client_for(peer[1], peer[0], self.timeout, CONNECT_TIMEOUT,
                                        self.outbound)
                    client_of = peer
                kick.clear()
                try:
                    again = self._pull_once(name, client)
                except SlapfedError as exc:
                    failures += 1
                    log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                            "peer %s: usage feed not read: %s", name, _reason(exc),
                            extra={"peer": name, "error": exc.code})
                    self._stop.wait(fed.backoff(self.rt.settings, failures))
                    continue
                except Exception:  # noqa: BLE001 - the puller must outlive any one failure
                    failures += 1
                    log.exception("pulling the usage feed of peer %s failed", name)
                    self._stop.wait(fed.backoff(self.rt.settings, failures))
                    continue
                if failures:
                    log.info("peer %s: usage feed read again after %d failed call(s)",
                             name, failures, extra={"peer": name})
                    failures = 0
                if again:
                    continue
                kick.wait(self.usage_interval)
        finally:
            if client is not None:
                client.session.close()

    def _pull_once(self, name: str, client) -> bool:
        """One pull and its record; whether to pull again at once."""
        cursor = accounting.peer_feed_cursor(self.rt, name)
        answer = client.usage_feed(cursor, USAGE_LIMIT)
        if not answer["entries"] and answer["last"] >= cursor:
            return False                              # nothing new: nothing written
        done = accounting.record_peer_usage(self.rt, name, answer)
        if done["recorded"] or done["skipped"]:
            log.log(logging.WARNING if done["skipped"] else logging.DEBUG,
                    "peer %s: %d usage entr%s recorded, %d skipped, cursor %d%s", name,
                    done["recorded"], "y" if done["recorded"] == 1 else "ies",
                    done["skipped"], done["cursor"],
                    f" ({done['problem']})" if done["problem"] else "",
                    extra={"peer": name, "recorded": done["recorded"],
                           "skipped": done["skipped"]})
        return bool(done["more"]) or answer["last"] < cursor
