"""The simulated gateway's brain: sessions, the delivery ledger, counters, faults.

It knows nothing about sockets. ``handle_send`` / ``handle_status`` decide what
happens to a request and return a ``Reply`` that the HTTP layer carries out
(wait, answer, or hang up). A send that is "delivered" is written to the ledger
*before* the reply is returned, so a client that times out or is hung up on
still finds its message in the ledger — exactly the unknown-outcome case the
sender must not retry.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .faults import Draw, Faults
from .privacy import mask_phone
from .sessions import SessionTable, check_state

log = logging.getLogger("simulator")

MIN_NUMBER_DIGITS = 8  # shorter than any real number with its country code
MAX_NUMBER_DIGITS = 15  # E.164 maximum

# A 200 whose body is not JSON: what a misconfigured proxy or a crashing gateway
# build can return. The message WAS delivered: the client cannot know it.
GARBAGE_BODY = (
    b"<html><head><title>Gateway</title></head>"
    b"<body><h1>It works!</h1><p>The server is running.</p></body></html>\n"
)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0  # wait this long before answering (latency, slow send)
    drop: bool = False  # close the connection without answering
    close: bool = False  # answer, then close the connection
    headers: dict = field(default_factory=dict)


def json_reply(status: int, obj: object, **kw) -> Reply:
    return Reply(status, json.dumps(obj, separators=(",", ":")).encode(), **kw)


def error_reply(status: int, code: str, message: str, **kw) -> Reply:
    return json_reply(status, {"error": True, "code": code, "message": message}, **kw)


def parse_cliente_id(value: object) -> int:
    """A positive integer, given as a number or a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(f"cliente_id must be a positive integer, got {value!r}")


