"""The sender: finds eligible sessions, leases them, and schedules their lanes on bounded pools.

    sender = Sender(config)                 # or Sender(config, gateway=..., clock=...)
    report = sender.run_once()              # `envios send --once`: one pass, then return
    sender.start(); ...; sender.stop()      # long-running, in a background thread
    sender.run_forever()                    # long-running in this thread, until request_stop()

Cost follows the work, not the number of sessions. One scheduler thread (the one
running the pass) keeps a heap of lanes (`session_worker.Lane`, one per session)
ordered by their next-send time; a lane that is due runs one step on the step pool
(`sender.gateway_pool_size` threads: the gateway calls happen there); its claim and
its outcome are written by two batchers, many lanes per transaction; every database
connection comes from one pool of at most `sender.db_pool_size`. A pacing delay is
a time in the heap, not a sleeping thread.

A tick (every `sender.tick_s`) re-reads the schedules: for each session with
eligible work and no lane here, it takes the session's lease in
`envios_session_leases` (free or expired only: a session is worked by one
sender at a time), all new sessions in one transaction. Every lease_ttl_s/3 one
statement renews every lease this sender holds, so a long pacing delay or a slow
send never lets a lease lapse, while a killed sender's leases expire after
lease_ttl_s and its sessions are taken over by another sender. Stopping lets the
steps in flight finish (their sends recorded), then releases the leases.

`gateway.sessions` decides what a session is: `per_cliente`, one lane per
cliente_id; `single`, one lane (lease `outbox.SINGLE_SESSION_LEASE`) for every
client; `auto`, single when the gateway's GET /status names a session (the venom
build's "admin"), decided at the first answer and kept for the life of the process
(one lane while the gateway has not answered yet: never two sends at once on what
may be one WhatsApp session).
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import os
import queue
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
    Lane,
    Settings,
    WorkerResult,
    eligible_work,
    retrying,
)

from envios.clock import Clock
from envios.errors import DatabaseError, EnviosError
from envios.logfmt import kv
from envios.store import batches, schema
from envios.store.connector import Connection, Database

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
    settled_by_evidence: list[int] = field(
        default_factory=list
    )  # unknowns the gateway's record settled

    @property
    def sent(self) -> int:
        return self.outcomes[Outcome.SENT] + self.outcomes[Outcome.SENT_WITHOUT_ID]

    @property
    def unreachable_sessions(self) -> list[int]:
        return [
            cliente_id
            for cliente_id, r in self.sessions_worked.items()
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
        self.pool = ConnectionPool(self.database, limit=self.settings.db_pool_size)
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
            pool=self.pool,
            rng=rng or random.Random(),
            journal=self.journal,
        )
        self.ctx.start_batchers()
        self.steps = ThreadPoolExecutor(self.settings.gateway_pool_size, thread_name_prefix="step")
        self.lanes: dict[int, Lane] = {}
        self._heap: list[tuple[float, int, Lane]] = []
        self._seq = itertools.count()
        self._done: queue.SimpleQueue[tuple[Lane, float | None]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._steps_in_flight = 0
        self._to_release: list[Lane] = []
        self.sessions_mode = str(config.gateway.sessions)
        self._auto_single: bool | None = None  # auto: what GET /status said, once it answered
        self.report = PassReport()  # everything this sender did, all passes
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
        with self.pool.connection() as conn:
            done = schema.applied_versions(conn)
        if schema.missing_versions(schema.Process.SENDER, done):
            raise DatabaseError(
                f"{self.database.describe()}: schema not upgraded "
                f"(have {sorted(done) or 'none'}, need v{schema.LATEST}): run `envios db upgrade`"
            )

    def run_once(self) -> PassReport:
        """One pass: every eligible session worked until empty / quota used / stopped."""
        report = PassReport()
        if not self.enabled():
            report.disabled = True
            log.warning(kv("pass_skipped", reason="kill switch off", sender=self.sender_id))
            return report
        self._tick(report)
        self._drive(report, forever=False)
        self.report.outcomes.update(report.outcomes)
        report.gateway_stopped = self.ctx.gateway_stopped()
        self.settle_unknowns(report)
        log.info(kv("pass_done", sender=self.sender_id, detail=report.summary()))
        return report

    def run_forever(self) -> PassReport:
        """Tick every tick_s until request_stop(); then finish in-flight sends, release leases."""
        log.info(
            kv(
                "sender_start",
                sender=self.sender_id,
                gateway=self.gateway.base_url,
                database=self.database.describe(),
                tick_s=self.tick_s,
            )
        )
        self._drive(self.report, forever=True)
        log.info(kv("sender_stop", sender=self.sender_id, detail=self.report.summary()))
        return self.report

    def settle_unknowns(self, report: PassReport) -> None:
        """Unknown outcomes settled by evidence: acknowledgements received while in flight,
        and the gateway's own record of the message (WAHA, Evolution lookups). Never a retry."""
        try:
            with self.pool.connection() as conn:
                acked = delivery.settle_acknowledged(
                    conn, self.clock, delivery.in_flight_s(self.config)
                )
                report.settled_by_evidence.extend(acked)
                if type(self.gateway).find_sent is Gateway.find_sent:
                    return
                found = delivery.settle_by_evidence(
                    conn,
                    self.clock,
                    self.gateway,
                    within_s=float(self.config.sender.settle_within_s),
                    in_flight_s=delivery.in_flight_s(self.config),
                )
        except EnviosError as exc:
            log.error(kv("settle_failed", sender=self.sender_id, detail=str(exc)))
            return
        report.settled_by_evidence.extend(found.settled)
        if found.settled or found.no_evidence or found.unavailable:
            log.info(kv("unknowns_checked", sender=self.sender_id, detail=found.summary()))

    def request_stop(self) -> None:
        """Stop claiming; in-flight sends finish (bounded by the send timeout)."""
        self.stop_event.set()
        self._wake.set()

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
        self.steps.shutdown(wait=True)
        self.ctx.close_batchers()
        self.pool.close()
        if self.journal is not None:
            self.journal.close()
        if self._own_gateway:
            self.gateway.close()
        self.metrics.close()

    # -- the scheduler -------------------------------------------------------------------------

    def _drive(self, report: PassReport, *, forever: bool) -> None:
        """Run lanes until none is left (a pass) or until stopped (forever, ticking)."""
        renew_every = max(0.2, self.settings.lease_ttl_s / 3)
        next_renew = time.monotonic() + renew_every
        next_tick = time.monotonic() if forever else float("inf")
        stopping_since: float | None = None
        while True:
            now = time.monotonic()
            if forever and now >= next_tick and not self.stop_event.is_set():
                next_tick = now + self.tick_s
                try:
                    if self.enabled():
                        self.settle_unknowns(report)
                        self._tick(report)
                except EnviosError as exc:
                    log.error(kv("tick_failed", sender=self.sender_id, detail=str(exc)))
            if now >= next_renew:
                next_renew = now + renew_every
                self._renew_leases()
            self._collect(report)
            if self.stop_event.is_set():
                stopping_since = stopping_since or now
                self._stop_waiting_lanes()
            else:
                self._dispatch(now)
            self._release(report)
            if not self.lanes and (not forever or self.stop_event.is_set()):
                return
            if stopping_since is not None and now - stopping_since > self._shutdown_grace_s():
                self._abandon(report)
                return
            due = (
                self._heap[0][0]
                if self._heap and self._steps_in_flight < self.settings.gateway_pool_size
                else float("inf")
            )
            self._wake.wait(max(0.0, min(due, next_tick, next_renew, now + 1.0) - time.monotonic()))
            self._wake.clear()

    def _shutdown_grace_s(self) -> float:
        """In-flight steps get this long to finish at shutdown (a send ends within its timeout)."""
        return (
            float(self.config.gateway.send_timeout_s)
            + float(self.config.gateway.status_timeout_s)
            + 10
        )

    def _schedule(self, lane: Lane, at: float) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), lane))

    def _dispatch(self, now: float) -> None:
        """Start a step for every lane that is due, while the step pool has room."""
        limit = self.settings.gateway_pool_size
        throughput = self.settings.throughput
        while self._heap and self._heap[0][0] <= now and self._steps_in_flight < limit:
            _, _, lane = heapq.heappop(self._heap)
            if lane.stopped or self.lanes.get(lane.cliente_id) is not lane:
                continue
            if lane.not_before > now:  # told to slow down (429) while this entry waited
                self._schedule(lane, lane.not_before)
                continue
            lane.in_flight += 1
            self._steps_in_flight += 1
            self.steps.submit(self._run_step, lane)
            if throughput:  # the token bucket: the next step at most rate_per_s later
                lane.next_due = max(lane.next_due, now - 1.0) + 1.0 / self.settings.rate_per_s
                if lane.in_flight < self.settings.max_in_flight:
                    self._schedule(lane, lane.next_due)

    def _run_step(self, lane: Lane) -> None:
        self._done.put((lane, lane.step()))
        self._wake.set()

    def _collect(self, report: PassReport) -> None:
        """Lanes whose step ended: due again after their delay, or finished."""
        while True:
            try:
                lane, delay = self._done.get_nowait()
            except queue.Empty:
                return
            lane.in_flight -= 1
            self._steps_in_flight -= 1
            if delay is None or lane.stopped:
                if lane.in_flight == 0:
                    self._finish(lane)
                continue
            if self.settings.throughput:
                if delay > 0:
                    lane.not_before = max(lane.not_before, time.monotonic() + delay)
                if lane.in_flight == self.settings.max_in_flight - 1:
                    self._schedule(lane, max(lane.next_due, time.monotonic() + delay))
            else:
                self._schedule(lane, time.monotonic() + delay)

    def _stop_waiting_lanes(self) -> None:
        for lane in list(self.lanes.values()):
            lane.stop("sender stopping")
            if lane.in_flight == 0:
                self._finish(lane)
        self._heap.clear()

    def _finish(self, lane: Lane) -> None:
        if self.lanes.get(lane.cliente_id) is lane:
            del self.lanes[lane.cliente_id]
            self._to_release.append(lane)

    def _release(self, report: PassReport) -> None:
        """Give back the leases of finished lanes (one statement), then report them."""
        if not self._to_release:
            return
        done, self._to_release = self._to_release, []
        ours = [lane.cliente_id for lane in done if not lane.lost and not lane.lease_lost.is_set()]
        if ours:
            try:

                def release(conn: Connection) -> None:
                    statement, params = batches.LEASES_RELEASE_MANY.with_lists(lanes=ours)
                    with conn.transaction():
                        conn.execute(statement, {**params, "owner": self.sender_id})

                self._with_conn(f"releasing {len(ours)} leases", release)
            except EnviosError as exc:
                log.warning(
                    kv("lease_release_failed", cliente_id=",".join(map(str, ours)), detail=str(exc))
                )
        for lane in done:
            result = lane.result
            report.add(result)
            log.info(
                kv(
                    "session_stop",
                    cliente_id=lane.cliente_id,
                    reason=result.stop_reason,
                    sent=result.outcomes.get(Outcome.SENT, 0)
                    + result.outcomes.get(Outcome.SENT_WITHOUT_ID, 0),
                    sender=self.sender_id,
                )
            )

    def _abandon(self, report: PassReport) -> None:
        for lane in list(self.lanes.values()):
            log.error(
                kv(
                    "worker_abandoned",
                    cliente_id=lane.cliente_id,
                    sender=self.sender_id,
                    detail="still busy at shutdown; its row stays enviando if a send was in flight",
                )
            )
            report.add(lane.result)
        self.lanes.clear()

    def _with_conn(self, what: str, fn: Callable[[Connection], object]):
        """fn(conn) on a pooled connection, retried on deadlock/busy (one transaction inside)."""

        def attempt():
            with self.pool.connection() as conn:
                return fn(conn)

        return retrying(what, attempt)

    # -- ticks and leases --------------------------------------------------------------------------

    def _tick(self, report: PassReport) -> list[Lane]:
        """Re-read schedules; lease and start a lane for each session with work and none here."""
        with self.pool.connection() as conn:
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
        stopped = self.ctx.gateway_stopped()
        if stopped or not plan.by_session:
            if stopped:
                log.debug(kv("gateway_stopped", gateway=self.gateway.base_url, detail=stopped))
            return []
        single = self._single_lane(plan)
        wanted = [outbox.SINGLE_SESSION_LEASE] if single else sorted(plan.by_session)
        if any(lane.single != single for lane in self.lanes.values()):
            return []  # the lanes changed shape: let the old ones finish first
        new = [cliente_id for cliente_id in wanted if cliente_id not in self.lanes]
        if not new or self.stop_event.is_set():
            return []
        held = self._acquire(new)
        started = []
        for cliente_id in new:
            if cliente_id not in held:
                report.sessions_held_elsewhere.append(cliente_id)
                for client in sorted(plan.by_session) if single else [cliente_id]:
                    self.metrics.forget_session(client)
                log.debug(kv("lease_busy", cliente_id=cliente_id, sender=self.sender_id))
                continue
            lane = Lane(self.ctx, cliente_id, single=single)
            self.lanes[cliente_id] = lane
            self._schedule(lane, time.monotonic())
            started.append(lane)
            pending = (
                sum(plan.pending_by_session.values())
                if single
                else plan.pending_by_session.get(cliente_id, 0)
            )
            log.info(
                kv(
                    "session_start",
                    cliente_id=cliente_id,
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

    def _acquire(self, lanes: list[int]) -> set[int]:
        """Take the leases of `lanes` that are free or expired (or ours), in one transaction."""

        def attempt(conn: Connection) -> set[int]:
            now = self.clock.now()
            expires = self.ctx.lease_expiry(now)
            me = {"owner": self.sender_id, "now": now, "expires": expires}
            rows, row_params = batches.values_list(
                "l",
                (
                    {
                        "cliente_id": cliente_id,
                        "owner": self.sender_id,
                        "now": now,
                        "expires": expires,
                    }
                    for cliente_id in lanes
                ),
            )
            take, params = batches.LEASES_TAKE_EXPIRED.with_lists(lanes=lanes)
            extend, _ = batches.LEASES_EXTEND_LISTED.with_lists(lanes=lanes)
            with conn.transaction():
                conn.execute(batches.expand(batches.LEASES_INSERT_MANY, rows=rows), row_params)
                conn.execute(take, {**params, **me})
                conn.execute(extend, {**params, **me})
                owned = {int(r["cliente_id"]) for r in conn.query(batches.LEASES_OWNED, me)}
            return owned & set(lanes)

        return self._with_conn(f"leases of {len(lanes)} sessions", attempt)

    def _renew_leases(self) -> None:
        """One statement renews every lease we hold; a lane whose lease is gone stops."""
        if not self.lanes:
            return

        def renew(conn: Connection) -> set[int]:
            now = self.clock.now()
            me = {"owner": self.sender_id, "expires": self.ctx.lease_expiry(now)}
            with conn.transaction():
                conn.execute(batches.LEASES_RENEW_ALL, me)
                return {int(r["cliente_id"]) for r in conn.query(batches.LEASES_OWNED, me)}

        try:
            owned = self._with_conn("renewing leases", renew)
        except EnviosError as exc:
            log.warning(kv("lease_renew_failed", sender=self.sender_id, detail=str(exc)))
            return
        for lane in self.lanes.values():
            if lane.cliente_id not in owned and not lane.lease_lost.is_set():
                log.warning(kv("lease_lost", cliente_id=lane.cliente_id, sender=self.sender_id))
                lane.lease_lost.set()


def run_once(config, **kwargs) -> PassReport:
    """`envios send --once` in-process: one pass with a fresh Sender, then close it."""
    sender = Sender(config, **kwargs)
    try:
        sender.check()
        return sender.run_once()
    finally:
        sender.close()
