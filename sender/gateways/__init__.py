"""Gateway adapters, chosen by `gateway.kind`.

    gateway = build_gateway(config, client_id="host:pid")

`session_manager` and `simulator` speak the same contract (DESIGN.md section 9)
and share one adapter; `waha`, `evolution` and `cloud_api` have one each
(DESIGN.md section 11), each with its outcome table in its module.
"""

from __future__ import annotations

from collections.abc import Callable

from envios.sender.gateways import cloud_api, evolution, session_manager, waha
from envios.sender.gateways.base import Gateway, Outcome, SendResult, SessionStatus

from envios.domain import GATEWAY_KINDS, SPEAKS_AS
from envios.errors import ConfigError

_ADAPTERS: dict[str, Callable[..., Gateway]] = {
    "session_manager": session_manager.build,
    "waha": waha.build,
    "evolution": evolution.build,
    "cloud_api": cloud_api.build,
}
# gateway.kind -> factory(config, client_id, pool_size); a kind without an adapter fails here
REGISTRY: dict[str, Callable[..., Gateway]] = {
    kind: _ADAPTERS[SPEAKS_AS.get(kind, kind)] for kind in GATEWAY_KINDS
}


def build_gateway(config, client_id: str = "", pool_size: int = 32) -> Gateway:
    kind = config.gateway.kind
    factory = REGISTRY.get(kind)
    if factory is None:
        raise ConfigError(f"config key gateway.kind: unknown gateway {kind!r}")
    gateway = factory(config, client_id=client_id, pool_size=pool_size)
    # every adapter obeys the cap
    gateway.max_retry_after_s = float(config.gateway.max_retry_after_s)
    return gateway


__all__ = ["Gateway", "Outcome", "SendResult", "SessionStatus", "build_gateway", "REGISTRY"]
