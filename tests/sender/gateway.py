"""A purpose-built gateway on a real loopback socket, for the sender's tests.

It speaks the session-manager contract in each of its three real shapes
(DESIGN.md section 9), chosen by `build`:

    "multi"   multi-client build: a session per X-Cliente-Id; /status {"state", "connected"};
              sent: 200 {"ok": true, "message_id"}; not ready: 409 SESSION_NOT_READY
    "venom"   venom build (live at the incident): ONE admin session for every client;
              /status {"connected", "state", "session": "admin"}; sent: 200 {"success": true,
              "message": "Message sent", "data": {"messageId": "sent-via-ui", "method":
              "UI-Simulation", ...}} (a placeholder, not an id); not ready: 503
              SESSION_NOT_READY; bad request: 400 success:false INVALID_CLIENTE_ID (cliente_id
              not a JSON number) / INVALID_TO / INVALID_MESSAGE; send failed: 500 SEND_FAILED
    "wwebjs"  whatsapp-web.js build: one session; /status {"status"}; no /send route at all:
              Express's 404 HTML page

and lets a test script, per session (the one "admin" session on venom: key 0),
what the next POST /send does:

    "ok"          deliver, 200 {"ok": true, "message_id": ...}
    "no_id"       deliver, 200 {"ok": true}
    "garbage"     deliver, 200 with an HTML body
    "timeout"     deliver, then answer only after `hang_s` (the client times out first)
    "reset"       deliver, then reset the connection (RST) without answering
    "refuse"      the gateway goes away between GET /status and POST /send: the
                  status is answered READY, then the listener is closed, so the
                  POST meets a refused connection (call `listen_again()` after)
    "drop"        the session drops between GET /status and POST /send (DISCONNECTED):
                  the build's own not-ready answer, nothing delivered
    "send_failed" venom: the UI simulation fails, 500 SEND_FAILED, nothing delivered
    (code, body)  no delivery, answer `code` with JSON `body` (or HTML if body is a str)

It records everything a test needs to judge the sender: the ledger of
deliveries, every POST received, per session the most POSTs it ever had in
flight at once and which sender (User-Agent) made each, and every POST's start
and answer times (`posts_done`: the answer time is taken before the answer is
written, so the client's next request can never seem to start before it).
"""

from __future__ import annotations

