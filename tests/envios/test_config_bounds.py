"""Config values that are not finite, out of range, or not even readable.

They always give one ConfigError line.

Issue 12: `delay_min_s=nan` switched pacing off, a NaN timeout or lease crashed the worker,
`max_error_ratio: .nan` loaded, `stuck_after_s: 1e400` crashed `envios status`, a
malformed MySQL URL or a file in another encoding gave a traceback.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envios import config
from envios.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NUMBER_KEYS = sorted(config._NUMBER_RULES)


def load_yaml(tmp_path, text: str | bytes):
    path = tmp_path / "c.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return config.load(str(path), environ={})


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e400", "-1e400"])
@pytest.mark.parametrize(
    "dotted",
    [
        "sender.delay_min_s",
        "gateway.send_timeout_s",
        "sender.lease_ttl_s",
        "monitor.autopause.max_error_ratio",
        "monitor.stuck_after_s",
        "gateway.max_retry_after_s",
    ],
)
def test_non_finite_numbers_are_refused_from_the_environment(dotted, value):
    with pytest.raises(ConfigError) as info:
        config.load(str(ROOT / "config.yaml"), environ={config.env_var_name(dotted): value})
    assert str(info.value).startswith(f"config key {dotted}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "yaml_text,dotted",
    [
        ("sender:\n  delay_min_s: .nan\n", "sender.delay_min_s"),
        (
            "monitor:\n  autopause:\n    max_error_ratio: .nan\n",
            "monitor.autopause.max_error_ratio",
        ),
        ("monitor:\n  stuck_after_s: 1e400\n", "monitor.stuck_after_s"),
        ("gateway:\n  send_timeout_s: .inf\n", "gateway.send_timeout_s"),
        ("sender:\n  lease_ttl_s: .nan\n", "sender.lease_ttl_s"),
        ("sender:\n  max_attempts: .inf\n", "sender.max_attempts"),
    ],
)
def test_non_finite_numbers_are_refused_from_the_file(tmp_path, yaml_text, dotted):
    with pytest.raises(ConfigError, match=f"config key {dotted}: "):
        load_yaml(tmp_path, yaml_text)


@pytest.mark.parametrize(
    "dotted,value",
    [
        ("monitor.stuck_after_s", "1e300"),  # finite, but overflows a timedelta
        ("monitor.window_s", "1e20"),
        ("sender.retry_after_s", "1e12"),
        ("gateway.send_timeout_s", "86400000"),
        ("sender.max_attempts", "99999999999999999999"),
        ("monitor.autopause.min_finished", "-1"),
        ("gateway.max_retry_after_s", "-5"),
    ],
)
def test_numbers_out_of_range_are_refused(dotted, value):
    with pytest.raises(ConfigError, match=f"config key {dotted}: must be"):
        config.load(str(ROOT / "config.yaml"), environ={config.env_var_name(dotted): value})


def test_a_file_that_is_not_utf8_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path, b"\xff\xfes\x00e\x00n\x00d\x00e\x00r\x00:\x00\n\x00")
    assert "not UTF-8" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "url", ["mysql://u:pw@[::1/db", "mysql://u:s3cret@[zz]/db", "mysql://u:pw@h:99999/db"]
)
def test_a_malformed_database_url_is_refused_without_its_password(url):
    with pytest.raises(ConfigError) as info:
        config.load(str(ROOT / "config.yaml"), environ={"ENVIOS_DATABASE_URL": url})
    text = str(info.value)
    assert text.startswith("config key database.url: ")
    assert "pw" not in text and "s3cret" not in text


@pytest.mark.parametrize("zone", ["America", "Mars/Olympus", "../etc", "a\x00b"])
def test_a_time_zone_that_is_not_one_is_one_line(zone):
    with pytest.raises(ConfigError, match="config key timezone: unknown time zone"):
        config.load(str(ROOT / "config.yaml"), environ={"ENVIOS_TIMEZONE": zone})


def test_the_shipped_defaults_lie_inside_their_bounds():
    for dotted, (_kind, low, high) in config._NUMBER_RULES.items():
        assert low <= config._get_path(config.DEFAULTS, dotted) <= high, dotted


# -- fuzzing
# ----------------------------------------------------------------------------------------

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "nan",
            "inf",
            "-inf",
            "1e400",
            "0x10",
            "1_000",
            " 5 ",
            "",
            "${NOPE}",
            "∞",
            "٣",
            "America",
            "America/",
            "UTC",
            "mysql://u:pw@[::1/db",
            "sqlite:///",
            "http://x",
        ]
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
ANY_KEY = st.sampled_from(config._leaf_paths(config.DEFAULTS))


def check_valid(raw: dict) -> None:
    """What every config that loads must satisfy."""
    for dotted, (kind, low, high) in config._NUMBER_RULES.items():
        value = config._get_path(raw, dotted)
        assert type(value) is kind, dotted
        assert math.isfinite(value) and low <= value <= high, dotted
    assert raw["sender"]["delay_min_s"] <= raw["sender"]["delay_max_s"]
    for dotted in config._BOOL_KEYS:
        assert isinstance(config._get_path(raw, dotted), bool)


def outcome_of(load) -> None:
    try:
        cfg = load()
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    check_valid(cfg.raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(ANY_KEY, ANY_VALUE, min_size=1, max_size=4))
def test_fuzzed_values_load_as_a_valid_config_or_one_config_error(changes):
    def load():
        raw = copy.deepcopy(config.DEFAULTS)
        for dotted, value in changes.items():
            config._set_path(raw, dotted, value)
        return config.Config(config.validate(raw))

    outcome_of(load)


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(ANY_KEY, st.text(max_size=40), min_size=1, max_size=4))
def test_fuzzed_environment_loads_as_a_valid_config_or_one_config_error(changes):
    environ = {config.env_var_name(dotted): value for dotted, value in changes.items()}
    outcome_of(lambda: config.load(str(ROOT / "config.yaml"), environ=environ))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.one_of(st.binary(max_size=60), st.text(max_size=80).map(str.encode)))
def test_fuzzed_config_files_load_or_fail_as_one_line(tmp_path, content):
    outcome_of(lambda: load_yaml(tmp_path, content))
