"""The one driver-aware module: connects to `mysql://` (pymysql) or `sqlite:///` URLs.

The store's statements (`envios.store.sql.Statement`, `%(name)s` parameters given as a
mapping) and the older `%s` strings with a sequence both go through `Connection.query`,
`Connection.execute` and `Connection.transaction`; this module picks a statement's
dialect text, turns the placeholders into the driver's style, converts date/time values both ways,
and
translates driver errors into `envios.errors` types whose messages never carry a
password.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql
import pymysql.converters
from pymysql.constants import FIELD_TYPE

from envios.errors import (
    ConfigError,
    DatabaseError,
    DatabaseNotAnswering,
    DatabaseUnavailable,
    QueryTimeout,
    TransactionConflict,
)
from envios.store.sql import Statement

# A statement's parameters: a mapping for `%(name)s` statements, a sequence for `%s` text.
Params = Mapping[str, Any] | Sequence[Any]
_NAMED = re.compile(r"%\((\w+)\)s|%%")


def _sqlite_placeholder(match: re.Match[str]) -> str:
    return f":{match.group(1)}" if match.group(1) else "%"


MYSQL = "mysql"
SQLITE = "sqlite"
# The URL schemes of a MariaDB/MySQL database: the one rule (config asks `DatabaseUrl.parse`).
MYSQL_SCHEMES = (MYSQL, "mariadb", "mysql+pymysql")

# MySQL/MariaDB error numbers we treat specially.
_ACCESS_DENIED = {1044, 1045, 1698}
_UNKNOWN_DATABASE = 1049
_CONNECTION_LOST = {2003, 2005, 2006, 2013, 2055, 1927}
_CONFLICT = {1205, 1213}
_STATEMENT_TIMEOUT = {1969, 3024}


@dataclass(frozen=True)
class DatabaseUrl:
    dialect: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = ""
    database: str = ""
    path: str = ""

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. an unclosed IPv6 bracket; the driver's text may hold the password
            raise ConfigError(
                "config key database.url: not a valid URL; a MySQL URL looks like "
                "mysql://user:pass@host:3306/dbname ([::1] for an IPv6 host)"
            ) from None
        if parts.scheme == SQLITE:
            # sqlite:///relative.db and sqlite:////absolute/path.db
            path = url[len("sqlite:///") :]
            if not url.startswith("sqlite:///") or not path:
                raise ConfigError(
                    "config key database.url: a SQLite URL looks like sqlite:///envios.db"
                )
            return cls(dialect=SQLITE, path=path)
        if parts.scheme in MYSQL_SCHEMES:
            database = parts.path.lstrip("/")
            if not parts.hostname or not database:
                raise ConfigError(
                    "config key database.url: a MySQL URL looks like mysql://user:pass@host:3306/dbname"
                )
            try:
                port = parts.port or 3306
            except ValueError:
                raise ConfigError(
                    "config key database.url: the port is not a number from 0 to 65535"
                ) from None
            return cls(
                dialect=MYSQL,
                host=parts.hostname,
                port=port,
                user=unquote(parts.username or "root"),
                password=unquote(parts.password or ""),
                database=database,
            )
        raise ConfigError(
            "config key database.url: must start with sqlite:/// or "
            + " or ".join(f"{scheme}://" for scheme in MYSQL_SCHEMES)
        )

    def describe(self) -> str:
        """Where we connect, for messages: never the password."""
        if self.dialect == SQLITE:
            return f"SQLite file {self.path}"
        return f"MySQL {self.user}@{self.host}:{self.port}/{self.database}"


def _adapt_sqlite_types() -> None:
    sqlite3.register_adapter(dt.datetime, lambda v: v.isoformat(" ", "seconds"))
    sqlite3.register_adapter(dt.date, lambda v: v.isoformat())
    sqlite3.register_adapter(dt.time, lambda v: v.isoformat("seconds"))
    sqlite3.register_converter("DATETIME", lambda b: dt.datetime.fromisoformat(b.decode()))
    sqlite3.register_converter("TIMESTAMP", lambda b: dt.datetime.fromisoformat(b.decode()))
    sqlite3.register_converter("DATE", lambda b: dt.date.fromisoformat(b.decode()))
    sqlite3.register_converter("TIME", lambda b: dt.time.fromisoformat(b.decode()))


_adapt_sqlite_types()


def _mysql_time(value: str | bytes) -> dt.time:
    text = value.decode() if isinstance(value, bytes) else value
    hours, minutes, seconds = text.split(":")
    return dt.time(int(hours) % 24, int(minutes), int(float(seconds)))


_MYSQL_CONVERSIONS = dict(pymysql.converters.conversions)
_MYSQL_CONVERSIONS[FIELD_TYPE.TIME] = _mysql_time  # TIME as time-of-day, like SQLite


def sender_timeouts(lease_ttl_s: float) -> tuple[int, float]:
    """(lock wait limit, socket read/write timeout) of the sender's database sessions.

    The longest a sender's statement may rightly block is a lock wait: a tenth of the
    lease, 1 to 10 s. The socket waits three times that, but at most half the lease
    (never under the lock wait plus a second), so a server frozen with our connection
    open is noticed as `DatabaseNotAnswering` long before a lease could expire under
    a send we believe in flight (defaults: lease 300 s -> 10 s and 30 s).
    """
    lock_wait_s = max(1, min(10, int(lease_ttl_s / 10)))
    return lock_wait_s, min(3.0 * lock_wait_s, max(lease_ttl_s / 2, lock_wait_s + 1.0))


class Database:
    """A URL plus the means to open connections to it (one per thread/process)."""

    def __init__(
        self,
        url: str,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 120.0,
        lock_wait_s: int | None = None,
    ):
        self.url = DatabaseUrl.parse(url)
        self.dialect = self.url.dialect
        self.connect_timeout_s = connect_timeout_s
        # A server that stops answering on an open connection must not block a
        # caller for ever: past this, the call fails as DatabaseUnavailable.
        self.read_timeout_s = read_timeout_s
        # MySQL/MariaDB: innodb_lock_wait_timeout of every session (server default 50 s).
        self.lock_wait_s = lock_wait_s

    @classmethod
    def for_sender(cls, url: str, lease_ttl_s: float) -> Database:
        """The sender's database: every wait bounded well under its lease (see sender_timeouts)."""
        lock_wait_s, read_timeout_s = sender_timeouts(lease_ttl_s)
        return cls(
            url,
            connect_timeout_s=min(10.0, read_timeout_s),
            read_timeout_s=read_timeout_s,
            lock_wait_s=lock_wait_s,
        )

    def connect(self) -> Connection:
        if self.dialect == SQLITE:
            return SqliteConnection(self.url, self.connect_timeout_s)
        return MysqlConnection(
            self.url, self.connect_timeout_s, self.read_timeout_s, self.lock_wait_s
        )

    def describe(self) -> str:
        return self.url.describe()


