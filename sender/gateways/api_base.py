"""What the API gateways (`waha`, `evolution`, `cloud_api`) share besides the HTTP client
(`http.HttpGateway`): outcome tables written as rules, the API key in one header.

Each adapter lists its rules as a literal table, read top to bottom; the first
rule whose HTTP status and body test match gives the outcome:

    Rule((422,), session_not_working, Outcome.SESSION_NOT_READY, "422 naming the session status"),

A request that got no answer is classified as for the session manager
(`session_manager.classify_exception`): refused / DNS / connect timeout ->
UNREACHABLE (nothing left); read timeout, reset -> UNKNOWN (it may have been
delivered). A send is never retried by the HTTP stack.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from envios.sender.gateways import retry_after
from envios.sender.gateways.base import EvidenceUnavailable, Outcome, SendResult, SessionStatus
from envios.sender.gateways.http import HttpGateway, parse_json
from envios.sender.gateways.session_manager import classify_exception

from envios.phones import scrub

log = logging.getLogger("envios.sender.gateway")

REASON_MAX = 300
OK = tuple(range(200, 300))
SERVER_ERRORS = tuple(range(500, 600))


def anything(_body: Any) -> bool:
    return True


def is_object(body: Any) -> bool:
    return isinstance(body, Mapping)


def finds_id(message_id: Callable[[Any], str | None]) -> Callable[[Any], bool]:
    """The body test "carries a message id", for an adapter's own `message_id`."""

    def has_message_id(body: Any) -> bool:
        return message_id(body) is not None

    return has_message_id


@dataclass(frozen=True)
class Rule:
    statuses: Sequence[int]  # HTTP statuses the rule is about
    test: Callable[[Any], bool]  # on the parsed JSON body (None when not JSON)
    outcome: Outcome
    meaning: str  # for the reason and for people reading the table


def at_path(body: Any, path: Sequence[str]) -> Any:
    """body[path[0]][path[1]]..., or None where the body has no such nesting."""
    node = body
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def error_text(status: int, body: Any, response: requests.Response, *paths: tuple[str, ...]) -> str:
    """A short reason: the first text found in the body at one of `paths`, never the phone
    number."""
    found = ""
    for path in paths:
        node = at_path(body, path)
        if isinstance(node, (str, int)) and str(node).strip():
            found = str(node)
            break
        if isinstance(node, list) and node:
            found = json.dumps(node, ensure_ascii=False)[:120]
            break
    if not found and not isinstance(body, (Mapping, list)):
        found = (response.text or "")[:80].replace("\n", " ")
    return scrub(f"HTTP {status}: {found}".strip().rstrip(":"))[:REASON_MAX]


