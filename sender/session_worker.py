"""One WhatsApp session's work: status -> claim -> send -> record, paced, under its lease.

The outcome table of DESIGN.md section 3 is `ACTIONS` below: the adapter
classifies (`sender.gateways`), this module obeys. A worker runs in its own
thread with its own database connection, so a 60 s pause in one session never
holds back another. It stops when its queue is empty, its quota is used, its
schedules close, the session is not READY, an outcome is session-level
(409/503 not ready, unreachable, unknown) or gateway-level (404: no /send route),
the lease is lost, the kill switch is off, or the sender is stopping; it then
releases its lease.

A worker works one *lane*: one cliente_id's session (`gateway.sessions:
per_cliente`), or, when the gateway has one WhatsApp session for every client
(`single`), all clients' schedules under the one lease `outbox.SINGLE_SESSION_LEASE`,
paced as one session: one send at a time, `delay_min_s..delay_max_s` between any two.

No SQL here (see `sender.outbox`) and no HTTP details (see `sender.gateways`).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envios.sender import outbox
from envios.sender.eligibility import closed_reason, legacy_lock_reason, quota_remaining
from envios.sender.gateways.base import NO_ID_FROM_GATEWAY, Gateway, Outcome, SendResult
from envios.sender.gateways.guarded import send_guarded
from envios.sender.messages import personalise
from envios.sender.metrics import SenderMetrics
from envios.sender.pool import ConnectionPool
from envios.sender.recipients import duplicate_problem

from envios.clock import Clock
from envios.domain import TEXT_MAX, Estado, Origin, too_long
from envios.errors import (
    DatabaseError,
    DatabaseUnavailable,
    EnviosError,
    StaleTransition,
    TransactionConflict,
)
from envios.logfmt import kv
from envios.phones import InvalidPhone, mask, normalise
from envios.store.connector import Connection, Database
from envios.store.transitions import Increment, transition

log = logging.getLogger("envios.sender")

MAX_REJECTS_PER_CLAIM = 50  # unsendable rows moved to error inside one claim transaction
TXN_ATTEMPTS = 6  # a deadlock / busy database is retried this many times
RECORD_PATIENCE_S = 30.0  # how long an outcome is retried against a database that went away


# -- what the loop does with each outcome (DESIGN.md section 3) ------------------------------

CONTINUE, STOP_SESSION, STOP_GATEWAY, SLOW_DOWN = (
    "continue",
    "stop this session",
    "stop the gateway",
    "slow down",
)
STOP_ALL = "stop every session of this sender"  # the account itself cannot send: a person must act


@dataclass(frozen=True)
class Action:
    row_goes_to: Estado | None  # None: stays enviando (unknown outcome)
    then: str  # CONTINUE | STOP_SESSION | STOP_GATEWAY | SLOW_DOWN
    pace: bool  # wait the pacing delay before the next send of this session
    give_back_attempt: bool = False  # the gateway never tried: the attempt does not count


ACTIONS: dict[Outcome, Action] = {
    #                                 row goes to       the loop then   pace
    Outcome.SENT: Action(Estado.ENVIADO, CONTINUE, True),
    Outcome.SENT_WITHOUT_ID: Action(Estado.ENVIADO, CONTINUE, True),
    Outcome.REJECTED: Action(Estado.ERROR, CONTINUE, False),
    Outcome.SESSION_NOT_READY: Action(
        Estado.PENDIENTE, STOP_SESSION, False, give_back_attempt=True
    ),
    Outcome.NO_ROUTE: Action(Estado.PENDIENTE, STOP_GATEWAY, False, give_back_attempt=True),
    Outcome.RATE_LIMITED: Action(Estado.PENDIENTE, SLOW_DOWN, False, give_back_attempt=True),
    Outcome.UNREACHABLE: Action(Estado.PENDIENTE, STOP_SESSION, False, give_back_attempt=True),
    # error after max_attempts
    Outcome.GATEWAY_ERROR: Action(Estado.PENDIENTE, CONTINUE, True),
    Outcome.UNKNOWN: Action(None, STOP_SESSION, False),
    # a gateway fault: like unknown
    Outcome.BAD_MESSAGE_ID: Action(None, STOP_SESSION, False),
    Outcome.ACCOUNT_BLOCKED: Action(Estado.PENDIENTE, STOP_ALL, False, give_back_attempt=True),
}


class LeaseLost(EnviosError):
    """Another sender holds this session now: stop without touching its lease."""


@dataclass
class Settings:
    delay_min_s: float
    delay_max_s: float
    max_attempts: int
    retry_after_s: float
    lease_ttl_s: float

    @classmethod
    def from_config(cls, config) -> Settings:
        s = config.sender
        return cls(
            float(s.delay_min_s),
            float(s.delay_max_s),
            int(s.max_attempts),
            float(s.retry_after_s),
            float(s.lease_ttl_s),
        )


@dataclass
class Context:
    """What every worker of one sender shares."""

    database: Database
    gateway: Gateway
    clock: Clock
    settings: Settings
    sender_id: str
    metrics: SenderMetrics
    kill_switch: Callable[[], bool]
    stop: threading.Event
    pool: ConnectionPool | None = None
    rng: random.Random = field(default_factory=random.Random)
    rng_lock: threading.Lock = field(default_factory=threading.Lock)
    journal: Any = None  # sender.journal.Journal when sender.journal_dir is set
    # Set by a NO_ROUTE outcome: (monotonic time until which nothing is sent, why).
    gateway_stop: tuple[float, str] | None = None

    def stop_gateway(self, reason: str) -> None:
        self.gateway_stop = (time.monotonic() + self.settings.retry_after_s, reason)

    def gateway_stopped(self) -> str | None:
        """Why nothing may be sent through the gateway now, or None."""
        stop = self.gateway_stop
        return stop[1] if stop is not None and time.monotonic() < stop[0] else None

    def lease_expiry(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.settings.lease_ttl_s)

    def pacing_delay(self, schedule: dict) -> float:
        low = schedule.get("delay_min_s")
        high = schedule.get("delay_max_s")
        low = self.settings.delay_min_s if low is None else float(low)
        high = self.settings.delay_max_s if high is None else float(high)
        high = max(low, high)
        with self.rng_lock:
            return self.rng.uniform(low, high) if high > low else low


# -- eligible work ---------------------------------------------------------------------------------


@dataclass
class ScheduleWork:
    schedule: dict
    pending: int
    remaining: int

    @property
    def programacion_id(self) -> int:
        return int(self.schedule["programacion_id"])


@dataclass
class WorkPlan:
    by_session: dict[int, list[ScheduleWork]]  # sessions with pending rows and quota left
    pending_by_session: dict[int, int]  # for envios_sender_eligible_pending
    quota: dict[int, int]  # programacion_id -> remaining, open schedules
    closed: dict[int, str]  # programacion_id -> why it is not sending now


def lane_work(plan: WorkPlan, lane: int, single: bool) -> list[ScheduleWork]:
    """The schedules a lane works: one client's, or every client's on a single-session gateway."""
    if single:
        return [work for cid in sorted(plan.by_session) for work in plan.by_session[cid]]
    return plan.by_session.get(lane, [])


def eligible_work(
    conn: Connection,
    now: dt.datetime,
    cliente_id: int | None = None,
    *,
    at: dt.datetime | None = None,
    lock_ttl_s: float = 0.0,
) -> WorkPlan:
    """Approved schedules inside their window, of campaigns in progress, with quota and
    pending rows.

    `now` is the configured zone's wall clock (windows, the quota's day); `at` the
    database's at the same instant (`Clock.to_db`; default `now`), for the stored times.
    A schedule the original scheduler has locked within `lock_ttl_s` is left to it.
    """
    day = now.date()
    at = now if at is None else at
    schedules = outbox.active_schedules(conn, now, cliente_id)
    open_ones, closed = [], {}
    for s in schedules:
        reason = closed_reason(s, now) or legacy_lock_reason(s, at, lock_ttl_s)
        if reason:
            closed[int(s["programacion_id"])] = reason
        else:
            open_ones.append(s)
    pids = [int(s["programacion_id"]) for s in open_ones]
    pending = outbox.pending_by_campaign(conn, (s["campania_id"] for s in open_ones), at)
    sent = outbox.sent_today(conn, pids, day)
    flying = outbox.in_flight_today(conn, pids, day, shift=at - now)
    plan = WorkPlan({}, {}, {}, closed)
    for s in open_ones:
        pid, cid = int(s["programacion_id"]), int(s["cliente_id"])
        remaining = quota_remaining(s["cupo_diario"], sent.get(pid, 0), flying.get(pid, 0))
        plan.quota[pid] = remaining
        n = pending.get(int(s["campania_id"]), 0)
        if remaining > 0 and n > 0:
            plan.by_session.setdefault(cid, []).append(ScheduleWork(s, n, remaining))
            plan.pending_by_session[cid] = plan.pending_by_session.get(cid, 0) + n
        else:
            plan.pending_by_session.setdefault(cid, 0)
    return plan


# -- claim
# ---------------------------------------------------------------------------------------------


@dataclass
class Claimed:
    row: dict
    schedule: dict
    cliente_id: int
    to: str
    text: str
    claimed_at: dt.datetime  # the database's clock
    remaining: int  # quota left after this claim
    day: dt.date | None = None  # the quota's day (configured zone) it was claimed on

    @property
    def envio_id(self) -> int:
        return int(self.row["id"])

    @property
    def programacion_id(self) -> int:
        return int(self.schedule["programacion_id"])

    @property
    def attempt(self) -> int:
        return int(self.row.get("attempts") or 0) + 1


def vet(row: dict) -> tuple[str | None, str, str]:
    """(problem, to, text): a problem means the row can never be sent."""
    try:
        to = normalise(row.get("telefono_wapp"))
    except InvalidPhone as exc:
        return str(exc), "", ""
    text = personalise(row.get("mensaje_final"), row.get("nombre_destino"))
    if not text:
        return "empty message text", to, ""
    return None, to, text


def retrying(what: str, fn, *, patience_s: float = 0.0):
    """Run fn() (one transaction); retry on deadlock/busy, and on a lost database for patience_s."""
    deadline = time.monotonic() + patience_s
    for attempt in range(1, 1000):
        try:
            return fn()
        except TransactionConflict as exc:
            if attempt >= TXN_ATTEMPTS:
                raise
            log.debug("%s: conflict (%s), retrying", what, exc)
            time.sleep(min(0.05 * 2**attempt, 1.0) * random.random())
        except DatabaseUnavailable as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("%s: %s; retrying", what, exc)
            time.sleep(1.0)
    raise AssertionError("unreachable")


def claim_next(
    conn: Connection, ctx: Context, lane: int, programacion_id: int, single: bool = False
) -> Claimed | str:
    """Claim the schedule's next sendable row (pendiente -> enviando), or say why not.

    `lane` is the lease key: the schedule's cliente_id, or SINGLE_SESSION_LEASE
    (with `single`, for every client's schedules).

    One transaction: the lease is checked and extended, the schedule and its
    campaign are re-read (a pause stops us here), the day's count row is locked
    (serialising every claim of this schedule on every sender), the quota is
    computed with the in-flight rows, and rows that can never be sent are moved
    to `error` on the way.
    """
    events: list[str] = []

    def attempt() -> Claimed | str:
        events.clear()
        now = ctx.clock.now()
        day = now.date()
        at = ctx.clock.to_db(conn, now)
        with conn.transaction():
            # Leases are envios's own, compared only by envios: on the configured zone's clock.
            if not outbox.lease_holds(conn, lane, ctx.sender_id, now):
                raise LeaseLost(f"lease of session {lane} is no longer ours")
            if not outbox.lease_renew(conn, lane, ctx.sender_id, now, ctx.lease_expiry(now)):
                raise LeaseLost(f"lease of session {lane} was taken while we renewed it")
            schedule = outbox.schedule_now(conn, programacion_id)
            if schedule is None or (not single and int(schedule["cliente_id"]) != lane):
                return "schedule gone"
            cliente_id = int(schedule["cliente_id"])
            reason = closed_reason(schedule, now) or legacy_lock_reason(
                schedule, at, ctx.settings.lease_ttl_s
            )
            if reason:
                return reason
            sent = outbox.lock_daily_count(conn, programacion_id, day)
            flying = outbox.in_flight_today(conn, [programacion_id], day, shift=at - now).get(
                programacion_id, 0
            )
            remaining = quota_remaining(schedule["cupo_diario"], sent, flying)
            ctx.metrics.quota(programacion_id, remaining)
            if remaining <= 0:
                return "daily quota used"
            skip: list[int] = []
            while len(skip) <= MAX_REJECTS_PER_CLAIM:
                row = outbox.next_pending(conn, int(schedule["campania_id"]), at, skip)
                if row is None:
                    return "queue empty"
                problem, to, text = vet(row)
                problem = problem or too_long(text, ctx.gateway) or duplicate_problem(conn, row, to)
                try:
                    if problem:
                        transition(
                            conn,
                            row["id"],
                            Estado.PENDIENTE,
                            Estado.ERROR,
                            origin=Origin.SENDER,
                            at=at,
                            detail=f"not sendable: {problem}",
                            columns={"last_error": problem[:TEXT_MAX]},
                        )
                        events.append(
                            _change(
                                row,
                                schedule,
                                cliente_id,
                                Estado.PENDIENTE,
                                Estado.ERROR,
                                ctx,
                                detail=problem,
                                phone=row.get("telefono_wapp"),
                            )
                        )
                        skip.append(int(row["id"]))
                        continue
                    transition(
                        conn,
                        row["id"],
                        Estado.PENDIENTE,
                        Estado.ENVIANDO,
                        origin=Origin.SENDER,
                        at=at,
                        detail=f"claimed by {ctx.sender_id}",
                        columns={
                            "claimed_at": at,
                            "claimed_by": ctx.sender_id,
                            "claim_programacion_id": programacion_id,
                            "attempts": Increment(),
                            "next_attempt_at": None,
                        },
                    )
                except StaleTransition:
                    skip.append(int(row["id"]))  # another schedule of the campaign took it first
                    continue
                ctx.metrics.quota(programacion_id, remaining - 1)
                return Claimed(row, schedule, cliente_id, to, text, at, remaining - 1, day)
            return "busy"

    result = retrying(f"claim for session {lane}", attempt)
    for line in events:
        log.info(line)
    if isinstance(result, Claimed):
        log.info(
            _change(
                result.row,
                result.schedule,
                result.cliente_id,
                Estado.PENDIENTE,
                Estado.ENVIANDO,
                ctx,
                attempt=result.attempt,
                phone=result.to,
            )
        )
    return result


def _change(
    row,
    schedule,
    cliente_id,
    from_state,
    to_state,
    ctx,
    *,
    outcome=None,
    message_id=None,
    detail="",
    phone=None,
    attempt=None,
) -> str:
    return kv(
        "state_change",
        envio_id=row["id"],
        campania_id=row.get("campania_id"),
        programacion_id=schedule.get("programacion_id") if schedule else None,
        cliente_id=cliente_id,
        **{"from": from_state, "to": to_state},
        outcome=outcome,
        message_id=message_id,
        phone=mask(phone),
        attempt=attempt,
        sender=ctx.sender_id,
        detail=detail,
    )


# -- record
# ------------------------------------------------------------------------------------------


def record_outcome(conn: Connection, ctx: Context, claimed: Claimed, result: SendResult) -> Action:
    """Write what the gateway said, per ACTIONS, in one transaction (with the daily count for
    enviado)."""
    action = ACTIONS[result.outcome]
    to_state = action.row_goes_to
    detail = f"{result.outcome.value}: {result.reason}" if result.reason else result.outcome.value
    wait_s = None
    if to_state is Estado.ENVIADO:
        # Logged before the write: if the process dies before it commits, the row stays
        # enviando (stuck) and this line is the record of the gateway's confirmation.
        log.info(
            kv(
                "gateway_confirmed",
                envio_id=claimed.envio_id,
                outcome=result.outcome,
                message_id=result.message_id,
            )
        )

    def attempt() -> None:
        nonlocal to_state, wait_s
        # the database's clock: fecha_envio, created_at, next_attempt_at
        now = ctx.clock.db_now(conn)
        eid, pid = claimed.envio_id, claimed.programacion_id
        with conn.transaction():
            if to_state is Estado.ENVIADO:
                # counted on the day it was claimed (quota-checked)
                day = claimed.day or claimed.claimed_at.date()
                outbox.lock_daily_count(conn, pid, day)
                # A placeholder instead of an id is noted on the row: the watcher shows such
                # sends as unverifiable, apart from ids lost (envios_sent_unverifiable).
                note = NO_ID_FROM_GATEWAY if result.gateway_gives_no_id else None
                transition(
                    conn,
                    eid,
                    Estado.ENVIANDO,
                    Estado.ENVIADO,
                    origin=Origin.SENDER,
                    at=now,
                    detail=detail,
                    columns={
                        "message_id": result.message_id,
                        "fecha_envio": now,
                        "last_error": note,
                    },
                )
                outbox.count_sent(conn, pid, day, now)
                return
            if to_state is None:  # unknown: stays enviando, never retried automatically
                outbox.note_on_stuck_row(conn, eid, f"unknown outcome: {result.reason}"[:TEXT_MAX])
                return
            columns: dict = {"last_error": (result.reason or result.outcome.value)[:TEXT_MAX]}
            if action.give_back_attempt:
                columns["attempts"] = Increment(-1)
            if result.outcome is Outcome.GATEWAY_ERROR:
                if claimed.attempt >= ctx.settings.max_attempts:
                    to_state = Estado.ERROR
                else:
                    wait_s = ctx.settings.retry_after_s
            if result.outcome is Outcome.RATE_LIMITED:
                wait_s = (
                    result.retry_after_s
                    if result.retry_after_s is not None
                    else ctx.settings.retry_after_s
                )
            if to_state is Estado.PENDIENTE and wait_s:
                columns["next_attempt_at"] = now + dt.timedelta(seconds=wait_s)
            # "Not sent" only undoes our own claim: a later claim of the row (requeued by an
            # operator,
            # claimed by another sender) is in flight and must keep its enviando. A confirmed send
            # above needs no such check: the row was delivered, whoever holds it now.
            transition(
                conn,
                eid,
                Estado.ENVIANDO,
                to_state,
                origin=Origin.SENDER,
                at=now,
                detail=detail,
                columns=columns,
                expect={"claimed_by": ctx.sender_id, "claimed_at": claimed.claimed_at},
            )

    try:
        retrying(
            f"recording {result.outcome.value} for row {claimed.envio_id}",
            attempt,
            patience_s=RECORD_PATIENCE_S,
        )
    except StaleTransition as exc:
        log.error(
            kv(
                "record_skipped",
                envio_id=claimed.envio_id,
                outcome=result.outcome,
                detail=f"row was moved by someone else: {exc}",
            )
        )
        return action
    except DatabaseError as exc:
        # The row stays enviando: shown as stuck, resolved by `envios reconcile`.
        log.error(
            kv(
                "record_failed",
                envio_id=claimed.envio_id,
                outcome=result.outcome,
                message_id=result.message_id,
                detail=f"row left enviando: {exc}",
            )
        )
        raise
    line = _change(
        claimed.row,
        claimed.schedule,
        claimed.cliente_id,
        Estado.ENVIANDO,
        to_state or Estado.ENVIANDO,
        ctx,
        outcome=result.outcome,
        message_id=result.message_id,
        detail=result.reason,
        phone=claimed.to,
        attempt=claimed.attempt,
    )
    if result.outcome.delivered is None:
        log.warning(
            line
            + ' note="outcome unknown: row stays enviando, never retried; see envios reconcile"'
        )
    elif to_state is Estado.ENVIADO and result.gateway_gives_no_id:
        log.info(line)  # the gateway never gives ids: shown by the watcher, not a warning per send
    elif to_state is Estado.ENVIADO and result.message_id is None:
        log.warning(line + ' note="gateway confirmed without a message id"')
    else:
        log.info(line)
    return action


# -- the worker
# -------------------------------------------------------------------------------------


@dataclass
class WorkerResult:
    cliente_id: int
    stop_reason: str = ""
    session_state: str = ""
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    session_level_stop: bool = False
    failed: bool = False  # crashed or lost its database: a row may be left enviando


class SessionWorker:
    """One lane, one thread, one DB connection; holds the lane's lease while it runs.

    `cliente_id` is the lane: a client's session, or SINGLE_SESSION_LEASE with `single`.
    """

    def __init__(self, ctx: Context, cliente_id: int, single: bool = False):
        self.ctx = ctx
        self.cliente_id = int(cliente_id)
        self.single = single
        self.lease_lost = threading.Event()
        self.result = WorkerResult(self.cliente_id)
        self.thread = threading.Thread(target=self._run, name=f"session-{cliente_id}", daemon=True)

    def start(self) -> SessionWorker:
        self.thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def _run(self) -> None:
        ctx, cid = self.ctx, self.cliente_id
        conn = None
        lost = False
        broken = False
        try:
            conn = ctx.pool.get() if ctx.pool else ctx.database.connect()
            self.result.stop_reason = self._loop(conn)
        except LeaseLost as exc:
            lost = True
            self.result.stop_reason = f"lease lost: {exc}"
        except EnviosError as exc:
            broken = True
            self.result.stop_reason = f"database problem: {exc}"
            self.result.failed = True
            self.result.session_level_stop = True
        except Exception as exc:  # a bug must not kill the sender or keep the lease
            broken = True
            log.exception("session %s worker crashed", cid)
            self.result.stop_reason = f"crashed: {type(exc).__name__}"
            self.result.failed = True
        finally:
            if not lost and not self.lease_lost.is_set() and conn is not None:
                try:

                    def release() -> None:
                        with conn.transaction():
                            outbox.lease_release(conn, cid, ctx.sender_id)

                    retrying(f"releasing lease of session {cid}", release)
                except EnviosError as exc:
                    broken = True
                    log.warning(kv("lease_release_failed", cliente_id=cid, detail=str(exc)))
            if conn is not None:
                if ctx.pool:
                    ctx.pool.put(conn, broken=broken)
                else:
                    conn.close()
            log.info(
                kv(
                    "session_stop",
                    cliente_id=cid,
                    reason=self.result.stop_reason,
                    sent=self.result.outcomes.get(Outcome.SENT, 0)
                    + self.result.outcomes.get(Outcome.SENT_WITHOUT_ID, 0),
                    sender=ctx.sender_id,
                )
            )

    def _clients(self, works: list[ScheduleWork]) -> list[int]:
        """The cliente_ids this lane serves now (metrics are per cliente_id, as the alerts join
        them)."""
        return (
            sorted({int(w.schedule["cliente_id"]) for w in works})
            if self.single
            else [self.cliente_id]
        )

    def _loop(self, conn: Connection) -> str:
        ctx, cid = self.ctx, self.cliente_id
        not_before = 0.0
        last_claim: dict[int, float] = {}
        empty_handed = 0
        while True:
            if ctx.stop.is_set():
                return "sender stopping"
            now = ctx.clock.now()
            plan = eligible_work(
                conn,
                now,
                None if self.single else cid,
                at=ctx.clock.to_db(conn, now),
                lock_ttl_s=ctx.settings.lease_ttl_s,
            )
            works = lane_work(plan, cid, self.single)
            for pid, remaining in plan.quota.items():
                ctx.metrics.quota(pid, remaining)
            if not works:
                return "no work left (queue empty, quota used or schedules closed)"
            wait = not_before - time.monotonic()
            if wait > 0:
                log.debug(kv("pacing", cliente_id=cid, wait_s=round(wait, 3)))
                if ctx.stop.wait(wait):
                    return "sender stopping"
            if self.lease_lost.is_set():
                raise LeaseLost(f"lease of session {cid} could not be renewed")
            if not ctx.kill_switch():
                return "kill switch off"
            stopped = ctx.gateway_stopped()
            if stopped:
                self.result.session_level_stop = True
                return stopped
            # A single session answers for every client: ask with a real cliente_id.
            status = ctx.gateway.status(
                int(works[0].schedule["cliente_id"]) if self.single else cid
            )
            for client in self._clients(works):  # the one session's state is every client's
                ctx.metrics.session(client, status.state)
            self.result.session_state = status.state
            if not status.ready:
                self.result.session_level_stop = True
                log.info(
                    kv(
                        "session_not_ready",
                        cliente_id=cid,
                        state=status.state,
                        detail=status.detail,
                    )
                )
                return (
                    f"session {status.state}: {status.detail}"
                    if status.detail
                    else f"session {status.state}"
                )
            claimed: Claimed | None = None
            reasons = []
            for work in sorted(works, key=lambda w: last_claim.get(w.programacion_id, 0.0)):
                got = claim_next(conn, ctx, cid, work.programacion_id, self.single)
                if isinstance(got, Claimed):
                    claimed = got
                    last_claim[work.programacion_id] = time.monotonic()
                    break
                reasons.append(f"schedule {work.programacion_id}: {got}")
                log.debug(
                    kv("no_claim", cliente_id=cid, programacion_id=work.programacion_id, reason=got)
                )
            if claimed is None:
                empty_handed += 1
                if empty_handed >= 2:
                    return "nothing claimable: " + "; ".join(reasons)
                continue
            empty_handed = 0
            if ctx.journal:
                ctx.journal.sending(claimed)  # on disk before the request leaves
            result = send_guarded(
                ctx.gateway,
                claimed.cliente_id,
                claimed.to,
                claimed.text,
                claimed.envio_id,
                name=(claimed.row.get("nombre_destino") or "").strip() or None,
            )
            if ctx.journal:
                ctx.journal.said(claimed, result)  # on disk before the database is written
            ctx.metrics.outcome(result.outcome, result.latency_s)
            self.result.outcomes[result.outcome] += 1
            action = record_outcome(conn, ctx, claimed, result)
            if ctx.journal:
                ctx.journal.recorded(claimed)
            if result.outcome in (Outcome.SENT, Outcome.SENT_WITHOUT_ID):
                ctx.metrics.sent(claimed.cliente_id)
            if action.then == STOP_GATEWAY:
                ctx.stop_gateway(result.reason)
                log.error(
                    kv(
                        "gateway_stopped",
                        gateway=ctx.gateway.base_url,
                        detail=result.reason,
                        note=f"nothing is sent through this gateway; next try in "
                        f"{ctx.settings.retry_after_s:g}s (sender.retry_after_s)",
                    )
                )
                self.result.session_level_stop = True
            if action.then == STOP_ALL:
                self.result.session_level_stop = True
                log.error(
                    kv(
                        "sender_stopped_by_gateway",
                        cliente_id=claimed.cliente_id,
                        outcome=result.outcome,
                        detail=(
                            f"{result.reason}; every session stops until a person fixes the account"
                        ),
                    )
                )
                ctx.stop.set()
                return f"{result.outcome.value}: {result.reason}"
            if action.then == STOP_SESSION:
                self.result.session_level_stop = True
                return f"{result.outcome.value}: {result.reason}"
            if action.then == SLOW_DOWN:
                wait_s = (
                    result.retry_after_s
                    if result.retry_after_s is not None
                    else ctx.settings.retry_after_s
                )
                not_before = time.monotonic() + max(wait_s, ctx.pacing_delay(claimed.schedule))
            elif action.pace:
                not_before = time.monotonic() + ctx.pacing_delay(claimed.schedule)
