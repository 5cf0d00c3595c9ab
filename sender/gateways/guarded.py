"""Every exception of a gateway adapter becomes an outcome of the table, never a crashed worker.

Adapters promise to classify every failure (`Gateway.send`), but a bug in one
(an unexpected exception while building or reading a request) must not kill the
session worker between the claim and the record: the row would be left
`enviando` with nothing said. The request may have left, so it is UNKNOWN.
"""

from __future__ import annotations

import logging
import time

from envios.sender.gateways.base import Gateway, Outcome, SendResult

log = logging.getLogger("envios.sender.gateway")


def send_guarded(
    gateway: Gateway,
    cliente_id: int,
    to: str,
    message: str,
    envio_id: int | None = None,
    name: str | None = None,
) -> SendResult:
    started = time.monotonic()
    try:
        if envio_id is None:
            return gateway.send(cliente_id, to, message)
        return gateway.send_row(cliente_id, to, message, envio_id, name=name)
    except Exception as exc:  # noqa: BLE001 - any adapter bug, classified as "maybe sent"
        log.error(
            "gateway adapter raised %s for session %s; outcome unknown",
            type(exc).__name__,
            cliente_id,
        )
        return SendResult(
            Outcome.UNKNOWN,
            reason=f"gateway adapter failed ({type(exc).__name__}); the request may have left",
            latency_s=time.monotonic() - started,
        )
