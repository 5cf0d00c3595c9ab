"""The refresher: reads the database every `monitor.refresh_s` on its own thread.

Each refresh runs the named reads of `monitor.queries`, each under its own
time limit (`Connection.time_limit`); a read that fails or runs over is
abandoned, counted in `query_errors[name]` and its last good result is kept,
with the time of its last success beside it. The result is published as one
immutable `State` that the collector serves: a scrape never touches the
database and never waits for a refresh.

When the database is unreachable the refresher keeps running: `up` goes to
False, one log line says so (once per outage, not once per refresh), the last
values stay published with their age visible, and the next refresh tries
again; the recovery is logged too. SQLite is reopened on every refresh (so a
file replaced or moved away is noticed); a MySQL connection is kept and, when
the server dropped it, reopened once within the same refresh.

After every refresh that reached the database, the auto-pause (monitor.autopause)
is evaluated on the fresh values and applied.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from envios.monitor import autopause
from envios.monitor import queries as q
from envios.monitor.campaigns import watcher_identity
from envios.monitor.counts import OutboxCounts

from envios.clock import Clock
from envios.domain import AUTO_PAUSE_REASONS, ESTADOS, stuck_cutoff
from envios.errors import DatabaseNotAnswering, DatabaseUnavailable
from envios.store.connector import MYSQL, Connection, Database

log = logging.getLogger("envios.watch")

# The reads of one refresh, in order. Tests may replace one (e.g. with a slow one).
QUERY_NAMES = (
    "campaigns",
    "messages",
    "stuck",
    "missing_message_id",
    "error_ratio",
    "schedules",
    "delivery",
    "settled",
)
AUTOPAUSE = "autopause"  # the query-error label of failed auto-pause writes
ERROR_LABELS = (*QUERY_NAMES, AUTOPAUSE)


def _default_queries() -> dict[str, Callable[..., Any]]:
    # Per-campaign counts read incrementally (monitor.counts), once per refresh for both reads.
    counts = OutboxCounts()
    return {
        "campaigns": lambda conn, r: q.campaigns(conn),
        "messages": lambda conn, r: counts.up_to_date(conn, r).messages(r.campaign_ids),
        "stuck": lambda conn, r: q.stuck(conn, stuck_cutoff(r.now, r.stuck_after_s)),
        "missing_message_id": lambda conn, r: q.missing_message_ids(
            conn, r.campaigns, counts.up_to_date(conn, r).without_message_id(r.campaign_ids)
        ),
        "error_ratio": lambda conn, r: q.finished_in_window(
            conn, r.now - dt.timedelta(seconds=r.window_s), r.now
        ),
        "schedules": lambda conn, r: q.schedules(conn),
        "delivery": lambda conn, r: q.delivery(conn, r.campaign_ids),
        "settled": lambda conn, r: q.settled_unknowns(conn, r.campaign_ids),
    }


@dataclass(frozen=True)
class ReadContext:
    """What a read needs: the refresh's "now" and the campaigns it covers."""

    now: dt.datetime
    campaigns: dict[int, q.CampaignRow]
    stuck_after_s: float
    window_s: float

    @property
    def campaign_ids(self) -> list[int]:
        return sorted(self.campaigns)


@dataclass(frozen=True)
class CampaignStats:
    campania_id: int
    estado: str
    messages: dict[str, int] | None  # None until the messages read has succeeded once
    stuck: int
    oldest_stuck_claim: dt.datetime | None
    finished: int
    errors: int
    window_start: dt.datetime  # now - window_s, or the last resume when later
    missing: int
    missing_since_resume: int
    legacy_without_id: int
    # the campaign's last resume, as the campaigns read saw it
    resumed_at: dt.datetime | None = None
    unverifiable: int = 0  # sent through a gateway that gives no ids (placeholder): not ids lost
    unverifiable_since_resume: int = 0  # the campaign's last resume, as the campaigns read saw it
    delivery: q.Delivery | None = None  # acknowledgements of its enviado rows
    settled: dict[str, int] | None = None  # unknowns settled: {"evidence": n, "person": n}

    @property
    def error_ratio(self) -> float:
        return self.errors / self.finished if self.finished else 0.0


@dataclass(frozen=True)
class Snapshot:
    """The database as the last refresh saw it (campaigns not finalizado only)."""

    taken_at: dt.datetime
    campaigns: dict[int, CampaignStats]
    schedules: list[q.ScheduleRow]
    fresh: frozenset[str]  # reads that succeeded in the refresh that made this snapshot
    available: frozenset[str]  # reads that have succeeded at least once
    stuck_after_s: float
    window_s: float


