"""The state machine: forbidden edges refused, every allowed edge leaves one history row.

The contract is pinned here as LITERAL tables written from DESIGN.md section 3 (the
diagram) plus the two edges documented in envios/store/transitions.py (pendiente -> error: a row
that can never be sent is rejected before any request; error -> pendiente: an operator
re-queues a failed row). They are never derived from the product's ALLOWED: a change to
the machine must change these tables too.
"""

from __future__ import annotations

import threading
import time

import pytest

from envios.domain import ALLOWED, Estado, Origin
from envios.errors import DatabaseError, ForbiddenTransition, StaleTransition
from envios.store import history as history_sql
from envios.store.transitions import Increment, audit, transition, transition_many, update_many

P, S, D, E = Estado.PENDIENTE, Estado.ENVIANDO, Estado.ENVIADO, Estado.ERROR
STATE_NAMES = ("pendiente", "enviando", "enviado", "error")

# (from, to, why it exists)
ALLOWED_EDGES = [
    (P, S, "claim"),
    (S, D, "the gateway confirmed the send"),
    (S, P, "definitely not sent: retried later"),
    (S, E, "permanent failure, or out of attempts"),
    (P, E, "unsendable: rejected before any request leaves"),
    (E, P, "an operator re-queues a failed row"),
]

# (from, to, why it must never happen)
FORBIDDEN_EDGES = [
    (P, P, "not a change"),
    (P, D, "the 2026-02-07 incident: marked sent without ever being in flight"),
    (S, S, "a row in flight is never claimed again"),
    (D, P, "nothing leaves enviado: a re-send could deliver twice"),
    (D, S, "nothing leaves enviado"),
    (D, D, "nothing leaves enviado"),
    (D, E, "nothing leaves enviado: a delivered message is not an error"),
    (E, S, "a failed row is re-queued by a person first, never claimed straight from error"),
    (E, D, "a failed row was never confirmed by the gateway"),
    (E, E, "not a change"),
]


def _edge_id(edge):
    return f"{edge[0].value}->{edge[1].value}"


def test_the_literal_tables_cover_every_pair_of_the_four_states_once():
    """Guards the tables above: 4 x 4 pairs, each either allowed or forbidden, none twice."""
    assert [s.value for s in Estado] == list(STATE_NAMES)
    pairs = [(a.value, b.value) for a, b, _ in ALLOWED_EDGES + FORBIDDEN_EDGES]
    assert sorted(pairs) == sorted((a, b) for a in STATE_NAMES for b in STATE_NAMES)


def test_the_product_allows_exactly_the_contract_edges():
    """Adding an edge to sender.states.ALLOWED (or dropping one) fails here by name."""
    assert {(a, b) for a, b, _ in ALLOWED_EDGES} == set(ALLOWED)


@pytest.fixture
def row(upgraded):
    upgraded.execute(
        "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado)"
        " VALUES (7, 'c', 'm', 'en_progreso')"
    )
    return upgraded.insert(
        "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino, mensaje_final)"
        " VALUES (7, '5491100000001', 'Ana', 'hola')"
    )


def force_state(conn, envio_id, estado):
    conn.execute(
        "UPDATE ll_envios_whatsapp SET estado = %s WHERE id = %s", (estado.value, envio_id)
    )


def history(conn, envio_id):
    return conn.query(
        "SELECT estado_anterior, estado_nuevo, origen, detalle, campania_id"
        " FROM ll_envios_whatsapp_historial WHERE envio_id = %s ORDER BY id",
        (envio_id,),
    )


def move(conn, envio_id, from_state, to_state, clock, *, origin=Origin.SENDER, **kw):
    """One `transition` in a transaction of its own, now (what most tests here need)."""
    with conn.transaction():
        transition(conn, envio_id, from_state, to_state, origin=origin, at=clock.now(), **kw)


def move_many(conn, envio_ids, from_state, to_state, clock, *, origin=Origin.SENDER, **kw):
    """`transition_many` likewise."""
    with conn.transaction():
        transition_many(conn, envio_ids, from_state, to_state, origin=origin, at=clock.now(), **kw)


