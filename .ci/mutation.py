#!/usr/bin/env python3
"""Mutation testing with mutmut (configured in pyproject.toml, [tool.mutmut]); prints the score.

    .venv/bin/python .ci/mutation.py              full run: the promise-holding modules
    (docs/MUTATION.md)
    .venv/bin/python .ci/mutation.py --ci         the fast subset CI runs:
    envios/store/transitions.py against
                                                  tests/envios/store/test_transitions.py; fails
                                                  under --min-score

It works in a scratch copy of the tracked files (mutmut writes mutants/ and its
stats beside pyproject.toml), on SQLite only (the MariaDB halves are deselected:
a mutant run must not depend on a server), without CI=true (a skip there is a
failure). The score is killed / (all mutants - skipped): a mutant that no test
reaches ("no tests") counts as survived.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
NOT_COUNTED = {"skipped", "not checked"}  # "not checked": outside the names asked for

# --ci: the subset (one module, its own test file; about a minute on 2 cores).
CI_ONLY_MUTATE = ["envios/store/transitions.py"]
CI_TESTS = ["tests/envios/store/test_transitions.py"]
# measured 78/81 = 0.963 (the 3 survivors, equivalent mutants, are explained in docs/MUTATION.md)
CI_MIN_SCORE = 0.96


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in out.decode().split("\0") if name]


# pyproject.toml maps these folders into the `envios` namespace (package-dir). A scratch copy
# is not installed, so it is assembled the way a wheel installs it: sender/ as envios/sender/...
# Otherwise `envios.sender` would resolve, through the editable install, to the unmutated tree.
MAPPED = {"sender": "envios/sender", "monitor": "envios/monitor", "simulator": "envios/simulator"}


def in_scratch(name: str) -> str:
    """Where a tracked file lands in the scratch copy."""
    top, sep, rest = name.partition("/")
    return f"{MAPPED[top]}/{rest}" if sep and top in MAPPED else name


def scratch_copy(where: Path) -> Path:
    copy = where / "repo"
    for name in tracked_files():
        src, dst = ROOT / name, copy / in_scratch(name)
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return copy


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def narrow_to_ci_subset(pyproject: Path) -> None:
    text = pyproject.read_text(encoding="utf-8")
    text, n1 = re.subn(
        r"(?m)^only_mutate = \[[^\]]*\]", f"only_mutate = {toml_list(CI_ONLY_MUTATE)}", text
    )
    text, n2 = re.subn(
        r"(?m)^pytest_add_cli_args_test_selection = \[[^\]]*\]",
        f"pytest_add_cli_args_test_selection = {toml_list(CI_TESTS)}",
        text,
    )
    if (n1, n2) != (1, 1):
        sys.exit(
            "mutation: pyproject.toml [tool.mutmut] lacks only_mutate"
            " or pytest_add_cli_args_test_selection"
        )
    pyproject.write_text(text, encoding="utf-8")


def results(copy: Path, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status.strip()
    return found


def report(statuses: dict[str, str]) -> float:
    by_module: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, status in statuses.items():
        module = name.split(".x")[0].split(".xǁ")[0]
        by_module[module][status] += 1
    total = collections.Counter()
    print(f"{'module':40} {'killed':>7} {'counted':>8} {'score':>7}  survivors")
    for module in sorted(by_module):
        c = by_module[module]
        total.update(c)
        killed = sum(c[s] for s in KILLED)
        counted = sum(c.values()) - sum(c[s] for s in NOT_COUNTED)
        print(
            f"{module:40} {killed:7} {counted:8} {killed / counted if counted else 1:7.3f}  "
            f"{sum(c.values()) - killed - sum(c[s] for s in NOT_COUNTED)}"
        )
    killed = sum(total[s] for s in KILLED)
    counted = sum(total.values()) - sum(total[s] for s in NOT_COUNTED)
    score = killed / counted if counted else 1.0
    print(f"{'TOTAL':40} {killed:7} {counted:8} {score:7.3f}")
    survivors = sorted(n for n, s in statuses.items() if s not in KILLED | NOT_COUNTED)
    if survivors:
        print("\nnot killed (see docs/MUTATION.md):")
        for name in survivors:
            print(f"  {name}: {statuses[name]}")
    return score


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ci", action="store_true", help="the fast subset, failing under --min-score"
    )
    parser.add_argument(
        "--min-score", type=float, default=None, help=f"fail below this (--ci: {CI_MIN_SCORE})"
    )
    parser.add_argument(
        "--max-children", type=int, default=2, help="parallel mutant runs (default 2)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch copy (to `mutmut show` a mutant)"
    )
    parser.add_argument(
        "mutants",
        nargs="*",
        help="only these mutant names (globs), e.g. 'envios.store.transitions.*'",
    )
    args = parser.parse_args()
    min_score = args.min_score if args.min_score is not None else (CI_MIN_SCORE if args.ci else 0.0)

    env = {k: v for k, v in os.environ.items() if k not in ("CI", "ENVIOS_TEST_MYSQL_URL")}
    where = Path(tempfile.mkdtemp(prefix="envios-mutation-"))
    try:
        copy = scratch_copy(where)
        if args.ci:
            narrow_to_ci_subset(copy / "pyproject.toml")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "mutmut",
                "run",
                "--max-children",
                str(args.max_children),
                *args.mutants,
            ],
            cwd=copy,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if run.returncode != 0:
            print(run.stderr[-4000:], file=sys.stderr)
            print(
                "mutation: mutmut run failed (the unmutated tests must pass first)", file=sys.stderr
            )
            return 1
        score = report(results(copy, env))
    finally:
        if args.keep:
            print(
                f"\nscratch copy kept: {where / 'repo'}"
                f" (cd there; {sys.executable} -m mutmut show NAME)"
            )
        else:
            shutil.rmtree(where, ignore_errors=True)
    if score < min_score:
        print(f"mutation score {score:.3f} is below {min_score:.3f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
