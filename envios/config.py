"""Configuration: defaults, ./config.yaml, ${VAR} expansion, ENVIOS_* overrides, validation.

Every key of DESIGN.md section 8 exists here with its default. The loaded value is
a plain nested dict wrapped in `Config` for attribute access (`cfg.sender.delay_min_s`).
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from envios.domain import GATEWAY_KINDS
from envios.errors import ConfigError
from envios.store.connector import DatabaseUrl

DEFAULT_PATH = "config.yaml"

DEFAULTS: dict[str, Any] = {
    "database": {"url": "sqlite:///envios.db"},
    "timezone": "America/Argentina/Buenos_Aires",
    "gateway": {
        "kind": "session_manager",
        "base_url": "http://127.0.0.1:3002",
        "api_key": "",
        "send_timeout_s": 60.0,
        "status_timeout_s": 5.0,
        "sessions": "auto",
        "max_retry_after_s": 3600.0,
        "session": "default",
        "phone_number_id": "",
        "api_version": "v21.0",
        "template": "",
        "template_language": "es_AR",
    },
    "webhooks": {
        "host": "127.0.0.1",
        "port": 9110,
        "secret": "",
        "app_secret": "",
        "verify_token": "",
    },
    "sender": {
        "enabled": True,
        "tick_s": 60.0,
        "delay_min_s": 30.0,
        "delay_max_s": 90.0,
        "lease_ttl_s": 300.0,
        "max_attempts": 5,
        "retry_after_s": 300.0,
        "metrics_port": 9107,
        "journal_dir": "",
        "settle_within_s": 3600.0,
        "db_pool_size": 4,
        "gateway_pool_size": 64,
        "max_in_flight": 1,
        "rate_per_s": 0.0,
    },
    "monitor": {
        "port": 9108,
        "refresh_s": 15.0,
        "stuck_after_s": 300.0,
        "window_s": 3600.0,
        "autopause": {
            "enabled": True,
            "max_error_ratio": 0.10,
            "min_finished": 20,
            "max_stuck": 5,
            "max_missing_message_id": 5,
            "count_unverifiable": False,
        },
    },
}

# auto: one lane when GET /status names one session for every client (DESIGN.md section 9)
GATEWAY_SESSIONS = ("auto", "per_cliente", "single")

# key path -> (type, minimum, maximum). Every number is bounded on both sides: a
# duration beyond these is a typo, and would overflow date arithmetic downstream.
_DAY, _YEAR = 86_400.0, 31_536_000.0
_NUMBER_RULES: dict[str, tuple[type, float, float]] = {
    "gateway.send_timeout_s": (float, 0.001, 3600.0),
    "gateway.status_timeout_s": (float, 0.001, 3600.0),
    "gateway.max_retry_after_s": (float, 0.0, 7 * _DAY),
    "sender.tick_s": (float, 0.01, _DAY),
    "sender.delay_min_s": (float, 0.0, _DAY),
    "sender.delay_max_s": (float, 0.0, _DAY),
    "sender.lease_ttl_s": (float, 1.0, _DAY),
    "sender.max_attempts": (int, 1, 1000),
    "sender.retry_after_s": (float, 0.0, 7 * _DAY),
    "sender.metrics_port": (int, 0, 65535),
    "sender.settle_within_s": (float, 0.0, 30 * _DAY),
    "sender.db_pool_size": (int, 1, 1000),
    "sender.gateway_pool_size": (int, 1, 10_000),
    "sender.max_in_flight": (int, 1, 1000),
    "sender.rate_per_s": (float, 0.0, 1_000_000.0),
    "webhooks.port": (int, 0, 65535),
    "monitor.port": (int, 0, 65535),
    "monitor.refresh_s": (float, 0.01, _DAY),
    "monitor.stuck_after_s": (float, 1.0, _YEAR),
    "monitor.window_s": (float, 1.0, _YEAR),
    "monitor.autopause.max_error_ratio": (float, 0.0, 1.0),
    "monitor.autopause.min_finished": (int, 1, 1_000_000_000),
    "monitor.autopause.max_stuck": (int, 1, 1_000_000_000),
    "monitor.autopause.max_missing_message_id": (int, 1, 1_000_000_000),
}
_BOOL_KEYS = ("sender.enabled", "monitor.autopause.enabled", "monitor.autopause.count_unverifiable")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Config:
    """Attribute access over a nested dict; `cfg.raw` is the dict itself."""

    def __init__(self, raw: dict[str, Any], source: str = "<defaults>"):
        self.raw = raw
        self.source = source

    def __getattr__(self, name: str) -> Any:
        try:
            value = self.raw[name]
        except KeyError:
            raise AttributeError(name) from None
        return Config(value, self.source) if isinstance(value, dict) else value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.raw["timezone"])

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A validated copy with dotted keys replaced (`{"sender.tick_s": 1}`)."""
        raw = copy.deepcopy(self.raw)
        for dotted, value in overrides.items():
            _set_path(raw, dotted, value)
        return Config(validate(raw), self.source)


