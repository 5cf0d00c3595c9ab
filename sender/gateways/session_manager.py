"""`gateway.kind: session_manager` (and `simulator`): the contract of DESIGN.md section 9.

    GET  {base_url}/status   X-Cliente-Id: N   -> {"state": "READY" | ...}   ("status" on other
    builds;
                                                   venom adds "session": "admin": one session for
                                                   all)
    POST {base_url}/send     X-Cliente-Id: N   {"cliente_id": N, "to": "549...", "message": "..."}

The three builds' answers (multi-client, venom, whatsapp-web.js) are all read
by OUTCOME_TABLE below; a placeholder id (venom's "sent-via-ui") is never
returned as a message id.

One pooled `requests.Session` shared by all session workers; connect timeout
= gateway.status_timeout_s (a gateway that does not even accept the connection
is unreachable: nothing was sent), read timeout = gateway.send_timeout_s for
/send (a send slower than that is an UNKNOWN outcome) and status_timeout_s for
/status. /send is never retried by the HTTP stack: a retry can deliver twice.
The API key (gateway.api_key) goes in X-Api-Key and is never logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import requests
import urllib3
from envios.sender.gateways import retry_after
from envios.sender.gateways.base import (
    NO_ID_FROM_GATEWAY,
    READY,
    SESSION_STATES,
    Outcome,
    SendResult,
    SessionStatus,
)
from envios.sender.gateways.http import HttpGateway, parse_json, text_id

from envios.errors import chain
from envios.phones import scrub

log = logging.getLogger("envios.sender.gateway")

# -- how an HTTP answer to POST /send is classified (DESIGN.md sections 3 and 9) -----
#
# The three builds of the session manager (multi-client, venom, whatsapp-web.js)
# answer in different shapes; one table covers them all. A 2xx first:
#
#   2xx, JSON, ok/success, a real message id ...... SENT
# 2xx, JSON, ok/success, no id or a PLACEHOLDER . SENT_WITHOUT_ID  (venom: "sent-via-ui"; never
# stored)
# 2xx, anything else ............................ UNKNOWN          (not JSON, ok/success false,
# error)
#
# then every other answer, by (HTTP status, body "code"); the first row that matches wins:
ANY = "*"  # any body code, or none
_5XX = "5xx"  # any status from 500 to 599
#
OUTCOME_TABLE: tuple[tuple[int | str, str, Outcome], ...] = (
    # HTTP  body code             outcome                       who answers so
    # multi-client VALIDATION_ERROR / INVALID_NUMBER,
    (400, ANY, Outcome.REJECTED),
    # venom INVALID_CLIENTE_ID / INVALID_TO / INVALID_MESSAGE
    (422, ANY, Outcome.REJECTED),  # validation
    # whatsapp-web.js build: no /send route (HTML page)
    (404, ANY, Outcome.NO_ROUTE),
    (409, ANY, Outcome.SESSION_NOT_READY),  # multi-client SESSION_NOT_READY
    (503, "SESSION_NOT_READY", Outcome.SESSION_NOT_READY),  # venom, checked before sending
    (429, ANY, Outcome.RATE_LIMITED),  # Retry-After honoured
    # key refused before anything happened
    (401, ANY, Outcome.UNREACHABLE),
    # key refused before anything happened
    (403, ANY, Outcome.UNREACHABLE),
    # multi-client: the gateway says it did not send
    (_5XX, "WHATSAPP_ERROR", Outcome.GATEWAY_ERROR),
    # venom: the gateway says it did not send
    (_5XX, "SEND_FAILED", Outcome.GATEWAY_ERROR),
    # a proxy's 502, a crash: it may have been sent
    (_5XX, ANY, Outcome.UNKNOWN),
)
#   anything else (3xx, other 4xx) ................ UNKNOWN
#
# and a request that fails:
#
#   refused / DNS / connect timeout ............... UNREACHABLE      (the request never left)
#   read timeout, reset, broken pipe .............. UNKNOWN          (it may have been delivered)

# What the venom build answers in data.messageId: the send happened, but this is not an id.
PLACEHOLDER_IDS = frozenset({"sent-via-ui", "sent"})

REASON_MAX = 300


def outcome_of(status: int, code: Any) -> Outcome:
    """The OUTCOME_TABLE row for a non-2xx answer."""
    for table_status, table_code, outcome in OUTCOME_TABLE:
        status_matches = table_status == status or (table_status == _5XX and 500 <= status <= 599)
        if status_matches and table_code in (ANY, code):
            return outcome
    return Outcome.UNKNOWN


def _raw_message_id(body: Mapping) -> Any:
    data = body.get("data")
    for where in (body, data if isinstance(data, Mapping) else {}):
        for key in ("message_id", "messageId"):
            if where.get(key) is not None:
                return where[key]
    return None


def _error_text(status: int, body: Any, response: requests.Response) -> str:
    if isinstance(body, Mapping):
        code = body.get("code") or ""
        message = body.get("message") or body.get("error") or ""
        text = f"HTTP {status} {code}: {message}" if code else f"HTTP {status}: {message}"
    else:
        snippet = (response.text or "")[:80].replace("\n", " ")
        text = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
    return scrub(text.strip().rstrip(":"))[:REASON_MAX]


def _said_not_ok(body: Mapping) -> bool:
    return (
        body.get("ok") is False
        or body.get("success") is False
        or body.get("error") not in (None, False)
    )


def classify_response(response: requests.Response, latency_s: float = 0.0) -> SendResult:
    """The outcome of an answered POST /send."""
    status = response.status_code
    body = parse_json(response)
    common: dict[str, Any] = {"http_status": status, "latency_s": latency_s}
    if 200 <= status < 300:
        if not isinstance(body, Mapping):
            return SendResult(
                Outcome.UNKNOWN,
                reason=f"HTTP {status} with a body that is not a JSON object",
                **common,
            )
        if _said_not_ok(body):
            return SendResult(Outcome.UNKNOWN, reason=_error_text(status, body, response), **common)
        message_id = text_id(_raw_message_id(body))
        if message_id in PLACEHOLDER_IDS:
            return SendResult(
                Outcome.SENT_WITHOUT_ID,
                reason=f"{NO_ID_FROM_GATEWAY} (placeholder {message_id!r})",
                gateway_gives_no_id=True,
                **common,
            )
        return SendResult.sent(message_id, **common)
    outcome = outcome_of(status, body.get("code") if isinstance(body, Mapping) else None)
    reason = _error_text(status, body, response)
    if outcome is Outcome.NO_ROUTE:
        reason = f"the gateway has no POST /send route (HTTP {status})"
    retry_after = _retry_after(response) if outcome is Outcome.RATE_LIMITED else None
    return SendResult(outcome, reason=reason, retry_after_s=retry_after, **common)


def _retry_after(response: requests.Response) -> float | None:
    # RFC 9110, against the gateway's own Date header; None: the configured wait applies
    return retry_after.parse(
        response.headers.get("Retry-After"), date_header=response.headers.get("Date")
    )


# urllib3 errors raised before a single byte of the request was sent.
_NEVER_LEFT_ERRORS = tuple(
    getattr(urllib3.exceptions, name)
    for name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError")
    if hasattr(urllib3.exceptions, name)
)


def _never_left(exc: BaseException) -> bool:
    """True when the request certainly did not reach the gateway (refused, DNS, connect timeout)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(isinstance(item, _NEVER_LEFT_ERRORS) for item in chain(exc))


