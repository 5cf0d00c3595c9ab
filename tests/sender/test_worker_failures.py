"""Issue 12: what goes wrong between claim and record ends in an outcome; `send --once` says a
worker failed."""

from __future__ import annotations

from envios.sender.gateways.base import Outcome
from envios.sender.gateways.session_manager import SessionManagerGateway
from envios.sender.loop import run_once

from envios.store.connector import Database
from tests.sender.conftest import envios, history, make_config, row, seed_session, sender_env


class AdapterBugAfterThePost(SessionManagerGateway):
    """A real POST to the gateway, then an adapter bug while reading the answer."""

    def send(self, cliente_id, to, message):
        super().send(cliente_id, to, message)
        raise KeyError("message_id")


def test_an_adapter_exception_after_the_post_is_an_unknown_outcome(
    db_url, upgraded, clock, gateway
):
    first, second = seed_session(upgraded, cliente_id=51, campania_id=47, rows=2)
    buggy = AdapterBugAfterThePost(gateway.base_url, send_timeout_s=5, status_timeout_s=2)
    report = run_once(
        make_config(db_url, gateway.base_url), clock=clock, gateway=buggy, sender_id="bug:1"
    )

    assert len(gateway.ledger) == 1  # it was delivered
    r1 = row(upgraded, first)
    assert r1["estado"] == "enviando"  # never guessed: stuck, for envios reconcile
    assert "gateway adapter failed (KeyError)" in r1["last_error"]
    assert history(upgraded, first) == [("pendiente", "enviando", "envios-sender")]
    assert row(upgraded, second)["estado"] == "pendiente"
    assert report.outcomes[Outcome.UNKNOWN] == 1
    assert not any(r.failed for r in report.sessions_worked.values())


def test_send_once_exits_non_zero_when_a_worker_failed(db_url, upgraded, gateway, tmp_path):
    seed_session(upgraded, cliente_id=51, campania_id=47, rows=2)

    def lose_the_history_table(_cid, _payload):  # the record after this delivery cannot be written
        with Database(db_url).connect() as other:
            other.execute("DROP TABLE ll_envios_whatsapp_historial")

    gateway.on_deliver = lose_the_history_table
    result = envios("send", "--once", env=sender_env(db_url, gateway.base_url), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("envios send: 1 session worker(s) failed: session 51: database problem")
    assert "Traceback" not in result.stderr
