"""`envios webhooks` as an operator runs it: a process configured through ENVIOS_* only."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import requests

from envios.store.connector import Database
from tests.sender.conftest import envios, sender_env


def test_refuses_to_start_without_any_secret(db_url, upgraded, tmp_path):
    result = envios(
        "webhooks", env=sender_env(db_url, "http://127.0.0.1:1"), cwd=tmp_path, timeout=60
    )
    assert result.returncode != 0
    assert "webhooks.secret" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serves_on_loopback_refuses_unauthenticated_calls_and_stops_on_sigterm(
    db_url, upgraded, tmp_path
):
    env = sender_env(
        db_url, "http://127.0.0.1:1", ENVIOS_WEBHOOKS_PORT="0", ENVIOS_WEBHOOKS_SECRET="s3cret"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "envios", "webhooks"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            match = re.search(r"url=(http://127\.0\.0\.1:\d+/webhooks/)", line)
            url = match.group(1) if match else None
        assert url, "the receiver did not log where it listens"
        assert (
            requests.post(url + "waha", json={"event": "message.ack"}, timeout=5).status_code == 401
        )
        ok = requests.post(
            url + "waha",
            json={"event": "message.ack", "payload": {"id": "x", "ack": 2}},
            headers={"X-Webhook-Secret": "s3cret"},
            timeout=5,
        )
        assert ok.status_code == 200 and ok.json()["results"] == {"unknown_message": 1}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.stderr.close()


def test_needs_the_upgraded_schema(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'empty.db'}"
    Database(db_url).connect().close()
    result = envios(
        "webhooks",
        env=sender_env(db_url, "http://127.0.0.1:1", ENVIOS_WEBHOOKS_SECRET="x"),
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode != 0 and "envios db upgrade" in result.stderr


def test_a_port_in_use_is_one_clear_line(db_url, upgraded, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = sender_env(
            db_url, "http://127.0.0.1:1", ENVIOS_WEBHOOKS_PORT=str(port), ENVIOS_WEBHOOKS_SECRET="x"
        )
        result = envios("webhooks", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
