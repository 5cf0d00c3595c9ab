"""One structured line per event: `event=state_change envio_id=12 ... phone=*********6821`.

Values with spaces or quotes are quoted; None is '-'. Phone numbers must be
passed through `sender.phones.mask` by the caller: nothing here knows which
field is personal data, so the call sites name only masked values.
"""

from __future__ import annotations

import enum
from typing import Any


def _value(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, enum.Enum):
        value = value.value
    text = str(value)
    if any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def kv(event: str, **fields: Any) -> str:
    return " ".join([f"event={event}", *(f"{k}={_value(v)}" for k, v in fields.items())])
