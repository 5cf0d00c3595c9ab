"""The send loop's rules (DESIGN.md section 4), on both backends, against a loopback gateway."""

from __future__ import annotations

import datetime as dt
import threading
import time
import urllib.request

import pytest
from envios.sender import outbox
from envios.sender.killswitch import KillSwitch
from envios.sender.loop import Sender, run_once

from envios.clock import Clock
from tests.conftest import free_port
from tests.sender.conftest import (
    add_campaign,
    add_rows,
    add_schedule,
    estados,
    history,
    make_config,
    row,
    seed_session,
    sent_today,
)


def wait_until(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_quota_counts_sent_and_in_flight_rows(db_url, upgraded, clock, gateway):
    ids = seed_session(upgraded, rows=6, cupo=4)
    # one row already in flight today under this schedule (e.g. stuck): it uses one unit of quota
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET estado = 'enviando', claimed_at = %s,"
        " claim_programacion_id = 47 WHERE id = %s",
        (clock.db_now(upgraded), ids[0]),
    )
    report = run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert report.sent == 3
    assert estados(upgraded) == {"enviando": 1, "enviado": 3, "pendiente": 2}
    assert sent_today(upgraded, 47, clock.today()) == 3
    # nothing more today
    assert run_once(make_config(db_url, gateway.base_url), clock=clock).sent == 0
    clock.advance(24 * 3600)  # tomorrow: a fresh quota
    assert run_once(make_config(db_url, gateway.base_url), clock=clock).sent == 2
    assert gateway.sends_received == 5


def test_unsendable_rows_go_to_error_without_a_request_and_never_stop_the_batch(
    db_url, upgraded, clock, gateway
):
    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51)
    bad_phone = add_rows(upgraded, 47, 1, phone="")[0]
    good = add_rows(upgraded, 47, 1, first=1)[0]
    impossible = add_rows(upgraded, 47, 1, phone="123")[0]
    no_text = add_rows(upgraded, 47, 1, first=3, mensaje="   ")[0]
    good2 = add_rows(upgraded, 47, 1, first=4, nombre=None)[0]
    run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert row(upgraded, bad_phone)["last_error"] == "no phone number"
    assert "impossible" in row(upgraded, impossible)["last_error"]
    assert row(upgraded, no_text)["last_error"] == "empty message text"
    for envio_id in (bad_phone, impossible, no_text):
        assert row(upgraded, envio_id)["estado"] == "error"
        assert history(upgraded, envio_id) == [("pendiente", "error", "envios-sender")]
    assert [row(upgraded, i)["estado"] for i in (good, good2)] == ["enviado", "enviado"]
    assert [p["to"] for p in gateway.posts] == ["5491100470001", "5491100470004"]
    assert [p["text"] for p in gateway.posts] == [
        "Hola Ana, ¿seguimos en contacto?",
        "Hola, ¿seguimos en contacto?",
    ]


def test_rows_waiting_for_a_retry_are_skipped_until_their_time(db_url, upgraded, clock, gateway):
    later, now_row = seed_session(upgraded, rows=2)
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET next_attempt_at = %s WHERE id = %s",
        (clock.db_now(upgraded) + dt.timedelta(seconds=300), later),
    )
    run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert (row(upgraded, later)["estado"], row(upgraded, now_row)["estado"]) == (
        "pendiente",
        "enviado",
    )
    clock.advance(300)
    run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert row(upgraded, later)["estado"] == "enviado"


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE ll_programaciones SET estado = 'pausada'",
        "UPDATE ll_programaciones SET estado = 'pendiente'",
        "UPDATE ll_campanias_whatsapp SET estado = 'finalizado'",
        "UPDATE ll_campanias_whatsapp SET estado = 'pendiente'",
        "UPDATE ll_programaciones SET hora_inicio = '11:00:00'",
        "UPDATE ll_programaciones SET dias_semana = 'sat,sun'",
        "UPDATE ll_programaciones SET fecha_fin = '2026-02-08'",
        "UPDATE ll_programaciones SET fecha_inicio = '2026-02-10'",
        "UPDATE ll_programaciones SET cupo_diario = 0",
    ],
)
def test_nothing_is_sent_outside_an_eligible_schedule(change, db_url, upgraded, clock, gateway):
    seed_session(upgraded, rows=2)
    upgraded.execute(change)
    report = run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert gateway.sends_received == 0 and report.sessions_worked == {}
    assert estados(upgraded) == {"pendiente": 2}


def test_a_paused_schedule_stops_within_one_send(db_url, database, upgraded, clock, gateway):
    seed_session(upgraded, rows=5)

    def pause_on_first_delivery(_cid, _payload):
        if len(gateway.ledger) == 1:
            with database.connect() as other:
                other.execute(
                    "UPDATE ll_programaciones SET estado = 'pausada', paused_reason = 'operator'"
                    " WHERE id = 47"
                )

    gateway.on_deliver = pause_on_first_delivery
    run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert gateway.sends_received == 1
    assert estados(upgraded) == {"enviado": 1, "pendiente": 4}  # the in-flight send is recorded


