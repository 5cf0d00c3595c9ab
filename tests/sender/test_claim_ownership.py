"""A claim belongs to the sender that made it: races a review found, produced for real.

- a lease taken over while a claim waits for the lease row must stop that claim
  (MariaDB row locks, READ COMMITTED);
- a late answer to a claim that is no longer ours (an operator requeued the row
  and another sender claimed it) must not move the other sender's claim.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from envios.sender import outbox, reconcile
from envios.sender.loop import Sender, run_once
from envios.sender.session_worker import Claimed, LeaseLost, claim_next, record_outcome

from tests.sender.conftest import add_schedule, history, make_config, row, seed_session


def _wait_for_lock_wait(database, timeout=10.0) -> None:
    with database.connect() as watcher:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if watcher.scalar(
                "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'"
            ):
                return
            time.sleep(0.02)
    raise AssertionError("the claim never waited for the lease row")


@pytest.mark.mysql_only
def test_a_lease_taken_while_the_claim_waits_for_it_stops_the_claim(
    db_url, database, upgraded, clock, gateway
):
    (envio_id,) = seed_session(upgraded, cliente_id=51, campania_id=47, rows=1)
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock, sender_id="A:1:aaaa")
    conn = database.connect()
    try:
        with upgraded.transaction():  # A holds the lease; by A's clock it is valid for 30 s more
            assert outbox.lease_acquire(
                upgraded, 51, "A:1:aaaa", clock.now(), clock.now() + dt.timedelta(seconds=30)
            )
        got: list = []

        def claim() -> None:
            try:
                got.append(claim_next(conn, sender.ctx, 51, 47))
            except Exception as exc:  # noqa: BLE001 - judged below
                got.append(exc)

        with database.connect() as thief:
            thief_now = clock.now() + dt.timedelta(seconds=31)  # by B's clock A's lease has expired
            with thief.transaction():
                assert outbox.lease_acquire(
                    thief, 51, "B:1:bbbb", thief_now, thief_now + dt.timedelta(seconds=30)
                )
                worker = threading.Thread(target=claim)
                worker.start()
                # A read the lease as its own and now waits to extend it
                _wait_for_lock_wait(database)
            worker.join(20)
        assert len(got) == 1
        assert isinstance(got[0], LeaseLost), f"claimed without the lease: {got[0]!r}"
        assert outbox.lease_owner(upgraded, 51) == "B:1:bbbb"
        assert (
            row(upgraded, envio_id)["estado"] == "pendiente" and history(upgraded, envio_id) == []
        )
    finally:
        conn.close()
        sender.close()


def test_a_late_answer_never_moves_another_senders_claim(
    db_url, database, upgraded, clock, gateway
):
    """A's POST is slow; meanwhile an operator requeues the row and B claims it on another session.

    A's late "did not send" must leave B's claim alone, or B's confirmation is
    refused and the delivered row is sent again.
    """
    (envio_id,) = seed_session(upgraded, cliente_id=51, campania_id=47, rows=1)
    add_schedule(upgraded, 48, 47, 52)  # the campaign also sends from session 52
    config = make_config(db_url, gateway.base_url)
    a = Sender(config, clock=clock, sender_id="A:1:aaaa")
    b = Sender(config, clock=clock, sender_id="B:1:bbbb")
    conn_b, conn_op = database.connect(), database.connect()
    claimed_by_b: list = []
    try:
        with upgraded.transaction():  # B works session 52
            assert outbox.lease_acquire(
                upgraded, 52, "B:1:bbbb", clock.now(), clock.now() + dt.timedelta(seconds=300)
            )

        def meanwhile(_cid):
            clock.advance(400)  # A hangs; its row shows as stuck
            reconcile.requeue(conn_op, clock, envio_id, by="op", note="checked: not delivered")
            with conn_b.transaction():  # B's lease is still valid at the new time
                outbox.lease_renew(
                    conn_b, 52, "B:1:bbbb", clock.now(), clock.now() + dt.timedelta(seconds=300)
                )
            claimed_by_b.append(claim_next(conn_b, b.ctx, 52, 48))
            return 500, {"error": True, "code": "WHATSAPP_ERROR", "message": "not sent"}

        gateway.plan(51, meanwhile)
        report = a.run_once()
        assert report.sessions_held_elsewhere == [52] and gateway.sends_received == 1
        (mine,) = claimed_by_b
        assert isinstance(mine, Claimed) and mine.envio_id == envio_id
        r = row(upgraded, envio_id)
        assert (r["estado"], r["claimed_by"]) == ("enviando", "B:1:bbbb"), (
            "A's late answer moved B's claim"
        )

        # B sends and records; nobody sends the row again
        result = b.gateway.send(52, mine.to, mine.text)
        record_outcome(conn_b, b.ctx, mine, result)
        assert row(upgraded, envio_id)["estado"] == "enviado"
        with upgraded.transaction():
            outbox.lease_release(upgraded, 52, "B:1:bbbb")
        clock.advance(600)  # past any retry wait
        a.run_once()
        assert len(gateway.ledger) == 1 and max(gateway.delivered_to().values()) == 1
    finally:
        conn_b.close()
        conn_op.close()
        a.close()
        b.close()


class _CuttableProxy:
    """A TCP forwarder to MariaDB that can be cut (every connection dropped, new ones refused)."""

    def __init__(self, host: str, port: int):
        import socket

        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def cut(self) -> None:
        import socket

        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept(): nothing listens any more
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


@pytest.mark.mysql_only
def test_database_lost_between_the_confirmation_and_enviado(
    db_url, upgraded, clock, gateway, monkeypatch, caplog
):
    """The gateway delivered; the database goes away before `enviado` is written.

    The sender must not crash, the row must stay enviando (unknown to us, shown
    as stuck) and no sender may send it again.
    """
    from urllib.parse import urlsplit, urlunsplit

    from envios.sender import session_worker

    # the outage outlasts our patience
    monkeypatch.setattr(session_worker, "RECORD_PATIENCE_S", 2.0)
    ids = seed_session(upgraded, cliente_id=51, campania_id=47, rows=3)
    parts = urlsplit(db_url)
    proxy = _CuttableProxy(parts.hostname, parts.port or 3306)
    proxied = urlunsplit(
        (parts.scheme, f"{parts.username or 'root'}@127.0.0.1:{proxy.port}", parts.path, "", "")
    )
    config = make_config(proxied, gateway.base_url, **{"sender.lease_ttl_s": 5.0})

    def outage(_cid, _payload):
        if len(gateway.ledger) == 1:
            proxy.cut()

    gateway.on_deliver = outage
    caplog.set_level("INFO", logger="envios")
    report = run_once(config, clock=clock)  # returns: no crash
    assert "database problem" in report.sessions_worked[51].stop_reason
    assert len(gateway.ledger) == 1
    r = row(upgraded, ids[0])
    assert r["estado"] == "enviando" and r["message_id"] is None and r["fecha_envio"] is None
    assert history(upgraded, ids[0]) == [("pendiente", "enviando", "envios-sender")]
    assert f"event=record_failed envio_id={ids[0]} outcome=sent" in caplog.text
    # The log line is the operator's record of the message: its unique suffix whole, the number
    # masked.
    delivered_id = gateway.ledger[0]["message_id"]
    number, suffix = delivered_id.removeprefix("true_").split("@", 1)
    [failed] = [line for line in caplog.text.splitlines() if "event=record_failed" in line]
    assert f"message_id=true_{'*' * (len(number) - 4)}{number[-4:]}@{suffix} " in failed
    assert number not in failed

    clock.advance(10)  # the dead worker could not release its lease: it expires
    second = Sender(make_config(db_url, gateway.base_url), clock=clock)
    try:
        second.run_once()
    finally:
        second.close()
    assert row(upgraded, ids[0])["estado"] == "enviando"
    assert [row(upgraded, i)["estado"] for i in ids[1:]] == ["enviado", "enviado"]
    assert len(gateway.ledger) == 3 and max(gateway.delivered_to().values()) == 1
    assert [s["id"] for s in outbox.stuck_rows(upgraded, clock.db_now(upgraded))] == [ids[0]]
