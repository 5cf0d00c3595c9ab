"""`gateway.kind: evolution` — Evolution API v2 (DESIGN.md section 11).

    GET  {base_url}/instance/connectionState/{instance}  -> {"instance": {"instanceName", "state": "open" | ...}}
    POST {base_url}/message/sendText/{instance}  {number: "<digits>", text}  -> 201 {"key": {"id", ...}, ...}
    POST {base_url}/chat/findMessages/{instance}  {where: {key: {remoteJid, fromMe: true}}}  (the evidence lookup)

`apikey: gateway.api_key`. The instance is `gateway.session` (`{cliente_id}` in it:
one instance per client). Errors come as {"status", "error", "response": {"message": ...}}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from envios.sender.gateways.api_base import (
    OK,
    SERVER_ERRORS,
    ApiGateway,
    Rule,
    anything,
    is_object,
    parse_json,
    text_id,
)
from envios.sender.gateways.base import (
    Evidence,
    EvidenceUnavailable,
    Outcome,
    SendResult,
    SessionStatus,
)


def message_id(body: Any) -> str | None:
    key = body.get("key") if isinstance(body, Mapping) else None
    return text_id(key.get("id")) if isinstance(key, Mapping) else None


def has_message_id(body: Any) -> bool:
    return message_id(body) is not None


def _says(*words: str):
    def test(body: Any) -> bool:
        text = str(body.get("response", "")) if isinstance(body, Mapping) else ""
        return any(w.lower() in text.lower() for w in words)
    return test


connection_closed = _says("Connection Closed", "not connected")


# -- POST /message/sendText/{instance}: the answer -> the outcome (first matching row wins) ----------
RULES: tuple[Rule, ...] = (
    #    HTTP status       the body                   outcome                    meaning
    Rule(OK,               has_message_id,            Outcome.SENT,              "sent, key.id is its id"),
    Rule(OK,               is_object,                 Outcome.SENT_WITHOUT_ID,   "sent, no key.id"),
    Rule(OK,               anything,                  Outcome.UNKNOWN,           "2xx that is not a JSON object"),
    Rule((400, 422),       anything,                  Outcome.REJECTED,          "Evolution refused the message"),
    Rule((401, 403),       anything,                  Outcome.UNREACHABLE,       "Evolution refused our apikey"),
    Rule((404,),           anything,                  Outcome.UNREACHABLE,       "no such Evolution instance or route"),
    Rule((429,),           anything,                  Outcome.RATE_LIMITED,      "Evolution asks us to slow down"),
    Rule(SERVER_ERRORS,    connection_closed,         Outcome.SESSION_NOT_READY, "instance not connected to WhatsApp"),
    Rule(SERVER_ERRORS,    anything,                  Outcome.UNKNOWN,           "Evolution failed while sending"),
)

# connectionState -> the sender's session states
SESSION_STATES: dict[str, str] = {
    "open": "READY",
    "connecting": "CONNECTING",
    "close": "DISCONNECTED",
}


def remote_jid(to: str) -> str:
    return f"{to}@s.whatsapp.net"


def message_text(record: Mapping) -> str | None:
    content = record.get("message")
    if not isinstance(content, Mapping):
        return None
    if isinstance(content.get("conversation"), str):
        return content["conversation"]
    extended = content.get("extendedTextMessage")
    if isinstance(extended, Mapping) and isinstance(extended.get("text"), str):
        return extended["text"]
    return None


def _records(body: Any) -> list:
    """findMessages answers {"messages": {"records": [...]}} (v2) or a plain list (older builds)."""
    if isinstance(body, list):
        return body
    messages = body.get("messages") if isinstance(body, Mapping) else None
    if isinstance(messages, Mapping) and isinstance(messages.get("records"), list):
        return messages["records"]
    if isinstance(messages, list):
        return messages
    raise EvidenceUnavailable("Evolution findMessages: unexpected answer shape")


def _instance_state(body: Any) -> Any:
    instance = body.get("instance") if isinstance(body, Mapping) else None
    return instance.get("state") if isinstance(instance, Mapping) else None


class EvolutionGateway(ApiGateway):
    kind = "evolution"
    RULES = RULES
    REASON_PATHS = (("response", "message"), ("error",), ("message",))

    def __init__(self, base_url: str, *, session: str = "default", **kw):
        super().__init__(base_url, **kw)
        self.instance = session

    def auth_headers(self) -> dict[str, str]:
        return {"apikey": self._api_key} if self._api_key else {}

    def message_id(self, body: Any) -> str | None:
        return message_id(body)

    def instance_for(self, cliente_id: int) -> str:
        return self.instance.replace("{cliente_id}", str(int(cliente_id)))

    def status(self, cliente_id: int) -> SessionStatus:
        name = self.instance_for(cliente_id)
        return self.session_status(f"/instance/connectionState/{name}", _instance_state, SESSION_STATES,
                                   label="Evolution", key_name="apikey", what=f"instance {name!r}")

    def send(self, cliente_id: int, to: str, message: str) -> SendResult:
        return self.post_send(f"{self.base_url}/message/sendText/{self.instance_for(cliente_id)}",
                              {"number": to, "text": message})

    def find_sent(self, cliente_id: int, to: str, message: str, since_epoch: float) -> Evidence | None:
        url = f"{self.base_url}/chat/findMessages/{self.instance_for(cliente_id)}"
        try:
            response = self.request("POST", url, json={"where": {"key": {"remoteJid": remote_jid(to), "fromMe": True}}})
        except requests.RequestException as exc:
            raise EvidenceUnavailable(f"Evolution unreachable ({type(exc).__name__})") from None
        if response.status_code not in (200, 201):
            raise EvidenceUnavailable(f"Evolution findMessages answered HTTP {response.status_code}")
        for record in _records(parse_json(response)):
            if not isinstance(record, Mapping):
                continue
            key = record.get("key") if isinstance(record.get("key"), Mapping) else {}
            if key.get("fromMe") is not True or message_text(record) != message:
                continue
            try:
                sent = float(record.get("messageTimestamp"))
            except (TypeError, ValueError):
                continue
            found = text_id(key.get("id"))
            if found and sent >= since_epoch:
                return Evidence(found, sent, "evolution findMessages lookup")
        return None


def build(config, client_id: str = "", pool_size: int = 32) -> EvolutionGateway:
    gw = config.gateway
    return EvolutionGateway(gw.base_url, session=gw.session, api_key=gw.api_key, send_timeout_s=gw.send_timeout_s,
                            status_timeout_s=gw.status_timeout_s, client_id=client_id, pool_size=pool_size)
