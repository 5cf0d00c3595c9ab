"""WhatsApp sessions of the simulated gateway, one per cliente_id.

A session comes into being on first use in the default state (READY unless
configured otherwise). A timed change ("DISCONNECTED for 5 s") is stored as a
deadline and resolved when the session is next looked at, so no timer thread
is needed and a paused test process cannot miss the restore.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .faults import SESSION_STATES


@dataclass
class Session:
    state: str
    until: float | None = None  # monotonic deadline of a timed state
    then: str = "READY"  # the state it returns to at ``until``
    changes: int = 0


def check_state(state: str) -> str:
    if not isinstance(state, str) or state.upper() not in SESSION_STATES:
        raise ValueError(f"state must be one of {', '.join(SESSION_STATES)}, got {state!r}")
    return state.upper()


class SessionTable:
    """Not thread-safe on its own: SimState calls it under its lock."""

    def __init__(self, default_state: str = "READY", clock: Callable[[], float] = time.monotonic):
        self.default_state = check_state(default_state)
        self._clock = clock
        self._sessions: dict[int, Session] = {}

    def _get(self, cliente_id: int) -> Session:
        s = self._sessions.get(cliente_id)
        if s is None:
            s = self._sessions[cliente_id] = Session(self.default_state)
        if s.until is not None and self._clock() >= s.until:
            s.state, s.until = s.then, None
            s.changes += 1
        return s

    def state(self, cliente_id: int) -> str:
        return self._get(cliente_id).state

    def set(
        self, cliente_id: int, state: str, for_s: float | None = None, then: str = "READY"
    ) -> dict:
        state, then = check_state(state), check_state(then)
        if for_s is not None and (
            isinstance(for_s, bool) or not isinstance(for_s, (int, float)) or for_s < 0
        ):
            raise ValueError(f"for_s must be a non-negative number of seconds, got {for_s!r}")
        s = self._get(cliente_id)
        s.state, s.then = state, then
        s.until = None if for_s is None else self._clock() + float(for_s)
        s.changes += 1
        return self.describe(cliente_id)

    def describe(self, cliente_id: int) -> dict:
        s = self._get(cliente_id)
        d = {"cliente_id": cliente_id, "state": s.state, "connected": s.state == "READY"}
        if s.until is not None:
            d["back_to"] = s.then
            d["back_in_s"] = round(max(0.0, s.until - self._clock()), 3)
        return d

    def describe_all(self) -> dict[str, dict]:
        return {str(cid): self.describe(cid) for cid in sorted(self._sessions)}

    def clear(self) -> None:
        self._sessions.clear()
