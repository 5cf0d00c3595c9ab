"""The simulator speaking WAHA, Evolution API v2 and the WhatsApp Cloud API, and sending their
webhooks.

Every dialect is a translation in front of the one gateway brain (`SimState`): the
request becomes a session-manager send (so faults, sessions and the ledger are the
same), and the answer is re-shaped as that gateway answers:

| core answer                 | WAHA       | Evolution               | Cloud API                  |
|-----------------------------|------------|-------------------------|----------------------------|
| 200 with message_id         | 201 {"id"} | 201 {"key": {"id"}}     | 200 {"messages": [{"id"}]} |
| 200 without id/garbage/drop | the same   | the same                | the same                   |
| 409 SESSION_NOT_READY       | 422 (1)    | 500 "Connection Closed" | 503 code 131016            |
| 400                         | 400        | 400                     | 400 code 100               |
| 429                         | 429        | 429                     | 400 code 130429            |
| 500 WHATSAPP_ERROR          | 500        | 500                     | 503 code 131016            |
| 401                         | 401        | 401                     | 401 code 190               |

(1) 422 status not as expected ("Session status is not as expected...").

WAHA session / Evolution instance names map to a cliente_id by their trailing
digits ("envios-51" -> 51), else 1; the Cloud API number is cliente_id 1. The
message lookups (WAHA chat messages, Evolution findMessages) read the ledger.

`Notifier` posts each delivery's acknowledgements (sent, delivered, and read for
a share of them) to `webhook_url` in one dialect, with the shared secret or the
Cloud API signature, as the real gateways do. Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import re
import threading
import time
import urllib.request
from collections.abc import Mapping

from .state import Reply, json_reply

log = logging.getLogger("envios.simulator.dialects")

KINDS = ("session_manager", "waha", "evolution", "cloud_api")
_WAHA_STATES = {
    "READY": "WORKING",
    "CONNECTING": "STARTING",
    "AWAITING_QR": "SCAN_QR_CODE",
    "QR_REQUIRED": "SCAN_QR_CODE",
    "DISCONNECTED": "STOPPED",
    "ERROR": "FAILED",
}
_EVOLUTION_STATES = {
    "READY": "open",
    "CONNECTING": "connecting",
    "AWAITING_QR": "connecting",
    "QR_REQUIRED": "connecting",
}
_CLOUD_PATH = re.compile(r"^/v\d+(\.\d+)?/(\w+)/messages$")


def cliente_of(name: str) -> int:
    match = re.search(r"(\d+)$", name or "")
    return int(match.group(1)) if match and int(match.group(1)) > 0 else 1


def dialect_id(kind: str, ledger_id: str) -> str:
    """The id a gateway of `kind` gives the ledger's message (stable: acks and lookups agree)."""
    tail = ledger_id.rsplit("_", 1)[-1]
    if kind == "evolution":
        return "BAE5" + tail[-16:]
    if kind == "cloud_api":
        return "wamid.HBgL" + tail
    return ledger_id


