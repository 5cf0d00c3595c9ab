"""One structured line per event: `event=state_change envio_id=12 ... phone=*********6821`.

Values with spaces or quotes are quoted; None is '-'. Phone numbers must be
passed through `sender.phones.mask` by the caller. As a second line of
defence, free-text fields that can echo a number (a gateway's `detail`) are
scrubbed here of every run of 6+ digits; a WhatsApp `message_id` such as
'true_5491123456789@c.us_3EB0...' has only its number masked, so the line
still names the message (`record_failed` is an operator's record of it).
"""

from __future__ import annotations

import enum
from typing import Any

from envios.phones import mask_message_id, scrub


def _value(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, enum.Enum):
        value = value.value
    text = str(value)
    if any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


SCRUBBED_FIELDS = frozenset({"message_id", "detail", "error", "reason", "note"})


def kv(event: str, **fields: Any) -> str:
    parts = [f"event={event}"]
    for key, value in fields.items():
        if key == "message_id" and value is not None:
            value = mask_message_id(value)  # whole but for the number: an operator can act on it
        elif key in SCRUBBED_FIELDS and value is not None:
            value = scrub(str(value.value if isinstance(value, enum.Enum) else value))
        parts.append(f"{key}={_value(value)}")
    return " ".join(parts)
