"""A send's state change (`ll_envios_whatsapp_historial`), a schedule's (envios_audit).

`transitions.transition` writes HISTORY in the transaction of the state change it records;
the pause / resume code and the sender's own pauses write AUDIT the same way.
"""

from __future__ import annotations

from envios.store.sql import Statement

# The application's history columns (created_at is its time column), plus envios's campania_id.
HISTORY = Statement(
    "history.insert",
    "INSERT INTO ll_envios_whatsapp_historial"
    " (envio_id, campania_id, estado_anterior, estado_nuevo, origen, detalle, created_at)"
    " SELECT id, campania_id, %(from_state)s, %(to_state)s, %(origin)s, %(detail)s, %(at)s"
    " FROM ll_envios_whatsapp WHERE id = %(envio_id)s",
)
# HISTORY for many rows of one change (transitions.transition_many): {ids}.
_INSERT_MANY = (
    "INSERT INTO ll_envios_whatsapp_historial"
    " (envio_id, campania_id, estado_anterior, estado_nuevo, origen, detalle, created_at)"
    " SELECT id, campania_id, %(from_state)s, %(to_state)s, %(origin)s, %(detail)s, %(at)s"
)
# By primary key on MariaDB/MySQL (as transitions.update_many): a quarter of a small table
# by id was read as a scan of the whole (campania_id, estado) index.
HISTORY_MANY = Statement(
    "history.insert_many",
    mysql=_INSERT_MANY + " FROM ll_envios_whatsapp FORCE INDEX (PRIMARY) WHERE id IN ({ids})",
    sqlite=_INSERT_MANY + " FROM ll_envios_whatsapp WHERE id IN ({ids})",
)
# The later schema's usuario_id: written only for a named person (the column may not exist).
HISTORY_BY_PERSON = Statement(
    "history.insert_by_person",
    "INSERT INTO ll_envios_whatsapp_historial"
    " (envio_id, campania_id, estado_anterior, estado_nuevo, origen, detalle, created_at,"
    " usuario_id)"
    " SELECT id, campania_id, %(from_state)s, %(to_state)s, %(origin)s, %(detail)s, %(at)s,"
    " %(usuario_id)s FROM ll_envios_whatsapp WHERE id = %(envio_id)s",
)

# One row per schedule paused or resumed: who, why, when.
AUDIT = Statement(
    "history.audit",
    "INSERT INTO envios_audit"
    " (creado_en, accion, campania_id, programacion_id, motivo, detalle, origen)"
    " VALUES (%(now)s, %(action)s, %(campania_id)s, %(programacion_id)s, %(reason)s,"
    " %(detail)s, %(origin)s)",
)
