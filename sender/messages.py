"""Message text: `{nombre}` / `{nombre_destino}` filled from `nombre_destino`, whitespace tidied.

    personalise("Hola {nombre}, ¿seguimos?", "Ana")  -> "Hola Ana, ¿seguimos?"
    personalise("Hola {nombre}, ¿seguimos?", None)   -> "Hola, ¿seguimos?"

Placeholders match case-insensitively, like the legacy scheduler (/gi). A NULL
name becomes empty; the spaces it leaves behind are removed (doubled spaces,
a space before punctuation, leading/trailing blanks); line breaks are kept.
"""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(r"\{\s*(nombre|nombre_destino)\s*\}", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\u00a0]{2,}")
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t\u00a0]+([,.;:!?])")
_TRAILING = re.compile(r"[ \t\u00a0]+$", re.MULTILINE)
_LEADING = re.compile(r"^[ \t\u00a0]+", re.MULTILINE)


def personalise(template: str | None, nombre: str | None) -> str:
    name = " ".join((nombre or "").split())
    text = _PLACEHOLDER.sub(lambda _m: name, template or "")
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _TRAILING.sub("", text)
    text = _LEADING.sub("", text)
    return text.strip()
