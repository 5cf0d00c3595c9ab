"""Loopback fakes of WAHA, Evolution API v2 and the WhatsApp Cloud API, written from their docs.

One threaded HTTP server on 127.0.0.1 per fake; `FakeApi(kind)` speaks that gateway's shape:

    waha       GET /api/sessions/{session} -> {"name", "status"}; POST /api/sendText {session,
    chatId, text}
               -> 201 {"id": "true_<n>@c.us_<hex>", ...} (WEBJS) ; 422 when the session is not
               WORKING
               {"error": "Session status is not as expected...", "status", "expected": ["WORKING"]};
               GET /api/{session}/chats/{chatId}/messages -> [{id, timestamp, fromMe, to, body,
               ack}]
    evolution  GET /instance/connectionState/{instance} -> {"instance": {"instanceName", "state"}};
               POST /message/sendText/{instance} {number, text} -> 201 {"key": {"remoteJid",
               "fromMe", "id"},
               "message": {"conversation"}, "messageTimestamp", "status": "PENDING"};
               POST /chat/findMessages/{instance} -> {"messages": {"total", "pages", "currentPage",
               "records": [...]}}
    cloud_api  POST /{version}/{phone_number_id}/messages (Bearer) -> 200 {"messaging_product",
    "contacts",
               "messages": [{"id": "wamid..."}]}; errors {"error": {"message", "type", "code",
               "fbtrace_id"}}

A test scripts what the next send does: "ok", "no_id", "garbage" (2xx HTML), "timeout"
(deliver, then answer after hang_s), "drop" (deliver, then reset the connection without
answering), "drop_undelivered" (reset before delivering), or (status, body) for an answer
without delivery; `default` may be a callable returning one of these. The ledger is what the
fake delivered: the truth a fault run is judged by.
"""

from __future__ import annotations

