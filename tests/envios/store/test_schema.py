"""`envios db upgrade` on the two real production schemas (../shared/legacy), on both backends.

Each test loads a real schema file with its rows (SQLite: the same file with its
CREATE TABLEs translated, see tests/conftest.py), reads every column definition,
index and row, upgrades, and checks that only additions happened: the one change
allowed to an existing column is `enviando` appended LAST to an ENUM, with the
rest of its definition (NOT NULL, default, COMMENT, charset) unchanged.
"""

from __future__ import annotations

import dataclasses

import pytest

from envios.domain import Estado, Origin
from envios.store import schema
from envios.store.transitions import transition
from tests.conftest import load_legacy
from tests.sender.conftest import envios, sender_env

SCHEMAS = ["2026-02", "2026-02-27"]
APP_TABLES = [
    "ll_campanias_whatsapp",
    "ll_programaciones",
    "ll_programacion_envios_diarios",
    "ll_envios_whatsapp",
    "ll_envios_whatsapp_historial",
]
NEW_OUTBOX_COLUMNS = {
    "message_id",
    "claimed_at",
    "claimed_by",
    "claim_programacion_id",
    "attempts",
    "next_attempt_at",
    "last_error",
}
NEW_SCHEDULE_COLUMNS = {"paused_reason", "paused_at", "paused_by", "delay_min_s", "delay_max_s"}


def shape(conn) -> dict:
    """Every table's full column definitions and indexes (name -> columns)."""
    tables = [t for t in [*APP_TABLES, "usuarios"] if schema.table_exists(conn, t)]
    return {t: (schema.column_details(conn, t), schema.index_details(conn, t)) for t in tables}


def contents(conn, before_shape) -> dict:
    """Every row of every table, in the columns that existed before."""
    out = {}
    for table, (cols, _idx) in before_shape.items():
        names = ", ".join(cols)
        # safe: names from the live schema
        out[table] = conn.query(f"SELECT {names} FROM {table} ORDER BY id")
    return out


def assert_only_additions(before: dict, after: dict) -> None:
    for table, (cols, idx) in before.items():
        after_cols, after_idx = after[table]
        for name, col in cols.items():
            got = after_cols.get(name)
            assert got is not None, f"{table}.{name} was dropped or renamed"
            if got != col:  # the one change allowed: 'enviando' appended last to an ENUM
                assert got.type == col.type[:-1] + ",'enviando')", f"{table}.{name}: {col} -> {got}"
                assert dataclasses.replace(got, type=col.type) == col, (
                    f"{table}.{name}: {col} -> {got}"
                )
        for name, indexed in idx.items():
            assert after_idx.get(name) == indexed, (
                f"index {table}.{name} changed: {indexed} -> {after_idx.get(name)}"
            )


@pytest.fixture(params=SCHEMAS)
def legacy(request, conn):
    load_legacy(conn, request.param)
    return request.param


def test_upgrade_only_adds_and_every_row_survives(conn, clock, legacy):
    before = shape(conn)
    rows = contents(conn, before)
    schema.upgrade(conn, clock.now())
    after = shape(conn)
    assert_only_additions(before, after)
    assert contents(conn, before) == rows
    assert NEW_OUTBOX_COLUMNS <= set(after["ll_envios_whatsapp"][0])
    assert NEW_SCHEDULE_COLUMNS <= set(after["ll_programaciones"][0])
    campaign = conn.query_one("SELECT nombre FROM ll_campanias_whatsapp WHERE id = 47")
    assert campaign["nombre"] == "Haby – Reactivación"  # latin1 '–' and 'ó' read back intact


