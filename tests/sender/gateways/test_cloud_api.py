"""Cloud API adapter: every row of its outcome table against a loopback Graph API from Meta's docs."""

from __future__ import annotations

import pytest
from envios.sender.gateways import cloud_api
from envios.sender.gateways.base import Outcome

from envios.errors import ConfigError
from tests.sender.conftest import make_config
from tests.sender.gateways.conftest import answered_as_the_table_says, every_rule_tested


def graph_error(code: int, message: str, status_type: str = "OAuthException", details: str = "") -> dict:
    error = {"message": message, "type": status_type, "code": code, "fbtrace_id": "AbCdEf"}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


CASES = [
    ("ok",                                                                   Outcome.SENT,            "accepted, messages[0].id is the wamid"),
    ("no_id",                                                                Outcome.SENT_WITHOUT_ID, "accepted, no messages[0].id"),
    ("garbage",                                                              Outcome.UNKNOWN,         "2xx that is not a JSON object"),
    ((401, graph_error(190, "Error validating access token: Session has expired")),
                                                                             Outcome.ACCOUNT_BLOCKED, "access token expired or invalid (190): renew gateway.api_key"),
    ((403, graph_error(368, "Temporarily blocked for policies violations")), Outcome.ACCOUNT_BLOCKED, "account temporarily blocked for policy violations (368)"),
    ((400, graph_error(131031, "Account has been locked")),                  Outcome.ACCOUNT_BLOCKED, "business account locked (131031)"),
    ((400, graph_error(130429, "Rate limit hit")),                           Outcome.RATE_LIMITED,    "Cloud API throughput reached (130429)"),
    ((400, graph_error(131056, "(Business Account, Consumer Account) pair rate limit hit")),
                                                                             Outcome.RATE_LIMITED,    "too many messages to this number (131056)"),
    ((400, graph_error(131026, "Message Undeliverable")),                    Outcome.REJECTED,        "message undeliverable to this number (131026)"),
    ((400, graph_error(131047, "Re-engagement message",
                       details="Message failed to send because more than 24 hours have passed since the customer last replied to this number.")),
                                                                             Outcome.REJECTED,        "more than 24 hours since the person last wrote: only a template may be sent (131047)"),
    ((400, graph_error(100, "Invalid parameter")),                           Outcome.REJECTED,        "invalid parameter"),
    ((400, graph_error(132000, "Number of parameters does not match the expected number of params")),
                                                                             Outcome.REJECTED,        "template parameters do not match this row (132000)"),
    ((404, graph_error(132001, "Template name does not exist in the translation")),
                                                                             Outcome.ACCOUNT_BLOCKED, "template gateway.template does not exist in gateway.template_language (132001)"),
    ((401, {"error": {"message": "Unauthorized"}}),                          Outcome.ACCOUNT_BLOCKED, "Cloud API refused our token"),
    ((429, {"error": {"message": "Too many calls"}}),                        Outcome.RATE_LIMITED,    "Cloud API asks us to slow down"),
    ((400, graph_error(131051, "Unsupported message type")),                 Outcome.REJECTED,        "Cloud API refused the message"),
    ((503, graph_error(131016, "Service unavailable")),                      Outcome.GATEWAY_ERROR,   "Cloud API service unavailable, not sent (131016)"),
    ((500, graph_error(131000, "Something went wrong")),                     Outcome.UNKNOWN,         "Cloud API failed while sending"),
]


def test_every_row_of_the_table_has_a_case():
    every_rule_tested(cloud_api.RULES, CASES)


def gateway_for(fake, **kw):
    return cloud_api.CloudApiGateway(fake.base_url, phone_number_id="1234567890", api_version="v21.0", api_key="k3y",
                                     send_timeout_s=kw.get("send_timeout_s", 3), status_timeout_s=1)


@pytest.mark.parametrize(("behaviour", "outcome", "row"), CASES, ids=[c[2] for c in CASES])
def test_send_outcome(fake_api, behaviour, outcome, row):
    fake = fake_api("cloud_api")
    fake.plan(behaviour)
    gw = gateway_for(fake)
    result = gw.send_row(51, "5491100000001", "Hola Ana", 7001)
    answered_as_the_table_says(fake, result, outcome, row)
    method, path, headers, payload = fake.requests[-1]
    assert (method, path) == ("POST", "/v21.0/1234567890/messages")
    assert headers["Authorization"] == "Bearer k3y"
    assert payload["messaging_product"] == "whatsapp" and payload["to"] == "5491100000001"
    assert payload["type"] == "text" and payload["text"]["body"] == "Hola Ana"
    assert payload["biz_opaque_callback_data"] == "7001"  # the row's id rides with the message
    # the account itself cannot send: the number is not ready any more, so no session sends
    assert gw.status(51).ready is (outcome is not Outcome.ACCOUNT_BLOCKED)


def test_a_template_is_sent_with_the_name_as_its_parameter(fake_api):
    fake = fake_api("cloud_api")
    gw = cloud_api.CloudApiGateway(fake.base_url, phone_number_id="1234567890", api_key="k3y",
                                   template="reactivacion_2026", template_language="es_AR")
    assert gw.send_row(51, "5491100000001", "Hola Ana", 7, name="Ana").outcome is Outcome.SENT
    assert gw.send_row(51, "5491100000002", "Hola", 8, name=None).outcome is Outcome.SENT
    first, second = (r[3] for r in fake.requests[-2:])
    assert first["type"] == "template" and "text" not in first
    assert first["template"] == {"name": "reactivacion_2026", "language": {"code": "es_AR"},
                                 "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}
    assert second["template"] == {"name": "reactivacion_2026", "language": {"code": "es_AR"}}  # no name: no parameter
    assert first["biz_opaque_callback_data"] == "7"


def test_131047_reason_says_why(fake_api):
    fake = fake_api("cloud_api")
    fake.plan(CASES[9][0])
    result = gateway_for(fake).send(51, "5491100000001", "x")
    assert "24 hours" in result.reason


def test_lost_answers_are_unknown(fake_api):
    fake = fake_api("cloud_api")
    fake.plan("timeout", "drop")
    gw = gateway_for(fake, send_timeout_s=0.5)
    assert gw.send_row(51, "5491100000001", "a", 1).outcome is Outcome.UNKNOWN
    assert gw.send_row(51, "5491100000002", "b", 2).outcome is Outcome.UNKNOWN
    assert [e["reference"] for e in fake.ledger] == ["1", "2"]


def test_phone_number_id_is_required():
    config = make_config("sqlite:///x.db", "http://127.0.0.1:1", **{"gateway.kind": "cloud_api"})
    with pytest.raises(ConfigError, match="gateway.phone_number_id"):
        cloud_api.build(config)
