"""The sender's statements one by one (sender.outbox), on both backends: leases at their boundaries,
the day's count as read inside a claim, texts cut to their columns."""

from __future__ import annotations

import datetime as dt

import pytest
from envios.sender import outbox

from envios.store import transitions
from tests.sender.conftest import seed_session


@pytest.fixture
def lease(upgraded, clock):
    """Session 51 leased by 'me' until exactly now."""
    with upgraded.transaction():
        assert outbox.lease_acquire(
            upgraded, 51, "me", clock.now() - dt.timedelta(seconds=30), clock.now()
        )
    return upgraded


# (owner on the lease, expires relative to now in seconds, holds for "me"?)
LEASE_HOLDS = [
    ("me", 0, True),  # expires exactly now: still ours
    ("me", 1, True),
    ("me", -1, False),  # expired a second ago
    ("other", 60, False),  # someone else's, live
    ("other", -60, False),
]


@pytest.mark.parametrize("owner,expires_in,holds", LEASE_HOLDS)
def test_lease_holds_at_its_boundaries(lease, clock, owner, expires_in, holds):
    lease.execute(
        "UPDATE envios_session_leases SET owner = %s, expires_at = %s WHERE cliente_id = 51",
        (owner, clock.now() + dt.timedelta(seconds=expires_in)),
    )
    assert outbox.lease_holds(lease, 51, "me", clock.now()) is holds


def test_lease_holds_without_a_lease_row(upgraded, clock):
    assert outbox.lease_holds(upgraded, 51, "me", clock.now()) is False


def test_lock_daily_count_returns_the_days_count(upgraded, clock):
    seed_session(upgraded, rows=1)
    with upgraded.transaction():
        assert outbox.lock_daily_count(upgraded, 47, clock.today()) == 0  # created at 0
    upgraded.execute(
        "UPDATE ll_programacion_envios_diarios SET enviados = 7 WHERE programacion_id = 47"
    )
    with upgraded.transaction():
        assert outbox.lock_daily_count(upgraded, 47, clock.today()) == 7


def test_texts_are_cut_to_their_columns(upgraded, clock):
    (envio_id,) = seed_session(upgraded, rows=1)
    upgraded.execute("UPDATE ll_envios_whatsapp SET estado = 'enviando' WHERE id = %s", (envio_id,))
    outbox.note_on_stuck_row(upgraded, envio_id, "x" * 600)
    assert (
        len(upgraded.scalar("SELECT last_error FROM ll_envios_whatsapp WHERE id = %s", (envio_id,)))
        == 500
    )
    transitions.audit(
        upgraded,
        clock.now(),
        "pause",
        campania_id=47,
        reason="operator",
        detail="d" * 600,
        origin="o" * 200,
    )
    row = upgraded.query_one("SELECT detalle, origen FROM envios_audit")
    assert (len(row["detalle"]), len(row["origen"])) == (500, 120)


def test_in_flight_today_counts_claims_of_that_day_only(upgraded, clock):
    seed_session(upgraded, rows=0)
    today = clock.today()
    midnight = dt.datetime.combine(today, dt.time.min)
    for n, claimed_at in enumerate(
        (
            midnight - dt.timedelta(seconds=1),
            midnight,
            midnight + dt.timedelta(hours=23, minutes=59, seconds=59),
            midnight + dt.timedelta(days=1),
        )
    ):
        upgraded.execute(
            "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino,"
            " mensaje_final, estado, claimed_at, claim_programacion_id)"
            " VALUES (47, %s, 'Ana', 'x', 'enviando', %s, 47)",
            (f"5491100000{n:03d}", claimed_at),
        )
    assert outbox.in_flight_today(upgraded, [47], today) == {47: 2}  # 00:00:00 and 23:59:59


def test_lease_renew_after_the_lease_row_is_gone(upgraded, clock):
    with upgraded.transaction():
        assert outbox.lease_renew(upgraded, 51, "me", clock.now(), clock.now()) is False
    assert outbox.lease_owner(upgraded, 51) is None
