"""`envios send` as an operator runs it: one pass, one-line errors, the kill switch, the debug
switch, SIGTERM."""

from __future__ import annotations

import signal
import time

from tests.sender.conftest import envios, estados, seed_session, sender_env, spawn_sender


def test_send_once_sends_and_prints_a_summary(db_url, upgraded, gateway, tmp_path):
    seed_session(upgraded, rows=3)
    result = envios("send", "--once", env=sender_env(db_url, gateway.base_url), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sent=3" in result.stdout
    assert estados(upgraded) == {"enviado": 3}
    assert result.stderr.count("event=state_change") == 6  # claim + outcome, per row
    assert "5491100470000" not in result.stderr.replace("true_5491100470000@", "")


def test_kill_switch_env_sends_nothing(db_url, upgraded, gateway, tmp_path):
    seed_session(upgraded, rows=2)
    env = sender_env(db_url, gateway.base_url, ENVIOS_SENDER_ENABLED="false")
    result = envios("send", "--once", env=env, cwd=tmp_path)
    assert result.returncode == 0
    assert "sending is disabled" in result.stderr and "ENVIOS_SENDER_ENABLED=false" in result.stderr
    assert gateway.sends_received == 0 and gateway.status_requests == 0
    assert estados(upgraded) == {"pendiente": 2}


def test_debug_switch_diag_sender(db_url, upgraded, gateway, tmp_path):
    seed_session(upgraded, rows=1)
    quiet = envios("send", "--once", env=sender_env(db_url, gateway.base_url), cwd=tmp_path)
    assert "DEBUG" not in quiet.stderr
    loud = envios(
        "send", "--once", env=sender_env(db_url, gateway.base_url, DIAG_SENDER="1"), cwd=tmp_path
    )
    assert (
        loud.returncode == 0
        and "DEBUG envios.sender" in loud.stderr
        and "event=tick" in loud.stderr
    )
    flag = envios(
        "send",
        "--once",
        "--log-level",
        "DEBUG",
        env=sender_env(db_url, gateway.base_url),
        cwd=tmp_path,
    )
    assert "DEBUG envios.sender" in flag.stderr


def test_unreachable_gateway_is_one_line_and_nonzero(db_url, upgraded, tmp_path):
    ids = seed_session(upgraded, rows=2)
    result = envios("send", "--once", env=sender_env(db_url, "http://127.0.0.1:9"), cwd=tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.splitlines()[-1]
        == "envios send: gateway http://127.0.0.1:9 unreachable: 1 session(s) not worked"
    )
    assert "Traceback" not in result.stderr and estados(upgraded) == {"pendiente": len(ids)}


def test_schema_not_upgraded_is_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = envios("send", "--once", env=sender_env(url, "http://127.0.0.1:9"), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "schema not upgraded" in result.stderr and "envios db upgrade" in result.stderr


def test_an_incomplete_gateway_config_is_one_line(db_url, upgraded, tmp_path):
    env = sender_env(db_url, "http://127.0.0.1:9", ENVIOS_GATEWAY_KIND="cloud_api")
    result = envios("send", "--once", env=env, cwd=tmp_path)
    assert (
        result.returncode == 2
        and result.stderr.strip()
        == "envios send: config key gateway.phone_number_id:"
        " required when gateway.kind is cloud_api"
    )


def test_sigterm_finishes_the_in_flight_send_and_releases_leases(
    db_url, upgraded, gateway, tmp_path
):
    seed_session(upgraded, rows=5)
    gateway.send_delay_s = 1.0
    proc = spawn_sender(
        env=sender_env(db_url, gateway.base_url, ENVIOS_SENDER_TICK_S="0.2"),
        cwd=tmp_path,
        log_path=tmp_path / "sender.log",
    )
    try:
        deadline = time.monotonic() + 30
        while gateway.sends_received == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gateway.sends_received == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.log.close()
    log = (tmp_path / "sender.log").read_text()
    assert "event=stop_requested signal=SIGTERM" in log
    assert gateway.sends_received == 1
    # the in-flight send finished and was recorded
    assert estados(upgraded) == {"enviado": 1, "pendiente": 4}
    assert upgraded.query("SELECT * FROM envios_session_leases") == []


def test_metrics_port_in_use_is_one_line(db_url, upgraded, tmp_path):
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        env = sender_env(db_url, "http://127.0.0.1:9", ENVIOS_SENDER_METRICS_PORT=str(port))
        result = envios("send", "--once", env=env, cwd=tmp_path)
    finally:
        busy.close()
    assert (
        result.returncode == 2
        and f"sender.metrics_port: cannot listen on 127.0.0.1:{port}" in result.stderr
    )
