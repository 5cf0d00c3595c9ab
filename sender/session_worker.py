"""One WhatsApp session's work as a *lane*: status -> claim -> send -> record, under its lease.

The outcome table of DESIGN.md section 3 is `ACTIONS` below: the adapter
classifies (`sender.gateways`), this module obeys. A lane has no thread of its own:
the scheduler (`sender.loop`) keeps its next-send time and runs one `Lane.step()`
at a time on a bounded pool (`sender.gateway_pool_size` threads), or up to
`sender.max_in_flight` steps at once when the lane is rate-limited
(`sender.rate_per_s` > 0: throughput mode, for gateways that allow it; 0, the
default, keeps the random pacing delay between two sends of a session).

A step does not open a database connection for its claim or its outcome: it hands
them to two batchers (`Batcher`), each running every request that has arrived as
one transaction on a pooled connection: `claim_batch` (leases checked and locked,
schedules re-read, quotas computed under the day's count rows, rows locked with
SKIP LOCKED, every claimed row with its history row) and `record_batch` (every
outcome with its history row and the day's counts). A batch that meets a row moved
by someone else is written again row by row, exactly as a single record would be.

A lane stops when its queue is empty, its quota is used, its schedules close, the
session is not READY, an outcome is session-level (409/503 not ready, unreachable,
unknown) or gateway-level (404: no /send route), the lease is lost, the kill switch
is off, or the sender is stopping; the scheduler then releases its lease.

A lane is one cliente_id's session (`gateway.sessions: per_cliente`), or, when the
gateway has one WhatsApp session for every client (`single`), all clients'
schedules under the one lease `outbox.SINGLE_SESSION_LEASE`, paced as one session.

No SQL here (see `envios.store.batches`, `sender.outbox`) and no HTTP details (see
`sender.gateways`).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
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
from envios.domain import TEXT_MAX, Estado, Origin, OutboxRow, SendingSchedule, too_long
from envios.errors import (
    DatabaseError,
    DatabaseUnavailable,
    EnviosError,
    StaleTransition,
    TransactionConflict,
)
from envios.logfmt import kv
from envios.phones import InvalidPhone, mask, normalise
from envios.store import batches
from envios.store.connector import Connection, Database
from envios.store.sql import by_value
from envios.store.transitions import Increment, transition, transition_many

log = logging.getLogger("envios.sender")

MAX_REJECTS_PER_CLAIM = 50  # unsendable rows moved to error inside one claim transaction
TXN_ATTEMPTS = 6  # a deadlock / busy database is retried this many times
RECORD_PATIENCE_S = 30.0  # how long an outcome is retried against a database that went away
MAX_BATCH = 200  # requests per claim / record transaction
# Ready rows held by another transaction (SKIP LOCKED passed over them): the lane asks
# again after LOCKED_RETRY_S, up to LOCKED_RETRIES times in a row, before it stops.
ROWS_LOCKED = "ready rows locked by another transaction"
LOCKED_RETRY_S = 0.2
LOCKED_RETRIES = 50
STATUS_EVERY_S = (
    5.0  # throughput mode: a lane asks GET /status again after this (pacing: every send)
)


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
    Outcome.GATEWAY_ERROR: Action(Estado.PENDIENTE, CONTINUE, True),  # error after max_attempts
    Outcome.UNKNOWN: Action(None, STOP_SESSION, False),
    Outcome.BAD_MESSAGE_ID: Action(None, STOP_SESSION, False),  # a gateway fault: like unknown
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
    db_pool_size: int = 4
    gateway_pool_size: int = 16
    max_in_flight: int = 1
    rate_per_s: float = 0.0  # 0: pacing mode (the random delay); > 0: token bucket per lane

    @classmethod
    def from_config(cls, config) -> Settings:
        s = config.sender
        return cls(
            float(s.delay_min_s),
            float(s.delay_max_s),
            int(s.max_attempts),
            float(s.retry_after_s),
            float(s.lease_ttl_s),
            int(s.db_pool_size),
            int(s.gateway_pool_size),
            int(s.max_in_flight),
            float(s.rate_per_s),
        )

    @property
    def throughput(self) -> bool:
        return self.rate_per_s > 0


@dataclass
class Context:
    """What every lane of one sender shares."""

    database: Database
    gateway: Gateway
    clock: Clock
    settings: Settings
    sender_id: str
    metrics: SenderMetrics
    kill_switch: Callable[[], bool]
    stop: threading.Event
    pool: ConnectionPool
    rng: random.Random = field(default_factory=random.Random)
    rng_lock: threading.Lock = field(default_factory=threading.Lock)
    journal: Any = None  # sender.journal.Journal when sender.journal_dir is set
    # Set by a NO_ROUTE outcome: (monotonic time until which nothing is sent, why).
    gateway_stop: tuple[float, str] | None = None
    claims: Batcher | None = None  # set by Context.start_batchers
    records: Batcher | None = None

    def start_batchers(self) -> None:
        # Claims of different lanes never wait for each other (SKIP LOCKED, their own lease and
        # count rows): they may run side by side on the connections the recorder and the
        # scheduler leave free.
        self.claims = Batcher(
            "claims",
            self.pool,
            lambda conn, reqs: claim_batch(conn, self, reqs),
            workers=max(1, self.settings.db_pool_size - 2),
        )
        self.records = Batcher(
            "records", self.pool, lambda conn, items: record_batch(conn, self, items)
        )

    def close_batchers(self) -> None:
        for batcher in (self.claims, self.records):
            if batcher is not None:
                batcher.close()

    def stop_gateway(self, reason: str) -> None:
        self.gateway_stop = (time.monotonic() + self.settings.retry_after_s, reason)

    def gateway_stopped(self) -> str | None:
        """Why nothing may be sent through the gateway now, or None."""
        stop = self.gateway_stop
        return stop[1] if stop is not None and time.monotonic() < stop[0] else None

    def lease_expiry(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.settings.lease_ttl_s)

    def pacing_delay(self, schedule: SendingSchedule | None) -> float:
        low = None if schedule is None else schedule.delay_min_s
        high = None if schedule is None else schedule.delay_max_s
        low = self.settings.delay_min_s if low is None else float(low)
        high = self.settings.delay_max_s if high is None else float(high)
        high = max(low, high)
        with self.rng_lock:
            return self.rng.uniform(low, high) if high > low else low


# -- eligible work ---------------------------------------------------------------------------------


@dataclass
class ScheduleWork:
    schedule: SendingSchedule

    @property
    def programacion_id(self) -> int:
        return self.schedule.programacion_id


@dataclass
class WorkPlan:
    by_session: dict[int, list[ScheduleWork]]  # sessions with pending rows and quota left
    pending_by_session: dict[int, int]  # for envios_sender_eligible_pending
    quota: dict[int, int]  # programacion_id -> remaining, open schedules
    closed: dict[int, str]  # programacion_id -> why it is not sending now


def lane_work(plan: WorkPlan, lane: int, single: bool) -> list[ScheduleWork]:
    """The schedules a lane works: one client's, or every client's on a single-session gateway."""
    if single:
        return [
            work for cliente_id in sorted(plan.by_session) for work in plan.by_session[cliente_id]
        ]
    return plan.by_session.get(lane, [])


def eligible_work(
    conn: Connection,
    now: dt.datetime,
    cliente_id: int | None = None,
    *,
    at: dt.datetime | None = None,
    lock_ttl_s: float = 0.0,
) -> WorkPlan:
    """Approved schedules inside their window, of campaigns in progress, with quota and rows.

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
            closed[s.programacion_id] = reason
        else:
            open_ones.append(s)
    pids = [s.programacion_id for s in open_ones]
    pending = outbox.pending_by_campaign(conn, (s.campania_id for s in open_ones), at)
    sent = outbox.sent_today(conn, pids, day)
    flying = outbox.in_flight_today(conn, pids, day, shift=at - now)
    plan = WorkPlan({}, {}, {}, closed)
    for s in open_ones:
        pid, cliente_id = s.programacion_id, s.cliente_id
        remaining = quota_remaining(s.cupo_diario, sent.get(pid, 0), flying.get(pid, 0))
        plan.quota[pid] = remaining
        n = pending.get(s.campania_id, 0)
        if remaining > 0 and n > 0:
            plan.by_session.setdefault(cliente_id, []).append(ScheduleWork(s))
            plan.pending_by_session[cliente_id] = plan.pending_by_session.get(cliente_id, 0) + n
        else:
            plan.pending_by_session.setdefault(cliente_id, 0)
    return plan


