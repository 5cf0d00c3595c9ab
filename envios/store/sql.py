"""How the store names a statement: `Statement(name, sql)` with `%(param)s` placeholders.

Where MariaDB/MySQL and SQLite need different text the difference is spelled out in
the statement itself (`mysql=` / `sqlite=`), so a reader sees both side by side. The
connector (`envios.store.connector`) is the only code that turns a statement into the
driver's placeholder style.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Statement:
    name: str
    sql: str = ""  # the text when both dialects agree
    mysql: str | None = None
    sqlite: str | None = None

    def __post_init__(self) -> None:
        if not self.sql and (self.mysql is None or self.sqlite is None):
            raise ValueError(f"statement {self.name}: give `sql`, or both `mysql` and `sqlite`")

    def text(self, dialect: str) -> str:
        override = self.mysql if dialect == "mysql" else self.sqlite
        return override if override is not None else self.sql

    def __str__(self) -> str:  # log lines and dry runs name the statement
        return self.name

    def with_lists(self, **lists: Iterable[Any]) -> tuple[Statement, dict[str, Any]]:
        """The statement with each `{name}` made an IN list of parameters, and the parameters.

        `WHERE campania_id IN ({ids})` with `ids=[3, 5]` becomes `IN (%(ids_0)s, %(ids_1)s)`:
        only placeholders enter the text, the values stay parameters.
        """
        params: dict[str, Any] = {}
        marks: dict[str, str] = {}
        for key, values in lists.items():
            marks[key], found = in_list(key, values)
            params.update(found)

        def fill(text: str | None) -> str | None:
            return None if text is None else text.format(**marks)

        filled = Statement(self.name, fill(self.sql) or "", fill(self.mysql), fill(self.sqlite))
        return filled, params


def by_value(*values: str) -> dict[str, str]:
    """Parameters named by their own value: `%(enviando)s` takes `Estado.ENVIANDO`'s value.

    The states and other fixed words of the domain reach SQL this way, never as literals
    in its text.
    """
    return {str(getattr(v, "value", v)): str(getattr(v, "value", v)) for v in values}


def in_list(prefix: str, values: Iterable[Any]) -> tuple[str, dict[str, Any]]:
    """`%(p_0)s, %(p_1)s, ...` and its parameters, for `IN (...)`: the values stay parameters."""
    params = {f"{prefix}_{i}": value for i, value in enumerate(values)}
    if not params:
        raise ValueError(
            f"in_list({prefix!r}): an empty IN list matches nothing; skip the statement"
        )
    return ", ".join(f"%({key})s" for key in params), params
