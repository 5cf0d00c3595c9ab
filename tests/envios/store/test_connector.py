"""The connector: URLs, clear errors without secrets, time limits, a killed connection."""

from __future__ import annotations

import datetime as dt

import pytest

from envios.errors import ConfigError, DatabaseUnavailable, QueryTimeout
from envios.store.connector import Database, DatabaseUrl


def test_mysql_url_is_parsed_and_described_without_password():
    url = DatabaseUrl.parse("mysql://envios:s3cr%40t@db.local:3307/leadmaster")
    assert (url.user, url.password, url.host, url.port, url.database) == (
        "envios",
        "s3cr@t",
        "db.local",
        3307,
        "leadmaster",
    )
    assert "s3cr" not in url.describe()


@pytest.mark.parametrize(
    "bad", ["postgres://x/y", "mysql://host-only", "sqlite://", "mysql://h:port/db"]
)
def test_bad_urls_are_config_errors(bad):
    with pytest.raises(ConfigError, match="database.url"):
        DatabaseUrl.parse(bad)


def test_round_trips_dates_times_and_text(upgraded):
    upgraded.execute(
        "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado) VALUES (%s, %s, %s, %s)",
        (3, "Haby – Reactivación ñ", "Hola {nombre} 😀", "en_progreso"),
    )
    upgraded.execute(
        "INSERT INTO ll_programaciones (campania_id, cliente_id, dias_semana, hora_inicio,"
        " hora_fin, fecha_inicio, estado, paused_at)"
        " VALUES (3, 51, 'mon', %s, %s, %s, 'aprobada', %s)",
        (dt.time(8, 0), dt.time(20, 30), dt.date(2026, 2, 1), dt.datetime(2026, 2, 7, 12, 11, 49)),
    )
    row = upgraded.query_one(
        "SELECT hora_inicio, hora_fin, fecha_inicio, paused_at FROM ll_programaciones"
    )
    assert row == {
        "hora_inicio": dt.time(8, 0),
        "hora_fin": dt.time(20, 30),
        "fecha_inicio": dt.date(2026, 2, 1),
        "paused_at": dt.datetime(2026, 2, 7, 12, 11, 49),
    }
    campaign = upgraded.query_one("SELECT nombre, mensaje FROM ll_campanias_whatsapp WHERE id = 3")
    assert campaign == {"nombre": "Haby – Reactivación ñ", "mensaje": "Hola {nombre} 😀"}


@pytest.mark.mysql
def test_wrong_password_is_one_clear_error_without_the_password(mysql_server_url):
    from urllib.parse import urlsplit

    parts = urlsplit(mysql_server_url)
    url = f"mysql://root:not-the-Pw-123@{parts.hostname}:{parts.port or 3306}/mysql"
    with pytest.raises(DatabaseUnavailable, match="access denied") as info:
        Database(url).connect()
    assert "not-the-Pw-123" not in str(info.value)


def test_unreachable_mysql_is_database_unavailable():
    with pytest.raises(DatabaseUnavailable, match="127.0.0.1:1"):
        Database("mysql://root@127.0.0.1:1/x", connect_timeout_s=2).connect()


def test_missing_sqlite_directory_is_database_unavailable(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="cannot open"):
        Database(f"sqlite:///{tmp_path}/no/such/dir/x.db").connect()


def test_time_limit_abandons_a_slow_query_on_sqlite(tmp_path):
    """SQLite: the progress handler interrupts a long statement (no server to do it)."""
    with Database(f"sqlite:///{tmp_path / 'x.db'}").connect() as conn:
        slow = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000)"
            " SELECT COUNT(*) FROM c"
        )
        with pytest.raises(QueryTimeout):
            with conn.time_limit(0.3):
                conn.scalar(slow)
        assert conn.scalar("SELECT 1") == 1  # the connection is usable afterwards


def _statements_killed_by_the_server(conn) -> int:
    row = conn.query_one("SHOW SESSION STATUS LIKE 'Max_statement_time_exceeded'")
    return int(row["Value"])


@pytest.mark.mysql_only
def test_time_limit_lets_the_server_kill_the_query(upgraded):
    """MariaDB: SLEEP(5) under a 1 s limit is interrupted BY THE SERVER (error 1969, counted in
    Max_statement_time_exceeded) and surfaces as QueryTimeout; a no-op time_limit fails here."""
    killed_before = _statements_killed_by_the_server(upgraded)
    with pytest.raises(QueryTimeout, match="exceeded its time limit"):
        with upgraded.time_limit(1):
            upgraded.scalar("SELECT SLEEP(5)")
    assert _statements_killed_by_the_server(upgraded) == killed_before + 1
    # the limit is lifted afterwards, and the connection is usable
    assert float(upgraded.scalar("SELECT @@SESSION.max_statement_time")) == 0
    assert upgraded.scalar("SELECT 1") == 1


@pytest.mark.mysql_only
def test_killed_connection_is_reopened_before_the_next_transaction(database, upgraded):
    victim_id = upgraded.thread_id
    with database.connect() as killer:
        killer.execute(f"KILL {int(victim_id)}")
    with upgraded.transaction():
        upgraded.execute(
            "INSERT INTO ll_campanias_whatsapp (nombre, mensaje) VALUES ('after', 'kill')"
        )
    assert upgraded.thread_id != victim_id
    assert upgraded.scalar("SELECT COUNT(*) FROM ll_campanias_whatsapp WHERE nombre = 'after'") == 1


def test_driver_errors_become_database_errors(upgraded):
    from envios.errors import DatabaseError

    with pytest.raises(DatabaseError, match="no_such_table"):
        upgraded.query("SELECT * FROM no_such_table")
    upgraded.execute("INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje) VALUES (1, 'a', 'b')")
    with pytest.raises(DatabaseError):
        upgraded.execute(
            "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje) VALUES (1, 'a', 'b')"
        )