@dataclass
class Claimed:
    row: OutboxRow  # as read by the claim, before its UPDATE
    programacion_id: int  # the schedule it was claimed for (its quota, its day's count)
    cliente_id: int
    to: str
    text: str
    claimed_at: dt.datetime  # the database's clock
    day: dt.date | None = None  # the quota's day (configured zone) it was claimed on
    more: bool = True  # its schedule had another ready row and quota when it was claimed
    schedule: SendingSchedule | None = None  # None: recovered from a dead sender's journal

    @property
    def envio_id(self) -> int:
        return self.row.id

    @property
    def attempt(self) -> int:
        return self.row.attempts + 1


def vet(row: OutboxRow) -> tuple[str | None, str, str]:
    """(problem, to, text): a problem means the row can never be sent."""
    try:
        to = normalise(row.telefono_wapp)
    except InvalidPhone as exc:
        return str(exc), "", ""
    text = personalise(row.mensaje_final, row.nombre_destino)
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


@dataclass(frozen=True)
class ClaimRequest:
    lane: int  # the lease key
    pids: tuple[int, ...]  # the lane's schedules, in the order to try them
    single: bool = False  # one lane for every client's schedules


@dataclass(frozen=True)
class Refusal:
    reasons: tuple[tuple[int, str], ...]  # (programacion_id, why nothing was claimed from it)

    def summary(self) -> str:
        return "; ".join(f"schedule {pid}: {why}" for pid, why in self.reasons)