@dataclass(frozen=True)
class State:
    """Everything the collector and /healthz serve; replaced whole after each refresh."""

    snapshot: Snapshot | None = None
    up: bool = False
    refreshes: int = 0  # refresh attempts so far
    last_refresh_epoch: float | None = None  # last refresh in which every read succeeded
    last_success_mono: float | None = None
    refresh_duration_s: float | None = None
    query_errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_LABELS, 0))
    query_last_success_epoch: dict[str, float] = field(default_factory=dict)
    query_duration_s: dict[str, float] = field(default_factory=dict)
    autopause_total: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(AUTO_PAUSE_REASONS, 0)
    )


def default_query_timeout(refresh_s: float) -> float:
    """Each read's time limit: half the refresh interval, between 1 and 10 seconds."""
    return min(10.0, max(1.0, refresh_s / 2))


def io_timeout(refresh_s: float, query_timeout_s: float) -> float:
    """How long a read or write may wait on the socket before the server counts as not answering.

    A little more than the statement limit (a slow query is stopped by the server first and
    counted as a query error), and under refresh_s, so a server frozen with our connection
    open is noticed, logged and shown (up 0) within 2 x refresh_s: at most one interval
    until the next read, plus this.
    """
    return query_timeout_s + min(1.0, refresh_s / 4)


