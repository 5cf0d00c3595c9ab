"""A prometheus-client custom collector over the refresher's last published state.

`collect()` only reads the immutable `State` the refresher published: a scrape
never runs SQL and never waits for a refresh. Metric names, types and labels
are those of docs/METRICS.md. Only campaigns that are not `finalizado` have
series (the refresher reads nothing else), so a finished campaign's series
disappear at the next refresh. A family whose read has never succeeded is
absent; one whose read failed since keeps its last good values, and
`envios_watcher_query_last_success_timestamp_seconds{query}` shows how old
they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envios.monitor import queries as q
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from envios.domain import ESTADOS, ProgramacionEstado, pause_reason_label

if TYPE_CHECKING:
    from envios.monitor.refresher import Refresher

HELP = {
    "envios_stuck_sending": "Rows in enviando whose claim is older than monitor.stuck_after_s.",
    "envios_oldest_stuck_claim_timestamp_seconds": (
        "Unix time of the oldest stuck claim (absent when none)."
    ),
    "envios_error_ratio": (
        "Errors / finished sends in the last monitor.window_s (after the last resume); 0 when none "
        "finished."
    ),
    "envios_finished_in_window": "Finished sends (enviado + error) behind envios_error_ratio.",
    "envios_sent_missing_message_id": "Rows envios marked enviado without a message id.",
    "envios_legacy_sent_without_message_id": (
        "Rows sent before the upgrade (never claimed by envios): no id by construction."
    ),
    "envios_sent_unverifiable": (
        "Rows envios marked enviado on a placeholder id: the gateway never gives ids, delivery is "
        "unverifiable."
    ),
    "envios_messages": "Rows per state.",
    "envios_schedule_paused": "1 while a schedule is pausada, with the reason.",
    "envios_delivery_ratio": (
        "Of the rows sent (enviado), the share the gateway acknowledged as delivered, read or "
        "failed."
    ),
    "envios_delivery_acknowledged": (
        "Rows sent (enviado) per acknowledged delivery status (delivered counts read ones too)."
    ),
    "envios_unknowns_settled": (
        "Rows whose unknown outcome (enviando) was settled, by evidence (automatically) or by a "
        "person."
    ),
    "envios_autopause_total": "Campaigns auto-paused by this watcher process, by reason.",
    "envios_watcher_up": "1 when the last refresh reached the database (and none is hung), else 0.",
    "envios_watcher_last_refresh_timestamp_seconds": (
        "Unix time of the last refresh in which every query succeeded (0: never)."
    ),
    "envios_watcher_refresh_duration_seconds": "How long the last refresh took.",
    "envios_watcher_query_errors_total": (
        "Watcher queries that failed or exceeded their time limit."
    ),
    "envios_watcher_query_last_success_timestamp_seconds": (
        "Unix time each watcher query last succeeded."
    ),
    "envios_watcher_query_duration_seconds": "How long each watcher query took at its last run.",
}


def _gauge(name: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, HELP[name], labels=labels)


class WatcherCollector:
    def __init__(self, refresher: Refresher):
        self.refresher = refresher

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families depend on the data: collect() is cheap, no need to describe

    def collect(self) -> Iterator[Metric]:
        state = self.refresher.state
        clock = self.refresher.clock
        snap = state.snapshot
        if snap is not None:
            camps = [snap.campaigns[campania_id] for campania_id in sorted(snap.campaigns)]
            if "stuck" in snap.available:
                stuck = _gauge("envios_stuck_sending", ["campania_id"])
                oldest = _gauge("envios_oldest_stuck_claim_timestamp_seconds", ["campania_id"])
                for c in camps:
                    stuck.add_metric([str(c.campania_id)], c.stuck)
                    if c.stuck and c.oldest_stuck_claim is not None:
                        # database clock -> configured zone
                        claimed = c.oldest_stuck_claim - self.refresher.db_shift
                        oldest.add_metric([str(c.campania_id)], clock.to_epoch(claimed))
                yield stuck
                yield oldest
            if "error_ratio" in snap.available:
                ratio = _gauge("envios_error_ratio", ["campania_id"])
                finished = _gauge("envios_finished_in_window", ["campania_id"])
                for c in camps:
                    ratio.add_metric([str(c.campania_id)], c.error_ratio)
                    finished.add_metric([str(c.campania_id)], c.finished)
                yield ratio
                yield finished
            if "missing_message_id" in snap.available:
                missing = _gauge("envios_sent_missing_message_id", ["campania_id"])
                legacy = _gauge("envios_legacy_sent_without_message_id", ["campania_id"])
                unverifiable = _gauge("envios_sent_unverifiable", ["campania_id"])
                for c in camps:
                    missing.add_metric([str(c.campania_id)], c.missing)
                    legacy.add_metric([str(c.campania_id)], c.legacy_without_id)
                    unverifiable.add_metric([str(c.campania_id)], c.unverifiable)
                yield missing
                yield legacy
                yield unverifiable
            if "messages" in snap.available:
                messages = _gauge("envios_messages", ["campania_id", "estado"])
                for c in camps:
                    for estado in ESTADOS:
                        messages.add_metric(
                            [str(c.campania_id), estado], (c.messages or {}).get(estado, 0)
                        )
                yield messages
            if "delivery" in snap.available:
                ratio = _gauge("envios_delivery_ratio", ["campania_id", "status"])
                acked = _gauge("envios_delivery_acknowledged", ["campania_id", "status"])
                for c in camps:
                    d = c.delivery or q.Delivery(0, 0, 0, 0)
                    for status in q.DELIVERY_STATUSES:
                        ratio.add_metric([str(c.campania_id), status], d.ratio(status))
                        acked.add_metric([str(c.campania_id), status], getattr(d, status))
                yield ratio
                yield acked
            if "settled" in snap.available:
                settled = _gauge("envios_unknowns_settled", ["campania_id", "by"])
                for c in camps:
                    for by in ("evidence", "person"):
                        settled.add_metric([str(c.campania_id), by], (c.settled or {}).get(by, 0))
                yield settled
            if "schedules" in snap.available:
                paused = _gauge(
                    "envios_schedule_paused", ["programacion_id", "campania_id", "reason"]
                )
                for s in snap.schedules:
                    if s.estado == ProgramacionEstado.PAUSADA:
                        reason = pause_reason_label(s.paused_reason)
                        paused.add_metric([str(s.id), str(s.campania_id), reason], 1)
                yield paused

        autopause = CounterMetricFamily(
            "envios_autopause_total", HELP["envios_autopause_total"], labels=["reason"]
        )
        for reason, value in sorted(state.autopause_total.items()):
            autopause.add_metric([reason], value)
        yield autopause

        up = _gauge("envios_watcher_up")
        up.add_metric([], 1 if state.up and self.refresher.stalled() is None else 0)
        yield up
        last = _gauge("envios_watcher_last_refresh_timestamp_seconds")
        last.add_metric([], state.last_refresh_epoch or 0)
        yield last
        if state.refresh_duration_s is not None:
            duration = _gauge("envios_watcher_refresh_duration_seconds")
            duration.add_metric([], state.refresh_duration_s)
            yield duration

        errors = CounterMetricFamily(
            "envios_watcher_query_errors_total",
            HELP["envios_watcher_query_errors_total"],
            labels=["query"],
        )
        for name, value in sorted(state.query_errors.items()):
            errors.add_metric([name], value)
        yield errors
        last_ok = _gauge("envios_watcher_query_last_success_timestamp_seconds", ["query"])
        for name, value in sorted(state.query_last_success_epoch.items()):
            last_ok.add_metric([name], value)
        yield last_ok
        took = _gauge("envios_watcher_query_duration_seconds", ["query"])
        for name, value in sorted(state.query_duration_s.items()):
            took.add_metric([name], value)
        yield took


def make_registry(refresher: Refresher) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WatcherCollector(refresher))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format 0.0.4 body /metrics serves (and `envios watch --once` prints)."""
    return generate_latest(registry)