class _Rows:
    """A campaign's ready rows, read ahead in id order inside one claim transaction."""

    def __init__(self, conn: Connection, campania_id: int, at: dt.datetime, wanted: int):
        self.conn, self.campania_id, self.at = conn, campania_id, at
        self.read_ahead = min(wanted, MAX_BATCH) + 1  # one more: whether the schedule has more
        self.after_id = 0
        self.buffer: collections.deque[OutboxRow] = collections.deque()
        self.exhausted = False
        self.seen: set[int] = set()  # every row read (and locked) by this transaction

    def has_more(self) -> bool:
        return bool(self.buffer) or not self.exhausted

    def take(self, rows: list[dict]) -> None:
        typed = [OutboxRow.from_row(row) for row in rows]
        self.buffer.extend(typed)
        self.seen.update(row.id for row in typed)
        self.exhausted = len(typed) < self.read_ahead
        if typed:
            self.after_id = typed[-1].id

    def next(self) -> OutboxRow | None:
        if not self.buffer and not self.exhausted:
            self.take(
                self.conn.query(
                    batches.READY_ROWS,
                    {
                        **by_value(Estado.PENDIENTE),
                        "campania_id": self.campania_id,
                        "after_id": self.after_id,
                        "at": self.at,
                        "n": self.read_ahead,
                    },
                )
            )
        return self.buffer.popleft() if self.buffer else None

    def locked_elsewhere(self) -> bool:
        """Whether ready rows exist that this transaction did not read: SKIP LOCKED passed
        over them because another transaction holds them (always False on SQLite, whose
        claim holds the only write lock)."""
        ready = self.conn.query(
            batches.READY_IDS_UNLOCKED,
            {
                **by_value(Estado.PENDIENTE),
                "campania_id": self.campania_id,
                "at": self.at,
                "n": len(self.seen) + 1,
            },
        )
        return any(int(row["id"]) not in self.seen for row in ready)


def claim_batch(
    conn: Connection, ctx: Context, requests: Sequence[ClaimRequest]
) -> list[Claimed | Refusal | LeaseLost]:
    """One row for each request (pendiente -> enviando), all in one transaction; or why not.

    The lease rows are read locked first: a lease that is not ours and live any more
    answers LeaseLost. Then the schedules and campaigns are re-read (a pause stops
    us here), the day's count rows are locked (serialising every claim and count of
    a schedule on every sender), each quota is computed with the rows in flight,
    and rows that can never be sent are moved to `error` on the way.
    """
    events: list[str] = []

    def attempt() -> list[Claimed | Refusal | LeaseLost]:
        events.clear()
        now = ctx.clock.now()
        day = now.date()
        at = ctx.clock.to_db(conn, now)
        results: list[Claimed | Refusal | LeaseLost | None] = [None] * len(requests)
        with conn.transaction():
            # Leases are envios's own, compared only by envios: on the configured zone's clock.
            locked, params = batches.LEASES_LOCKED.with_lists(
                lanes=sorted({r.lane for r in requests})
            )
            held = {int(r["cliente_id"]): r for r in conn.query(locked, params)}
            live = []
            for i, req in enumerate(requests):
                if not outbox.lease_is_live(held.get(req.lane), ctx.sender_id, now):
                    results[i] = LeaseLost(f"lease of session {req.lane} is no longer ours")
                else:
                    live.append(i)
            pids = sorted({pid for i in live for pid in requests[i].pids})
            if not pids:
                return results
            schedules, reasons = _open_schedules(conn, ctx, pids, now, at)
            remaining = _quotas(
                conn, ctx, {p: schedules[p] for p in pids if p not in reasons}, day, at - now
            )
            wanted = collections.Counter(
                schedules[p].campania_id
                for i in live
                for p in requests[i].pids
                if p not in reasons and remaining[p] > 0
            )
            cursors = _prefetch(conn, wanted, at)
            refreshed: set[int] = set()
            claimed: dict[int, list[Claimed]] = {}
            for i in live:
                req, why = requests[i], []
                for pid in req.pids:
                    schedule = schedules.get(pid)
                    reason = reasons.get(pid)
                    if reason is None and not req.single and schedule.cliente_id != req.lane:
                        reason = "schedule gone"
                    if reason is None and remaining[pid] <= 0:
                        reason = "daily quota used"
                    if reason is None:
                        campania_id = schedule.campania_id
                        rows = cursors.get(campania_id) or cursors.setdefault(
                            campania_id, _Rows(conn, campania_id, at, 1)
                        )
                        got = _take_row(conn, ctx, rows, schedule, at, day, refreshed, events)
                        if isinstance(got, Claimed):
                            remaining[pid] -= 1
                            got.more = rows.has_more() and remaining[pid] > 0
                            ctx.metrics.quota(pid, remaining[pid])
                            claimed.setdefault(pid, []).append(got)
                            results[i] = got
                            break
                        reason = got
                    why.append((pid, reason))
                if results[i] is None:
                    results[i] = Refusal(tuple(why))
            every = [c for pid in sorted(claimed) for c in claimed[pid]]
            transition_many(
                conn,
                [c.envio_id for c in every],
                Estado.PENDIENTE,
                Estado.ENVIANDO,
                origin=Origin.SENDER,
                at=at,
                detail=f"claimed by {ctx.sender_id}",
                columns={
                    "claimed_at": at,
                    "claimed_by": ctx.sender_id,
                    "attempts": Increment(),
                    "next_attempt_at": None,
                },
                per_row={"claim_programacion_id": {c.envio_id: c.programacion_id for c in every}},
            )
        return results

    def attempt_until_settled() -> list[Claimed | Refusal | LeaseLost]:
        try:
            return attempt()
        except StaleTransition as exc:  # a row moved under us (not locked on SQLite): start again
            raise TransactionConflict(str(exc)) from None

    results = retrying(f"claim batch of {len(requests)}", attempt_until_settled)
    for line in events:
        log.info(line)
    for got in (
        results if log.isEnabledFor(logging.INFO) else ()
    ):  # a line per row costs: built only if kept
        if isinstance(got, Claimed):
            log.info(
                _change(
                    got.row,
                    got.programacion_id,
                    got.cliente_id,
                    Estado.PENDIENTE,
                    Estado.ENVIANDO,
                    ctx,
                    attempt=got.attempt,
                    phone=got.to,
                )
            )
    return results


