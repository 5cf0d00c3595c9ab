"""A database made unreachable for real: the watcher says so, keeps serving, and recovers."""

from __future__ import annotations

import logging
import os
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest

from envios.store import schema
from envios.store.connector import Database
from tests.monitor.conftest import Builder, FakeMonotonic, labels, make_config, parse, series
from tests.monitor.test_metrics import seed_known


class TcpProxy:
    """127.0.0.1:<port> -> target.

    stop() refuses and cuts every connection, start() serves again.
    """

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


@pytest.fixture
def breakable(db_url, tmp_path, clock):
    """(url, cut, restore): a seeded database reached through something we can cut for real."""
    if db_url.startswith("sqlite"):
        directory = tmp_path / "dbdir"
        directory.mkdir()
        url = f"sqlite:///{directory / 'envios.db'}"
        away = tmp_path / "dbdir.away"

        def cut():
            os.rename(directory, away)  # the file is gone from its path

        def restore():
            os.rename(away, directory)

        proxy = None
    else:
        parts = urlsplit(db_url)
        proxy = TcpProxy((parts.hostname, parts.port or 3306)).start()
        password = ":" + parts.password if parts.password else ""
        netloc = f"{parts.username or 'root'}{password}@127.0.0.1:{proxy.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        cut, restore = proxy.stop, proxy.start
    with Database(url).connect() as conn:
        schema.upgrade(conn, clock.now())
        seed_known(Builder(conn, clock.db_now(conn)))
    yield url, cut, restore
    if proxy is not None:
        proxy.stop()


def test_unreachable_database_then_recovery(breakable, clock, watchers, caplog):
    url, cut, restore = breakable
    watcher = watchers(make_config(url), clock=clock)
    assert watcher.refresh() is True
    good_refresh = clock.to_epoch(clock.now())

    cut()
    with caplog.at_level(logging.INFO, logger="envios.watch"):
        for _ in range(3):
            clock.advance(15)
            assert watcher.refresh() is False
    got = parse(watcher.exposition())
    assert series(got, "envios_watcher_up") == {frozenset(): 0}
    assert series(got, "envios_watcher_last_refresh_timestamp_seconds") == {
        frozenset(): good_refresh
    }
    # last values still served
    assert series(got, "envios_stuck_sending")[labels(campania_id=1)] == 3
    # an outage is not a query error: envios_watcher_up says it
    assert set(series(got, "envios_watcher_query_errors_total").values()) == {0}
    outage_lines = [m for m in caplog.messages if "database unreachable" in m]
    assert len(outage_lines) == 1, caplog.messages  # once per outage, not once per refresh

    restore()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="envios.watch"):
        clock.advance(15)
        assert watcher.refresh() is True
    got = parse(watcher.exposition())
    assert series(got, "envios_watcher_up") == {frozenset(): 1}
    assert series(got, "envios_watcher_last_refresh_timestamp_seconds") == {
        frozenset(): clock.to_epoch(clock.now())
    }
    assert any("reachable again" in m for m in caplog.messages)


def test_the_refresh_thread_survives_an_outage(breakable, clock, watchers):
    url, cut, restore = breakable
    watcher = watchers(make_config(url, **{"monitor.refresh_s": 0.05}), clock=clock).start(
        http=False
    )
    assert watcher.wait_for_refreshes(1, timeout=30)
    assert watcher.state.up
    cut()
    assert watcher.wait_for_refreshes(2, timeout=30)
    assert not watcher.state.up
    restore()
    assert watcher.wait_for_refreshes(2, timeout=30)
    assert watcher.state.up
    assert watcher.health()[0]


@pytest.mark.mysql_only
def test_a_killed_connection_is_reopened_within_the_refresh(db_url, build, config, clock, watchers):
    seed_known(build)
    watcher = watchers(config, clock=clock)
    watcher.refresh()
    victim = watcher.refresher._conn.thread_id
    build.conn.execute(f"KILL {int(victim)}")
    assert watcher.refresh() is True
    got = parse(watcher.exposition())
    assert series(got, "envios_watcher_up") == {frozenset(): 1}
    assert series(got, "envios_stuck_sending")[labels(campania_id=1)] == 3
    assert watcher.refresher._conn.thread_id != victim


def test_a_hung_refresh_is_reported_down(build, config, clock, watchers):
    """A server that stops answering on an open connection: the scrape still answers, up 0."""
    seed_known(build)
    tick = FakeMonotonic()
    watcher = watchers(config, clock=clock, monotonic=tick)
    watcher.refresh()
    entered, release = threading.Event(), threading.Event()

    def hang(conn, context):
        entered.set()
        release.wait(30)
        return {}

    watcher.refresher.queries["stuck"] = hang
    refresh = threading.Thread(target=watcher.refresh)
    refresh.start()
    try:
        assert entered.wait(30)
        assert series(parse(watcher.exposition()), "envios_watcher_up") == {frozenset(): 1}
        tick.now += watcher.refresher.stall_after_s + 1
        got = parse(watcher.exposition())  # served from the last state, without waiting
        assert series(got, "envios_watcher_up") == {frozenset(): 0}
        assert series(got, "envios_stuck_sending")[labels(campania_id=1)] == 3
        healthy, line = watcher.health()
        assert not healthy and "a refresh has been running for" in line
    finally:
        release.set()
        refresh.join(30)
    assert series(parse(watcher.exposition()), "envios_watcher_up") == {frozenset(): 1}
