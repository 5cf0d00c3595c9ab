-- The production tables as they stood before envios (legacy/schema_2026-02.sql),
-- created only where missing. Fresh installs get utf8mb4 throughout.

CREATE TABLE ll_campanias_whatsapp (
  id int(11) NOT NULL AUTO_INCREMENT,
  nombre varchar(255) NOT NULL,
  mensaje text NOT NULL,
  fecha_creacion datetime DEFAULT current_timestamp(),
  estado enum('pendiente','en_progreso','finalizado') DEFAULT 'pendiente',
  cliente_id int(11) DEFAULT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE ll_programaciones (
  id int(11) NOT NULL AUTO_INCREMENT,
  campania_id int(11) NOT NULL,
  cliente_id int(11) NOT NULL,
  dias_semana varchar(64) NOT NULL,
  hora_inicio time NOT NULL,
  hora_fin time NOT NULL,
  cupo_diario int(11) NOT NULL DEFAULT 50,
  fecha_inicio date NOT NULL,
  fecha_fin date DEFAULT NULL,
  estado enum('pendiente','aprobada','rechazada','pausada') NOT NULL DEFAULT 'pendiente',
  comentario_cliente text DEFAULT NULL,
  comentario_admin text DEFAULT NULL,
  creado_por varchar(120) DEFAULT NULL,
  aprobado_por varchar(120) DEFAULT NULL,
  sesion_cliente varchar(120) DEFAULT NULL,
  aprobado_en datetime DEFAULT NULL,
  rechazo_motivo text DEFAULT NULL,
  creado_en timestamp NULL DEFAULT current_timestamp(),
  actualizado_en timestamp NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  locked_at datetime DEFAULT NULL,
  locked_by varchar(64) DEFAULT NULL,
  PRIMARY KEY (id),
  KEY idx_programaciones_campania (campania_id),
  KEY idx_programaciones_cliente (cliente_id),
  KEY idx_programaciones_estado (estado),
  KEY idx_locked_at (locked_at, estado),
  CONSTRAINT fk_programaciones_campania FOREIGN KEY (campania_id)
    REFERENCES ll_campanias_whatsapp (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE ll_programacion_envios_diarios (
  id int(11) NOT NULL AUTO_INCREMENT,
  programacion_id int(11) NOT NULL,
  fecha date NOT NULL,
  enviados int(11) NOT NULL DEFAULT 0,
  actualizado_en timestamp NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  PRIMARY KEY (id),
  UNIQUE KEY uniq_programacion_fecha (programacion_id, fecha),
  CONSTRAINT fk_prog_envios_programacion FOREIGN KEY (programacion_id)
    REFERENCES ll_programaciones (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE ll_envios_whatsapp (
  id int(11) NOT NULL AUTO_INCREMENT,
  campania_id int(11) NOT NULL,
  telefono_wapp varchar(255) DEFAULT NULL,
  nombre_destino varchar(255) DEFAULT NULL,
  mensaje_final text DEFAULT NULL,
  estado enum('pendiente','enviado','error','enviando') DEFAULT 'pendiente',
  fecha_envio datetime DEFAULT NULL,
  lugar_id int(11) DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY idx_unico_envio (campania_id, telefono_wapp),
  KEY idx_envios_camp_estado (campania_id, estado),
  CONSTRAINT ll_envios_whatsapp_ibfk_1 FOREIGN KEY (campania_id)
    REFERENCES ll_campanias_whatsapp (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
