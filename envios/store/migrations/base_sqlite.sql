-- The production tables (legacy/schema_2026-02.sql) in SQLite form, for the
-- embedded default. ENUMs become TEXT checked by the state machine.

CREATE TABLE ll_campanias_whatsapp (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  nombre VARCHAR(255) NOT NULL,
  mensaje TEXT NOT NULL,
  fecha_creacion DATETIME DEFAULT CURRENT_TIMESTAMP,
  estado VARCHAR(16) DEFAULT 'pendiente',
  cliente_id INTEGER DEFAULT NULL
);

CREATE TABLE ll_programaciones (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  campania_id INTEGER NOT NULL REFERENCES ll_campanias_whatsapp (id) ON DELETE CASCADE,
  cliente_id INTEGER NOT NULL,
  dias_semana VARCHAR(64) NOT NULL,
  hora_inicio TIME NOT NULL,
  hora_fin TIME NOT NULL,
  cupo_diario INTEGER NOT NULL DEFAULT 50,
  fecha_inicio DATE NOT NULL,
  fecha_fin DATE DEFAULT NULL,
  estado VARCHAR(16) NOT NULL DEFAULT 'pendiente',
  comentario_cliente TEXT DEFAULT NULL,
  comentario_admin TEXT DEFAULT NULL,
  creado_por VARCHAR(120) DEFAULT NULL,
  aprobado_por VARCHAR(120) DEFAULT NULL,
  sesion_cliente VARCHAR(120) DEFAULT NULL,
  aprobado_en DATETIME DEFAULT NULL,
  rechazo_motivo TEXT DEFAULT NULL,
  creado_en TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP,
  actualizado_en TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP,
  locked_at DATETIME DEFAULT NULL,
  locked_by VARCHAR(64) DEFAULT NULL
);
CREATE INDEX idx_programaciones_campania ON ll_programaciones (campania_id);
CREATE INDEX idx_programaciones_cliente ON ll_programaciones (cliente_id);
CREATE INDEX idx_programaciones_estado ON ll_programaciones (estado);

CREATE TABLE ll_programacion_envios_diarios (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  programacion_id INTEGER NOT NULL REFERENCES ll_programaciones (id) ON DELETE CASCADE,
  fecha DATE NOT NULL,
  enviados INTEGER NOT NULL DEFAULT 0,
  actualizado_en TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP,
  UNIQUE (programacion_id, fecha)
);

CREATE TABLE ll_envios_whatsapp (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  campania_id INTEGER NOT NULL REFERENCES ll_campanias_whatsapp (id) ON DELETE CASCADE,
  telefono_wapp VARCHAR(255) DEFAULT NULL,
  nombre_destino VARCHAR(255) DEFAULT NULL,
  mensaje_final TEXT DEFAULT NULL,
  estado VARCHAR(16) DEFAULT 'pendiente',
  fecha_envio DATETIME DEFAULT NULL,
  lugar_id INTEGER DEFAULT NULL,
  UNIQUE (campania_id, telefono_wapp)
);
CREATE INDEX idx_envios_camp_estado ON ll_envios_whatsapp (campania_id, estado);