import collections
import json
import socket
import socketserver
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address, owner):
        self.owner = owner
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        with self.server.owner.lock:
            self.server.owner.conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        with self.server.owner.lock:
            self.server.owner.conns.discard(self.connection)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _reply(self, code: int, body, close: bool = False) -> None:
        data = (
            body
            if isinstance(body, bytes)
            else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        )
        ctype = "application/json" if not isinstance(body, (str, bytes)) else "text/html"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if code == 429 and self.server.owner.retry_after is not None:
            self.send_header("Retry-After", str(self.server.owner.retry_after))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        try:
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout) or we hung up: nothing to answer to
            self.close_connection = True

    def do_GET(self):
        owner = self.server.owner
        self._body()
        if not self.path.startswith("/status"):
            return self._reply(404, {"error": True})
        cid = owner.session_of(int(self.headers.get("X-Cliente-Id") or 0))
        with owner.lock:
            owner.status_requests += 1
            state = owner.sessions.get(cid, owner.default_state)
            refuse = bool(owner.script.get(cid)) and owner.script[cid][0] == "refuse"
            if refuse:
                owner.script[cid].popleft()
        body = owner.status_body(state)
        if refuse:
            # before answering: the next connection is refused
            owner.close_listener(keep=self.connection)
            return self._reply(200, body, close=True)
        return self._reply(200, body)

    def do_POST(self):
        owner = self.server.owner
        raw = self._body()
        cid = owner.session_of(int(self.headers.get("X-Cliente-Id") or 0))
        sender = self.headers.get("User-Agent", "")
        payload = json.loads(raw or b"{}")
        t0 = time.monotonic()
        answered = [None]
        with owner.lock:
            entry = {
                "cliente_id": payload.get("cliente_id"),
                "to": payload.get("to"),
                "text": payload.get("message"),
                "sender": sender,
                "t0": t0,
                "api_key": self.headers.get("X-Api-Key"),
            }
            owner.posts.append(entry)
            owner.in_flight[cid] += 1
            owner.in_flight_total += 1
            owner.max_in_flight[cid] = max(owner.max_in_flight[cid], owner.in_flight[cid])
            owner.max_in_flight_total = max(owner.max_in_flight_total, owner.in_flight_total)
            queue = owner.script.get(cid)
            behaviour = queue.popleft() if queue else owner.default_behaviour
            if callable(behaviour):
                behaviour = behaviour(cid)
            owner.posts[-1]["behaviour"] = behaviour
            if behaviour == "drop":
                owner.sessions[cid] = "DISCONNECTED"
            state = owner.sessions.get(cid, owner.default_state)

        def reply(code, body, close=False):
            answered[0] = time.monotonic()
            return self._reply(code, body, close)

        try:
            if owner.send_delay_s:
                time.sleep(owner.send_delay_s)
            if owner.build == "wwebjs":  # Express: no such route
                return reply(404, EXPRESS_404)
            if owner.build == "venom":
                invalid = venom_invalid(payload)
                if invalid:
                    return reply(
                        400, {"success": False, "code": invalid, "message": "invalid request"}
                    )
            if isinstance(behaviour, tuple):
                code, body = behaviour
                return reply(code, body)
            if state != "READY":
                if owner.build == "venom":
                    return reply(
                        503,
                        {
                            "success": False,
                            "code": "SESSION_NOT_READY",
                            "message": "Admin WhatsApp session not ready",
                        },
                    )
                return reply(409, {"error": True, "code": "SESSION_NOT_READY", "message": state})
            if behaviour == "send_failed":
                return reply(
                    500, {"success": False, "code": "SEND_FAILED", "message": "Navigation timeout"}
                )
            message_id = owner.deliver(cid, payload, sender)
            if owner.on_deliver is not None:
                owner.on_deliver(cid, payload)
            if behaviour == "ok" and owner.build == "venom":
                return reply(
                    200,
                    {
                        "success": True,
                        "message": "Message sent",
                        "data": {
                            "success": True,
                            "cliente_id": payload.get("cliente_id"),
                            "to": payload.get("to"),
                            "messageId": owner.venom_placeholder,
                            "timestamp": "2026-02-07T11:19:00.000Z",
                            "method": "UI-Simulation",
                        },
                    },
                )
            if behaviour == "ok":
                return reply(200, {"ok": True, "message_id": message_id})
            if behaviour == "no_id":
                return reply(200, {"ok": True})
            if behaviour == "garbage":
                return reply(200, "<html><body>It works!</body></html>")
            if behaviour == "timeout":
                owner.released.wait(owner.hang_s)
                return reply(200, {"ok": True, "message_id": message_id})
            if behaviour == "reset":
                self.close_connection = True
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                return None
            raise AssertionError(f"unknown behaviour {behaviour!r}")
        finally:
            with owner.lock:
                owner.in_flight[cid] -= 1
                owner.in_flight_total -= 1
                entry["t1"] = answered[0] or time.monotonic()
                owner.posts_done.append((cid, sender, t0, entry["t1"]))


# What Express answers for a route it does not have (the whatsapp-web.js build's POST /send).
EXPRESS_404 = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
    "</head>\n<body>\n<pre>Cannot POST /send</pre>\n</body>\n</html>\n"
)
BUILDS = ("multi", "venom", "wwebjs")
ADMIN = 0  # the venom build's one session, whatever X-Cliente-Id says


def venom_invalid(payload: dict) -> str | None:
    """The venom build's validation of POST /send (routes/api.js of 2026-01-20)."""
    cid = payload.get("cliente_id")
    if not cid or not isinstance(cid, int) or isinstance(cid, bool):
        return "INVALID_CLIENTE_ID"
    if not payload.get("to") or not isinstance(payload.get("to"), str):
        return "INVALID_TO"
    message = payload.get("message")
    if not message or not isinstance(message, str) or not message.strip():
        return "INVALID_MESSAGE"
    return None


