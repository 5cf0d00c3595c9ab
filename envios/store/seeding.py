"""The demo's statements (`envios demo`): seed two campaigns, then read what happened."""

from __future__ import annotations

from envios.store.sql import Statement

CAMPAIGN = Statement(
    "seeding.campaign",
    "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado, cliente_id)"
    " VALUES (%(campania_id)s, %(nombre)s, %(mensaje)s, %(estado)s, %(cliente_id)s)",
)
# Every day of the week, from `hora_inicio` to `hora_fin`.
SCHEDULE = Statement(
    "seeding.schedule",
    "INSERT INTO ll_programaciones (campania_id, cliente_id, dias_semana, hora_inicio,"
    " hora_fin, cupo_diario, fecha_inicio, estado)"
    " VALUES (%(campania_id)s, %(cliente_id)s, 'mon,tue,wed,thu,fri,sat,sun', %(hora_inicio)s,"
    " %(hora_fin)s, %(cupo_diario)s, %(fecha_inicio)s, %(estado)s)",
)
RECIPIENT = Statement(
    "seeding.recipient",
    "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino, mensaje_final)"
    " VALUES (%(campania_id)s, %(telefono_wapp)s, %(nombre_destino)s, %(mensaje_final)s)",
)

# Unknown outcomes acknowledged: settled once their send has timed out.
SETTLING = Statement(
    "seeding.settling",
    "SELECT campania_id, COUNT(*) AS n FROM ll_envios_whatsapp WHERE estado = %(enviando)s"
    " AND delivery_status IN ('sent', 'delivered', 'read') GROUP BY campania_id",
)
OUTCOMES = Statement(
    "seeding.outcomes",
    "SELECT id, telefono_wapp, estado, message_id, last_error, delivery_status"
    " FROM ll_envios_whatsapp",
)
SETTLED_BY = Statement(
    "seeding.settled_by",
    "SELECT COUNT(*) FROM ll_envios_whatsapp_historial WHERE origen = %(origin)s",
)
