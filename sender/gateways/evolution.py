"""`gateway.kind: evolution` — Evolution API v2 (DESIGN.md section 11).

    GET  {base_url}/instance/connectionState/{instance}  -> {"instance": {"instanceName", "state":
    "open" | ...}}
    POST {base_url}/message/sendText/{instance}  {number: "<digits>", text}  -> 201 {"key": {"id",
    ...}, ...}
    POST {base_url}/chat/findMessages/{instance}  {where: {key: {remoteJid, fromMe: true}}}  (the
    evidence lookup)

`apikey: gateway.api_key`. The instance is `gateway.session` (`{cliente_id}` in it:
one instance per client). Errors come as {"status", "error", "response": {"message": ...}}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envios.sender.gateways import api_base, http
from envios.sender.gateways.api_base import OK, SERVER_ERRORS, Rule, anything, is_object
from envios.sender.gateways.base import Evidence, EvidenceUnavailable, Outcome, SendResult


def message_id(body: Any) -> str | None:
    key = body.get("key") if isinstance(body, Mapping) else None
    return http.text_id(key.get("id")) if isinstance(key, Mapping) else None


has_message_id = api_base.finds_id(message_id)


def _says(*words: str):
    def test(body: Any) -> bool:
        text = str(body.get("response", "")) if isinstance(body, Mapping) else ""
        return any(w.lower() in text.lower() for w in words)

    return test


connection_closed = _says("Connection Closed", "not connected")


# -- POST /message/sendText/{instance}: the answer -> the outcome (first matching row wins)
# ----------
RULES: tuple[Rule, ...] = (
    #    HTTP status       the body                   outcome                    meaning
    Rule(OK, has_message_id, Outcome.SENT, "sent, key.id is its id"),
    Rule(OK, is_object, Outcome.SENT_WITHOUT_ID, "sent, no key.id"),
    Rule(OK, anything, Outcome.UNKNOWN, "2xx that is not a JSON object"),
    Rule((400, 422), anything, Outcome.REJECTED, "Evolution refused the message"),
    Rule((401, 403), anything, Outcome.UNREACHABLE, "Evolution refused our apikey"),
    Rule((404,), anything, Outcome.UNREACHABLE, "no such Evolution instance or route"),
    Rule((429,), anything, Outcome.RATE_LIMITED, "Evolution asks us to slow down"),
    Rule(
        SERVER_ERRORS,
        connection_closed,
        Outcome.SESSION_NOT_READY,
        "instance not connected to WhatsApp",
    ),
    Rule(SERVER_ERRORS, anything, Outcome.UNKNOWN, "Evolution failed while sending"),
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


class EvolutionGateway(api_base.NamedSessionGateway):
    kind = "evolution"
    LABEL = "Evolution"
    RULES = RULES
    REASON_PATHS = (("response", "message"), ("error",), ("message",))
    AUTH_HEADER = "apikey"
    KEY_NAME = "apikey"
    SESSION_WORD = "instance"
    STATUS_PATH = "/instance/connectionState/{name}"
    STATE_PATH = ("instance", "state")
    SESSION_STATES = SESSION_STATES
    message_id = staticmethod(message_id)

    def send(self, cliente_id: int, to: str, message: str) -> SendResult:
        return self.post_send(
            f"{self.base_url}/message/sendText/{self.session_for(cliente_id)}",
            {"number": to, "text": message},
        )

    def find_sent(
        self, cliente_id: int, to: str, message: str, since_epoch: float
    ) -> Evidence | None:
        url = f"{self.base_url}/chat/findMessages/{self.session_for(cliente_id)}"
        where = {"key": {"remoteJid": remote_jid(to), "fromMe": True}}
        for record in _records(
            self.lookup("POST", url, "findMessages", (200, 201), json={"where": where})
        ):
            if not isinstance(record, Mapping):
                continue
            key = record.get("key") if isinstance(record.get("key"), Mapping) else {}
            if key.get("fromMe") is not True or message_text(record) != message:
                continue
            try:
                sent = float(record.get("messageTimestamp"))
            except (TypeError, ValueError):
                continue
            found = http.text_id(key.get("id"))
            if found and sent >= since_epoch:
                return Evidence(found, sent, "evolution findMessages lookup")
        return None


build = EvolutionGateway.from_config
