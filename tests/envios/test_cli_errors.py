"""Issue 12: inputs that gave a traceback now give one line and a non-zero exit (config: 2)."""

from __future__ import annotations

import socket

import pytest

from tests.envios.test_cli import envios, one_line_error


@pytest.mark.parametrize("command", [("status",), ("send", "--once"), ("watch", "--once")])
@pytest.mark.parametrize(
    "name,value",
    [
        ("ENVIOS_MONITOR_STUCK_AFTER_S", "1e400"),
        ("ENVIOS_SENDER_DELAY_MIN_S", "nan"),
        ("ENVIOS_GATEWAY_SEND_TIMEOUT_S", "nan"),
        ("ENVIOS_DATABASE_URL", "mysql://u:pw@[::1/db"),
    ],
)
def test_bad_values_exit_2_with_one_line(tmp_path, command, name, value):
    env = {"ENVIOS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", name: value}
    result = envios(*command, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    line = one_line_error(result)
    assert "config key" in line and ":pw@" not in line


def test_a_config_file_in_utf16_exits_2_with_one_line(tmp_path):
    # starts \xff\xfe
    (tmp_path / "config.yaml").write_bytes("sender:\n  enabled: true\n".encode("utf-16"))
    result = envios("status", cwd=tmp_path)
    assert result.returncode == 2
    assert "not UTF-8" in one_line_error(result)


def test_watch_on_a_port_in_use_is_one_line(tmp_path):
    env = {"ENVIOS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    assert envios("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = envios("watch", "--port", str(port), cwd=tmp_path, env=env, timeout=30)
    assert result.returncode != 0
    lines = [
        ln
        for ln in result.stderr.splitlines()
        if "Traceback" in ln or ln.startswith("envios watch:")
    ]
    assert lines == [
        f"envios watch: config key monitor.port: cannot listen on 127.0.0.1:{port} "
        "(Address already in use)"
    ], result.stderr
