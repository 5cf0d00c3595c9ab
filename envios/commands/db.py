"""`envios db upgrade [--dry-run]`: create or upgrade the schema."""

from __future__ import annotations

import argparse
import sys

from envios.clock import Clock
from envios.commands.common import action_parsers
from envios.store import schema
from envios.store.connector import Database

HELP = "create or upgrade the database schema (versioned, idempotent, non-destructive)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    action = action_parsers(parser, "db_action")
    upgrade = action(
        "upgrade",
        help="apply pending schema versions",
        description=(
            "Apply pending schema versions to database.url. On the production schema it appends "
            "'enviando' to the estado ENUMs (keeping the rest of their definition), adds "
            "message_id, claim columns, schedule pause/lease columns, the audit table and the "
            "watcher's indexes (reusing an index that already covers the columns); on an empty "
            "database it creates everything. Every step is checked before the first change: a "
            "refused upgrade changes nothing. It never drops or renames a column, index or ENUM "
            "value, and runs in a strict sql_mode of its own. Running it twice changes nothing."
        ),
    )
    upgrade.add_argument(
        "--dry-run",
        action="store_true",
        help="print the SQL that would run and what it found and leaves alone; change nothing",
    )
    action("status", help="show applied and pending schema versions")


def run(args: argparse.Namespace, config) -> int:
    database = Database(config.database.url)
    with database.connect() as conn:
        if args.db_action == "status":
            done = schema.applied_versions(conn)
            for version in schema.VERSIONS:
                mark = "applied" if version.number in done else "pending"
                print(f"v{version.number} {mark:8} {version.name}")
            return 0
        if args.dry_run:
            planned = schema.plan(conn, refuse=False)
            sys.stdout.write(schema.dry_run_sql(planned))
            refusal = planned.refusal()
            if refusal is not None:
                raise refusal
            return 0
        result = schema.upgrade(conn, Clock(config.tz).db_now(conn), log=print)
    for line in result.found:
        print(f"found, left as it is: {line}")
    if result.empty:
        print(f"schema is up to date (v{schema.LATEST}) on {database.describe()}")
    else:
        names = ", ".join(f"v{v.number}" for v in result.pending_versions)
        print(f"upgraded {database.describe()}: applied {names}; {len(result.statements)} steps")
    return 0