def test_history_stays_the_applications(conn, clock, legacy):
    schema.upgrade(conn, clock.now())
    cols = schema.column_details(conn, "ll_envios_whatsapp_historial")
    assert "creado_en" not in cols and not cols["created_at"].nullable
    assert cols["campania_id"].nullable  # the one column envios adds: optional
    if conn.dialect == "mysql":
        expected = {
            "2026-02": "enum('no_incluido','pendiente','enviado','error','enviando')",
            "2026-02-27": "enum('pendiente','enviado','error','enviando')",
        }[legacy]
        comment = "" if legacy == "2026-02" else "Estados oficiales Politica v1.2.0"
        for name in ("estado_anterior", "estado_nuevo"):
            assert (cols[name].type, cols[name].nullable, cols[name].comment) == (
                expected,
                False,
                comment,
            )
    if legacy == "2026-02":  # the application's 'no_incluido' rows read back as they were
        assert (
            conn.scalar(
                "SELECT COUNT(*) FROM ll_envios_whatsapp_historial"
                " WHERE estado_anterior = 'no_incluido'"
            )
            == 1
        )
    with conn.transaction():  # and envios writes its own rows into the application's columns
        transition(
            conn, 4820, Estado.PENDIENTE, Estado.ENVIANDO, origin=Origin.SENDER, at=clock.now()
        )
    mine = conn.query_one(
        "SELECT origen, detalle, created_at, campania_id FROM ll_envios_whatsapp_historial"
        " WHERE envio_id = 4820"
    )
    assert mine == {
        "origen": "envios-sender",
        "detalle": None,
        "created_at": clock.now(),
        "campania_id": 47,
    }


@pytest.mark.mysql_only
def test_enviando_is_appended_last_and_in_place(conn, clock, legacy):
    planned = schema.plan(conn)
    [alter] = [
        s
        for _v, d, s in planned.statements
        if d == "append 'enviando' to ll_envios_whatsapp.estado"
    ]
    # In place: MariaDB refuses ALGORITHM=INSTANT for any ENUM change but appending values at the
    # end.
    conn.execute(alter[0] + ", ALGORITHM=INSTANT")
    assert (
        schema.columns(conn, "ll_envios_whatsapp")["estado"]
        == "enum('pendiente','enviado','error','enviando')"
    )
    # the control: 'enviando' anywhere else is a table copy
    with pytest.raises(schema.DatabaseError):
        conn.execute(
            "ALTER TABLE ll_envios_whatsapp MODIFY COLUMN estado"
            " enum('pendiente','enviando','enviado','error','x') DEFAULT 'pendiente',"
            " ALGORITHM=INSTANT"
        )
    schema.upgrade(conn, clock.now())
    assert (
        schema.columns(conn, "ll_envios_whatsapp")["estado"]
        == "enum('pendiente','enviado','error','enviando')"
    )


def test_an_index_that_covers_the_column_is_reused(conn, clock):
    load_legacy(conn, "2026-02-27")  # has idx_message_id (message_id)
    planned = schema.plan(conn)
    assert (
        "ll_envios_whatsapp: index idx_message_id already covers (message_id): reused,"
        " idx_envios_message_id not added" in planned.found
    )
    schema.upgrade(conn, clock.now())
    on_message_id = [
        n
        for n, cols in schema.index_details(conn, "ll_envios_whatsapp").items()
        if cols == ("message_id",)
    ]
    assert on_message_id == ["idx_message_id"]


def test_dry_run_says_what_it_will_do_and_what_it_found_and_changes_nothing(conn, clock, legacy):
    before = shape(conn)
    planned = schema.plan(conn)
    text = schema.dry_run_sql(planned)
    assert shape(conn) == before and not schema.table_exists(conn, schema.VERSION_TABLE)
    assert "ALTER TABLE ll_envios_whatsapp ADD COLUMN claimed_at" in text
    if legacy == "2026-02" and conn.dialect == "mysql":  # SQLite has no ENUM values to keep
        assert "ll_envios_whatsapp_historial.estado_anterior keeps 'no_incluido'" in text
    assert "ll_programaciones.locked_at (the original scheduler's lock): left as it is" in text
    if legacy == "2026-02-27":
        assert "index idx_message_id already covers (message_id)" in text
        assert (
            "ll_envios_whatsapp_historial.usuario_id (the application's, a foreign key to usuarios)"
            in text
        )
    done = schema.upgrade(conn, clock.now())
    assert [s for _v, _d, s in planned.statements] == [s for _v, _d, s in done.statements]
    assert schema.dry_run_sql(schema.plan(conn)).startswith("-- schema is up to date")


