"""Helpers for the watcher tests: a config on the test database, a database builder, parsing."""

from __future__ import annotations

import copy
import datetime as dt
import itertools

import pytest
from envios.monitor.watcher import Watcher
from prometheus_client.parser import text_string_to_metric_families

from envios import config as config_module


def make_config(db_url: str, **overrides):
    """Built-in defaults (not ./config.yaml) on the test database, dotted keys overridden."""
    base = config_module.Config(config_module.validate(copy.deepcopy(config_module.DEFAULTS)))
    return base.with_overrides({"database.url": db_url, "monitor.port": 0, **overrides})


@pytest.fixture
def config(db_url):
    return make_config(db_url)


@pytest.fixture
def watchers():
    """Make watchers (Watcher(config, clock=..., ...)); all stopped at the end of the test."""
    made: list[Watcher] = []

    def make(cfg, **options) -> Watcher:
        watcher = Watcher(cfg, **options)
        made.append(watcher)
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


class FakeMonotonic:
    """A monotonic clock that moves only when told (freshness without sleeping)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Builder:
    """Rows as the sender (or the legacy system) would have left them, written directly."""

    def __init__(self, conn, now: dt.datetime):
        self.conn = conn
        self.now = now
        self._phones = itertools.count(5491100000001)

    def ago(self, **delta) -> dt.datetime:
        return self.now - dt.timedelta(**delta)

    def campaign(self, cid: int, estado: str = "en_progreso", nombre: str | None = None) -> int:
        self.conn.execute(
            "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado)"
            " VALUES (%s, %s, %s, %s)",
            (cid, nombre or f"Campaña {cid}", "Hola {nombre}", estado),
        )
        return cid

    def schedule(
        self,
        sid: int,
        cid: int,
        estado: str = "aprobada",
        cliente_id: int = 51,
        paused_reason: str | None = None,
        paused_by: str | None = None,
        paused_at: dt.datetime | None = None,
    ) -> int:
        self.conn.execute(
            "INSERT INTO ll_programaciones (id, campania_id, cliente_id, dias_semana, hora_inicio,"
            " hora_fin, cupo_diario, fecha_inicio, estado, paused_reason, paused_by, paused_at)"
            " VALUES (%s, %s, %s, 'mon,tue,wed,thu,fri', %s, %s, 50, %s, %s, %s, %s, %s)",
            (
                sid,
                cid,
                cliente_id,
                dt.time(8, 0),
                dt.time(20, 0),
                dt.date(2026, 2, 1),
                estado,
                paused_reason,
                paused_by,
                paused_at,
            ),
        )
        return sid

    def send(
        self,
        cid: int,
        estado: str,
        *,
        claimed_at: dt.datetime | None = None,
        finished_at: dt.datetime | None = None,
        message_id: str | None = None,
        legacy: bool = False,
        count: int = 1,
    ) -> None:
        """`count` rows of campaign `cid` in `estado`, with the history the sender writes.

        legacy: sent by the system before envios (no claim, no history, no message id).
        """
        for _ in range(count):
            phone = str(next(self._phones))
            mid = f"true_{phone}@c.us_{phone[-6:]}" if message_id == "auto" else message_id
            fecha = finished_at if estado == "enviado" else None
            envio_id = self.conn.insert(
                "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino,"
                " mensaje_final, estado, fecha_envio, message_id, claimed_at, claimed_by, attempts)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    cid,
                    phone,
                    "Ana",
                    "Hola Ana",
                    estado,
                    fecha,
                    mid,
                    None if legacy else claimed_at,
                    None if legacy or claimed_at is None else "sender-1",
                    0 if legacy or not claimed_at else 1,
                ),
            )
            if legacy:
                continue
            if claimed_at is not None:
                self._history(envio_id, cid, "pendiente", "enviando", claimed_at)
            if finished_at is not None and estado in ("enviado", "error"):
                self._history(
                    envio_id, cid, "enviando" if claimed_at else "pendiente", estado, finished_at
                )

    def _history(self, envio_id, cid, before, after, at) -> None:
        self.conn.execute(
            "INSERT INTO ll_envios_whatsapp_historial (envio_id, campania_id, estado_anterior,"
            " estado_nuevo, origen, detalle, created_at)"
            " VALUES (%s, %s, %s, %s, 'envios-sender', NULL, %s)",
            (envio_id, cid, before, after, at),
        )


@pytest.fixture
def build(upgraded, clock):
    # rows carry the database's clock, as the sender writes them
    return Builder(upgraded, clock.db_now(upgraded))


def parse(exposition: bytes | str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, frozenset(labels.items())): value} of an exposition text."""
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = sample.value
    return out


def series(parsed: dict, name: str) -> dict[frozenset, float]:
    """The series of one metric: {frozenset(labels): value}."""
    return {labels: value for (n, labels), value in parsed.items() if n == name}


def labels(**kw) -> frozenset:
    return frozenset((k, str(v)) for k, v in kw.items())
