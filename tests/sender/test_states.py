"""The state machine: forbidden edges refused, every allowed edge leaves one history row."""

from __future__ import annotations

import itertools

import pytest

from sender.errors import DatabaseError, ForbiddenTransition, StaleTransition
from sender.states import ALLOWED, Estado, Increment, Origin, transition


@pytest.fixture
def row(upgraded):
    upgraded.execute("INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado) VALUES (7, 'c', 'm', 'en_progreso')")
    return upgraded.insert(
        "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino, mensaje_final)"
        " VALUES (7, '5491100000001', 'Ana', 'hola')"
    )


def force_state(conn, envio_id, estado):
    conn.execute("UPDATE ll_envios_whatsapp SET estado = %s WHERE id = %s", (estado.value, envio_id))


def history(conn, envio_id):
    return conn.query(
        "SELECT estado_anterior, estado_nuevo, origen, detalle, campania_id FROM ll_envios_whatsapp_historial"
        " WHERE envio_id = %s ORDER BY id", (envio_id,))


FORBIDDEN = [pair for pair in itertools.product(Estado, Estado) if pair not in ALLOWED]


@pytest.mark.parametrize("from_state,to_state", FORBIDDEN, ids=lambda e: e.value)
def test_forbidden_transitions_are_refused(upgraded, row, clock, from_state, to_state):
    force_state(upgraded, row, from_state)
    with pytest.raises(ForbiddenTransition, match=f"{from_state.value} -> {to_state.value}"):
        with upgraded.transaction():
            transition(upgraded, row, from_state, to_state, origin=Origin.SENDER, at=clock.now())
    assert upgraded.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = %s", (row,)) == from_state.value
    assert history(upgraded, row) == []


def test_enviado_never_goes_back(upgraded, row, clock):
    force_state(upgraded, row, Estado.ENVIADO)
    for target in (Estado.PENDIENTE, Estado.ENVIANDO, Estado.ERROR):
        with pytest.raises(ForbiddenTransition):
            with upgraded.transaction():
                transition(upgraded, row, Estado.ENVIADO, target, origin=Origin.OPERATOR, at=clock.now())


@pytest.mark.parametrize("from_state,to_state", sorted(ALLOWED), ids=lambda e: e.value)
def test_each_allowed_transition_writes_exactly_one_history_row(upgraded, row, clock, from_state, to_state):
    force_state(upgraded, row, from_state)
    with upgraded.transaction():
        transition(upgraded, row, from_state, to_state, origin=Origin.SENDER, at=clock.now(),
                   detail="why", columns={"attempts": Increment(), "last_error": "x"})
    got = upgraded.query_one("SELECT estado, attempts, last_error FROM ll_envios_whatsapp WHERE id = %s", (row,))
    assert got == {"estado": to_state.value, "attempts": 1, "last_error": "x"}
    assert history(upgraded, row) == [{"estado_anterior": from_state.value, "estado_nuevo": to_state.value,
                                        "origen": "envios-sender", "detalle": "why", "campania_id": 7}]


def test_stale_transition_rolls_back_with_no_history(upgraded, row, clock):
    force_state(upgraded, row, Estado.ENVIANDO)
    with pytest.raises(StaleTransition):
        with upgraded.transaction():
            transition(upgraded, row, Estado.PENDIENTE, Estado.ENVIANDO, origin=Origin.SENDER, at=clock.now())
    assert history(upgraded, row) == []


def test_failure_after_transition_rolls_back_state_and_history(upgraded, row, clock):
    with pytest.raises(RuntimeError):
        with upgraded.transaction():
            transition(upgraded, row, Estado.PENDIENTE, Estado.ENVIANDO, origin=Origin.SENDER, at=clock.now())
            raise RuntimeError("crash before commit")
    assert upgraded.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = %s", (row,)) == "pendiente"
    assert history(upgraded, row) == []


def test_transition_outside_a_transaction_is_refused(upgraded, row, clock):
    with pytest.raises(DatabaseError, match="inside a transaction"):
        transition(upgraded, row, Estado.PENDIENTE, Estado.ENVIANDO, origin=Origin.SENDER, at=clock.now())


def test_only_known_columns_can_be_set(upgraded, row, clock):
    with pytest.raises(ValueError, match="estado"):
        with upgraded.transaction():
            transition(upgraded, row, Estado.PENDIENTE, Estado.ENVIANDO, origin=Origin.SENDER,
                       at=clock.now(), columns={"estado": "enviado"})


def test_two_connections_claiming_the_same_row_exactly_one_wins(database, upgraded, row, clock):
    """Two real connections race for one pendiente row: one claim lands, one is stale."""
    import threading

    barrier = threading.Barrier(2)
    outcomes = []

    def claim(name):
        with database.connect() as other:
            barrier.wait()
            try:
                with other.transaction():
                    transition(other, row, Estado.PENDIENTE, Estado.ENVIANDO, origin=Origin.SENDER,
                               at=clock.now(), columns={"claimed_by": name})
                outcomes.append(("won", name))
            except StaleTransition:
                outcomes.append(("lost", name))

    threads = [threading.Thread(target=claim, args=(f"s{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(o for o, _ in outcomes) == ["lost", "won"]
    winner = next(n for o, n in outcomes if o == "won")
    assert upgraded.scalar("SELECT claimed_by FROM ll_envios_whatsapp WHERE id = %s", (row,)) == winner
    assert len(history(upgraded, row)) == 1
