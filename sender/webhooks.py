"""`envios webhooks`: the gateways' delivery acknowledgements, as a WSGI app (DESIGN.md section 11).

    POST /webhooks/session_manager   {"message_id", "ack": -1..4, "to"?, "body"?}   (or a list of
    them)
    POST /webhooks/waha              {"event": "message.ack", "session", "payload": {"id", "fromMe",
    "to", "body"?, "ack"}}
    POST /webhooks/evolution         {"event": "messages.update", "instance", "data": {"keyId",
    "remoteJid", "fromMe", "status"}}
    POST /webhooks/cloud_api         {"object": "whatsapp_business_account", "entry": [{"changes":
    [{"value": {"statuses": [...]}}]}]}
    GET  /webhooks/cloud_api?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...   (Meta's
    handshake)
    GET  /metrics                    envios_webhook_events_total{kind, result},
    envios_webhook_refused_total{kind, reason}

Authentication: `webhooks.secret` in the `X-Webhook-Secret` header or `?secret=` for the
first three; Cloud API's `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with
`webhooks.app_secret`). Compared in constant time; an empty secret refuses everything.
A refused call gets 401 and writes nothing. Each event is applied by `sender.delivery`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from envios.sender import delivery
from envios.sender.delivery import Ack
from envios.sender.pool import ConnectionPool
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from envios.clock import Clock
from envios.domain import GATEWAY_DIALECTS
from envios.errors import EnviosError
from envios.logfmt import kv
from envios.phones import scrub
from envios.store.connector import Database

log = logging.getLogger("envios.webhooks")

KINDS = GATEWAY_DIALECTS  # the simulator acknowledges in session_manager's dialect
MAX_BODY = 1024 * 1024

# whatsapp-web.js / WAHA ack numbers (WAMessageAck): -1 ERROR, 0 PENDING, 1 SERVER, 2 DEVICE, 3
# READ, 4 PLAYED
WWEBJS_ACKS: dict[int, str | None] = {
    -1: "failed",
    0: None,
    1: "sent",
    2: "delivered",
    3: "read",
    4: "read",
}
# Evolution API v2 messages.update `status`
EVOLUTION_STATUSES: dict[str, str | None] = {
    "ERROR": "failed",
    "PENDING": None,
    "SERVER_ACK": "sent",
    "DELIVERY_ACK": "delivered",
    "READ": "read",
    "PLAYED": "read",
}
CLOUD_STATUSES = ("sent", "delivered", "read", "failed")


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("_serialized")
    return (
        str(value).strip()
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip()
        else None
    )


def _digits(jid: Any) -> str | None:
    if not isinstance(jid, str) or "@" not in jid:
        return None
    user = jid.split("@")[0].split(":")[0]
    return user if user.isdigit() else None


def _items(value: Any) -> list:
    return value if isinstance(value, list) else [value]


# -- each gateway's payload -> acknowledgements ----------------------------------------------------


def parse_session_manager(body: Any) -> list[Ack]:
    acks = []
    for item in _items(body):
        if not isinstance(item, Mapping):
            continue
        ack = item.get("ack")
        status = WWEBJS_ACKS.get(ack) if isinstance(ack, int) else None
        to = item.get("to")
        acks.append(
            Ack(
                "session_manager",
                _id(item.get("message_id")),
                status,
                to=str(to) if isinstance(to, (str, int)) and str(to).isdigit() else _digits(to),
                text=item.get("body") if isinstance(item.get("body"), str) else None,
                error="the session manager reports ack -1 (error)" if status == "failed" else "",
            )
        )
    return acks


def parse_waha(body: Any) -> list[Ack]:
    acks = []
    for item in _items(body):
        if not isinstance(item, Mapping) or item.get("event") != "message.ack":
            continue
        payload = item.get("payload")
        if not isinstance(payload, Mapping) or payload.get("fromMe") is False:
            continue
        ack = payload.get("ack")
        status = WWEBJS_ACKS.get(ack) if isinstance(ack, int) else None
        acks.append(
            Ack(
                "waha",
                _id(payload.get("id")),
                status,
                to=_digits(payload.get("to")),
                text=payload.get("body") if isinstance(payload.get("body"), str) else None,
                error=f"WAHA reports ack {payload.get('ackName') or ack}"
                if status == "failed"
                else "",
            )
        )
    return acks


def parse_evolution(body: Any) -> list[Ack]:
    acks = []
    for item in _items(body):
        if not isinstance(item, Mapping):
            continue
        event = str(item.get("event", "")).lower().replace("_", ".")
        if event != "messages.update":
            continue
        for data in _items(item.get("data")):
            if not isinstance(data, Mapping) or data.get("fromMe") is False:
                continue
            key = data.get("key") if isinstance(data.get("key"), Mapping) else {}
            raw = data.get("status") or (data.get("update") or {}).get("status")
            status = EVOLUTION_STATUSES.get(str(raw).upper()) if raw is not None else None
            acks.append(
                Ack(
                    "evolution",
                    _id(data.get("keyId") or key.get("id")),
                    status,
                    to=_digits(data.get("remoteJid") or key.get("remoteJid")),
                    error="Evolution reports status ERROR" if status == "failed" else "",
                )
            )
    return acks


def parse_cloud_api(body: Any) -> list[Ack]:
    acks = []
    if not isinstance(body, Mapping):
        return acks
    for entry in _items(body.get("entry")):
        for change in _items(entry.get("changes") if isinstance(entry, Mapping) else None):
            value = change.get("value") if isinstance(change, Mapping) else None
            for st in _items(value.get("statuses") if isinstance(value, Mapping) else None):
                if not isinstance(st, Mapping):
                    continue
                status = st.get("status") if st.get("status") in CLOUD_STATUSES else None
                reference = str(st.get("biz_opaque_callback_data") or "")
                errors = [e for e in _items(st.get("errors")) if isinstance(e, Mapping)]
                error = ""
                if errors:
                    e = errors[0]
                    details = (
                        (e.get("error_data") or {}).get("details")
                        if isinstance(e.get("error_data"), Mapping)
                        else None
                    )
                    text = scrub(str(details or e.get("message") or e.get("title") or ""))
                    error = f"{e.get('code')}: {text}".strip()
                acks.append(
                    Ack(
                        "cloud_api",
                        _id(st.get("id")),
                        status,
                        envio_id=int(reference) if reference.isdigit() else None,
                        to=str(st.get("recipient_id"))
                        if str(st.get("recipient_id", "")).isdigit()
                        else None,
                        error=error,
                    )
                )
    return acks


PARSERS: dict[str, Callable[[Any], list[Ack]]] = {
    "session_manager": parse_session_manager,
    "waha": parse_waha,
    "evolution": parse_evolution,
    "cloud_api": parse_cloud_api,
}


# -- authentication --------------------------------------------------------------------------------


def signature_ok(app_secret: str, raw: bytes, header: str | None) -> bool:
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256=") :].strip().lower())


def secret_ok(secret: str, given: str | None) -> bool:
    return (
        bool(secret)
        and given is not None
        and hmac.compare_digest(secret.encode("utf-8"), given.encode("utf-8"))
    )


# -- the app ---------------------------------------------------------------------------------------


class WebhookApp:
    def __init__(
        self,
        database: Database,
        clock: Clock,
        *,
        secret: str,
        app_secret: str,
        verify_token: str,
        in_flight_s: float = 0.0,
    ):
        self.database, self.clock, self.in_flight_s = database, clock, in_flight_s
        self.secret, self.app_secret, self.verify_token = secret, app_secret, verify_token
        self.pool = ConnectionPool(database, keep=8)
        self.registry = CollectorRegistry()
        self.events = Counter(
            "envios_webhook_events",
            "acknowledgement events received, by what they did",
            ["kind", "result"],
            registry=self.registry,
        )
        self.refused = Counter(
            "envios_webhook_refused",
            "webhook calls refused, by reason",
            ["kind", "reason"],
            registry=self.registry,
        )
        for kind in KINDS:
            for result in delivery.RESULTS:
                self.events.labels(kind, result)
            for reason in ("unauthenticated", "bad_request"):
                self.refused.labels(kind, reason)

    @classmethod
    def from_config(
        cls, config, database: Database | None = None, clock: Clock | None = None
    ) -> WebhookApp:
        w = config.webhooks
        return cls(
            database or Database(config.database.url),
            clock or Clock(config.tz),
            secret=w.secret,
            app_secret=w.app_secret,
            verify_token=w.verify_token,
            in_flight_s=delivery.in_flight_s(config),
        )

    def close(self) -> None:
        self.pool.close()

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        status, headers, body = self.handle(environ)
        start_response(status, headers)
        return [body]

    def handle(self, environ: dict) -> tuple[str, list, bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if method == "GET" and path == "/metrics":
            return "200 OK", [("Content-Type", CONTENT_TYPE_LATEST)], generate_latest(self.registry)
        if method == "GET" and path == "/healthz":
            return _json("200 OK", {"ok": True})
        kind = path[len("/webhooks/") :] if path.startswith("/webhooks/") else ""
        if kind not in KINDS:
            return _json("404 Not Found", {"error": "no such webhook"})
        if method == "GET" and kind == "cloud_api":
            return self._handshake(query)
        if method != "POST":
            return _json("405 Method Not Allowed", {"error": "POST only"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY:
            self.refused.labels(kind, "bad_request").inc()
            return _json("413 Payload Too Large", {"error": "body too large"})
        raw = environ["wsgi.input"].read(length) if length else b""
        if not self._authenticated(kind, environ, query, raw):
            self.refused.labels(kind, "unauthenticated").inc()
            log.warning(kv("webhook_refused", kind=kind, reason="unauthenticated"))
            return _json("401 Unauthorized", {"error": "unauthenticated"})
        try:
            payload = json.loads(raw or b"null")
        except ValueError:
            self.refused.labels(kind, "bad_request").inc()
            return _json("400 Bad Request", {"error": "body is not JSON"})
        try:
            results = self.apply(kind, PARSERS[kind](payload))
        except EnviosError as exc:
            log.error(kv("webhook_failed", kind=kind, detail=str(exc)))
            return _json(
                "503 Service Unavailable", {"error": "database unavailable; send it again"}
            )
        return _json("200 OK", {"received": sum(results.values()), "results": results})

    def _handshake(self, query: dict) -> tuple[str, list, bytes]:
        mode = (query.get("hub.mode") or [""])[0]
        token = (query.get("hub.verify_token") or [""])[0]
        challenge = (query.get("hub.challenge") or [""])[0]
        if mode == "subscribe" and secret_ok(self.verify_token, token):
            return "200 OK", [("Content-Type", "text/plain")], challenge.encode("utf-8")
        self.refused.labels("cloud_api", "unauthenticated").inc()
        return _json("401 Unauthorized", {"error": "verify token does not match"})

    def _authenticated(self, kind: str, environ: dict, query: dict, raw: bytes) -> bool:
        if kind == "cloud_api":
            return signature_ok(self.app_secret, raw, environ.get("HTTP_X_HUB_SIGNATURE_256"))
        given = environ.get("HTTP_X_WEBHOOK_SECRET") or (query.get("secret") or [None])[0]
        return secret_ok(self.secret, given)

    def apply(self, kind: str, acks: list[Ack]) -> dict[str, int]:
        results: dict[str, int] = {}
        conn = self.pool.get()
        broken = False
        try:
            for ack in acks:
                result = delivery.record_ack(conn, self.clock, ack, self.in_flight_s)
                results[result] = results.get(result, 0) + 1
                self.events.labels(kind, result).inc()
        except EnviosError:
            broken = True
            raise
        finally:
            self.pool.put(conn, broken=broken)
        return results


def _json(status: str, body: dict) -> tuple[str, list, bytes]:
    return status, [("Content-Type", "application/json")], json.dumps(body).encode("utf-8")


class Running:
    """A waitress server serving `app` in a background thread: `.port`, `.url`, `.stop()`."""

    def __init__(self, app: WebhookApp, host: str, port: int):
        from waitress.server import create_server

        self.app = app
        self.server = create_server(app, host=host, port=port, threads=4, ident="envios-webhooks")
        self.host, self.port = host, int(self.server.effective_port)
        self.url = f"http://{host}:{self.port}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="envios-webhooks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):  # the listening socket closed under select(): we are stopping
            if not self._stopping.is_set():
                raise

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.server.close()
        self._thread.join(timeout)


def serve(app: WebhookApp, host: str, port: int) -> Running:
    """Start serving `app` on host:port (0: a free port) in a background thread."""
    return Running(app, host, port)
