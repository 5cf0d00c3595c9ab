"""Delivery truth: acknowledgements recorded per row, and unknown outcomes settled by evidence.

An acknowledgement (`Ack`) names a message by the gateway's id; Cloud API's also
by the row's id (`biz_opaque_callback_data`); WAHA's and the session manager's may
also carry the recipient and the text. `record_ack` finds the row and:

| the row is          | the ack says        | then                                                |
|---------------------|---------------------|-----------------------------------------------------|
| enviado             | sent/delivered/read | delivery_status moves forward only; times set once  |
| enviado             | failed              | recorded with its reason (`failed_after_sent`)      |
| enviando, in flight | sent/delivered/read | recorded, and the id kept on the row (1)            |
| enviando (unknown)  | sent/delivered/read | settled: enviado with that id (2)                   |
| enviando (unknown)  | failed              | delivery_status failed recorded; stays for a person |
| not found           | anything            | counted as `unknown_message`; no row touched (3)    |

(1) The sender records the send's own answer; if that answer is lost,
    `settle_acknowledged` settles the row once the send has timed out.
(2) By the state machine (origin envios-evidence), counted in the day's quota.
(3) The row table is not touched; the ack is kept aside (`envios_unmatched_acks`,
    UNMATCHED_KEEP_S) and applied if a row is later settled with that id.

`delivery_status` ranks sent < failed < delivered < read: it never moves backwards,
so duplicates and out-of-order events (read before delivered) end the same way.
A read implies delivered (WhatsApp sends no "delivered" when both happen at once).

`settle_by_evidence` is the same settlement for a row whose evidence is the
gateway's own record of the message (`Gateway.find_sent`). Never a retry.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from envios.sender import outbox
from envios.sender.messages import personalise

from envios.clock import Clock
from envios.domain import TEXT_MAX, Estado, Origin
from envios.errors import StaleTransition
from envios.logfmt import kv
from envios.phones import InvalidPhone, normalise, scrub
from envios.store import acks
from envios.store.connector import Connection
from envios.store.sql import by_value
from envios.store.transitions import transition

log = logging.getLogger("envios.delivery")

RANK = {"sent": 1, "failed": 2, "delivered": 3, "read": 4}
STATUSES = tuple(RANK)

RECORDED, SETTLED, DUPLICATE, UNKNOWN_MESSAGE, IGNORED, FAILED_AFTER_SENT = (
    "recorded",
    "settled",
    "duplicate",
    "unknown_message",
    "ignored",
    "failed_after_sent",
)
RESULTS = (RECORDED, SETTLED, DUPLICATE, UNKNOWN_MESSAGE, IGNORED, FAILED_AFTER_SENT)

UNMATCHED_KEEP_S = 2 * 24 * 3600  # an ack for an id no row holds yet is kept this long


@dataclass(frozen=True)
class Ack:
    kind: str  # the gateway that said it
    message_id: str | None
    # sent | delivered | read | failed; None: a state envios does not track (pending)
    status: str | None
    envio_id: int | None = None  # Cloud API's biz_opaque_callback_data
    to: str | None = None  # recipient digits, when the event names them
    text: str | None = None  # the message text, when the event carries it
    error: str = ""


def _find(conn: Connection, ack: Ack) -> dict | None:
    if ack.message_id:
        row = conn.query_one(acks.ROW_BY_MESSAGE_ID_LOCKED, {"message_id": ack.message_id})
        if row is not None:
            return row
    if ack.envio_id is not None:
        row = conn.query_one(acks.ROW_LOCKED, {"envio_id": int(ack.envio_id)})
        if row is not None and row["message_id"] in (None, ack.message_id):
            return row
        return None
    if ack.to and ack.text:
        return _only_stuck_row_for(conn, ack.to, ack.text)
    return None


def _only_stuck_row_for(conn: Connection, to: str, text: str) -> dict | None:
    """The one unknown-outcome row to `to` with exactly `text`; None when there are none or
    several."""
    rows = conn.query(acks.UNKNOWN_WITHOUT_ID_LOCKED, by_value(Estado.ENVIANDO))
    matches = []
    for row in rows:
        try:
            if normalise(row["telefono_wapp"]) != to:
                continue
        except InvalidPhone:
            continue
        if personalise(row["mensaje_final"], row["nombre_destino"]) == text:
            matches.append(row)
    return matches[0] if len(matches) == 1 else None


def quota_day(
    conn: Connection, clock: Clock, claimed_at: dt.datetime | None
) -> tuple[dt.datetime, dt.date]:
    """The database's now, and the configured zone's day of a claim made on the database's clock."""
    local = clock.now()
    now = clock.to_db(conn, local)
    return now, ((claimed_at - (now - local)) if claimed_at else local).date()


