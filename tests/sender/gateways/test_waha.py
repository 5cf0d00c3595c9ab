"""WAHA adapter: every row of its outcome table against a loopback WAHA written from its docs."""

from __future__ import annotations

import time

import pytest
from envios.sender.gateways import waha
from envios.sender.gateways.base import EvidenceUnavailable, Outcome

from tests.sender.gateways.conftest import answered_as_the_table_says, every_rule_tested

NOT_WORKING = {"error": "Session status is not as expected. Try again later or restart the session",
               "session": "default", "status": "STOPPED", "expected": ["WORKING"]}
CASES = [
    # what the fake does                                                     outcome                    table row
    ("ok",                                                                    Outcome.SENT,              "sent, with its id"),
    ("no_id",                                                                 Outcome.SENT_WITHOUT_ID,   "sent, no id given"),
    ("garbage",                                                               Outcome.UNKNOWN,           "2xx that is not a JSON object"),
    ((422, NOT_WORKING),                                                      Outcome.SESSION_NOT_READY, "session is not WORKING"),
    ((400, {"statusCode": 400, "message": ["chatId must be a string"], "error": "Bad Request"}),
                                                                              Outcome.REJECTED,          "WAHA refused the request"),
    ((401, {"statusCode": 401, "message": "Unauthorized"}),                   Outcome.UNREACHABLE,       "WAHA refused our API key"),
    ((404, {"statusCode": 404, "message": "Session not found"}),              Outcome.UNREACHABLE,       "no such WAHA session or route"),
    ((429, {"statusCode": 429, "message": "Too Many Requests"}),              Outcome.RATE_LIMITED,      "WAHA asks us to slow down"),
    ((500, {"statusCode": 500, "exception": {"message": "Evaluation failed"}}), Outcome.UNKNOWN,         "WAHA failed while sending"),
]


def test_every_row_of_the_table_has_a_case():
    every_rule_tested(waha.RULES, CASES)


def gateway_for(fake, **kw):
    return waha.WahaGateway(fake.base_url, session="default", api_key="k3y", send_timeout_s=kw.get("send_timeout_s", 3),
                            status_timeout_s=1)


@pytest.mark.parametrize(("behaviour", "outcome", "row"), CASES, ids=[c[2] for c in CASES])
def test_send_outcome(fake_api, behaviour, outcome, row):
    fake = fake_api("waha")
    fake.plan(behaviour)
    result = gateway_for(fake).send(51, "5491100000001", "Hola Ana")
    answered_as_the_table_says(fake, result, outcome, row)
    if outcome is Outcome.RATE_LIMITED:
        assert result.retry_after_s == 7
    method, path, headers, payload = fake.requests[-1]
    assert (method, path) == ("POST", "/api/sendText")
    assert payload == {"session": "default", "chatId": "5491100000001@c.us", "text": "Hola Ana"}
    assert headers["X-Api-Key"] == "k3y"


def test_session_not_working_answers_422_and_nothing_is_delivered(fake_api):
    fake = fake_api("waha")
    fake.state = "DOWN"
    result = gateway_for(fake).send(51, "5491100000001", "Hola")
    assert result.outcome is Outcome.SESSION_NOT_READY and fake.ledger == []


@pytest.mark.parametrize("engine_body", [
    {"id": "true_5491100000001@c.us_3EB0AAA"},
    {"id": {"fromMe": True, "remote": "5491100000001@c.us", "id": "3EB0AAA", "_serialized": "true_5491100000001@c.us_3EB0AAA"}},
    {"key": {"remoteJid": "5491100000001@s.whatsapp.net", "fromMe": True, "id": "true_5491100000001@c.us_3EB0AAA"}},
], ids=["id string", "WEBJS id._serialized", "NOWEB key.id"])
def test_message_id_in_each_engine_shape(fake_api, engine_body):
    fake = fake_api("waha")
    fake.plan((201, engine_body))
    result = gateway_for(fake).send(51, "5491100000001", "Hola")
    assert result.outcome is Outcome.SENT and result.message_id == "true_5491100000001@c.us_3EB0AAA"


def test_lost_answers_are_unknown_and_refused_connections_unreachable(fake_api):
    fake = fake_api("waha")
    fake.plan("timeout", "drop")
    gw = gateway_for(fake, send_timeout_s=0.5)
    assert gw.send(51, "5491100000001", "a").outcome is Outcome.UNKNOWN
    assert gw.send(51, "5491100000002", "b").outcome is Outcome.UNKNOWN
    assert len(fake.ledger) == 2  # both were delivered: exactly why they are unknown, not "not sent"
    url = fake.base_url
    fake.stop()
    assert waha.WahaGateway(url, status_timeout_s=1).send(51, "5491100000003", "c").outcome is Outcome.UNREACHABLE


@pytest.mark.parametrize(("state", "expected"), [("READY", "READY"), ("DOWN", "DISCONNECTED"), ("QR", "AWAITING_QR")])
def test_session_status(fake_api, state, expected):
    fake = fake_api("waha")
    fake.state = state
    status = gateway_for(fake).status(51)
    assert status.state == expected
    assert fake.requests[-1][1] == "/api/sessions/default"


def test_status_of_a_missing_session_or_a_refused_key(fake_api):
    fake = fake_api("waha")
    assert waha.WahaGateway(fake.base_url, session="other", api_key="k3y").status(1).state == "ERROR"
    assert waha.WahaGateway(fake.base_url, session="default", api_key="bad").status(1).state == "UNREACHABLE"


def test_session_per_client(fake_api):
    fake = fake_api("waha", session="envios-51")
    gw = waha.WahaGateway(fake.base_url, session="envios-{cliente_id}", api_key="k3y")
    assert gw.status(51).ready
    gw.send(51, "5491100000001", "x")
    assert fake.requests[-1][3]["session"] == "envios-51"


def test_evidence_lookup_finds_our_message_after_the_claim_only(fake_api):
    fake = fake_api("waha")
    gw = gateway_for(fake)
    before = time.time() - 5
    fake.deliver("5491100000001", "Hola Ana", {})
    found = gw.find_sent(51, "5491100000001", "Hola Ana", before)
    assert found is not None and found.message_id == fake.ledger[0]["message_id"]
    assert gw.find_sent(51, "5491100000001", "Other text", before) is None
    assert gw.find_sent(51, "5491100000002", "Hola Ana", before) is None
    assert gw.find_sent(51, "5491100000001", "Hola Ana", time.time() + 60) is None  # sent before the claim
    fake.stop()
    with pytest.raises(EvidenceUnavailable):
        gw.find_sent(51, "5491100000001", "Hola Ana", before)
