"""The suite's own rules (tests/conftest.py): under CI=true a skip is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SKIPPING = """
import pytest

def test_skips_itself():
    pytest.skip("no tool here")

@pytest.fixture
def tool():
    pytest.skip("fixture cannot find the tool")

def test_skipped_by_a_fixture(tool):
    pass

@pytest.mark.skipif(True, reason="marker")
def test_skipped_by_a_marker():
    pass
"""


def run_with_the_suite_rules(tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.conftest",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_skipping.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_kind_of_skip_fails_under_ci(tmp_path):
    result = run_with_the_suite_rules(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "1 failed, 2 errors" in result.stdout, result.stdout
    assert result.stdout.count("skipped under CI=true, which counts as a failure") >= 3
    assert "no tool here" in result.stdout and "marker" in result.stdout


def test_outside_ci_a_skip_stays_a_skip(tmp_path):
    result = run_with_the_suite_rules(tmp_path, "")
    assert result.returncode == 0, result.stdout
    assert "3 skipped" in result.stdout, result.stdout