def test_kill_switch_from_the_environment(db_url, upgraded, clock, gateway, caplog):
    seed_session(upgraded, rows=2)
    switch = KillSwitch(read_file=False, environ={"ENVIOS_SENDER_ENABLED": "false"})
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock, kill_switch=switch)
    try:
        report = sender.run_once()
        assert report.disabled and gateway.sends_received == 0 and gateway.status_requests == 0
        assert sender.metrics.value("envios_sender_enabled") == 0
    finally:
        sender.close()
    assert "ENVIOS_SENDER_ENABLED=false" in caplog.text and "sending stopped" in caplog.text


def test_kill_switch_in_the_config_file_stops_a_running_sender_at_the_next_check(
    db_url, upgraded, clock, gateway, tmp_path, caplog
):
    seed_session(upgraded, rows=5)
    path = tmp_path / "config.yaml"
    path.write_text("sender:\n  enabled: true\n")

    def switch_off_on_second_delivery(_cid, _payload):
        if len(gateway.ledger) == 2:
            path.write_text("sender:\n  enabled: false   # stop!\n")

    gateway.on_deliver = switch_off_on_second_delivery
    switch = KillSwitch(str(path), environ={})
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock, kill_switch=switch)
    try:
        sender.start()
        wait_until(lambda: sender.metrics.value("envios_sender_enabled") == 0, what="switch off")
        time.sleep(0.5)  # a few more ticks: still nothing
        assert gateway.sends_received == 2
        assert estados(upgraded) == {"enviado": 2, "pendiente": 3}
        path.write_text("sender:\n  enabled: true\n")
        wait_until(lambda: estados(upgraded) == {"enviado": 5}, what="resume after switch on")
    finally:
        sender.stop(timeout=20)
        sender.close()
    assert "sending stopped" in caplog.text and "sending enabled again" in caplog.text


def test_a_long_delay_in_one_session_never_delays_another(db_url, upgraded, clock, gateway):
    slow = seed_session(
        upgraded, cliente_id=1, campania_id=10, rows=3, delay_min_s=60, delay_max_s=60
    )
    fast = seed_session(upgraded, cliente_id=2, campania_id=20, rows=5)
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock)
    try:
        sender.start()
        wait_until(
            lambda: all(row(upgraded, i)["estado"] == "enviado" for i in fast), what="fast session"
        )
        assert [row(upgraded, i)["estado"] for i in slow] == ["enviado", "pendiente", "pendiente"]
    finally:
        sender.stop(timeout=20)  # interrupts the 60 s pause
        sender.close()
    assert [row(upgraded, i)["estado"] for i in slow] == ["enviado", "pendiente", "pendiente"]
    assert outbox.leases(upgraded) == []  # released on stop


def test_stop_lets_the_in_flight_send_finish_and_releases_the_lease(
    db_url, upgraded, clock, gateway
):
    seed_session(upgraded, rows=3)
    gateway.send_delay_s = 0.5
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock)
    try:
        sender.start()
        wait_until(lambda: gateway.sends_received == 1, what="first POST")
        sender.request_stop()
        sender.stop(timeout=20)
        assert not sender._thread.is_alive()
    finally:
        sender.close()
    assert estados(upgraded) == {"enviado": 1, "pendiente": 2}
    assert gateway.sends_received == 1
    assert outbox.leases(upgraded) == []


def test_a_session_leased_by_another_sender_is_left_alone_until_the_lease_expires(
    db_url, upgraded, clock, gateway
):
    ids = seed_session(upgraded, rows=2)
    with upgraded.transaction():
        assert outbox.lease_acquire(
            upgraded, 51, "other:1:aaaa", clock.now(), clock.now() + dt.timedelta(seconds=30)
        )
    report = run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert report.sessions_held_elsewhere == [51] and gateway.sends_received == 0
    clock.advance(31)  # the other sender died: its lease expired
    report = run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert report.sent == 2 and all(row(upgraded, i)["estado"] == "enviado" for i in ids)
    assert outbox.leases(upgraded) == []


def test_lease_taken_over_mid_run_stops_the_worker_without_touching_the_new_lease(
    db_url, database, upgraded, clock, gateway
):
    seed_session(upgraded, rows=4)

    def steal_on_first_delivery(_cid, _payload):
        if len(gateway.ledger) == 1:
            with database.connect() as other:
                other.execute(
                    "UPDATE envios_session_leases SET owner = 'thief:1:bbbb' WHERE cliente_id = 51"
                )

    gateway.on_deliver = steal_on_first_delivery
    report = run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert gateway.sends_received == 1 and "lease lost" in report.sessions_worked[51].stop_reason
    assert estados(upgraded) == {"enviado": 1, "pendiente": 3}
    assert outbox.lease_owner(upgraded, 51) == "thief:1:bbbb"


