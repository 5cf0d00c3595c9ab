"""`envios watch --once` (a real subprocess), `envios campaign ...` and `envios status`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from envios.cli import main
from envios.commands import status
from tests.monitor.conftest import labels, make_config, parse, series
from tests.monitor.test_metrics import seed_known

ROOT = str(Path(__file__).resolve().parents[3])  # the repository
TIMING = {
    "envios_watcher_refresh_duration_seconds",
    "envios_watcher_query_duration_seconds",
    "envios_watcher_last_refresh_timestamp_seconds",
    "envios_watcher_query_last_success_timestamp_seconds",
}


def envios(*args: str, url: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVIOS_")}
    env.update(ENVIOS_DATABASE_URL=url, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "envios", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_watch_once_prints_what_metrics_serves(build, db_url, tmp_path, watchers):
    seed_known(build)
    result = envios("watch", "--once", url=db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = parse(result.stdout)
    assert series(printed, "envios_messages")[labels(campania_id=1, estado="enviado")] == 12
    assert series(printed, "envios_watcher_up") == {frozenset(): 1}

    watcher = watchers(make_config(db_url)).start(refresh=False)  # the real clock, like the CLI
    watcher.refresh()
    with urllib.request.urlopen(watcher.url + "/metrics", timeout=10) as resp:
        served = parse(resp.read())
    assert {k: v for k, v in printed.items() if k[0] not in TIMING} == {
        k: v for k, v in served.items() if k[0] not in TIMING
    }
    assert {k for k in printed if k[0] in TIMING} == {k for k in served if k[0] in TIMING}


@pytest.mark.parametrize(
    "url", ["mysql://root@127.0.0.1:1/envios", "sqlite:///{tmp}/no/such/dir/x.db"]
)
def test_watch_once_unreachable_is_one_line(url, tmp_path):
    result = envios("watch", "--once", url=url.format(tmp=tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("envios watch: cannot "), result.stderr


def test_watch_once_on_a_database_never_upgraded(db_url, tmp_path):
    result = envios("watch", "--once", url=db_url, cwd=tmp_path)
    assert result.returncode != 0
    assert (
        result.stderr.strip().splitlines() == [result.stderr.strip()]
        and "envios db upgrade" in result.stderr
    )


@pytest.fixture
def cli(db_url, tmp_path, monkeypatch, capsys):
    """Run `envios ...` in-process on the test database; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)  # no ./config.yaml: built-in defaults
    monkeypatch.setenv("ENVIOS_DATABASE_URL", db_url)

    def run(*args: str):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_campaign_pause_list_resume(build, cli):
    seed_known(build)
    conn = build.conn
    code, out, _ = cli("campaign", "pause", "1", "--reason", "gateway looks down")
    assert code == 0 and out.strip() == "campaign 1: paused schedule(s) 10 (reason operator)"
    row = conn.query_one(
        "SELECT estado, paused_reason, paused_by FROM ll_programaciones WHERE id = 10"
    )
    assert row == {"estado": "pausada", "paused_reason": "operator", "paused_by": "operator"}
    audit = conn.query(
        "SELECT accion, campania_id, programacion_id, motivo, detalle, origen FROM envios_audit"
    )
    assert [
        (a["accion"], a["campania_id"], a["programacion_id"], a["motivo"], a["detalle"])
        for a in audit
    ] == [("pause", 1, 10, "operator", "gateway looks down")]
    assert audit[0]["origen"].startswith("operator:")

    code, out, _ = cli("campaign", "pause", "1")
    assert code == 0 and "nothing changed" in out

    code, out, _ = cli("campaign", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "CAMPAIGN",
        "NAME",
        "ESTADO",
        "SCHEDULE",
        "CLIENTE",
        "SCHEDULE",
        "ESTADO",
        "PAUSE",
        "REASON",
        "PAUSED",
        "BY",
        "PAUSED",
        "AT",
        "WHY",
    ]
    assert re.search(
        r"^\s*1\s+Campaña 1\s+en_progreso\s+10\s+51\s+pausada\s+operator\s+operator\s+"
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+gateway looks down$",
        out,
        re.M,
    ), out
    paused_at = f"{build.ago(minutes=30):%Y-%m-%d %H:%M:%S}"  # as stored: the database's clock
    assert re.search(rf"^\s+11\s+51\s+pausada\s+operator\s+operator\s+{paused_at}$", out, re.M), out
    assert re.search(r"^\s+12\s+51\s+rechazada$", out, re.M), out
    assert re.search(r"^\s*2\s+Campaña 2\s+pendiente\s+20\s+51\s+pausada\s+unknown$", out, re.M), (
        out
    )
    assert re.search(
        r"^\s*3\s+Campaña 3\s+finalizado\s+30\s+51\s+pausada\s+error_ratio\s+watcher", out, re.M
    )
    header_width = len(lines[0])
    assert all(len(line) <= header_width + 60 for line in lines)

    code, out, _ = cli("campaign", "resume", "1")
    assert code == 0 and out.startswith("campaign 1: resumed schedule(s) 10, 11;")
    # the real clock: all 4 enviando rows (claimed in February) are stuck, but 4 <= max_stuck
    assert "warning: 4 row(s) of campaign 1 are stuck" in out and "pause it again" not in out
    assert (
        conn.scalar(
            "SELECT COUNT(*) FROM ll_programaciones WHERE campania_id = 1 AND estado = 'pausada'"
        )
        == 0
    )
    assert conn.scalar("SELECT resumed_at FROM ll_campanias_whatsapp WHERE id = 1") is not None
    assert [a["accion"] for a in conn.query("SELECT accion FROM envios_audit ORDER BY id")] == [
        "pause",
        "resume",
        "resume",
    ]


