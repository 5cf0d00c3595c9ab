"""Versioned, recorded, idempotent schema upgrades (`envios db upgrade`).

Each version is a list of steps; a step knows whether it is still needed (by
looking at the live schema), what would stop it (checked for EVERY step before
the first change: a refused upgrade changes nothing), what it found and leaves
alone, and its SQL per dialect. So a second run changes nothing, an upgrade
interrupted half-way (MySQL DDL does not roll back) resumes where it stopped,
and `--dry-run` prints exactly the statements a real run would execute.

Steps only add. The tables are the original application's (DESIGN.md section
10): no column, index or ENUM value that exists is dropped or renamed; an ENUM
gets `enviando` appended LAST with the rest of its definition (NOT NULL,
default, COMMENT, charset) read from information_schema and repeated; an index
that already covers the columns is reused instead of adding a twin. On MySQL
the upgrade runs in a strict `sql_mode` of its own, so nothing is ever
silently truncated, whatever the server's global mode.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources

from envios.domain import Estado
from envios.errors import DatabaseError, EnviosError
from envios.store.connector import MYSQL, SQLITE, Connection, split_statements
from envios.store.schema_view import (  # noqa: F401 - re-exported: the schema's readers use schema.*
    Column,
    SchemaView,
    TableShape,
    column_details,
    columns,
    index_details,
    indexes,
    shape_of_ddl,
    table_exists,
)

VERSION_TABLE = "envios_schema_version"
ENVIANDO = Estado.ENVIANDO.value  # the one ENUM value envios adds, appended last: an in-place ALTER
ENVIOS_STATES = tuple(e.value for e in Estado)
STRICT_SQL_MODE = "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"


class UpgradeRefused(EnviosError):
    """The preflight found something the upgrade cannot do: nothing was changed."""


def _nothing(_view: SchemaView) -> None:
    return None


# -- steps ------------------------------------------------------------------


@dataclass
class Step:
    description: str
    table: str
    needed: Callable[[SchemaView], bool]
    sql: Callable[[SchemaView], list[str]]
    apply: Callable[[SchemaView], None]  # record the effect in the view
    problem: Callable[[SchemaView], str | None] = _nothing  # why it cannot run (preflight)
    note: Callable[[SchemaView], str | None] = _nothing  # what it found and leaves alone


def create_table(name: str, mysql: list[str] | str, sqlite: list[str] | str) -> Step:
    ddl = {
        MYSQL: [mysql] if isinstance(mysql, str) else mysql,
        SQLITE: [sqlite] if isinstance(sqlite, str) else sqlite,
    }

    def apply(view: SchemaView) -> None:
        view.tables[name] = shape_of_ddl(ddl[view.dialect])

    return Step(
        f"create table {name}",
        name,
        lambda v: not v.has_table(name),
        lambda v: ddl[v.dialect],
        apply,
    )


_FAMILIES = [
    {"varchar", "char", "text", "tinytext", "mediumtext", "longtext"},
    {"int", "integer", "bigint", "smallint", "mediumint", "tinyint"},
    {"datetime", "timestamp"},
]


def _same_family(a: str, b: str) -> bool:
    return a == b or any(a in f and b in f for f in _FAMILIES)


def add_column(table: str, column: str, mysql_type: str, sqlite_type: str | None = None) -> Step:
    types = {MYSQL: mysql_type, SQLITE: sqlite_type or mysql_type}

    def apply(view: SchemaView) -> None:
        declared = types[view.dialect]
        view.tables[table].columns[column] = Column(
            declared.split()[0].lower(), "NOT NULL" not in declared
        )

    def problem(view: SchemaView) -> str | None:
        if not view.has_table(table):
            return f"table {table} does not exist"
        found = view.column(table, column)
        wanted = re.split(r"[\s(]", types[view.dialect].lower(), maxsplit=1)[0]
        if found is not None and not _same_family(found.base_type, wanted):
            return (
                f"{table}.{column} exists as {found.type};"
                f" envios needs {types[view.dialect].split()[0].lower()}"
            )
        return None

    return Step(
        f"add column {table}.{column}",
        table,
        lambda v: v.has_table(table) and v.column(table, column) is None,
        lambda v: [f"ALTER TABLE {table} ADD COLUMN {column} {types[v.dialect]}"],
        apply,
        problem,
    )


def require_columns(table: str, names: tuple[str, ...], why: str) -> Step:
    """No change: the preflight refuses when an existing table lacks columns envios cannot do
    without."""

    def problem(view: SchemaView) -> str | None:
        if not view.has_table(table):
            return None
        missing = [c for c in names if view.column(table, c) is None]
        return f"{table} has no column {', '.join(missing)} ({why})" if missing else None

    return Step(f"check {table}", table, lambda v: False, lambda v: [], _nothing, problem)


def notice(table: str, column: str, text: str) -> Step:
    """No change: where the column exists, the dry run says envios found it and leaves it alone."""

    def note(view: SchemaView) -> str | None:
        return f"{table}.{column} {text}" if view.column(table, column) is not None else None

    return Step(
        f"notice {table}.{column}", table, lambda v: False, lambda v: [], _nothing, note=note
    )


def create_index(table: str, name: str, cols: str) -> Step:
    wanted = tuple(c.strip() for c in cols.split(","))

    def covering(view: SchemaView) -> str | None:
        shape = view.tables.get(table)
        return shape.index_covering(wanted) if shape else None

    def problem(view: SchemaView) -> str | None:
        shape = view.tables.get(table)
        if shape and name in shape.indexes and not covering(view):
            return (
                f"index {table}.{name} exists on ({', '.join(shape.indexes[name])}),"
                f" not on ({cols}) as envios needs"
            )
        return None

    def note(view: SchemaView) -> str | None:
        other = covering(view)
        if other and other != name:
            return f"{table}: index {other} already covers ({cols}): reused, {name} not added"
        return None

    return Step(
        f"create index {name} on {table} ({cols})",
        table,
        lambda v: v.has_table(table) and covering(v) is None,
        lambda v: [f"CREATE INDEX {name} ON {table} ({cols})"],
        lambda v: v.tables[table].indexes.__setitem__(name, wanted),
        problem,
        note,
    )


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _default_clause(col: Column) -> str:
    if col.default is None:
        return " DEFAULT NULL" if col.nullable else ""
    if col.default == "NULL" or col.default.startswith("'") or "(" in col.default:
        return f" DEFAULT {col.default}"  # MariaDB: a quoted literal, NULL or an expression
    return f" DEFAULT {_sql_string(col.default)}"  # MySQL: the bare literal


def column_definition(col: Column, new_type: str) -> str:
    """The full MODIFY definition of `col` with only its type changed (nothing else dropped)."""
    parts = [new_type]
    if col.charset:
        parts.append(f"CHARACTER SET {col.charset}")
    if col.collation:
        parts.append(f"COLLATE {col.collation}")
    parts.append("NULL" if col.nullable else "NOT NULL")
    definition = " ".join(parts) + _default_clause(col)
    if col.comment:
        definition += f" COMMENT {_sql_string(col.comment)}"
    return definition


def append_enum_value(table: str, column: str, value: str = ENVIANDO) -> Step:
    """MySQL: append `value` LAST to an ENUM (in place), repeating the rest of the definition.

    SQLite has no ENUM (text columns take any state).
    """

    def needed(view: SchemaView) -> bool:
        col = view.column(table, column)
        return (
            view.dialect == MYSQL
            and col is not None
            and col.base_type == "enum"
            and value not in col.enum_values()
        )

    def problem(view: SchemaView) -> str | None:
        col = view.column(table, column)
        if view.dialect != MYSQL or not view.has_table(table):
            return None
        if col is None:
            return f"{table} has no column {column}"
        if col.base_type == "enum":
            return None
        size = re.search(r"\((\d+)\)", col.type)
        if col.base_type in ("varchar", "char") and size and int(size.group(1)) >= len(value):
            return None
        if col.base_type in ("text", "tinytext", "mediumtext", "longtext"):
            return None
        return f"{table}.{column} is {col.type}, which cannot hold '{value}'"

    def note(view: SchemaView) -> str | None:
        col = view.column(table, column)
        extra = [v for v in (col.enum_values() if col else []) if v not in ENVIOS_STATES]
        if extra:
            return (
                f"{table}.{column} keeps {', '.join(repr(v) for v in extra)}"
                " (the application's values; left as is)"
            )
        return None

    def new_type(col: Column) -> str:
        return col.type[:-1] + f",{_sql_string(value)})"

    def sql(view: SchemaView) -> list[str]:
        col = view.column(table, column)
        return [
            f"ALTER TABLE {table} MODIFY COLUMN {column} {column_definition(col, new_type(col))}"
        ]

    def apply(view: SchemaView) -> None:
        col = view.column(table, column)
        col.type = new_type(col)

    return Step(f"append '{value}' to {table}.{column}", table, needed, sql, apply, problem, note)


def make_nullable(table: str, column: str, mysql_type: str, why: str) -> Step:
    """MySQL: an envios-only column an earlier envios made NOT NULL becomes optional (never an
    app column)."""

    def needed(view: SchemaView) -> bool:
        col = view.column(table, column)
        return view.dialect == MYSQL and col is not None and not col.nullable

    def apply(view: SchemaView) -> None:
        view.column(table, column).nullable = True

    return Step(
        f"make {table}.{column} optional ({why})",
        table,
        needed,
        lambda v: [f"ALTER TABLE {table} MODIFY COLUMN {column} {mysql_type} DEFAULT NULL"],
        apply,
    )


def rename_own_column(table: str, old: str, new: str, why: str) -> Step:
    """A column only an earlier envios ever created gets the application's name
    (`creado_en` -> `created_at`)."""

    def needed(view: SchemaView) -> bool:
        return view.column(table, old) is not None and view.column(table, new) is None

    def apply(view: SchemaView) -> None:
        shape = view.tables[table]
        shape.columns[new] = shape.columns.pop(old)
        shape.indexes = {
            k: tuple(new if c == old else c for c in v) for k, v in shape.indexes.items()
        }

    return Step(
        f"rename envios's own {table}.{old} to {new} ({why})",
        table,
        needed,
        lambda v: [f"ALTER TABLE {table} RENAME COLUMN {old} TO {new}"],
        apply,
    )


def _base_tables() -> list[Step]:
    """The legacy tables, created where missing (an empty database)."""
    by_table: dict[str, dict[str, list[str]]] = {}
    for dialect in (MYSQL, SQLITE):
        script = (
            resources.files("envios.store.migrations")
            .joinpath(f"base_{dialect}.sql")
            .read_text("utf-8")
        )
        for statement in split_statements(script):
            match = re.search(r"CREATE TABLE (\w+)|CREATE INDEX \w+ ON (\w+)", statement)
            table = match.group(1) or match.group(2)
            by_table.setdefault(table, {MYSQL: [], SQLITE: []})[dialect].append(statement)
    return [create_table(table, ddl[MYSQL], ddl[SQLITE]) for table, ddl in by_table.items()]


# The application's history enum in its order ('no_incluido' is the application's own value).
_HISTORY_STATES = "enum({})".format(
    ",".join(
        f"'{v}'"
        for v in (
            "no_incluido",
            Estado.PENDIENTE.value,
            Estado.ENVIADO.value,
            Estado.ERROR.value,
            Estado.ENVIANDO.value,
        )
    )
)

# The application's history table (legacy/schema_2026-02.sql) plus envios's one optional column.
_HISTORY_MYSQL = f"""CREATE TABLE ll_envios_whatsapp_historial (
  id int(11) NOT NULL AUTO_INCREMENT,
  envio_id int(11) NOT NULL,
  estado_anterior {_HISTORY_STATES} NOT NULL,
  estado_nuevo {_HISTORY_STATES} NOT NULL,
  origen varchar(50) NOT NULL,
  detalle text DEFAULT NULL,
  created_at datetime NOT NULL DEFAULT current_timestamp(),
  campania_id int(11) DEFAULT NULL,
  PRIMARY KEY (id),
  KEY idx_envio_id (envio_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"""
_HISTORY_SQLITE = [
    """CREATE TABLE ll_envios_whatsapp_historial (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  envio_id INTEGER NOT NULL,
  estado_anterior VARCHAR(16) NOT NULL,
  estado_nuevo VARCHAR(16) NOT NULL,
  origen VARCHAR(50) NOT NULL,
  detalle TEXT DEFAULT NULL,
  created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  campania_id INTEGER DEFAULT NULL
)""",
    "CREATE INDEX idx_envio_id ON ll_envios_whatsapp_historial (envio_id)",
]

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


def _claims_and_pauses() -> list[Step]:
    return [
        require_columns(
            OUTBOX,
            (
                "id",
                "campania_id",
                "telefono_wapp",
                "nombre_destino",
                "mensaje_final",
                "estado",
                "fecha_envio",
            ),
            "the outbox the application fills",
        ),
        require_columns(
            SCHEDULES,
            (
                "id",
                "campania_id",
                "cliente_id",
                "dias_semana",
                "hora_inicio",
                "hora_fin",
                "cupo_diario",
                "fecha_inicio",
                "fecha_fin",
                "estado",
            ),
            "the schedules",
        ),
        notice(
            SCHEDULES,
            "locked_at",
            "(the original scheduler's lock): left as it is; envios never takes it"
            " and leaves a schedule locked less than sender.lease_ttl_s ago to that scheduler",
        ),
        append_enum_value(OUTBOX, "estado"),
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
        create_index(
            OUTBOX, "idx_envios_estado_msgid_claimed", "estado, message_id, campania_id, claimed_at"
        ),
    ]


def _application_history() -> list[Step]:
    """The history table is the application's (DESIGN.md section 10): envios writes its columns.

    Its time column is `created_at`; envios adds only an optional `campania_id`
    (for the watcher's error ratio). Earlier envios versions created the table
    themselves with `creado_en` and a NOT NULL `campania_id`: those own columns
    are renamed / made optional; the application's columns are never touched,
    except for `enviando` appended to its two ENUMs.
    """
    return [
        create_table(HISTORY, _HISTORY_MYSQL, _HISTORY_SQLITE),
        rename_own_column(
            HISTORY, "creado_en", "created_at", "an earlier envios created this table"
        ),
        require_columns(
            HISTORY,
            (
                "id",
                "envio_id",
                "estado_anterior",
                "estado_nuevo",
                "origen",
                "detalle",
                "created_at",
            ),
            "the application's history columns envios writes",
        ),
        append_enum_value(HISTORY, "estado_anterior"),
        append_enum_value(HISTORY, "estado_nuevo"),
        notice(
            HISTORY,
            "usuario_id",
            "(the application's, a foreign key to usuarios): left as it is;"
            " envios fills it only for a user named with --usuario-id",
        ),
        add_column(HISTORY, "campania_id", "int(11) DEFAULT NULL", "INTEGER DEFAULT NULL"),
        make_nullable(HISTORY, "campania_id", "int(11)", "added NOT NULL by an earlier envios"),
        create_index(HISTORY, "idx_envio_id", "envio_id"),
        create_index(
            HISTORY, "idx_historial_camp_created", "campania_id, created_at, estado_nuevo"
        ),
    ]


def _delivery_acknowledgements() -> list[Step]:
    """What the gateway said after the send (DESIGN.md section 11): all optional, written by
    `envios webhooks`.

    `delivery_status` is sent | delivered | read | failed and never moves backwards;
    `delivery_error` holds a failed delivery's reason. The indexes serve the watcher's
    per-campaign delivered / read / failed ratios and its count of unknowns settled
    automatically (origen envios-evidence) or by a person (envios-reconcile, manual).
    """
    return [
        add_column(OUTBOX, "delivery_status", "varchar(16) DEFAULT NULL"),
        add_column(OUTBOX, "delivered_at", "datetime DEFAULT NULL", "DATETIME DEFAULT NULL"),
        add_column(OUTBOX, "read_at", "datetime DEFAULT NULL", "DATETIME DEFAULT NULL"),
        add_column(OUTBOX, "delivery_error", "varchar(500) DEFAULT NULL"),
        create_index(OUTBOX, "idx_envios_delivery", "campania_id, estado, delivery_status"),
        create_index(HISTORY, "idx_historial_settled", "campania_id, estado_anterior, origen"),
        create_table("envios_unmatched_acks", _UNMATCHED_MYSQL, _UNMATCHED_SQLITE),
    ]


# Acknowledgements whose message id no row holds yet (a send whose answer was lost, settled
# later by a lookup): kept a short while, applied when a row gets that id (sender.delivery).
_UNMATCHED_MYSQL = [
    """CREATE TABLE envios_unmatched_acks (
  id bigint NOT NULL AUTO_INCREMENT,
  message_id varchar(255) NOT NULL,
  kind varchar(20) NOT NULL,
  status varchar(16) NOT NULL,
  error varchar(500) DEFAULT NULL,
  received_at datetime NOT NULL,
  PRIMARY KEY (id),
  KEY idx_unmatched_message_id (message_id),
  KEY idx_unmatched_received (received_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"""
]
_UNMATCHED_SQLITE = [
    """CREATE TABLE envios_unmatched_acks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id VARCHAR(255) NOT NULL,
  kind VARCHAR(20) NOT NULL,
  status VARCHAR(16) NOT NULL,
  error VARCHAR(500) DEFAULT NULL,
  received_at DATETIME NOT NULL
)""",
    "CREATE INDEX idx_unmatched_message_id ON envios_unmatched_acks (message_id)",
    "CREATE INDEX idx_unmatched_received ON envios_unmatched_acks (received_at)",
]


@dataclass
class Version:
    number: int
    name: str
    steps: Callable[[], list[Step]] = field(repr=False)


def _change_times() -> list[Step]:
    """`cambiado_en`, kept by the database on every change of an outbox row (any writer).

    The watcher's per-campaign counts read only the rows changed since its last
    refresh (monitor/counts.py) instead of recounting a million rows. The DDL lives
    in migrations/change_times_*.sql: MariaDB keeps the column itself (ON UPDATE),
    SQLite by two triggers.
    """
    folder = resources.files("envios.store.migrations")
    scripts = {
        dialect: split_statements(folder.joinpath(f"change_times_{dialect}.sql").read_text("utf-8"))
        for dialect in (MYSQL, SQLITE)
    }
    column = add_column(OUTBOX, "cambiado_en", "datetime(6) NOT NULL", "TEXT DEFAULT NULL")
    column.sql = lambda v: scripts[v.dialect]
    return [column, create_index(OUTBOX, "idx_envios_cambiado_en", "cambiado_en")]


VERSIONS: list[Version] = [
    Version(1, "base tables", _base_tables),
    Version(2, "claims, message ids, leases, pauses", _claims_and_pauses),
    Version(3, "watcher: covering index for sends without message id", _watcher_indexes),
    Version(4, "the application's history table", _application_history),
    Version(5, "delivery acknowledgements", _delivery_acknowledgements),
    Version(6, "outbox change times for the watcher's incremental counts", _change_times),
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


class Process(str, enum.Enum):
    SENDER = "sender"
    WATCHER = "watcher"
    WEBHOOKS = "webhooks"


# The versions each process needs before it starts. The sender and the webhooks write
# every column up to the latest. The watcher reads v2 (claims, pause columns), v4 (the
# application's history table), v5 (acknowledgements) and v6 (change times: its
# per-campaign counts); v3 is only an index (its missing-message-id read is slower
# without it, not wrong).
REQUIRED_VERSIONS: dict[Process, tuple[int, ...]] = {
    Process.SENDER: (LATEST,),
    Process.WEBHOOKS: (LATEST,),
    Process.WATCHER: (2, 4, 5, 6),
}


def missing_versions(process: Process, applied: set[int]) -> list[int]:
    """The versions `process` needs that are not in `applied` (empty: it may start)."""
    return [v for v in REQUIRED_VERSIONS[Process(process)] if v not in applied]


def ready_for(process: Process, conn: Connection) -> bool:
    return not missing_versions(process, applied_versions(conn))


@dataclass
class Plan:
    """What an upgrade does: the versions it records, (version, step, statements), what it
    leaves alone."""

    pending_versions: list[Version]
    statements: list[tuple[Version, str, list[str]]]
    found: list[str] = field(default_factory=list)
    create_version_table: bool = False
    problems: list[str] = field(default_factory=list)  # why the upgrade would refuse (nothing runs)

    def refusal(self) -> UpgradeRefused | None:
        if not self.problems:
            return None
        more = (
            f" (and {len(self.problems) - 1} more: see --dry-run)" if len(self.problems) > 1 else ""
        )
        return UpgradeRefused(f"upgrade refused, nothing changed: {self.problems[0]}{more}")

    @property
    def empty(self) -> bool:
        return not self.pending_versions


def plan(conn: Connection, refuse: bool = True) -> Plan:
    """What `upgrade` would do now, without changing anything; UpgradeRefused when it cannot.

    Every step of every pending version is checked against the schema as it
    will be at that point, before anything runs. With refuse=False the problems
    are returned in the plan instead (the dry run lists them all).
    """
    done = applied_versions(conn)
    pending = [v for v in VERSIONS if v.number not in done]
    steps = {v.number: v.steps() for v in pending}
    view = SchemaView(conn, sorted({s.table for v in pending for s in steps[v.number]}))
    result = Plan(pending, [], create_version_table=not table_exists(conn, VERSION_TABLE))
    problems = result.problems
    for version in pending:
        for step in steps[version.number]:
            trouble = step.problem(view)
            if trouble:
                problems.append(trouble)
                continue
            found = step.note(view)
            if found and found not in result.found:
                result.found.append(found)
            if step.needed(view):
                result.statements.append((version, step.description, step.sql(view)))
                step.apply(view)
    refusal = result.refusal()
    if refusal is not None and refuse:
        raise refusal
    return result


@contextlib.contextmanager
def strict_session(conn: Connection) -> Iterator[None]:
    """MySQL: this session refuses to truncate or coerce anything, whatever the server's
    global mode."""
    if conn.dialect != MYSQL:
        yield
        return
    before = conn.scalar("SELECT @@SESSION.sql_mode")
    conn.execute("SET SESSION sql_mode = %s", (STRICT_SQL_MODE,))
    try:
        yield
    finally:
        with contextlib.suppress(DatabaseError):
            conn.execute("SET SESSION sql_mode = %s", (before,))


def upgrade(conn: Connection, now, log: Callable[[str], None] = lambda _m: None) -> Plan:
    """Check every pending step, then apply them, recording each version; returns what was
    carried out.

    Steps are planned against the live schema, so a run interrupted half-way
    (MySQL DDL commits as it goes) resumes where it stopped.
    """
    with strict_session(conn):
        result = plan(conn)
        if result.create_version_table:
            conn.execute(_VERSION_DDL[conn.dialect])
        for version in result.pending_versions:
            for planned, description, statements in result.statements:
                if planned is not version:
                    continue
                log(f"v{version.number}: {description}")
                for statement in statements:
                    try:
                        conn.execute(statement)
                    except DatabaseError as exc:
                        raise DatabaseError(
                            f"upgrade stopped at v{version.number} ({description}): {exc};"
                            " the steps before it are applied; run it again once fixed"
                        ) from None
            conn.execute(
                f"INSERT INTO {VERSION_TABLE} (version, name, applied_at) VALUES (%s, %s, %s)",  # noqa: S608
                (version.number, version.name, now),
            )
    return result


def dry_run_sql(p: Plan) -> str:
    """The statements of a plan as a reviewable SQL script, then what it found and leaves alone."""
    lines = []
    if p.problems:
        lines.append("-- REFUSED: the upgrade would change nothing, because:")
        lines.extend(f"--   {problem}" for problem in p.problems)
    if p.empty:
        lines.append("-- schema is up to date; nothing to do")
    if p.create_version_table:
        lines.append(f"-- create table {VERSION_TABLE} (the versions applied, with their time)")
    for version, description, statements in p.statements:
        lines.append(f"-- v{version.number} ({version.name}): {description}")
        lines.extend(f"{s};" for s in statements)
    for version in p.pending_versions:
        lines.append(f"-- record version {version.number}: {version.name}")
    if p.found:
        lines.append("-- found, left as it is:")
        lines.extend(f"--   {line}" for line in p.found)
    return "\n".join(lines) + "\n"
