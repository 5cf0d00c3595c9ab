"""Auto-pause: after each refresh, pause campaigns past a threshold (never inside a scrape).

A campaign crosses a threshold when (config `monitor.autopause`):

- `stuck`: more than `max_stuck` of its rows are in `enviando` for longer than
  `monitor.stuck_after_s` (all of them, also those claimed before a resume:
  a stuck row needs `envios reconcile`, and sending on while its outcome is
  unknown is what the incident was);
- `missing_message_id`: more than `max_missing_message_id` rows this system
  marked `enviado` without a message id, finished after the last resume. Sends
  the gateway confirmed with a placeholder (a build that never gives ids) are
  unverifiable, not ids lost: they count here only with `count_unverifiable`;
- `error_ratio`: errors / finished sends in the window (after the last resume)
  above `max_error_ratio`, with at least `min_finished` finished sends.

When several are crossed the first in that order is the reason; the audit
detail names every crossed threshold with its value. Verdicts use only values
read by this refresh: a query that failed or timed out gives no verdict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from envios.monitor.campaigns import pause

from envios.domain import WATCHER, ProgramacionEstado

if TYPE_CHECKING:
    import datetime as dt

    from envios.monitor.refresher import Snapshot

    from envios.store.connector import Connection

log = logging.getLogger("envios.watch")


@dataclass(frozen=True)
class Crossing:
    reason: str
    value: float
    threshold: float
    text: str


@dataclass(frozen=True)
class Verdict:
    campania_id: int
    crossings: tuple[Crossing, ...]
    # The campaign's resumed_at when its values were read: the pause is skipped if an
    # operator resumed it since (the values then predate the resume).
    resumed_at: dt.datetime | None = None

    @property
    def reason(self) -> str:
        return self.crossings[0].reason

    @property
    def detail(self) -> str:
        return "; ".join(c.text for c in self.crossings)


def evaluate(snapshot: Snapshot, settings) -> list[Verdict]:
    """Campaigns with an approved schedule that cross a threshold, in campaign id order.

    `settings` is `config.monitor.autopause` (max_error_ratio, min_finished,
    max_stuck, max_missing_message_id, count_unverifiable).
    """
    approved = {
        s.campania_id for s in snapshot.schedules if s.estado == ProgramacionEstado.APROBADA
    }
    verdicts = []
    for campania_id in sorted(approved & set(snapshot.campaigns)):
        c = snapshot.campaigns[campania_id]
        crossings: list[Crossing] = []
        if "stuck" in snapshot.fresh and c.stuck > settings.max_stuck:
            crossings.append(
                Crossing(
                    "stuck",
                    c.stuck,
                    settings.max_stuck,
                    f"stuck {c.stuck} > max_stuck {settings.max_stuck}"
                    f" (enviando for longer than {snapshot.stuck_after_s:g}s)",
                )
            )
        missing = c.missing_since_resume + (
            c.unverifiable_since_resume if settings.count_unverifiable else 0
        )
        if "missing_message_id" in snapshot.fresh and missing > settings.max_missing_message_id:
            unverifiable = (
                f" ({c.unverifiable_since_resume} of them unverifiable: the gateway gives no ids)"
                if settings.count_unverifiable and c.unverifiable_since_resume
                else ""
            )
            crossings.append(
                Crossing(
                    "missing_message_id",
                    missing,
                    settings.max_missing_message_id,
                    f"missing_message_id {missing} > max_missing_message_id"
                    f" {settings.max_missing_message_id}{unverifiable}",
                )
            )
        if (
            "error_ratio" in snapshot.fresh
            and c.finished >= settings.min_finished
            and c.error_ratio > settings.max_error_ratio
        ):
            crossings.append(
                Crossing(
                    "error_ratio",
                    c.error_ratio,
                    settings.max_error_ratio,
                    f"error_ratio {c.error_ratio:.3f}"
                    f" > max_error_ratio {settings.max_error_ratio:g}"
                    f" ({c.errors} errors / {c.finished} finished"
                    f" since {c.window_start:%Y-%m-%d %H:%M:%S})",
                )
            )
        if crossings:
            verdicts.append(Verdict(campania_id, tuple(crossings), c.resumed_at))
    return verdicts


def apply(
    conn: Connection, verdicts: list[Verdict], now: dt.datetime, origin: str
) -> list[tuple[Verdict, list[int]]]:
    """Pause each verdict's campaign; returns the verdicts that changed something, with the ids.

    A verdict whose schedules were already paused (by another watcher a moment
    ago, say) changes nothing and is not returned: it is not counted twice. Nor
    does one whose campaign an operator resumed after its values were read.
    """
    done = []
    for verdict in verdicts:
        changed = pause(
            conn,
            verdict.campania_id,
            reason=verdict.reason,
            now=now,
            paused_by=WATCHER,
            detail=verdict.detail,
            origin=origin,
            unless_resumed_since=verdict.resumed_at,
        )
        if changed:
            log.warning(
                "auto-paused campaign %d (schedules %s): %s",
                verdict.campania_id,
                ", ".join(map(str, changed)),
                verdict.detail,
            )
            done.append((verdict, changed))
    return done
