"""The session-manager adapter classifies every answer and failure (DESIGN.md sections 3 and 9)."""

from __future__ import annotations

import logging

import pytest
import requests
import responses
from envios.sender.gateways import build_gateway
from envios.sender.gateways.base import Outcome
from envios.sender.gateways.session_manager import SessionManagerGateway

from tests.conftest import free_port
from tests.sender.conftest import make_config

BASE = "http://gw.test:3002"


def gw(**kw) -> SessionManagerGateway:
    return SessionManagerGateway(
        BASE, send_timeout_s=kw.pop("send_timeout_s", 2), status_timeout_s=1, **kw
    )


ANSWERS = [
    (200, {"ok": True, "message_id": "true_549@c.us_3EB0AA"}, Outcome.SENT, "true_549@c.us_3EB0AA"),
    (
        200,
        {"ok": True, "message_id": {"_serialized": "true_549@c.us_X"}},
        Outcome.SENT,
        "true_549@c.us_X",
    ),
    (201, {"ok": True}, Outcome.SENT_WITHOUT_ID, None),
    (200, {"ok": True, "message_id": ""}, Outcome.SENT_WITHOUT_ID, None),
    (200, {"ok": False}, Outcome.UNKNOWN, None),
    (200, {"error": True, "code": "X"}, Outcome.UNKNOWN, None),
    (200, ["ok"], Outcome.UNKNOWN, None),
    (200, "<html>ok</html>", Outcome.UNKNOWN, None),
    (400, {"error": True, "code": "INVALID_NUMBER", "message": "bad"}, Outcome.REJECTED, None),
    (400, {"error": True, "code": "VALIDATION_ERROR", "message": "empty"}, Outcome.REJECTED, None),
    (422, {"error": True}, Outcome.REJECTED, None),
    (409, {"error": True, "code": "SESSION_NOT_READY"}, Outcome.SESSION_NOT_READY, None),
    (429, {"error": True}, Outcome.RATE_LIMITED, None),
    (401, {"error": True}, Outcome.UNREACHABLE, None),
    (500, {"error": True, "code": "WHATSAPP_ERROR", "message": "x"}, Outcome.GATEWAY_ERROR, None),
    (500, {"error": True, "code": "INTERNAL"}, Outcome.UNKNOWN, None),
    (502, "Bad Gateway", Outcome.UNKNOWN, None),
    (503, {"error": True, "code": "WHATSAPP_ERROR"}, Outcome.GATEWAY_ERROR, None),
    (404, {"error": True}, Outcome.NO_ROUTE, None),
    (302, "", Outcome.UNKNOWN, None),
    # the venom build (live at the incident)
    (
        200,
        {
            "success": True,
            "message": "Message sent",
            "data": {"messageId": "sent-via-ui", "method": "UI-Simulation"},
        },
        Outcome.SENT_WITHOUT_ID,
        None,
    ),
    (200, {"success": True, "data": {"messageId": "sent"}}, Outcome.SENT_WITHOUT_ID, None),
    (
        200,
        {"success": True, "data": {"messageId": "true_549@c.us_3EB0CC"}},
        Outcome.SENT,
        "true_549@c.us_3EB0CC",
    ),
    (200, {"success": False, "data": {}}, Outcome.UNKNOWN, None),
    (400, {"success": False, "code": "INVALID_CLIENTE_ID", "message": "x"}, Outcome.REJECTED, None),
    (400, {"success": False, "code": "INVALID_TO", "message": "x"}, Outcome.REJECTED, None),
    (400, {"success": False, "code": "INVALID_MESSAGE", "message": "x"}, Outcome.REJECTED, None),
    (503, {"success": False, "code": "SESSION_NOT_READY"}, Outcome.SESSION_NOT_READY, None),
    (500, {"success": False, "code": "SEND_FAILED", "message": "x"}, Outcome.GATEWAY_ERROR, None),
    (503, {"success": False, "code": "OTHER"}, Outcome.UNKNOWN, None),
    # the whatsapp-web.js build: Express's page for a route it does not have
    (
        404,
        "<!DOCTYPE html><html><body><pre>Cannot POST /send</pre></body></html>",
        Outcome.NO_ROUTE,
        None,
    ),
]


@pytest.mark.parametrize("status,body,outcome,message_id", ANSWERS, ids=lambda v: str(v)[:20])
@responses.activate
def test_answers_are_classified(status, body, outcome, message_id):
    kwargs = {"json": body} if not isinstance(body, str) else {"body": body}
    responses.add(responses.POST, f"{BASE}/send", status=status, **kwargs)
    result = gw().send(51, "5491123456821", "hola")
    assert result.outcome is outcome
    assert result.message_id == message_id
    assert result.http_status == status
    if outcome is Outcome.UNKNOWN or not outcome.delivered:
        assert result.message_id is None  # never invented


@responses.activate
def test_request_carries_the_contract_headers_and_body_and_never_logs_the_key(caplog):
    responses.add(responses.POST, f"{BASE}/send", json={"ok": True, "message_id": "m1"})
    responses.add(
        responses.GET, f"{BASE}/status", json={"status": "AWAITING_QR", "connected": False}
    )
    caplog.set_level(logging.DEBUG)
    g = gw(api_key="s3cret-key", client_id="host:1:ab")
    assert g.send(51, "5491123456821", "hola ñandú").outcome is Outcome.SENT
    assert g.status(51).state == "AWAITING_QR"  # older builds say "status"
    sent = responses.calls[0].request
    assert sent.headers["X-Cliente-Id"] == "51" and sent.headers["X-Api-Key"] == "s3cret-key"
    assert "host:1:ab" in sent.headers["User-Agent"]
    import json

    assert json.loads(sent.body) == {
        "cliente_id": 51,
        "to": "5491123456821",
        "message": "hola ñandú",
    }
    assert "cliente_id=51" in responses.calls[1].request.url
    assert "s3cret-key" not in caplog.text and "s3cret-key" not in repr(g)


