"""The domain: the states of a send and who moves them. Every other module asks here.

```
pendiente ──claim──> enviando ──gateway says sent──> enviado (message_id, fecha_envio)
    ^                   │
    └── definitely not  ├── permanent failure ──> error (reason)
        sent (retry)    └── outcome unknown ──> stays enviando: "stuck", shown by
                                               the watcher, resolved by `envios reconcile`
```
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import unicodedata
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("envios.domain")


class Estado(str, enum.Enum):
    PENDIENTE = "pendiente"
    ENVIANDO = "enviando"
    ENVIADO = "enviado"
    ERROR = "error"


class Origin(str, enum.Enum):
    """Who made a change: the history row's `origen`, "envios-" and the part.

    The application's own rows say 'scheduler', 'manual' or 'sistema'
    (APPLICATION_ORIGINS); the history table is shared, so the two never collide.
    """

    SENDER = "envios-sender"
    WATCHER = "envios-watcher"
    OPERATOR = "envios-operator"
    RECONCILE = "envios-reconcile"
    EVIDENCE = "envios-evidence"  # an unknown outcome settled by the gateway's own evidence (acks, lookups)


APPLICATION_ORIGINS = ("scheduler", "manual", "sistema")


ALLOWED: frozenset[tuple[Estado, Estado]] = frozenset(
    {
        (Estado.PENDIENTE, Estado.ENVIANDO),  # claim
        (Estado.ENVIANDO, Estado.ENVIADO),  # the gateway confirmed
        (Estado.ENVIANDO, Estado.PENDIENTE),  # definitely not sent: retry later
        (Estado.ENVIANDO, Estado.ERROR),  # permanent failure, or out of attempts
        (Estado.PENDIENTE, Estado.ERROR),  # unsendable, rejected before any request
        (Estado.ERROR, Estado.PENDIENTE),  # an operator re-queues it
    }
)


# -- schedules and campaigns --------------------------------------------------------------------


class ProgramacionEstado(str, enum.Enum):
    """ll_programaciones.estado (the application's enum); only `aprobada` sends."""

    PENDIENTE = "pendiente"
    APROBADA = "aprobada"
    RECHAZADA = "rechazada"
    PAUSADA = "pausada"


class CampaniaEstado(str, enum.Enum):
    """ll_campanias_whatsapp.estado (the application's enum); only `en_progreso` sends."""

    PENDIENTE = "pendiente"
    EN_PROGRESO = "en_progreso"
    FINALIZADO = "finalizado"


# -- the eligible window (DESIGN.md section 4): the one definition --------------------------------
#
# A schedule sends inside its weekly window: `hora_inicio..hora_fin`, both ends inclusive, on
# the weekdays of `dias_semana`, within `fecha_inicio..fecha_fin`. A window whose end is
# before its start runs past midnight (22:00-02:00) and belongs to the day it OPENED on:
# the weekday and the date range are that day's. So the small hours after a schedule's
# last day (`fecha_fin`) are still its last night, and the small hours of its first day
# (`fecha_inicio`) are not its own (that window opened the day before). "Now" is the
# configured zone's wall clock (`envios.clock`). A window is shorter than a day, so the
# window holding "now" opened today or yesterday: `opening_days`, the bounds the store's
# date filter takes, so the database never drops a schedule this rule would open.

_WEEKDAYS = {
    # English (production: 'mon,tue,wed,thu,fri,sat'), Spanish, and ISO numbers
    "mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
    "lun": 0, "mar": 1, "mie": 2, "jue": 3, "vie": 4, "sab": 5, "dom": 6,
    "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6,
}
_warned_days: set[str] = set()


def weekdays(dias_semana: str | None) -> frozenset[int]:
    """'mon,tue,wed' -> {0, 1, 2} (Monday = 0). Unknown words are ignored, with one warning."""
    days = set()
    for word in (dias_semana or "").replace(";", ",").replace(" ", ",").split(","):
        folded = unicodedata.normalize("NFKD", word.strip().lower())
        key = folded.encode("ascii", "ignore").decode()[:3]
        if not key:
            continue
        if key in _WEEKDAYS:
            days.add(_WEEKDAYS[key])
        elif word not in _warned_days:
            _warned_days.add(word)
            log.warning("event=bad_dias_semana value=%r: not a weekday, ignored", word)
    return frozenset(days)


def as_time(value: Any) -> dt.time:
    """A TIME column as read by either driver (a plain MySQL driver gives a timedelta)."""
    if isinstance(value, dt.time):
        return value
    if isinstance(value, dt.timedelta):
        return (dt.datetime.min + value).time()
    return dt.time.fromisoformat(str(value))


def as_date(value: Any) -> dt.date | None:
    """A DATE column as read by either driver (SQLite gives text)."""
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    return dt.date.fromisoformat(str(value)[:10])


def opening_days(now: dt.datetime) -> tuple[dt.date, dt.date]:
    """(earliest, latest): the days a window open at `now` can have opened on."""
    return now.date() - dt.timedelta(days=1), now.date()


@dataclass(frozen=True)
class Window:
    """Whether a schedule's window is open at an instant, and which day it opened on."""

    opened_on: dt.date | None  # the opening day of the window holding the instant, if any
    closed: str | None  # why it is not open (for logs); None when open

    @property
    def is_open(self) -> bool:
        return self.closed is None


def schedule_window(now: dt.datetime, *, dias_semana: str | None, hora_inicio: Any, hora_fin: Any,
                    fecha_inicio: Any, fecha_fin: Any) -> Window:
    """The one rule: is the schedule's window open at `now` (configured zone's wall clock)?"""
    start, end = as_time(hora_inicio), as_time(hora_fin)
    clock = now.time().replace(microsecond=0)
    outside = f"outside the window {start:%H:%M}-{end:%H:%M}"
    if start <= end:
        if not start <= clock <= end:
            return Window(None, outside)
        opened_on = now.date()
    elif clock >= start:  # runs past midnight: this evening's window
        opened_on = now.date()
    elif clock <= end:  # runs past midnight: the small hours of yesterday's window
        opened_on = now.date() - dt.timedelta(days=1)
    else:
        return Window(None, outside)
    if opened_on.weekday() not in weekdays(dias_semana):
        return Window(opened_on, f"not a sending day ({dias_semana})")
    first, last = as_date(fecha_inicio), as_date(fecha_fin)
    if first is not None and opened_on < first:
        return Window(opened_on, f"starts on {first}")
    if last is not None and opened_on > last:
        return Window(opened_on, f"ended on {last}")
    return Window(opened_on, None)
