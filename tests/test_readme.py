"""README.md stays true.

The two commands on top, and "Deploy next to production" walked on the real schema.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path

import pytest

from envios.store import schema
from tests.conftest import load_legacy
from tests.sender.conftest import envios, sender_env

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DEPLOY = README[
    README.index("## Deploy next to production") : README.index("To stop all sending at once")
]
CONFIG_PATH = "/etc/envios/config.yaml"
INCIDENT_SQL = re.search(
    r"```sql\n(SELECT id, campania_id, nombre_destino, fecha_envio.*?);\n```", README, re.S
).group(1)


def test_first_screen_has_the_demo_and_test_commands():
    top = "\n".join(README.splitlines()[:40])
    assert "envios demo" in top
    assert "bash .ci/run" in top
    assert (ROOT / ".ci" / "run").exists()


def test_readme_points_inside_the_repository():
    """A user's clone has no ../shared: the design contract it links to is docs/DESIGN.md."""
    assert "../shared" not in README
    assert "(docs/DESIGN.md)" in README


@pytest.mark.parametrize("schema_name", ["2026-02", "2026-02-27"])
def test_incident_query_lists_exactly_the_phantom_rows(conn, clock, schema_name):
    load_legacy(conn, schema_name)
    schema.upgrade(conn, clock.now())
    # The legacy schema holds three of the incident's phantom rows (4570-4572), sent
    # one a minute from 08:00; earlier real sends and pending rows are not listed.
    assert [r["id"] for r in conn.query(INCIDENT_SQL)] == [4570, 4571, 4572]


def _commands(config: Path) -> list[list[str]]:
    """The section's `envios ... --config /etc/envios/config.yaml` commands.

    In the order written.
    """
    spans = re.findall(r"`(envios [^`]*--config " + re.escape(CONFIG_PATH) + r")`", DEPLOY)
    return [span.replace(CONFIG_PATH, str(config)).split()[1:] for span in spans]


@pytest.mark.mysql_only
def test_deploy_next_to_production_step_by_step(db_url, conn, sim, tmp_path):
    """Steps 1 and 3-8 as written, on the production schema at the incident.

    Step 2, the backup, is mysqldump's.
    """
    load_legacy(conn, "2026-02")
    config = tmp_path / "config.yaml"
    # step 3: the repository's config.yaml, secrets in the environment
    shutil.copy(ROOT / "config.yaml", config)
    # ENVIOS_DATABASE_URL, as /etc/envios/envios.env holds it
    env = sender_env(db_url, sim.base_url)
    commands = _commands(config)
    assert [c[:3] for c in commands] == [
        ["db", "upgrade", "--dry-run"],
        ["db", "upgrade", "--config"],
        ["db", "status", "--config"],
        ["watch", "--once", "--config"],
        ["status", "--config", str(config)],
        ["send", "--once", "--config"],
        ["reconcile", "list", "--config"],
    ]
    dry_run, upgrade, db_status, watch_once, status, send_once, reconcile_list = commands

    # 1. the original scheduler's locks: the query runs and shows only the incident day's dead lock
    lock_sql = re.search(
        r"```sql\s*\n\s*(SELECT id, locked_at, locked_by FROM ll_programaciones[^;]*);", DEPLOY
    ).group(1)
    assert [r["id"] for r in conn.query(lock_sql)] == [12]

    # 4. the dry run prints the statements and what it leaves alone, and changes nothing
    before = {
        t: schema.column_details(conn, t)
        for t in ("ll_envios_whatsapp", "ll_envios_whatsapp_historial")
    }
    done = envios(*dry_run, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (
        "ALTER TABLE ll_envios_whatsapp MODIFY COLUMN estado"
        " enum('pendiente','enviado','error','enviando')" in done.stdout
    )
    assert "-- found, left as it is:" in done.stdout and "keeps 'no_incluido'" in done.stdout
    assert {t: schema.column_details(conn, t) for t in before} == before
    assert not schema.table_exists(conn, schema.VERSION_TABLE)

    # 5. upgrade, db status, and again: a no-op
    done = envios(*upgrade, env=env, cwd=tmp_path)
    assert done.returncode == 0 and "upgraded MySQL" in done.stdout, done.stderr
    done = envios(*db_status, env=env, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.count(" applied ") == len(schema.VERSIONS), (
        done.stdout
    )
    done = envios(*upgrade, env=env, cwd=tmp_path)
    assert done.returncode == 0 and "schema is up to date" in done.stdout, done.stdout

    # 6. the watcher once, then status
    done = envios(*watch_once, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'envios_messages{campania_id="47",estado="pendiente"} 4.0' in done.stdout
    done = envios(*status, env=env, cwd=tmp_path)
    assert done.returncode == 0 and "Haby – Reactivación" in done.stdout, done.stderr

    # 7. small quota, the session is READY, one pass of the sender
    cupo_sql = re.search(
        r"`(UPDATE ll_programaciones SET cupo_diario = 10 WHERE estado = 'aprobada')`", DEPLOY
    ).group(1)
    assert conn.execute(cupo_sql) == 1
    curl = re.search(r"`curl -H '(X-Cliente-Id): (\d+)' http://127\.0\.0\.1:3002(/status)`", DEPLOY)
    request = urllib.request.Request(
        sim.base_url + curl.group(3), headers={curl.group(1): curl.group(2)}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.load(answer)["state"] == "READY"
    # The test runs at any hour of any day: schedule 12's window (mon..sat 08-20) is opened wide for
    # it.
    conn.execute(
        "UPDATE ll_programaciones SET dias_semana = 'mon,tue,wed,thu,fri,sat,sun',"
        " hora_inicio = '00:00:00', hora_fin = '23:59:59' WHERE id = 12"
    )
    done = envios(*send_once, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    estados = {
        r["id"]: r["estado"]
        for r in conn.query("SELECT id, estado FROM ll_envios_whatsapp WHERE id >= 4820")
    }
    # 4822 has no number
    assert estados == {4820: "enviado", 4821: "enviado", 4822: "error", 4823: "enviado"}
    assert sorted(e["to"] for e in sim.state.ledger) == [
        "5491123456820",
        "5491123456821",
        "5491123456823",
    ]

    # 8. nothing stuck, nothing sent without an id; the incident's rows are still listed apart
    done = envios(*reconcile_list, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(outcome unknown): 0" in done.stdout and "sent without a message id: 0" in done.stdout
    assert [r["id"] for r in conn.query(INCIDENT_SQL)] == [4570, 4571, 4572]
