"""A few idle database connections kept for the next session worker (opening one can cost 30 ms).

A connection is used by one thread at a time: `get()` hands it out, `put()`
takes it back; one that failed is closed instead (`put(conn, broken=True)`).
Connections idle for longer than `max_idle_s` are closed rather than reused,
so a server-side idle timeout never surprises a worker.
"""

from __future__ import annotations

import threading
import time

from envios.store.connector import Connection, Database


class ConnectionPool:
    def __init__(self, database: Database, *, keep: int = 64, max_idle_s: float = 300.0):
        self.database = database
        self.keep = keep
        self.max_idle_s = max_idle_s
        self._idle: list[tuple[Connection, float]] = []
        self._lock = threading.Lock()

    def get(self) -> Connection:
        now = time.monotonic()
        stale = []
        conn = None
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
        return conn or self.database.connect()

    def put(self, conn: Connection, broken: bool = False) -> None:
        if broken or conn.in_transaction:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()
