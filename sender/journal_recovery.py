"""Putting into the database what a journal (sender.journal) knows and the database does not.

    recover_dead(conn, ctx, directory, database)  at start: journals of dead senders of this machine
    flush(conn, ctx, journal)                     each tick: this sender's outcomes whose write
    failed

Both write through `session_worker.record_outcome`, so the outcome table
(DESIGN.md section 3) and its history rows apply unchanged; a row someone else
resolved meanwhile is left as it is (StaleTransition).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from pathlib import Path

from envios.sender import journal as journal_module
from envios.sender import outbox
from envios.sender.gateways.base import Outcome, SendResult
from envios.sender.session_worker import Claimed, Context, record_outcome, retrying

from envios.domain import Estado, Origin, OutboxRow
from envios.errors import ConfigError, DatabaseError, StaleTransition
from envios.logfmt import kv
from envios.store import recovery
from envios.store.connector import Connection
from envios.store.sql import by_value
from envios.store.transitions import Increment, transition

log = logging.getLogger("envios.sender")


def _claimed(conn: Connection, claim: dict) -> Claimed | None:
    found = outbox.get_row(conn, int(claim["envio_id"]))
    if found is None:
        return None
    row = OutboxRow.from_row(found)
    row = dataclasses.replace(row, attempts=max(0, row.attempts - 1))  # already counted
    claimed_at = claim["claimed_at"]
    if isinstance(claimed_at, str):
        claimed_at = dt.datetime.fromisoformat(claimed_at)
    return Claimed(row, int(claim["programacion_id"]), int(claim["cliente_id"]), "", "", claimed_at)


def _result(entry: dict) -> SendResult:
    return SendResult(
        Outcome(entry["outcome"]),
        message_id=entry.get("message_id"),
        reason=str(entry.get("reason") or ""),
        retry_after_s=entry.get("retry_after_s"),
    )


def flush(conn: Connection, ctx: Context, journal) -> int:
    """Write this sender's outcomes that the database missed; returns how many are now written."""
    done = 0
    for claim, result in list(journal.pending.values()):
        claimed = _claimed(conn, claim)
        if claimed is None:
            continue
        record_outcome(
            conn, ctx, claimed, result
        )  # raises DatabaseError while the database is away
        journal.recorded(claimed)
        done += 1
    return done


def recover_dead(conn: Connection, ctx: Context, directory: str, database: str) -> dict[str, int]:
    """Apply the journals of this machine's dead senders; delete each one that is fully applied."""
    counts = {"recorded": 0, "unsent_back_to_pendiente": 0, "left_unknown": 0}
    for path in journal_module.dead_journals(directory):
        reading = journal_module.read(path)
        if reading.database != database or not reading.sender:
            continue  # another database's journal: not ours to apply
        try:
            _recover_one(conn, ctx, reading, counts)
        except DatabaseError as exc:
            log.warning(kv("journal_recovery_postponed", journal=path.name, detail=str(exc)))
            continue
        with contextlib.suppress(OSError):
            Path(path).unlink()
    if any(counts.values()):
        log.warning(kv("journal_recovered", sender=ctx.sender_id, **counts))
    return counts


def _recover_one(
    conn: Connection, ctx: Context, reading: journal_module.Reading, counts: dict
) -> None:
    dead_ctx = dataclasses.replace(ctx, sender_id=reading.sender)
    for claim, entry in reading.unrecorded.items():
        claimed = _claimed(conn, entry)
        if (
            claimed is None
            or claimed.row.claimed_by != reading.sender
            or journal_module.key(claimed.envio_id, claimed.row.claimed_at) != claim
        ):
            continue  # the row is not that claim any more (reconciled, requeued): left as it is
        record_outcome(conn, dead_ctx, claimed, _result(entry))
        counts["recorded"] += 1
    claims = {**by_value(Estado.ENVIANDO), "sender": reading.sender}
    for found in conn.query(recovery.CLAIMED_BY, claims):
        claim = journal_module.key(found["id"], found["claimed_at"])
        if claim in reading.said:
            continue
        if claim in reading.sending:  # the request left and nobody heard back: never guessed
            outbox.note_on_stuck_row(
                conn,
                int(found["id"]),
                f"unknown outcome: sender {reading.sender}"
                " stopped after sending, before the gateway answered (journal)",
            )
            counts["left_unknown"] += 1
            continue
        if _back_to_pending(conn, ctx, reading.sender, found):
            counts["unsent_back_to_pendiente"] += 1


