"""The one source of "now" and "today": Python, in the configured time zone.

Datetimes go to the database as naive local wall-clock values (the legacy
`fecha_envio` is local time), always as SQL parameters, never the database server's clock functions.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


class Clock:
    def __init__(self, tz: ZoneInfo | str):
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz

    def now(self) -> dt.datetime:
        """Naive local time, whole seconds (DATETIME columns hold no fraction)."""
        return dt.datetime.now(self.tz).replace(tzinfo=None, microsecond=0)

    def today(self) -> dt.date:
        return self.now().date()

    def to_epoch(self, local: dt.datetime) -> float:
        """Unix seconds of a naive local datetime read from the database."""
        return local.replace(tzinfo=self.tz).timestamp()


class FixedClock(Clock):
    """A clock that only moves when told to (tests, replays)."""

    def __init__(self, tz: ZoneInfo | str, at: dt.datetime):
        super().__init__(tz)
        self.at = at.replace(microsecond=0)

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at = self.at + dt.timedelta(seconds=seconds)