class Dialects:
    """Routes the new gateways' paths; `references` keeps Cloud API's biz_opaque_callback_data."""

    def __init__(self, state):
        self.state = state
        self.references: dict[str, str] = {}  # ledger message_id -> biz_opaque_callback_data
        self._lock = threading.Lock()

    @staticmethod
    def handles(path: str) -> bool:
        return path.startswith(("/api/", "/instance/", "/message/", "/chat/")) or bool(
            _CLOUD_PATH.match(path)
        )

    def route(self, method: str, path: str, query: Mapping, body: bytes, headers: Mapping) -> Reply:
        parts = path.strip("/").split("/")
        payload = _json(body)
        key = headers.get("X-Api-Key") or headers.get("apikey") or ""
        auth = headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            key = key or auth[7:].strip()
        if self.state.api_key and key != self.state.api_key:
            return self._unauthorised(parts)
        if method == "GET" and parts[:2] == ["api", "sessions"] and len(parts) == 3:
            state = self.state.session_state(cliente_of(parts[2]))
            return json_reply(
                200, {"name": parts[2], "status": _WAHA_STATES.get(state, "FAILED"), "config": {}}
            )
        if method == "GET" and len(parts) == 5 and parts[0] == "api" and parts[2] == "chats":
            return self._waha_messages(
                parts[1], parts[3].split("@")[0], int(query.get("limit", 100))
            )
        if method == "GET" and parts[:2] == ["instance", "connectionState"] and len(parts) == 3:
            state = self.state.session_state(cliente_of(parts[2]))
            return json_reply(
                200,
                {
                    "instance": {
                        "instanceName": parts[2],
                        "state": _EVOLUTION_STATES.get(state, "close"),
                    }
                },
            )
        if method == "POST" and parts[:2] == ["chat", "findMessages"] and len(parts) == 3:
            jid = (((payload or {}).get("where") or {}).get("key") or {}).get("remoteJid", "")
            return self._evolution_messages(cliente_of(parts[2]), str(jid).split("@")[0])
        if method == "POST" and path == "/api/sendText":
            p = payload or {}
            to = str(p.get("chatId", "")).split("@")[0]
            return self._send("waha", cliente_of(str(p.get("session", ""))), to, p.get("text"), key)
        if method == "POST" and parts[:2] == ["message", "sendText"] and len(parts) == 3:
            p = payload or {}
            return self._send(
                "evolution", cliente_of(parts[2]), str(p.get("number", "")), p.get("text"), key
            )
        if method == "POST" and _CLOUD_PATH.match(path):
            p = payload or {}
            reference = p.get("biz_opaque_callback_data")
            return self._send(
                "cloud_api",
                1,
                str(p.get("to", "")),
                (p.get("text") or {}).get("body"),
                key,
                reference=str(reference) if reference is not None else None,
            )
        return json_reply(404, {"error": f"no route {method} {path}"})

    # -- sends -----------------------------------------------------------------------------------
    def _send(
        self, kind: str, cid: int, to: str, text, key: str, reference: str | None = None
    ) -> Reply:
        core = {"cliente_id": cid, "to": to, "message": text}
        before = len(self.state.ledger_for(to=to))
        reply = self.state.handle_send(
            {"X-Cliente-Id": str(cid), "X-Api-Key": key}, {}, json.dumps(core).encode()
        )
        if reference is not None:
            delivered = self.state.ledger_for(to=to)
            if len(delivered) > before:
                with self._lock:
                    self.references[delivered[-1]["message_id"]] = reference
        return reshape(kind, reply, to, text)

    def _unauthorised(self, parts: list[str]) -> Reply:
        if parts and parts[0].startswith("v"):
            return json_reply(
                401,
                {
                    "error": {
                        "message": "Error validating access token",
                        "type": "OAuthException",
                        "code": 190,
                        "fbtrace_id": "sim",
                    }
                },
            )
        return json_reply(
            401, {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
        )

    # -- lookups ---------------------------------------------------------------------------------
    def _waha_messages(self, session: str, to: str, limit: int) -> Reply:
        mine = self.state.ledger_for(cliente_id=cliente_of(session), to=to)[-limit:]
        return json_reply(
            200,
            [
                {
                    "id": e["message_id"],
                    "timestamp": int(e["time"]),
                    "fromMe": True,
                    "to": f"{to}@c.us",
                    "body": e["text"],
                    "ack": 2,
                }
                for e in reversed(mine)
            ],
        )

    def _evolution_messages(self, cid: int, to: str) -> Reply:
        records = [
            {
                "id": f"rec{e['seq']}",
                "key": {
                    "id": dialect_id("evolution", e["message_id"]),
                    "fromMe": True,
                    "remoteJid": f"{to}@s.whatsapp.net",
                },
                "message": {"conversation": e["text"]},
                "messageTimestamp": int(e["time"]),
            }
            for e in self.state.ledger_for(cliente_id=cid, to=to)
        ]
        return json_reply(
            200,
            {"messages": {"total": len(records), "pages": 1, "currentPage": 1, "records": records}},
        )


def reshape(kind: str, reply: Reply, to: str, text) -> Reply:
    """A core (session-manager) Reply as `kind` answers it (table in the module docstring)."""
    if reply.drop or reply.status == 0 or reply.content_type != "application/json":
        return reply
    body = _json(reply.body) or {}
    keep = {"delay_s": reply.delay_s, "close": reply.close}
    if reply.status == 200:
        mid = body.get("message_id")
        if not mid:
            return json_reply(201 if kind != "cloud_api" else 200, {"sent": True}, **keep)
        if kind == "waha":
            return json_reply(
                201,
                {
                    "id": mid,
                    "timestamp": int(time.time()),
                    "fromMe": True,
                    "to": f"{to}@c.us",
                    "body": text,
                },
                **keep,
            )
        if kind == "evolution":
            return json_reply(
                201,
                {
                    "key": {
                        "remoteJid": f"{to}@s.whatsapp.net",
                        "fromMe": True,
                        "id": dialect_id(kind, mid),
                    },
                    "message": {"conversation": text},
                    "messageTimestamp": int(time.time()),
                    "status": "PENDING",
                },
                **keep,
            )
        return json_reply(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": dialect_id(kind, mid)}],
            },
            **keep,
        )
    code = body.get("code")
    if kind == "cloud_api":
        graph = {
            409: (503, 131016),
            400: (400, 100),
            429: (400, 130429),
            500: (503, 131016),
            401: (401, 190),
        }
        status, gcode = graph.get(reply.status, (500, 131000))
        return json_reply(
            status,
            {
                "error": {
                    "message": body.get("message", ""),
                    "type": "OAuthException",
                    "code": gcode,
                    "fbtrace_id": "sim",
                }
            },
            **keep,
        )
    if reply.status == 409 and kind == "waha":
        return json_reply(
            422,
            {
                "error": (
                    "Session status is not as expected. Try again later or restart the session"
                ),
                "status": "STOPPED",
                "expected": ["WORKING"],
            },
            **keep,
        )
    if reply.status == 409:  # evolution
        return json_reply(
            500,
            {
                "status": 500,
                "error": "Internal Server Error",
                "response": {"message": "Connection Closed"},
            },
            **keep,
        )
    headers = dict(reply.headers)
    return Reply(
        reply.status,
        json.dumps(
            {"status": reply.status, "error": code, "response": {"message": body.get("message")}}
        ).encode(),
        delay_s=reply.delay_s,
        close=reply.close,
        headers=headers,
    )


