"""`gateway.kind: waha` — WAHA, the WhatsApp HTTP API (DESIGN.md section 11).

    GET  {base_url}/api/sessions/{session}                 -> {"name", "status": "WORKING" | ...}
    POST {base_url}/api/sendText  {session, chatId: "<digits>@c.us", text}
    GET  {base_url}/api/{session}/chats/{chatId}/messages?limit=N   (the evidence lookup)

`X-Api-Key: gateway.api_key`. The session is `gateway.session`; a `{cliente_id}` in
it names one WAHA session per client (`envios-{cliente_id}`), otherwise every client
sends through the one session. The message id comes back in one of three shapes,
depending on WAHA's engine: `id` (string), `id._serialized` (WEBJS), `key.id` (NOWEB).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envios.sender.gateways import api_base, http
from envios.sender.gateways.api_base import OK, SERVER_ERRORS, Rule, anything, is_object
from envios.sender.gateways.base import Evidence, EvidenceUnavailable, Outcome, SendResult


def message_id(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return None
    found = http.text_id(body.get("id"))
    if found is None and isinstance(body.get("key"), Mapping):
        found = http.text_id(body["key"].get("id"))
    return found


has_message_id = api_base.finds_id(message_id)


def session_not_working(body: Any) -> bool:
    """WAHA's 422: {"error": "Session status is not as expected...", "status": "STOPPED",
    "expected": ["WORKING"]}."""
    return isinstance(body, Mapping) and (
        "expected" in body or "not as expected" in str(body.get("error", ""))
    )


# -- POST /api/sendText: the answer -> the outcome (first matching row wins)
# ------------------------
RULES: tuple[Rule, ...] = (
    #    HTTP status              the body                      outcome                    meaning
    Rule(OK, has_message_id, Outcome.SENT, "sent, with its id"),
    Rule(OK, is_object, Outcome.SENT_WITHOUT_ID, "sent, no id given"),
    Rule(OK, anything, Outcome.UNKNOWN, "2xx that is not a JSON object"),
    Rule((422,), session_not_working, Outcome.SESSION_NOT_READY, "session is not WORKING"),
    Rule((400, 422), anything, Outcome.REJECTED, "WAHA refused the request"),
    Rule((401, 403), anything, Outcome.UNREACHABLE, "WAHA refused our API key"),
    Rule((404,), anything, Outcome.UNREACHABLE, "no such WAHA session or route"),
    Rule((429,), anything, Outcome.RATE_LIMITED, "WAHA asks us to slow down"),
    Rule(SERVER_ERRORS, anything, Outcome.UNKNOWN, "WAHA failed while sending"),
)

# WAHA session status -> the sender's session states (DESIGN.md section 9 names)
SESSION_STATES: dict[str, str] = {
    "WORKING": "READY",
    "STARTING": "CONNECTING",
    "SCAN_QR_CODE": "AWAITING_QR",
    "STOPPED": "DISCONNECTED",
    "FAILED": "ERROR",
}

LOOKUP_LIMIT = 50  # messages of the chat read when looking for evidence


def chat_id(to: str) -> str:
    return f"{to}@c.us"


class WahaGateway(api_base.NamedSessionGateway):
    kind = "waha"
    LABEL = "WAHA"
    RULES = RULES
    REASON_PATHS = (("error",), ("message",), ("exception", "message"))
    AUTH_HEADER = "X-Api-Key"
    KEY_NAME = "API key"
    STATUS_PATH = "/api/sessions/{name}"
    STATE_PATH = ("status",)
    SESSION_STATES = SESSION_STATES
    message_id = staticmethod(message_id)

    def send(self, cliente_id: int, to: str, message: str) -> SendResult:
        payload = {"session": self.session_for(cliente_id), "chatId": chat_id(to), "text": message}
        return self.post_send(f"{self.base_url}/api/sendText", payload)

    def find_sent(
        self, cliente_id: int, to: str, message: str, since_epoch: float
    ) -> Evidence | None:
        name = self.session_for(cliente_id)
        url = f"{self.base_url}/api/{name}/chats/{chat_id(to)}/messages"
        messages = self.lookup(
            "GET",
            url,
            "chat messages lookup",
            params={"limit": LOOKUP_LIMIT, "downloadMedia": "false"},
        )
        if not isinstance(messages, list):
            raise EvidenceUnavailable("WAHA chat messages lookup: not a list")
        for item in messages:
            if not isinstance(item, Mapping) or item.get("fromMe") is not True:
                continue
            if item.get("body") != message:
                continue
            sent = _epoch(item.get("timestamp"))
            found = message_id(item)
            if found and sent is not None and sent >= since_epoch:
                return Evidence(found, sent, "waha chat messages lookup")
        return None


def _epoch(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number / 1000.0 if number > 1e11 else number  # seconds or milliseconds


build = WahaGateway.from_config
