"""The send engine's batched statements: many lanes' claims, records and leases per round trip.

One claim transaction serves every lane that is due (`sender.session_worker.claim_batch`),
one record transaction every outcome that has arrived (`record_batch`), one statement
renews every lease the sender holds. States are parameters (`envios.domain.Estado`).

IN lists are filled by `Statement.with_lists`; multi-row VALUES and `CASE id WHEN ...`
by `expand` with `values_list` / `case_by_id`: the text gets only `%(name)s`
placeholders, every value stays a parameter.

Dialect differences:
- claimed rows are locked with `FOR UPDATE SKIP LOCKED` on MariaDB/MySQL, so two
  senders claiming from one campaign take different rows without waiting for each
  other; SQLite's `BEGIN IMMEDIATE` already serialises writers;
- lease rows and daily counts are locked with `FOR UPDATE` on MariaDB/MySQL;
- insert-if-missing: `INSERT IGNORE` / `INSERT OR IGNORE`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from envios.store.sending import ROW_COLUMNS, SCHEDULE_COLUMNS
from envios.store.sql import Statement

# -- building lists ------------------------------------------------------------------------


def expand(statement: Statement, **parts: str) -> Statement:
    """The statement with `{name}` slots filled by placeholder text (from values_list)."""
    return dataclasses.replace(
        statement,
        sql=statement.sql.format(**parts) if statement.sql else "",
        mysql=None if statement.mysql is None else statement.mysql.format(**parts),
        sqlite=None if statement.sqlite is None else statement.sqlite.format(**parts),
    )


def values_list(prefix: str, rows: Iterable[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """`(%(p_0_a)s, %(p_0_b)s), (...)` and its parameters, for a multi-row VALUES."""
    text, params = [], {}
    for i, row in enumerate(rows):
        names = []
        for column, value in row.items():
            key = f"{prefix}_{i}_{column}"
            params[key] = value
            names.append(f"%({key})s")
        text.append(f"({', '.join(names)})")
    if not text:
        raise ValueError(f"values_list({prefix!r}): no rows; skip the statement")
    return ", ".join(text), params


def case_by_id(prefix: str, values: Mapping[int, Any]) -> tuple[str, dict[str, Any]]:
    """`CASE id WHEN %(p_i0)s THEN %(p_v0)s ... END`: one value per row in one UPDATE."""
    text, params = ["CASE id"], {}
    for i, (row_id, value) in enumerate(values.items()):
        params[f"{prefix}_i{i}"], params[f"{prefix}_v{i}"] = row_id, value
        text.append(f"WHEN %({prefix}_i{i})s THEN %({prefix}_v{i})s")
    text.append("END")
    return " ".join(text), params


# -- schedules, quota -------------------------------------------------------------------------

# The schedules of one claim batch and their campaigns, as they are now: {pids}.
SCHEDULES_BY_ID = Statement(
    "schedules_by_id",
    f"SELECT {SCHEDULE_COLUMNS} FROM ll_programaciones p"  # noqa: S608 - fixed column list
    " JOIN ll_campanias_whatsapp c ON c.id = p.campania_id WHERE p.id IN ({pids})",
)

# Today's count rows of the batch's schedules, created when missing: {rows} of (pid, fecha, 0).
ENSURE_DAILY_MANY = Statement(
    "ensure_daily_many",
    mysql="INSERT IGNORE INTO ll_programacion_envios_diarios (programacion_id, fecha, enviados)"
    " VALUES {rows}",
    sqlite="INSERT OR IGNORE INTO ll_programacion_envios_diarios (programacion_id, fecha, enviados)"
    " VALUES {rows}",
)

# Locked in id order (every claim and record batch locks them in this order: no deadlock
# between two batches), so a schedule's quota is computed by one transaction at a time.
LOCK_DAILY_MANY = Statement(
    "lock_daily_many",
    mysql="SELECT programacion_id, enviados FROM ll_programacion_envios_diarios"
    " WHERE fecha = %(day)s AND programacion_id IN ({pids}) ORDER BY programacion_id FOR UPDATE",
    sqlite="SELECT programacion_id, enviados FROM ll_programacion_envios_diarios"
    " WHERE fecha = %(day)s AND programacion_id IN ({pids}) ORDER BY programacion_id",
)

# Rows in flight claimed on the quota's day (bounds on the database's clock) per schedule.
IN_FLIGHT_MANY = Statement(
    "in_flight_many",
    "SELECT claim_programacion_id AS pid, COUNT(*) AS n FROM ll_envios_whatsapp"
    " WHERE claim_programacion_id IN ({pids}) AND estado = %(enviando)s"
    " AND claimed_at >= %(start)s AND claimed_at < %(end)s GROUP BY claim_programacion_id",
)

# `n` more sends per (schedule, day), in the transaction that writes them enviado: {rows} of
# (pid, fecha, n, now) in schedule order (count rows are always locked in that order).
# A claim reading a count waits for this transaction, so it never sees the rows
# enviado without their count, or the other way round.
COUNT_SENT_MANY = Statement(
    "count_sent_many",
    mysql="INSERT INTO ll_programacion_envios_diarios"
    " (programacion_id, fecha, enviados, actualizado_en)"
    " VALUES {rows} ON DUPLICATE KEY UPDATE enviados = enviados + VALUES(enviados),"
    " actualizado_en = VALUES(actualizado_en)",
    sqlite="INSERT INTO ll_programacion_envios_diarios"
    " (programacion_id, fecha, enviados, actualizado_en)"
    " VALUES {rows} ON CONFLICT (programacion_id, fecha) DO UPDATE SET"
    " enviados = enviados + excluded.enviados, actualizado_en = excluded.actualizado_en",
)

# -- rows ----------------------------------------------------------------------------------------

# The campaign's next ready rows after `after_id`, oldest first, up to `n` (index
# idx_envios_camp_estado: campania_id, estado, id). MariaDB skips rows another sender's
# claim has locked instead of waiting for it.
READY_ROWS = Statement(
    "ready_rows",
    mysql=f"SELECT {ROW_COLUMNS} FROM ll_envios_whatsapp"  # noqa: S608 - fixed column list
    " WHERE campania_id = %(campania_id)s AND estado = %(pendiente)s AND id > %(after_id)s"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= %(at)s)"
    " ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED",
    sqlite=f"SELECT {ROW_COLUMNS} FROM ll_envios_whatsapp"  # noqa: S608 - fixed column list
    " WHERE campania_id = %(campania_id)s AND estado = %(pendiente)s AND id > %(after_id)s"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= %(at)s)"
    " ORDER BY id LIMIT %(n)s",
)

# The first ready rows of many campaigns in one statement: `parts` joined by UNION ALL, the
# i-th with parameters campania_id_i, n_i (SQLite takes no LIMIT inside a compound SELECT
# unless the part is a subquery). No `id >` bound here: with one, MariaDB walks the primary
# key instead of idx_envios_camp_estado, through every row sent before (measured: 50 paced
# sends/s instead of 170 at 400 sessions x 106 rows).
READY_ROWS_PART = Statement(
    "ready_rows_part",
    mysql=f"(SELECT {ROW_COLUMNS} FROM ll_envios_whatsapp"  # noqa: S608 - fixed column list
    " WHERE campania_id = %(campania_id_{i})s AND estado = %(pendiente)s"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= %(at)s)"
    " ORDER BY id LIMIT %(n_{i})s FOR UPDATE SKIP LOCKED)",
    # safe: a fixed column list
    sqlite=f"SELECT * FROM (SELECT {ROW_COLUMNS} FROM ll_envios_whatsapp"  # noqa: S608
    " WHERE campania_id = %(campania_id_{i})s AND estado = %(pendiente)s"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= %(at)s)"
    " ORDER BY id LIMIT %(n_{i})s)",
)


# The campaign's first ready rows as they are committed now, read without a lock: when
# SKIP LOCKED came back short, are there rows it passed over because another transaction
# holds them (another sender's claim reading ahead)? Then the queue is not empty.
READY_IDS_UNLOCKED = Statement(
    "ready_ids_unlocked",
    "SELECT id FROM ll_envios_whatsapp"
    " WHERE campania_id = %(campania_id)s AND estado = %(pendiente)s"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= %(at)s)"
    " ORDER BY id LIMIT %(n)s",
)


def ready_rows_many(parts: int) -> Statement:
    """READY_ROWS_PART for campaigns 0..parts-1, as one statement."""

    def joined(text: str) -> str:
        return " UNION ALL ".join(text.replace("{i}", str(i)) for i in range(parts))

    return Statement(
        "ready_rows_many",
        mysql=joined(READY_ROWS_PART.mysql or ""),
        sqlite=joined(READY_ROWS_PART.sqlite or ""),
    )


# -- leases ------------------------------------------------------------------------------------

# The batch's lease rows, locked: a sender taking one over waits for our claim to commit,
# and we see its change if it committed first ({lanes}).
LEASES_LOCKED = Statement(
    "leases_locked",
    mysql="SELECT cliente_id, owner, expires_at FROM envios_session_leases"
    " WHERE cliente_id IN ({lanes}) FOR UPDATE",
    sqlite="SELECT cliente_id, owner, expires_at FROM envios_session_leases"
    " WHERE cliente_id IN ({lanes})",
)

# Take many leases at once: insert the free ones, take the expired ones, extend ours.
LEASES_INSERT_MANY = Statement(
    "leases_insert_many",
    mysql="INSERT IGNORE INTO envios_session_leases (cliente_id, owner, acquired_at, expires_at)"
    " VALUES {rows}",
    sqlite="INSERT OR IGNORE INTO envios_session_leases"
    " (cliente_id, owner, acquired_at, expires_at)"
    " VALUES {rows}",
)
LEASES_TAKE_EXPIRED = Statement(
    "leases_take_expired",
    "UPDATE envios_session_leases"
    " SET owner = %(owner)s, acquired_at = %(now)s, expires_at = %(expires)s"
    " WHERE cliente_id IN ({lanes}) AND owner <> %(owner)s AND expires_at < %(now)s",
)
LEASES_EXTEND_LISTED = Statement(
    "leases_extend_listed",
    "UPDATE envios_session_leases SET expires_at = %(expires)s"
    " WHERE cliente_id IN ({lanes}) AND owner = %(owner)s",
)
LEASES_OWNED = Statement(
    "leases_owned",
    "SELECT cliente_id FROM envios_session_leases WHERE owner = %(owner)s",
)
# Every lease this sender holds, renewed by one statement (then LEASES_OWNED says which).
LEASES_RENEW_ALL = Statement(
    "leases_renew_all",
    "UPDATE envios_session_leases SET expires_at = %(expires)s WHERE owner = %(owner)s",
)
LEASES_RELEASE_MANY = Statement(
    "leases_release_many",
    "DELETE FROM envios_session_leases WHERE cliente_id IN ({lanes}) AND owner = %(owner)s",
)