@pytest.mark.parametrize(
    "from_state,to_state,why", FORBIDDEN_EDGES, ids=[_edge_id(e) for e in FORBIDDEN_EDGES]
)
def test_forbidden_transitions_are_refused(upgraded, row, clock, from_state, to_state, why):
    force_state(upgraded, row, from_state)
    with pytest.raises(ForbiddenTransition, match=f"{from_state.value} -> {to_state.value}"):
        move(upgraded, row, from_state, to_state, clock)
    assert (
        upgraded.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = %s", (row,))
        == from_state.value
    )
    assert history(upgraded, row) == []


def test_enviado_never_goes_back(upgraded, row, clock):
    force_state(upgraded, row, Estado.ENVIADO)
    for target in (Estado.PENDIENTE, Estado.ENVIANDO, Estado.ERROR):
        with pytest.raises(ForbiddenTransition):
            move(upgraded, row, Estado.ENVIADO, target, clock, origin=Origin.OPERATOR)


def test_pendiente_never_goes_straight_to_enviado_the_incident_edge(upgraded, row, clock):
    """The incident's own edge: a row marked enviado that was never claimed (never in flight)."""
    with pytest.raises(ForbiddenTransition, match="pendiente -> enviado"):
        move(
            upgraded,
            row,
            P,
            D,
            clock,
            columns={"message_id": "true_x@c.us_1", "fecha_envio": clock.now()},
        )
    got = upgraded.query_one(
        "SELECT estado, message_id, fecha_envio FROM ll_envios_whatsapp WHERE id = %s", (row,)
    )
    assert got == {"estado": "pendiente", "message_id": None, "fecha_envio": None}
    assert history(upgraded, row) == []


@pytest.mark.parametrize(
    "from_state,to_state,why", ALLOWED_EDGES, ids=[_edge_id(e) for e in ALLOWED_EDGES]
)
def test_each_allowed_transition_writes_exactly_one_history_row(
    upgraded, row, clock, from_state, to_state, why
):
    force_state(upgraded, row, from_state)
    move(
        upgraded,
        row,
        from_state,
        to_state,
        clock,
        detail="why",
        columns={"attempts": Increment(), "last_error": "x"},
    )
    got = upgraded.query_one(
        "SELECT estado, attempts, last_error FROM ll_envios_whatsapp WHERE id = %s", (row,)
    )
    assert got == {"estado": to_state.value, "attempts": 1, "last_error": "x"}
    assert history(upgraded, row) == [
        {
            "estado_anterior": from_state.value,
            "estado_nuevo": to_state.value,
            "origen": "envios-sender",
            "detalle": "why",
            "campania_id": 7,
        }
    ]


def test_stale_transition_rolls_back_with_no_history(upgraded, row, clock):
    force_state(upgraded, row, Estado.ENVIANDO)
    with pytest.raises(StaleTransition):
        move(upgraded, row, Estado.PENDIENTE, Estado.ENVIANDO, clock)
    assert history(upgraded, row) == []


def test_failure_after_transition_rolls_back_state_and_history(upgraded, row, clock):
    with pytest.raises(RuntimeError):
        with upgraded.transaction():
            transition(
                upgraded,
                row,
                Estado.PENDIENTE,
                Estado.ENVIANDO,
                origin=Origin.SENDER,
                at=clock.now(),
            )
            raise RuntimeError("crash before commit")
    assert (
        upgraded.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = %s", (row,))
        == "pendiente"
    )
    assert history(upgraded, row) == []


def test_stale_transition_says_which_row_which_state_and_which_expectation(upgraded, row, clock):
    force_state(upgraded, row, Estado.ENVIANDO)
    with pytest.raises(StaleTransition) as plain:
        move(upgraded, row, P, S, clock)
    assert str(plain.value) == f"row {row} is not pendiente any more; not moved to enviando"

    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET claimed_by = 'other', claimed_at = %s WHERE id = %s",
        (clock.now(), row),
    )
    with pytest.raises(StaleTransition) as claimed:
        move(upgraded, row, S, P, clock, expect={"claimed_by": "me", "claimed_at": clock.now()})
    assert str(claimed.value) == (
        f"row {row} is not enviando with claimed_at, claimed_by as expected any more;"
        " not moved to pendiente"
    )
    assert (
        upgraded.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = %s", (row,)) == "enviando"
    )
    assert history(upgraded, row) == []


