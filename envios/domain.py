"""The domain: the states of a send and who moves them, and every rule both processes share.

```
pendiente ──claim──> enviando ──gateway says sent──> enviado (message_id, fecha_envio)
    ^                   │
    └── definitely not  ├── permanent failure ──> error (reason)
        sent (retry)    └── outcome unknown ──> stays enviando: "stuck", shown by
                                               the watcher, resolved by `envios reconcile`
```

Every other module asks here: the state names (SQL takes them as parameters), who did
a change (origins), the schedule and campaign states, the typed rows the sender passes
around, the stuck rule, how envios's own rows are told apart, and the column caps.
Nothing here touches a database.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("envios.domain")


class Estado(str, enum.Enum):
    PENDIENTE = "pendiente"
    ENVIANDO = "enviando"
    ENVIADO = "enviado"
    ERROR = "error"


# Plain strings (not members) where they become dict keys, labels or text: on Python 3.11
# str() and f-strings of a member give "Estado.ENVIADO", not its value.
ESTADOS: tuple[str, ...] = tuple(e.value for e in Estado)
FINISHED: tuple[str, ...] = (Estado.ENVIADO.value, Estado.ERROR.value)  # the outcome is known


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


# -- who did it ----------------------------------------------------------------------------
#
# Everything envios writes about itself starts with "envios": the history row's `origen`
# ("envios-" and the role), and any lock holder name it would use. The roles' short names
# are what `paused_by` and `envios_audit.origen` say ("watcher@host:pid", "operator:ana@host").

ENVIOS = "envios"
ORIGIN_PREFIX = f"{ENVIOS}-"
UNKNOWN = "unknown"  # a name or reason nobody recorded (no login name, a pause by the legacy UI)


class Origin(str, enum.Enum):
    """Who made a change: the history row's `origen`, "envios-" and the role.

    The application's own rows say 'scheduler', 'manual' or 'sistema'
    (ApplicationOrigin); the history table is shared, so the two never collide.
    """

    SENDER = "envios-sender"
    WATCHER = "envios-watcher"
    OPERATOR = "envios-operator"
    RECONCILE = "envios-reconcile"
    EVIDENCE = "envios-evidence"  # an unknown outcome settled by the gateway's evidence (acks)

    @property
    def role(self) -> str:
        """The short name: 'watcher', 'operator'... (`paused_by`, the audit's origen)."""
        return self.value[len(ORIGIN_PREFIX) :]


class ApplicationOrigin(str, enum.Enum):
    """The original application's `origen` values in the shared history table."""

    SCHEDULER = "scheduler"
    MANUAL = "manual"  # a person, through the application's UI
    SISTEMA = "sistema"


APPLICATION_ORIGINS: tuple[str, ...] = tuple(o.value for o in ApplicationOrigin)

WATCHER = Origin.WATCHER.role  # paused_by of an auto-pause
OPERATOR = Origin.OPERATOR.role  # paused_by and paused_reason of a person's pause through envios


def by_envios(name: str | None) -> bool:
    """Was `name` (a history origen, a locked_by) written by envios? ("sent by envios")"""
    return (name or "").startswith(ENVIOS)


def claimed_by_envios(claimed_at: dt.datetime | None) -> bool:
    """A row envios worked: it was claimed. Legacy sends (before the upgrade) never were."""
    return claimed_at is not None


# How an unknown outcome left `enviando`: by the gateway's evidence or by a person.
SETTLED_BY: Mapping[str, str] = {
    Origin.EVIDENCE.value: "evidence",
    Origin.RECONCILE.value: "person",
    ApplicationOrigin.MANUAL.value: "person",
}


# -- gateways ------------------------------------------------------------------------------
#
# The values of `gateway.kind` (config checks them, the sender builds one adapter each).
# `simulator` speaks session_manager's contract (DESIGN.md section 9): the same adapter
# and the same acknowledgement dialect.

GATEWAY_KINDS = ("session_manager", "simulator", "waha", "evolution", "cloud_api")
SPEAKS_AS: Mapping[str, str] = {"simulator": "session_manager"}
GATEWAY_DIALECTS = tuple(kind for kind in GATEWAY_KINDS if kind not in SPEAKS_AS)


# -- schedules and campaigns ---------------------------------------------------------------


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
    "mon": 0,
    "tue": 1,
    "wed": 2,
    "thu": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
    "lun": 0,
    "mar": 1,
    "mie": 2,
    "jue": 3,
    "vie": 4,
    "sab": 5,
    "dom": 6,
    "1": 0,
    "2": 1,
    "3": 2,
    "4": 3,
    "5": 4,
    "6": 5,
    "7": 6,
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


def schedule_window(
    now: dt.datetime,
    *,
    dias_semana: str | None,
    hora_inicio: Any,
    hora_fin: Any,
    fecha_inicio: Any,
    fecha_fin: Any,
) -> Window:
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


# Schedules the watcher and `envios status` follow: those that send or could again.
LIVE_SCHEDULE_STATES = (ProgramacionEstado.APROBADA.value, ProgramacionEstado.PAUSADA.value)


class PauseReason(str, enum.Enum):
    """ll_programaciones.paused_reason of an envios pause (and the `reason` metric label)."""

    STUCK = "stuck"
    MISSING_MESSAGE_ID = "missing_message_id"
    ERROR_RATIO = "error_ratio"
    OPERATOR = OPERATOR


# The auto-pause's, in priority order.
AUTO_PAUSE_REASONS = tuple(
    r.value for r in (PauseReason.STUCK, PauseReason.MISSING_MESSAGE_ID, PauseReason.ERROR_RATIO)
)
PAUSE_REASONS = tuple(r.value for r in PauseReason)


def pause_reason_label(paused_reason: str | None) -> str:
    """The reason as a metric label: one of PauseReason, or UNKNOWN (a pause by someone else)."""
    return paused_reason if paused_reason in PAUSE_REASONS else UNKNOWN


# -- stuck ---------------------------------------------------------------------------------
#
# A row is stuck when it is `enviando` and its claim is older than the cutoff, or it has
# no claim time at all. The store's SQL takes the cutoff from `stuck_cutoff`:
#   estado = %(enviando)s AND (claimed_at < %(claimed_before)s OR claimed_at IS NULL)


def stuck_cutoff(now: dt.datetime, stuck_after_s: float) -> dt.datetime:
    """Claims before this instant are stuck (`now` on the database's clock)."""
    return now - dt.timedelta(seconds=float(stuck_after_s))


def is_stuck(estado: str, claimed_at: dt.datetime | None, cutoff: dt.datetime) -> bool:
    return estado == Estado.ENVIANDO and (claimed_at is None or claimed_at < cutoff)


# -- column caps ---------------------------------------------------------------------------
#
# Free text is cut to its column before it is written (MariaDB in strict mode refuses the
# whole write otherwise). The upgrade declares these lengths; tests/test_domain.py checks
# the schema agrees.

TEXT_MAX = 500  # last_error, delivery_error, history/audit detalle, envios_unmatched_acks.error
NAME_MAX = 120  # envios_audit.origen, ll_programaciones.paused_by
MESSAGE_ID_MAX = 255  # ll_envios_whatsapp.message_id (latin1 on the legacy tables)


def capped(text: str | None, limit: int = TEXT_MAX) -> str:
    """`text` cut to `limit` characters ('' for None)."""
    return (text or "")[:limit]


# A message longer than the gateway accepts is refused before the claim, never sent.
# WhatsApp text messages hold at most 4,096 characters (the Cloud API's documented limit
# for a text body); a gateway may declare its own as `max_text_chars`. Characters are
# Unicode code points, what an operator counts.
WHATSAPP_TEXT_MAX = 4096


def text_limit(gateway: object) -> int:
    return int(getattr(gateway, "max_text_chars", WHATSAPP_TEXT_MAX) or WHATSAPP_TEXT_MAX)


def too_long(text: str, gateway: object) -> str | None:
    """Why `text` cannot go through `gateway`, or None."""
    limit = text_limit(gateway)
    if len(text) > limit:
        return f"message too long: {len(text)} characters, the gateway accepts at most {limit}"
    return None


# -- typed rows ----------------------------------------------------------------------------
#
# The sender reads rows as dicts (the connector's shape); these are the same rows with
# their types, made with `from_row(dict)` where a row enters the Python side.


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class OutboxRow:
    """A row of ll_envios_whatsapp as the sender claims and reconciles it."""

    id: int
    campania_id: int
    estado: Estado
    telefono_wapp: str | None = None
    nombre_destino: str | None = None
    mensaje_final: str | None = None
    attempts: int = 0
    message_id: str | None = None
    claimed_at: dt.datetime | None = None
    claimed_by: str | None = None
    claim_programacion_id: int | None = None
    next_attempt_at: dt.datetime | None = None
    last_error: str | None = None
    fecha_envio: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OutboxRow:
        return cls(
            id=int(row["id"]),
            campania_id=int(row["campania_id"]),
            estado=Estado(row["estado"]),
            telefono_wapp=row.get("telefono_wapp"),
            nombre_destino=row.get("nombre_destino"),
            mensaje_final=row.get("mensaje_final"),
            attempts=int(row.get("attempts") or 0),
            message_id=row.get("message_id"),
            claimed_at=row.get("claimed_at"),
            claimed_by=row.get("claimed_by"),
            claim_programacion_id=_int_or_none(row.get("claim_programacion_id")),
            next_attempt_at=row.get("next_attempt_at"),
            last_error=row.get("last_error"),
            fecha_envio=row.get("fecha_envio"),
        )

    @property
    def claimed_by_envios(self) -> bool:
        return claimed_by_envios(self.claimed_at)

    def is_stuck(self, cutoff: dt.datetime) -> bool:
        return is_stuck(self.estado, self.claimed_at, cutoff)


@dataclass(frozen=True)
class SendingSchedule:
    """A schedule joined with its campaign, as the sender reads it (sending.SCHEDULE_COLUMNS)."""

    programacion_id: int
    campania_id: int
    cliente_id: int
    programacion_estado: str
    campania_estado: str | None
    dias_semana: str | None
    hora_inicio: Any  # TIME: a time, or a timedelta from a plain MySQL driver
    hora_fin: Any
    fecha_inicio: Any  # DATE: a date, or text from SQLite
    fecha_fin: Any
    cupo_diario: int
    delay_min_s: int | None = None
    delay_max_s: int | None = None
    locked_at: dt.datetime | None = None
    locked_by: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SendingSchedule:
        return cls(
            programacion_id=int(row["programacion_id"]),
            campania_id=int(row["campania_id"]),
            cliente_id=int(row["cliente_id"]),
            programacion_estado=row.get("programacion_estado"),
            campania_estado=row.get("campania_estado"),
            dias_semana=row.get("dias_semana"),
            hora_inicio=row.get("hora_inicio"),
            hora_fin=row.get("hora_fin"),
            fecha_inicio=row.get("fecha_inicio"),
            fecha_fin=row.get("fecha_fin"),
            cupo_diario=int(row.get("cupo_diario") or 0),
            delay_min_s=_int_or_none(row.get("delay_min_s")),
            delay_max_s=_int_or_none(row.get("delay_max_s")),
            locked_at=row.get("locked_at"),
            locked_by=row.get("locked_by"),
        )

    @property
    def sends(self) -> bool:
        """Approved, of a campaign in progress (the window is checked apart)."""
        return (
            self.programacion_estado == ProgramacionEstado.APROBADA
            and self.campania_estado == CampaniaEstado.EN_PROGRESO
        )
