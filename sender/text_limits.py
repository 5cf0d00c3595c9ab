"""A message longer than the gateway accepts is refused before the claim, never sent.

WhatsApp text messages hold at most 4,096 characters (the Cloud API's documented
limit for a text body); a gateway may declare its own as `max_text_chars`.
Characters are Unicode code points, what an operator counts.
"""

from __future__ import annotations

WHATSAPP_TEXT_MAX = 4096


def limit_of(gateway: object) -> int:
    return int(getattr(gateway, "max_text_chars", WHATSAPP_TEXT_MAX) or WHATSAPP_TEXT_MAX)


def too_long(text: str, gateway: object) -> str | None:
    """Why `text` cannot go through `gateway`, or None."""
    limit = limit_of(gateway)
    if len(text) > limit:
        return f"message too long: {len(text)} characters, the gateway accepts at most {limit}"
    return None
