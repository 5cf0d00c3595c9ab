"""The gateway adapter interface: what the loop may ask a gateway, and what it hears back.

An adapter *classifies*: every answer, exception or silence of the gateway
becomes exactly one `Outcome`. The loop *obeys* the table in DESIGN.md section 3
(see `sender.session_worker.ACTIONS`). The only question that matters for each
outcome is "could the message have been delivered?":

| Outcome           | delivered?      | examples                                         |
|-------------------|-----------------|--------------------------------------------------|
| SENT              | yes             | 2xx with a message id                            |
| SENT_WITHOUT_ID   | yes             | 2xx saying ok, no message id                     |
| REJECTED          | no, never will  | 400/422 bad number, empty text                   |
| SESSION_NOT_READY | no              | 409 SESSION_NOT_READY                            |
| RATE_LIMITED      | no              | 429                                              |
| UNREACHABLE       | no              | connection refused, DNS, connect timeout, 401/403|
| GATEWAY_ERROR     | no              | 5xx where the gateway says it did not send       |
| UNKNOWN           | maybe           | read timeout, reset mid-request, bad 2xx, other  |
| ACCOUNT_BLOCKED   | no              | Cloud API token expired (190), account restricted (368, 131031) |

ACCOUNT_BLOCKED stops everything: no session of this sender can send until a
person renews the token or the account is released (`ACTIONS` in session_worker).

An adapter never invents a message id: `message_id` is what the gateway said, or None.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass


class Outcome(str, enum.Enum):
    """Values are the `outcome` label of envios_sender_sends_total (docs/METRICS.md)."""

    SENT = "sent"
    SENT_WITHOUT_ID = "sent_without_id"
    REJECTED = "rejected"
    SESSION_NOT_READY = "session_not_ready"
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"
    GATEWAY_ERROR = "gateway_error"
    UNKNOWN = "unknown"
    ACCOUNT_BLOCKED = "account_blocked"

    @property
    def delivered(self) -> bool | None:
        """True: the gateway confirmed; False: definitely not sent; None: nobody knows."""
        if self in (Outcome.SENT, Outcome.SENT_WITHOUT_ID):
            return True
        if self is Outcome.UNKNOWN:
            return None
        return False


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    message_id: str | None = None
    reason: str = ""  # short, for last_error and logs; never holds the phone number
    retry_after_s: float | None = None  # from a 429's Retry-After, when given
    http_status: int | None = None
    latency_s: float = 0.0

    @classmethod
    def sent(cls, message_id: str | None, **kw) -> SendResult:
        return cls(Outcome.SENT if message_id else Outcome.SENT_WITHOUT_ID, message_id=message_id or None, **kw)


# Session states of DESIGN.md section 9, plus UNREACHABLE (no answer at all).
READY = "READY"
SESSION_STATES = ("READY", "CONNECTING", "AWAITING_QR", "DISCONNECTED", "ERROR", "UNREACHABLE")


@dataclass(frozen=True)
class SessionStatus:
    state: str  # one of SESSION_STATES
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def reachable(self) -> bool:
        return self.state != "UNREACHABLE"


class Gateway(abc.ABC):
    """One WhatsApp gateway. Thread-safe: every session worker shares one instance."""

    kind: str = ""
    base_url: str = ""

    @abc.abstractmethod
    def status(self, cliente_id: int) -> SessionStatus:
        """The session's state; never raises for network problems (UNREACHABLE instead)."""

    @abc.abstractmethod
    def send(self, cliente_id: int, to: str, message: str) -> SendResult:
        """One POST; never raises for gateway problems: every failure is an Outcome.

        `to` is digits only, country code first. The request is never retried here.
        """

    def send_row(self, cliente_id: int, to: str, message: str, envio_id: int, name: str | None = None) -> SendResult:
        """`send`, for adapters that can carry the row's id to the gateway (Cloud API's
        `biz_opaque_callback_data`), so its acknowledgements name the row even when the
        send's own answer is lost, and the recipient's name (a template's parameter).
        Default: both stay with us."""
        return self.send(cliente_id, to, message)

    def find_sent(self, cliente_id: int, to: str, message: str, since_epoch: float) -> Evidence | None:
        """The gateway's own record of a message from us to `to` with exactly `message`, sent at or
        after `since_epoch` (unix seconds); None when it has none. Raises `EvidenceUnavailable`
        when it cannot tell (no such lookup, gateway unreachable)."""
        raise EvidenceUnavailable(f"gateway kind {self.kind or '?'} has no message lookup")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections."""


@dataclass(frozen=True)
class Evidence:
    """A message the gateway says it sent: what settles an unknown outcome (never a guess)."""

    message_id: str
    sent_epoch: float | None
    source: str  # e.g. "waha chat messages lookup"


class EvidenceUnavailable(Exception):
    """The gateway could not be asked (no lookup, unreachable, unreadable answer)."""
