"""The one source of "now" and "today": Python. Two readings of the same instant:

- `now()` / `today()`: wall clock in the configured `timezone`. Schedule windows
  (`hora_inicio..hora_fin`, `dias_semana`) and which day a quota belongs to.
- `db_now(conn)`: the DATABASE's wall clock, what its own clock function would say at this
  instant. Every time envios writes into the tables (`fecha_envio`, the history's
  `created_at`, `claimed_at`, leases, pauses) and every time it compares with one,
  so rows written by envios and by the original application (which uses the server's clock)
  compare (DESIGN.md section 10).

The instant still comes from Python; only the server's UTC offset is asked,
with `SELECT FROM_UNIXTIME(epoch)` (`Connection.utc_offset`, refreshed as time
passes, so a DST change on the server is followed). SQLite has no server clock
and no other writer: its database clock is the configured time zone.
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
        """Unix seconds of a naive local datetime."""
        return local.replace(tzinfo=self.tz).timestamp()

    def to_db(self, conn, local: dt.datetime) -> dt.datetime:
        """The database's wall clock at the instant `local` (configured zone) names."""
        epoch = self.to_epoch(local)
        offset = conn.utc_offset(epoch)
        if offset is None:
            return local
        return (dt.datetime.fromtimestamp(epoch, dt.timezone.utc) + offset).replace(tzinfo=None)

    def db_now(self, conn) -> dt.datetime:
        """What `conn`'s server clock says at this instant (from Python's clock)."""
        return self.to_db(conn, self.now())

    def db_to_epoch(self, conn, value: dt.datetime) -> float:
        """Unix seconds of a naive datetime read from the database (written on its clock)."""
        offset = conn.utc_offset(self.to_epoch(self.now()))
        if offset is None:
            return self.to_epoch(value)
        return (value - offset).replace(tzinfo=dt.timezone.utc).timestamp()


class FixedClock(Clock):
    """A clock that only moves when told to (tests, replays)."""

    def __init__(self, tz: ZoneInfo | str, at: dt.datetime):
        super().__init__(tz)
        self.at = at.replace(microsecond=0)

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at = self.at + dt.timedelta(seconds=seconds)
