"""Pause and resume a campaign's schedules: shared by `envios campaign` and the auto-pause.

Pausing moves each `aprobada` schedule of the campaign to `pausada` with a
reason, a time and who did it, and writes one `envios_audit` row per schedule
changed, all in one transaction. Every UPDATE is conditional on the state it
expects, so two watchers (or a watcher and an operator) racing on the same
campaign change each schedule once: only the one whose UPDATE changed the row
writes the audit row and reports it.

Resuming moves the campaign's `pausada` schedules that envios paused (`paused_by`
set: the watcher or an operator through envios) back to `aprobada`; a schedule
the original application paused (it never sets `paused_by`) stays paused unless
the operator says so explicitly (`include_application_pauses`). It clearss
their pause columns and stamps `ll_campanias_whatsapp.resumed_at`: from then
on the watcher counts only sends finished after that instant toward the error
ratio and missing-id verdicts, so the campaign is not paused again for the
same old errors. Rows still stuck in `enviando` do count (they need
`envios reconcile`, not a resume).
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
from dataclasses import dataclass

from envios.monitor import queries as q

from envios.domain import (
    NAME_MAX,
    OPERATOR,
    PAUSE_REASONS,
    UNKNOWN,
    WATCHER,
    Estado,
    ProgramacionEstado,
)
from envios.errors import EnviosError
from envios.store import operating, transitions, watching
from envios.store.connector import Connection
from envios.store.sql import by_value


def login_name() -> str:
    """The person at the terminal, for the audit and the history (UNKNOWN in a bare container)."""
    try:
        return getpass.getuser()
    except Exception:  # no login name in a bare container
        return UNKNOWN


def watcher_identity() -> str:
    return f"{WATCHER}@{socket.gethostname()}:{os.getpid()}"[:NAME_MAX]


def operator_identity() -> str:
    return f"{OPERATOR}:{login_name()}@{socket.gethostname()}"[:NAME_MAX]


class UnknownCampaign(EnviosError):
    pass


def _check_exists(conn: Connection, campania_id: int) -> None:
    if conn.query_one(watching.CAMPAIGN_EXISTS, {"campania_id": campania_id}) is None:
        raise UnknownCampaign(f"campaign {campania_id} does not exist")


def pause(
    conn: Connection,
    campania_id: int,
    *,
    reason: str,
    now: dt.datetime,
    paused_by: str,
    detail: str = "",
    origin: str | None = None,
    unless_resumed_since: dt.datetime | None | object = ...,
) -> list[int]:
    """Pause the campaign's approved schedules; returns the ids this call changed.

    An empty list means there was nothing left to pause (already paused, by us or
    by someone else at the same moment): nothing was written. With
    `unless_resumed_since` (the auto-pause: the campaign's `resumed_at` as its
    values were read), nothing is paused when the campaign was resumed since: a
    verdict on sends finished before a resume must not undo it.
    """
    if reason not in PAUSE_REASONS:
        raise ValueError(f"unknown pause reason {reason!r}")
    action = "autopause" if paused_by == WATCHER else "pause"
    origin = origin or (watcher_identity() if paused_by == WATCHER else operator_identity())
    changed: list[int] = []
    with conn.transaction():
        _check_exists(conn, campania_id)
        if (
            unless_resumed_since is not ...
            and q.resumed_at(conn, campania_id) != unless_resumed_since
        ):
            return changed  # resumed after the verdict's values were read
        in_state = {"campania_id": campania_id, "estado": ProgramacionEstado.APROBADA}
        for row in conn.query(watching.SCHEDULES_IN_STATE, in_state):
            schedule_id = int(row["id"])
            change = {
                **by_value(ProgramacionEstado.APROBADA, ProgramacionEstado.PAUSADA),
                "reason": reason,
                "now": now,
                "paused_by": paused_by,
                "programacion_id": schedule_id,
            }
            if conn.execute(watching.PAUSE_SCHEDULE, change) != 1:
                continue  # someone else paused it first
            changed.append(schedule_id)
            transitions.audit(
                conn,
                now,
                action,
                campania_id=campania_id,
                programacion_id=schedule_id,
                reason=reason,
                detail=detail,
                origin=origin,
            )
    return changed


def resume(
    conn: Connection,
    campania_id: int,
    *,
    now: dt.datetime,
    detail: str = "",
    origin: str | None = None,
    include_application_pauses: bool = False,
    left_paused: list[int] | None = None,
) -> list[int]:
    """Approve the campaign's schedules envios paused again; returns the ids this call changed.

    Schedules paused by the application (no `paused_by`) are appended to
    `left_paused` and stay paused, unless `include_application_pauses`.
    Sets `resumed_at = now` on the campaign when anything was resumed.
    """
    origin = origin or operator_identity()
    changed: list[int] = []
    with conn.transaction():
        _check_exists(conn, campania_id)
        in_state = {"campania_id": campania_id, "estado": ProgramacionEstado.PAUSADA}
        for row in conn.query(watching.SCHEDULES_IN_STATE, in_state):
            schedule_id = int(row["id"])
            if not row["paused_by"] and not include_application_pauses:
                if left_paused is not None:
                    left_paused.append(schedule_id)
                continue
            change = {
                **by_value(ProgramacionEstado.APROBADA, ProgramacionEstado.PAUSADA),
                "programacion_id": schedule_id,
            }
            if conn.execute(watching.RESUME_SCHEDULE, change) != 1:
                continue
            changed.append(schedule_id)
            transitions.audit(
                conn,
                now,
                "resume",
                campania_id=campania_id,
                programacion_id=schedule_id,
                reason=OPERATOR,
                detail=detail,
                origin=origin,
            )
        if changed:
            conn.execute(watching.MARK_RESUMED, {"now": now, "campania_id": campania_id})
    return changed


def stuck_count(conn: Connection, campania_id: int, claimed_before: dt.datetime) -> int:
    params = {
        **by_value(Estado.ENVIANDO),
        "claimed_before": claimed_before,
        "campania_id": campania_id,
    }
    return int(conn.scalar(operating.CAMPAIGN_STUCK_COUNT, params) or 0)


@dataclass(frozen=True)
class CampaignOverview:
    id: int
    nombre: str
    estado: str
    schedules: list[q.ScheduleRow]
    pause_details: dict[int, str]  # schedule id -> the audit detail of its current pause


def overview(conn: Connection) -> list[CampaignOverview]:
    """Every campaign with every schedule, for `envios campaign list`."""
    names = q.campaign_names(conn)
    by_campaign: dict[int, list[q.ScheduleRow]] = {}
    for s in q.schedules(conn, include_all=True):
        by_campaign.setdefault(s.campania_id, []).append(s)
    out = []
    for cid, (nombre, estado) in names.items():
        details = {}
        for s in by_campaign.get(cid, []):
            if s.estado == ProgramacionEstado.PAUSADA:
                row = conn.query_one(
                    operating.LAST_PAUSE_AUDIT, {"campania_id": cid, "programacion_id": s.id}
                )
                if row and row["detalle"]:
                    details[s.id] = row["detalle"]
        out.append(CampaignOverview(cid, nombre, estado, by_campaign.get(cid, []), details))
    return out
