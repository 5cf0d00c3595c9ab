"""/metrics and /healthz over HTTP (stdlib WSGI server, one thread per request).

- `GET /metrics`: the exposition (text format 0.0.4) of the last refresh; no SQL.
- `GET /healthz`: 200 when the last complete refresh is younger than
  3 x monitor.refresh_s, 503 otherwise; the body is one line saying which.
"""

from __future__ import annotations

import logging
import socketserver
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

log = logging.getLogger("envios.watch")

TEXT = "text/plain; charset=utf-8"


def make_app(exposition: Callable[[], bytes], health: Callable[[], tuple[bool, str]]):
    def app(environ, start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response(
                "405 Method Not Allowed", [("Content-Type", TEXT), ("Allow", "GET, HEAD")]
            )
            return [b"method not allowed\n"]
        if path == "/metrics":
            body, status, ctype = exposition(), "200 OK", CONTENT_TYPE_PLAIN_0_0_4
        elif path == "/healthz":
            ok, line = health()
            body, status, ctype = (
                (line + "\n").encode(),
                "200 OK" if ok else "503 Service Unavailable",
                TEXT,
            )
        elif path == "/":
            body, status, ctype = b"envios watcher: /metrics /healthz\n", "200 OK", TEXT
        else:
            body, status, ctype = b"not found\n", "404 Not Found", TEXT
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [] if method == "HEAD" else [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup of the host: skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.setup_environ()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        log.debug("http %s", format % args)


class HttpServer:
    """Serves a WSGI app on host:port in a background thread; port 0 picks a free one."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self._server = make_server(
            host, port, app, server_class=_Server, handler_class=_QuietHandler
        )
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="envios-watch-http", daemon=True
        )

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