def settle(
    conn: Connection, clock: Clock, row: dict, message_id: str | None, evidence: str
) -> None:
    """enviando -> enviado with `message_id`, in the caller's transaction, counted on the claim's
    day."""
    now, day = quota_day(conn, clock, row.get("claimed_at"))
    pid = row.get("claim_programacion_id")
    if pid is not None:
        outbox.lock_daily_count(conn, int(pid), day)
    transition(
        conn,
        int(row["id"]),
        Estado.ENVIANDO,
        Estado.ENVIADO,
        origin=Origin.EVIDENCE,
        at=now,
        detail=scrub(f"settled by evidence: {evidence}"),
        columns={"message_id": message_id, "fecha_envio": now, "last_error": None},
    )
    if pid is not None:
        outbox.count_sent(conn, int(pid), day, now)
    if message_id:
        _apply_unmatched(conn, int(row["id"]), message_id, now)


def _keep_unmatched(conn: Connection, ack: Ack, now: dt.datetime) -> None:
    conn.execute(
        acks.FORGET_OLD_UNMATCHED, {"before": now - dt.timedelta(seconds=UNMATCHED_KEEP_S)}
    )
    conn.execute(
        acks.KEEP_UNMATCHED,
        {
            "message_id": ack.message_id,
            "kind": ack.kind,
            "status": ack.status,
            "error": ack.error[:TEXT_MAX] or None,
            "now": now,
        },
    )


def _apply_unmatched(conn: Connection, envio_id: int, message_id: str, now: dt.datetime) -> None:
    """Acknowledgements that arrived before the row had its id (its answer was lost): applied
    now."""
    kept = conn.query(acks.UNMATCHED_FOR, {"message_id": message_id})
    for ack in kept:
        row = conn.query_one(acks.ROW, {"envio_id": envio_id})
        _delivery_update(conn, row, ack["status"], now, ack["error"] or "")
    if kept:
        conn.execute(acks.FORGET_UNMATCHED_FOR, {"message_id": message_id})


def _delivery_update(
    conn: Connection, row: dict, status: str, now: dt.datetime, error: str
) -> bool:
    current = row.get("delivery_status")
    new_status = status if RANK[status] > RANK.get(current or "", 0) else current
    delivered_at = row.get("delivered_at") or (now if status in ("delivered", "read") else None)
    read_at = row.get("read_at") or (now if status == "read" else None)
    error_text = row.get("delivery_error")
    if status == "failed" and new_status == "failed" and not error_text:
        # parsers scrub numbers out
        error_text = (error or "the gateway reports the delivery failed")[:TEXT_MAX]
    if (new_status, delivered_at, read_at, error_text) == (
        current,
        row.get("delivered_at"),
        row.get("read_at"),
        row.get("delivery_error"),
    ):
        return False
    conn.execute(
        acks.SET_DELIVERY,
        {
            "delivery_status": new_status,
            "delivered_at": delivered_at,
            "read_at": read_at,
            "delivery_error": error_text,
            "envio_id": row["id"],
        },
    )
    return True


def in_flight_s(config) -> float:
    """How long after its claim a row may still hear its send's own answer (connect + read
    timeouts)."""
    return float(config.gateway.send_timeout_s) + float(config.gateway.status_timeout_s) + 5.0


def record_ack(conn: Connection, clock: Clock, ack: Ack, in_flight_s: float = 0.0) -> str:
    """Apply one acknowledgement in one transaction; returns what happened (one of RESULTS).

    A row claimed less than `in_flight_s` ago (the send timeout) may still hear its
    own answer: the ack is recorded, not used to settle it (no race with the sender).
    """
    if ack.status not in RANK:
        return IGNORED
    with conn.transaction():
        row = _find(conn, ack)
        now = clock.db_now(conn)
        if row is None:
            if ack.message_id:
                _keep_unmatched(conn, ack, now)
            return UNKNOWN_MESSAGE
        estado = row["estado"]
        result = DUPLICATE
        in_flight = (
            estado == Estado.ENVIANDO.value
            and row.get("claimed_at") is not None
            and row["claimed_at"] > now - dt.timedelta(seconds=in_flight_s)
        )
        if in_flight and ack.status != "failed":
            if ack.message_id:
                conn.execute(
                    acks.KEEP_ID,
                    {
                        **by_value(Estado.ENVIANDO),
                        "message_id": ack.message_id,
                        "envio_id": row["id"],
                    },
                )
            _delivery_update(conn, row, ack.status, now, ack.error)
            result = RECORDED
        elif estado == Estado.ENVIANDO.value and ack.status != "failed":
            try:
                settle(
                    conn,
                    clock,
                    row,
                    ack.message_id or None,
                    f"{ack.kind} acknowledgement '{ack.status}'"
                    f" for message {ack.message_id or '(no id)'}",
                )
            except StaleTransition:
                return IGNORED
            result = SETTLED
        elif estado not in (Estado.ENVIADO.value, Estado.ENVIANDO.value):
            return IGNORED  # pendiente / error: no message of ours can be acknowledged for it
        if (
            result != RECORDED
            and _delivery_update(conn, row, ack.status, now, ack.error)
            and result != SETTLED
        ):
            result = (
                FAILED_AFTER_SENT
                if ack.status == "failed" and estado == Estado.ENVIADO.value
                else RECORDED
            )
    line = kv(
        "delivery_ack",
        envio_id=row["id"],
        campania_id=row["campania_id"],
        kind=ack.kind,
        status=ack.status,
        result=result,
    )
    if result == FAILED_AFTER_SENT:
        log.warning(line + ' note="the gateway reports a sent message failed to be delivered"')
    elif result == SETTLED:
        log.warning(line + ' note="unknown outcome settled by the gateway\'s acknowledgement"')
    else:
        log.info(line)
    return result


