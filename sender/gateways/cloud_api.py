"""`gateway.kind: cloud_api` — Meta's WhatsApp Cloud API (DESIGN.md section 11).

    POST {base_url}/{api_version}/{phone_number_id}/messages   Authorization: Bearer {api_key}
         {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "<digits>",
          "type": "text", "text": {"body": ...}, "biz_opaque_callback_data": "<row id>"}
      -> 200 {"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}
      -> 4xx {"error": {"message", "type", "code", "error_subcode", "error_data": {"details"},
      "fbtrace_id"}}

With `gateway.template` set, every message is that approved template instead
(`type: template`, `gateway.template_language`), its body parameter {{1}} the
recipient's name when the row has one: outside the 24-hour window (131047) only a
template can start a conversation.

`biz_opaque_callback_data` carries the row's id: the status webhooks name the row
even when this answer was lost (`sender.webhooks`). There is no session to be ready:
the number is ready unless the account said otherwise (token, restriction), which
stops every session of the sender (Outcome.ACCOUNT_BLOCKED) until a person acts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envios.sender.gateways import api_base, http
from envios.sender.gateways.api_base import OK, SERVER_ERRORS, Rule, anything, is_object
from envios.sender.gateways.base import Outcome, SendResult, SessionStatus

from envios.errors import ConfigError


def message_id(body: Any) -> str | None:
    messages = body.get("messages") if isinstance(body, Mapping) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], Mapping):
        return http.text_id(messages[0].get("id"))
    return None


has_message_id = api_base.finds_id(message_id)


def error_code(body: Any) -> int | None:
    error = body.get("error") if isinstance(body, Mapping) else None
    code = error.get("code") if isinstance(error, Mapping) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def code(*codes: int):
    def test(body: Any) -> bool:
        return error_code(body) in codes

    test.__name__ = f"code_{'_'.join(map(str, codes))}"
    return test


ANY_4XX = tuple(range(400, 500))

# -- POST /messages: the answer -> the outcome (first matching row wins)
# ----------------------------
RULES: tuple[Rule, ...] = (
    #    HTTP status     the body (error.code)  outcome                    meaning
    Rule(OK, has_message_id, Outcome.SENT, "accepted, messages[0].id is the wamid"),
    Rule(OK, is_object, Outcome.SENT_WITHOUT_ID, "accepted, no messages[0].id"),
    Rule(OK, anything, Outcome.UNKNOWN, "2xx that is not a JSON object"),
    Rule(
        ANY_4XX,
        code(190),
        Outcome.ACCOUNT_BLOCKED,
        "access token expired or invalid (190): renew gateway.api_key",
    ),
    Rule(
        ANY_4XX,
        code(368),
        Outcome.ACCOUNT_BLOCKED,
        "account temporarily blocked for policy violations (368)",
    ),
    Rule(ANY_4XX, code(131031), Outcome.ACCOUNT_BLOCKED, "business account locked (131031)"),
    Rule(ANY_4XX, code(130429), Outcome.RATE_LIMITED, "Cloud API throughput reached (130429)"),
    Rule(ANY_4XX, code(131056), Outcome.RATE_LIMITED, "too many messages to this number (131056)"),
    Rule(ANY_4XX, code(131026), Outcome.REJECTED, "message undeliverable to this number (131026)"),
    Rule(
        ANY_4XX,
        code(131047),
        Outcome.REJECTED,
        "more than 24 hours since the person last wrote: only a template may be sent (131047)",
    ),
    Rule(ANY_4XX, code(100, 131008, 131009), Outcome.REJECTED, "invalid parameter"),
    Rule(
        ANY_4XX,
        code(132000),
        Outcome.REJECTED,
        "template parameters do not match this row (132000)",
    ),
    Rule(
        ANY_4XX,
        code(132001),
        Outcome.ACCOUNT_BLOCKED,
        "template gateway.template does not exist in gateway.template_language (132001)",
    ),
    Rule((401,), anything, Outcome.ACCOUNT_BLOCKED, "Cloud API refused our token"),
    Rule((429,), anything, Outcome.RATE_LIMITED, "Cloud API asks us to slow down"),
    Rule(ANY_4XX, anything, Outcome.REJECTED, "Cloud API refused the message"),
    Rule(
        SERVER_ERRORS,
        code(131016),
        Outcome.GATEWAY_ERROR,
        "Cloud API service unavailable, not sent (131016)",
    ),
    Rule(SERVER_ERRORS, anything, Outcome.UNKNOWN, "Cloud API failed while sending"),
)


class CloudApiGateway(api_base.ApiGateway):
    kind = "cloud_api"
    LABEL = "Cloud API"
    RULES = RULES
    REASON_PATHS = (("error", "error_data", "details"), ("error", "message"))
    AUTH_HEADER = "Authorization"
    AUTH_VALUE = "Bearer {key}"
    message_id = staticmethod(message_id)

    def __init__(
        self,
        base_url: str,
        *,
        phone_number_id: str,
        api_version: str = "v21.0",
        template: str = "",
        template_language: str = "es_AR",
        **kw,
    ):
        super().__init__(base_url, **kw)
        self.template, self.template_language = template.strip(), template_language.strip()
        self.messages_url = f"{self.base_url}/{api_version.strip('/')}/{phone_number_id}/messages"
        self.blocked: str = ""  # set by an ACCOUNT_BLOCKED answer: the number is not ready any more

    def status(self, cliente_id: int) -> SessionStatus:
        if self.blocked:
            return SessionStatus("ERROR", self.blocked)
        return SessionStatus("READY")

    def send(self, cliente_id: int, to: str, message: str) -> SendResult:
        return self._send(to, message, None, None)

    def send_row(
        self, cliente_id: int, to: str, message: str, envio_id: int, name: str | None = None
    ) -> SendResult:
        return self._send(to, message, envio_id, name)

    def _send(self, to: str, message: str, envio_id: int | None, name: str | None) -> SendResult:
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
        }
        if self.template:
            template: dict[str, Any] = {
                "name": self.template,
                "language": {"code": self.template_language},
            }
            if name:
                template["components"] = [
                    {"type": "body", "parameters": [{"type": "text", "text": name}]}
                ]
            payload.update(type="template", template=template)
        else:
            payload.update(type="text", text={"preview_url": False, "body": message})
        if envio_id is not None:
            payload["biz_opaque_callback_data"] = str(int(envio_id))
        result = self.post_send(self.messages_url, payload)
        if result.outcome is Outcome.ACCOUNT_BLOCKED:
            self.blocked = result.reason
        return result


def build(config, client_id: str = "", pool_size: int = 32) -> CloudApiGateway:
    gw = config.gateway
    if not str(gw.phone_number_id).strip():
        raise ConfigError(
            "config key gateway.phone_number_id: required when gateway.kind is cloud_api"
        )
    return CloudApiGateway.from_config(
        config,
        client_id,
        pool_size,
        phone_number_id=str(gw.phone_number_id).strip(),
        api_version=gw.api_version,
        template=gw.template,
        template_language=gw.template_language,
    )