def test_schedules_sharing_a_session_take_turns_and_campaigns_with_two_sessions_send_once(
    db_url, upgraded, clock, gateway
):
    a = seed_session(upgraded, cliente_id=5, campania_id=1, rows=3)
    b = seed_session(upgraded, cliente_id=5, campania_id=2, rows=3)
    add_schedule(upgraded, 3, 1, 6)  # campaign 1 also on session 6
    run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert all(row(upgraded, i)["estado"] == "enviado" for i in a + b)
    assert max(gateway.delivered_to().values()) == 1 and len(gateway.ledger) == 6
    order = [p["to"][-6:-4] for p in gateway.posts if p["cliente_id"] == 5]
    assert order[:2] in (["01", "02"], ["02", "01"])  # alternates between the two campaigns


def test_sender_metrics_are_served(db_url, upgraded, clock, gateway):
    seed_session(upgraded, rows=2, cupo=10)
    gateway.plan(51, (500, {"error": True, "code": "WHATSAPP_ERROR"}))
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock)
    try:
        port = sender.metrics.serve(free_port())
        sender.run_once()
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        sender.close()
    assert 'envios_sender_sends_total{outcome="sent"} 1.0' in text
    assert 'envios_sender_sends_total{outcome="gateway_error"} 1.0' in text
    assert 'envios_sender_sends_total{outcome="unknown"} 0.0' in text
    assert 'envios_sender_session_state{cliente_id="51",state="READY"} 1.0' in text
    assert 'envios_sender_session_state{cliente_id="51",state="DISCONNECTED"} 0.0' in text
    assert 'envios_sender_quota_remaining{programacion_id="47"} 9.0' in text
    assert 'envios_sender_eligible_pending{cliente_id="51"} 2.0' in text
    assert "envios_sender_gateway_latency_seconds_count 2.0" in text
    assert 'envios_sender_last_success_timestamp_seconds{cliente_id="51"}' in text
    assert "envios_sender_enabled 1.0" in text
    assert "5491100470000" not in text


def test_times_written_are_the_databases_clock(db_url, upgraded, gateway):
    """fecha_envio and claimed_at compare with what the application writes with NOW().

    DESIGN.md section 10.
    """
    (envio_id,) = seed_session(upgraded, rows=1)
    clock = Clock("America/Argentina/Buenos_Aires")
    before = clock.db_now(upgraded)
    run_once(make_config(db_url, gateway.base_url), clock=clock)
    r = row(upgraded, envio_id)
    assert before <= r["claimed_at"] <= r["fecha_envio"] <= clock.db_now(upgraded)


def test_one_structured_line_per_state_change_with_masked_phone(
    db_url, upgraded, clock, gateway, caplog
):
    (envio_id,) = seed_session(upgraded, rows=1)
    caplog.set_level("INFO", logger="envios")
    run_once(make_config(db_url, gateway.base_url), clock=clock)
    lines = [r.getMessage() for r in caplog.records if "event=state_change" in r.getMessage()]
    assert len(lines) == 2
    assert (
        f"envio_id={envio_id} campania_id=47 programacion_id=47 cliente_id=51"
        " from=enviando to=enviado outcome=sent message_id=true_*********0000@c.us" in lines[1]
    )
    assert "phone=*********0000" in lines[1]
    assert "5491100470000" not in caplog.text  # not even inside the WhatsApp message id


def test_threads_do_not_leak(db_url, upgraded, clock, gateway):
    seed_session(upgraded, rows=1)
    before = threading.active_count()
    run_once(make_config(db_url, gateway.base_url), clock=clock)
    wait_until(lambda: threading.active_count() <= before, timeout=5, what="threads to end")


def test_a_session_held_by_another_sender_is_not_reported_by_this_one(
    db_url, upgraded, clock, gateway
):
    """Only the lease holder exports a session's state: a stale READY must not mask a
    DISCONNECTED."""
    seed_session(upgraded, rows=3, cupo=1)
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock)
    try:
        assert sender.run_once().sent == 1
        assert (
            sender.metrics.value(
                "envios_sender_session_state", {"cliente_id": "51", "state": "READY"}
            )
            == 1
        )
        # a new day's quota: work again, but another sender holds the session
        clock.advance(24 * 3600)
        with upgraded.transaction():
            upgraded.execute(
                "INSERT INTO envios_session_leases (cliente_id, owner, acquired_at, expires_at)"
                " VALUES (51, 'other-sender', %s, %s)",
                (clock.now(), clock.now() + dt.timedelta(hours=1)),
            )
        report = sender.run_once()
        assert report.sessions_held_elsewhere == [51] and report.sent == 0
        assert (
            sender.metrics.value(
                "envios_sender_session_state", {"cliente_id": "51", "state": "READY"}
            )
            is None
        )
    finally:
        sender.close()
