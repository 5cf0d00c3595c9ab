"""Issue 12: the local journal keeps a known outcome known.

- A confirmed send whose database write failed (an outage longer than the retry window)
  is recorded once the database is back, by the next sender on this machine.
- A claim whose request never left goes back to `pendiente`; one whose request left with
  no answer stays `enviando` (unknown, never guessed).
- A journal of another database, or of a live sender, is not touched.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from envios.sender import journal as journal_module
from envios.sender import session_worker
from envios.sender.journal_recovery import database_identity
from envios.sender.loop import Sender, run_once

from envios.store.connector import Database
from tests.sender.conftest import history, make_config, row, seed_session, sent_today
from tests.sender.test_claim_ownership import _CuttableProxy


def journal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*" + journal_module.SUFFIX))


@pytest.mark.mysql_only
def test_a_confirmed_send_lost_in_an_outage_is_recorded_when_the_database_is_back(
    db_url, upgraded, clock, gateway, monkeypatch, tmp_path
):
    # the outage outlasts the retry window
    monkeypatch.setattr(session_worker, "RECORD_PATIENCE_S", 1.0)
    journal_dir = tmp_path / "journal"
    first, second = seed_session(upgraded, cliente_id=51, campania_id=47, rows=2)
    parts = urlsplit(db_url)
    proxy = _CuttableProxy(parts.hostname, parts.port or 3306)
    proxied = urlunsplit(
        (parts.scheme, f"{parts.username or 'root'}@127.0.0.1:{proxy.port}", parts.path, "", "")
    )
    gateway.on_deliver = lambda _cid, _payload: proxy.cut()
    run_once(
        make_config(
            proxied,
            gateway.base_url,
            **{"sender.journal_dir": str(journal_dir), "sender.lease_ttl_s": 5.0},
        ),
        clock=clock,
        sender_id="a:1:0001",
    )

    assert row(upgraded, first)["estado"] == "enviando"  # the database missed the confirmation
    assert len(journal_files(journal_dir)) == 1  # but the journal has it, on disk
    message_id = gateway.ledger[0]["message_id"]

    gateway.on_deliver = None
    clock.advance(10)  # the lease of the dead worker expires
    report = run_once(
        make_config(db_url, gateway.base_url, **{"sender.journal_dir": str(journal_dir)}),
        clock=clock,
        sender_id="b:2:0002",
    )

    r = row(upgraded, first)
    assert r["estado"] == "enviado" and r["message_id"] == message_id
    assert history(upgraded, first) == [
        ("pendiente", "enviando", "envios-sender"),
        ("enviando", "enviado", "envios-sender"),
    ]
    assert row(upgraded, second)["estado"] == "enviado"
    # never sent twice
    assert len(gateway.ledger) == 2 and max(gateway.delivered_to().values()) == 1
    assert sent_today(upgraded, 47, clock.today()) == 2
    assert journal_files(journal_dir) == []  # applied, then removed
    assert report.sent == 1


def dead_sender_journal(
    directory: Path, sender_id: str, database: Database, lines: list[dict]
) -> None:
    """The journal a sender leaves when it is killed: its lines on disk, its lock released."""
    journal = journal_module.Journal(directory, sender_id, database_identity(database))
    for line in lines:
        journal._write(line)
    journal._file.close()  # what the kernel does to the flock of a killed process


def claim_for(conn, envio_id: int, sender_id: str, at: dt.datetime) -> None:
    conn.execute(
        "UPDATE ll_envios_whatsapp SET estado = 'enviando', claimed_by = %s, claimed_at = %s,"
        " claim_programacion_id = 47, attempts = 1 WHERE id = %s",
        (sender_id, at, envio_id),
    )


def test_a_claim_that_never_left_goes_back_to_pendiente_and_one_that_left_stays_unknown(
    db_url, upgraded, clock, gateway, tmp_path
):
    journal_dir = tmp_path / "journal"
    never_left, left, untouched = seed_session(upgraded, cliente_id=51, campania_id=47, rows=3)
    dead = "deadhost:4242:beef"
    at = clock.now() - dt.timedelta(minutes=10)
    claim_for(upgraded, never_left, dead, at)
    claim_for(upgraded, left, dead, at)
    dead_sender_journal(
        journal_dir,
        dead,
        Database(db_url),
        [{"ev": "sending", "envio_id": left, "claimed_at": at.isoformat()}],
    )
    run_once(
        make_config(
            db_url,
            gateway.base_url,
            **{"sender.journal_dir": str(journal_dir), "sender.lease_ttl_s": 5.0},
        ),
        clock=clock,
        sender_id="b:2:0002",
    )

    assert history(upgraded, never_left)[0] == ("enviando", "pendiente", "envios-sender")
    assert row(upgraded, never_left)["estado"] == "enviado"  # then sent, once, by the live sender
    r = row(upgraded, left)
    assert r["estado"] == "enviando" and "stopped after sending" in r["last_error"]
    assert row(upgraded, untouched)["estado"] == "enviado"
    assert sorted(gateway.delivered_to().values()) == [1, 1]  # the unknown row was not sent again
    assert journal_files(journal_dir) == []


def test_a_journal_of_another_database_or_a_live_sender_is_left_alone(
    db_url, upgraded, clock, gateway, tmp_path
):
    journal_dir = tmp_path / "journal"
    (envio,) = seed_session(upgraded, cliente_id=51, campania_id=47, rows=1)
    dead = "elsewhere:1:aaaa"
    claim_for(upgraded, envio, dead, clock.now())
    other = Database(f"sqlite:///{tmp_path / 'another.db'}")
    dead_sender_journal(journal_dir, dead, other, [])
    live = journal_module.Journal(journal_dir, "live:2:bbbb", database_identity(Database(db_url)))
    try:
        sender = Sender(
            make_config(db_url, gateway.base_url, **{"sender.journal_dir": str(journal_dir)}),
            clock=clock,
            sender_id="c:3:0003",
        )
        try:
            sender.run_once()
        finally:
            sender.close()
        assert row(upgraded, envio)["estado"] == "enviando"  # its journal is not of this database
        assert len(journal_files(journal_dir)) == 2  # the other database's and the live one
    finally:
        live.close()


def test_a_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / ("x" + journal_module.SUFFIX)
    path.write_text(
        '{"ev": "open", "sender": "s", "database": "d"}\n'
        '{"ev": "sending", "envio_id": 1, "claimed_at": "2026-02-09T10:00:00"}\n{"ev": "sa'
    )
    reading = journal_module.read(path)
    assert (
        reading.sender == "s"
        and reading.sending == {"1@2026-02-09T10:00:00"}
        and reading.said == {}
    )


@pytest.mark.mysql_only
def test_a_sender_killed_while_its_write_waits_is_recorded_by_the_next_one(
    db_url, upgraded, gateway, tmp_path
):
    """Real processes: the write of `enviado` waits on a global read lock, the sender is
    SIGKILLed."""
    import signal
    import time

    import pymysql

    from tests.sender.conftest import envios, sender_env, spawn_sender

    (envio,) = seed_session(upgraded, cliente_id=51, campania_id=47, rows=1)
    parts = urlsplit(db_url)
    holder = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        autocommit=True,
    )
    gateway.on_deliver = lambda _cid, _payload: holder.cursor().execute(
        "FLUSH TABLES WITH READ LOCK"
    )
    env = sender_env(
        db_url,
        gateway.base_url,
        ENVIOS_SENDER_JOURNAL_DIR=str(tmp_path / "journal"),
        ENVIOS_SENDER_LEASE_TTL_S="5",
        ENVIOS_SENDER_TICK_S="0.5",
    )
    proc = spawn_sender(env=env, cwd=tmp_path, log_path=tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 60
        while not any('"ev": "said"' in p.read_text() for p in journal_files(tmp_path / "journal")):
            assert time.monotonic() < deadline and proc.poll() is None, (
                tmp_path / "first.log"
            ).read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.log.close()
        if proc.poll() is None:
            proc.kill()
        holder.cursor().execute("UNLOCK TABLES")
        holder.close()
    assert row(upgraded, envio)["estado"] == "enviando"

    result = envios("send", "--once", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    r = row(upgraded, envio)
    assert r["estado"] == "enviado" and r["message_id"] == gateway.ledger[0]["message_id"]
    assert len(gateway.ledger) == 1
    assert journal_files(tmp_path / "journal") == []


def test_a_live_senders_claim_that_never_left_goes_back_to_pendiente(
    db_url, upgraded, clock, gateway, tmp_path
):
    """The claim committed but the sender never heard (connection lost right after the commit)."""
    from types import SimpleNamespace

    orphan, in_doubt = seed_session(upgraded, cliente_id=51, campania_id=47, rows=2)
    me = "live:7:cafe"
    long_ago = clock.now() - dt.timedelta(minutes=10)
    claim_for(upgraded, orphan, me, long_ago)
    claim_for(upgraded, in_doubt, me, long_ago)
    sender = Sender(
        make_config(db_url, gateway.base_url, **{"sender.journal_dir": str(tmp_path / "journal")}),
        clock=clock,
        sender_id=me,
    )
    try:
        # this one may have left
        sender.journal.sending(SimpleNamespace(envio_id=in_doubt, claimed_at=long_ago))
        sender.run_once()
    finally:
        sender.close()
    assert history(upgraded, orphan)[0] == ("enviando", "pendiente", "envios-sender")
    assert row(upgraded, orphan)["estado"] == "enviado" and len(gateway.ledger) == 1
    assert row(upgraded, in_doubt)["estado"] == "enviando"  # never guessed
