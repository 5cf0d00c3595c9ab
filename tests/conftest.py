"""Shared fixtures: every database test runs once on SQLite and once on MariaDB.

MariaDB comes from ENVIOS_TEST_MYSQL_URL (e.g. mysql://root@127.0.0.1:3306/envios_test);
each test gets a throwaway database of its own, dropped afterwards. Without the
variable the MariaDB half is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from envios.clock import FixedClock
from envios.errors import DatabaseError
from envios.store import schema
from envios.store.connector import Database, split_statements

MYSQL_ENV = "ENVIOS_TEST_MYSQL_URL"
TZ = "America/Argentina/Buenos_Aires"
IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers a test starts)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mysql_base_url() -> str:
    url = os.environ.get(MYSQL_ENV)
    if not url:
        if IN_CI:
            pytest.fail(f"{MYSQL_ENV} is not set: the MariaDB half of the suite must run in CI")
        pytest.skip(f"{MYSQL_ENV} not set")
    return url


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


@pytest.fixture
def mysql_server_url():
    """A URL whose database part is ignored: for creating throwaway databases."""
    return _mysql_base_url()


def make_mysql_database(base_url: str) -> str:
    import pymysql

    name = f"envios_t_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(base_url)
    try:
        raw = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            connect_timeout=5,
        )
    except pymysql.err.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"MariaDB at {parts.hostname}:{parts.port} unreachable in CI: {exc}")
        pytest.skip(f"MariaDB unreachable: {exc}")
    with raw.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    raw.close()
    return _with_database(base_url, name)


def drop_mysql_database(url: str) -> None:
    import pymysql

    parts = urlsplit(url)
    raw = pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
    )
    with raw.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {parts.path.lstrip('/')}")
    raw.close()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request, tmp_path):
    """An empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'envios.db'}"
        return
    url = make_mysql_database(_mysql_base_url())
    yield url
    drop_mysql_database(url)


@pytest.fixture
def database(db_url):
    return Database(db_url)


@pytest.fixture
def conn(database):
    connection = database.connect()
    yield connection
    connection.close()


@pytest.fixture
def clock():
    return FixedClock(TZ, dt.datetime(2026, 2, 9, 10, 0, 0))  # a Monday, inside 08:00-20:00


@pytest.fixture
def upgraded(conn, clock):
    """A connection to an empty database upgraded to the latest schema."""
    schema.upgrade(conn, clock.now())
    return conn


ROOT = Path(__file__).resolve().parents[1]
# The original system's facts, beside the repository (never a copy that can drift).
LEGACY_DIR = ROOT.parent / "shared" / "legacy"
SCHEMAS = {"2026-02": "schema_2026-02.sql", "2026-02-27": "schema_2026-02-27.sql"}


def legacy_file(name: str) -> Path:
    """A file of ../shared/legacy: skipped without it, except under CI=true, where it fails."""
    path = LEGACY_DIR / name
    if not path.exists():
        if IN_CI:
            pytest.fail(
                f"{path} is missing: the real legacy schemas must be beside the repository in CI"
            )
        pytest.skip(f"{path} not found")
    return path


def _sqlite_table(statement: str) -> list[str]:
    """One MariaDB CREATE TABLE of the legacy dump as SQLite: same tables, columns, keys and rows.

    ENUMs become VARCHAR (the state machine checks the values), AUTO_INCREMENT
    becomes INTEGER PRIMARY KEY AUTOINCREMENT, KEYs become CREATE INDEX, and
    charsets, COMMENTs and ON UPDATE clauses (SQLite has none) are dropped.
    """
    table = re.match(r"\s*CREATE TABLE (\w+)", statement).group(1)
    body = statement[statement.index("(") + 1 : statement.rindex(")")]
    defs, extra = [], []
    for part in re.split(r",\s*\n", body):
        d = " ".join(part.split())
        key = re.match(r"(UNIQUE )?KEY (\w+) \((.*)\)$", d)
        if key:
            extra.append(
                f"CREATE {key.group(1) or ''}INDEX {key.group(2)} ON {table} ({key.group(3)})"
            )
            continue
        if not d or d.startswith("PRIMARY KEY"):
            continue
        d = d.replace("int(11) NOT NULL AUTO_INCREMENT", "INTEGER PRIMARY KEY AUTOINCREMENT")
        d = re.sub(r" CHARACTER SET \w+ COLLATE \w+", "", d)
        d = re.sub(r" COMMENT '(?:[^']|'')*'", "", d)
        d = re.sub(r"enum\([^)]*\)", "VARCHAR(16)", d)
        d = d.replace(" ON UPDATE current_timestamp()", "").replace(
            "current_timestamp()", "CURRENT_TIMESTAMP"
        )
        defs.append(d.replace("int(11)", "INTEGER"))
    return [f"CREATE TABLE {table} ({', '.join(defs)})", *extra]


def legacy_script(conn, schema_name: str = "2026-02") -> list[str]:
    """The statements of a real legacy schema file for this backend.

    MariaDB gets the file as it is. SQLite never ran the legacy system: it gets
    the same file with each CREATE TABLE translated (`_sqlite_table`) and every
    INSERT/UPDATE of its rows unchanged.
    """
    statements = split_statements(legacy_file(SCHEMAS[schema_name]).read_text(encoding="utf-8"))
    if conn.dialect != "sqlite":
        return statements
    out = []
    for statement in statements:
        out.extend(
            _sqlite_table(statement)
            if statement.lstrip().startswith("CREATE TABLE")
            else [statement]
        )
    return out


def load_legacy(conn, schema_name: str = "2026-02") -> None:
    """Load a real production schema and its rows (../shared/legacy) into an empty database."""
    for statement in legacy_script(conn, schema_name):
        conn.execute(statement)


@pytest.fixture
def sim():
    """The gateway simulator on a free loopback port."""
    from envios.simulator.server import SimulatorServer

    server = SimulatorServer(host="127.0.0.1", port=0, seed=1)
    server.start()
    yield server
    server.stop()


__all__ = ["DatabaseError", "load_legacy", "make_mysql_database", "drop_mysql_database"]


def pytest_collection_modifyitems(config, items):
    """Tests marked `mysql_only` (KILL, SLEEP...) are not generated for SQLite at all.

    Only the SQLite half of such a test is dropped: its MariaDB half must be among
    the collected items (under CI=true a dropped test without one is an error).
    """
    keep, drop = [], []
    for item in items:
        on_sqlite = (
            getattr(item, "callspec", None) and item.callspec.params.get("db_url") == "sqlite"
        )
        (drop if on_sqlite and item.get_closest_marker("mysql_only") else keep).append(item)
    if drop:
        kept = {item.nodeid for item in keep}
        orphans = [i.nodeid for i in drop if i.nodeid.replace("[sqlite", "[mysql", 1) not in kept]
        if orphans and IN_CI:
            raise pytest.UsageError(f"mysql_only tests with no MariaDB half collected: {orphans}")
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# A skip is how a test says "I could not check this here". In CI everything must be
# checkable (.ci/run installs and starts all of it), so under CI=true every skip, from
# any test, fixture or helper, is reported as a failure. Nothing is exempt.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"
