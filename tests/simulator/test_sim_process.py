"""`python -m simulator` as a process, and the `envios gateway-sim` command hooks."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from envios.simulator import command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINE = re.compile(r"^gateway-sim listening on http://127\.0\.0\.1:(\d+)$")
NUMBER = "5491123456789"


def start(*flags):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    line = proc.stdout.readline().rstrip("\n")
    m = LINE.match(line)
    if not m:
        proc.kill()
        pytest.fail(f"unexpected first line {line!r}; stderr: {proc.stderr.read()}")
    return proc, f"http://127.0.0.1:{m.group(1)}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_subprocess_starts_answers_and_exits_0(sig):
    proc, url = start("--seed", "3", "--sessions", "52=DISCONNECTED")
    try:
        assert (
            requests.get(f"{url}/status", headers={"X-Cliente-Id": "51"}, timeout=5).json()["state"]
            == "READY"
        )
        assert (
            requests.get(f"{url}/status", headers={"X-Cliente-Id": "52"}, timeout=5).json()["state"]
            == "DISCONNECTED"
        )
        r = requests.post(
            f"{url}/send",
            json={"cliente_id": 51, "to": NUMBER, "message": "hola"},
            headers={"X-Cliente-Id": "51"},
            timeout=5,
        )
        assert r.status_code == 200 and r.json()["ok"] is True
        assert requests.get(f"{url}/_sim/stats", timeout=5).json()["seed"] == 3
    finally:
        proc.send_signal(sig)
        out, _err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out == ""  # nothing on stdout after the one line


def test_fault_flags_reach_the_server():
    proc, url = start("--error-5xx-rate", "1", "--latency-ms", "1,2")
    try:
        r = requests.post(
            f"{url}/send",
            json={"cliente_id": 51, "to": NUMBER, "message": "x"},
            headers={"X-Cliente-Id": "51"},
            timeout=5,
        )
        assert r.status_code == 500
        faults = requests.get(f"{url}/_sim/faults", timeout=5).json()
        assert faults["error_5xx_rate"] == 1.0 and faults["latency_ms"] == [1.0, 2.0]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_logs_never_hold_a_full_number_or_the_text():
    proc, url = start("--log-level", "DEBUG", "--seed", "1")
    try:
        for faults in ({}, {"drop_connection_rate": 1.0}):
            requests.post(f"{url}/_sim/faults", json=faults, timeout=5)
            try:
                requests.post(
                    f"{url}/send",
                    json={"cliente_id": 51, "to": NUMBER, "message": "texto secreto"},
                    headers={"X-Cliente-Id": "51"},
                    timeout=5,
                )
            except requests.ConnectionError:
                pass
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
    assert "delivered" in err and "*6789" in err  # it did log the sends, masked
    assert NUMBER not in err
    assert "texto secreto" not in err


def test_port_in_use_is_one_clear_line_and_nonzero():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=ROOT)
        p = subprocess.run(
            [sys.executable, "-m", "simulator", "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=20,
        )
    assert p.returncode == 1
    assert p.stdout == ""
    assert f"cannot listen on 127.0.0.1:{port}" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_flag_is_rejected():
    p = subprocess.run(
        [sys.executable, "-m", "simulator", "--error-5xx-rate", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        timeout=20,
    )
    assert p.returncode == 2
    assert "between 0 and 1" in p.stderr


def test_command_module_hooks_for_envios_cli():
    assert isinstance(command.HELP, str) and "\n" not in command.HELP and command.HELP
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.seed) == ("127.0.0.1", 3002, None)
    args = parser.parse_args(
        ["--sessions", "51=READY,52=disconnected", "--seed", "9", "--slow-rate", "0.5"]
    )
    assert args.sessions == {51: "READY", 52: "DISCONNECTED"}
    faults = command.faults_from_args(args)
    assert faults.slow_rate == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--sessions", "51=SLEEPING"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--latency-ms", "20,5"])


def test_refuse_for_flag_closes_the_port_for_a_while():
    proc, url = start("--refuse-for", "0.8")
    try:
        seen = []
        for _ in range(200):
            try:
                requests.get(f"{url}/status", headers={"X-Cliente-Id": "51"}, timeout=2)
                seen.append("ok")
            except requests.ConnectionError:
                seen.append("refused")
            if "refused" in seen and seen[-1] == "ok":
                break
            time.sleep(0.05)
        assert "refused" in seen and seen[-1] == "ok"  # refused for a while, then back
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0
