"""Fixtures for the gateway simulator tests: a real server on a loopback port."""

from __future__ import annotations

import pytest
import requests

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
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return True
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return False


@pytest.fixture
def refused():
    return is_refused
