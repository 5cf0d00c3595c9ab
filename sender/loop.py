"""The sender: finds eligible sessions, leases them, runs one worker thread per session.

    sender = Sender(config)                 # or Sender(config, gateway=..., clock=...)
    report = sender.run_once()              # `envios send --once`: one pass, then return
    sender.start(); ...; sender.stop()      # long-running, in a background thread
    sender.run_forever()                    # long-running in this thread, until request_stop()

A tick (every `sender.tick_s`) re-reads the schedules: for each session with
eligible work and no worker here, it takes the session's lease in
`envios_session_leases` (free or expired only: a session is worked by one
sender at a time) and starts a `SessionWorker`. Between ticks the main thread
renews the leases of its live workers every lease_ttl_s/3, so a long pacing
delay or a slow send never lets a lease lapse, while a killed sender's leases
expire after lease_ttl_s and its sessions are taken over by another sender.

`gateway.sessions` decides what a session is: `per_cliente`, one lane per
cliente_id; `single`, one lane (lease `outbox.SINGLE_SESSION_LEASE`) for every
client; `auto`, single when the gateway's GET /status names a session (the venom
build's "admin"), decided at the first answer and kept for the life of the process
(one lane while the gateway has not answered yet: never two sends at once on what
may be one WhatsApp session).
"""

from __future__ import annotations

import collections
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from envios.sender import delivery, outbox
from envios.sender.gateways import build_gateway
from envios.sender.gateways.base import Gateway, Outcome
from envios.sender.journal_recovery import journal_tick, open_journal
from envios.sender.killswitch import KillSwitch, static
from envios.sender.metrics import SenderMetrics
from envios.sender.pool import ConnectionPool
from envios.sender.session_worker import (
    Context,
    SessionWorker,
    Settings,
    WorkerResult,
    eligible_work,
    retrying,
)

from envios.clock import Clock
from envios.errors import DatabaseError, EnviosError
from envios.logfmt import kv
from envios.store import schema
from envios.store.connector import Database

log = logging.getLogger("envios.sender")


def make_sender_id() -> str:
    """host:pid:random — what claimed_by and the lease owner say (at most 64 characters)."""
    host = socket.gethostname().split(".")[0][:40] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(2)}"


@dataclass
class PassReport:
    """What one pass (or a whole run) did."""

    sessions_worked: dict[int, WorkerResult] = field(default_factory=dict)
    sessions_held_elsewhere: list[int] = field(default_factory=list)
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    disabled: bool = False
    gateway_stopped: str | None = None  # why nothing was sent through the gateway (404: no /send)
    # unknowns the gateway's record settled
    settled_by_evidence: list[int] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.outcomes[Outcome.SENT] + self.outcomes[Outcome.SENT_WITHOUT_ID]

    @property
    def unreachable_sessions(self) -> list[int]:
        return [
            cid
            for cid, r in self.sessions_worked.items()
            if r.session_state == "UNREACHABLE" or r.outcomes.get(Outcome.UNREACHABLE)
        ]

    def add(self, result: WorkerResult) -> None:
        self.sessions_worked[result.cliente_id] = result
        self.outcomes.update(result.outcomes)

    def summary(self) -> str:
        parts = [
            f"{o.value}={n}" for o, n in sorted(self.outcomes.items(), key=lambda x: x[0].value)
        ]
        return (
            f"sessions={len(self.sessions_worked)}"
            f" held_elsewhere={len(self.sessions_held_elsewhere)} "
            + (" ".join(parts) if parts else "sends=0")
        )