def _prefetch(conn: Connection, wanted: collections.Counter, at: dt.datetime) -> dict[int, _Rows]:
    """Every wanted campaign's first ready rows, in one statement (a campaign read short of
    rows, say because some were unsendable, reads on by itself)."""
    cursors = {campania_id: _Rows(conn, campania_id, at, n) for campania_id, n in wanted.items()}
    if not cursors:
        return cursors
    params: dict[str, Any] = {**by_value(Estado.PENDIENTE), "at": at}
    for i, rows in enumerate(cursors.values()):
        params.update({f"campania_id_{i}": rows.campania_id, f"n_{i}": rows.read_ahead})
    by_campaign: dict[int, list[dict]] = {campania_id: [] for campania_id in cursors}
    for row in conn.query(batches.ready_rows_many(len(cursors)), params):
        by_campaign[int(row["campania_id"])].append(row)
    for campania_id, rows in cursors.items():
        rows.take(by_campaign[campania_id])
    return cursors


def _open_schedules(
    conn: Connection, ctx: Context, pids: list[int], now: dt.datetime, at: dt.datetime
) -> tuple[dict[int, SendingSchedule], dict[int, str]]:
    """The schedules as they are now, and why each closed one may not send."""
    statement, params = batches.SCHEDULES_BY_ID.with_lists(pids=pids)
    schedules = {
        s.programacion_id: s for s in map(SendingSchedule.from_row, conn.query(statement, params))
    }
    reasons = {}
    for pid in pids:
        schedule = schedules.get(pid)
        reason = (
            "schedule gone"
            if schedule is None
            else (
                closed_reason(schedule, now)
                or legacy_lock_reason(schedule, at, ctx.settings.lease_ttl_s)
            )
        )
        if reason:
            reasons[pid] = reason
    return schedules, reasons


def _quotas(
    conn: Connection,
    ctx: Context,
    schedules: dict[int, SendingSchedule],
    day: dt.date,
    shift: dt.timedelta,
) -> dict[int, int]:
    """Each open schedule's quota left today, its count rows locked until the claim commits."""
    pids = sorted(schedules)
    if not pids:
        return {}
    rows, params = batches.values_list("d", ({"pid": pid, "day": day, "zero": 0} for pid in pids))
    conn.execute(batches.expand(batches.ENSURE_DAILY_MANY, rows=rows), params)
    lock, params = batches.LOCK_DAILY_MANY.with_lists(pids=pids)
    flying_statement, _ = batches.IN_FLIGHT_MANY.with_lists(pids=pids)
    sent = {
        int(r["programacion_id"]): int(r["enviados"])
        for r in conn.query(lock, {**params, "day": day})
    }
    start, end = (bound + shift for bound in outbox.day_bounds(day))
    flying = {
        int(r["pid"]): int(r["n"])
        for r in conn.query(
            flying_statement, {**params, **by_value(Estado.ENVIANDO), "start": start, "end": end}
        )
    }
    out = {}
    for pid in pids:
        out[pid] = quota_remaining(schedules[pid].cupo_diario, sent.get(pid, 0), flying.get(pid, 0))
        ctx.metrics.quota(pid, out[pid])
    return out


