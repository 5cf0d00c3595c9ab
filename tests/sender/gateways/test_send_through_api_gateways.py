"""`run_once` end to end through each API gateway (loopback fakes), on SQLite and MariaDB."""

from __future__ import annotations

import pytest

from sender.loop import run_once
from tests.sender.conftest import estados, make_config, row, seed_session

KINDS = ["waha", "evolution", "cloud_api"]


def config_for(db_url, fake, **more):
    return make_config(db_url, fake.base_url, **{"gateway.kind": fake.kind, "gateway.api_key": "k3y",
                                                 "gateway.session": "default",
                                                 "gateway.phone_number_id": "1234567890", **more})


@pytest.mark.parametrize("kind", KINDS)
def test_a_pass_sends_every_row_with_its_message_id(db_url, upgraded, clock, fake_api, kind):
    fake = fake_api(kind)
    ids = seed_session(upgraded, rows=3)
    report = run_once(config_for(db_url, fake), clock=clock)
    assert report.sent == 3
    assert estados(upgraded) == {"enviado": 3}
    by_text = {e["to"]: e["message_id"] for e in fake.ledger}
    assert len(by_text) == 3
    stored = {row(upgraded, i)["message_id"] for i in ids}
    assert stored == set(by_text.values())
    if kind == "cloud_api":
        assert sorted(int(e["reference"]) for e in fake.ledger) == sorted(ids)


@pytest.mark.parametrize("kind", KINDS)
def test_a_lost_answer_leaves_the_row_enviando_and_stops_the_session(db_url, upgraded, clock, fake_api, kind):
    fake = fake_api(kind)
    seed_session(upgraded, rows=3)
    fake.plan("ok", "drop")
    report = run_once(config_for(db_url, fake), clock=clock)
    assert report.sent == 1
    assert estados(upgraded) == {"enviado": 1, "enviando": 1, "pendiente": 1}
    assert len(fake.ledger) == 2


def test_an_expired_cloud_api_token_stops_every_session_and_sends_nothing_more(db_url, upgraded, clock, fake_api):
    fake = fake_api("cloud_api")
    seed_session(upgraded, rows=3, cliente_id=51, campania_id=47)
    seed_session(upgraded, rows=3, cliente_id=52, campania_id=48)
    fake.default = (401, {"error": {"message": "Error validating access token: Session has expired",
                                    "type": "OAuthException", "code": 190, "fbtrace_id": "x"}})
    report = run_once(config_for(db_url, fake), clock=clock)
    assert report.sent == 0
    # the two sessions work in parallel: at most the one send each had in flight, then nothing more
    assert len(fake.sends) <= 2 and len({s["to"][:-4] for s in fake.sends}) == len(fake.sends)
    assert estados(upgraded) == {"pendiente": 6}
    assert upgraded.scalar("SELECT MAX(attempts) FROM ll_envios_whatsapp") == 0  # the refusal costs no attempt


def test_waha_session_not_working_sends_nothing(db_url, upgraded, clock, fake_api):
    fake = fake_api("waha")
    fake.state = "QR"
    seed_session(upgraded, rows=2)
    report = run_once(config_for(db_url, fake), clock=clock)
    assert report.sent == 0 and fake.sends == []
    assert estados(upgraded) == {"pendiente": 2}