# -- unknowns settled by the gateway's own record -------------------------------------------------


def settle_acknowledged(conn: Connection, clock: Clock, in_flight_s: float) -> list[int]:
    """Rows acknowledged while their send was in flight, whose own answer then never came:
    enviado."""
    settled = []
    before = clock.db_now(conn) - dt.timedelta(seconds=in_flight_s)
    in_flight = {**by_value(Estado.ENVIANDO), "before": before}
    for row in conn.query(acks.ACKNOWLEDGED_IN_FLIGHT, in_flight):
        try:
            with conn.transaction():
                settle(
                    conn,
                    clock,
                    row,
                    row["message_id"],
                    f"the gateway acknowledged message {row['message_id']}"
                    f" ('{row['delivery_status']}')"
                    " while its send was in flight; the send's own answer was lost",
                )
        except StaleTransition:
            continue
        settled.append(int(row["id"]))
        log.warning(
            kv(
                "unknown_settled",
                envio_id=row["id"],
                source="acknowledgement",
                detail="acknowledged while in flight; the send's answer was lost",
            )
        )
    return settled


@dataclass
class SettleReport:
    settled: list[int]
    no_evidence: list[int]
    unavailable: list[int]
    left_for_a_person: int

    def summary(self) -> str:
        return (
            f"{len(self.settled)} settled by evidence, "
            f"{len(self.no_evidence)} without evidence yet, "
            f"{len(self.unavailable)} not checkable now, "
            f"{self.left_for_a_person} older ones left for a person"
        )


def settle_by_evidence(
    conn: Connection,
    clock: Clock,
    gateway,
    *,
    within_s: float,
    in_flight_s: float = 0.0,
    cliente_of=None,
) -> SettleReport:
    """Ask the gateway about every unknown outcome claimed within `within_s`; settle the ones it
    sent.

    `cliente_of(row) -> cliente_id` (default: the claim's schedule's client) names the session
    asked.
    A row older than `within_s` is not asked about again: it stays for a person. A row claimed
    less than `in_flight_s` ago may still be waiting for its answer: it is left to its sender.
    """
    from envios.sender.gateways.base import EvidenceUnavailable

    report = SettleReport([], [], [], 0)
    now = clock.db_now(conn)
    oldest = now - dt.timedelta(seconds=within_s)
    newest = now - dt.timedelta(seconds=in_flight_s)
    rows = conn.query(acks.UNKNOWN_WITH_CLAIM, by_value(Estado.ENVIANDO))
    for row in rows:
        if row["claimed_at"] < oldest:
            report.left_for_a_person += 1
            continue
        if in_flight_s and row["claimed_at"] > newest:
            continue  # its send may still be answered: not an unknown yet
        try:
            to = normalise(row["telefono_wapp"])
        except InvalidPhone:
            continue
        text = personalise(row["mensaje_final"], row["nombre_destino"])
        since = clock.db_to_epoch(conn, row["claimed_at"])
        cliente_id = cliente_of(row) if cliente_of else int(row["cliente_id"] or 0)
        try:
            evidence = gateway.find_sent(cliente_id, to, text, since)
        except EvidenceUnavailable as exc:
            report.unavailable.append(int(row["id"]))
            log.debug(kv("evidence_unavailable", envio_id=row["id"], detail=str(exc)))
            continue
        if evidence is None:
            report.no_evidence.append(int(row["id"]))
            continue
        if conn.scalar(acks.ROWS_WITH_MESSAGE_ID, {"message_id": evidence.message_id}):
            # that message is another row's: not this one's evidence
            report.no_evidence.append(int(row["id"]))
            continue
        try:
            with conn.transaction():
                locked = conn.query_one(acks.ROW_LOCKED, {"envio_id": row["id"]})
                if (
                    locked is None
                    or locked["estado"] != Estado.ENVIANDO.value
                    or locked["message_id"] is not None
                ):
                    continue
                settle(
                    conn,
                    clock,
                    locked,
                    evidence.message_id,
                    f"{evidence.source} found message {evidence.message_id}"
                    " to this number with this text after the claim",
                )
        except StaleTransition:
            continue
        report.settled.append(int(row["id"]))
        log.warning(
            kv(
                "unknown_settled",
                envio_id=row["id"],
                source=evidence.source,
                detail="the gateway's own record shows the message was sent",
            )
        )
    return report
