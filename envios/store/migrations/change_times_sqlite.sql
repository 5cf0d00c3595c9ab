-- Schema v6 on SQLite: a column cannot default to the clock when added, so two triggers
-- keep it (SQLite does not re-fire a trigger from its own UPDATE: recursive_triggers is off).
ALTER TABLE ll_envios_whatsapp ADD COLUMN cambiado_en TEXT DEFAULT NULL;
CREATE TRIGGER envios_cambiado_en_insert AFTER INSERT ON ll_envios_whatsapp BEGIN UPDATE ll_envios_whatsapp SET cambiado_en = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id; END;
CREATE TRIGGER envios_cambiado_en_update AFTER UPDATE ON ll_envios_whatsapp WHEN NEW.cambiado_en IS OLD.cambiado_en BEGIN UPDATE ll_envios_whatsapp SET cambiado_en = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id; END;
