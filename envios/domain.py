"""The domain: the states of a send and who moves them. Every other module asks here.

```
pendiente ──claim──> enviando ──gateway says sent──> enviado (message_id, fecha_envio)
    ^                   │
    └── definitely not  ├── permanent failure ──> error (reason)
        sent (retry)    └── outcome unknown ──> stays enviando: "stuck", shown by
                                               the watcher, resolved by `envios reconcile`
```
"""

from __future__ import annotations

import enum


class Estado(str, enum.Enum):
    PENDIENTE = "pendiente"
    ENVIANDO = "enviando"
    ENVIADO = "enviado"
    ERROR = "error"


class Origin(str, enum.Enum):
    """Who made a change: the history row's `origen`, "envios-" and the part.

    The application's own rows say 'scheduler', 'manual' or 'sistema'
    (APPLICATION_ORIGINS); the history table is shared, so the two never collide.
    """

    SENDER = "envios-sender"
    WATCHER = "envios-watcher"
    OPERATOR = "envios-operator"
    RECONCILE = "envios-reconcile"
    EVIDENCE = "envios-evidence"  # an unknown outcome settled by the gateway's own evidence (acks, lookups)


APPLICATION_ORIGINS = ("scheduler", "manual", "sistema")


ALLOWED: frozenset[tuple[Estado, Estado]] = frozenset(
    {
        (Estado.PENDIENTE, Estado.ENVIANDO),  # claim
        (Estado.ENVIANDO, Estado.ENVIADO),  # the gateway confirmed
        (Estado.ENVIANDO, Estado.PENDIENTE),  # definitely not sent: retry later
        (Estado.ENVIANDO, Estado.ERROR),  # permanent failure, or out of attempts
        (Estado.PENDIENTE, Estado.ERROR),  # unsendable, rejected before any request
        (Estado.ERROR, Estado.PENDIENTE),  # an operator re-queues it
    }
)