class Sender:
    def __init__(
        self,
        config,
        *,
        database: Database | None = None,
        gateway: Gateway | None = None,
        clock: Clock | None = None,
        sender_id: str | None = None,
        kill_switch: KillSwitch | Callable[[], bool] | None = None,
        metrics: SenderMetrics | None = None,
        rng: random.Random | None = None,
    ):
        self.config = config
        self.sender_id = (sender_id or make_sender_id())[:64]
        self.database = database or Database.for_sender(
            config.database.url, float(config.sender.lease_ttl_s)
        )
        self.clock = clock or Clock(config.tz)
        self.metrics = metrics or SenderMetrics()
        self._own_gateway = gateway is None
        self.gateway = gateway or build_gateway(config, client_id=self.sender_id)
        switch = kill_switch if kill_switch is not None else static(config)
        self._switch = switch
        self.stop_event = threading.Event()
        self.settings = Settings.from_config(config)
        self.tick_s = float(config.sender.tick_s)
        self.journal = open_journal(config, self.sender_id, self.database)  # None when off
        self.ctx = Context(
            database=self.database,
            gateway=self.gateway,
            clock=self.clock,
            settings=self.settings,
            sender_id=self.sender_id,
            metrics=self.metrics,
            kill_switch=self.enabled,
            stop=self.stop_event,
            pool=ConnectionPool(self.database),
            rng=rng or random.Random(),
            journal=self.journal,
        )
        self.workers: dict[int, SessionWorker] = {}
        self.sessions_mode = str(config.gateway.sessions)
        self._auto_single: bool | None = None  # auto: what GET /status said, once it answered
        self.report = PassReport()  # everything this sender did, all passes
        self._conn = None
        self._thread: threading.Thread | None = None
        self._was_enabled: bool | None = None

    # -- public ------------------------------------------------------------------------------

    def enabled(self) -> bool:
        switch = self._switch
        value = switch.enabled() if isinstance(switch, KillSwitch) else bool(switch())
        if value != self._was_enabled:
            self.metrics.set_enabled(value)
            self._was_enabled = value
        return value

    def check(self) -> None:
        """Connect and verify the schema; raises an EnviosError with one clear line."""
        conn = self._main_conn()
        done = schema.applied_versions(conn)
        if schema.missing_versions(schema.Process.SENDER, done):
            raise DatabaseError(
                f"{self.database.describe()}: schema not upgraded "
                f"(have {sorted(done) or 'none'}, need v{schema.LATEST}): run `envios db upgrade`"
            )

    def run_once(self) -> PassReport:
        """One pass: every eligible session worked until empty / quota used / stopped; then
        return."""
        report = PassReport()
        if not self.enabled():
            report.disabled = True
            log.warning(kv("pass_skipped", reason="kill switch off", sender=self.sender_id))
            return report
        started = self._tick(report)
        self._wait_for(started, report)
        report.gateway_stopped = self.ctx.gateway_stopped()
        self.settle_unknowns(report)
        log.info(kv("pass_done", sender=self.sender_id, detail=report.summary()))
        return report

    def run_forever(self) -> PassReport:
        """Tick every tick_s until request_stop(); then finish in-flight sends and release
        leases."""
        log.info(
            kv(
                "sender_start",
                sender=self.sender_id,
                gateway=self.gateway.base_url,
                database=self.database.describe(),
                tick_s=self.tick_s,
            )
        )
        next_tick = 0.0
        renew_every = max(0.2, self.settings.lease_ttl_s / 3)
        next_renew = time.monotonic() + renew_every
        while not self.stop_event.is_set():
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.tick_s
                try:
                    if self.enabled():
                        self.settle_unknowns(self.report)
                        self._tick(self.report)
                except EnviosError as exc:
                    log.error(kv("tick_failed", sender=self.sender_id, detail=str(exc)))
                    self._drop_main_conn()
            if now >= next_renew:
                next_renew = now + renew_every
                self._renew_leases()
            self._reap(self.report)
            self.stop_event.wait(max(0.01, min(next_tick, next_renew) - time.monotonic()))
        self._shutdown(self.report)
        log.info(kv("sender_stop", sender=self.sender_id, detail=self.report.summary()))
        return self.report

    def settle_unknowns(self, report: PassReport) -> None:
        """Unknown outcomes settled by evidence: acknowledgements received while the send was
        in flight, and the gateway's own record of the message (WAHA, Evolution lookups).
        Never a retry."""
        try:
            acked = delivery.settle_acknowledged(
                self._main_conn(), self.clock, delivery.in_flight_s(self.config)
            )
            report.settled_by_evidence.extend(acked)
            if type(self.gateway).find_sent is Gateway.find_sent:
                return
            found = delivery.settle_by_evidence(
                self._main_conn(),
                self.clock,
                self.gateway,
                within_s=float(self.config.sender.settle_within_s),
                in_flight_s=delivery.in_flight_s(self.config),
            )
        except EnviosError as exc:
            log.error(kv("settle_failed", sender=self.sender_id, detail=str(exc)))
            self._drop_main_conn()
            return
        report.settled_by_evidence.extend(found.settled)
        if found.settled or found.no_evidence or found.unavailable:
            log.info(kv("unknowns_checked", sender=self.sender_id, detail=found.summary()))

    def request_stop(self) -> None:
        """Stop claiming; in-flight sends finish (bounded by the send timeout)."""
        self.stop_event.set()

    def start(self) -> Sender:
        """run_forever in a background thread (the demo, tests)."""
        self._thread = threading.Thread(
            target=self.run_forever, name=f"sender-{self.sender_id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        self.request_stop()
        self._drop_main_conn()
        self.ctx.pool.close()
        if self.journal is not None:
            self.journal.close()
        if self._own_gateway:
            self.gateway.close()
        self.metrics.close()

    # -- internals -----------------------------------------------------------------------------

    def _main_conn(self):
        if self._conn is None:
            self._conn = self.database.connect()
        return self._conn

    def _drop_main_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _tick(self, report: PassReport) -> list[SessionWorker]:
        """Re-read schedules; lease and start a worker for each session with work and none here."""
        self._reap(report)
        conn = self._main_conn()
        journal_tick(conn, self.ctx, self.config, self.database)
        now = self.clock.now()
        plan = eligible_work(
            conn, now, at=self.clock.to_db(conn, now), lock_ttl_s=self.settings.lease_ttl_s
        )
        self.metrics.pending(plan.pending_by_session)
        for pid, remaining in plan.quota.items():
            self.metrics.quota(pid, remaining)
        log.debug(
            kv(
                "tick",
                sender=self.sender_id,
                sessions_with_work=len(plan.by_session),
                closed_schedules=len(plan.closed),
            )
        )
        started = []
        stopped = self.ctx.gateway_stopped()
        if stopped or not plan.by_session:
            if stopped:
                log.debug(kv("gateway_stopped", gateway=self.gateway.base_url, detail=stopped))
            return started
        single = self._single_lane(plan)
        lanes = [outbox.SINGLE_SESSION_LEASE] if single else sorted(plan.by_session)
        if any(w.alive and w.single != single for w in self.workers.values()):
            return started  # the lanes changed shape: let the old ones finish first
        for cid in lanes:
            current = self.workers.get(cid)
            if current is not None and current.alive:
                continue
            if self.stop_event.is_set():
                break
            if not self._acquire(conn, cid):
                report.sessions_held_elsewhere.append(cid)
                for client in sorted(plan.by_session) if single else [cid]:
                    self.metrics.forget_session(client)
                log.debug(kv("lease_busy", cliente_id=cid, sender=self.sender_id))
                continue
            worker = SessionWorker(self.ctx, cid, single=single).start()
            self.workers[cid] = worker
            started.append(worker)
            pending = (
                sum(plan.pending_by_session.values())
                if single
                else plan.pending_by_session.get(cid, 0)
            )
            log.info(
                kv(
                    "session_start",
                    cliente_id=cid,
                    sender=self.sender_id,
                    pending=pending,
                    lane="one session for every client" if single else None,
                )
            )
        return started

    def _single_lane(self, plan) -> bool:
        """gateway.sessions: does one lane carry every client's sends?"""
        if self.sessions_mode != "auto":
            return self.sessions_mode == "single"
        if self._auto_single is None:
            status = self.gateway.status(min(plan.by_session))
            if not status.reachable:
                return True  # undecided: one lane is never wrong, only slower
            self._auto_single = status.shared_session is not None
            log.info(
                kv(
                    "gateway_sessions",
                    gateway=self.gateway.base_url,
                    sessions="single" if self._auto_single else "per_cliente",
                    detail=f"GET /status names session {status.shared_session!r}"
                    if self._auto_single
                    else "GET /status names no session: one per cliente_id",
                )
            )
        return self._auto_single

    def _acquire(self, conn, cliente_id: int) -> bool:
        def attempt() -> bool:
            now = self.clock.now()
            with conn.transaction():
                return outbox.lease_acquire(
                    conn, cliente_id, self.sender_id, now, self.ctx.lease_expiry(now)
                )

        return retrying(f"lease of session {cliente_id}", attempt)

    def _renew_leases(self) -> None:
        alive = [w for w in self.workers.values() if w.alive]
        if not alive:
            return
        try:
            conn = self._main_conn()
            for worker in alive:

                def attempt(cid=worker.cliente_id) -> bool:
                    now = self.clock.now()
                    with conn.transaction():
                        return outbox.lease_renew(
                            conn, cid, self.sender_id, now, self.ctx.lease_expiry(now)
                        )

                if not retrying(f"renewing lease of session {worker.cliente_id}", attempt):
                    log.warning(
                        kv("lease_lost", cliente_id=worker.cliente_id, sender=self.sender_id)
                    )
                    worker.lease_lost.set()
        except EnviosError as exc:
            log.warning(kv("lease_renew_failed", sender=self.sender_id, detail=str(exc)))
            self._drop_main_conn()

    def _reap(self, report: PassReport) -> None:
        for cid, worker in list(self.workers.items()):
            if not worker.alive:
                report.add(worker.result)
                del self.workers[cid]

    def _wait_for(self, workers: list[SessionWorker], report: PassReport) -> None:
        renew_every = max(0.2, self.settings.lease_ttl_s / 3)
        while any(w.alive for w in workers):
            for w in workers:
                w.join(renew_every / max(1, len(workers)))
                if not w.alive:
                    continue
            self._renew_leases()
        self._reap(report)
        self.report.outcomes.update(report.outcomes)

    def _shutdown(self, report: PassReport) -> None:
        """Workers see stop_event at their next check; an in-flight send ends within the send
        timeout."""
        deadline = (
            time.monotonic()
            + float(self.config.gateway.send_timeout_s)
            + float(self.config.gateway.status_timeout_s)
            + 10
        )
        for worker in list(self.workers.values()):
            while worker.alive and time.monotonic() < deadline:
                worker.join(min(1.0, max(0.0, deadline - time.monotonic())))
                self._renew_leases()
            if worker.alive:
                log.error(
                    kv(
                        "worker_abandoned",
                        cliente_id=worker.cliente_id,
                        sender=self.sender_id,
                        detail=(
                            "still busy at shutdown; its row stays enviando if a send was in flight"
                        ),
                    )
                )
        self._reap(report)
        self._drop_main_conn()


def run_once(config, **kwargs) -> PassReport:
    """`envios send --once` in-process: one pass with a fresh Sender, then close it."""
    sender = Sender(config, **kwargs)
    try:
        sender.check()
        return sender.run_once()
    finally:
        sender.close()
