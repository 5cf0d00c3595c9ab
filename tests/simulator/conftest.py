"""Fixtures for the gateway simulator tests: a real server on a loopback port."""

from __future__ import annotations

import pytest
import requests

from envios.errors import chain

NUMBER = "5491123456789"


@pytest.fixture
def send(sim):
    """POST /send the way the session-manager adapter does; returns the Response."""

    def _send(cliente_id=51, to=NUMBER, message="Hola Ana", session=None, timeout=5, **body_extra):
        body = {"cliente_id": cliente_id, "to": to, "message": message, **body_extra}
        return (session or requests).post(
            f"{sim.base_url}/send",
            json=body,
            headers={"X-Cliente-Id": str(cliente_id)},
            timeout=timeout,
        )

    return _send


def is_refused(exc: BaseException) -> bool:
    """True when a requests error was caused by ECONNREFUSED somewhere in its chain."""
    return any(isinstance(e, ConnectionRefusedError) for e in chain(exc))


@pytest.fixture
def refused():
    return is_refused