def _json(body: bytes):
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None


# -- acknowledgements --------------------------------------------------------------------------


def ack_payload(kind: str, entry: dict, status: str, reference: str | None = None) -> dict:
    """One acknowledgement of a ledger entry in `kind`'s webhook shape."""
    mid, to = entry["message_id"], entry["to"]
    number = {"sent": 1, "delivered": 2, "read": 3, "failed": -1}[status]
    if kind == "session_manager":
        return {"message_id": mid, "ack": number, "to": to, "body": entry["text"]}
    if kind == "waha":
        return {
            "event": "message.ack",
            "session": "default",
            "payload": {
                "id": mid,
                "fromMe": True,
                "to": f"{to}@c.us",
                "body": entry["text"],
                "ack": number,
                "ackName": {1: "SERVER", 2: "DEVICE", 3: "READ", -1: "ERROR"}[number],
            },
        }
    if kind == "evolution":
        return {
            "event": "messages.update",
            "instance": "default",
            "data": {
                "keyId": dialect_id(kind, mid),
                "remoteJid": f"{to}@s.whatsapp.net",
                "fromMe": True,
                "status": {
                    "sent": "SERVER_ACK",
                    "delivered": "DELIVERY_ACK",
                    "read": "READ",
                    "failed": "ERROR",
                }[status],
            },
        }
    st = {
        "id": dialect_id(kind, mid),
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": to,
    }
    if reference is not None:
        st["biz_opaque_callback_data"] = reference
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "sim",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": "sim"},
                            "statuses": [st],
                        },
                    }
                ],
            }
        ],
    }


class Notifier:
    """Posts the acknowledgements of every new delivery to `url` (a background thread)."""

    def __init__(
        self,
        state,
        dialects: Dialects,
        url: str,
        kind: str,
        *,
        secret: str = "",
        app_secret: str = "",
        read_share: float = 0.5,
        seed: int = 1,
        interval_s: float = 0.2,
    ):
        if kind not in KINDS:
            raise ValueError(f"webhook kind must be one of {', '.join(KINDS)}")
        self.state, self.dialects, self.url, self.kind = state, dialects, url, kind
        self.secret, self.app_secret, self.read_share = secret, app_secret, read_share
        self.rng = random.Random(seed)
        self.interval_s = interval_s
        self.posted = 0
        self.failed = 0
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-webhooks", daemon=True)

    def start(self) -> Notifier:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> None:
        """Post the acknowledgements of every delivery not acknowledged yet."""
        entries = self.state.ledger[self._seen :]
        for entry in entries:
            reference = self.dialects.references.get(entry["message_id"])
            statuses = ["sent", "delivered"] + (
                ["read"] if self.rng.random() < self.read_share else []
            )
            for status in statuses:
                self._post(ack_payload(self.kind, entry, status, reference))
        self._seen += len(entries)

    def _post(self, payload: dict) -> None:
        raw = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.kind == "cloud_api":
            headers["X-Hub-Signature-256"] = (
                "sha256=" + hmac.new(self.app_secret.encode(), raw, hashlib.sha256).hexdigest()
            )
        else:
            headers["X-Webhook-Secret"] = self.secret
        request = urllib.request.Request(self.url, data=raw, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - configured URL
                response.read()
            self.posted += 1
        except OSError as exc:
            self.failed += 1
            log.warning("webhook post to %s failed: %s", self.url, type(exc).__name__)
