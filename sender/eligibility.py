"""Is a schedule open now? Pure functions over a schedule row (DESIGN.md section 4).

A schedule sends when it is `aprobada`, its campaign is `en_progreso`, today is
within `fecha_inicio..fecha_fin`, today's weekday is in `dias_semana` and the
time is within `hora_inicio..hora_fin` (both inclusive). A window whose end is
before its start runs past midnight (22:00-02:00) and belongs to the day it
opened on. "Now" is local time in the configured zone (`sender.clock`). A schedule
the original scheduler is working (a fresh `locked_at`) is not envios's to send.
"""

from __future__ import annotations

import datetime as dt
import logging
import unicodedata

log = logging.getLogger("envios.sender")

_DAYS = {
    # English (production: 'mon,tue,wed,thu,fri,sat'), Spanish, and ISO numbers
    "mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
    "lun": 0, "mar": 1, "mie": 2, "jue": 3, "vie": 4, "sab": 5, "dom": 6,
    "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6,
}
_warned: set[str] = set()


def weekdays(dias_semana: str | None) -> frozenset[int]:
    """'mon,tue,wed' -> {0, 1, 2} (Monday = 0). Unknown words are ignored, with one warning."""
    days = set()
    for word in (dias_semana or "").replace(";", ",").replace(" ", ",").split(","):
        key = unicodedata.normalize("NFKD", word.strip().lower()).encode("ascii", "ignore").decode()[:3]
        if not key:
            continue
        if key in _DAYS:
            days.add(_DAYS[key])
        elif word not in _warned:
            _warned.add(word)
            log.warning("event=bad_dias_semana value=%r: not a weekday, ignored", word)
    return frozenset(days)


def _as_time(value) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, dt.timedelta):  # a MySQL TIME read by a plain driver
        return (dt.datetime.min + value).time()
    return dt.time.fromisoformat(str(value))


def _as_date(value) -> dt.date | None:
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date.fromisoformat(str(value)[:10])


def closed_reason(schedule: dict, now: dt.datetime) -> str | None:
    """None when the schedule may send at `now`; otherwise why not (for logs)."""
    if schedule.get("programacion_estado") != "aprobada":
        return f"schedule is {schedule.get('programacion_estado')}"
    if schedule.get("campania_estado") != "en_progreso":
        return f"campaign is {schedule.get('campania_estado')}"
    start, end = _as_time(schedule["hora_inicio"]), _as_time(schedule["hora_fin"])
    clock = now.time().replace(microsecond=0)
    if start <= end:
        if not start <= clock <= end:
            return f"outside the window {start:%H:%M}-{end:%H:%M}"
        opened_on = now.date()
    else:  # runs past midnight
        if clock >= start:
            opened_on = now.date()
        elif clock <= end:
            opened_on = now.date() - dt.timedelta(days=1)
        else:
            return f"outside the window {start:%H:%M}-{end:%H:%M}"
    if opened_on.weekday() not in weekdays(schedule.get("dias_semana")):
        return f"not a sending day ({schedule.get('dias_semana')})"
    first, last = _as_date(schedule.get("fecha_inicio")), _as_date(schedule.get("fecha_fin"))
    if first is not None and opened_on < first:
        return f"starts on {first}"
    if last is not None and opened_on > last:
        return f"ended on {last}"
    return None


ENVIOS_LOCK_PREFIX = "envios"  # envios never takes the legacy lock; a locked_by of its own would say so


def legacy_lock_reason(schedule: dict, db_now: dt.datetime, ttl_s: float) -> str | None:
    """Why not to send a schedule the original scheduler has locked recently (DESIGN.md section 10).

    The legacy scheduler sets `locked_at` (its server's clock) and `locked_by` while
    it works a schedule and never expires them: a lock younger than `ttl_s` (on
    the database's clock, `db_now`) means it is still running; an older one is dead.
    """
    locked_at, locked_by = schedule.get("locked_at"), schedule.get("locked_by") or ""
    if locked_at is None or ttl_s <= 0 or locked_by.startswith(ENVIOS_LOCK_PREFIX):
        return None
    age_s = (db_now - locked_at).total_seconds()
    if abs(age_s) >= ttl_s:
        return None
    reason = (f"locked by the original scheduler ({locked_by or 'unknown'}) {max(0, int(age_s))}s ago:"
              " it is still running; envios leaves this schedule to it")
    key = f"{schedule.get('programacion_id')}@{locked_at}"
    if key not in _warned:
        _warned.add(key)
        log.warning("event=schedule_locked_by_legacy programacion_id=%s locked_by=%s locked_at=%s detail=%r",
                    schedule.get("programacion_id"), locked_by or "unknown", locked_at, reason)
    return reason


def quota_remaining(cupo_diario, sent: int, in_flight: int) -> int:
    return max(0, int(cupo_diario or 0) - int(sent) - int(in_flight))
