"""`gateway.kind: session_manager` (and `simulator`): the contract of DESIGN.md section 9.

    GET  {base_url}/status   X-Cliente-Id: N   -> {"state": "READY" | ...}   ("status" on older builds)
    POST {base_url}/send     X-Cliente-Id: N   {"cliente_id": N, "to": "549...", "message": "..."}

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
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sender.gateways import retry_after
from sender.gateways.base import READY, SESSION_STATES, Gateway, Outcome, SendResult, SessionStatus
from sender.phones import scrub

log = logging.getLogger("envios.sender.gateway")

# -- how an HTTP answer to POST /send is classified (DESIGN.md sections 3 and 9) -----
#
#   2xx, JSON, ok, message_id ........ SENT
#   2xx, JSON, ok, no message_id ..... SENT_WITHOUT_ID   (counted; the watcher shows it)
#   2xx, anything else ............... UNKNOWN           (not JSON, ok:false, error:true)
#   400, 422 ......................... REJECTED          (never sendable: error)
#   409 .............................. SESSION_NOT_READY
#   429 .............................. RATE_LIMITED      (Retry-After honoured)
#   401, 403 ......................... UNREACHABLE       (key refused before anything happened)
#   500 code WHATSAPP_ERROR .......... GATEWAY_ERROR     (the gateway says it did not send)
#   anything else .................... UNKNOWN
#
# and a request that fails:
#
#   refused / DNS / connect timeout .. UNREACHABLE       (the request never left)
#   read timeout, reset, broken pipe . UNKNOWN           (it may have been delivered)
BY_STATUS: Mapping[int, Outcome] = {
    400: Outcome.REJECTED,
    422: Outcome.REJECTED,
    409: Outcome.SESSION_NOT_READY,
    429: Outcome.RATE_LIMITED,
    401: Outcome.UNREACHABLE,
    403: Outcome.UNREACHABLE,
}
DID_NOT_SEND_5XX_CODES = frozenset({"WHATSAPP_ERROR"})

REASON_MAX = 300


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message_id(body: Mapping) -> str | None:
    value = body.get("message_id", body.get("messageId"))
    if isinstance(value, Mapping):  # whatsapp-web.js id object
        value = value.get("_serialized")
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
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


def classify_response(response: requests.Response, latency_s: float = 0.0) -> SendResult:
    """The outcome of an answered POST /send."""
    status = response.status_code
    body = _json(response)
    common: dict[str, Any] = {"http_status": status, "latency_s": latency_s}
    if 200 <= status < 300:
        if not isinstance(body, Mapping):
            return SendResult(Outcome.UNKNOWN, reason=f"HTTP {status} with a body that is not a JSON object", **common)
        if body.get("ok") is False or body.get("error") not in (None, False):
            return SendResult(Outcome.UNKNOWN, reason=_error_text(status, body, response), **common)
        return SendResult.sent(_message_id(body), **common)
    outcome = BY_STATUS.get(status)
    if outcome is None and status >= 500 and isinstance(body, Mapping) and body.get("code") in DID_NOT_SEND_5XX_CODES:
        outcome = Outcome.GATEWAY_ERROR
    if outcome is None:
        outcome = Outcome.UNKNOWN
    retry_after = _retry_after(response) if outcome is Outcome.RATE_LIMITED else None
    return SendResult(outcome, reason=_error_text(status, body, response), retry_after_s=retry_after, **common)


def _retry_after(response: requests.Response) -> float | None:
    return retry_after.parse(response.headers.get("Retry-After"))  # RFC 9110; None: configured wait


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
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, _NEVER_LEFT_ERRORS):
            return True
        if isinstance(item, urllib3.exceptions.MaxRetryError):
            stack.append(item.reason)
        if isinstance(item, BaseException):
            stack.extend(a for a in item.args if isinstance(a, BaseException))
            stack.append(item.__cause__)
            stack.append(item.__context__)
    return False


def classify_exception(exc: requests.RequestException, latency_s: float = 0.0) -> SendResult:
    """The outcome of a POST /send that got no answer."""
    name = type(exc).__name__
    if _never_left(exc):
        return SendResult(Outcome.UNREACHABLE, reason=f"gateway unreachable ({name})", latency_s=latency_s)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return SendResult(Outcome.UNKNOWN, reason=f"no answer within the send timeout ({name})", latency_s=latency_s)
    return SendResult(Outcome.UNKNOWN, reason=f"connection lost mid-request ({name})", latency_s=latency_s)


class SessionManagerGateway(Gateway):
    kind = "session_manager"
    max_retry_after_s = retry_after.DEFAULT_MAX_S

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str = "",
        send_timeout_s: float = 60.0,
        status_timeout_s: float = 5.0,
        client_id: str = "",
        pool_size: int = 32,
    ):
        self.base_url = base_url.rstrip("/")
        self.send_timeout_s = float(send_timeout_s)
        self.status_timeout_s = float(status_timeout_s)
        self._api_key = api_key or ""
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment between us and the gateway
        # /send: no retry of any kind. /status is idempotent: one retry of a
        # connection that the gateway closed while idle is harmless.
        self._send_adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size,
                                         max_retries=Retry(total=0, connect=0, read=0, redirect=0, status=0))
        self.session.mount(self.base_url + "/", self._send_adapter)
        self._status_adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=pool_size,
            max_retries=Retry(total=1, connect=1, read=1, redirect=0, status=0, allowed_methods={"GET"}))
        self.session.mount(self.base_url + "/status", self._status_adapter)
        self.session.headers["User-Agent"] = f"envios-sender/{client_id}" if client_id else "envios-sender"
        self.session.headers["Accept"] = "application/json"

    def __repr__(self) -> str:  # never the key
        return f"SessionManagerGateway({self.base_url!r})"

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
            return SessionStatus("UNREACHABLE", f"gateway {self.base_url} unreachable ({type(exc).__name__})")
        body = _json(response)
        if response.status_code in (401, 403):
            return SessionStatus("UNREACHABLE", f"gateway refused our API key (HTTP {response.status_code})")
        if response.status_code != 200 or not isinstance(body, Mapping):
            return SessionStatus("ERROR", f"GET /status answered HTTP {response.status_code}")
        state = body.get("state", body.get("status"))
        if not isinstance(state, str) or state.upper() not in SESSION_STATES:
            return SessionStatus("ERROR", f"GET /status gave an unknown state {str(state)[:40]!r}")
        state = state.upper()
        log.debug("GET /status cliente_id=%s -> %s", cliente_id, state)
        return SessionStatus(state, "" if state == READY else f"session is {state}")

    def send(self, cliente_id: int, to: str, message: str) -> SendResult:
        payload = json.dumps({"cliente_id": int(cliente_id), "to": to, "message": message}, ensure_ascii=False)
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
        return retry_after.clamp(classify_response(response, time.monotonic() - started), self.max_retry_after_s)

    def close(self) -> None:
        self.session.close()


def build(config, client_id: str = "", pool_size: int = 32) -> SessionManagerGateway:
    gw = config.gateway
    gateway = SessionManagerGateway(
        gw.base_url,
        api_key=gw.api_key,
        send_timeout_s=gw.send_timeout_s,
        status_timeout_s=gw.status_timeout_s,
        client_id=client_id,
        pool_size=pool_size,
    )
    gateway.kind = gw.kind
    gateway.max_retry_after_s = float(gw.max_retry_after_s)
    return gateway
