"""Config loading: defaults, file, ${VAR} expansion, ENVIOS_* overrides, one-line errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from envios import config
from envios.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_yaml_has_every_key_with_the_contract_defaults():
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert config._leaf_paths(shipped) == config._leaf_paths(config.DEFAULTS)
    loaded = config.load(str(ROOT / "config.yaml"), environ={})
    assert loaded.raw == config.validate(copy.deepcopy(config.DEFAULTS))


def test_defaults_apply_when_default_file_is_absent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config.load(None, environ={})
    assert cfg.source == "<defaults>"
    assert cfg.database.url == "sqlite:///envios.db"
    assert cfg.monitor.autopause.max_error_ratio == 0.10


def test_a_named_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(str(tmp_path / "nope.yaml"), environ={})


@pytest.mark.parametrize(
    "name,value,dotted,expected",
    [
        (
            "ENVIOS_DATABASE_URL",
            "mysql://u:p@127.0.0.1:3306/db",
            "database.url",
            "mysql://u:p@127.0.0.1:3306/db",
        ),
        ("ENVIOS_SENDER_DELAY_MIN_S", "2.5", "sender.delay_min_s", 2.5),
        ("ENVIOS_SENDER_ENABLED", "false", "sender.enabled", False),
        (
            "ENVIOS_MONITOR_AUTOPAUSE_MAX_ERROR_RATIO",
            "0.25",
            "monitor.autopause.max_error_ratio",
            0.25,
        ),
        ("ENVIOS_MONITOR_AUTOPAUSE_MIN_FINISHED", "7", "monitor.autopause.min_finished", 7),
        ("ENVIOS_TIMEZONE", "UTC", "timezone", "UTC"),
        ("ENVIOS_GATEWAY_SESSIONS", "single", "gateway.sessions", "single"),
        (
            "ENVIOS_MONITOR_AUTOPAUSE_COUNT_UNVERIFIABLE",
            "true",
            "monitor.autopause.count_unverifiable",
            True,
        ),
    ],
)
def test_env_overrides_any_key(tmp_path, name, value, dotted, expected):
    cfg = config.load(str(ROOT / "config.yaml"), environ={name: value})
    assert config._get_path(cfg.raw, dotted) == expected


def test_env_var_references_are_expanded(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("gateway:\n  api_key: ${WA_TOKEN}\n")
    assert config.load(str(path), environ={"WA_TOKEN": "tok"}).gateway.api_key == "tok"
    with pytest.raises(ConfigError, match=r"\$\{WA_TOKEN\}"):
        config.load(str(path), environ={})


@pytest.mark.parametrize(
    "yaml_text,message",
    [
        ("sender:\n  delay_min_s: soon\n", "sender.delay_min_s: expected a number"),
        ("sender:\n  max_attempts: 2.5\n", "sender.max_attempts: expected a whole number"),
        (
            "sender:\n  delay_min_s: 10\n  delay_max_s: 5\n",
            "sender.delay_max_s: must be >= sender.delay_min_s",
        ),
        ("monitor:\n  autopause:\n    max_error_ratio: 1.5\n", "max_error_ratio: must be <= 1.0"),
        ("sender:\n  enabled: maybe\n", "sender.enabled: expected true or false"),
        ("gateway:\n  kind: telegram\n", "gateway.kind: must be one of"),
        (
            "gateway:\n  sessions: shared\n",
            "gateway.sessions: must be one of auto, per_cliente, single",
        ),
        ("timezone: Mars/Olympus\n", "timezone: unknown time zone"),
        ("sender:\n  tik_s: 5\n", "sender.tik_s: unknown key"),
        ("database: sqlite\n", "database: must be a mapping"),
        ("sender: [1, 2\n", "not valid YAML"),
        ("database:\n  url: postgres://x\n", "database.url"),
    ],
)
def test_bad_values_name_the_key(tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        config.load(str(path), environ={})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_env_value_names_the_key():
    with pytest.raises(ConfigError, match="sender.metrics_port: must be <= 65535"):
        config.load(str(ROOT / "config.yaml"), environ={"ENVIOS_SENDER_METRICS_PORT": "70000"})