def test_second_upgrade_is_a_no_op(conn, clock, legacy):
    first = schema.upgrade(conn, clock.now())
    assert not first.empty and first.statements
    upgraded_shape = shape(conn)
    second = schema.upgrade(conn, clock.now())
    assert second.empty and second.statements == []
    assert shape(conn) == upgraded_shape
    assert schema.applied_versions(conn) == {v.number for v in schema.VERSIONS}


def test_empty_database_gets_full_schema(conn, clock):
    schema.upgrade(conn, clock.now())
    for table in [*APP_TABLES, "envios_session_leases", "envios_audit"]:
        assert schema.table_exists(conn, table), table
    assert NEW_OUTBOX_COLUMNS <= set(schema.columns(conn, "ll_envios_whatsapp"))
    history = schema.columns(conn, "ll_envios_whatsapp_historial")
    assert {
        "envio_id",
        "estado_anterior",
        "estado_nuevo",
        "origen",
        "detalle",
        "created_at",
    } <= set(history)


def test_dry_run_on_empty_database_matches_real_run(conn, clock):
    planned = schema.plan(conn)
    done = schema.upgrade(conn, clock.now())
    assert [d for _v, d, _s in planned.statements] == [d for _v, d, _s in done.statements]


class Killed(Exception):
    pass


@pytest.mark.parametrize("kill_at", [1, 5, 20])
def test_an_upgrade_killed_midway_finishes_on_the_next_run(conn, clock, legacy, kill_at):
    """MySQL DDL commits as it goes.

    A run that dies at any step leaves a schema the next run completes.
    """
    before = shape(conn)
    rows = contents(conn, before)
    everything = [d for _v, d, _s in schema.plan(conn).statements]
    started: list[str] = []

    def die_at_step(line: str) -> None:
        if len(started) == kill_at - 1:
            raise Killed(line)
        started.append(line.split(": ", 1)[1])

    with pytest.raises(Killed):
        schema.upgrade(conn, clock.now(), log=die_at_step)
    rest = schema.upgrade(conn, clock.now())
    assert started + [d for _v, d, _s in rest.statements] == everything
    assert schema.applied_versions(conn) == {v.number for v in schema.VERSIONS}
    assert_only_additions(before, shape(conn))
    assert contents(conn, before) == rows


def test_a_refused_upgrade_changes_nothing_and_says_why_in_one_line(conn, clock, legacy):
    # A column envios needs exists with a type it cannot use: found by the preflight, before any
    # change.
    conn.execute("ALTER TABLE ll_envios_whatsapp ADD COLUMN claimed_at int(11) DEFAULT NULL")
    before = shape(conn)
    with pytest.raises(schema.UpgradeRefused) as refused:
        schema.upgrade(conn, clock.now())
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        "upgrade refused, nothing changed: ll_envios_whatsapp.claimed_at exists as int"
    )
    assert shape(conn) == before and not schema.table_exists(conn, schema.VERSION_TABLE)


def test_the_dry_run_lists_every_reason_to_refuse(conn, legacy):
    conn.execute("ALTER TABLE ll_envios_whatsapp ADD COLUMN claimed_at int(11) DEFAULT NULL")
    conn.execute("ALTER TABLE ll_envios_whatsapp ADD COLUMN attempts varchar(10) DEFAULT NULL")
    planned = schema.plan(conn, refuse=False)
    text = schema.dry_run_sql(planned)
    assert "-- REFUSED: the upgrade would change nothing, because:" in text
    assert (
        "ll_envios_whatsapp.claimed_at exists as int" in text
        and "ll_envios_whatsapp.attempts exists as" in text
    )
    assert str(planned.refusal()).endswith("(and 1 more: see --dry-run)")
    with pytest.raises(schema.UpgradeRefused):
        schema.plan(conn)


