"""`envios status [--all]`: per-campaign progress in an aligned table."""

from __future__ import annotations

import argparse
import datetime as dt

from envios.clock import Clock
from envios.commands._table import format_table, shorten
from envios.domain import (
    ESTADOS,
    LIVE_SCHEDULE_STATES,
    ProgramacionEstado,
    SendingSchedule,
    pause_reason_label,
    stuck_cutoff,
)
from envios.errors import EnviosError
from envios.monitor import queries as q
from envios.sender.eligibility import legacy_lock_reason
from envios.store import operating
from envios.store.connector import Database
from envios.store.sql import by_value

HELP = (
    "per-campaign progress: pending, in flight, sent, errors, stuck, missing ids, "
    "delivered/read/failed, unknowns settled, paused and why"
)

HEADERS = [
    "ID",
    "NAME",
    "ESTADO",
    "PENDING",
    "IN FLIGHT",
    "SENT",
    "ERRORS",
    "STUCK",
    "NO MSG ID",
    "LEGACY NO ID",
    "ERROR RATIO",
    "DELIVERED/READ/FAILED",
    "SETTLED",
    "PAUSED",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="include finalizado campaigns")


def run(args: argparse.Namespace, config) -> int:
    clock = Clock(config.tz)
    database = Database(config.database.url)
    with database.connect() as conn:
        if not q.schema_ready(conn):
            raise EnviosError(
                f"the schema of {database.describe()} is not upgraded: run `envios db upgrade`"
            )
        print(
            render(
                conn,
                clock.db_now(conn),
                config,
                include_finished=args.all,
                where=database.describe(),
                local=clock.now(),
            )
        )
    return 0


def render(
    conn,
    now: dt.datetime,
    config,
    *,
    include_finished: bool = False,
    where: str = "",
    local: dt.datetime | None = None,
) -> str:
    """`now` is the database server's wall clock; `local` the configured zone's, when known."""
    monitor = config.monitor
    camps = q.campaigns(conn, include_finished=include_finished)
    ids = sorted(camps)
    names = q.campaign_names(conn)
    counts = q.messages(conn, ids)
    stuck = q.stuck(conn, stuck_cutoff(now, monitor.stuck_after_s))
    missing = q.missing_message_ids(conn, camps)
    finished = q.finished_in_window(conn, now - dt.timedelta(seconds=monitor.window_s), now)
    acks = q.delivery(conn, ids)
    settled = q.settled_unknowns(conn, ids)
    schedules: dict[int, list[q.ScheduleRow]] = {}
    for s in q.schedules(conn, include_all=True):
        schedules.setdefault(s.campania_id, []).append(s)
    rows = []
    for campania_id in ids:
        m = counts[campania_id]
        fin = finished.get(campania_id)
        ratio = f"{fin.ratio:.2f} of {fin.finished}" if fin and fin.finished else "-"
        live = [s for s in schedules.get(campania_id, []) if s.estado in LIVE_SCHEDULE_STATES]
        paused = [s for s in live if s.estado == ProgramacionEstado.PAUSADA]
        why = ""
        if paused:
            reasons = sorted({pause_reason_label(s.paused_reason) for s in paused})
            by = sorted({s.paused_by or "the application" for s in paused})
            latest = max((s.paused_at for s in paused if s.paused_at), default=None)
            why = f"{len(paused)}/{len(live)} {','.join(reasons)}"
            if by:
                why += f" by {','.join(by)}"
            if latest:
                why += f" {latest:%m-%d %H:%M}"
        st = stuck.get(campania_id)
        mis = missing[campania_id]
        ack, settle = acks[campania_id], settled[campania_id]
        rows.append(
            [
                campania_id,
                shorten(names.get(campania_id, ("", ""))[0], 28),
                camps[campania_id].estado,
                *(m[estado] for estado in ESTADOS),
                st.count if st else 0,
                mis.missing,
                mis.legacy,
                ratio,
                f"{ack.delivered}/{ack.read}/{ack.failed}",
                f"{settle['evidence']} auto, {settle['person']} person",
                why,
            ]
        )
    when = f"{now:%Y-%m-%d %H:%M:%S} ({config.timezone})"
    if local is not None and local != now:  # two clocks: say which is which
        when = (
            f"{local:%Y-%m-%d %H:%M:%S} ({config.timezone}; database clock {now:%Y-%m-%d %H:%M:%S})"
        )
    title = (
        f"envios status {where} at {when}; "
        f"stuck = enviando > {monitor.stuck_after_s:g}s, error ratio over {monitor.window_s:g}s"
    )
    notes = _legacy_locks(conn, now, float(config.sender.lease_ttl_s))
    if not rows:
        return "\n".join(
            [
                title,
                "no campaigns"
                + ("" if include_finished else " in progress (--all shows finalizado ones)"),
                *notes,
            ]
        )
    return "\n".join(
        [title, format_table(HEADERS, rows, right=(0, 3, 4, 5, 6, 7, 8, 9, 10)), *notes]
    )


def _legacy_locks(conn, now: dt.datetime, ttl_s: float) -> list[str]:
    """Schedules the original scheduler is still working (a fresh lock): envios does not send
    them."""
    lines = []
    for row in conn.query(operating.LEGACY_LOCKS, by_value(ProgramacionEstado.APROBADA)):
        s = SendingSchedule.from_row(row)
        reason = legacy_lock_reason(s, now, ttl_s)
        if reason:
            lines.append(f"schedule {s.programacion_id} (campaign {s.campania_id}): {reason}")
    return lines
