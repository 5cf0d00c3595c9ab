-- Schema v6: when each outbox row last changed, kept by the database itself, so the
-- watcher reads only the rows changed since its last refresh (monitor/counts.py).
-- ON UPDATE fires for every writer, the original application's direct UPDATEs included.
ALTER TABLE ll_envios_whatsapp ADD COLUMN cambiado_en DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6);