import collections
import json
import socket
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STATUS_WORDS = {
    "waha": {"READY": "WORKING", "DOWN": "STOPPED", "QR": "SCAN_QR_CODE"},
    "evolution": {"READY": "open", "DOWN": "close", "QR": "connecting"},
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.fake.lock:
            self.server.fake.conns.add(self.connection)

    @property
    def fake(self) -> FakeApi:
        return self.server.fake

    def _reply(self, code: int, body) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header(
            "Content-Type", "text/html" if isinstance(body, str) else "application/json"
        )
        self.send_header("Content-Length", str(len(data)))
        if code == 429:
            self.send_header("Retry-After", self.fake.retry_after)
        try:
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _read(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw else {}

    def _authorised(self) -> bool:
        key = self.fake.api_key
        if not key:
            return True
        if self.fake.kind == "waha":
            return self.headers.get("X-Api-Key") == key
        if self.fake.kind == "evolution":
            return self.headers.get("apikey") == key
        return self.headers.get("Authorization") == f"Bearer {key}"

    def do_GET(self):
        fake, path = self.fake, urlsplit(self.path).path
        self._read()
        fake.requests.append(("GET", path, dict(self.headers)))
        if not self._authorised():
            return self._reply(401, fake.unauthorised())
        parts = path.strip("/").split("/")
        if fake.kind == "waha" and parts[:2] == ["api", "sessions"] and len(parts) == 3:
            if parts[2] != fake.session:
                return self._reply(404, {"error": "Session not found", "session": parts[2]})
            return self._reply(
                200, {"name": fake.session, "status": fake.state_word(), "config": {}}
            )
        if fake.kind == "waha" and len(parts) == 5 and parts[2] == "chats" and fake.lookups:
            to = parts[3].split("@")[0]
            limit = int(parse_qs(urlsplit(self.path).query).get("limit", ["100"])[0])
            mine = [e for e in fake.ledger if e["to"] == to][-limit:]
            return self._reply(
                200,
                [
                    {
                        "id": e["message_id"],
                        "timestamp": int(e["ts"]),
                        "from": "me@c.us",
                        "fromMe": True,
                        "to": f"{to}@c.us",
                        "body": e["text"],
                        "ack": 2,
                    }
                    for e in reversed(mine)
                ],
            )
        if (
            fake.kind == "evolution"
            and parts[:2] == ["instance", "connectionState"]
            and len(parts) == 3
        ):
            if parts[2] != fake.session:
                return self._reply(
                    404,
                    {
                        "status": 404,
                        "error": "Not Found",
                        "response": {"message": [f'The "{parts[2]}" instance does not exist']},
                    },
                )
            return self._reply(
                200, {"instance": {"instanceName": fake.session, "state": fake.state_word()}}
            )
        return self._reply(404, {"error": "Cannot GET " + path})

    def do_POST(self):
        fake, path = self.fake, urlsplit(self.path).path
        payload = self._read()
        fake.requests.append(("POST", path, dict(self.headers), payload))
        if not self._authorised():
            return self._reply(401, fake.unauthorised())
        parts = path.strip("/").split("/")
        if fake.kind == "evolution" and parts[:2] == ["chat", "findMessages"] and fake.lookups:
            jid = payload.get("where", {}).get("key", {}).get("remoteJid", "")
            to = jid.split("@")[0]
            records = [
                {
                    "id": uuid.uuid4().hex,
                    "key": {"id": e["message_id"], "fromMe": True, "remoteJid": jid},
                    "message": {"conversation": e["text"]},
                    "messageTimestamp": int(e["ts"]),
                    "messageType": "conversation",
                }
                for e in fake.ledger
                if e["to"] == to
            ]
            return self._reply(
                200,
                {
                    "messages": {
                        "total": len(records),
                        "pages": 1,
                        "currentPage": 1,
                        "records": records,
                    }
                },
            )
        to, text = fake.parse_send(path, payload)
        if to is None:
            return self._reply(404, {"error": "Cannot POST " + path})
        with fake.lock:
            behaviour = fake.script.popleft() if fake.script else fake.default
            if callable(behaviour):
                behaviour = behaviour()
            fake.sends.append({"to": to, "text": text, "behaviour": behaviour, "payload": payload})
        if isinstance(behaviour, tuple):
            return self._reply(*behaviour)
        if behaviour == "drop_undelivered":  # the connection is lost before anything was delivered
            return self._drop()
        if fake.state != "READY" and fake.kind == "waha":
            return self._reply(
                422,
                {
                    "error": (
                        "Session status is not as expected. Try again later or restart the session"
                    ),
                    "session": fake.session,
                    "status": fake.state_word(),
                    "expected": ["WORKING"],
                },
            )
        entry = fake.deliver(to, text, payload)
        if behaviour == "ok":
            return self._reply(*fake.sent_answer(entry))
        if behaviour == "no_id":
            return self._reply(201 if fake.kind != "cloud_api" else 200, {"sent": True})
        if behaviour == "garbage":
            return self._reply(200, "<html>ok</html>")
        if behaviour == "timeout":
            fake.released.wait(fake.hang_s)
            return self._reply(*fake.sent_answer(entry))
        if behaviour == "drop":
            return self._drop()
        raise AssertionError(f"unknown behaviour {behaviour!r}")

    def _drop(self) -> None:
        """Reset the connection (RST) without answering."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


class FakeApi:
    def __init__(
        self,
        kind: str,
        *,
        session: str = "default",
        phone_number_id: str = "1234567890",
        api_version: str = "v21.0",
        api_key: str = "k3y",
    ):
        self.kind, self.session, self.phone_number_id, self.api_version = (
            kind,
            session,
            phone_number_id,
            api_version,
        )
        self.api_key = api_key
        self.state = "READY"  # READY | DOWN | QR
        self.lock = threading.Lock()
        self.script: collections.deque = collections.deque()
        self.default = "ok"
        self.hang_s = 3.0
        self.retry_after = "7"  # the Retry-After header of a 429
        self.released = threading.Event()
        self.ledger: list[dict] = []
        self.sends: list[dict] = []
        self.requests: list[tuple] = []
        self.conns: set = set()
        self.lookups = True  # False: the message lookups answer 404 (an older build without them)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, *behaviours) -> None:
        with self.lock:
            self.script.extend(behaviours)

    def state_word(self) -> str:
        return STATUS_WORDS[self.kind][self.state]

    def unauthorised(self) -> dict:
        if self.kind == "cloud_api":
            return {
                "error": {
                    "message": "Error validating access token: Session has expired",
                    "type": "OAuthException",
                    "code": 190,
                    "error_subcode": 463,
                    "fbtrace_id": "A1",
                }
            }
        if self.kind == "evolution":
            return {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
        return {"statusCode": 401, "message": "Unauthorized"}

    def parse_send(self, path: str, payload: dict):
        parts = path.strip("/").split("/")
        if self.kind == "waha" and path == "/api/sendText":
            return str(payload.get("chatId", "")).split("@")[0], payload.get("text")
        if self.kind == "evolution" and parts[:2] == ["message", "sendText"]:
            return str(payload.get("number")), payload.get("text")
        if self.kind == "cloud_api" and parts == [
            self.api_version,
            self.phone_number_id,
            "messages",
        ]:
            body = (payload.get("text") or {}).get("body")
            if payload.get("type") == "template":  # what the person receives: the template, named
                body = f"template:{(payload.get('template') or {}).get('name')}"
            return str(payload.get("to")), body
        return None, None

    def deliver(self, to: str, text: str, payload: dict) -> dict:
        with self.lock:
            seq = len(self.ledger) + 1
            if self.kind == "waha":
                mid = f"true_{to}@c.us_3EB0{seq:016X}"
            elif self.kind == "evolution":
                mid = f"BAE5{seq:012X}"
            else:
                mid = f"wamid.HBgN{seq:010d}FQIAERgS"
            entry = {
                "seq": seq,
                "to": to,
                "text": text,
                "message_id": mid,
                "ts": time.time(),
                "reference": payload.get("biz_opaque_callback_data"),
            }
            self.ledger.append(entry)
        return entry

    def sent_answer(self, entry: dict) -> tuple[int, dict]:
        if self.kind == "waha":
            return 201, {
                "id": entry["message_id"],
                "timestamp": int(entry["ts"]),
                "from": "me@c.us",
                "fromMe": True,
                "to": f"{entry['to']}@c.us",
                "body": entry["text"],
            }
        if self.kind == "evolution":
            return 201, {
                "key": {
                    "remoteJid": f"{entry['to']}@s.whatsapp.net",
                    "fromMe": True,
                    "id": entry["message_id"],
                },
                "pushName": "",
                "status": "PENDING",
                "message": {"conversation": entry["text"]},
                "messageType": "conversation",
                "messageTimestamp": int(entry["ts"]),
            }
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": entry["to"], "wa_id": entry["to"]}],
            "messages": [{"id": entry["message_id"]}],
        }

    def stop(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            conns = list(self.conns)
        for conn in conns:  # keep-alive connections too: a stopped gateway answers nothing
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
