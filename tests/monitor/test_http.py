"""/metrics and /healthz over real HTTP on loopback; promtool on the exposition."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.monitor.conftest import FakeMonotonic, labels, make_config, parse, series
from tests.monitor.test_metrics import seed_known


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_metrics_and_healthz_over_http(build, config, clock, watchers):
    seed_known(build)
    tick = FakeMonotonic()
    watcher = watchers(config, clock=clock, monotonic=tick).start(refresh=False)
    assert watcher.url == f"http://127.0.0.1:{watcher.port}" and watcher.port > 0

    status, _, body = get(watcher.url + "/healthz")
    assert status == 503 and body.startswith(b"stale: no complete refresh yet")
    status, _, body = get(watcher.url + "/metrics")
    assert status == 200
    assert series(parse(body), "envios_watcher_up") == {frozenset(): 0}
    assert "envios_messages" not in {name for name, _ in parse(body)}  # nothing read yet

    watcher.refresh()
    status, ctype, body = get(watcher.url + "/metrics")
    assert status == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8"
    assert body == watcher.exposition()
    assert series(parse(body), "envios_stuck_sending")[labels(campania_id=1)] == 3
    status, ctype, body = get(watcher.url + "/healthz")
    assert (status, ctype) == (200, "text/plain; charset=utf-8") and body.startswith(
        b"ok: last refresh"
    )

    tick.now += 3 * config.monitor.refresh_s - 0.5
    assert get(watcher.url + "/healthz")[0] == 200
    tick.now += 1.0  # now 3 x refresh_s since the last complete refresh
    status, _, body = get(watcher.url + "/healthz")
    assert status == 503 and body.startswith(b"stale: last complete refresh")
    assert get(watcher.url + "/nope")[0] == 404


def test_background_refreshes_keep_it_healthy(build, db_url, clock, watchers):
    seed_known(build)
    watcher = watchers(make_config(db_url, **{"monitor.refresh_s": 0.05}), clock=clock).start()
    assert watcher.wait_for_refreshes(3, timeout=30)
    assert get(watcher.url + "/healthz")[0] == 200
    watcher.stop()
    assert watcher.port is None


def test_exposition_passes_promtool(build, config, clock, watchers):
    seed_known(build)
    # crosses max_stuck: a pause
    build.send(1, "enviando", claimed_at=build.ago(minutes=30), count=3)
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is not installed (Debian package prometheus)")
        pytest.skip("promtool is not installed")
    watcher = watchers(config, clock=clock)
    watcher.refresh()
    assert (
        series(parse(watcher.exposition()), "envios_autopause_total")[labels(reason="stuck")] == 1
    )
    result = subprocess.run(
        [promtool, "check", "metrics"], input=watcher.exposition(), capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""
