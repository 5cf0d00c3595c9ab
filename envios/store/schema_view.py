"""The live schema as the upgrade sees it: columns with their full definition, indexes with
their columns.

MySQL/MariaDB answers from information_schema (COLUMN_TYPE, IS_NULLABLE,
COLUMN_DEFAULT, COLUMN_COMMENT, charset and collation: everything a
`MODIFY COLUMN` must repeat so that nothing but the intended change happens);
SQLite from its PRAGMAs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from envios.store.connector import SQLITE, Connection
from envios.store.sql import Statement

# MariaDB/MySQL: the charset and limits of one text column (the sender fits what it writes
# to them, envios.sender.fit). SQLite declares a length only: `column_details`.
MYSQL_COLUMN_TEXT = Statement(
    "schema_view.mysql_column_text",
    "SELECT CHARACTER_SET_NAME AS charset, CHARACTER_MAXIMUM_LENGTH AS max_chars,"
    " CHARACTER_OCTET_LENGTH AS max_bytes, DATA_TYPE AS data_type FROM information_schema.COLUMNS"
    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %(table)s AND COLUMN_NAME = %(column)s",
)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _opt_text(value) -> str | None:
    return None if value is None else _text(value)


@dataclass
class Column:
    type: str  # as declared, lower case: "enum('pendiente','enviado')", "varchar(255)"
    nullable: bool = True
    default: str | None = None  # information_schema's COLUMN_DEFAULT text (None: no default)
    comment: str = ""
    charset: str | None = None
    collation: str | None = None

    @property
    def base_type(self) -> str:
        return re.split(r"[\s(]", self.type, maxsplit=1)[0]

    def enum_values(self) -> list[str]:
        if self.base_type != "enum":
            return []
        return [v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'", self.type)]


@dataclass
class TableShape:
    columns: dict[str, Column] = field(default_factory=dict)
    indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> columns in order

    def index_covering(self, cols: tuple[str, ...]) -> str | None:
        """An index whose leading columns are exactly `cols` (it serves every read `cols` would)."""
        for name, indexed in sorted(self.indexes.items()):
            if indexed[: len(cols)] == cols:
                return name
        return None


def table_exists(conn: Connection, table: str) -> bool:
    if conn.dialect == SQLITE:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = %s"
    else:
        sql = (
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = DATABASE() AND table_name = %s"
        )
    return conn.query_one(sql, (table,)) is not None


def column_details(conn: Connection, table: str) -> dict[str, Column]:
    if conn.dialect == SQLITE:
        # safe: PRAGMA takes no parameters; table names come from the upgrade's own list.
        rows = conn.query(f"PRAGMA table_info({table})")
        return {
            r["name"]: Column(
                _text(r["type"]).lower(),
                not r["notnull"] and not r["pk"],
                _opt_text(r["dflt_value"]),
            )
            for r in rows
        }
    rows = conn.query(
        "SELECT column_name AS name, column_type AS type, is_nullable AS nullable,"
        " column_default AS dflt, column_comment AS comment, character_set_name AS cs,"
        " collation_name AS coll FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return {
        _text(r["name"]): Column(
            _text(r["type"]).lower(),
            _text(r["nullable"]) == "YES",
            _opt_text(r["dflt"]),
            _text(r["comment"]),
            _opt_text(r["cs"]),
            _opt_text(r["coll"]),
        )
        for r in rows
    }


def index_details(conn: Connection, table: str) -> dict[str, tuple[str, ...]]:
    if conn.dialect == SQLITE:
        out = {}
        for r in conn.query(f"PRAGMA index_list({table})"):
            name = r["name"]
            cols = conn.query(f"PRAGMA index_info({name})")  # safe: names read from SQLite itself
            out[name] = tuple(c["name"] for c in sorted(cols, key=lambda c: c["seqno"]))
        return out
    rows = conn.query(
        "SELECT index_name AS name, column_name AS col FROM information_schema.statistics"
        " WHERE table_schema = DATABASE() AND table_name = %s ORDER BY index_name, seq_in_index",
        (table,),
    )
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(_text(r["name"]), []).append(_text(r["col"]))
    return {name: tuple(cols) for name, cols in out.items()}


def columns(conn: Connection, table: str) -> dict[str, str]:
    """Column name -> declared type (lower case)."""
    return {name: c.type for name, c in column_details(conn, table).items()}


def indexes(conn: Connection, table: str) -> set[str]:
    return set(index_details(conn, table))


class SchemaView:
    """The schema as it is, then as it will be after each planned step.

    Read once from the live database; every step checks the view and applies
    its effect to it, so a dry run lists exactly what a real run executes.
    """

    def __init__(self, conn: Connection, tables: list[str]):
        self.dialect = conn.dialect
        self.tables: dict[str, TableShape] = {
            t: TableShape(column_details(conn, t), index_details(conn, t))
            for t in tables
            if table_exists(conn, t)
        }

    def has_table(self, table: str) -> bool:
        return table in self.tables

    def column(self, table: str, column: str) -> Column | None:
        shape = self.tables.get(table)
        return shape.columns.get(column) if shape else None

    def column_type(self, table: str, column: str) -> str | None:
        col = self.column(table, column)
        return col.type if col else None

    def has_index(self, table: str, name: str) -> bool:
        shape = self.tables.get(table)
        return bool(shape) and name in shape.indexes


_NOT_COLUMNS = {"primary", "key", "unique", "constraint", "index", "foreign"}


def shape_of_ddl(statements: list[str]) -> TableShape:
    """Columns and indexes declared by CREATE TABLE / CREATE INDEX statements (the planned view)."""
    shape = TableShape()
    for statement in statements:
        index = re.match(r"\s*CREATE (?:UNIQUE )?INDEX (\w+) ON \w+ \(([^)]*)\)", statement)
        if index:
            shape.indexes[index.group(1)] = tuple(c.strip() for c in index.group(2).split(","))
            continue
        body = statement[statement.index("(") + 1 : statement.rindex(")")]
        for line in body.splitlines():
            words = line.strip().split()
            if len(words) < 2:
                continue
            key = re.match(r"(?:UNIQUE )?KEY (\w+) \(([^)]*)\)", line.strip())
            if key:
                shape.indexes[key.group(1)] = tuple(c.strip() for c in key.group(2).split(","))
            elif words[0].lower() not in _NOT_COLUMNS:
                upper = line.upper()
                shape.columns[words[0]] = Column(
                    words[1].rstrip(",").lower(),
                    "NOT NULL" not in upper and "PRIMARY KEY" not in upper,
                )
    return shape
