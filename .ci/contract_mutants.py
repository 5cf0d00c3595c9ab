#!/usr/bin/env python3
"""The hand-made mutants of issue 14, kept: each one-line change to the product must make its
tests fail.

mutmut (.ci/mutation.py) mutates code inside functions only; the promises that live in
module-level tables and SQL text (the allowed transitions, the stuck rule, the retry
time) are pinned here instead. Each entry applies one change to a scratch copy of the
repository, runs the named tests there on SQLite (and on MariaDB when
ENVIOS_TEST_MYSQL_URL is set; entries that need it are skipped, and listed, otherwise)
and expects at least one failure. A change whose text is no longer in the file is an
error too: the product moved, update the entry.

    .venv/bin/python .ci/contract_mutants.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutation import in_scratch, scratch_copy  # noqa: E402


@dataclass(frozen=True)
class Mutant:
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    needs_mysql: bool = False


MUTANTS = [
    Mutant(
        "states: allow pendiente -> enviado (the incident's edge)",
        "envios/domain.py",
        "        (Estado.PENDIENTE, Estado.ENVIANDO),  # claim\n",
        (
            "        (Estado.PENDIENTE, Estado.ENVIANDO),  # claim\n"
            "        (Estado.PENDIENTE, Estado.ENVIADO),\n"
        ),
        ("tests/envios/store/test_transitions.py",),
    ),
    Mutant(
        "domain stuck predicate: `<` -> `<=`",
        "envios/domain.py",
        "(claimed_at is None or claimed_at < cutoff)",
        "(claimed_at is None or claimed_at <= cutoff)",
        ("tests/envios/test_domain.py",),
    ),
    Mutant(
        "watcher stuck rule: drop `OR claimed_at IS NULL`",
        "envios/store/watching.py",
        '(claimed_at < %(claimed_before)s OR claimed_at IS NULL)"\n    " GROUP BY',
        '(claimed_at < %(claimed_before)s)"\n    " GROUP BY',
        ("tests/monitor/test_stuck_rule.py",),
    ),
    Mutant(
        "watcher stuck rule: `<` -> `<=`",
        "envios/store/watching.py",
        '(claimed_at < %(claimed_before)s OR claimed_at IS NULL)"\n    " GROUP BY',
        '(claimed_at <= %(claimed_before)s OR claimed_at IS NULL)"\n    " GROUP BY',
        ("tests/monitor/test_stuck_rule.py",),
    ),
    Mutant(
        "campaign command stuck count: `<` -> `<=`",
        "envios/store/operating.py",
        '(claimed_at < %(claimed_before)s OR claimed_at IS NULL)"\n    " AND campania_id',
        '(claimed_at <= %(claimed_before)s OR claimed_at IS NULL)"\n    " AND campania_id',
        ("tests/monitor/test_stuck_rule.py",),
    ),
    Mutant(
        "reconcile list stuck rows: drop `claimed_at IS NULL`",
        "envios/store/sending.py",
        "(e.claimed_at IS NULL OR e.claimed_at < %(claimed_before)s)",
        "(e.claimed_at < %(claimed_before)s)",
        ("tests/monitor/test_stuck_rule.py",),
    ),
    Mutant(
        "active schedules: the last day bounded by today, not the window's opening day",
        "envios/store/sending.py",
        "p.fecha_fin >= %(earliest_opening)s)",
        "p.fecha_fin >= %(latest_opening)s)",
        ("tests/sender/test_schedule_window.py",),
    ),
    Mutant(
        "auto-pause stuck threshold: `>` -> `>=`",
        "monitor/autopause.py",
        "c.stuck > settings.max_stuck",
        "c.stuck >= settings.max_stuck",
        ("tests/monitor/test_autopause.py",),
    ),
    Mutant(
        "outbox retry time: `<=` -> `<`",
        "envios/store/sending.py",
        "OR next_attempt_at <= %(now)s)",
        "OR next_attempt_at < %(now)s)",
        ("tests/sender/test_loop.py",),
    ),
    Mutant(
        "db: MySQL statement time limit made a no-op",
        "envios/store/connector.py",
        "        # MariaDB: max_statement_time (seconds); MySQL: max_execution_time (ms).\n",
        "        yield\n        return\n",
        ("tests/envios/store/test_connector.py",),
        needs_mysql=True,
    ),
]


def pytest(copy: Path, mutant: Mutant, env: dict[str, str]) -> int:
    marker = "mysql" if mutant.needs_mysql else "not mysql"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-m",
            f"{marker} and not slow",
            *mutant.tests,
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    ).returncode


def run_one(copy: Path, mutant: Mutant, env: dict[str, str]) -> str:
    """'killed', 'SURVIVED', 'STALE' (the text to change is not in the file) or
    'FAILS UNMUTATED'."""
    target = copy / in_scratch(mutant.path)
    original = target.read_text(encoding="utf-8")
    if original.count(mutant.old) != 1:
        return "STALE"
    if pytest(copy, mutant, env) != 0:  # the control: the same tests pass on the product as it is
        return "FAILS UNMUTATED"
    target.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
    try:
        code = pytest(copy, mutant, env)
    finally:
        target.write_text(original, encoding="utf-8")
    return "killed" if code == 1 else f"SURVIVED (pytest exit {code})"


def main() -> int:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = ""
    have_mysql = bool(env.get("ENVIOS_TEST_MYSQL_URL"))
    where = Path(tempfile.mkdtemp(prefix="envios-contract-mutants-"))
    bad = 0
    try:
        copy = scratch_copy(where)
        env["PYTHONPATH"] = str(copy)
        for mutant in MUTANTS:
            if mutant.needs_mysql and not have_mysql:
                print(f"not run (needs ENVIOS_TEST_MYSQL_URL)  {mutant.what}")
                continue
            verdict = run_one(copy, mutant, env)
            bad += verdict != "killed"
            print(f"{verdict:32} {mutant.what}  [{' '.join(mutant.tests)}]")
    finally:
        shutil.rmtree(where, ignore_errors=True)
    if bad:
        print(
            f"{bad} contract mutant(s) not killed"
            " (STALE: the product changed there; update .ci/contract_mutants.py)",
            file=sys.stderr,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