def test_a_transition_whose_expectations_hold_moves_the_row(upgraded, row, clock):
    """`expect` with several columns: all must match (the sender undoing only its own claim)."""
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET estado = 'enviando', claimed_by = 'me', claimed_at = %s"
        " WHERE id = %s",
        (clock.now(), row),
    )
    move(upgraded, row, S, P, clock, expect={"claimed_by": "me", "claimed_at": clock.now()})
    assert (
        upgraded.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = %s", (row,))
        == "pendiente"
    )


def test_history_detail_is_null_when_none_is_given_and_cut_to_500(upgraded, row, clock):
    """No detail is NULL, as the application writes it; envios's origins say envios and the part."""
    move(upgraded, row, P, S, clock)
    move(upgraded, row, S, E, clock, origin=Origin.RECONCILE, detail="x" * 600)
    assert [(h["detalle"], h["origen"]) for h in history(upgraded, row)] == [
        (None, "envios-sender"),
        ("x" * 500, "envios-reconcile"),
    ]


def test_a_named_person_is_written_in_usuario_id_only_when_given(upgraded, row, clock):
    """The later schema's `usuario_id` (the application's users).

    Filled for a named person, else left NULL.
    """
    upgraded.execute(
        "ALTER TABLE ll_envios_whatsapp_historial ADD COLUMN usuario_id INTEGER DEFAULT NULL"
    )
    move(upgraded, row, P, E, clock, detail="bad number")
    move(
        upgraded,
        row,
        E,
        P,
        clock,
        origin=Origin.RECONCILE,
        detail="number fixed by the client",
        usuario_id=7,
    )
    got = upgraded.query(
        "SELECT estado_anterior, estado_nuevo, origen, detalle, usuario_id"
        " FROM ll_envios_whatsapp_historial WHERE envio_id = %s ORDER BY id",
        (row,),
    )
    assert [tuple(r.values()) for r in got] == [
        ("pendiente", "error", "envios-sender", "bad number", None),
        ("error", "pendiente", "envios-reconcile", "number fixed by the client", 7),
    ]


def test_transition_outside_a_transaction_is_refused(upgraded, row, clock):
    with pytest.raises(DatabaseError) as refused:
        transition(
            upgraded, row, Estado.PENDIENTE, Estado.ENVIANDO, origin=Origin.SENDER, at=clock.now()
        )
    assert str(refused.value) == "state transitions must run inside a transaction"
    assert (
        upgraded.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = %s", (row,))
        == "pendiente"
    )


def test_only_known_columns_can_be_set(upgraded, row, clock):
    with pytest.raises(ValueError, match="estado"):
        move(upgraded, row, Estado.PENDIENTE, Estado.ENVIANDO, clock, columns={"estado": "enviado"})


