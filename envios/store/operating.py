"""The operator's statements: `envios status`, `envios campaign` and `envios reconcile`.

The status and campaign commands also run the watcher's reads (`envios.store.watching`
through `envios.monitor.queries`); these are the ones only a person's command runs.
"""

from __future__ import annotations

from envios.store.sql import Statement

CAMPAIGN_NAMES = Statement(
    "operating.campaign_names",
    "SELECT id, nombre, estado FROM ll_campanias_whatsapp ORDER BY id",
)

# The warning of `envios campaign resume`: the watcher's stuck rule for one campaign.
CAMPAIGN_STUCK_COUNT = Statement(
    "operating.campaign_stuck_count",
    "SELECT COUNT(*) FROM ll_envios_whatsapp"
    " WHERE estado = %(enviando)s AND (claimed_at < %(claimed_before)s OR claimed_at IS NULL)"
    " AND campania_id = %(campania_id)s",
)

# The detail of a schedule's current pause, for `envios campaign list`.
LAST_PAUSE_AUDIT = Statement(
    "operating.last_pause_audit",
    "SELECT detalle, origen, creado_en FROM envios_audit"
    " WHERE campania_id = %(campania_id)s AND programacion_id = %(programacion_id)s"
    " AND accion IN ('autopause', 'pause')"
    " ORDER BY creado_en DESC, id DESC LIMIT 1",
)

# Schedules the original scheduler has locked (locked_at set): is it still running them?
LEGACY_LOCKS = Statement(
    "operating.legacy_locks",
    "SELECT id AS programacion_id, campania_id, cliente_id, estado AS programacion_estado,"
    " locked_at, locked_by FROM ll_programaciones"
    " WHERE estado = %(aprobada)s AND locked_at IS NOT NULL ORDER BY id",
)

# `envios reconcile --usuario-id`: the user must exist (the history has a foreign key to it).
USER_EXISTS = Statement(
    "operating.user_exists",
    "SELECT id FROM usuarios WHERE id = %(usuario_id)s",
)
