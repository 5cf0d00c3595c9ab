"""Resolving rows the sender could not: stuck in `enviando` (unknown outcome) or sent without an id.

Only a person knows whether a stuck message reached the phone (ask the
recipient, look at the WhatsApp session). These functions record that decision
through the state machine, with a history row saying who decided and why (in
`detalle`; in `usuario_id` too when a user of the application's `usuarios` is given):

    mark_sent   enviando -> enviado   (it was delivered; optional message id; counted in the daily
    quota)
    requeue     enviando -> pendiente (it was NOT delivered: it will be sent again)
                error    -> pendiente (retry a failed row; its attempt count starts over)
                both under the application's manual-retry rule: a named person (`by`)
                and a justification (`note`) of at least 10 characters
    mark_error  enviando/pendiente -> error (give up on it, with a reason)

and, for a row sent without a message id whose id was found afterwards (the
session manager's log, the phone's chat):

    set_message_id  enviado stays enviado, message_id recorded (audited in envios_audit)
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from envios.sender import outbox

from envios.clock import Clock
from envios.domain import OPERATOR, TEXT_MAX, UNKNOWN, Estado, Origin, stuck_cutoff
from envios.errors import EnviosError, ForbiddenTransition, StaleTransition
from envios.logfmt import kv
from envios.phones import mask
from envios.store import operating, transitions
from envios.store.connector import Connection
from envios.store.schema_view import column_details
from envios.store.transitions import check_allowed, transition


@dataclass
class Doubtful:
    stuck: list[dict]  # enviando, claim older than stuck_after_s
    sent_without_id: list[dict]  # enviado by this system, no message id


def list_doubtful(conn: Connection, clock: Clock, stuck_after_s: float) -> Doubtful:
    before = stuck_cutoff(clock.db_now(conn), stuck_after_s)
    return Doubtful(outbox.stuck_rows(conn, before), outbox.sent_without_message_id(conn))


log = logging.getLogger("envios.reconcile")


def _log(before: dict, after: dict, detail: str) -> None:
    log.info(
        kv(
            "state_change",
            envio_id=after["id"],
            campania_id=after["campania_id"],
            programacion_id=after.get("claim_programacion_id"),
            **{"from": before["estado"], "to": after["estado"]},
            origin="reconcile",
            message_id=after.get("message_id"),
            phone=mask(after.get("telefono_wapp")),
            detail=detail,
        )
    )


class ReconcileError(EnviosError):
    """An id that does not exist, or a change the row's state does not allow."""


class RetryRuleBroken(ReconcileError):
    """The application's manual-retry rule: a named person and a justification of at least 10
    characters."""

    exit_code = 2


JUSTIFICATION_MIN = 10  # the application's own rule for error -> pendiente


def check_retry_rule(by: str, note: str) -> None:
    if not (by or "").strip():
        raise RetryRuleBroken(
            "requeue needs the person who decides it (--by NAME), as the application's"
            " manual-retry rule does"
        )
    if len((note or "").strip()) < JUSTIFICATION_MIN:
        raise RetryRuleBroken(
            f"requeue needs a justification of at least {JUSTIFICATION_MIN} characters"
            ' (--note "..."), as the application\'s manual-retry rule does'
        )


def check_person(conn: Connection, usuario_id: int | None) -> None:
    """A usuario_id must name a row of the application's `usuarios` (its history has a foreign key
    to it)."""
    if usuario_id is None:
        return
    if "usuario_id" not in column_details(conn, "ll_envios_whatsapp_historial"):
        raise ReconcileError(
            "--usuario-id: this database's history table has no usuario_id column;"
            " the name given with --by goes into the history detail"
        )
    if conn.query_one(operating.USER_EXISTS, {"usuario_id": usuario_id}) is None:
        raise ReconcileError(f"--usuario-id {usuario_id}: no such user in usuarios")


def _times(conn: Connection, clock: Clock, claimed_at) -> tuple[dt.datetime, dt.date]:
    """The database's now, and the quota day (configured zone) of a claim made on the database's
    clock."""
    local = clock.now()
    now = clock.to_db(conn, local)
    return now, ((claimed_at - (now - local)) if claimed_at else local).date()


def _row(conn: Connection, envio_id: int) -> dict:
    row = outbox.get_row(conn, envio_id)
    if row is None:
        raise ReconcileError(f"row {envio_id} does not exist")
    return row


def _allowed(row: dict, to_state: Estado, action: str, allowed_from: tuple[Estado, ...]) -> Estado:
    current = Estado(row["estado"])
    if current not in allowed_from:
        names = " or ".join(s.value for s in allowed_from)
        raise ReconcileError(
            f"row {row['id']} is {current.value}: {action} only applies to {names} rows"
        )
    try:
        check_allowed(current, to_state)
    except ForbiddenTransition as exc:
        raise ReconcileError(f"row {row['id']}: {exc}") from None
    return current


def _changed(envio_id: int) -> ReconcileError:
    return ReconcileError(f"row {envio_id} changed while we looked at it; try again")


