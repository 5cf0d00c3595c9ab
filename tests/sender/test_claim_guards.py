"""The guards inside the claim transaction, each executed by a change made between planning
and claim.

A session worker plans its work (`eligible_work`, outside any transaction), then
claims a row (`claim_next`, one transaction that re-reads the schedule, its
campaign, the lease and the day's count). Anything that changed in between must
stop the claim there: the row is not claimed, nothing is sent, and the reason is
the guard's. The change is made deterministically by a second connection (an
operator, the watcher, another sender) right after the worker's first plan.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from envios.sender import session_worker
from envios.sender.loop import run_once

from tests.conftest import TZ
from tests.sender.conftest import estados, history, make_config, seed_session

CLIENTE, CAMPANIA, PROGRAMACION = 51, 47, 47


def _db_time(conn, today, at):
    """A wall-clock time of the configured zone, as the database's clock writes it.

    DESIGN.md section 10.
    """
    from envios.clock import FixedClock

    return FixedClock(TZ, dt.datetime.combine(today, at)).db_now(conn)


def _pause(conn, today):
    conn.execute(
        "UPDATE ll_programaciones SET estado = 'pausada', paused_reason = 'operator' WHERE id = %s",
        (PROGRAMACION,),
    )


def _delete(conn, today):
    conn.execute("DELETE FROM ll_programaciones WHERE id = %s", (PROGRAMACION,))


def _other_session(conn, today):
    conn.execute("UPDATE ll_programaciones SET cliente_id = 52 WHERE id = %s", (PROGRAMACION,))


def _finish_campaign(conn, today):
    conn.execute(
        "UPDATE ll_campanias_whatsapp SET estado = 'finalizado' WHERE id = %s", (CAMPANIA,)
    )


def _close_window(conn, today):  # the clock fixture says 10:00
    conn.execute(
        "UPDATE ll_programaciones SET hora_fin = '09:00:00' WHERE id = %s", (PROGRAMACION,)
    )


def _use_quota(conn, today):  # another sender sent the day's 5 meanwhile
    conn.execute(
        "INSERT INTO ll_programacion_envios_diarios (programacion_id, fecha, enviados)"
        " VALUES (%s, %s, 5)",
        (PROGRAMACION, today),
    )


# another sender claimed 5 rows under this schedule meanwhile
def _fill_quota_in_flight(conn, today):
    conn.execute(
        "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado)"
        " VALUES (99, 'x', 'm', 'en_progreso')"
    )
    for i in range(5):
        conn.execute(
            "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino,"
            " mensaje_final, estado, claimed_at, claimed_by, claim_programacion_id)"
            " VALUES (99, %s, 'Ana', 'hola', 'enviando', %s, 'other-sender', %s)",
            (f"54911000099{i:02d}", _db_time(conn, today, dt.time(9, 59)), PROGRAMACION),
        )


def _postpone_rows(conn, today):  # e.g. another sender's 429 put them off until later
    conn.execute(
        "UPDATE ll_envios_whatsapp SET next_attempt_at = %s WHERE campania_id = %s",
        (_db_time(conn, today, dt.time(23, 0)), CAMPANIA),
    )


# (change made between planning and claim, the reason claim_next gives)
GUARDS = {
    "schedule paused": (_pause, "schedule is pausada"),
    "schedule gone": (_delete, "schedule gone"),
    "schedule moved to another session": (_other_session, "schedule gone"),
    "campaign finished": (_finish_campaign, "campaign is finalizado"),
    "out of its window": (_close_window, "outside the window 00:00-09:00"),
    "quota used": (_use_quota, "daily quota used"),
    "quota taken by rows in flight": (_fill_quota_in_flight, "daily quota used"),
    "no row ready any more": (_postpone_rows, "queue empty"),
}


@pytest.fixture
def change_after_first_plan(monkeypatch, upgraded, clock):
    """Install `change(conn, today)` to run on the test's own connection right after the
    worker's first plan."""
    made = []

    def install(change):
        real = session_worker.eligible_work

        def plan_then_change(conn, now, cliente_id=None, **kwargs):
            plan = real(conn, now, cliente_id, **kwargs)
            if not made:
                assert plan.by_session.get(CLIENTE), "the worker planned no work: nothing to race"
                change(upgraded, clock.today())
                made.append(True)
            return plan

        monkeypatch.setattr(session_worker, "eligible_work", plan_then_change)
        return made

    return install


@pytest.mark.parametrize("guard", list(GUARDS))
def test_a_change_between_planning_and_claim_stops_the_claim(
    guard, db_url, upgraded, clock, gateway, change_after_first_plan, caplog
):
    ids = seed_session(upgraded, cliente_id=CLIENTE, campania_id=CAMPANIA, rows=2, cupo=5)
    change, reason = GUARDS[guard]
    made = change_after_first_plan(change)
    with caplog.at_level(logging.DEBUG, logger="envios.sender"):
        report = run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert made == [True]
    assert estados(upgraded, CAMPANIA) == {"pendiente": 2}  # not claimed
    assert [history(upgraded, i) for i in ids] == [[], []]
    assert gateway.sends_received == 0 and report.sent == 0
    refusals = [m for m in caplog.messages if "event=no_claim" in m]
    assert refusals and all(f'reason="{reason}"' in m for m in refusals), caplog.messages


LEASE_CHANGES = {
    # another sender took the session: the lease names someone else
    "taken": (
        "UPDATE envios_session_leases SET owner = 'other-sender' WHERE cliente_id = %s",
        "other-sender",
    ),
    # our lease ran out (nobody took it yet): a claim needs a live lease, not only our name on it
    "expired": ("UPDATE envios_session_leases SET expires_at = %s WHERE cliente_id = %s", None),
}


@pytest.mark.parametrize("how", list(LEASE_CHANGES))
def test_a_lease_lost_between_planning_and_claim_stops_the_worker(
    how, db_url, upgraded, clock, gateway, change_after_first_plan
):
    """The claim transaction checks the lease first: LeaseLost, nothing claimed, nothing sent."""
    ids = seed_session(upgraded, cliente_id=CLIENTE, campania_id=CAMPANIA, rows=2)
    sql, owner_after = LEASE_CHANGES[how]

    def lose_lease(conn, today):
        if how == "expired":
            conn.execute(sql, (clock.now() - dt.timedelta(seconds=1), CLIENTE))
        else:
            conn.execute(sql, (CLIENTE,))

    change_after_first_plan(lose_lease)
    report = run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert estados(upgraded, CAMPANIA) == {"pendiente": 2}
    assert [history(upgraded, i) for i in ids] == [[], []]
    assert gateway.sends_received == 0
    assert (
        report.sessions_worked[CLIENTE].stop_reason
        == f"lease lost: lease of session {CLIENTE} is no longer ours"
    )
    if owner_after:  # the other sender's lease is left alone
        assert (
            upgraded.scalar(
                "SELECT owner FROM envios_session_leases WHERE cliente_id = %s", (CLIENTE,)
            )
            == owner_after
        )
