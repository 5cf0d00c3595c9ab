"""The console script as an operator meets it: help text and one-line errors."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.sender.conftest import envios as run_envios

ROOT = Path(__file__).resolve().parents[2]


def envios(*args, cwd, env=None, timeout=60):
    """`python -m envios` with none of this shell's ENVIOS_* settings, plus `env`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ENVIOS_")}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return run_envios(*args, env=full_env, cwd=cwd, timeout=timeout)


def test_top_level_help_lists_every_subcommand(tmp_path):
    result = envios("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in (
        "db",
        "send",
        "watch",
        "demo",
        "gateway-sim",
        "campaign",
        "reconcile",
        "status",
    ):
        assert command in result.stdout
    assert "ENVIOS_" in result.stdout


def test_db_upgrade_help_describes_every_option(tmp_path):
    result = envios("db", "upgrade", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--dry-run", "--config", "--log-level"):
        assert option in result.stdout
    assert "legacy" in result.stdout and "twice" in result.stdout


def test_db_upgrade_on_sqlite_then_no_op(tmp_path):
    env = {"ENVIOS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    dry = envios("db", "upgrade", "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0 and "CREATE TABLE ll_envios_whatsapp" in dry.stdout
    first = envios("db", "upgrade", cwd=tmp_path, env=env)
    assert first.returncode == 0 and "applied v1, v2" in first.stdout
    second = envios("db", "upgrade", cwd=tmp_path, env=env)
    assert second.returncode == 0 and "up to date" in second.stdout


def one_line_error(result):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_missing_config_file_is_one_line(tmp_path):
    line = one_line_error(envios("db", "upgrade", "--config", "nope.yaml", cwd=tmp_path))
    assert "config file not found: nope.yaml" in line


def test_bad_config_value_exits_2(tmp_path):
    (tmp_path / "config.yaml").write_text("sender:\n  delay_min_s: soon\n")
    result = envios("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 2
    assert "sender.delay_min_s" in one_line_error(result)


def test_wrong_database_url_is_one_line(tmp_path):
    line = one_line_error(
        envios("db", "upgrade", cwd=tmp_path, env={"ENVIOS_DATABASE_URL": "postgres://x/y"})
    )
    assert "database.url" in line


def test_unreachable_database_is_one_line(tmp_path):
    line = one_line_error(
        envios(
            "db",
            "upgrade",
            cwd=tmp_path,
            env={"ENVIOS_DATABASE_URL": "mysql://root@127.0.0.1:1/leadmaster"},
        )
    )
    assert "cannot" in line and "127.0.0.1:1" in line


@pytest.mark.mysql
def test_wrong_password_is_one_line_without_the_password(tmp_path, mysql_server_url):
    parts = urlsplit(mysql_server_url)
    url = f"mysql://root:Wrong-Pass-9@{parts.hostname}:{parts.port or 3306}/mysql"
    line = one_line_error(envios("db", "upgrade", cwd=tmp_path, env={"ENVIOS_DATABASE_URL": url}))
    assert "access denied" in line
    assert "Wrong-Pass-9" not in line


def test_config_is_accepted_after_a_nested_action(tmp_path):
    for args in (("campaign", "list"), ("reconcile", "list"), ("db", "upgrade")):
        line = one_line_error(envios(*args, "--config", "nope.yaml", cwd=tmp_path))
        assert "config file not found: nope.yaml" in line, args