def _move(
    conn: Connection,
    row: dict,
    to_state: Estado,
    at: dt.datetime,
    detail: str,
    columns: dict,
    usuario_id: int | None,
) -> dict:
    """`row` (checked by `_allowed`) to `to_state` through the state machine, in the caller's
    transaction; the row as it is then. A row someone moved meanwhile is the operator's to
    retry."""
    try:
        transition(
            conn,
            row["id"],
            Estado(row["estado"]),
            to_state,
            origin=Origin.RECONCILE,
            at=at,
            detail=detail,
            usuario_id=usuario_id,
            columns=columns,
        )
    except StaleTransition:
        raise _changed(row["id"]) from None
    return outbox.get_row(conn, row["id"])


def _detail(action: str, by: str, note: str) -> str:
    text = f"{action} by {by or UNKNOWN}"
    return f"{text}: {note}" if note else text


def mark_sent(
    conn: Connection,
    clock: Clock,
    envio_id: int,
    *,
    message_id: str | None = None,
    by: str = "",
    note: str = "",
    usuario_id: int | None = None,
) -> dict:
    check_person(conn, usuario_id)
    with conn.transaction():
        row = _row(conn, envio_id)
        _allowed(row, Estado.ENVIADO, "mark-sent", (Estado.ENVIANDO,))
        pid = row.get("claim_programacion_id")
        now, day = _times(conn, clock, row.get("claimed_at"))
        if pid is not None:
            outbox.lock_daily_count(conn, int(pid), day)
        detail = _detail("confirmed sent", by, note)
        columns = {"message_id": message_id or None, "fecha_envio": now, "last_error": None}
        after = _move(conn, row, Estado.ENVIADO, now, detail, columns, usuario_id)
        if pid is not None:
            outbox.count_sent(conn, int(pid), day, now)
    _log(row, after, detail)
    return after


def requeue(
    conn: Connection,
    clock: Clock,
    envio_id: int,
    *,
    by: str = "",
    note: str = "",
    usuario_id: int | None = None,
) -> dict:
    """Back to pendiente, under the application's manual-retry rule (a named person, a
    justification)."""
    check_retry_rule(by, note)
    check_person(conn, usuario_id)
    now = clock.db_now(conn)
    with conn.transaction():
        row = _row(conn, envio_id)
        current = _allowed(row, Estado.PENDIENTE, "requeue", (Estado.ENVIANDO, Estado.ERROR))
        columns = {"next_attempt_at": None, "last_error": f"requeued by {by or UNKNOWN}"[:TEXT_MAX]}
        if current is Estado.ERROR:
            columns["attempts"] = 0
        what = "checked NOT delivered, requeued" if current is Estado.ENVIANDO else "requeued"
        after = _move(
            conn, row, Estado.PENDIENTE, now, _detail(what, by, note), columns, usuario_id
        )
    _log(row, after, _detail("requeued", by, note))
    return after


def mark_error(
    conn: Connection,
    clock: Clock,
    envio_id: int,
    *,
    reason: str,
    by: str = "",
    usuario_id: int | None = None,
) -> dict:
    if not reason or not reason.strip():
        raise ReconcileError("mark-error needs --reason")
    check_person(conn, usuario_id)
    now = clock.db_now(conn)
    with conn.transaction():
        row = _row(conn, envio_id)
        _allowed(row, Estado.ERROR, "mark-error", (Estado.ENVIANDO, Estado.PENDIENTE))
        detail = _detail("marked error", by, reason.strip())
        columns = {"last_error": reason.strip()[:TEXT_MAX]}
        after = _move(conn, row, Estado.ERROR, now, detail, columns, usuario_id)
    _log(row, after, detail)
    return after


def set_message_id(
    conn: Connection, clock: Clock, envio_id: int, message_id: str, *, by: str = "", note: str = ""
) -> dict:
    if not message_id or not message_id.strip():
        raise ReconcileError("set-message-id needs the message id")
    now = clock.db_now(conn)
    with conn.transaction():
        row = _row(conn, envio_id)
        if row["estado"] != Estado.ENVIADO.value or row.get("message_id"):
            raise ReconcileError(
                f"row {envio_id} is not a send without a message id "
                f"(estado {row['estado']}, message id {'set' if row.get('message_id') else 'none'})"
            )
        if not outbox.set_missing_message_id(conn, envio_id, message_id.strip()):
            raise _changed(envio_id)
        detail = _detail(f"message id recorded for row {envio_id}", by, note)
        transitions.audit(
            conn,
            now,
            "set_message_id",
            campania_id=row["campania_id"],
            reason="missing_message_id",
            detail=detail,
            origin=f"{OPERATOR}:{by or UNKNOWN}",
        )
        after = outbox.get_row(conn, envio_id)
    log.info(
        kv(
            "message_id_recorded",
            envio_id=envio_id,
            campania_id=row["campania_id"],
            message_id=after["message_id"],
            detail=detail,
        )
    )
    return after