def _take_row(
    conn: Connection,
    ctx: Context,
    rows: _Rows,
    schedule: dict,
    at: dt.datetime,
    day: dt.date,
    refreshed: set[int],
    events: list[str],
) -> Claimed | str:
    """The schedule's next sendable row (claimed by the caller's UPDATE), or why none."""
    cliente_id = schedule.cliente_id
    for _ in range(MAX_REJECTS_PER_CLAIM + 1):
        row = rows.next()
        if row is None:
            return ROWS_LOCKED if rows.locked_elsewhere() else "queue empty"
        problem, to, text = vet(row)
        problem = (
            problem or too_long(text, ctx.gateway) or duplicate_problem(conn, row, to, refreshed)
        )
        if not problem:
            return Claimed(
                row, schedule.programacion_id, cliente_id, to, text, at, day, schedule=schedule
            )
        try:
            transition(
                conn,
                row.id,
                Estado.PENDIENTE,
                Estado.ERROR,
                origin=Origin.SENDER,
                at=at,
                detail=f"not sendable: {problem}",
                columns={"last_error": problem[:TEXT_MAX]},
            )
        except StaleTransition:
            continue  # another schedule of the campaign took it first
        events.append(
            _change(
                row,
                schedule.programacion_id,
                cliente_id,
                Estado.PENDIENTE,
                Estado.ERROR,
                ctx,
                detail=problem,
                phone=row.telefono_wapp,
            )
        )
    return "busy"


def claim_next(
    conn: Connection, ctx: Context, lane: int, programacion_id: int, single: bool = False
) -> Claimed | str:
    """Claim the schedule's next sendable row for one lane (a batch of one), or say why not.

    `lane` is the lease key: the schedule's cliente_id, or SINGLE_SESSION_LEASE
    (with `single`, for every client's schedules).
    """
    (got,) = claim_batch(conn, ctx, [ClaimRequest(lane, (programacion_id,), single)])
    if isinstance(got, LeaseLost):
        raise got
    return got if isinstance(got, Claimed) else got.reasons[0][1]


def _change(
    row: OutboxRow,
    programacion_id: int,
    cliente_id: int,
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
        envio_id=row.id,
        campania_id=row.campania_id,
        programacion_id=programacion_id,
        cliente_id=cliente_id,
        **{"from": from_state, "to": to_state},
        outcome=outcome,
        message_id=message_id,
        phone=mask(phone),
        attempt=attempt,
        sender=ctx.sender_id,
        detail=detail,
    )


# -- record ------------------------------------------------------------------------------


def _write_outcome(
    conn: Connection, ctx: Context, claimed: Claimed, result: SendResult, now: dt.datetime
) -> Estado | None:
    """One row's outcome other than sent (`_write_sent`), per ACTIONS, in the caller's
    transaction; returns where the row went."""
    action = ACTIONS[result.outcome]
    to_state = action.row_goes_to
    detail = _detail(result)
    eid = claimed.envio_id
    if to_state is None:  # unknown: stays enviando, never retried automatically
        outbox.note_on_stuck_row(conn, eid, f"unknown outcome: {result.reason}"[:TEXT_MAX])
        return None
    columns: dict = {"last_error": (result.reason or result.outcome.value)[:TEXT_MAX]}
    if action.give_back_attempt:
        columns["attempts"] = Increment(-1)
    wait_s = None
    if result.outcome is Outcome.GATEWAY_ERROR:
        if claimed.attempt >= ctx.settings.max_attempts:
            to_state = Estado.ERROR
        else:
            wait_s = ctx.settings.retry_after_s
    if result.outcome is Outcome.RATE_LIMITED:
        wait_s = (
            result.retry_after_s if result.retry_after_s is not None else ctx.settings.retry_after_s
        )
    if to_state is Estado.PENDIENTE and wait_s:
        columns["next_attempt_at"] = now + dt.timedelta(seconds=wait_s)
    # "Not sent" only undoes our own claim: a later claim of the row (requeued by an operator,
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
    return to_state


def _detail(result: SendResult) -> str:
    return f"{result.outcome.value}: {result.reason}" if result.reason else result.outcome.value


