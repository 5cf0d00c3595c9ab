"""Schema upgrade on both backends: legacy rows survive, new shape present, idempotent."""

from __future__ import annotations

from sender import schema
from sender.states import Estado
from tests.conftest import load_legacy

LEGACY_TABLES = ["ll_campanias_whatsapp", "ll_programaciones",
                 "ll_programacion_envios_diarios", "ll_envios_whatsapp"]
NEW_OUTBOX_COLUMNS = {"message_id", "claimed_at", "claimed_by", "claim_programacion_id",
                      "attempts", "next_attempt_at", "last_error"}
NEW_SCHEDULE_COLUMNS = {"paused_reason", "paused_at", "paused_by", "delay_min_s", "delay_max_s"}
WATCHER_INDEXES = {"idx_envios_message_id", "idx_envios_estado_claimed", "idx_envios_estado_msgid"}


def snapshot(conn, table):
    """Every legacy column of every row, exactly as the driver returns it."""
    cols = sorted(schema.columns(conn, table))
    # safe: identifiers from the live schema of a test database
    rows = conn.query(f"SELECT {', '.join(cols)} FROM {table} ORDER BY id")
    return cols, rows


def test_legacy_rows_survive_unchanged(conn, clock):
    load_legacy(conn)
    before = {t: snapshot(conn, t) for t in LEGACY_TABLES}
    schema.upgrade(conn, clock.now())
    for table, (cols, rows) in before.items():
        after = conn.query(f"SELECT {', '.join(cols)} FROM {table} ORDER BY id")
        assert after == rows, f"{table} rows changed by the upgrade"
    campaign = conn.query_one("SELECT nombre FROM ll_campanias_whatsapp WHERE id = 47")
    assert campaign["nombre"] == "Haby – Reactivación"  # latin1 '–' and 'ó' read back intact
    assert conn.scalar("SELECT COUNT(*) FROM ll_envios_whatsapp") == 10


def test_upgrade_adds_columns_enum_and_indexes(conn, clock):
    load_legacy(conn)
    schema.upgrade(conn, clock.now())
    outbox = schema.columns(conn, "ll_envios_whatsapp")
    assert NEW_OUTBOX_COLUMNS <= set(outbox)
    assert NEW_SCHEDULE_COLUMNS <= set(schema.columns(conn, "ll_programaciones"))
    assert WATCHER_INDEXES <= schema.indexes(conn, "ll_envios_whatsapp")
    assert schema.table_exists(conn, "ll_envios_whatsapp_historial")
    assert schema.table_exists(conn, "envios_session_leases")
    if conn.dialect == "mysql":
        for value in ("pendiente", "enviando", "enviado", "error"):
            assert f"'{value}'" in outbox["estado"]
        history = schema.columns(conn, "ll_envios_whatsapp_historial")
        assert "'enviando'" in history["estado_nuevo"]
    with conn.transaction():
        conn.execute("UPDATE ll_envios_whatsapp SET estado = %s WHERE id = 4820", (Estado.ENVIANDO.value,))
    assert conn.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = 4820") == "enviando"


def test_legacy_style_insert_is_pending_after_upgrade(upgraded):
    """The existing application inserts only the legacy columns: such a row must be sendable."""
    upgraded.execute("INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado) VALUES (1, 'c', 'm', 'en_progreso')")
    upgraded.execute(
        "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino, mensaje_final)"
        " VALUES (1, '5491100000000', 'Ana', 'Hola {nombre}')"
    )
    row = upgraded.query_one("SELECT estado, attempts, message_id, claimed_at FROM ll_envios_whatsapp")
    assert row == {"estado": "pendiente", "attempts": 0, "message_id": None, "claimed_at": None}


def test_second_upgrade_is_a_no_op(conn, clock):
    load_legacy(conn)
    first = schema.upgrade(conn, clock.now())
    assert not first.empty and first.statements
    shape = {t: (schema.columns(conn, t), schema.indexes(conn, t)) for t in LEGACY_TABLES}
    second = schema.upgrade(conn, clock.now())
    assert second.empty and second.statements == []
    assert shape == {t: (schema.columns(conn, t), schema.indexes(conn, t)) for t in LEGACY_TABLES}
    assert schema.applied_versions(conn) == {v.number for v in schema.VERSIONS}


def test_empty_database_gets_full_schema(conn, clock):
    schema.upgrade(conn, clock.now())
    for table in [*LEGACY_TABLES, "ll_envios_whatsapp_historial", "envios_session_leases", "envios_audit"]:
        assert schema.table_exists(conn, table), table
    assert NEW_OUTBOX_COLUMNS <= set(schema.columns(conn, "ll_envios_whatsapp"))
    assert WATCHER_INDEXES <= schema.indexes(conn, "ll_envios_whatsapp")


def test_dry_run_lists_exactly_what_upgrade_runs_and_changes_nothing(conn, clock):
    load_legacy(conn)
    planned = schema.plan(conn)
    assert not schema.table_exists(conn, "ll_envios_whatsapp_historial")
    assert "message_id" not in schema.columns(conn, "ll_envios_whatsapp")
    done = schema.upgrade(conn, clock.now())
    assert [s for _v, _d, s in planned.statements] == [s for _v, _d, s in done.statements]
    assert "ALTER TABLE ll_envios_whatsapp ADD COLUMN message_id" in schema.dry_run_sql(planned)
    assert schema.dry_run_sql(schema.plan(conn)).startswith("-- schema is up to date")


def test_dry_run_on_empty_database_matches_real_run(conn, clock):
    planned = schema.plan(conn)
    done = schema.upgrade(conn, clock.now())
    assert [d for _v, d, _s in planned.statements] == [d for _v, d, _s in done.statements]


def test_interrupted_upgrade_resumes(conn, clock):
    """MySQL DDL commits as it goes: a run that died half-way must finish on the next run."""
    load_legacy(conn)
    conn.execute("ALTER TABLE ll_envios_whatsapp ADD COLUMN message_id varchar(255) DEFAULT NULL")
    done = schema.upgrade(conn, clock.now())
    descriptions = [d for _v, d, _s in done.statements]
    assert "add column ll_envios_whatsapp.message_id" not in descriptions
    assert "add column ll_envios_whatsapp.claimed_at" in descriptions
