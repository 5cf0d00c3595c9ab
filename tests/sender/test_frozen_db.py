"""Issue 12: a database server that freezes under the sender is noticed by the sender too.

The freeze is real (tests/monitor/test_frozen_db.py's proxy on loopback holds every byte,
the connection stays open). Before the fix the sender's socket waited 120 s, longer than
many a lease: a frozen server looked like a very slow one.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

import pytest
from envios.sender.loop import Sender

from envios.errors import DatabaseNotAnswering
from envios.store.connector import sender_timeouts
from tests.monitor.test_frozen_db import FreezableProxy
from tests.sender.conftest import make_config, seed_session

LEASE_TTL_S = 6.0


@pytest.mark.parametrize("lease_ttl_s", [1.0, 4.0, 6.0, 30.0, 300.0, 86400.0])
def test_the_senders_waits_are_bounded_by_its_lease(lease_ttl_s):
    lock_wait_s, read_timeout_s = sender_timeouts(lease_ttl_s)
    # a lock wait ends as a conflict, not as "frozen"
    assert lock_wait_s >= 1 and lock_wait_s < read_timeout_s <= 30.0
    if lease_ttl_s >= 4:
        assert read_timeout_s <= lease_ttl_s / 2  # noticed well before the lease could lapse


@pytest.mark.mysql_only
def test_a_frozen_server_is_noticed_by_the_sender_within_its_lease(db_url, upgraded, gateway):
    seed_session(upgraded, cliente_id=51, campania_id=47, rows=1)
    parts = urlsplit(db_url)
    proxy = FreezableProxy((parts.hostname, parts.port or 3306))
    password = ":" + parts.password if parts.password else ""
    netloc = f"{parts.username or 'root'}{password}@127.0.0.1:{proxy.port}"
    url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    sender = Sender(make_config(url, gateway.base_url, **{"sender.lease_ttl_s": LEASE_TTL_S}))
    lock_wait_s, _ = sender_timeouts(LEASE_TTL_S)
    outcome: list[BaseException | None] = []
    try:
        with sender.database.connect() as conn:
            assert (
                conn.query_one("SELECT @@SESSION.innodb_lock_wait_timeout AS w")["w"] == lock_wait_s
            )
            proxy.freeze()

            def read() -> None:
                try:
                    conn.query_one("SELECT COUNT(*) AS n FROM ll_envios_whatsapp")
                    outcome.append(None)
                except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                    outcome.append(exc)

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            reader.join(LEASE_TTL_S)  # bounded: before the fix this waited 120 s
            assert not reader.is_alive(), (
                "the sender is still waiting on a frozen server past its lease"
            )
            assert len(outcome) == 1 and isinstance(outcome[0], DatabaseNotAnswering), outcome
            assert "did not answer in time" in str(outcome[0])
    finally:
        proxy.close()
        sender.close()
