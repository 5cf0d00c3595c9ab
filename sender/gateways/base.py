"""The gateway adapter interface: what the loop may ask a gateway, and what it hears back.

An adapter *classifies*: every answer, exception or silence of the gateway
becomes exactly one `Outcome`. The loop *obeys* the table in DESIGN.md section 3
(see `sender.session_worker.ACTIONS`). The only question that matters for each
outcome is "could the message have been delivered?":

| Outcome           | delivered?     | examples                                                |
|-------------------|----------------|---------------------------------------------------------|
| SENT              | yes            | 2xx with a message id                                   |
| SENT_WITHOUT_ID   | yes            | 2xx saying ok, no message id or a placeholder           |
| REJECTED          | no, never will | 400/422 bad number, empty text                          |
| SESSION_NOT_READY | no             | 409 / 503 SESSION_NOT_READY                             |
| NO_ROUTE          | no             | 404: the gateway has no POST /send                      |
| RATE_LIMITED      | no             | 429                                                     |
| UNREACHABLE       | no             | connection refused, DNS, connect timeout, 401/403       |
| GATEWAY_ERROR     | no             | 5xx where the gateway says it did not send              |
| UNKNOWN           | maybe          | read timeout, reset mid-request, bad 2xx, other         |
| BAD_MESSAGE_ID    | maybe          | 2xx whose message id cannot be stored (> 255...)        |
| ACCOUNT_BLOCKED   | no             | Cloud API token expired (190), restricted (368, 131031) |

ACCOUNT_BLOCKED stops everything: no session of this sender can send until a
person renews the token or the account is released (`ACTIONS` in session_worker).

An adapter never invents a message id: `message_id` is what the gateway said, or None.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

from envios.domain import MESSAGE_ID_MAX, WHATSAPP_TEXT_MAX


class Outcome(str, enum.Enum):
    """Values are the `outcome` label of envios_sender_sends_total (docs/METRICS.md)."""

    SENT = "sent"
    SENT_WITHOUT_ID = "sent_without_id"
    REJECTED = "rejected"
    SESSION_NOT_READY = "session_not_ready"
    NO_ROUTE = "no_route"
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"
    GATEWAY_ERROR = "gateway_error"
    UNKNOWN = "unknown"
    BAD_MESSAGE_ID = "bad_message_id"  # "sent", with an id the message_id column cannot hold
    ACCOUNT_BLOCKED = "account_blocked"

    @property
    def delivered(self) -> bool | None:
        """True: the gateway confirmed; False: definitely not sent; None: nobody knows."""
        if self in (Outcome.SENT, Outcome.SENT_WITHOUT_ID):
            return True
        if self in (Outcome.UNKNOWN, Outcome.BAD_MESSAGE_ID):
            return None
        return False


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    message_id: str | None = None
    reason: str = ""  # short, for last_error and logs; never holds the phone number
    retry_after_s: float | None = None  # from a 429's Retry-After, when given
    # SENT_WITHOUT_ID by design: the gateway answered a placeholder
    gateway_gives_no_id: bool = False
    http_status: int | None = None
    latency_s: float = 0.0

    @classmethod
    def sent(cls, message_id: str | None, **kw) -> SendResult:
        problem = message_id_problem(message_id) if message_id else None
        if problem:  # a gateway fault: the send may be delivered, but the id cannot be recorded
            return cls(
                Outcome.BAD_MESSAGE_ID,
                reason=problem,
                **{k: v for k, v in kw.items() if k != "reason"},
            )
        return cls(
            Outcome.SENT if message_id else Outcome.SENT_WITHOUT_ID,
            message_id=message_id or None,
            **kw,
        )


# The history detail and the row's note of a send the gateway confirmed with a
# placeholder instead of an id (the watcher tells these apart from ids lost).
NO_ID_FROM_GATEWAY = "the gateway gives no message id"

# Session states of every build of DESIGN.md section 9, plus UNREACHABLE (no answer at all).


def message_id_problem(message_id: str) -> str | None:
    """Why a message id from the gateway cannot be stored as it is, or None (ids are never
    altered)."""
    if len(message_id) > MESSAGE_ID_MAX:
        return (
            f"gateway said sent but gave a message id of {len(message_id)} characters"
            f" (at most {MESSAGE_ID_MAX} fit): {message_id[:60]}..."
        )
    if not (message_id.isascii() and message_id.isprintable()):
        return (
            "gateway said sent but gave a message id with characters that cannot be stored:"
            f" {message_id[:60]!r}"
        )
    return None


# Session states of DESIGN.md section 9, plus UNREACHABLE (no answer at all).
READY = "READY"
SESSION_STATES = (
    "READY",
    "CONNECTING",
    "AWAITING_QR",
    "QR_REQUIRED",
    "INIT",
    "AUTHENTICATED",
    "DISCONNECTED",
    "ERROR",
    "UNREACHABLE",
)


@dataclass(frozen=True)
class SessionStatus:
    state: str  # one of SESSION_STATES
    detail: str = ""
    # The session the status answer names ("admin" on the venom build): one WhatsApp
    # session for every client. None when the answer names none (or there was none).
    shared_session: str | None = None

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
    max_text_chars: int = WHATSAPP_TEXT_MAX  # longest text a send accepts; longer rows: error

    @abc.abstractmethod
    def status(self, cliente_id: int) -> SessionStatus:
        """The session's state; never raises for network problems (UNREACHABLE instead)."""

    @abc.abstractmethod
    def send(self, cliente_id: int, to: str, message: str) -> SendResult:
        """One POST; never raises for gateway problems: every failure is an Outcome.

        `to` is digits only, country code first. The request is never retried here.
        """

    def send_row(
        self, cliente_id: int, to: str, message: str, envio_id: int, name: str | None = None
    ) -> SendResult:
        """`send`, for adapters that can carry the row's id to the gateway (Cloud API's
        `biz_opaque_callback_data`), so its acknowledgements name the row even when the
        send's own answer is lost, and the recipient's name (a template's parameter).
        Default: both stay with us."""
        return self.send(cliente_id, to, message)

    def find_sent(
        self, cliente_id: int, to: str, message: str, since_epoch: float
    ) -> Evidence | None:
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