def test_two_connections_claiming_the_same_row_exactly_one_wins(database, upgraded, row, clock):
    """Two real connections both read the row as pendiente, then both claim it.

    One lands, one is stale.

    The barrier sits between the read and the claim, so both reads happen before
    either claim: the check-then-act window a naive claim would lose is open for
    both (asserted below), and only the conditional UPDATE keeps it to one winner.
    """
    barrier = threading.Barrier(2, timeout=30)
    seen, outcomes = [], []

    def claim(name):
        with database.connect() as other:
            seen.append(other.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = %s", (row,)))
            barrier.wait()  # both have read pendiente; neither has written yet
            try:
                move(other, row, P, S, clock, columns={"claimed_by": name})
                outcomes.append(("won", name))
            except StaleTransition:
                outcomes.append(("lost", name))

    threads = [threading.Thread(target=claim, args=(f"s{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert seen == ["pendiente", "pendiente"], "the two claims did not overlap"
    assert not barrier.broken
    assert sorted(o for o, _ in outcomes) == ["lost", "won"]
    winner = next(n for o, n in outcomes if o == "won")
    assert (
        upgraded.scalar("SELECT claimed_by FROM ll_envios_whatsapp WHERE id = %s", (row,)) == winner
    )
    assert len(history(upgraded, row)) == 1


def _waiting_on_a_lock(conn, thread_id: int) -> bool:
    return bool(
        conn.scalar(
            "SELECT COUNT(*) FROM information_schema.innodb_trx"
            " WHERE trx_state = 'LOCK WAIT' AND trx_mysql_thread_id = %s",
            (thread_id,),
        )
    )


@pytest.mark.mysql_only
def test_a_claim_waits_for_a_concurrent_uncommitted_claim_then_is_stale(
    database, upgraded, row, clock
):
    """MariaDB: A claims inside a transaction it holds open; B, inside its own transaction,
    has read the row as pendiente and tries to claim it too. B is seen blocked on A's row
    lock (proof the two transactions overlap); when A commits, B's claim changes nothing."""
    a, b = database.connect(), database.connect()
    b_read, b_result = threading.Event(), []
    try:
        with a.transaction():
            transition(
                a, row, P, S, origin=Origin.SENDER, at=clock.now(), columns={"claimed_by": "A"}
            )

            def claim_b():
                try:
                    with b.transaction():
                        b_result.append(
                            b.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = %s", (row,))
                        )
                        b_read.set()
                        transition(
                            b,
                            row,
                            P,
                            S,
                            origin=Origin.SENDER,
                            at=clock.now(),
                            columns={"claimed_by": "B"},
                        )
                    b_result.append("won")
                except StaleTransition:
                    b_result.append("lost")

            thread = threading.Thread(target=claim_b)
            thread.start()
            assert b_read.wait(30)
            for _ in range(300):  # bounded: at most 30 s
                if _waiting_on_a_lock(upgraded, b.thread_id):
                    break
                time.sleep(0.1)
            assert _waiting_on_a_lock(upgraded, b.thread_id), (
                "B never waited on A's uncommitted claim"
            )
            assert b_result == ["pendiente"]  # B read before A committed
        thread.join(60)
        assert b_result == ["pendiente", "lost"]
        assert (
            upgraded.scalar("SELECT claimed_by FROM ll_envios_whatsapp WHERE id = %s", (row,))
            == "A"
        )
        assert len(history(upgraded, row)) == 1
    finally:
        a.close()
        b.close()


# -- transition_many: the engine's batched form, the same rules ----------------------------


@pytest.fixture
def rows(upgraded, row):
    """Three rows of campaign 7 (the `row` fixture's first), all pendiente."""
    more = [
        upgraded.insert(
            "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino,"
            " mensaje_final) VALUES (7, %s, 'Ana', 'hola')",
            (f"54911000000{n:02d}",),
        )
        for n in (2, 3)
    ]
    return [row, *more]


def outbox_rows(conn, ids):
    found = conn.query(
        "SELECT id, estado, attempts, claimed_by, message_id, last_error FROM ll_envios_whatsapp"
        " ORDER BY id"
    )
    return {r["id"]: r for r in found if r["id"] in ids}


def history_of(conn, ids):
    return {envio_id: history(conn, envio_id) for envio_id in ids}


def test_many_rows_move_together_with_one_history_row_each(upgraded, rows, clock):
    move_many(
        upgraded,
        rows,
        P,
        S,
        clock,
        detail="claimed by me",
        columns={"claimed_by": "me", "attempts": Increment(2), "last_error": "señal"},
    )
    got = outbox_rows(upgraded, rows)
    assert [
        (r["estado"], r["claimed_by"], r["attempts"], r["last_error"]) for r in got.values()
    ] == [("enviando", "me", 2, "señal")] * 3
    assert history_of(upgraded, rows) == {
        envio_id: [
            {
                "estado_anterior": "pendiente",
                "estado_nuevo": "enviando",
                "origen": "envios-sender",
                "detalle": "claimed by me",
                "campania_id": 7,
            }
        ]
        for envio_id in rows
    }


def test_many_rows_take_one_value_each_and_one_detail_each(upgraded, rows, clock):
    for envio_id in rows:
        force_state(upgraded, envio_id, S)
    ids = {envio_id: f"wamid.{envio_id}" for envio_id in rows}
    details = {rows[0]: "sent", rows[1]: "sent, id checked", rows[2]: ""}
    move_many(
        upgraded,
        rows,
        S,
        D,
        clock,
        detail=details,
        per_row={"message_id": ids},
        columns={"last_error": None},
    )
    got = outbox_rows(upgraded, rows)
    assert {i: (r["estado"], r["message_id"]) for i, r in got.items()} == {
        i: ("enviado", ids[i]) for i in rows
    }
    assert [h[0]["detalle"] for h in history_of(upgraded, rows).values()] == [
        "sent",
        "sent, id checked",
        None,  # no detail is NULL, as the application writes it
    ]


def test_many_rows_detail_is_cut_to_500(upgraded, rows, clock):
    move_many(upgraded, rows[:1], P, E, clock, origin=Origin.RECONCILE, detail="x" * 600)
    assert history(upgraded, rows[0]) == [
        {
            "estado_anterior": "pendiente",
            "estado_nuevo": "error",
            "origen": "envios-reconcile",
            "detalle": "x" * 500,
            "campania_id": 7,
        }
    ]


def test_many_rows_with_one_moved_by_someone_else_move_none(upgraded, rows, clock):
    force_state(upgraded, rows[1], S)  # another sender got there first
    with pytest.raises(StaleTransition, match="1 of rows .* are not pendiente any more"):
        move_many(upgraded, rows, P, S, clock)
    got = outbox_rows(upgraded, rows)
    assert [r["estado"] for r in got.values()] == ["pendiente", "enviando", "pendiente"]
    assert history_of(upgraded, rows) == {i: [] for i in rows}


def test_many_rows_expectations_must_hold_for_every_row(upgraded, rows, clock):
    for envio_id in rows:
        force_state(upgraded, envio_id, S)
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET claimed_by = 'me' WHERE id IN (%s, %s)", tuple(rows[:2])
    )
    with pytest.raises(StaleTransition):
        move_many(upgraded, rows, S, P, clock, expect={"claimed_by": "me"})
    move_many(upgraded, rows[:2], S, P, clock, expect={"claimed_by": "me"})
    got = outbox_rows(upgraded, rows)
    assert [r["estado"] for r in got.values()] == ["pendiente", "pendiente", "enviando"]


def test_many_rows_follow_the_same_rules_as_one(upgraded, rows, clock):
    at = clock.now()
    with pytest.raises(ForbiddenTransition):
        with upgraded.transaction():
            transition_many(upgraded, rows, P, D, origin=Origin.SENDER, at=at)
    with pytest.raises(DatabaseError, match="^state transitions must run inside a transaction$"):
        transition_many(upgraded, rows, P, S, origin=Origin.SENDER, at=at)
    with pytest.raises(ValueError, match=r"\['estado_x', 'nope'\]"):
        with upgraded.transaction():
            transition_many(
                upgraded,
                rows,
                P,
                S,
                origin=Origin.SENDER,
                at=at,
                columns={"nope": 1},
                per_row={"estado_x": {rows[0]: 1}},
            )
    transition_many(
        upgraded, [], P, S, origin=Origin.SENDER, at=at
    )  # nothing: no transaction needed
    assert [r["estado"] for r in outbox_rows(upgraded, rows).values()] == ["pendiente"] * 3
    assert history_of(upgraded, rows) == {i: [] for i in rows}


def test_an_audit_row_says_who_why_and_when_within_its_columns(upgraded, row, clock):
    at = clock.now()
    with upgraded.transaction():
        audit(
            upgraded,
            at,
            "pause",
            campania_id=7,
            programacion_id=3,
            reason="operator",
            detail="d" * 600,
            origin="o" * 200,
        )
    got = upgraded.query_one(
        "SELECT accion, campania_id, programacion_id, motivo, detalle, origen FROM envios_audit"
    )
    assert got == {
        "accion": "pause",
        "campania_id": 7,
        "programacion_id": 3,
        "motivo": "operator",
        "detalle": "d" * 500,
        "origen": "o" * 120,
    }


def test_many_rows_without_a_detail_write_null_and_say_which_rows_were_stale(upgraded, rows, clock):
    """No detail is NULL; a stale batch names its first five rows (and how many were stale)."""
    six = rows + [
        upgraded.insert(
            "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino,"
            " mensaje_final) VALUES (7, %s, 'Ana', 'hola')",
            (f"54911000001{n:02d}",),
        )
        for n in (4, 5, 6)
    ]
    force_state(upgraded, six[-1], S)
    with pytest.raises(StaleTransition) as stale:
        move_many(upgraded, six, P, S, clock)
    assert str(stale.value) == (
        f"1 of rows {six[:5]}... are not pendiente any more; none moved to enviando"
    )
    move_many(upgraded, six[:5], P, S, clock)
    assert [h[0]["detalle"] for h in history_of(upgraded, six[:5]).values()] == [None] * 5


def test_many_rows_take_several_per_row_columns_and_expectations_at_once(upgraded, rows, clock):
    for envio_id in rows:
        force_state(upgraded, envio_id, S)
    upgraded.execute("UPDATE ll_envios_whatsapp SET claimed_by = 'me', attempts = 1")
    move_many(
        upgraded,
        rows,
        S,
        E,
        clock,
        per_row={
            "message_id": {i: f"id-{i}" for i in rows},
            "last_error": {i: f"failed {i}" for i in rows},
        },
        expect={"claimed_by": "me", "attempts": 1},
    )
    got = outbox_rows(upgraded, rows)
    assert {i: (r["estado"], r["message_id"], r["last_error"]) for i, r in got.items()} == {
        i: ("error", f"id-{i}", f"failed {i}") for i in rows
    }


# -- MariaDB: a batch reads its own rows by id, never an index walk past its neighbours -------


def _plan(conn, statement, params) -> list[str]:
    return [r["key"] for r in conn.query("EXPLAIN " + statement.text(conn.dialect), params)]


@pytest.mark.mysql_only
@pytest.mark.parametrize("from_state,to_state", [(P, S), (S, D)], ids=["claim", "record"])
def test_a_batch_reads_its_rows_by_primary_key(upgraded, clock, from_state, to_state):
    """100 rows moved while 110 are in `from_state` (the end of a run; every in-flight
    row): MariaDB walked the (estado, claimed_at) index instead, locking each row it
    passed; a concurrent claim's SKIP LOCKED skipped those rows and called the queue
    empty (test_engine.py's 400 sessions left rows pendiente that way under load)."""
    with upgraded.transaction():
        upgraded.execute(
            "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado)"
            " VALUES (7, 'c', 'm', 'en_progreso')"
        )
        for n in range(1, 5001):
            upgraded.insert(
                "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino,"
                " mensaje_final, estado) VALUES (7, %s, 'Ana', 'hola', %s)",
                (f"549110{n:07d}", from_state.value if n <= 110 else "enviado"),
            )
    ids = [r["id"] for r in upgraded.query("SELECT id FROM ll_envios_whatsapp ORDER BY id")][:100]
    if to_state is S:  # as the engine's claim and record batches write them
        columns, per_row = {"claimed_by": "A", "attempts": Increment()}, {}
    else:
        columns, per_row = {"fecha_envio": clock.now()}, {"message_id": dict.fromkeys(ids, "m")}
    update, params = update_many(ids, from_state, to_state, columns, per_row, {})
    insert, insert_params = history_sql.HISTORY_MANY.with_lists(ids=ids)
    insert_params.update(from_state="a", to_state="b", origin="c", detail="d", at=clock.now())
    assert _plan(upgraded, update, params) == ["PRIMARY"]
    assert _plan(upgraded, insert, insert_params) == ["PRIMARY"]
    with upgraded.transaction():  # and the statement does what it says
        assert upgraded.execute(update, params) == 100
