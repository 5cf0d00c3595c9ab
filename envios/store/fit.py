"""Free text made to fit the column it is written to, so that writing it never fails.

The legacy tables are latin1 (columns the upgrade adds to them inherit it);
MariaDB in strict mode refuses the whole UPDATE when a gateway's error text
carries an emoji ("Incorrect string value") or is longer than the column, and
the row it was meant for stays `enviando`. So every piece of gateway or
operator text (last_error, history detalle) goes through `fit`:

    fit("fallo 😀 ñ", Column("latin1", 500))   -> "fallo ? ñ"      (what latin1 can hold stays)
    fit("x" * 900, Column("latin1", 500))      -> 497 x's + "..."

`fit` is pure; `column_of` reads the column's charset and length from the
database once per process (information_schema on MySQL, the declared type on
SQLite, which enforces neither).

Only free text is fitted. Identifiers (message_id, claimed_by) are never
altered: a message id that does not fit is a gateway fault (Outcome.BAD_MESSAGE_ID).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from envios.store import schema_view
from envios.store.schema import HISTORY, OUTBOX

REPLACEMENT = "?"  # what MySQL itself writes for a character a column cannot hold
CUT_MARK = "..."

# MySQL charset -> which characters it holds. MariaDB's latin1 is Windows-1252.
_CODEC = {
    "latin1": "cp1252",
    "ascii": "ascii",
    "cp1250": "cp1250",
    "cp1251": "cp1251",
    "greek": "iso8859-7",
    "hebrew": "iso8859-8",
    "latin2": "iso8859-2",
    "koi8r": "koi8-r",
}
_BMP_ONLY = {"utf8", "utf8mb3", "ucs2"}
_ANYTHING = {"utf8mb4", "utf16", "utf16le", "utf32", "binary", None}
_SURROGATE = re.compile("[\ud800-\udfff]")  # never encodable: the driver itself would fail
_OUTSIDE_BMP = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Column:
    charset: str | None = None  # None: no charset to respect (SQLite)
    max_chars: int | None = None
    max_bytes: int | None = None  # TEXT columns: 65,535 bytes whatever the characters


def fit(text: str | None, column: Column) -> str | None:
    """`text` with the characters `column` cannot hold replaced and its length cut to the column."""
    if text is None:
        return None
    text = _SURROGATE.sub(REPLACEMENT, str(text))
    text = _replace_unholdable(text, column.charset)
    if column.max_chars is not None and len(text) > column.max_chars:
        text = _cut(text, column.max_chars)
    if column.max_bytes is not None:
        text = _cut_bytes(text, column.max_bytes, _byte_codec(column.charset))
    return text


def _cut_bytes(text: str, max_bytes: int, encoding: str) -> str:
    if len(text.encode(encoding, "replace")) <= max_bytes:
        return text
    budget, kept = max_bytes - len(CUT_MARK), []
    for ch in text:
        budget -= len(ch.encode(encoding, "replace"))
        if budget < 0:
            break
        kept.append(ch)
    return "".join(kept) + CUT_MARK if max_bytes >= len(CUT_MARK) else ""


def _replace_unholdable(text: str, charset: str | None) -> str:
    name = (charset or "").lower() or None
    if name in _ANYTHING:
        return text
    if name in _BMP_ONLY:
        return _OUTSIDE_BMP.sub(REPLACEMENT, text)
    codec = _CODEC.get(name, "ascii")  # an unknown charset: keep only what every one holds
    try:
        text.encode(codec)
        return text
    except UnicodeEncodeError:
        return "".join(ch if _holds(ch, codec) else REPLACEMENT for ch in text)


def _holds(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec)
        return True
    except UnicodeEncodeError:
        return False


def _byte_codec(charset: str | None) -> str:
    name = (charset or "").lower()
    return _CODEC.get(name, "utf-8") if name not in _ANYTHING | _BMP_ONLY else "utf-8"


def _cut(text: str, limit: int) -> str:
    if limit <= len(CUT_MARK):
        return text[:limit]
    return text[: limit - len(CUT_MARK)] + CUT_MARK


# -- the columns of a live database ------------------------------------------------------------

_DECLARED_LENGTH = re.compile(r"\((\d+)\)")
_cache: dict[tuple[Hashable, str, str], Column] = {}
_lock = threading.Lock()


def column_of(conn, table: str, column: str) -> Column:
    """The charset and length of `table.column` (cached per database; unknown: no limits)."""
    key = (getattr(conn, "url", id(conn)), table, column)
    with _lock:
        found = _cache.get(key)
    if found is not None:
        return found
    found = _read_column(conn, table, column)
    if found is not None:
        with _lock:
            _cache[key] = found
    return found or Column()


def _read_column(conn, table: str, column: str) -> Column | None:
    if conn.dialect == "mysql":
        row = conn.query_one(schema_view.MYSQL_COLUMN_TEXT, {"table": table, "column": column})
        if row is None:
            return None
        is_text = str(row["data_type"]).lower().endswith("text")
        return Column(
            row["charset"], _int(row["max_chars"]), _int(row["max_bytes"]) if is_text else None
        )
    declared = schema_view.column_details(conn, table).get(column)
    if declared is None:
        return None
    length = _DECLARED_LENGTH.search(declared.type)
    return Column(None, int(length.group(1)) if length else None)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def fit_to(conn, table: str, column: str, text: str | None) -> str | None:
    """`fit` for a column of the connected database."""
    return fit(text, column_of(conn, table, column))


# -- where the sender writes free text ---------------------------------------------------------

_FREE_TEXT = ("last_error",)


def transition_texts(conn, detail: str, columns: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A transition's history detail and free-text columns, fitted to their columns."""
    return history_detail(conn, detail), outbox_texts(conn, columns)


def outbox_texts(conn, columns: Mapping[str, Any]) -> dict[str, Any]:
    """The free-text columns among a transition's `columns`, fitted to the outbox's columns."""
    fitted = dict(columns)
    for name in _FREE_TEXT:
        if isinstance(fitted.get(name), str):
            fitted[name] = fit_to(conn, OUTBOX, name, fitted[name])
    return fitted


def history_detail(conn, detail: str | None) -> str:
    """A history row's `detalle`, fitted to the column ('' for none)."""
    return fit_to(conn, HISTORY, "detalle", detail or "") or ""