def test_a_refused_upgrade_is_one_line_and_a_nonzero_exit(db_url, conn, tmp_path):
    load_legacy(conn, "2026-02")
    conn.execute("ALTER TABLE ll_envios_whatsapp ADD COLUMN claimed_at int(11) DEFAULT NULL")
    env = sender_env(db_url, "http://127.0.0.1:9")
    for args in (["db", "upgrade"], ["db", "upgrade", "--dry-run"]):
        done = envios(*args, env=env, cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert done.stderr.splitlines() == [
            "envios db: upgrade refused, nothing changed: ll_envios_whatsapp.claimed_at"
            " exists as int(11); envios needs datetime"
        ]
    assert not schema.table_exists(conn, schema.VERSION_TABLE)


def test_legacy_style_insert_is_pending_after_upgrade(upgraded):
    """The existing application inserts only the legacy columns: such a row must be sendable."""
    upgraded.execute(
        "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado)"
        " VALUES (1, 'c', 'm', 'en_progreso')"
    )
    upgraded.execute(
        "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino, mensaje_final)"
        " VALUES (1, '5491100000000', 'Ana', 'Hola {nombre}')"
    )
    row = upgraded.query_one(
        "SELECT estado, attempts, message_id, claimed_at FROM ll_envios_whatsapp"
    )
    assert row == {"estado": "pendiente", "attempts": 0, "message_id": None, "claimed_at": None}


OLD_HISTORY = {  # what envios up to v3 created on an empty database
    "mysql": """CREATE TABLE ll_envios_whatsapp_historial (
  id bigint NOT NULL AUTO_INCREMENT, envio_id int(11) NOT NULL, campania_id int(11) NOT NULL,
  estado_anterior enum('pendiente','enviando','enviado','error') DEFAULT NULL,
  estado_nuevo enum('pendiente','enviando','enviado','error') NOT NULL,
  origen varchar(32) NOT NULL, detalle varchar(500) DEFAULT NULL, creado_en datetime NOT NULL,
  PRIMARY KEY (id), KEY idx_historial_camp_creado (campania_id, creado_en, estado_nuevo)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "sqlite": """CREATE TABLE ll_envios_whatsapp_historial (
  id INTEGER PRIMARY KEY AUTOINCREMENT, envio_id INTEGER NOT NULL, campania_id INTEGER NOT NULL,
  estado_anterior VARCHAR(16) DEFAULT NULL, estado_nuevo VARCHAR(16) NOT NULL, origen VARCHAR(32)
  NOT NULL,
  detalle VARCHAR(500) DEFAULT NULL, creado_en DATETIME NOT NULL)""",
}


def test_a_history_table_made_by_an_earlier_envios_is_adopted(conn, clock):
    """Databases that envios itself created (v1-v3) had `creado_en`.

    It becomes `created_at`, rows kept.
    """
    schema.upgrade(conn, clock.now())
    conn.execute("DROP TABLE ll_envios_whatsapp_historial")
    conn.execute(OLD_HISTORY[conn.dialect])
    if conn.dialect == "sqlite":
        conn.execute(
            "CREATE INDEX idx_historial_camp_creado ON ll_envios_whatsapp_historial"
            " (campania_id, creado_en, estado_nuevo)"
        )
    conn.execute("DELETE FROM envios_schema_version WHERE version = 4")
    conn.execute(
        "INSERT INTO ll_envios_whatsapp_historial (envio_id, campania_id, estado_anterior,"
        " estado_nuevo, origen, detalle, creado_en)"
        " VALUES (1, 1, 'pendiente', 'enviando', 'sender', '', %s)",
        (clock.now(),),
    )
    done = schema.upgrade(conn, clock.now())
    assert (
        "rename envios's own ll_envios_whatsapp_historial.creado_en to created_at"
        in done.statements[0][1]
    )
    assert conn.scalar("SELECT created_at FROM ll_envios_whatsapp_historial") == clock.now()
    # the renamed old one covers it
    assert not any("idx_historial_camp_created" in d for _v, d, _s in done.statements)
    if conn.dialect == "mysql":
        assert schema.column_details(conn, "ll_envios_whatsapp_historial")["campania_id"].nullable


# What envios up to v3 had run on schema_2026-02.sql when it stopped at its 14th step with
# "Data truncated for column 'estado_anterior'" (issue 9): version 1 recorded, 13 steps applied.
PREVIOUS_PARTIAL_UPGRADE = [
    "CREATE TABLE envios_schema_version (version int NOT NULL, name varchar(200) NOT NULL,"
    " applied_at datetime NOT NULL, PRIMARY KEY (version)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "INSERT INTO envios_schema_version VALUES (1, 'base tables', '2026-02-14 09:00:00')",
    (
        "ALTER TABLE ll_envios_whatsapp MODIFY estado"
        " enum('pendiente','enviado','error','enviando') DEFAULT 'pendiente'"
    ),
    "ALTER TABLE ll_envios_whatsapp ADD COLUMN message_id varchar(255) DEFAULT NULL",
    "ALTER TABLE ll_envios_whatsapp ADD COLUMN claimed_at datetime DEFAULT NULL",
    "ALTER TABLE ll_envios_whatsapp ADD COLUMN claimed_by varchar(64) DEFAULT NULL",
    "ALTER TABLE ll_envios_whatsapp ADD COLUMN claim_programacion_id int(11) DEFAULT NULL",
    "ALTER TABLE ll_envios_whatsapp ADD COLUMN attempts int(11) NOT NULL DEFAULT 0",
    "ALTER TABLE ll_envios_whatsapp ADD COLUMN next_attempt_at datetime DEFAULT NULL",
    "ALTER TABLE ll_envios_whatsapp ADD COLUMN last_error varchar(500) DEFAULT NULL",
    "CREATE INDEX idx_envios_message_id ON ll_envios_whatsapp (message_id)",
    "CREATE INDEX idx_envios_estado_claimed ON ll_envios_whatsapp (estado, claimed_at)",
    "CREATE INDEX idx_envios_estado_msgid ON ll_envios_whatsapp (estado, message_id, campania_id)",
    (
        "CREATE INDEX idx_envios_claim_prog ON ll_envios_whatsapp"
        " (claim_programacion_id, estado, claimed_at)"
    ),
    "ALTER TABLE ll_envios_whatsapp_historial ADD COLUMN campania_id int(11) NOT NULL DEFAULT 0",
]


@pytest.mark.mysql_only
def test_the_previous_versions_half_applied_upgrade_is_finished(conn, clock):
    load_legacy(conn, "2026-02")
    before = shape(conn)
    rows = contents(conn, before)
    for statement in PREVIOUS_PARTIAL_UPGRADE:
        conn.execute(statement)
    done = schema.upgrade(conn, clock.now())
    described = [d for _v, d, _s in done.statements]
    assert (
        "make ll_envios_whatsapp_historial.campania_id optional"
        " (added NOT NULL by an earlier envios)" in described
    )
    assert not any(
        "ll_envios_whatsapp.message_id" in d or "ll_envios_whatsapp.estado" in d for d in described
    )
    assert_only_additions(before, shape(conn))
    assert contents(conn, before) == rows
    assert schema.applied_versions(conn) == {v.number for v in schema.VERSIONS}


@pytest.mark.mysql_only
def test_the_upgrade_runs_strict_on_a_session_that_is_not(conn, clock):
    """A server with sql_mode='' would silently truncate.

    The upgrade sets its own strict mode, then restores.
    """
    load_legacy(conn, "2026-02")
    before = shape(conn)
    rows = contents(conn, before)
    conn.execute("SET SESSION sql_mode = ''")
    modes: list[str] = []
    schema.upgrade(
        conn, clock.now(), log=lambda _line: modes.append(conn.scalar("SELECT @@SESSION.sql_mode"))
    )
    assert modes and all("STRICT_ALL_TABLES" in mode for mode in modes)
    assert conn.scalar("SELECT @@SESSION.sql_mode") == ""
    assert_only_additions(before, shape(conn))
    assert contents(conn, before) == rows
