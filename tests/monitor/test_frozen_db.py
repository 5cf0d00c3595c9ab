"""Issue 12: a database server that freezes with our connection open is noticed, logged and shown.

The freeze is real: MariaDB is reached through a TCP proxy on loopback that stops
forwarding bytes (connections stay open, nothing comes back), which is what a
client sees of a server that is SIGSTOPped or stuck on I/O. Before the fix the
watcher waited on the socket for 120 s: `envios_watcher_up` stayed 1 and nothing
was logged.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from envios.monitor.refresher import default_query_timeout, io_timeout

from envios.store import schema
from envios.store.connector import Database
from tests.monitor.conftest import Builder, make_config, parse, series
from tests.monitor.test_metrics import seed_known

REFRESH_S = 4.0


class FreezableProxy:
    """127.0.0.1:<port> -> target.

    freeze() holds every byte in both directions, thaw() lets them go.
    """

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.flowing = threading.Event()
        self.flowing.set()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            upstream.settimeout(None)
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.flowing.wait()  # frozen: the bytes are held, the connection stays open
                dst.sendall(data)
        except OSError:
            pass

    def freeze(self) -> None:
        self.flowing.clear()

    def thaw(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.thaw()
        self._listener.close()
        with self._lock:
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


@pytest.fixture
def frozen_url(db_url, clock):
    parts = urlsplit(db_url)
    with Database(db_url).connect() as conn:
        schema.upgrade(conn, clock.now())
        seed_known(Builder(conn, clock.now()))
    proxy = FreezableProxy((parts.hostname, parts.port or 3306))
    password = ":" + parts.password if parts.password else ""
    netloc = f"{parts.username or 'root'}{password}@127.0.0.1:{proxy.port}"
    yield urlunsplit((parts.scheme, netloc, parts.path, "", "")), proxy
    proxy.close()


def test_the_socket_timeout_is_under_one_refresh():
    for refresh_s in (1.5, 2, 4, 15, 60, 600):
        assert io_timeout(refresh_s, default_query_timeout(refresh_s)) < refresh_s


@pytest.mark.mysql_only
def test_a_frozen_server_is_shown_down_and_logged_within_two_refreshes(
    frozen_url, clock, watchers, caplog
):
    url, proxy = frozen_url
    watcher = watchers(make_config(url, **{"monitor.refresh_s": REFRESH_S}), clock=clock)
    with caplog.at_level(logging.INFO, logger="envios.watch"):
        watcher.start(http=False)
        assert watcher.wait_for_refreshes(1, timeout=30)
        assert watcher.state.up
        proxy.freeze()
        frozen_at = time.monotonic()
        deadline = frozen_at + 2 * REFRESH_S
        while series(parse(watcher.exposition()), "envios_watcher_up") != {frozenset(): 0}:
            assert time.monotonic() < deadline, "envios_watcher_up still 1 after 2 x refresh_s"
            time.sleep(0.05)
        lines = [m for m in caplog.messages if "database unreachable" in m]
        assert lines and "did not answer in time" in lines[0], caplog.messages
        assert watcher.state.up is False  # the refresh failed: not hung on the socket

        proxy.thaw()
        assert watcher.wait_for_refreshes(2, timeout=30)
        assert watcher.state.up
    assert any("reachable again" in m for m in caplog.messages)
