"""Database connections shared by threads, at most `limit` open at once (`sender.db_pool_size`).

A connection is used by one thread at a time: `get()` hands it out (waiting while
`limit` are in use), `put()` takes it back; one that failed is closed instead
(`put(conn, broken=True)`). `with pool.connection() as conn:` does both, and marks
the connection broken when it was lost (DatabaseUnavailable). Connections idle for longer
than `max_idle_s` are closed rather than reused, so a server-side idle timeout
never surprises a caller.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from envios.errors import DatabaseUnavailable
from envios.store.connector import Connection, Database


class ConnectionPool:
    def __init__(
        self,
        database: Database,
        *,
        keep: int = 64,
        max_idle_s: float = 300.0,
        limit: int | None = None,
    ):
        self.database = database
        self.keep = keep if limit is None else min(keep, limit)
        self.max_idle_s = max_idle_s
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit) if limit else None
        self._idle: list[tuple[Connection, float]] = []
        self._lock = threading.Lock()
        self.open = 0  # connections handed out now (at most `limit`)
        self.peak = 0

    def get(self) -> Connection:
        if self._slots is not None:
            self._slots.acquire()
        try:
            conn = self._reuse() or self.database.connect()
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise
        with self._lock:
            self.open += 1
            self.peak = max(self.peak, self.open)
        return conn

    def _reuse(self) -> Connection | None:
        now = time.monotonic()
        stale, conn = [], None
        with self._lock:
            while self._idle:
                candidate, since = self._idle.pop()
                if now - since > self.max_idle_s:
                    stale.append(candidate)
                    continue
                conn = candidate
                break
        for c in stale:
            c.close()
        return conn

    def put(self, conn: Connection, broken: bool = False) -> None:
        with self._lock:
            self.open -= 1
            keep = not broken and not conn.in_transaction and len(self._idle) < self.keep
            if keep:
                self._idle.append((conn, time.monotonic()))
        if not keep:
            conn.close()
        if self._slots is not None:
            self._slots.release()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        conn = self.get()
        broken = False
        try:
            yield conn
        except DatabaseUnavailable:
            broken = True
            raise
        finally:
            self.put(conn, broken=broken)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()
