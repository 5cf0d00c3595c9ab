"""HTTP/1.1 keep-alive request handler: routes a request and carries out the Reply.

Built on the stdlib BaseHTTPRequestHandler (one thread per connection) rather
than WSGI because the simulator must be able to hang up *without* answering
(the "dropped after delivery" fault), which a WSGI app cannot do, and because
it measured faster than waitress on loopback (see bench/bench_simulator.py).
"""

from __future__ import annotations

import logging
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qsl, urlsplit

from . import control
from .dialects import Dialects
from .state import Reply, error_reply

log = logging.getLogger("envios.simulator.http")

MAX_BODY = 1 << 20  # a WhatsApp text is far smaller; refuse anything absurd
PHRASES = {s.value: s.phrase for s in HTTPStatus}


class SimRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    disable_nagle_algorithm = True  # one small write per response; never wait for an ACK
    server_version = "envios-gateway-sim"

    # ----- connection bookkeeping (so refuse_for/stop can hang up on everyone) --

    def setup(self) -> None:
        super().setup()
        self.owner = self.server.owner
        self.owner._track(self.connection, self.server)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.owner._untrack(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:
            # Client went away, or we hung up on it (drop fault, refuse, stop).
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        # The stdlib writes every request to stderr; at thousands per second that
        # is noise (and the path may carry a cliente_id). Debug level only.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s " + format, self.client_address[0], *args)

    # ----- routing ---------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = dict(parse_qsl(url.query))
        try:
            body = self._read_body()
        except ValueError as exc:
            self._carry_out(error_reply(400, "VALIDATION_ERROR", str(exc), close=True))
            return
        state = self.owner.state
        # the ledger holds numbers and texts: the API's key guards it too
        if path.startswith("/_sim/"):
            reply = (
                control.handle(self.owner, self.connection, method, path, query, body)
                if state._authorized(self.headers)
                else error_reply(401, "UNAUTHORIZED", "missing or wrong API key")
            )
        elif path == "/send":
            reply = (
                state.handle_send(self.headers, query, body)
                if method == "POST"
                else error_reply(405, "METHOD_NOT_ALLOWED", "use POST /send")
            )
        elif path == "/status":
            reply = (
                state.handle_status(self.headers, query)
                if method == "GET"
                else error_reply(405, "METHOD_NOT_ALLOWED", "use GET /status")
            )
        # WAHA, Evolution API, Cloud API shapes (simulator/dialects.py)
        elif Dialects.handles(path):
            reply = self.owner.dialects.route(method, path, query, body, self.headers)
        else:
            reply = error_reply(404, "NOT_FOUND", f"no route {method} {path}")
        self._carry_out(reply)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            raise ValueError("bad Content-Length") from None
        if n < 0 or n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n)

    def _read_chunked(self) -> bytes:
        parts, total = [], 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise ValueError("body too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    # ----- answering -------------------------------------------------------------

    def _carry_out(self, reply: Reply) -> None:
        if reply.delay_s > 0 and self.owner._stopping.wait(reply.delay_s):
            self._hang_up()  # the server is stopping: the answer never comes
            return
        if reply.drop:
            self._hang_up()
            return
        if reply.close:
            self.close_connection = True
        head = [
            f"HTTP/1.1 {reply.status} {PHRASES.get(reply.status, '')}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
        ]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        if self.close_connection:
            head.append("Connection: close")
        # One write per response: with Nagle off this is one segment on loopback.
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s", self.command, urlsplit(self.path).path, reply.status)

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