def _write_sent(
    conn: Connection, claimed: list[Claimed], results: list[SendResult], now: dt.datetime
) -> None:
    """Confirmed sends: one UPDATE, their history rows, one upsert of the day's counts (on
    the day each was claimed on: its quota was checked there).

    A placeholder instead of an id is noted on the row: the watcher shows such sends as
    unverifiable, apart from ids lost (envios_sent_unverifiable). A confirmed send is
    recorded whoever holds the row now: it was delivered.
    """
    pairs = list(zip(claimed, results, strict=True))
    transition_many(
        conn,
        [c.envio_id for c in claimed],
        Estado.ENVIANDO,
        Estado.ENVIADO,
        origin=Origin.SENDER,
        at=now,
        detail={c.envio_id: _detail(r) for c, r in pairs},
        columns={"fecha_envio": now},
        per_row={
            "message_id": {c.envio_id: r.message_id for c, r in pairs},
            "last_error": {
                c.envio_id: NO_ID_FROM_GATEWAY if r.gateway_gives_no_id else None for c, r in pairs
            },
        },
    )
    days = collections.Counter((c.programacion_id, c.day or c.claimed_at.date()) for c in claimed)
    rows, params = batches.values_list(
        "d",
        ({"pid": pid, "day": day, "n": n, "now": now} for (pid, day), n in sorted(days.items())),
    )
    conn.execute(batches.expand(batches.COUNT_SENT_MANY, rows=rows), params)


def record_batch(
    conn: Connection,
    ctx: Context,
    items: Sequence[tuple[Claimed, SendResult]],
    *,
    confirmed_logged: bool = False,
) -> list[Action]:
    """Write what the gateway said for many rows, per ACTIONS, in one transaction.

    Each row's change and its history row (and the daily count for enviado) commit
    together. If a row was moved by someone else meanwhile, the batch is rolled back
    and written row by row, so only that row is skipped (as a single record would).
    """
    if not confirmed_logged and log.isEnabledFor(logging.INFO):
        for claimed, result in items:
            if ACTIONS[result.outcome].row_goes_to is Estado.ENVIADO:
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
    where: dict[int, Estado | None] = {}

    def attempt() -> None:
        where.clear()
        now = ctx.clock.db_now(
            conn
        )  # the database's clock: fecha_envio, created_at, next_attempt_at
        with conn.transaction():
            sent = [(c, r) for c, r in items if ACTIONS[r.outcome].row_goes_to is Estado.ENVIADO]
            if sent:
                _write_sent(conn, [c for c, _ in sent], [r for _, r in sent], now)
                where.update((c.envio_id, Estado.ENVIADO) for c, _ in sent)
            for claimed, result in items:
                if claimed.envio_id not in where:
                    where[claimed.envio_id] = _write_outcome(conn, ctx, claimed, result, now)

    what = (
        f"recording {items[0][1].outcome.value} for row {items[0][0].envio_id}"
        if len(items) == 1
        else f"recording {len(items)} outcomes"
    )
    try:
        retrying(what, attempt, patience_s=RECORD_PATIENCE_S)
    except StaleTransition as exc:
        if len(items) > 1:
            return [record_batch(conn, ctx, [item], confirmed_logged=True)[0] for item in items]
        claimed, result = items[0]
        log.error(
            kv(
                "record_skipped",
                envio_id=claimed.envio_id,
                outcome=result.outcome,
                detail=f"row was moved by someone else: {exc}",
            )
        )
        return [ACTIONS[result.outcome]]
    except DatabaseError as exc:
        # The rows stay enviando: shown as stuck, resolved by `envios reconcile`.
        for claimed, result in items:
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
    for claimed, result in items:
        _log_recorded(ctx, claimed, result, where.get(claimed.envio_id))
    return [ACTIONS[result.outcome] for _, result in items]


def record_outcome(conn: Connection, ctx: Context, claimed: Claimed, result: SendResult) -> Action:
    """Write what the gateway said for one row (a batch of one)."""
    return record_batch(conn, ctx, [(claimed, result)])[0]


def _log_recorded(
    ctx: Context, claimed: Claimed, result: SendResult, to_state: Estado | None
) -> None:
    quiet = to_state is Estado.ENVIADO and (
        result.gateway_gives_no_id or result.message_id is not None
    )
    if quiet and not log.isEnabledFor(logging.INFO):
        return  # the common line, not kept at this level: not built either
    line = _change(
        claimed.row,
        claimed.programacion_id,
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


# -- batching ------------------------------------------------------------------------------------


class _Waiter:
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: Any):
        self.item, self.done, self.result, self.error = item, threading.Event(), None, None


