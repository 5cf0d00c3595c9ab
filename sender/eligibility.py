"""Is a schedule open now? Pure functions over a schedule row (DESIGN.md section 4).

A schedule sends when it is `aprobada`, its campaign is `en_progreso` and its window is
open: the window rule (days, hours, dates, overnight windows) is the domain's,
`envios.domain.schedule_window`, the same one that bounds the store's date filter. A
schedule the original scheduler is working (a fresh `locked_at`) is not envios's to send.
"""

from __future__ import annotations

import datetime as dt
import logging

from envios.domain import CampaniaEstado, ProgramacionEstado, SendingSchedule, schedule_window

log = logging.getLogger("envios.sender")
_warned: set[str] = set()


def closed_reason(schedule: SendingSchedule, now: dt.datetime) -> str | None:
    """None when the schedule may send at `now`; otherwise why not (for logs)."""
    if schedule.programacion_estado != ProgramacionEstado.APROBADA.value:
        return f"schedule is {schedule.programacion_estado}"
    if schedule.campania_estado != CampaniaEstado.EN_PROGRESO.value:
        return f"campaign is {schedule.campania_estado}"
    return schedule_window(
        now,
        dias_semana=schedule.dias_semana,
        hora_inicio=schedule.hora_inicio,
        hora_fin=schedule.hora_fin,
        fecha_inicio=schedule.fecha_inicio,
        fecha_fin=schedule.fecha_fin,
    ).closed


# envios never takes the legacy lock; a locked_by of its own would say so
ENVIOS_LOCK_PREFIX = "envios"


def legacy_lock_reason(schedule: SendingSchedule, db_now: dt.datetime, ttl_s: float) -> str | None:
    """Why not to send a schedule the original scheduler has locked recently (DESIGN.md section 10).

    The legacy scheduler sets `locked_at` (its server's clock) and `locked_by` while
    it works a schedule and never expires them: a lock younger than `ttl_s` (on
    the database's clock, `db_now`) means it is still running; an older one is dead.
    """
    locked_at, locked_by = schedule.locked_at, schedule.locked_by or ""
    if locked_at is None or ttl_s <= 0 or locked_by.startswith(ENVIOS_LOCK_PREFIX):
        return None
    age_s = (db_now - locked_at).total_seconds()
    if abs(age_s) >= ttl_s:
        return None
    reason = (
        f"locked by the original scheduler ({locked_by or 'unknown'})"
        f" {max(0, int(age_s))}s ago: it is still running; envios leaves this schedule to it"
    )
    key = f"{schedule.programacion_id}@{locked_at}"
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "event=schedule_locked_by_legacy programacion_id=%s locked_by=%s"
            " locked_at=%s detail=%r",
            schedule.programacion_id,
            locked_by or "unknown",
            locked_at,
            reason,
        )
    return reason


def quota_remaining(cupo_diario, sent: int, in_flight: int) -> int:
    return max(0, int(cupo_diario or 0) - int(sent) - int(in_flight))