@responses.activate
def test_a_placeholder_id_is_never_returned_and_says_why():
    responses.add(
        responses.POST,
        f"{BASE}/send",
        json={"success": True, "data": {"messageId": "sent-via-ui", "method": "UI-Simulation"}},
    )
    result = gw().send(51, "5491123456821", "hola")
    assert (result.message_id, result.gateway_gives_no_id) == (None, True)
    assert "gives no message id" in result.reason and "sent-via-ui" in result.reason


@responses.activate
def test_no_route_says_so_in_one_line():
    responses.add(
        responses.POST,
        f"{BASE}/send",
        status=404,
        body="<!DOCTYPE html>\n<html>\n<body>\n<pre>Cannot POST /send</pre>\n</body>\n</html>\n",
    )
    result = gw().send(51, "5491123456821", "hola")
    assert result.reason == "the gateway has no POST /send route (HTTP 404)"


@responses.activate
def test_retry_after_is_read():
    responses.add(responses.POST, f"{BASE}/send", status=429, headers={"Retry-After": "7"}, json={})
    assert gw().send(1, "5491123456821", "x").retry_after_s == 7.0


@responses.activate
@pytest.mark.parametrize(
    "body,state",
    [
        ({"state": "READY", "connected": True}, "READY"),
        ({"state": "disconnected"}, "DISCONNECTED"),
        ({"state": "EXPLODED"}, "ERROR"),
        ("not json", "ERROR"),
        # every state of every build (DESIGN.md section 9), under "state" or "status"
        *[
            ({key: s}, s)
            for key in ("state", "status")
            for s in (
                "READY",
                "CONNECTING",
                "AWAITING_QR",
                "QR_REQUIRED",
                "INIT",
                "AUTHENTICATED",
                "DISCONNECTED",
                "ERROR",
            )
        ],
    ],
)
def test_status_answers(body, state):
    kwargs = {"json": body} if not isinstance(body, str) else {"body": body}
    responses.add(responses.GET, f"{BASE}/status", **kwargs)
    status = gw().status(7)
    assert status.state == state
    assert status.ready is (state == "READY")
    assert status.shared_session is None


@responses.activate
@pytest.mark.parametrize(
    "body,shared",
    [
        ({"connected": True, "state": "READY", "session": "admin"}, "admin"),  # venom
        ({"connected": False, "state": "QR_REQUIRED", "session": "admin"}, "admin"),
        ({"state": "READY", "connected": True}, None),  # multi-client
        ({"status": "READY"}, None),  # whatsapp-web.js
    ],
)
def test_status_names_the_one_shared_session(body, shared):
    responses.add(responses.GET, f"{BASE}/status", json=body)
    assert gw().status(7).shared_session == shared


def test_refused_connection_is_unreachable_not_unknown():
    g = SessionManagerGateway(
        f"http://127.0.0.1:{free_port()}", send_timeout_s=1, status_timeout_s=1
    )
    result = g.send(1, "5491123456821", "x")
    assert result.outcome is Outcome.UNREACHABLE
    assert g.status(1).state == "UNREACHABLE"


def test_unknown_host_is_unreachable():
    g = SessionManagerGateway(
        "http://no-such-host.invalid:3002", send_timeout_s=1, status_timeout_s=1
    )
    assert g.send(1, "5491123456821", "x").outcome is Outcome.UNREACHABLE


def test_read_timeout_and_reset_on_a_real_socket_are_unknown(gateway):
    g = SessionManagerGateway(gateway.base_url, send_timeout_s=0.3, status_timeout_s=1)
    gateway.plan(1, "timeout", "reset", "ok")
    assert g.send(1, "5491123456821", "x").outcome is Outcome.UNKNOWN
    assert g.send(1, "5491123456822", "x").outcome is Outcome.UNKNOWN
    assert g.send(1, "5491123456823", "x").outcome is Outcome.SENT
    assert len(gateway.ledger) == 3  # all three were delivered: only one of them is known to be


def test_send_is_never_retried_by_the_http_stack(gateway):
    g = SessionManagerGateway(gateway.base_url, send_timeout_s=0.3, status_timeout_s=1)
    gateway.plan(1, "reset")
    g.send(1, "5491123456821", "x")
    assert gateway.sends_received == 1


def test_registry_builds_every_kind_of_the_contract():
    for kind in ("session_manager", "simulator", "waha", "evolution", "cloud_api"):
        config = make_config(
            "sqlite:///x.db", BASE, **{"gateway.kind": kind, "gateway.phone_number_id": "1"}
        )
        gateway = build_gateway(config)
        assert gateway.base_url == BASE and gateway.kind == kind


def test_requests_exception_types_are_what_we_expect():
    """Guards the classification against a requests/urllib3 upgrade changing exception shapes."""
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"http://127.0.0.1:{free_port()}/send", timeout=1)