class ScriptedGateway:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, build: str = "multi"):
        assert build in BUILDS, build
        self.build = build
        self.venom_placeholder = "sent-via-ui"  # or "sent"
        self.host = host
        self.lock = threading.Lock()
        self.sessions: dict[int, str] = {}
        self.default_state = "READY"
        self.status_key = "state"
        self.script: dict[int, collections.deque] = {}
        self.default_behaviour = "ok"  # or a callable(cliente_id) -> behaviour
        self.hang_s = 3.0
        self.send_delay_s = 0.0
        self.retry_after = 1
        self.on_deliver = None  # called (cliente_id, payload) after a delivery, before the answer
        self.released = threading.Event()  # set at stop: hanging handlers give up
        self.ledger: list[dict] = []
        self.posts: list[dict] = []
        self.posts_done: list[tuple] = []
        self.status_requests = 0
        self.in_flight: collections.Counter = collections.Counter()
        self.max_in_flight: collections.Counter = collections.Counter()
        self.in_flight_total = 0
        self.max_in_flight_total = 0
        self._server: _Server | None = None
        self.conns: set = set()
        self.port = port
        self._listen()

    # -- control ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def session_of(self, cliente_id: int) -> int:
        """The session a request of this client goes to (venom: the one admin session)."""
        return ADMIN if self.build == "venom" else cliente_id

    def status_body(self, state: str) -> dict:
        if self.build == "venom":
            return {"connected": state == "READY", "state": state, "session": "admin"}
        if self.build == "wwebjs":
            return {"status": state}
        return {self.status_key: state, "connected": state == "READY"}

    def plan(self, cliente_id: int, *behaviours) -> None:
        with self.lock:
            self.script.setdefault(self.session_of(cliente_id), collections.deque()).extend(
                behaviours
            )

    def set_session(self, cliente_id: int, state: str) -> None:
        with self.lock:
            self.sessions[self.session_of(cliente_id)] = state

    def deliver(self, cid: int, payload: dict, sender: str) -> str:
        with self.lock:
            seq = len(self.ledger) + 1
            message_id = f"true_{payload.get('to')}@c.us_3EB0{seq:08X}"
            self.ledger.append(
                {
                    "seq": seq,
                    "cliente_id": cid,
                    "to": payload.get("to"),
                    "text": payload.get("message"),
                    "message_id": message_id,
                    "sender": sender,
                }
            )
        return message_id

    def close_listener(self, keep=None) -> None:
        """Stop listening and hang up on every open connection (but `keep`)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self.lock:
            conns = [c for c in self.conns if c is not keep]
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def listen_again(self) -> None:
        if self._server is None:
            self._listen()

    def _listen(self) -> None:
        server = _Server((self.host, self.port), self)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        self.released.set()
        self.close_listener()

    # -- what tests judge
    # ----------------------------------------------------------------------------
    @property
    def sends_received(self) -> int:
        with self.lock:
            return len(self.posts)

    def delivered_to(self) -> collections.Counter:
        with self.lock:
            return collections.Counter(e["to"] for e in self.ledger)

    def send_spans(self) -> list[tuple[float, float]]:
        """(start, answered) of every POST /send, in start order."""
        with self.lock:
            return sorted((t0, t1) for _cid, _sender, t0, t1 in self.posts_done)

    def interleaved_sessions(self) -> dict[int, list[str]]:
        """Sessions whose POSTs came from a sender, then another, then the first again."""
        with self.lock:
            posts = sorted(self.posts, key=lambda p: p["t0"])
        runs: dict[int, list[str]] = {}
        for p in posts:
            seq = runs.setdefault(p["cliente_id"], [])
            if not seq or seq[-1] != p["sender"]:
                seq.append(p["sender"])
        return {cid: seq for cid, seq in runs.items() if len(seq) != len(set(seq))}