def _back_to_pending(
    conn: Connection, ctx: Context, dead: str, found: dict, why: str = "stopped before sending"
) -> bool:
    """The journal shows the request never left: the claim is undone, the attempt given back."""

    def attempt() -> None:
        with conn.transaction():
            transition(
                conn,
                int(found["id"]),
                Estado.ENVIANDO,
                Estado.PENDIENTE,
                origin=Origin.SENDER,
                at=ctx.clock.now(),
                detail=f"not sent: {dead} {why} (journal)",
                columns={
                    "attempts": Increment(-1),
                    "last_error": f"claim of {dead} undone: never sent",
                },
                expect={"claimed_by": dead, "claimed_at": found["claimed_at"]},
            )

    try:
        retrying(f"undoing the unsent claim of row {found['id']}", attempt)
    except StaleTransition:
        return False
    return True


# -- what the sender loop calls ------------------------------------------------------------------


def open_journal(config, sender_id: str, database) -> journal_module.Journal | None:
    """This sender's journal in sender.journal_dir, or None when that is empty (off)."""
    directory = str(config.sender.journal_dir or "").strip()
    if not directory:
        return None
    try:
        return journal_module.Journal(directory, sender_id, database_identity(database))
    except OSError as exc:
        raise ConfigError(
            f"config key sender.journal_dir: cannot write a journal in {directory}"
            f" ({exc.strerror or exc})"
        ) from None


def journal_tick(conn: Connection, ctx: Context, config, database) -> None:
    """At every tick: this sender's unwritten outcomes, then the journals of dead senders here."""
    if ctx.journal is None:
        return
    try:
        if ctx.journal.pending:
            written = flush(conn, ctx, ctx.journal)
            log.warning(kv("journal_flushed", sender=ctx.sender_id, recorded=written))
        recover_dead(conn, ctx, str(config.sender.journal_dir), database_identity(database))
        undo_own_orphans(conn, ctx, ctx.journal)
    except DatabaseError as exc:  # still away: the journal keeps everything for the next tick
        log.warning(kv("journal_flush_postponed", sender=ctx.sender_id, detail=str(exc)))


def database_identity(database) -> str:
    """Which database a journal belongs to: its name (MySQL) or file (SQLite), not the route to it.

    Rows are matched on (id, claimed_by, claimed_at) as well, and sender ids are unique.
    """
    url = database.url
    return f"{url.dialect}:{url.database or url.path}"


def undo_own_orphans(conn: Connection, ctx: Context, journal) -> int:
    """This sender's claims that never led to a request.

    The claim committed, the client never heard.

    A connection lost right after the claim's commit makes the claim look failed to us
    while the row is `enviando` under our name; no worker holds it. Past one lease
    period with no "sending" line, it certainly never left: back to `pendiente`.
    """
    cutoff = ctx.clock.now() - dt.timedelta(seconds=ctx.settings.lease_ttl_s)
    undone = 0
    claims = {**by_value(Estado.ENVIANDO), "sender": ctx.sender_id, "before": cutoff}
    for found in conn.query(recovery.CLAIMED_BY_BEFORE, claims):
        if journal_module.key(found["id"], found["claimed_at"]) in journal.sent:
            continue
        if _back_to_pending(conn, ctx, ctx.sender_id, found, why="claimed it but never sent it"):
            undone += 1
    if undone:
        log.warning(kv("journal_orphans_undone", sender=ctx.sender_id, rows=undone))
    return undone