class SimState:
    """Thread-safe state shared by every connection of one simulator."""

    def __init__(
        self,
        seed: int | None = None,
        faults: Faults | Mapping | None = None,
        sessions: Mapping[int, str] | None = None,
        default_state: str = "READY",
        api_key: str | None = None,
    ):
        # No seed means "not reproducible", but the seed picked is still
        # reported (stats, log) so an interesting run can be replayed.
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        if faults is None:
            faults = Faults()
        elif not isinstance(faults, Faults):
            faults = Faults().updated(**dict(faults))
        self._initial_faults = faults
        self._initial_sessions = {int(k): check_state(v) for k, v in (sessions or {}).items()}
        self._default_state = default_state
        self.api_key = api_key or None
        self._lock = threading.Lock()
        self.started_at = time.time()
        self._reset_locked()

    # ----- lifecycle -------------------------------------------------------------

    def _reset_locked(self) -> None:
        self._faults = self._initial_faults
        self._sessions = SessionTable(self._default_state)
        for cid, st in self._initial_sessions.items():
            self._sessions.set(cid, st)
        self._rngs: dict[int, random.Random] = {}
        self._status_rng = random.Random(f"envios-sim:{self.seed}:status")
        self._ledger: list[dict] = []
        self._sends_received = 0
        self._status_requests = 0
        self._outcomes: dict[str, int] = {}

    def reset(self) -> None:
        """Back to the startup state: empty ledger, zero counters, startup sessions
        and faults, and the random sequences rewound to the start of the seed."""
        with self._lock:
            self._reset_locked()
        log.info("simulator state reset (seed %s)", self.seed)

    # ----- what tests and the control API read -----------------------------------

    @property
    def ledger(self) -> list[dict]:
        """Every delivery so far, oldest first (copies: callers cannot alter the record)."""
        with self._lock:
            return [dict(e) for e in self._ledger]

    def ledger_for(self, cliente_id: int | None = None, to: str | None = None) -> list[dict]:
        with self._lock:
            return [
                dict(e)
                for e in self._ledger
                if (cliente_id is None or e["cliente_id"] == cliente_id)
                and (to is None or e["to"] == to)
            ]

    @property
    def sends_received(self) -> int:
        """POST /send requests seen, whatever their fate."""
        with self._lock:
            return self._sends_received

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def stats(self) -> dict:
        with self._lock:
            return {
                "seed": self.seed,
                "sends_received": self._sends_received,
                "delivered": len(self._ledger),
                "status_requests": self._status_requests,
                "outcomes": dict(sorted(self._outcomes.items())),
                "sessions": self._sessions.describe_all(),
                "faults": self._faults.as_dict(),
                "uptime_s": round(time.time() - self.started_at, 3),
            }

    # ----- what tests and the control API change ---------------------------------

    def set_faults(self, **changes) -> dict:
        """Change some fault settings (the rest stay); raises ValueError on a bad one."""
        with self._lock:
            self._faults = self._faults.updated(**changes)
            current = self._faults.as_dict()
        log.info("faults changed: %s", changes)
        return current

    def set_session(
        self, cliente_id: int, state: str, for_s: float | None = None, then: str = "READY"
    ) -> dict:
        """Put a session in ``state``; with ``for_s`` it returns to ``then`` after that long."""
        cid = parse_cliente_id(cliente_id)
        with self._lock:
            desc = self._sessions.set(cid, state, for_s, then)
        log.info(
            "session %s -> %s%s", cid, desc["state"], f" for {for_s}s" if for_s is not None else ""
        )
        return desc

    def session_state(self, cliente_id: int) -> str:
        with self._lock:
            return self._sessions.state(parse_cliente_id(cliente_id))

    def sessions(self) -> dict[str, dict]:
        with self._lock:
            return self._sessions.describe_all()

    # ----- the gateway contract --------------------------------------------------

    def _count(self, outcome: str) -> None:
        self._outcomes[outcome] = self._outcomes.get(outcome, 0) + 1

    def _authorized(self, headers: Mapping) -> bool:
        if not self.api_key:
            return True
        given = headers.get("X-Api-Key") or headers.get("Apikey") or ""
        auth = headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            given = given or auth[7:].strip()
        return given == self.api_key

    def handle_status(self, headers: Mapping, query: Mapping[str, str]) -> Reply:
        with self._lock:
            self._status_requests += 1
            latency = self._status_rng.random()
            faults = self._faults
        if not self._authorized(headers):
            return error_reply(401, "UNAUTHORIZED", "missing or wrong API key")
        raw = headers.get("X-Cliente-Id") or query.get("cliente_id")
        try:
            cid = parse_cliente_id(raw)
        except ValueError:
            return error_reply(
                400,
                "VALIDATION_ERROR",
                "cliente_id (X-Cliente-Id header or ?cliente_id=) must be a positive integer",
            )
        with self._lock:
            state = self._sessions.state(cid)
        low, high = faults.latency_ms
        delay = (low + (high - low) * latency) / 1000.0
        return json_reply(
            200,
            {faults.status_key: state, "connected": state == "READY", "cliente_id": cid},
            delay_s=delay,
        )

    def handle_send(self, headers: Mapping, query: Mapping[str, str], body: bytes) -> Reply:
        with self._lock:
            self._sends_received += 1
        if not self._authorized(headers):
            with self._lock:
                self._count("unauthorized")
            return error_reply(401, "UNAUTHORIZED", "missing or wrong API key")

        try:
            payload = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict):
            payload = None

        try:
            cid = _which_session(headers, query, payload)
        except ValueError as exc:
            with self._lock:
                self._count("invalid")
            return error_reply(400, "VALIDATION_ERROR", str(exc))

        # The session's fate for this send, drawn before anything else so that
        # the k-th send of a session always gets the same draw under one seed.
        with self._lock:
            rng = self._rngs.get(cid)
            if rng is None:
                rng = self._rngs[cid] = random.Random(f"envios-sim:{self.seed}:{cid}")
            draw = Draw.take(rng)
            faults = self._faults
        outcome = draw.outcome(faults)
        delay = draw.latency_s(faults)

        # The rate limiter sits in front of everything else, as in a real gateway.
        if outcome == "rate_limited":
            with self._lock:
                self._count("rate_limited")
            return error_reply(
                429,
                "RATE_LIMITED",
                "too many requests, slow down",
                delay_s=delay,
                headers={"Retry-After": "1"},
            )

        problem = _validate(payload)
        if problem:
            with self._lock:
                self._count("invalid")
            return error_reply(400, problem[0], problem[1], delay_s=delay)
        to, text = payload["to"], payload["message"]

        with self._lock:
            state = self._sessions.state(cid)
            if state != "READY":
                self._count("not_ready")
                return error_reply(
                    409, "SESSION_NOT_READY", f"session {cid} is {state}", delay_s=delay
                )
            if outcome == "error_5xx":
                self._count("error_5xx")
                return error_reply(
                    500,
                    "WHATSAPP_ERROR",
                    "simulated WhatsApp failure: message not sent",
                    delay_s=delay,
                )
            if outcome == "session_drop":
                self._sessions.set(cid, faults.session_drop_state, faults.session_drop_s)
                self._count("session_drop")
                log.info(
                    "session %s dropped to %s for %ss",
                    cid,
                    faults.session_drop_state,
                    faults.session_drop_s,
                )
                return error_reply(
                    409,
                    "SESSION_NOT_READY",
                    f"session {cid} is {faults.session_drop_state}",
                    delay_s=delay,
                )
            if outcome == "stalled":
                # A gateway that hangs and gives up: the client sees a timeout, yet
                # nothing was sent. Never in the ledger.
                self._count("stalled")
                return Reply(0, drop=True, delay_s=delay + faults.slow_s)
            # Delivered: from here on the message exists, whatever the client hears.
            message_id = f"true_{to}@c.us_3EB0{draw.id_bits:016X}"
            self._ledger.append(
                {
                    "seq": len(self._ledger) + 1,
                    "message_id": message_id,
                    "cliente_id": cid,
                    "to": to,
                    "text": text,
                    "time": time.time(),
                    # what the client was told: ok, slow, garbage, no_message_id, dropped
                    "outcome": outcome,
                }
            )
            self._count(outcome)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("delivered cliente_id=%s to=%s outcome=%s", cid, mask_phone(to), outcome)

        if outcome == "slow":
            delay += faults.slow_s
        if outcome == "garbage":
            return Reply(200, GARBAGE_BODY, content_type="text/html", delay_s=delay)
        if outcome == "no_message_id":
            return json_reply(200, {"ok": True}, delay_s=delay)
        if outcome == "dropped":
            return Reply(0, drop=True, delay_s=delay)
        return json_reply(200, {"ok": True, "message_id": message_id}, delay_s=delay)


