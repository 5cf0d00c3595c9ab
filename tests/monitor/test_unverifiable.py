"""Sends through a gateway that never gives ids (the venom build) are unverifiable, not ids lost.

The real sender sends through a loopback fake of the build, then the watcher
reads what it wrote: with the default configuration the campaign is not paused
after its sixth send, the sends are shown apart (envios_sent_unverifiable); an
operator who opts in (monitor.autopause.count_unverifiable) gets the pause. A
multi-client build that answers ok without an id is an id lost: paused as before.
"""

from __future__ import annotations

import pytest
from envios.sender.loop import run_once

from tests.monitor.conftest import labels, parse, series
from tests.monitor.conftest import make_config as watcher_config
from tests.sender.conftest import make_config as sender_config
from tests.sender.conftest import seed_session
from tests.sender.gateway import ScriptedGateway

SENDS = 8  # more than max_missing_message_id (5)


def send_through(build: str, db_url, upgraded, clock) -> None:
    seed_session(upgraded, cliente_id=51, campania_id=47, rows=SENDS)
    fake = ScriptedGateway(build=build)
    fake.default_behaviour = "ok" if build == "venom" else "no_id"
    try:
        report = run_once(sender_config(db_url, fake.base_url), clock=clock)
    finally:
        fake.stop()
    assert report.sent == SENDS


def schedule_state(conn) -> tuple[str, str | None]:
    r = conn.query_one("SELECT estado, paused_reason FROM ll_programaciones WHERE id = 47")
    return r["estado"], r["paused_reason"]


@pytest.mark.parametrize(
    "build,count_unverifiable,paused,unverifiable,lost",
    [
        ("venom", False, False, SENDS, 0),  # the default: shown, not paused
        ("venom", True, True, SENDS, 0),  # the operator opted in
        ("multi", False, True, 0, SENDS),  # ids lost: paused as before
    ],
)
def test_unverifiable_sends_are_shown_and_paused_only_on_request(
    build, count_unverifiable, paused, unverifiable, lost, db_url, upgraded, clock, watchers
):
    send_through(build, db_url, upgraded, clock)
    config = watcher_config(db_url, **{"monitor.autopause.count_unverifiable": count_unverifiable})
    watcher = watchers(config, clock=clock)
    watcher.refresh()

    got = parse(watcher.exposition())
    assert series(got, "envios_sent_unverifiable") == {labels(campania_id=47): unverifiable}
    assert series(got, "envios_sent_missing_message_id") == {labels(campania_id=47): lost}
    assert schedule_state(upgraded) == (
        ("pausada", "missing_message_id") if paused else ("aprobada", None)
    )
    if paused and build == "venom":
        detail = upgraded.scalar("SELECT detalle FROM envios_audit WHERE accion = 'autopause'")
        assert f"{SENDS} of them unverifiable: the gateway gives no ids" in detail


def test_a_resume_starts_the_unverifiable_count_afresh(db_url, upgraded, clock, watchers):
    from envios.monitor import campaigns

    send_through("venom", db_url, upgraded, clock)
    config = watcher_config(db_url, **{"monitor.autopause.count_unverifiable": True})
    watcher = watchers(config, clock=clock)
    watcher.refresh()
    assert schedule_state(upgraded)[0] == "pausada"
    clock.advance(60)
    campaigns.resume(upgraded, 47, now=clock.db_now(upgraded), origin="operator@test")
    clock.advance(15)
    watcher.refresh()
    # sends before the resume do not pause it again
    assert schedule_state(upgraded) == ("aprobada", None)
    assert series(parse(watcher.exposition()), "envios_sent_unverifiable") == {
        labels(campania_id=47): SENDS
    }
