"""`run_once` end to end through each API gateway (loopback fakes), on SQLite and MariaDB."""

from __future__ import annotations

import pytest
from envios.sender.loop import run_once

from tests.sender.conftest import estados, make_config, row, seed_session

KINDS = ["waha", "evolution", "cloud_api"]


def config_for(db_url, fake, **more):
    return make_config(
        db_url,
        fake.base_url,
        **{
            "gateway.kind": fake.kind,
            "gateway.api_key": "k3y",
            "gateway.session": "default",
            "gateway.phone_number_id": "1234567890",
            **more,
        },
    )


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
def test_a_lost_answer_stops_the_session_and_only_evidence_settles_it(
    db_url, upgraded, clock, fake_api, kind
):
    fake = fake_api(kind)
    ids = seed_session(upgraded, rows=3)
    fake.plan("ok", "drop")
    report = run_once(config_for(db_url, fake), clock=clock)
    assert report.sent == 1
    # the session stopped: the third row was not tried
    assert len(fake.ledger) == 2 and len(fake.sends) == 2
    assert report.settled_by_evidence == []  # its send only just timed out
    assert estados(upgraded) == {"enviado": 1, "enviando": 1, "pendiente": 1}
    clock.advance(30)  # the next pass, past the send's in-flight time
    report = run_once(config_for(db_url, fake), clock=clock)
    # the third row; the unknown one is never sent again
    assert report.sent == 1 and len(fake.ledger) == 3
    # no lookup: its status webhook settles it (tests/sender/test_webhooks.py)
    if kind == "cloud_api":
        assert report.settled_by_evidence == []
        assert estados(upgraded) == {"enviado": 2, "enviando": 1}
    else:  # the gateway's own record of the message settles it
        assert report.settled_by_evidence == [ids[1]]
        assert row(upgraded, ids[1])["message_id"] == fake.ledger[1]["message_id"]
        assert estados(upgraded) == {"enviado": 3}


def test_without_a_lookup_the_lost_answer_stays_for_a_person(db_url, upgraded, clock, fake_api):
    fake = fake_api("waha")
    fake.lookups = False  # a WAHA build whose chat messages route is missing
    seed_session(upgraded, rows=2)
    fake.plan("drop")
    report = run_once(config_for(db_url, fake), clock=clock)
    assert report.settled_by_evidence == []
    assert estados(upgraded) == {"enviando": 1, "pendiente": 1}


def test_an_expired_cloud_api_token_stops_every_session_and_sends_nothing_more(
    db_url, upgraded, clock, fake_api
):
    fake = fake_api("cloud_api")
    seed_session(upgraded, rows=3, cliente_id=51, campania_id=47)
    seed_session(upgraded, rows=3, cliente_id=52, campania_id=48)
    fake.default = (
        401,
        {
            "error": {
                "message": "Error validating access token: Session has expired",
                "type": "OAuthException",
                "code": 190,
                "fbtrace_id": "x",
            }
        },
    )
    report = run_once(config_for(db_url, fake), clock=clock)
    assert report.sent == 0
    # the two sessions work in parallel: at most the one send each had in flight, then nothing more
    assert len(fake.sends) <= 2 and len({s["to"][:-4] for s in fake.sends}) == len(fake.sends)
    assert estados(upgraded) == {"pendiente": 6}
    # the refusal costs no attempt
    assert upgraded.scalar("SELECT MAX(attempts) FROM ll_envios_whatsapp") == 0


def test_waha_session_not_working_sends_nothing(db_url, upgraded, clock, fake_api):
    fake = fake_api("waha")
    fake.state = "QR"
    seed_session(upgraded, rows=2)
    report = run_once(config_for(db_url, fake), clock=clock)
    assert report.sent == 0 and fake.sends == []
    assert estados(upgraded) == {"pendiente": 2}


def test_envios_send_once_says_the_account_is_blocked_and_exits_non_zero(
    db_url, upgraded, fake_api, tmp_path
):
    from tests.sender.conftest import envios, sender_env

    fake = fake_api("cloud_api")
    fake.default = (
        403,
        {
            "error": {
                "message": "Temporarily blocked for policies violations",
                "type": "OAuthException",
                "code": 368,
                "fbtrace_id": "x",
            }
        },
    )
    seed_session(upgraded, rows=2)
    env = sender_env(
        db_url,
        fake.base_url,
        ENVIOS_GATEWAY_KIND="cloud_api",
        ENVIOS_GATEWAY_API_KEY="k3y",
        ENVIOS_GATEWAY_PHONE_NUMBER_ID="1234567890",
    )
    result = envios("send", "--once", env=env, cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "refused the account" in last and "Traceback" not in result.stderr
    assert "policy violations (368)" in result.stderr  # the log line says which refusal
    assert estados(upgraded) == {"pendiente": 2}


def test_a_cloud_api_campaign_sent_as_a_template(db_url, upgraded, clock, fake_api):
    fake = fake_api("cloud_api")
    ids = seed_session(upgraded, rows=2)
    report = run_once(
        config_for(db_url, fake, **{"gateway.template": "reactivacion_2026"}), clock=clock
    )
    assert report.sent == 2 and estados(upgraded) == {"enviado": 2}
    assert [e["text"] for e in fake.ledger] == ["template:reactivacion_2026"] * 2
    params = [
        s["payload"]["template"]["components"][0]["parameters"][0]["text"] for s in fake.sends
    ]
    assert params == ["Ana", "Ana"]  # the row's nombre_destino fills {{1}}
    assert {row(upgraded, i)["message_id"] for i in ids} == {e["message_id"] for e in fake.ledger}