def classify_exception(exc: requests.RequestException, latency_s: float = 0.0) -> SendResult:
    """The outcome of a POST /send that got no answer."""
    name = type(exc).__name__
    if _never_left(exc):
        return SendResult(
            Outcome.UNREACHABLE, reason=f"gateway unreachable ({name})", latency_s=latency_s
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return SendResult(
            Outcome.UNKNOWN,
            reason=f"no answer within the send timeout ({name})",
            latency_s=latency_s,
        )
    return SendResult(
        Outcome.UNKNOWN, reason=f"connection lost mid-request ({name})", latency_s=latency_s
    )


class SessionManagerGateway(HttpGateway):
    """The key goes in X-Api-Key, the client in X-Cliente-Id; GET /status is retried once."""

    kind = "session_manager"
    RETRIED_ONCE = ("/status",)

    def _headers(self, cliente_id: int) -> dict[str, str]:
        headers = {"X-Cliente-Id": str(int(cliente_id))}
        if self._api_key:
            headers["X-Api-Key"] = self._api_key
        return headers

    def status(self, cliente_id: int) -> SessionStatus:
        try:
            response = self.session.get(
                f"{self.base_url}/status",
                params={"cliente_id": int(cliente_id)},
                headers=self._headers(cliente_id),
                timeout=(self.status_timeout_s, self.status_timeout_s),
            )
        except requests.RequestException as exc:
            log.debug("GET /status cliente_id=%s failed: %s", cliente_id, type(exc).__name__)
            return SessionStatus(
                "UNREACHABLE", f"gateway {self.base_url} unreachable ({type(exc).__name__})"
            )
        body = parse_json(response)
        if response.status_code in (401, 403):
            return SessionStatus(
                "UNREACHABLE", f"gateway refused our API key (HTTP {response.status_code})"
            )
        if response.status_code != 200 or not isinstance(body, Mapping):
            return SessionStatus("ERROR", f"GET /status answered HTTP {response.status_code}")
        # multi-client and venom: "state"; whatsapp-web.js and older builds: "status"
        state = body.get("state", body.get("status"))
        shared = (
            body.get("session")
            if isinstance(body.get("session"), str) and body["session"]
            else None
        )
        if not isinstance(state, str) or state.upper() not in SESSION_STATES:
            return SessionStatus(
                "ERROR", f"GET /status gave an unknown state {str(state)[:40]!r}", shared
            )
        state = state.upper()
        log.debug("GET /status cliente_id=%s -> %s", cliente_id, state)
        return SessionStatus(state, "" if state == READY else f"session is {state}", shared)

    def send(self, cliente_id: int, to: str, message: str) -> SendResult:
        payload = json.dumps(
            {"cliente_id": int(cliente_id), "to": to, "message": message}, ensure_ascii=False
        )
        headers = self._headers(cliente_id)
        headers["Content-Type"] = "application/json; charset=utf-8"
        started = time.monotonic()
        try:
            response = self.session.post(
                f"{self.base_url}/send",
                data=payload.encode("utf-8"),
                headers=headers,
                timeout=(self.status_timeout_s, self.send_timeout_s),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return classify_exception(exc, time.monotonic() - started)
        return retry_after.clamp(
            classify_response(response, time.monotonic() - started), self.max_retry_after_s
        )


def build(config, client_id: str = "", pool_size: int = 32) -> SessionManagerGateway:
    gw = config.gateway
    gateway = SessionManagerGateway.from_config(config, client_id, pool_size)
    gateway.kind = gw.kind
    gateway.max_retry_after_s = float(gw.max_retry_after_s)
    return gateway
