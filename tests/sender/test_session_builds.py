"""`envios send` against fakes of the session manager's venom and whatsapp-web.js builds
(DESIGN.md section 9).

The venom build has ONE admin WhatsApp session for every client: three clients'
campaigns must go through it as one lane (one lease, one send at a time, paced
as one session), and its placeholder "sent-via-ui" must never be stored as an id.
The whatsapp-web.js build has no POST /send: nothing may be left `enviando`.
"""

from __future__ import annotations

import pytest
from envios.sender import outbox

from tests.sender.conftest import (
    add_campaign,
    add_rows,
    add_schedule,
    envios,
    estados,
    row,
    sender_env,
)
from tests.sender.gateway import ScriptedGateway

DELAY_S = 0.2
CLIENTS = {51: 47, 52: 48, 53: 49}  # cliente_id -> campania_id


def seed_three_clients(conn, rows_each: int = 3) -> list[int]:
    ids = []
    for cliente_id, campania_id in CLIENTS.items():
        add_campaign(conn, campania_id)
        add_schedule(conn, campania_id, campania_id, cliente_id)
        ids += add_rows(conn, campania_id, rows_each)
    return ids


@pytest.fixture
def venom():
    fake = ScriptedGateway(build="venom")
    fake.send_delay_s = 0.05  # a send takes a while: overlapping requests would show
    yield fake
    fake.stop()


@pytest.fixture
def wwebjs():
    fake = ScriptedGateway(build="wwebjs")
    yield fake
    fake.stop()


def test_three_clients_share_the_one_admin_session_one_send_at_a_time(
    db_url, upgraded, venom, tmp_path
):
    ids = seed_three_clients(upgraded)
    env = sender_env(
        db_url,
        venom.base_url,
        ENVIOS_SENDER_DELAY_MIN_S=str(DELAY_S),
        # gateway.sessions: auto (the default)
        ENVIOS_SENDER_DELAY_MAX_S=str(DELAY_S + 0.05),
    )
    result = envios("send", "--once", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sent_without_id=9" in result.stdout

    spans = venom.send_spans()
    assert len(spans) == 9 and venom.max_in_flight_total == 1
    for (_start, answered), (next_start, _end) in zip(spans, spans[1:], strict=False):
        assert next_start >= answered, "two sends in flight at once on the one session"
        assert next_start - answered >= DELAY_S, (
            f"sends {next_start - answered:.3f}s apart, pacing is {DELAY_S}s"
        )
    # every client was served, each POST carrying its own cliente_id (venom refuses anything else)
    assert sorted({p["cliente_id"] for p in venom.posts}) == sorted(CLIENTS)
    assert "event=gateway_sessions" in result.stderr and "sessions=single" in result.stderr
    assert result.stderr.count("event=session_start") == 1
    assert f"cliente_id={outbox.SINGLE_SESSION_LEASE}" in result.stderr

    for envio_id in ids:
        r = row(upgraded, envio_id)
        assert (r["estado"], r["message_id"], r["last_error"]) == (
            "enviado",
            None,
            "the gateway gives no message id",
        )
    assert outbox.leases(upgraded) == []  # the one lease was released


def test_single_lane_is_shared_by_two_senders_through_one_lease(db_url, upgraded, venom, clock):
    """A second sender finds the gateway's one lease taken: it works no client at all."""
    from envios.sender.loop import Sender

    from tests.sender.conftest import make_config

    seed_three_clients(upgraded, rows_each=1)
    config = make_config(db_url, venom.base_url, **{"gateway.sessions": "single"})
    now = clock.now()
    with upgraded.transaction():
        assert outbox.lease_acquire(
            upgraded,
            outbox.SINGLE_SESSION_LEASE,
            "other:1:0001",
            now,
            now.replace(year=now.year + 1),
        )
    sender = Sender(config, clock=clock)
    try:
        report = sender.run_once()
    finally:
        sender.close()
    assert report.sessions_held_elsewhere == [outbox.SINGLE_SESSION_LEASE]
    assert venom.sends_received == 0 and estados(upgraded) == {"pendiente": 3}


def test_venom_not_ready_and_send_failed_leave_nothing_enviando(db_url, upgraded, venom, tmp_path):
    ids = seed_three_clients(upgraded, rows_each=1)
    # the lane: 51, 52, then 53's send meets a dropped session
    venom.plan(51, "ok", "send_failed", "drop")
    result = envios("send", "--once", env=sender_env(db_url, venom.base_url), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    states = [(row(upgraded, i)["estado"], row(upgraded, i)["attempts"]) for i in ids]
    assert states == [("enviado", 1), ("pendiente", 1), ("pendiente", 0)]
    assert "SESSION_NOT_READY" in result.stderr and "SEND_FAILED" in result.stderr
    assert venom.sends_received == 3 and len(venom.ledger) == 1


def test_venom_session_not_ready_at_status_claims_nothing(db_url, upgraded, venom, tmp_path):
    seed_three_clients(upgraded, rows_each=1)
    venom.set_session(51, "QR_REQUIRED")
    result = envios("send", "--once", env=sender_env(db_url, venom.base_url), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert venom.sends_received == 0 and estados(upgraded) == {"pendiente": 3}
    assert "state=QR_REQUIRED" in result.stderr


def test_whatsapp_web_js_build_has_no_send_route_one_line_nothing_stuck(
    db_url, upgraded, wwebjs, tmp_path
):
    ids = seed_three_clients(upgraded, rows_each=2)
    result = envios("send", "--once", env=sender_env(db_url, wwebjs.base_url), cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last == (
        f"envios send: gateway {wwebjs.base_url}: the gateway has no POST /send route (HTTP 404); "
        "nothing is sent through it (is it the whatsapp-web.js build?)"
    )
    assert "Traceback" not in result.stderr and "<html" not in result.stderr
    # at most the request each session had started
    assert wwebjs.sends_received >= 1 and wwebjs.sends_received <= len(CLIENTS)
    assert all(
        (row(upgraded, i)["estado"], row(upgraded, i)["attempts"]) == ("pendiente", 0) for i in ids
    )


@pytest.mark.parametrize("state", ["READY", "QR_REQUIRED"])
def test_the_one_session_state_is_exported_for_every_client_it_serves(
    state, db_url, upgraded, venom, clock
):
    """The alerts join session state and pending work on cliente_id: lane 0 alone would blind
    them."""
    from envios.sender.loop import Sender
    from prometheus_client import generate_latest

    from tests.sender.conftest import make_config

    seed_three_clients(upgraded, rows_each=1)
    venom.set_session(51, state)
    sender = Sender(
        make_config(db_url, venom.base_url, **{"gateway.sessions": "auto"}), clock=clock
    )
    try:
        sender.run_once()
        text = generate_latest(sender.metrics.registry).decode()
    finally:
        sender.close()
    for cliente_id in CLIENTS:
        assert (
            f'envios_sender_session_state{{cliente_id="{cliente_id}",state="{state}"}} 1.0' in text
        )
        sent = f'envios_sender_last_success_timestamp_seconds{{cliente_id="{cliente_id}"}}' in text
        assert sent is (state == "READY")
    assert 'cliente_id="0"' not in text
