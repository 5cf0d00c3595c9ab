"""Versioned, recorded, idempotent schema upgrades (`envios db upgrade`).

Each version is a list of steps; a step knows how to tell whether it is still
needed (by looking at the live schema) and the SQL that does it, per dialect.
So a second run changes nothing, an upgrade interrupted half-way (MySQL DDL
does not roll back) resumes where it stopped, and `--dry-run` prints exactly
the statements a real run would execute. Steps only add: no legacy column,
row or value is changed or dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

from sender.db import MYSQL, SQLITE, Connection, split_statements

VERSION_TABLE = "envios_schema_version"
ESTADO_VALUES = ("pendiente", "enviado", "error", "enviando")  # appended last: instant ALTER


# -- introspection ---------------------------------------------------------

def table_exists(conn: Connection, table: str) -> bool:
    if conn.dialect == SQLITE:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = %s"
    else:
        sql = ("SELECT table_name FROM information_schema.tables"
               " WHERE table_schema = DATABASE() AND table_name = %s")
    return conn.query_one(sql, (table,)) is not None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def columns(conn: Connection, table: str) -> dict[str, str]:
    """Column name -> declared type (lower case)."""
    if conn.dialect == SQLITE:
        # safe: PRAGMA takes no parameters; table names come from this module only.
        rows = conn.query(f"PRAGMA table_info({table})")
        return {r["name"]: _text(r["type"]).lower() for r in rows}
    rows = conn.query(
        "SELECT column_name AS name, column_type AS type FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = %s",
        (table,),
    )
    return {_text(r["name"]): _text(r["type"]).lower() for r in rows}


def indexes(conn: Connection, table: str) -> set[str]:
    if conn.dialect == SQLITE:
        rows = conn.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s", (table,))
        return {r["name"] for r in rows}
    rows = conn.query(
        "SELECT DISTINCT index_name AS name FROM information_schema.statistics"
        " WHERE table_schema = DATABASE() AND table_name = %s",
        (table,),
    )
    return {_text(r["name"]) for r in rows}


@dataclass
class TableShape:
    columns: dict[str, str]
    indexes: set[str]


class SchemaView:
    """The schema as it is, then as it will be after each planned step.

    Read once from the live database; every step checks the view and applies
    its effect to it, so a dry run on an empty database lists exactly what a
    real run executes.
    """

    def __init__(self, conn: Connection, tables: list[str]):
        self.tables: dict[str, TableShape] = {
            t: TableShape(columns(conn, t), indexes(conn, t)) for t in tables if table_exists(conn, t)
        }

    def has_table(self, table: str) -> bool:
        return table in self.tables

    def column_type(self, table: str, column: str) -> str | None:
        shape = self.tables.get(table)
        return shape.columns.get(column) if shape else None

    def has_index(self, table: str, name: str) -> bool:
        shape = self.tables.get(table)
        return bool(shape) and name in shape.indexes


_NOT_COLUMNS = {"primary", "key", "unique", "constraint", "index", "foreign"}


def shape_of_ddl(statements: list[str]) -> TableShape:
    """Columns and index names declared by CREATE TABLE / CREATE INDEX statements."""
    shape = TableShape({}, set())
    for statement in statements:
        index = re.match(r"\s*CREATE (?:UNIQUE )?INDEX (\w+)", statement)
        if index:
            shape.indexes.add(index.group(1))
            continue
        body = statement[statement.index("(") + 1: statement.rindex(")")]
        for line in body.splitlines():
            words = line.strip().split()
            if len(words) < 2:
                continue
            if words[0].lower() in ("key", "index") or words[:2] == ["UNIQUE", "KEY"]:
                shape.indexes.add(words[2] if words[0] == "UNIQUE" else words[1])
            elif words[0].lower() not in _NOT_COLUMNS:
                shape.columns[words[0]] = words[1].rstrip(",").lower()
    return shape


# -- steps ------------------------------------------------------------------

@dataclass
class Step:
    description: str
    table: str
    needed: Callable[[SchemaView], bool]
    sql: Callable[[str], list[str]]  # dialect -> statements
    apply: Callable[[SchemaView, str], None]  # record the effect in the view


def create_table(name: str, mysql: list[str] | str, sqlite: list[str] | str) -> Step:
    ddl = {MYSQL: [mysql] if isinstance(mysql, str) else mysql,
           SQLITE: [sqlite] if isinstance(sqlite, str) else sqlite}

    def apply(view: SchemaView, dialect: str) -> None:
        view.tables[name] = shape_of_ddl(ddl[dialect])

    return Step(f"create table {name}", name, lambda v: not v.has_table(name), lambda d: ddl[d], apply)


def add_column(table: str, column: str, mysql_type: str, sqlite_type: str | None = None) -> Step:
    types = {MYSQL: mysql_type, SQLITE: sqlite_type or mysql_type}

    def apply(view: SchemaView, dialect: str) -> None:
        view.tables[table].columns[column] = types[dialect].split()[0].lower()

    return Step(
        f"add column {table}.{column}",
        table,
        lambda v: v.has_table(table) and v.column_type(table, column) is None,
        lambda d: [f"ALTER TABLE {table} ADD COLUMN {column} {types[d]}"],
        apply,
    )


def create_index(table: str, name: str, cols: str) -> Step:
    return Step(
        f"create index {name} on {table} ({cols})",
        table,
        lambda v: v.has_table(table) and not v.has_index(table, name),
        lambda d: [f"CREATE INDEX {name} ON {table} ({cols})"],
        lambda v, d: v.tables[table].indexes.add(name),
    )


def extend_enum(table: str, column: str, values: tuple[str, ...], tail: str) -> Step:
    """MySQL: widen an ENUM, keeping existing values in place. SQLite has no ENUM."""
    enum_sql = "enum(" + ",".join(f"'{v}'" for v in values) + ")"

    def needed(view: SchemaView) -> bool:
        declared = view.column_type(table, column) or ""
        return declared.startswith("enum(") and any(f"'{v}'" not in declared for v in values)

    def apply(view: SchemaView, dialect: str) -> None:
        view.tables[table].columns[column] = enum_sql

    return Step(
        f"allow {', '.join(values)} in {table}.{column}",
        table,
        needed,
        lambda d: [f"ALTER TABLE {table} MODIFY {column} {enum_sql} {tail}"],
        apply,
    )


def _base_tables() -> list[Step]:
    """The legacy tables, created where missing (an empty database)."""
    by_table: dict[str, dict[str, list[str]]] = {}
    for dialect in (MYSQL, SQLITE):
        script = resources.files("sender.migrations").joinpath(f"base_{dialect}.sql").read_text("utf-8")
        for statement in split_statements(script):
            match = re.search(r"CREATE TABLE (\w+)|CREATE INDEX \w+ ON (\w+)", statement)
            table = match.group(1) or match.group(2)
            by_table.setdefault(table, {MYSQL: [], SQLITE: []})[dialect].append(statement)
    return [create_table(table, ddl[MYSQL], ddl[SQLITE]) for table, ddl in by_table.items()]


_ESTADO_ENUM = "enum('pendiente','enviando','enviado','error')"

_HISTORY_MYSQL = f"""CREATE TABLE ll_envios_whatsapp_historial (
  id bigint NOT NULL AUTO_INCREMENT,
  envio_id int(11) NOT NULL,
  campania_id int(11) NOT NULL,
  estado_anterior {_ESTADO_ENUM} DEFAULT NULL,
  estado_nuevo {_ESTADO_ENUM} NOT NULL,
  origen varchar(32) NOT NULL,
  detalle varchar(500) DEFAULT NULL,
  creado_en datetime NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"""
_HISTORY_SQLITE = """CREATE TABLE ll_envios_whatsapp_historial (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  envio_id INTEGER NOT NULL,
  campania_id INTEGER NOT NULL,
  estado_anterior VARCHAR(16) DEFAULT NULL,
  estado_nuevo VARCHAR(16) NOT NULL,
  origen VARCHAR(32) NOT NULL,
  detalle VARCHAR(500) DEFAULT NULL,
  creado_en DATETIME NOT NULL
)"""

_LEASES_MYSQL = """CREATE TABLE envios_session_leases (
  cliente_id int(11) NOT NULL,
  owner varchar(64) NOT NULL,
  acquired_at datetime NOT NULL,
  expires_at datetime NOT NULL,
  PRIMARY KEY (cliente_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
_LEASES_SQLITE = """CREATE TABLE envios_session_leases (
  cliente_id INTEGER PRIMARY KEY,
  owner VARCHAR(64) NOT NULL,
  acquired_at DATETIME NOT NULL,
  expires_at DATETIME NOT NULL
)"""

_AUDIT_MYSQL = """CREATE TABLE envios_audit (
  id bigint NOT NULL AUTO_INCREMENT,
  creado_en datetime NOT NULL,
  accion varchar(32) NOT NULL,
  campania_id int(11) DEFAULT NULL,
  programacion_id int(11) DEFAULT NULL,
  motivo varchar(64) DEFAULT NULL,
  detalle varchar(500) DEFAULT NULL,
  origen varchar(120) DEFAULT NULL,
  PRIMARY KEY (id),
  KEY idx_audit_campania (campania_id, creado_en)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"""
_AUDIT_SQLITE = """CREATE TABLE envios_audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  creado_en DATETIME NOT NULL,
  accion VARCHAR(32) NOT NULL,
  campania_id INTEGER DEFAULT NULL,
  programacion_id INTEGER DEFAULT NULL,
  motivo VARCHAR(64) DEFAULT NULL,
  detalle VARCHAR(500) DEFAULT NULL,
  origen VARCHAR(120) DEFAULT NULL
)"""

OUTBOX = "ll_envios_whatsapp"
HISTORY = "ll_envios_whatsapp_historial"
SCHEDULES = "ll_programaciones"
CAMPAIGNS = "ll_campanias_whatsapp"


def _claims_and_history() -> list[Step]:
    return [
        extend_enum(OUTBOX, "estado", ESTADO_VALUES, "DEFAULT 'pendiente'"),
        add_column(OUTBOX, "message_id", "varchar(255) DEFAULT NULL"),
        add_column(OUTBOX, "claimed_at", "datetime DEFAULT NULL", "DATETIME DEFAULT NULL"),
        add_column(OUTBOX, "claimed_by", "varchar(64) DEFAULT NULL"),
        add_column(OUTBOX, "claim_programacion_id", "int(11) DEFAULT NULL", "INTEGER DEFAULT NULL"),
        add_column(OUTBOX, "attempts", "int(11) NOT NULL DEFAULT 0", "INTEGER NOT NULL DEFAULT 0"),
        add_column(OUTBOX, "next_attempt_at", "datetime DEFAULT NULL", "DATETIME DEFAULT NULL"),
        add_column(OUTBOX, "last_error", "varchar(500) DEFAULT NULL"),
        create_index(OUTBOX, "idx_envios_message_id", "message_id"),
        create_index(OUTBOX, "idx_envios_estado_claimed", "estado, claimed_at"),
        create_index(OUTBOX, "idx_envios_estado_msgid", "estado, message_id, campania_id"),
        create_index(OUTBOX, "idx_envios_claim_prog", "claim_programacion_id, estado, claimed_at"),
        create_table(HISTORY, _HISTORY_MYSQL, _HISTORY_SQLITE),
        # A history table that predates envios may lack some of our columns.
        add_column(HISTORY, "campania_id", "int(11) NOT NULL DEFAULT 0", "INTEGER NOT NULL DEFAULT 0"),
        add_column(HISTORY, "origen", "varchar(32) NOT NULL DEFAULT ''"),
        add_column(HISTORY, "detalle", "varchar(500) DEFAULT NULL"),
        extend_enum(HISTORY, "estado_anterior", ESTADO_VALUES, "DEFAULT NULL"),
        extend_enum(HISTORY, "estado_nuevo", ESTADO_VALUES, "NOT NULL"),
        create_index(HISTORY, "idx_historial_envio", "envio_id"),
        create_index(HISTORY, "idx_historial_creado", "creado_en"),
        create_index(HISTORY, "idx_historial_camp_creado", "campania_id, creado_en, estado_nuevo"),
        add_column(SCHEDULES, "paused_reason", "varchar(64) DEFAULT NULL"),
        add_column(SCHEDULES, "paused_at", "datetime DEFAULT NULL", "DATETIME DEFAULT NULL"),
        add_column(SCHEDULES, "paused_by", "varchar(120) DEFAULT NULL"),
        add_column(SCHEDULES, "delay_min_s", "int(11) DEFAULT NULL", "INTEGER DEFAULT NULL"),
        add_column(SCHEDULES, "delay_max_s", "int(11) DEFAULT NULL", "INTEGER DEFAULT NULL"),
        add_column(CAMPAIGNS, "resumed_at", "datetime DEFAULT NULL", "DATETIME DEFAULT NULL"),
        create_table("envios_session_leases", _LEASES_MYSQL, _LEASES_SQLITE),
        create_table("envios_audit", _AUDIT_MYSQL, _AUDIT_SQLITE),
        create_index("envios_audit", "idx_audit_campania", "campania_id, creado_en"),
    ]


def _watcher_indexes() -> list[Step]:
    """Covering index for the watcher's missing-message-id read (monitor/queries.py).

    With only (estado, message_id, campania_id), telling the rows envios sent
    (claimed_at set) from the legacy ones (claimed_at NULL) costs one row lookup
    per legacy send: 15 s per refresh on 1M rows with 350k legacy sends.
    """
    return [
        create_index(OUTBOX, "idx_envios_estado_msgid_claimed", "estado, message_id, campania_id, claimed_at"),
    ]


@dataclass
class Version:
    number: int
    name: str
    steps: Callable[[], list[Step]] = field(repr=False)


VERSIONS: list[Version] = [
    Version(1, "base tables", _base_tables),
    Version(2, "claims, message ids, history, leases, pauses", _claims_and_history),
    Version(3, "watcher: covering index for sends without message id", _watcher_indexes),
]

LATEST = VERSIONS[-1].number

_VERSION_DDL = {
    MYSQL: f"""CREATE TABLE {VERSION_TABLE} (
  version int NOT NULL,
  name varchar(200) NOT NULL,
  applied_at datetime NOT NULL,
  PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    SQLITE: f"""CREATE TABLE {VERSION_TABLE} (
  version INTEGER PRIMARY KEY,
  name VARCHAR(200) NOT NULL,
  applied_at DATETIME NOT NULL
)""",
}


def applied_versions(conn: Connection) -> set[int]:
    if not table_exists(conn, VERSION_TABLE):
        return set()
    return {int(r["version"]) for r in conn.query(f"SELECT version FROM {VERSION_TABLE}")}  # noqa: S608


@dataclass
class Plan:
    """What an upgrade does: the versions it records and (version, step, statements)."""

    pending_versions: list[Version]
    statements: list[tuple[Version, str, list[str]]]

    @property
    def empty(self) -> bool:
        return not self.pending_versions


def _walk(conn: Connection, execute: bool, log: Callable[[str], None], now=None) -> Plan:
    done = applied_versions(conn)
    pending = [v for v in VERSIONS if v.number not in done]
    steps = {v.number: v.steps() for v in pending}
    view = SchemaView(conn, sorted({s.table for v in pending for s in steps[v.number]}))
    result = Plan(pending, [])
    for version in pending:
        for step in steps[version.number]:
            if not step.needed(view):
                continue
            statements = step.sql(conn.dialect)
            if execute:
                log(f"v{version.number}: {step.description}")
                for statement in statements:
                    conn.execute(statement)
            step.apply(view, conn.dialect)
            result.statements.append((version, step.description, statements))
        if execute:
            conn.execute(
                f"INSERT INTO {VERSION_TABLE} (version, name, applied_at) VALUES (%s, %s, %s)",  # noqa: S608
                (version.number, version.name, now),
            )
    return result


def plan(conn: Connection) -> Plan:
    """What `upgrade` would do now, without changing anything."""
    return _walk(conn, execute=False, log=lambda _m: None)


def upgrade(conn: Connection, now, log: Callable[[str], None] = lambda _m: None) -> Plan:
    """Apply every pending version, recording each; returns what was carried out.

    Steps are checked against the live schema first, so a run interrupted half-way
    (MySQL DDL commits as it goes) resumes where it stopped.
    """
    if not table_exists(conn, VERSION_TABLE):
        conn.execute(_VERSION_DDL[conn.dialect])
    return _walk(conn, execute=True, log=log, now=now)


def dry_run_sql(p: Plan) -> str:
    """The statements of a plan as a reviewable SQL script."""
    if p.empty:
        return "-- schema is up to date; nothing to do\n"
    lines = []
    for version, description, statements in p.statements:
        lines.append(f"-- v{version.number} ({version.name}): {description}")
        lines.extend(f"{s};" for s in statements)
    for version in p.pending_versions:
        lines.append(f"-- record version {version.number}: {version.name}")
    return "\n".join(lines) + "\n"