class Batcher:
    """Group commit: requests from many lanes' threads run as one call on one pooled connection.

    `submit(item)` blocks until the batch holding the item is written. While one batch
    runs, the next requests queue up and form the next batch, so the batch grows with
    the load and a lone request waits for nobody.
    """

    def __init__(
        self,
        name: str,
        pool: ConnectionPool,
        run: Callable[[Connection, list[Any]], list[Any]],
        max_batch: int = MAX_BATCH,
        workers: int = 1,
    ):
        self.name, self.pool, self.run, self.max_batch = name, pool, run, max_batch
        self.workers = workers  # batches written at once, each on its own connection
        self._queue: list[_Waiter] = []
        self._cond = threading.Condition()
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self.batches = 0
        self.items = 0

    def submit(self, item: Any) -> Any:
        waiter = _Waiter(item)
        with self._cond:
            if self._closed:
                raise EnviosError(f"{self.name}: the sender is closed")
            if self._idle == 0 and len(self._threads) < self.workers:
                thread = threading.Thread(
                    target=self._serve, name=f"batch-{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._queue.append(waiter)
            self._cond.notify()
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def _serve(self) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while not self._queue and not self._closed:
                    self._cond.wait()
                self._idle -= 1
                if not self._queue:
                    return
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                with self.pool.connection() as conn:
                    results = self.run(conn, [w.item for w in batch])
                for waiter, result in zip(batch, results, strict=True):
                    waiter.result = result
            except BaseException as exc:  # noqa: BLE001 - every waiter gets it, in its own lane
                for waiter in batch:
                    waiter.error = exc
            self.batches += 1
            self.items += len(batch)
            for waiter in batch:
                waiter.done.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(10)


# -- the lane -------------------------------------------------------------------------------------


@dataclass
class WorkerResult:
    cliente_id: int
    stop_reason: str = ""
    session_state: str = ""
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    failed: bool = False  # crashed or lost its database: a row may be left enviando


class Lane:
    """One session's sends under its lease; `step()` is one status -> claim -> send -> record.

    `cliente_id` is the lane: a client's session, or SINGLE_SESSION_LEASE with `single`.
    The scheduler owns the timing: `step()` returns the seconds to wait before the
    lane's next step, or None when the lane has stopped (`result.stop_reason` says why).
    """

    def __init__(self, ctx: Context, cliente_id: int, single: bool = False):
        self.ctx = ctx
        self.cliente_id = int(cliente_id)
        self.single = single
        self.lease_lost = threading.Event()
        self.lost = False  # the lease belongs to someone else now: never released by us
        self.result = WorkerResult(self.cliente_id)
        self.works: list[ScheduleWork] | None = None  # planned by the first step
        self.in_flight = 0  # steps running now (the scheduler's count)
        self.next_due = 0.0  # monotonic time of the next step (token bucket in throughput mode)
        self.not_before = 0.0  # throughput mode: no step before this (the gateway said slow down)
        self._lock = threading.Lock()
        self._plan_lock = threading.Lock()
        self._last_claim: dict[int, float] = {}
        self._locked_in_a_row = 0  # claims answered ROWS_LOCKED since the last row claimed
        self._status_at = -1e9

    @property
    def stopped(self) -> bool:
        return bool(self.result.stop_reason)

    def stop(self, reason: str, *, failed: bool = False) -> None:
        with self._lock:
            if not self.result.stop_reason:  # the first reason is the one reported
                self.result.stop_reason = reason
            self.result.failed |= failed

    def step(self) -> float | None:
        try:
            return self._step()
        except LeaseLost as exc:
            self.lost = True
            self.stop(f"lease lost: {exc}")
        except EnviosError as exc:
            self.stop(f"database problem: {exc}", failed=True)
        except Exception as exc:  # a bug must not kill the sender or keep the lease
            log.exception("session %s worker crashed", self.cliente_id)
            self.stop(f"crashed: {type(exc).__name__}", failed=True)
        return None

    def _clients(self) -> list[int]:
        """The cliente_ids this lane serves now (metrics are per cliente_id, alerts join them)."""
        works = self.works or []
        return sorted({w.schedule.cliente_id for w in works}) if self.single else [self.cliente_id]

    def _plan(self) -> None:
        ctx = self.ctx
        now = ctx.clock.now()
        with ctx.pool.connection() as conn:
            plan = eligible_work(
                conn,
                now,
                None if self.single else self.cliente_id,
                at=ctx.clock.to_db(conn, now),
                lock_ttl_s=ctx.settings.lease_ttl_s,
            )
        for pid, remaining in plan.quota.items():
            ctx.metrics.quota(pid, remaining)
        self.works = lane_work(plan, self.cliente_id, self.single)

    def _step(self) -> float | None:
        ctx, cliente_id = self.ctx, self.cliente_id
        if self.stopped:
            return None
        if ctx.stop.is_set():
            self.stop("sender stopping")
            return None
        with self._plan_lock:  # the first of the lane's steps plans; the others wait for it
            if self.works is None:
                self._plan()
        if not self.works:
            self.stop("no work left (queue empty, quota used or schedules closed)")
            return None
        if self.lease_lost.is_set():
            raise LeaseLost(f"lease of session {cliente_id} could not be renewed")
        if not ctx.kill_switch():
            self.stop("kill switch off")
            return None
        stopped = ctx.gateway_stopped()
        if stopped:
            self.stop(stopped)
            return None
        if not self._session_ready():
            return None
        claimed = self._claim()
        if claimed is None or isinstance(claimed, float):
            return claimed
        return self._send(claimed)

    def _session_ready(self) -> bool:
        ctx, cliente_id = self.ctx, self.cliente_id
        if ctx.settings.throughput and time.monotonic() - self._status_at < STATUS_EVERY_S:
            return True
        # A single session answers for every client: ask with a real cliente_id.
        status = ctx.gateway.status(
            self.works[0].schedule.cliente_id if self.single else cliente_id
        )
        for client in self._clients():  # the one session's state is every client's
            ctx.metrics.session(client, status.state)
        self.result.session_state = status.state
        if not status.ready:
            log.info(
                kv(
                    "session_not_ready",
                    cliente_id=cliente_id,
                    state=status.state,
                    detail=status.detail,
                )
            )
            self.stop(
                f"session {status.state}: {status.detail}"
                if status.detail
                else f"session {status.state}"
            )
            return False
        self._status_at = time.monotonic()
        return True

    def _claim(self) -> Claimed | float | None:
        """The lane's next row; None: the lane stops; a float: ask again after that long."""
        ctx, cliente_id = self.ctx, self.cliente_id
        with self._lock:
            order = sorted(self.works, key=lambda w: self._last_claim.get(w.programacion_id, 0.0))
            pids = tuple(w.programacion_id for w in order)
        got = ctx.claims.submit(ClaimRequest(cliente_id, pids, self.single))
        if isinstance(got, LeaseLost):
            raise got
        if isinstance(got, Refusal):
            for pid, why in got.reasons:
                log.debug(kv("no_claim", cliente_id=cliente_id, programacion_id=pid, reason=why))
            locked = any(why == ROWS_LOCKED for _, why in got.reasons)
            with self._lock:
                self._locked_in_a_row = self._locked_in_a_row + 1 if locked else 0
                if locked and self._locked_in_a_row <= LOCKED_RETRIES:
                    return LOCKED_RETRY_S
            self.stop("nothing claimable: " + got.summary())
            return None
        with self._lock:
            self._locked_in_a_row = 0
            self._last_claim[got.programacion_id] = time.monotonic()
        return got

    def _send(self, claimed: Claimed) -> float | None:
        ctx = self.ctx
        if ctx.journal:
            ctx.journal.sending(claimed)  # on disk before the request leaves
        result = send_guarded(
            ctx.gateway,
            claimed.cliente_id,
            claimed.to,
            claimed.text,
            claimed.envio_id,
            name=(claimed.row.nombre_destino or "").strip() or None,
        )
        if ctx.journal:
            ctx.journal.said(claimed, result)  # on disk before the database is written
        ctx.metrics.outcome(result.outcome, result.latency_s)
        with self._lock:
            self.result.outcomes[result.outcome] += 1
        action = ctx.records.submit((claimed, result))
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
            self.stop(result.reason)  # (the next step would say the same)
            return None
        if action.then == STOP_ALL:
            log.error(
                kv(
                    "sender_stopped_by_gateway",
                    cliente_id=claimed.cliente_id,
                    outcome=result.outcome,
                    detail=f"{result.reason}; every session stops until a person fixes the account",
                )
            )
            ctx.stop.set()
            self.stop(f"{result.outcome.value}: {result.reason}")
            return None
        if action.then == STOP_SESSION:
            self.stop(f"{result.outcome.value}: {result.reason}")
            return None
        delay = 0.0
        if action.then == SLOW_DOWN:
            wait_s = (
                result.retry_after_s
                if result.retry_after_s is not None
                else ctx.settings.retry_after_s
            )
            delay = max(
                wait_s, 0.0 if ctx.settings.throughput else ctx.pacing_delay(claimed.schedule)
            )
        elif action.pace and not ctx.settings.throughput:
            delay = ctx.pacing_delay(claimed.schedule)
        if delay > 0 and (not claimed.more or action.row_goes_to is not Estado.ENVIADO):
            # Before waiting: is there still work (this schedule ran dry, or the row is back
            # waiting for a retry)? A pass must not wait out a delay with nothing left to send.
            self._plan()
            if not self.works:
                self.stop("no work left (queue empty, quota used or schedules closed)")
                return None
        return delay
