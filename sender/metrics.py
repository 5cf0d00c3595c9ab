"""The sender's own metrics (docs/METRICS.md, "Sender"), on 127.0.0.1:sender.metrics_port.

Each `Sender` owns a registry, so several senders can live in one process
(tests, the demo). Label values are ids and enums only, never a phone number.
"""

from __future__ import annotations

import logging
import time

from envios.sender.gateways.base import SESSION_STATES, Outcome
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from envios.errors import ConfigError

log = logging.getLogger("envios.sender")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120)


class SenderMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.sends = Counter(
            "envios_sender_sends", "gateway outcomes of POST /send", ["outcome"], registry=r
        )
        for outcome in Outcome:
            self.sends.labels(outcome.value)  # every series exists from the start, at 0
        self.latency = Histogram(
            "envios_sender_gateway_latency_seconds",
            "time of one POST /send",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.session_state = Gauge(
            "envios_sender_session_state",
            "1 for the session's last known state, 0 for the others",
            ["cliente_id", "state"],
            registry=r,
        )
        self.eligible_pending = Gauge(
            "envios_sender_eligible_pending",
            "pending rows of eligible schedules for the session, at the last tick",
            ["cliente_id"],
            registry=r,
        )
        self._pending_series: set[str] = set()  # cliente_id labels of eligible_pending we set
        self.quota_remaining = Gauge(
            "envios_sender_quota_remaining",
            "cupo_diario minus sent and in-flight rows today",
            ["programacion_id"],
            registry=r,
        )
        self.last_success = Gauge(
            "envios_sender_last_success_timestamp_seconds",
            "unix time of the session's last confirmed send",
            ["cliente_id"],
            registry=r,
        )
        self.enabled = Gauge("envios_sender_enabled", "0 while the kill switch is off", registry=r)
        self.enabled.set(1)
        self._server = None

    # -- updates -----------------------------------------------------------------------
    def outcome(self, outcome: Outcome, latency_s: float) -> None:
        self.sends.labels(outcome.value).inc()
        self.latency.observe(latency_s)

    def session(self, cliente_id: int, state: str) -> None:
        for known in SESSION_STATES:
            self.session_state.labels(str(cliente_id), known).set(1 if known == state else 0)

    def forget_session(self, cliente_id: int) -> None:
        """Drop our view of a session another sender now holds: its holder reports it.

        Otherwise a READY seen here before the lease moved would be exported for
        ever and, under `max by (cliente_id)`, hide the holder's DISCONNECTED.
        """
        for known in SESSION_STATES:
            try:
                self.session_state.remove(str(cliente_id), known)
            except KeyError:
                pass

    def sent(self, cliente_id: int) -> None:
        self.last_success.labels(str(cliente_id)).set(time.time())

    def pending(self, by_cliente: dict[int, int]) -> None:
        seen = {str(c) for c in by_cliente}
        for gone in self._pending_series - seen:
            self.eligible_pending.remove(gone)
        for cliente_id, n in by_cliente.items():
            self.eligible_pending.labels(str(cliente_id)).set(n)
        self._pending_series = seen

    def quota(self, programacion_id: int, remaining: int) -> None:
        self.quota_remaining.labels(str(programacion_id)).set(remaining)

    def set_enabled(self, enabled: bool) -> None:
        self.enabled.set(1 if enabled else 0)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """A sample's current value (tests, the demo)."""
        return self.registry.get_sample_value(name, labels or {})

    # -- HTTP ------------------------------------------------------------------------------
    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve /metrics; returns the bound port. 0 means off (returns 0)."""
        if not port:
            return 0
        try:
            self._server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"config key sender.metrics_port: cannot listen on {addr}:{port} ({exc.strerror})"
            ) from None
        bound = self._server.server_address[1]
        log.info("event=metrics_listening addr=%s port=%s", addr, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