def test_resume_warns_about_rows_still_stuck(build, cli):
    seed_known(build)
    build.send(1, "enviando", claimed_at=build.ago(days=1), count=5)
    cli("campaign", "pause", "1")
    code, out, _ = cli("campaign", "resume", "1")
    assert code == 0  # the real clock: all 4 + 5 enviando rows are stuck
    assert (
        "warning: 9 row(s) of campaign 1 are stuck in enviando (outcome unknown); the watcher will"
        " pause it again until they are resolved" in out
    )


def test_resume_undoes_only_envios_pauses_unless_told(build, cli):
    """A schedule the application paused (no paused_by) stays paused.

    --include-manual-pauses resumes it.
    """
    conn = build.conn
    build.campaign(1)
    build.schedule(10, 1, "aprobada")
    build.schedule(11, 1, "pausada")  # paused in the application's screens: it never sets paused_by
    code, _out, _ = cli("campaign", "pause", "1")
    assert code == 0

    code, out, _ = cli("campaign", "resume", "1")
    assert code == 0
    assert (
        "campaign 1: schedule(s) 11 were paused by the application, not by envios: left paused"
        " (--include-manual-pauses resumes them too)" in out
    )
    assert "campaign 1: resumed schedule(s) 10;" in out
    estados = {
        r["id"]: r["estado"]
        for r in conn.query("SELECT id, estado FROM ll_programaciones ORDER BY id")
    }
    assert estados == {10: "aprobada", 11: "pausada"}

    code, out, _ = cli("campaign", "resume", "1", "--include-manual-pauses")
    assert code == 0 and "campaign 1: resumed schedule(s) 11;" in out
    assert conn.scalar("SELECT estado FROM ll_programaciones WHERE id = 11") == "aprobada"


def test_unknown_campaign_is_one_clear_line(upgraded, cli):
    code, out, err = cli("campaign", "pause", "99")
    assert code == 1 and out == "" and err.strip() == "envios campaign: campaign 99 does not exist"


def test_status_table(build, config, clock, cli):
    seed_known(build)
    text = status.render(build.conn, build.now, config)
    lines = text.splitlines()
    assert lines[1].split()[:4] == ["ID", "NAME", "ESTADO", "PENDING"]
    assert re.search(
        r"^\s*1\s+Campaña 1\s+en_progreso\s+3\s+4\s+12\s+4\s+3\s+2\s+4\s+0\.30 of 10\s+"
        r"0/0/0\s+0 auto, 0 person\s+"
        rf"1/2 operator by operator {build.ago(minutes=30):%m-%d %H:%M}$",
        text,
        re.M,
    ), text
    assert re.search(
        r"^\s*2\s+Campaña 2\s+pendiente(\s+0){7}\s+-\s+0/0/0\s+0 auto, 0 person\s+"
        r"1/1 unknown by the application$",
        text,
        re.M,
    ), text
    assert "Campaña 3" not in text
    assert "Campaña 3" in status.render(build.conn, build.now, config, include_finished=True)
    col = lines[1].index("ESTADO")  # aligned: every row's estado starts under its header
    assert all(line[col - 1] == " " and line[col] != " " for line in lines[2:])

    code, out, _ = cli("status")  # the real command (real clock): it runs and prints the table
    assert code == 0 and "Campaña 1" in out and "PENDING" in out


def test_watch_serves_on_a_free_port_and_stops_on_sigterm(build, db_url, tmp_path):
    seed_known(build)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVIOS_")}
    env.update(
        ENVIOS_DATABASE_URL=db_url,
        ENVIOS_MONITOR_PORT="0",
        ENVIOS_MONITOR_REFRESH_S="0.2",
        PYTHONPATH=ROOT,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "envios", "watch"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        for _ in range(50):  # the first lines of the log: the one naming the port
            line = proc.stderr.readline()
            match = re.search(r"serving http://127\.0\.0\.1:(\d+)/metrics", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the watcher did not log its port"
        deadline_ok = False
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                    deadline_ok = resp.status == 200
                    break
            except OSError:  # 503 until the first refresh, or not listening yet
                time.sleep(0.1)
        assert deadline_ok
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