class ApiGateway(HttpGateway):
    """An HTTP adapter whose outcomes are RULES; the key goes in AUTH_HEADER."""

    kind = ""
    LABEL = ""  # the gateway's name in reasons: "WAHA"
    RULES: tuple[Rule, ...] = ()
    REASON_PATHS: tuple[tuple[str, ...], ...] = (("message",), ("error",))
    AUTH_HEADER = ""  # the header that carries gateway.api_key ...
    AUTH_VALUE = "{key}"  # ... and how

    def auth_headers(self) -> dict[str, str]:
        if not self._api_key:
            return {}
        return {self.AUTH_HEADER: self.AUTH_VALUE.format(key=self._api_key)}

    def message_id(self, body: Any) -> str | None:
        """The message id in a 2xx body, or None."""
        raise NotImplementedError

    def classify(self, response: requests.Response, latency_s: float = 0.0) -> SendResult:
        """The first rule of RULES that matches the answer; UNKNOWN when none does."""
        status = response.status_code
        body = parse_json(response)
        common: dict[str, Any] = {"http_status": status, "latency_s": latency_s}
        for rule in self.RULES:
            if status not in rule.statuses or not rule.test(body):
                continue
            if rule.outcome in (Outcome.SENT, Outcome.SENT_WITHOUT_ID):
                return SendResult.sent(self.message_id(body), **common)
            reason = f"{rule.meaning} ({error_text(status, body, response, *self.REASON_PATHS)})"
            wait = self.retry_after(response) if rule.outcome is Outcome.RATE_LIMITED else None
            return SendResult(
                rule.outcome, reason=reason[:REASON_MAX], retry_after_s=wait, **common
            )
        return SendResult(
            Outcome.UNKNOWN, reason=error_text(status, body, response, *self.REASON_PATHS), **common
        )

    def retry_after(self, response: requests.Response) -> float | None:
        """RFC 9110 (seconds or an HTTP date against the gateway's Date), capped; None: the
        configured wait."""
        seconds = retry_after.parse(
            response.headers.get("Retry-After"), date_header=response.headers.get("Date")
        )
        return None if seconds is None else min(seconds, self.max_retry_after_s)

    # -- HTTP ----------------------------------------------------------------------------------
    def post_send(self, url: str, payload: dict) -> SendResult:
        headers = {**self.auth_headers(), "Content-Type": "application/json; charset=utf-8"}
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        started = time.monotonic()
        try:
            response = self.session.post(
                url,
                data=data,
                headers=headers,
                timeout=(self.status_timeout_s, self.send_timeout_s),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return classify_exception(exc, time.monotonic() - started)
        return self.classify(response, time.monotonic() - started)

    def request(self, method: str, url: str, **kw) -> requests.Response:
        """A status or lookup request (idempotent); raises requests.RequestException."""
        headers = {**self.auth_headers(), **kw.pop("headers", {})}
        return self.session.request(
            method,
            url,
            headers=headers,
            timeout=(self.status_timeout_s, self.status_timeout_s),
            **kw,
        )

    def lookup(self, method: str, url: str, what: str, ok: Sequence[int] = (200,), **kw) -> Any:
        """The JSON answer of an evidence lookup; `EvidenceUnavailable` when there is none."""
        try:
            response = self.request(method, url, **kw)
        except requests.RequestException as exc:
            raise EvidenceUnavailable(f"{self.LABEL} unreachable ({type(exc).__name__})") from None
        if response.status_code not in ok:
            raise EvidenceUnavailable(f"{self.LABEL} {what} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise EvidenceUnavailable(f"{self.LABEL} {what}: not JSON") from None


class NamedSessionGateway(ApiGateway):
    """An API gateway that sends through a named WhatsApp session (WAHA's session, Evolution's
    instance): `gateway.session`, where `{cliente_id}` names one session per client."""

    SESSION_WORD = "session"  # what the gateway calls it, in reasons
    KEY_NAME = ""  # what the gateway calls gateway.api_key, in reasons
    STATUS_PATH = ""  # GET, with {name}
    STATE_PATH: tuple[str, ...] = ()  # where the status answer holds the gateway's own state
    SESSION_STATES: Mapping[str, str] = {}  # the gateway's session states -> ours

    def __init__(self, base_url: str, *, session: str = "default", **kw):
        super().__init__(base_url, **kw)
        self.session_name = session

    @classmethod
    def from_config(cls, config, client_id: str = "", pool_size: int = 32, **own) -> ApiGateway:
        session = config.gateway.session
        return super().from_config(config, client_id, pool_size, session=session, **own)

    def session_for(self, cliente_id: int) -> str:
        return self.session_name.replace("{cliente_id}", str(int(cliente_id)))

    def status(self, cliente_id: int) -> SessionStatus:
        """GET STATUS_PATH and map the gateway's own session state (looked up upper- or
        lower-case in SESSION_STATES) onto ours; every failure is a state, never an exception."""
        name = self.session_for(cliente_id)
        path = self.STATUS_PATH.format(name=name)
        label, what = self.LABEL, f"{self.SESSION_WORD} {name!r}"
        try:
            response = self.request("GET", f"{self.base_url}{path}")
        except requests.RequestException as exc:
            return SessionStatus(
                "UNREACHABLE", f"{label} {self.base_url} unreachable ({type(exc).__name__})"
            )
        if response.status_code in (401, 403):
            refused = f"{label} refused our {self.KEY_NAME} (HTTP {response.status_code})"
            return SessionStatus("UNREACHABLE", refused)
        if response.status_code == 404:
            return SessionStatus("ERROR", f"{label} has no {what}")
        state = at_path(parse_json(response), self.STATE_PATH)
        if response.status_code != 200 or not isinstance(state, str):
            return SessionStatus("ERROR", f"GET {path} answered HTTP {response.status_code}")
        states = self.SESSION_STATES
        mapped = states.get(state.upper(), states.get(state.lower(), "ERROR"))
        return SessionStatus(mapped, "" if mapped == "READY" else f"{label} {what} is {state}")
