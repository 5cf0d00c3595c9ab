"""A purpose-built gateway on a real loopback socket, for the sender's tests.

It speaks the session-manager contract (DESIGN.md section 9) and lets a test
script, per session, what the next POST /send does:

    "ok"          deliver, 200 {"ok": true, "message_id": ...}
    "no_id"       deliver, 200 {"ok": true}
    "garbage"     deliver, 200 with an HTML body
    "timeout"     deliver, then answer only after `hang_s` (the client times out first)
    "reset"       deliver, then reset the connection (RST) without answering
    "refuse"      the gateway goes away between GET /status and POST /send: the
                  status is answered READY, then the listener is closed, so the
                  POST meets a refused connection (call `listen_again()` after)
    (code, body)  no delivery, answer `code` with JSON `body` (or HTML if body is a str)

It records everything a test needs to judge the sender: the ledger of
deliveries, every POST received, and per session the most POSTs it ever had
in flight at once and which sender (User-Agent) made each.
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
        data = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        ctype = "application/json" if not isinstance(body, (str, bytes)) else "text/html"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if code == 429:
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
        cid = int(self.headers.get("X-Cliente-Id") or 0)
        with owner.lock:
            owner.status_requests += 1
            state = owner.sessions.get(cid, owner.default_state)
            refuse = bool(owner.script.get(cid)) and owner.script[cid][0] == "refuse"
            if refuse:
                owner.script[cid].popleft()
        if refuse:
            owner.close_listener(keep=self.connection)  # before answering: the next connection is refused
            return self._reply(200, {owner.status_key: state, "connected": state == "READY"}, close=True)
        return self._reply(200, {owner.status_key: state, "connected": state == "READY"})

    def do_POST(self):
        owner = self.server.owner
        raw = self._body()
        cid = int(self.headers.get("X-Cliente-Id") or 0)
        sender = self.headers.get("User-Agent", "")
        payload = json.loads(raw or b"{}")
        t0 = time.monotonic()
        with owner.lock:
            owner.posts.append({"cliente_id": cid, "to": payload.get("to"), "text": payload.get("message"),
                                "sender": sender, "t0": t0, "api_key": self.headers.get("X-Api-Key")})
            owner.in_flight[cid] += 1
            owner.max_in_flight[cid] = max(owner.max_in_flight[cid], owner.in_flight[cid])
            queue = owner.script.get(cid)
            behaviour = queue.popleft() if queue else owner.default_behaviour
            if callable(behaviour):
                behaviour = behaviour(cid)
            owner.posts[-1]["behaviour"] = behaviour
            state = owner.sessions.get(cid, owner.default_state)
        try:
            if owner.send_delay_s:
                time.sleep(owner.send_delay_s)
            if isinstance(behaviour, tuple):
                code, body = behaviour
                return self._reply(code, body)
            if state != "READY":
                return self._reply(409, {"error": True, "code": "SESSION_NOT_READY", "message": state})
            message_id = owner.deliver(cid, payload, sender)
            if owner.on_deliver is not None:
                owner.on_deliver(cid, payload)
            if behaviour == "ok":
                return self._reply(200, {"ok": True, "message_id": message_id})
            if behaviour == "no_id":
                return self._reply(200, {"ok": True})
            if behaviour == "garbage":
                return self._reply(200, "<html><body>It works!</body></html>")
            if behaviour == "timeout":
                owner.released.wait(owner.hang_s)
                return self._reply(200, {"ok": True, "message_id": message_id})
            if behaviour == "reset":
                self.close_connection = True
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                return None
            raise AssertionError(f"unknown behaviour {behaviour!r}")
        finally:
            with owner.lock:
                owner.in_flight[cid] -= 1
                owner.posts_done.append((cid, sender, t0, time.monotonic()))


class ScriptedGateway:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
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
        self._server: _Server | None = None
        self.conns: set = set()
        self.port = port
        self._listen()

    # -- control ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def plan(self, cliente_id: int, *behaviours) -> None:
        with self.lock:
            self.script.setdefault(cliente_id, collections.deque()).extend(behaviours)

    def set_session(self, cliente_id: int, state: str) -> None:
        with self.lock:
            self.sessions[cliente_id] = state

    def deliver(self, cid: int, payload: dict, sender: str) -> str:
        with self.lock:
            seq = len(self.ledger) + 1
            message_id = f"true_{payload.get('to')}@c.us_3EB0{seq:08X}"
            self.ledger.append({"seq": seq, "cliente_id": cid, "to": payload.get("to"),
                                "text": payload.get("message"), "message_id": message_id, "sender": sender})
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
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop(self) -> None:
        self.released.set()
        self.close_listener()

    # -- what tests judge ----------------------------------------------------------------------------
    @property
    def sends_received(self) -> int:
        with self.lock:
            return len(self.posts)

    def delivered_to(self) -> collections.Counter:
        with self.lock:
            return collections.Counter(e["to"] for e in self.ledger)

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
