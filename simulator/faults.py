"""Fault settings of the simulated gateway and how one send's fate is drawn.

Every POST /send with a usable cliente_id draws exactly the same amount of
randomness from its session's generator (see ``Draw``), whatever the settings.
So the k-th send of a session gets the same fate for the same seed and the same
settings, and changing, say, the latency does not shift which send fails.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields, replace

# Session states the contract knows (DESIGN.md section 9).
SESSION_STATES = ("READY", "CONNECTING", "AWAITING_QR", "DISCONNECTED", "ERROR")

# Mutually exclusive per-send outcomes, in the order their bands are laid out on
# [0, 1). Anything past the last band is a plain, successful send.
OUTCOME_RATES = (
    ("rate_limited", "rate_limit_rate"),
    ("error_5xx", "error_5xx_rate"),
    ("session_drop", "session_drop_rate"),
    ("slow", "slow_rate"),
    ("garbage", "garbage_rate"),
    ("no_message_id", "no_message_id_rate"),
    ("dropped", "drop_connection_rate"),
    ("stalled", "stall_rate"),  # last, so adding it moved no earlier band
)


@dataclass(frozen=True)
class Faults:
    """What can go wrong, and how often. All rates are probabilities per send."""

    latency_ms: tuple[float, float] = (0.0, 0.0)  # uniform extra delay on /send and /status
    error_5xx_rate: float = 0.0  # 500 WHATSAPP_ERROR, not delivered
    rate_limit_rate: float = 0.0  # 429, not delivered
    slow_rate: float = 0.0  # delivered, then answered only after slow_s
    slow_s: float = 3.0
    garbage_rate: float = 0.0  # delivered, answered 200 with a non-JSON body
    no_message_id_rate: float = 0.0  # delivered, answered 200 {"ok": true} without an id
    drop_connection_rate: float = 0.0  # delivered, socket closed with no answer
    stall_rate: float = 0.0  # NOT delivered, socket closed with no answer after slow_s (a timeout)
    session_drop_rate: float = 0.0  # session falls to session_drop_state: this send is a 409
    session_drop_s: float = 5.0
    session_drop_state: str = "DISCONNECTED"
    status_key: str = "state"  # older session-manager builds answer "status" instead

    def as_dict(self) -> dict:
        d = asdict(self)
        d["latency_ms"] = list(self.latency_ms)
        return d

    def updated(self, **changes) -> Faults:
        """A copy with ``changes`` applied, checked; raises ValueError naming the problem."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        if "latency_ms" in changes:
            changes["latency_ms"] = parse_latency(changes["latency_ms"])
        for name, value in changes.items():
            if name in ("latency_ms", "session_drop_state", "status_key"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            changes[name] = float(value)
        new = replace(self, **changes)
        new._check()
        return new

    def _check(self) -> None:
        total = 0.0
        for _outcome, rate_name in OUTCOME_RATES:
            rate = getattr(self, rate_name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{rate_name} must be between 0 and 1, got {rate}")
            total += rate
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"the fault rates add up to {total:.3f};"
                " they are exclusive and must add up to at most 1"
            )
        for name in ("slow_s", "session_drop_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.session_drop_state not in SESSION_STATES or self.session_drop_state == "READY":
            allowed = ", ".join(s for s in SESSION_STATES if s != "READY")
            raise ValueError(f"session_drop_state must be one of {allowed}")
        if self.status_key not in ("state", "status"):
            raise ValueError("status_key must be 'state' or 'status'")


def parse_latency(value) -> tuple[float, float]:
    """Accept 10, "10", "5,20", [5, 20] (milliseconds) and return (low, high)."""
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"latency_ms must be a number or 'LOW,HIGH', got {value!r}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        nums = [float(value)]
    elif isinstance(value, (list, tuple)):
        nums = [float(v) for v in value]
    else:
        raise ValueError(f"latency_ms must be a number or [low, high], got {value!r}")
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or nums[0] < 0 or nums[1] < nums[0]:
        raise ValueError(f"latency_ms must be [low, high] with 0 <= low <= high, got {value!r}")
    return (nums[0], nums[1])


@dataclass(frozen=True)
class Draw:
    """The randomness one send consumes: always these three values, in this order."""

    fate: float  # picks the outcome band
    latency: float  # position inside latency_ms
    id_bits: int  # the random part of the message id

    @classmethod
    def take(cls, rng: random.Random) -> Draw:
        return cls(fate=rng.random(), latency=rng.random(), id_bits=rng.getrandbits(64))

    def outcome(self, faults: Faults) -> str:
        edge = 0.0
        for outcome, rate_name in OUTCOME_RATES:
            edge += getattr(faults, rate_name)
            if self.fate < edge:
                return outcome
        return "ok"

    def latency_s(self, faults: Faults) -> float:
        low, high = faults.latency_ms
        return (low + (high - low) * self.latency) / 1000.0