class Refresher:
    def __init__(
        self,
        config,
        *,
        clock: Clock | None = None,
        database: Database | None = None,
        query_timeout_s: float | None = None,
        queries: dict[str, Callable[..., Any]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        identity: str | None = None,
    ):
        self.config = config
        self.monitor = config.monitor
        self.refresh_s = float(self.monitor.refresh_s)
        self.clock = clock or Clock(config.tz)
        # The database's clock minus the configured zone's (sender.clock), learnt at each refresh.
        self.db_shift = dt.timedelta(0)
        self.query_timeout_s = query_timeout_s or default_query_timeout(self.refresh_s)
        self.database = database or Database(
            config.database.url,
            connect_timeout_s=min(10.0, max(1.0, self.refresh_s)),
            read_timeout_s=io_timeout(self.refresh_s, self.query_timeout_s),
        )
        self.queries = {**_default_queries(), **(queries or {})}
        self.monotonic = monotonic
        self.identity = identity or watcher_identity()
        self.state = State()
        self._results: dict[str, Any] = {}
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # one refresh at a time
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._down_since: float | None = None
        self._busy_since: float | None = None
        # A refresh running longer than this is hung (e.g. a server that stopped answering
        # on an open connection): the collector then reports envios_watcher_up 0.
        self.stall_after_s = max(
            3 * self.refresh_s,
            len(QUERY_NAMES) * self.query_timeout_s + self.database.connect_timeout_s + 5,
        )
        self._logged_errors: dict[str, str] = {}
        self._schema_warned = False

    # -- one refresh ---------------------------------------------------------

    def refresh(self, *, raise_unavailable: bool = False) -> bool:
        """Read everything once, publish the result, auto-pause; True when the DB was reached.

        With raise_unavailable the DatabaseUnavailable is raised (after publishing
        up=0) instead of logged: `envios watch --once` reports it as one line.
        """
        with self._lock:
            started = self._busy_since = self.monotonic()
            try:
                return self._refresh(started, raise_unavailable)
            finally:
                self._busy_since = None

    def _refresh(self, started: float, raise_unavailable: bool) -> bool:
        local = self.clock.now()  # the configured zone: epochs
        state = self.state
        errors = dict(state.query_errors)
        last_ok = dict(state.query_last_success_epoch)
        durations = dict(state.query_duration_s)
        autopaused = dict(state.autopause_total)
        fresh: set[str] = set()
        up, failure = True, None
        try:
            self._read_with_retry(local, errors, last_ok, durations, fresh)
            # The database's clock from here on: claims, history and pauses are on it.
            now = local + self.db_shift
            self._autopause(now, errors, last_ok, durations, fresh, autopaused)
        except DatabaseUnavailable as exc:
            up, failure = False, exc
            self._close()
        finally:
            if self.database.dialect != MYSQL:
                self._close()  # SQLite: reopen the file at its path next time
        finished = self.monotonic()
        complete = up and fresh >= set(QUERY_NAMES)
        if up:
            snapshot = self._snapshot(local + self.db_shift, fresh)
        elif state.snapshot is not None:  # keep serving the last values, marked not fresh
            snapshot = replace(state.snapshot, fresh=frozenset())
        else:
            snapshot = None
        new_state = State(
            snapshot=snapshot,
            up=up,
            refreshes=state.refreshes + 1,
            last_refresh_epoch=self.clock.to_epoch(local) if complete else state.last_refresh_epoch,
            last_success_mono=finished if complete else state.last_success_mono,
            refresh_duration_s=finished - started,
            query_errors=errors,
            query_last_success_epoch=last_ok,
            query_duration_s=durations,
            autopause_total=autopaused,
        )
        with self._changed:
            self.state = new_state
            self._changed.notify_all()
        self._log_outage(failure, raise_unavailable)
        if failure is not None and raise_unavailable:
            raise failure
        return up

    def _read_with_retry(self, now, errors, last_ok, durations, fresh) -> None:
        reused = self._conn is not None
        try:
            self._read_all(self._connection(), now, errors, last_ok, durations, fresh)
        except DatabaseNotAnswering:
            raise  # frozen, not dropped: reconnecting would only wait again
        except DatabaseUnavailable:
            if not reused:
                raise
            # The server may have dropped an idle connection (wait_timeout, a
            # restart, KILL): reopen once before calling it an outage.
            self._close()
            fresh.clear()
            self._read_all(self._connection(), now, errors, last_ok, durations, fresh)

    def _read_all(self, conn: Connection, local, errors, last_ok, durations, fresh) -> None:
        epoch = self.clock.to_epoch(local)
        # the database server's wall clock: reads compare with its times
        now = self.clock.to_db(conn, local)
        self.db_shift = now - local
        for name in QUERY_NAMES:
            campaigns = self._results.get("campaigns", {})
            context = ReadContext(
                now, campaigns, float(self.monitor.stuck_after_s), float(self.monitor.window_s)
            )
            self._run_one(conn, name, context, epoch, errors, last_ok, durations, fresh)

    def _run_one(self, conn, name, context, epoch, errors, last_ok, durations, fresh) -> None:
        started = self.monotonic()
        try:
            with conn.time_limit(self.query_timeout_s):
                result = self.queries[name](conn, context)
        except DatabaseUnavailable:
            raise  # an outage, shown by envios_watcher_up, not a query error
        except Exception as exc:  # DatabaseError, or a driver error the connector did not translate
            errors[name] = errors.get(name, 0) + 1
            durations[name] = self.monotonic() - started
            self._log_query_error(name, exc)
            return
        durations[name] = self.monotonic() - started
        self._results[name] = result
        last_ok[name] = epoch
        fresh.add(name)
        if self._logged_errors.pop(name, None) is not None:
            log.info("query %s succeeded again", name)

    def _autopause(self, now, errors, last_ok, durations, fresh, autopaused) -> None:
        settings = self.monitor.autopause
        if not settings.enabled:
            return
        verdicts = autopause.evaluate(self._snapshot(now, fresh), settings)
        if not verdicts:
            return
        conn = self._connection()
        try:
            with conn.time_limit(self.query_timeout_s):
                done = autopause.apply(conn, verdicts, now, self.identity)
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # DatabaseError, or a driver error the connector did not translate
            errors[AUTOPAUSE] += 1
            self._log_query_error(AUTOPAUSE, exc)
            return
        self._logged_errors.pop(AUTOPAUSE, None)
        for verdict, _ids in done:
            autopaused[verdict.reason] = autopaused.get(verdict.reason, 0) + 1
        if done:  # show the new pauses in this refresh's snapshot
            fresh.discard("schedules")
            context = ReadContext(now, self._results.get("campaigns", {}), 0, 0)
            self._run_one(
                conn,
                "schedules",
                context,
                self.clock.to_epoch(now - self.db_shift),
                errors,
                last_ok,
                durations,
                fresh,
            )

    # -- the published snapshot ---------------------------------------------------

    def _snapshot(self, now: dt.datetime, fresh: set[str]) -> Snapshot:
        r = self._results
        stuck_after_s = float(self.monitor.stuck_after_s)
        window_s = float(self.monitor.window_s)
        window_start = now - dt.timedelta(seconds=window_s)
        messages = r.get("messages")
        stats = {}
        for campania_id, camp in r.get("campaigns", {}).items():
            st = r.get("stuck", {}).get(campania_id)
            fin = r.get("error_ratio", {}).get(campania_id)
            mis = r.get("missing_message_id", {}).get(campania_id)
            stats[campania_id] = CampaignStats(
                campania_id=campania_id,
                estado=camp.estado,
                messages=(
                    None
                    if messages is None
                    else messages.get(campania_id, dict.fromkeys(ESTADOS, 0))
                ),
                stuck=st.count if st else 0,
                oldest_stuck_claim=st.oldest_claim if st else None,
                finished=fin.finished if fin else 0,
                errors=fin.errors if fin else 0,
                window_start=max(window_start, camp.resumed_at)
                if camp.resumed_at
                else window_start,
                missing=mis.missing if mis else 0,
                missing_since_resume=mis.since_resume if mis else 0,
                legacy_without_id=mis.legacy if mis else 0,
                resumed_at=camp.resumed_at,
                unverifiable=mis.unverifiable if mis else 0,
                unverifiable_since_resume=mis.unverifiable_since_resume if mis else 0,
                delivery=r.get("delivery", {}).get(campania_id),
                settled=r.get("settled", {}).get(campania_id),
            )
        active = set(stats)
        schedules = [s for s in r.get("schedules", []) if s.campania_id in active]
        return Snapshot(
            now, stats, schedules, frozenset(fresh), frozenset(r), stuck_after_s, window_s
        )

    # -- connection and logging ----------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.database.connect()
            try:
                with self._conn.time_limit(self.query_timeout_s):
                    ready = q.schema_ready(self._conn)
            except DatabaseUnavailable:
                raise
            except Exception:  # noqa: BLE001 - the reads will fail and say why
                ready = True
            if not ready and not self._schema_warned:
                log.error(
                    "the schema of %s is not upgraded: run `envios db upgrade`",
                    self.database.describe(),
                )
            self._schema_warned = not ready
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _log_outage(self, failure: Exception | None, quiet: bool) -> None:
        if failure is None:
            if self._down_since is not None:
                log.warning(
                    "database reachable again after %.0fs; watcher up",
                    self.monotonic() - self._down_since,
                )
                self._down_since = None
            return
        if self._down_since is None:
            self._down_since = self.monotonic()
            if not quiet:
                log.error(
                    "database unreachable: %s; serving the last values (envios_watcher_up 0),"
                    " retrying every %gs",
                    failure,
                    self.refresh_s,
                )

    def _log_query_error(self, name: str, exc: Exception) -> None:
        text = str(exc)
        if self._logged_errors.get(name) != text:
            self._logged_errors[name] = text
            log.warning("query %s failed (last good values kept): %s", name, text)

    # -- the thread ----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="envios-watch-refresh", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = self.monotonic()
            try:
                self.refresh()
            except Exception:  # never let the thread die: the next refresh tries again
                log.exception("refresh failed")
            self._stop.wait(max(0.0, self.refresh_s - (self.monotonic() - started)))

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._lock.acquire(timeout=timeout):  # a hung refresh keeps its connection
            try:
                self._close()
            finally:
                self._lock.release()

    def wait_for_refreshes(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Block until `count` more refreshes have completed (True) or the timeout passed."""
        with self._changed:
            target = self.state.refreshes + count
            return self._changed.wait_for(lambda: self.state.refreshes >= target, timeout)

    def stalled(self) -> float | None:
        """Seconds the current refresh has been running when that is more than stall_after_s."""
        started = self._busy_since
        if started is None:
            return None
        running = self.monotonic() - started
        return running if running > self.stall_after_s else None

    def health(self) -> tuple[bool, str]:
        """(fresh?, one line): fresh when the last complete refresh is younger than
        3 x refresh_s."""
        state = self.state
        limit = 3 * self.refresh_s
        stalled = self.stalled()
        if stalled is not None:
            return (
                False,
                f"stale: a refresh has been running for {stalled:.0f}s (database not answering?)",
            )
        if state.last_success_mono is None:
            return False, f"stale: no complete refresh yet (db up={int(state.up)})"
        age = self.monotonic() - state.last_success_mono
        if age < limit:
            return True, f"ok: last refresh {age:.1f}s ago (limit {limit:g}s)"
        return (
            False,
            (
                f"stale: last complete refresh {age:.1f}s ago"
                f" (limit {limit:g}s, db up={int(state.up)})"
            ),
        )