def load(path: str | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load config from `path` (or ./config.yaml when present), then apply ENVIOS_* vars.

    An explicitly named file must exist; the default one may be absent.
    """
    env = os.environ if environ is None else environ
    raw = copy.deepcopy(DEFAULTS)
    explicit = path is not None
    file_path = Path(path if explicit else DEFAULT_PATH)
    source = "<defaults>"
    if file_path.exists():
        raw = _merge(raw, _read_yaml(file_path), prefix="")
        source = str(file_path)
    elif explicit:
        raise ConfigError(f"config file not found: {file_path}")
    _apply_env_overrides(raw, env)
    raw = _expand_env_refs(raw, env)
    return Config(validate(raw), source)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where}: not valid YAML") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping of sections")
    return data


def _merge(base: dict, override: dict, prefix: str) -> dict:
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"config key {dotted}: unknown key")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted}: must be a mapping")
            _merge(base[key], value, prefix=f"{dotted}.")
        else:
            base[key] = value
    return base


def _leaf_paths(tree: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in tree.items():
        if isinstance(value, dict):
            paths.extend(_leaf_paths(value, f"{prefix}{key}."))
        else:
            paths.append(f"{prefix}{key}")
    return paths


def env_var_name(dotted: str) -> str:
    return "ENVIOS_" + dotted.replace(".", "_").upper()


def _apply_env_overrides(raw: dict, env: dict[str, str]) -> None:
    for dotted in _leaf_paths(DEFAULTS):
        name = env_var_name(dotted)
        if name in env:
            _set_path(raw, dotted, env[name])


def _set_path(raw: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[leaf] = value


def _expand_env_refs(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env_refs(v, env) for k, v in value.items()}
    if isinstance(value, str):

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(
                    f"config refers to ${{{name}}} but that environment variable is not set"
                )
            return env[name]

        return _ENV_REF.sub(replace, value)
    return value


def _get_path(raw: dict, dotted: str) -> Any:
    node = raw
    for part in dotted.split("."):
        node = node[part]
    return node


def _coerce_number(dotted: str, value: Any, kind: type) -> float | int:
    if isinstance(value, bool):
        raise ConfigError(f"config key {dotted}: expected a number, got {value!r}")
    try:
        number = float(value) if kind is float else _to_int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"config key {dotted}: expected"
            f" {'a number' if kind is float else 'a whole number'}, got {value!r}"
        ) from None
    if not math.isfinite(number):  # nan passes every comparison: it would switch a check off
        raise ConfigError(f"config key {dotted}: must be a finite number, got {value!r}")
    return number


def _to_int(value: Any) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def coerce_bool(dotted: str, value: Any) -> bool:
    """A config value as a boolean (true/false, yes/no, 1/0, on/off); ConfigError names the key."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"config key {dotted}: expected true or false, got {value!r}")


def validate(raw: dict[str, Any]) -> dict[str, Any]:
    """Coerce types in place and check ranges; raise ConfigError naming the key."""
    for dotted, (kind, low, high) in _NUMBER_RULES.items():
        number = _coerce_number(dotted, _get_path(raw, dotted), kind)
        if number < low:
            raise ConfigError(f"config key {dotted}: must be >= {low}, got {number}")
        if number > high:
            raise ConfigError(f"config key {dotted}: must be <= {high}, got {number}")
        _set_path(raw, dotted, number)
    for dotted in _BOOL_KEYS:
        _set_path(raw, dotted, coerce_bool(dotted, _get_path(raw, dotted)))
    if raw["sender"]["delay_max_s"] < raw["sender"]["delay_min_s"]:
        raise ConfigError("config key sender.delay_max_s: must be >= sender.delay_min_s")
    for dotted in (
        "database.url",
        "timezone",
        "gateway.kind",
        "gateway.base_url",
        "gateway.api_key",
        "gateway.sessions",
        "sender.journal_dir",
        "gateway.session",
        "gateway.api_version",
        "gateway.template",
        "gateway.template_language",
        "webhooks.host",
        "webhooks.secret",
        "webhooks.app_secret",
        "webhooks.verify_token",
    ):
        if not isinstance(_get_path(raw, dotted), str):
            raise ConfigError(f"config key {dotted}: expected text")
    # YAML may read digits as a number
    raw["gateway"]["phone_number_id"] = str(raw["gateway"]["phone_number_id"])
    if raw["gateway"]["kind"] not in GATEWAY_KINDS:
        raise ConfigError(
            f"config key gateway.kind: must be one of {', '.join(GATEWAY_KINDS)},"
            f" got {raw['gateway']['kind']!r}"
        )
    if raw["gateway"]["sessions"] not in GATEWAY_SESSIONS:
        raise ConfigError(
            f"config key gateway.sessions: must be one of {', '.join(GATEWAY_SESSIONS)},"
            f" got {raw['gateway']['sessions']!r}"
        )
    if not re.match(r"^https?://", raw["gateway"]["base_url"]):
        raise ConfigError("config key gateway.base_url: must start with http:// or https://")
    DatabaseUrl.parse(raw["database"]["url"])  # a malformed URL fails here, as one line
    try:
        ZoneInfo(raw["timezone"])
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder of zones
        raise ConfigError(f"config key timezone: unknown time zone {raw['timezone']!r}") from None
    return raw
