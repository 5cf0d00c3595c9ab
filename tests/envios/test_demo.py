"""`envios demo` as a newcomer runs it: a subprocess on a fresh SQLite file."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from envios.phones import normalise

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_to_the_end_and_every_recipient_is_accounted_for(tmp_path):
    db = tmp_path / "demo.db"
    journal = tmp_path / "demo.db.journal"  # beside the database, as a deployment keeps it
    journal.mkdir()
    (journal / "an-earlier-demo.journal").write_text('{"ev": "open"}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVIOS_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "envios",
            "demo",
            "--duration",
            "20",
            "--speed",
            "fast",
            "--db",
            str(db),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    stderr_text: list[str] = []
    threading.Thread(target=lambda: stderr_text.append(proc.stderr.read()), daemon=True).start()

    metrics_text = None
    deadline = time.monotonic() + 30
    while metrics_text is None and time.monotonic() < deadline and proc.poll() is None:
        url = next(
            (
                m.group(1)
                for line in list(lines)
                if (m := re.search(r"watcher metrics: (http://127\.0\.0\.1:\d+)/metrics", line))
            ),
            None,
        )
        if url:
            response = requests.get(f"{url}/metrics", timeout=5)
            if response.status_code == 200 and "envios_messages{" in response.text:
                metrics_text = response.text
        time.sleep(0.2)
    try:
        returncode = proc.wait(timeout=90)
    finally:
        proc.kill()
    reader.join(timeout=5)
    output = "".join(lines)

    assert returncode == 0, output + "".join(stderr_text)
    assert metrics_text is not None, "the watcher's /metrics never answered during the run"
    assert "envios_watcher_up 1.0" in metrics_text
    assert len(re.findall(r"campaign 1: sent +\d+ pending", output)) >= 3, (
        "no live progress printed"
    )
    assert "session 51 drops to DISCONNECTED" in output
    assert "READY again" in output
    assert "recipients in" in output and "Duplicates: 0" in output
    # The demo's sender kept a journal there; the earlier demo's went with its database,
    # and a clean stop leaves nothing unrecorded in it.
    assert f"sender journal: {journal}/" in output
    assert journal.is_dir() and list(journal.iterdir()) == []
    acked = re.search(
        r"acknowledged by the gateway: (\d+) delivered, (\d+) read; (\d+) unknown outcomes settled",
        output,
    )
    # the simulator's webhooks reached `envios webhooks`
    assert acked and int(acked.group(1)) > 250, output

    ledger = json.loads(Path(f"{db}.ledger.json").read_text())
    deliveries = Counter(entry["to"] for entry in ledger)
    assert all(n == 1 for n in deliveries.values()), "a recipient was delivered twice"
    by_message_id = Counter(entry["message_id"] for entry in ledger)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT telefono_wapp, estado, message_id, last_error FROM ll_envios_whatsapp"
        ).fetchall()
        settled = conn.execute(
            "SELECT COUNT(*) FROM ll_envios_whatsapp_historial"
            " WHERE origen = 'envios-evidence' AND estado_nuevo = 'enviado'"
        ).fetchone()[0]
        unacked_sent = conn.execute(
            "SELECT COUNT(*) FROM ll_envios_whatsapp WHERE estado = 'enviado'"
            " AND delivery_status IS NULL"
        ).fetchone()[0]
    assert settled == int(acked.group(3))
    assert unacked_sent == 0  # every sent row heard its acknowledgement
    assert len(rows) == 300
    states = Counter(r[1] for r in rows)
    assert states["pendiente"] == 0, states
    assert states["enviado"] > 250, states
    for _phone, estado, message_id, last_error in rows:
        if estado == "enviado":
            assert message_id and by_message_id[message_id] == 1
        elif estado == "error":
            assert last_error, "an error row without its reason"
        else:
            assert estado == "enviando", estado  # stuck: unknown outcome, left for reconcile
    sent_or_stuck = {normalise(r[0]) for r in rows if r[1] in ("enviado", "enviando")}
    assert set(deliveries) <= sent_or_stuck, "the gateway delivered to a recipient no row explains"