class Connection:
    """A single database connection. Not shared between threads."""

    dialect: str

    def query(self, sql: str | Statement, params: Params = ()) -> list[dict[str, Any]]:
        with self._translate_errors():
            cursor = self._run(sql, params)
            rows = cursor.fetchall()
            return [self._as_dict(cursor, row) for row in rows]

    def query_one(self, sql: str | Statement, params: Params = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str | Statement, params: Params = ()) -> Any:
        row = self.query_one(sql, params)
        return None if row is None else next(iter(row.values()))

    def execute(self, sql: str | Statement, params: Params = ()) -> int:
        """Run one statement; returns the affected row count."""
        with self._translate_errors():
            return self._run(sql, params).rowcount

    def execute_script(self, sql: str) -> None:
        for statement in split_statements(sql):
            self.execute(statement)

    def insert(self, sql: str | Statement, params: Params = ()) -> int:
        """Run one INSERT; returns the new row's id."""
        with self._translate_errors():
            return int(self._run(sql, params).lastrowid)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic unit: commits on success, rolls back on any exception."""
        if self._in_transaction:
            raise DatabaseError("nested transactions are not supported")
        with self._translate_errors():
            self._begin()
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._in_transaction = False
            with contextlib.suppress(Exception):
                self._rollback()
            raise
        self._in_transaction = False
        with self._translate_errors():
            self._commit()

    @contextlib.contextmanager
    def time_limit(self, seconds: float) -> Iterator[None]:
        """Statements inside are abandoned (QueryTimeout) when they run longer than `seconds`."""
        raise NotImplementedError

    def utc_offset(self, epoch: float) -> dt.timedelta | None:
        """The server's wall clock minus UTC at `epoch` (None: no server clock, see
        sender.clock)."""
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()

    @property
    def in_transaction(self) -> bool:
        """True inside `transaction()`: state transitions refuse to run outside one."""
        return self._in_transaction

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # driver-specific parts -------------------------------------------------
    _raw: Any
    _in_transaction = False

    def _run(self, sql: str | Statement, params: Params) -> Any:
        text = sql.text(self.dialect) if isinstance(sql, Statement) else sql
        return self._run_text(text, params)

    def _run_text(self, sql: str, params: Params) -> Any:
        raise NotImplementedError

    def _as_dict(self, cursor: Any, row: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        self._raw.commit()

    def _rollback(self) -> None:
        self._raw.rollback()

    def _translate_errors(self) -> contextlib.AbstractContextManager:
        raise NotImplementedError


class SqliteConnection(Connection):
    dialect = SQLITE

    def __init__(self, url: DatabaseUrl, timeout_s: float):
        self.url = url
        try:
            # isolation_level=None: we issue BEGIN ourselves, so reads outside a
            # transaction never hold a lock and writers take it up front.
            self._raw = sqlite3.connect(
                url.path,
                timeout=max(timeout_s, 30.0),
                isolation_level=None,
                detect_types=sqlite3.PARSE_DECLTYPES,
                check_same_thread=False,
            )
            self._raw.execute("PRAGMA journal_mode=WAL")  # sender and watcher share the file
            self._raw.execute("PRAGMA foreign_keys=ON")
            self._raw.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(f"cannot open {url.describe()}: {exc}") from None
        self._deadline: float | None = None

    def _run_text(self, sql: str, params: Params) -> Any:
        if isinstance(params, Mapping):  # `%(name)s` -> `:name`, `%%` -> `%` (pymysql's escaping)
            return self._raw.execute(_NAMED.sub(_sqlite_placeholder, sql), dict(params))
        return self._raw.execute(sql.replace("%s", "?"), tuple(params))

    def _as_dict(self, cursor: Any, row: Any) -> dict[str, Any]:
        return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}

    def _begin(self) -> None:
        # IMMEDIATE takes the write lock now: no deadlock on a later upgrade.
        self._raw.execute("BEGIN IMMEDIATE")

    @contextlib.contextmanager
    def time_limit(self, seconds: float) -> Iterator[None]:
        deadline = time.monotonic() + seconds
        self._raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
        try:
            yield
        finally:
            self._raw.set_progress_handler(None, 0)

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "interrupted" in text:
                raise QueryTimeout(
                    f"{self.url.describe()}: statement exceeded its time limit"
                ) from None
            if "locked" in text or "busy" in text:
                raise TransactionConflict(f"{self.url.describe()}: {text}") from None
            if "unable to open" in text:
                raise DatabaseUnavailable(f"cannot open {self.url.describe()}: {text}") from None
            raise DatabaseError(f"{self.url.describe()}: {text}") from exc
        except sqlite3.Error as exc:  # IntegrityError, ProgrammingError...
            raise DatabaseError(f"{self.url.describe()}: {exc}") from exc


class MysqlConnection(Connection):
    dialect = MYSQL

    def __init__(
        self,
        url: DatabaseUrl,
        timeout_s: float,
        read_timeout_s: float = 120.0,
        lock_wait_s: int | None = None,
    ):
        self.url = url
        self._timeout_s = timeout_s
        self._read_timeout_s = read_timeout_s
        self._lock_wait_s = lock_wait_s
        self._raw = self._open()

    def _open(self) -> Any:
        raw = self._connect()
        if self._lock_wait_s is not None:
            with self._translate_errors(), raw.cursor() as cur:
                cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (int(self._lock_wait_s),))
        return raw

    def _connect(self) -> Any:
        url = self.url
        with self._translate_errors():
            return pymysql.connect(
                host=url.host,
                port=url.port,
                user=url.user,
                password=url.password,
                database=url.database,
                charset="utf8mb4",  # legacy latin1 columns are converted by the server
                autocommit=True,
                connect_timeout=self._timeout_s,
                read_timeout=self._read_timeout_s,
                write_timeout=self._read_timeout_s,
                conv=_MYSQL_CONVERSIONS,
                # READ COMMITTED keeps claim scans from taking gap locks that would
                # serialise independent sessions.
                init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            )

    # The offset is asked again once the instant moved this far: a DST change is followed.
    OFFSET_REFRESH_S = 600.0
    _offset: tuple[float, dt.timedelta] | None = None

    def utc_offset(self, epoch: float) -> dt.timedelta:
        """How far this session's server clock is ahead of UTC at `epoch` (its time_zone, DST
        included).

        Asked as FROM_UNIXTIME(epoch) with Python's epoch: the instant is Python's,
        only the server's zone is learnt.
        """
        cached = self._offset
        if cached is not None and abs(epoch - cached[0]) < self.OFFSET_REFRESH_S:
            return cached[1]
        whole = int(epoch)
        server = self.scalar("SELECT FROM_UNIXTIME(%s)", (whole,))
        utc = dt.datetime.fromtimestamp(whole, dt.timezone.utc).replace(tzinfo=None)
        offset = dt.timedelta(minutes=round((server - utc).total_seconds() / 60))
        self._offset = (epoch, offset)
        return offset

    @property
    def thread_id(self) -> int:
        """The server's id for this connection (what KILL takes)."""
        return self._raw.thread_id()

    def _run_text(self, sql: str, params: Params) -> Any:
        cursor = self._raw.cursor()
        if isinstance(params, Mapping):
            cursor.execute(sql, dict(params))
        else:
            cursor.execute(sql, tuple(params) if params else None)
        return cursor

    def _as_dict(self, cursor: Any, row: Any) -> dict[str, Any]:
        return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}

    def _begin(self) -> None:
        # A connection killed by the server (wait_timeout, failover) is reopened
        # here, before the transaction starts, never in the middle of one.
        try:
            self._raw.ping(reconnect=False)
        except pymysql.err.Error:
            self.close()
            self._raw = self._open()
        self._raw.begin()

    @contextlib.contextmanager
    def time_limit(self, seconds: float) -> Iterator[None]:
        # MariaDB: max_statement_time (seconds); MySQL: max_execution_time (ms).
        try:
            self.execute("SET SESSION max_statement_time = %s", (float(seconds),))
            reset = ("SET SESSION max_statement_time = 0", ())
        except DatabaseUnavailable:
            raise  # not a MySQL without the variable: a server gone or frozen
        except DatabaseError:
            self.execute("SET SESSION max_execution_time = %s", (int(seconds * 1000),))
            reset = ("SET SESSION max_execution_time = 0", ())
        try:
            yield
        finally:
            with contextlib.suppress(DatabaseError):
                self.execute(*reset)

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except (
            pymysql.err.OperationalError,
            pymysql.err.InternalError,
            pymysql.err.InterfaceError,
        ) as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            where = self.url.describe()
            if code in _ACCESS_DENIED:
                raise DatabaseUnavailable(
                    f"cannot connect to {where}: access denied (check user and password)"
                ) from None
            if code == _UNKNOWN_DATABASE:
                raise DatabaseUnavailable(
                    f"cannot connect to {where}: database does not exist"
                ) from None
            if code in _STATEMENT_TIMEOUT:
                raise QueryTimeout(f"{where}: statement exceeded its time limit") from None
            if code in _CONFLICT:
                raise TransactionConflict(
                    f"{where}: {exc.args[1] if len(exc.args) > 1 else exc}"
                ) from None
            # the socket timeout: a frozen server
            if code in _CONNECTION_LOST and "timed out" in str(exc):
                raise DatabaseNotAnswering(
                    f"cannot reach {where}: the server did not answer in time"
                ) from None
            if code in _CONNECTION_LOST or isinstance(exc, pymysql.err.InterfaceError):
                raise DatabaseUnavailable(
                    f"cannot reach {where}: connection failed or lost"
                ) from None
            raise DatabaseError(f"{where}: {exc.args[1] if len(exc.args) > 1 else exc}") from None
        # ProgrammingError (no such table), DataError, IntegrityError...
        except pymysql.err.Error as exc:
            detail = exc.args[1] if len(exc.args) > 1 else exc
            raise DatabaseError(f"{self.url.describe()}: {detail}") from exc


def placeholders(count: int) -> str:
    """`%s, %s, ...` for an IN list of `count` parameters (the values stay parameters)."""
    return ", ".join(["%s"] * count)


def split_statements(script: str) -> list[str]:
    """Split a SQL script on `;` at line ends; comments-only chunks are dropped."""
    statements, current = [], []
    for line in script.splitlines():
        stripped = line.strip()
        if stripped.startswith("--") or not stripped:
            continue
        current.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current:
        statements.append("\n".join(current))
    return statements
