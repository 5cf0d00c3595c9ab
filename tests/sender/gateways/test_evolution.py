"""Evolution API v2 adapter: every row of its outcome table against a loopback Evolution from its docs."""

from __future__ import annotations

import time

import pytest
from envios.sender.gateways import evolution
from envios.sender.gateways.base import EvidenceUnavailable, Outcome

from tests.sender.gateways.conftest import answered_as_the_table_says, every_rule_tested

NOT_ON_WHATSAPP = {"status": 400, "error": "Bad Request",
                   "response": {"message": [{"jid": "5491100000001@s.whatsapp.net", "exists": False,
                                             "number": "5491100000001"}]}}
CASES = [
    ("ok",                                                                     Outcome.SENT,              "sent, key.id is its id"),
    ("no_id",                                                                  Outcome.SENT_WITHOUT_ID,   "sent, no key.id"),
    ("garbage",                                                                Outcome.UNKNOWN,           "2xx that is not a JSON object"),
    ((400, NOT_ON_WHATSAPP),                                                   Outcome.REJECTED,          "Evolution refused the message"),
    ((401, {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}),
                                                                               Outcome.UNREACHABLE,       "Evolution refused our apikey"),
    ((404, {"status": 404, "error": "Not Found",
            "response": {"message": ['The "default" instance does not exist']}}), Outcome.UNREACHABLE,    "no such Evolution instance or route"),
    ((429, {"status": 429, "error": "Too Many Requests"}),                     Outcome.RATE_LIMITED,      "Evolution asks us to slow down"),
    ((500, {"status": 500, "error": "Internal Server Error", "response": {"message": "Connection Closed"}}),
                                                                               Outcome.SESSION_NOT_READY, "instance not connected to WhatsApp"),
    ((500, {"status": 500, "error": "Internal Server Error",
            "response": {"message": "Cannot read properties of undefined (reading 'textMessage')"}}),
                                                                               Outcome.UNKNOWN,           "Evolution failed while sending"),
]


def test_every_row_of_the_table_has_a_case():
    every_rule_tested(evolution.RULES, CASES)


def gateway_for(fake, **kw):
    return evolution.EvolutionGateway(fake.base_url, session="default", api_key="k3y",
                                      send_timeout_s=kw.get("send_timeout_s", 3), status_timeout_s=1)


@pytest.mark.parametrize(("behaviour", "outcome", "row"), CASES, ids=[c[2] for c in CASES])
def test_send_outcome(fake_api, behaviour, outcome, row):
    fake = fake_api("evolution")
    fake.plan(behaviour)
    result = gateway_for(fake).send(51, "5491100000001", "Hola Ana")
    answered_as_the_table_says(fake, result, outcome, row)
    assert "5491100000001" not in result.reason  # the number never reaches a reason (logs, last_error)
    method, path, headers, payload = fake.requests[-1]
    assert (method, path) == ("POST", "/message/sendText/default")
    assert payload == {"number": "5491100000001", "text": "Hola Ana"}
    assert headers["apikey"] == "k3y"


def test_lost_answers_are_unknown(fake_api):
    fake = fake_api("evolution")
    fake.plan("timeout", "drop")
    gw = gateway_for(fake, send_timeout_s=0.5)
    assert gw.send(51, "5491100000001", "a").outcome is Outcome.UNKNOWN
    assert gw.send(51, "5491100000002", "b").outcome is Outcome.UNKNOWN
    assert len(fake.ledger) == 2


@pytest.mark.parametrize(("state", "expected"), [("READY", "READY"), ("DOWN", "DISCONNECTED"), ("QR", "CONNECTING")])
def test_connection_state(fake_api, state, expected):
    fake = fake_api("evolution")
    fake.state = state
    assert gateway_for(fake).status(51).state == expected
    assert fake.requests[-1][1] == "/instance/connectionState/default"


def test_status_of_a_missing_instance_or_a_refused_key(fake_api):
    fake = fake_api("evolution")
    assert evolution.EvolutionGateway(fake.base_url, session="nope", api_key="k3y").status(1).state == "ERROR"
    assert evolution.EvolutionGateway(fake.base_url, session="default", api_key="x").status(1).state == "UNREACHABLE"


def test_evidence_lookup(fake_api):
    fake = fake_api("evolution")
    gw = gateway_for(fake)
    before = time.time() - 5
    fake.deliver("5491100000001", "Hola Ana", {})
    found = gw.find_sent(51, "5491100000001", "Hola Ana", before)
    assert found is not None and found.message_id == fake.ledger[0]["message_id"]
    assert fake.requests[-1][3] == {"where": {"key": {"remoteJid": "5491100000001@s.whatsapp.net", "fromMe": True}}}
    assert gw.find_sent(51, "5491100000001", "Other", before) is None
    assert gw.find_sent(51, "5491100000001", "Hola Ana", time.time() + 60) is None
    fake.stop()
    with pytest.raises(EvidenceUnavailable):
        gw.find_sent(51, "5491100000001", "Hola Ana", before)
