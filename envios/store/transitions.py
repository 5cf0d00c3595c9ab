"""The state machine of a send: every change of `ll_envios_whatsapp.estado` goes through here.

The states and their diagram (DESIGN.md section 3) are in `envios.domain`, with
`ALLOWED`, the moves this module permits. Besides the diagram two edges exist for
people and for rows that can never be sent:

- pendiente -> error: the row is rejected before any request leaves (no phone
  number, a number that cannot be normalised, an empty text);
- error -> pendiente: an operator re-queues a failed row (`envios reconcile`).

Nothing ever leaves `enviado`, and `enviando` is never sent again automatically:
only `envios reconcile`, with a person's decision, moves a stuck row.

`transition` is the only writer of `estado`. It must run inside the caller's
transaction: the conditional UPDATE and the history row commit together or not
at all, and the caller adds its own writes (the daily count) to the same unit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from envios.domain import ALLOWED, NAME_MAX, TEXT_MAX, Estado, Origin
from envios.errors import DatabaseError, ForbiddenTransition, StaleTransition
from envios.store import fit, history
from envios.store.batches import case_by_id
from envios.store.connector import Connection
from envios.store.sql import Statement


class Increment:
    """A column value meaning `column = column + by` (e.g. attempts)."""

    def __init__(self, by: int = 1):
        self.by = by


# Columns a transition may set beside estado. The names are interpolated into
# the UPDATE, so only these fixed identifiers are ever accepted.
SETTABLE_COLUMNS = frozenset(
    {
        "message_id",
        "fecha_envio",
        "claimed_at",
        "claimed_by",
        "claim_programacion_id",
        "attempts",
        "next_attempt_at",
        "last_error",
    }
)


def check_allowed(from_state: Estado, to_state: Estado) -> None:
    if (Estado(from_state), Estado(to_state)) not in ALLOWED:
        raise ForbiddenTransition(
            f"transition {Estado(from_state).value} -> {Estado(to_state).value} is not allowed"
        )


def transition(
    conn: Connection,
    envio_id: int,
    from_state: Estado,
    to_state: Estado,
    *,
    origin: Origin,
    at: Any,
    detail: str = "",
    columns: Mapping[str, Any] | None = None,
    expect: Mapping[str, Any] | None = None,
    usuario_id: int | None = None,
) -> None:
    """Move one row from `from_state` to `to_state` and record it, in the caller's transaction.

    Raises ForbiddenTransition for an edge the machine does not have, and
    StaleTransition when the row is no longer in `from_state` (someone else moved
    it first), or when a column named in `expect` no longer has the given value
    (e.g. the claim is not ours any more): the caller's transaction should then
    be rolled back.

    `at` is the database's wall clock (`Clock.db_now`), as the application's
    `created_at` default is. `usuario_id` (a row of the application's `usuarios`)
    is written only when given: the column exists only on the later schema.
    """
    check_allowed(from_state, to_state)
    if not conn.in_transaction:
        raise DatabaseError("state transitions must run inside a transaction")
    # never a failed write (latin1)
    detail, columns = fit.transition_texts(conn, detail, columns or {})
    expected = dict(expect or {})
    unknown = (set(columns) | set(expected)) - SETTABLE_COLUMNS
    if unknown:
        raise ValueError(f"columns not settable by a transition: {sorted(unknown)}")

    changed = conn.execute(*_update(envio_id, from_state, to_state, columns, expected))
    if changed != 1:
        also = f" with {', '.join(sorted(expected))} as expected" if expected else ""
        raise StaleTransition(
            f"row {envio_id} is not {Estado(from_state).value}{also} any more;"
            f" not moved to {Estado(to_state).value}"
        )
    entry = {
        "from_state": Estado(from_state).value,
        "to_state": Estado(to_state).value,
        "origin": Origin(origin).value,
        "detail": (detail or "")[:TEXT_MAX] or None,
        "at": at,
        "envio_id": envio_id,
    }
    if usuario_id is None:
        conn.execute(history.HISTORY, entry)
    else:
        conn.execute(history.HISTORY_BY_PERSON, {**entry, "usuario_id": usuario_id})


def _update(
    envio_id: int,
    from_state: Estado,
    to_state: Estado,
    columns: Mapping[str, Any],
    expected: Mapping[str, Any],
) -> tuple[Statement, dict[str, Any]]:
    """The conditional UPDATE of one transition: `set_<column>` / `expect_<column>` parameters.

    Column names come from SETTABLE_COLUMNS only (checked by the caller); values are parameters.
    """
    assignments = ["estado = %(to_state)s"]
    params: dict[str, Any] = {
        "to_state": Estado(to_state).value,
        "envio_id": envio_id,
        "from_state": Estado(from_state).value,
    }
    for name, value in columns.items():
        if isinstance(value, Increment):
            assignments.append(f"{name} = {name} + %(set_{name})s")
        else:
            assignments.append(f"{name} = %(set_{name})s")
        params[f"set_{name}"] = value.by if isinstance(value, Increment) else value
    conditions = ""
    for name, value in expected.items():
        conditions += f" AND {name} = %(expect_{name})s"
        params[f"expect_{name}"] = value
    update = Statement(
        "transitions.update",
        f"UPDATE ll_envios_whatsapp SET {', '.join(assignments)}"  # noqa: S608 - fixed names only
        f" WHERE id = %(envio_id)s AND estado = %(from_state)s{conditions}",
    )
    return update, params


def transition_many(
    conn: Connection,
    envio_ids: list[int],
    from_state: Estado,
    to_state: Estado,
    *,
    origin: Origin,
    at: Any,
    detail: str | Mapping[int, str] = "",
    columns: Mapping[str, Any] | None = None,
    per_row: Mapping[str, Mapping[int, Any]] | None = None,
    expect: Mapping[str, Any] | None = None,
) -> None:
    """`transition` for many rows in two statements plus one history insert per distinct detail.

    Same rules: the caller's transaction, allowed edges only, every row still in
    `from_state` (and matching `expect`) or StaleTransition for the lot. `columns` are
    common to every row; `per_row` gives a column one value per row (`CASE id ...`);
    `detail` is one text or one per row.
    """
    if not envio_ids:
        return
    check_allowed(from_state, to_state)
    if not conn.in_transaction:
        raise DatabaseError("state transitions must run inside a transaction")
    columns = fit.outbox_texts(conn, columns or {})
    varying = {
        name: {i: fit.outbox_texts(conn, {name: v})[name] for i, v in values.items()}
        for name, values in (per_row or {}).items()
    }
    expected = dict(expect or {})
    unknown = (set(columns) | set(varying) | set(expected)) - SETTABLE_COLUMNS
    if unknown:
        raise ValueError(f"columns not settable by a transition: {sorted(unknown)}")
    update, params = update_many(envio_ids, from_state, to_state, columns, varying, expected)
    changed = conn.execute(update, params)
    if changed != len(envio_ids):
        raise StaleTransition(
            f"{len(envio_ids) - changed} of rows {envio_ids[:5]}..."
            f" are not {Estado(from_state).value} any more;"
            f" none moved to {Estado(to_state).value}"
        )
    details = detail if isinstance(detail, Mapping) else dict.fromkeys(envio_ids, detail)
    by_detail: dict[str, list[int]] = {}
    for envio_id in envio_ids:
        by_detail.setdefault(details.get(envio_id) or "", []).append(envio_id)
    for text, group in by_detail.items():
        text = fit.history_detail(conn, text)
        insert, group_params = history.HISTORY_MANY.with_lists(ids=group)
        conn.execute(
            insert,
            {
                **group_params,
                "from_state": Estado(from_state).value,
                "to_state": Estado(to_state).value,
                "origin": Origin(origin).value,
                "detail": (text or "")[:TEXT_MAX] or None,
                "at": at,
            },
        )


# Read by primary key on MariaDB/MySQL, whatever the statistics say: when the rows left in
# `from_state` are about as many as the batch (the last rows of a run, every in-flight
# row), the optimizer walked the whole (estado, claimed_at) index instead, locking each
# row it passed; a concurrent claim's SKIP LOCKED then skipped those and called the
# queue empty. SQLite locks the database, not rows.
_BY_ID_MYSQL = "ll_envios_whatsapp FORCE INDEX (PRIMARY)"


def update_many(
    envio_ids: list[int],
    from_state: Estado,
    to_state: Estado,
    columns: Mapping[str, Any],
    varying: Mapping[str, Mapping[int, Any]],
    expected: Mapping[str, Any],
) -> tuple[Statement, dict[str, Any]]:
    """The conditional UPDATE of `transition_many`: `c<n>` common values, `v<n>_*` per-row
    values (`CASE id`), `x<n>` expectations, `ids_*` the rows.

    Column names come from SETTABLE_COLUMNS only (checked by the caller); values are parameters.
    """
    params: dict[str, Any] = {
        "to_state": Estado(to_state).value,
        "from_state": Estado(from_state).value,
    }
    assignments = ["estado = %(to_state)s"]
    for n, (name, value) in enumerate(columns.items()):
        if isinstance(value, Increment):
            assignments.append(f"{name} = {name} + %(c{n})s")
            params[f"c{n}"] = value.by
        else:
            assignments.append(f"{name} = %(c{n})s")
            params[f"c{n}"] = value
    for n, (name, values) in enumerate(varying.items()):
        case, case_params = case_by_id(f"v{n}", values)
        assignments.append(f"{name} = {case}")
        params.update(case_params)
    conditions = "".join(f" AND {name} = %(x{n})s" for n, name in enumerate(expected))
    params.update({f"x{n}": value for n, value in enumerate(expected.values())})
    rest = f" SET {', '.join(assignments)} WHERE id IN ({{ids}}) AND estado = %(from_state)s"
    update, id_params = Statement(
        "transitions.update_many",
        mysql=f"UPDATE {_BY_ID_MYSQL}{rest}{conditions}",
        sqlite=f"UPDATE ll_envios_whatsapp{rest}{conditions}",
    ).with_lists(ids=envio_ids)
    params.update(id_params)
    return update, params


def audit(
    conn: Connection,
    now: dt.datetime,
    action: str,
    *,
    campania_id: int | None,
    reason: str,
    detail: str,
    origin: str,
    programacion_id: int | None = None,
) -> None:
    """One row of envios_audit: a schedule paused or resumed, a message id recorded.

    Not a change of `estado` (those are `transition`'s history rows); written in the
    caller's transaction, beside the change it explains.
    """
    conn.execute(
        history.AUDIT,
        {
            "now": now,
            "action": action,
            "campania_id": campania_id,
            "programacion_id": programacion_id,
            "reason": reason,
            "detail": detail[:TEXT_MAX],
            "origin": origin[:NAME_MAX],
        },
    )