def _which_session(headers: Mapping, query: Mapping[str, str], payload: dict | None) -> int:
    """The cliente_id of a send. The header is what the session manager routes on;
    the body must agree with it when both are given (a mismatch is a client bug)."""
    header_cid = headers.get("X-Cliente-Id")
    body_cid = payload.get("cliente_id") if payload else None
    given = [v for v in (header_cid, body_cid, query.get("cliente_id")) if v is not None]
    if not given:
        raise ValueError("cliente_id missing: send the X-Cliente-Id header")
    cid = parse_cliente_id(given[0])
    if header_cid is not None and body_cid is not None and parse_cliente_id(body_cid) != cid:
        raise ValueError("the X-Cliente-Id header and the body's cliente_id disagree")
    return cid


def _validate(payload: dict | None) -> tuple[str, str] | None:
    """(code, message) for a request that can never be sent, else None."""
    if payload is None:
        return (
            "VALIDATION_ERROR",
            "the body must be a JSON object with cliente_id, to and message",
        )
    to, text = payload.get("to"), payload.get("message")
    if not isinstance(text, str) or not text.strip():
        return ("VALIDATION_ERROR", "message is missing or empty")
    if not isinstance(to, str) or not to:
        return ("VALIDATION_ERROR", "to is missing (digits only, country code first)")
    if not (to.isascii() and to.isdigit()):
        return ("INVALID_NUMBER", "to must contain digits only, country code first")
    if not MIN_NUMBER_DIGITS <= len(to) <= MAX_NUMBER_DIGITS:
        return ("INVALID_NUMBER", f"to must have {MIN_NUMBER_DIGITS} to {MAX_NUMBER_DIGITS} digits")
    return None
