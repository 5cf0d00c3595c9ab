"""The watcher's statements: the reads of one refresh, and the pause / resume writes.

Run by `envios.monitor.queries` (reads), `envios.monitor.campaigns` (pause and resume,
shared by the auto-pause and `envios campaign`). States and schedule/campaign states
are parameters named by their value (`%(enviando)s`, see `envios.store.sql.by_value`);
datetimes are parameters computed by the clock. `{ids}` / `{origins}` are IN lists
(`Statement.with_lists`).

Each read is written for an index of the upgraded schema, so a refresh never
scans all of `ll_envios_whatsapp` (tests/monitor/test_plans.py checks the plans;
the bench prints them on 1M rows):

| statement              | table / index                                                       |
|------------------------|---------------------------------------------------------------------|
| CAMPAIGNS_*            | ll_campanias_whatsapp (a few hundred rows)                          |
| MESSAGES               | ll_envios_whatsapp (campania_id, estado): covering                  |
| STUCK                  | ll_envios_whatsapp (estado, claimed_at): range over enviando claims |
| MISSING_MESSAGE_ID     | ll_envios_whatsapp (estado, message_id, campania_id, claimed_at) (v3) |
| FINISHED_IN_WINDOW     | ll_envios_whatsapp_historial (campania_id, created_at, estado_nuevo) |
| SCHEDULES              | ll_programaciones (estado)                                          |
| DELIVERY               | ll_envios_whatsapp (campania_id, estado, delivery_status) (v5)      |
| SETTLED                | ll_envios_whatsapp_historial (campania_id, estado_anterior, origen) |
"""

from __future__ import annotations

from envios.store.sql import Statement

# -- reads of one refresh ------------------------------------------------------

CAMPAIGNS_ACTIVE = Statement(
    "watching.campaigns_active",
    "SELECT c.id, c.estado, c.resumed_at FROM ll_campanias_whatsapp c"
    " WHERE (c.estado IS NULL OR c.estado <> %(finalizado)s)",
)
CAMPAIGNS_ALL = Statement(
    "watching.campaigns_all",
    "SELECT c.id, c.estado, c.resumed_at FROM ll_campanias_whatsapp c",
)

MESSAGES = Statement(
    "watching.messages",
    "SELECT campania_id, estado, COUNT(*) AS n FROM ll_envios_whatsapp"
    " WHERE campania_id IN ({ids}) GROUP BY campania_id, estado",
)

# The stuck rule: claimed before the cutoff, or never given a claim time.
STUCK = Statement(
    "watching.stuck",
    "SELECT campania_id, COUNT(*) AS n, MIN(claimed_at) AS oldest FROM ll_envios_whatsapp"
    " WHERE estado = %(enviando)s AND (claimed_at < %(claimed_before)s OR claimed_at IS NULL)"
    " GROUP BY campania_id",
)

# On (estado, message_id, campania_id, claimed_at) (schema v3): legacy sends (claimed_at
# NULL) are told apart by the index; the unverifiable ones by their note (a row read each).
MISSING_MESSAGE_ID = Statement(
    "watching.missing_message_id",
    "SELECT campania_id, COUNT(*) AS n,"
    " SUM(CASE WHEN claimed_at IS NULL THEN 1 ELSE 0 END) AS legacy,"
    " SUM(CASE WHEN claimed_at IS NOT NULL AND last_error = %(unverifiable_note)s"
    " THEN 1 ELSE 0 END) AS unverifiable"
    " FROM ll_envios_whatsapp"
    " WHERE estado = %(enviado)s AND message_id IS NULL AND campania_id IN ({ids})"
    " GROUP BY campania_id",
)
# Only for campaigns that were resumed; reads the rows envios sent without an id.
MISSING_SINCE_RESUME = Statement(
    "watching.missing_since_resume",
    "SELECT e.campania_id, COUNT(*) AS n,"
    " SUM(CASE WHEN e.last_error = %(unverifiable_note)s THEN 1 ELSE 0 END) AS unverifiable"
    " FROM ll_envios_whatsapp e JOIN ll_campanias_whatsapp c ON c.id = e.campania_id"
    " WHERE e.estado = %(enviado)s AND e.message_id IS NULL AND e.claimed_at IS NOT NULL"
    " AND e.campania_id IN ({ids})"
    " AND COALESCE(e.fecha_envio, e.claimed_at) > c.resumed_at"
    " GROUP BY e.campania_id",
)

FINISHED_IN_WINDOW = Statement(
    "watching.finished_in_window",
    "SELECT h.campania_id, h.estado_nuevo, COUNT(*) AS n"
    " FROM ll_campanias_whatsapp c"
    " JOIN ll_envios_whatsapp_historial h ON h.campania_id = c.id"
    " WHERE (c.estado IS NULL OR c.estado <> %(finalizado)s)"
    " AND h.created_at >= %(since)s AND h.created_at <= %(until)s"
    " AND h.estado_nuevo IN (%(enviado)s, %(error)s)"
    " AND (c.resumed_at IS NULL OR h.created_at > c.resumed_at)"
    " GROUP BY h.campania_id, h.estado_nuevo",
)

SCHEDULES = Statement(
    "watching.schedules",
    "SELECT p.id, p.campania_id, p.cliente_id, p.estado, p.paused_reason, p.paused_at, p.paused_by"
    " FROM ll_programaciones p JOIN ll_campanias_whatsapp c ON c.id = p.campania_id"
    " WHERE p.estado IN (%(aprobada)s, %(pausada)s)"
    " AND (c.estado IS NULL OR c.estado <> %(finalizado)s)"
    " ORDER BY p.id",
)
SCHEDULES_ALL = Statement(
    "watching.schedules_all",
    "SELECT p.id, p.campania_id, p.cliente_id, p.estado, p.paused_reason, p.paused_at, p.paused_by"
    " FROM ll_programaciones p ORDER BY p.id",
)

# -- delivery acknowledgements and unknowns settled (schema v5) --------------------

DELIVERY = Statement(
    "watching.delivery",
    "SELECT campania_id, delivery_status, COUNT(*) AS n FROM ll_envios_whatsapp"
    " WHERE campania_id IN ({ids}) AND estado = %(enviado)s GROUP BY campania_id, delivery_status",
)
SETTLED = Statement(
    "watching.settled",
    "SELECT campania_id, origen, COUNT(*) AS n FROM ll_envios_whatsapp_historial"
    " WHERE campania_id IN ({ids}) AND estado_anterior = %(enviando)s AND origen IN ({origins})"
    " GROUP BY campania_id, origen",
)

# -- pause / resume (envios.monitor.campaigns) -------------------------------------

CAMPAIGN_EXISTS = Statement(
    "watching.campaign_exists",
    "SELECT id FROM ll_campanias_whatsapp WHERE id = %(campania_id)s",
)
SCHEDULES_IN_STATE = Statement(
    "watching.schedules_in_state",
    "SELECT id, paused_by FROM ll_programaciones"
    " WHERE campania_id = %(campania_id)s AND estado = %(estado)s ORDER BY id",
)
# Conditional: a second watcher (or an operator) that got there first leaves 0 rows to change.
PAUSE_SCHEDULE = Statement(
    "watching.pause_schedule",
    "UPDATE ll_programaciones SET estado = %(pausada)s, paused_reason = %(reason)s,"
    " paused_at = %(now)s, paused_by = %(paused_by)s"
    " WHERE id = %(programacion_id)s AND estado = %(aprobada)s",
)
RESUME_SCHEDULE = Statement(
    "watching.resume_schedule",
    "UPDATE ll_programaciones SET estado = %(aprobada)s, paused_reason = NULL, paused_at = NULL,"
    " paused_by = NULL WHERE id = %(programacion_id)s AND estado = %(pausada)s",
)
CAMPAIGN_RESUMED_AT = Statement(
    "watching.campaign_resumed_at",
    "SELECT resumed_at FROM ll_campanias_whatsapp WHERE id = %(campania_id)s",
)
MARK_RESUMED = Statement(
    "watching.mark_resumed",
    "UPDATE ll_campanias_whatsapp SET resumed_at = %(now)s WHERE id = %(campania_id)s",
)
