"""The domain's rules, pinned once: origins, the stuck rule at its boundary, the column caps,
the accepted database URLs (config and connector agree), the gateway kinds, the schema
versions each process needs, the typed rows."""

from __future__ import annotations

import datetime as dt

import pytest
from envios.monitor import campaigns
from envios.monitor import queries as q
from envios.sender import gateways, webhooks

from envios import config as config_module
from envios import domain
from envios.domain import Estado, Origin
from envios.errors import ConfigError
from envios.store import schema
from envios.store.connector import MYSQL, MYSQL_SCHEMES, SQLITE, DatabaseUrl
from envios.store.schema_view import column_details
from tests.monitor.test_stuck_rule import EXPECTED_STUCK_CAMPAIGNS, ROWS, seed

NOW = dt.datetime(2026, 2, 9, 10, 0, 0)


# -- origins ------------------------------------------------------------------------------


def test_every_envios_origin_is_envios_and_the_role_after_the_prefix():
    assert [o.value for o in Origin] == [
        "envios-sender",
        "envios-watcher",
        "envios-operator",
        "envios-reconcile",
        "envios-evidence",
    ]
    assert {o.role for o in Origin} == {"sender", "watcher", "operator", "reconcile", "evidence"}
    assert all(domain.by_envios(o.value) for o in Origin)


def test_the_application_origins_are_never_envios():
    assert domain.APPLICATION_ORIGINS == ("scheduler", "manual", "sistema")
    assert not any(domain.by_envios(o) for o in domain.APPLICATION_ORIGINS)
    assert not domain.by_envios(None) and not domain.by_envios("")
    assert not set(domain.APPLICATION_ORIGINS) & {o.value for o in Origin}


def test_who_paused_is_the_role_and_an_unrecorded_reason_is_unknown():
    assert (domain.WATCHER, domain.OPERATOR, domain.UNKNOWN) == ("watcher", "operator", "unknown")
    assert domain.PauseReason.OPERATOR.value == domain.OPERATOR
    assert domain.AUTO_PAUSE_REASONS == ("stuck", "missing_message_id", "error_ratio")
    assert domain.pause_reason_label("operator") == "operator"
    assert domain.pause_reason_label(None) == domain.pause_reason_label("legacy UI") == "unknown"
    assert campaigns.watcher_identity().startswith("watcher@")
    assert campaigns.operator_identity().startswith("operator:")


def test_settled_by_names_evidence_and_people():
    assert domain.SETTLED_BY == {
        "envios-evidence": "evidence",
        "envios-reconcile": "person",
        "manual": "person",
    }


def test_sent_by_envios_means_claimed():
    assert domain.claimed_by_envios(NOW) and not domain.claimed_by_envios(None)


# -- the stuck rule ------------------------------------------------------------------------


def test_stuck_cutoff_and_predicate_at_the_boundary():
    cutoff = domain.stuck_cutoff(NOW, 300)
    assert cutoff == NOW - dt.timedelta(seconds=300)
    tick = dt.timedelta(microseconds=1)
    assert domain.is_stuck("enviando", cutoff - tick, cutoff)
    assert not domain.is_stuck("enviando", cutoff, cutoff)  # exactly at the cutoff: not yet
    assert not domain.is_stuck("enviando", cutoff + tick, cutoff)
    assert domain.is_stuck("enviando", None, cutoff)  # no claim time: nobody knows when it left
    assert not any(domain.is_stuck(e, None, cutoff) for e in ("pendiente", "enviado", "error"))


def test_the_domain_predicate_and_the_stores_sql_agree_on_every_row(upgraded, clock):
    now = clock.db_now(upgraded)
    seed(upgraded, now)
    cutoff = domain.stuck_cutoff(now, 300)
    by_python = {
        n
        for n, (_label, estado, age_s, _stuck) in enumerate(ROWS, start=1)
        if domain.is_stuck(
            estado, None if age_s is None else now - dt.timedelta(seconds=age_s), cutoff
        )
    }
    assert by_python == EXPECTED_STUCK_CAMPAIGNS == set(q.stuck(upgraded, cutoff))
    rows = upgraded.query("SELECT id, campania_id, estado, claimed_at FROM ll_envios_whatsapp")
    assert {
        r.campania_id for r in map(domain.OutboxRow.from_row, rows) if r.is_stuck(cutoff)
    } == EXPECTED_STUCK_CAMPAIGNS


# -- column caps ---------------------------------------------------------------------------

CAPPED = [
    ("ll_envios_whatsapp", "last_error", domain.TEXT_MAX),
    ("ll_envios_whatsapp", "delivery_error", domain.TEXT_MAX),
    ("envios_audit", "detalle", domain.TEXT_MAX),
    ("envios_unmatched_acks", "error", domain.TEXT_MAX),
    ("envios_audit", "origen", domain.NAME_MAX),
    ("ll_programaciones", "paused_by", domain.NAME_MAX),
    ("ll_envios_whatsapp", "message_id", domain.MESSAGE_ID_MAX),
]


def test_the_caps_are_the_declared_column_lengths(upgraded):
    assert domain.TEXT_MAX == 500
    for table, column, cap in CAPPED:
        declared = column_details(upgraded, table)[column].type
        assert declared == f"varchar({cap})", (table, column, declared)


def test_every_origin_fits_the_applications_origen_column(upgraded):
    declared = column_details(upgraded, "ll_envios_whatsapp_historial")["origen"].type
    assert declared == "varchar(50)"
    assert max(len(o.value) for o in Origin) <= 50


def test_capped_and_too_long():
    assert domain.capped("x" * 900) == "x" * domain.TEXT_MAX
    assert domain.capped(None) == ""
    assert domain.capped("abc", 2) == "ab"

    class Gateway:
        max_text_chars = 10

    assert domain.too_long("x" * 10, Gateway()) is None
    assert "at most 10" in domain.too_long("x" * 11, Gateway())
    assert domain.text_limit(object()) == domain.WHATSAPP_TEXT_MAX == 4096
    assert gateways.Gateway.max_text_chars == domain.WHATSAPP_TEXT_MAX


# -- database URLs: one rule, config accepts exactly what the connector accepts ---------------

URLS = [
    *(f"{scheme}://user:pw@db.example:3306/envios" for scheme in MYSQL_SCHEMES),
    "sqlite:///envios.db",
    "postgres://user@db.example/envios",
    "mysql+mysqldb://user@db.example/envios",
    "mysql://user@db.example",  # no database
    "sqlite://envios.db",  # two slashes: a host, not a path
]


def _connector_accepts(url: str) -> bool:
    try:
        DatabaseUrl.parse(url)
    except ConfigError:
        return False
    return True


def _config_accepts(url: str) -> bool:
    try:
        config_module.load(environ={"ENVIOS_DATABASE_URL": url})
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("url", URLS)
def test_config_accepts_exactly_what_the_connector_accepts(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./config.yaml: defaults plus the variable
    assert _config_accepts(url) == _connector_accepts(url)


def test_every_mysql_scheme_means_mysql_and_others_are_refused():
    assert MYSQL_SCHEMES == ("mysql", "mariadb", "mysql+pymysql")
    for scheme in MYSQL_SCHEMES:
        assert DatabaseUrl.parse(f"{scheme}://u@h/db").dialect == MYSQL
    assert DatabaseUrl.parse("sqlite:///x.db").dialect == SQLITE
    with pytest.raises(ConfigError, match="mariadb://"):  # the message names every scheme
        DatabaseUrl.parse("postgres://u@h/db")


# -- gateway kinds: one list ----------------------------------------------------------------


def test_gateway_kinds_have_one_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_module.GATEWAY_KINDS is domain.GATEWAY_KINDS
    assert tuple(gateways.REGISTRY) == domain.GATEWAY_KINDS  # every kind config accepts is built
    assert gateways.REGISTRY["simulator"] is gateways.REGISTRY["session_manager"]
    assert (
        webhooks.KINDS
        == domain.GATEWAY_DIALECTS
        == tuple(k for k in domain.GATEWAY_KINDS if k != "simulator")
    )
    for kind in domain.GATEWAY_KINDS:
        assert config_module.load(environ={"ENVIOS_GATEWAY_KIND": kind}).gateway.kind == kind
    with pytest.raises(ConfigError, match="gateway.kind"):
        config_module.load(environ={"ENVIOS_GATEWAY_KIND": "twilio"})


# -- schema versions each process needs ------------------------------------------------------


def test_every_process_names_versions_that_exist():
    numbers = {v.number for v in schema.VERSIONS}
    assert set(schema.REQUIRED_VERSIONS) == set(schema.Process)
    for process, needed in schema.REQUIRED_VERSIONS.items():
        assert set(needed) <= numbers, process
    assert schema.REQUIRED_VERSIONS[schema.Process.SENDER] == (schema.LATEST,)
    assert schema.missing_versions(schema.Process.WATCHER, {1, 2, 4}) == [5, 6]
    # its per-campaign counts read cambiado_en (v6)
    assert schema.missing_versions(schema.Process.WATCHER, {2, 4, 5}) == [6]
    assert schema.missing_versions(schema.Process.WATCHER, {2, 4, 5, 6}) == []


# -- states and typed rows ---------------------------------------------------------------------


def test_state_names_are_the_enum_values():
    assert domain.ESTADOS == ("pendiente", "enviando", "enviado", "error")
    assert domain.FINISHED == ("enviado", "error")
    assert domain.LIVE_SCHEDULE_STATES == ("aprobada", "pausada")
    assert [c.value for c in domain.CampaniaEstado] == ["pendiente", "en_progreso", "finalizado"]


def test_outbox_row_from_row():
    row = domain.OutboxRow.from_row(
        {
            "id": 7,
            "campania_id": "3",
            "estado": "enviando",
            "attempts": None,
            "claimed_at": NOW,
            "claim_programacion_id": "12",
        }
    )
    assert (row.id, row.campania_id, row.estado, row.attempts) == (7, 3, Estado.ENVIANDO, 0)
    assert row.claim_programacion_id == 12 and row.claimed_by_envios
    assert row.is_stuck(NOW + dt.timedelta(seconds=1)) and not row.is_stuck(NOW)


def test_sending_schedule_from_row():
    s = domain.SendingSchedule.from_row(
        {
            "programacion_id": 10,
            "campania_id": 1,
            "cliente_id": 51,
            "programacion_estado": "aprobada",
            "campania_estado": "en_progreso",
            "dias_semana": "mon",
            "hora_inicio": dt.time(8),
            "hora_fin": dt.time(20),
            "fecha_inicio": dt.date(2026, 2, 1),
            "fecha_fin": None,
            "cupo_diario": "50",
            "delay_min_s": None,
            "delay_max_s": 4,
            "locked_at": None,
            "locked_by": None,
        }
    )
    assert (s.programacion_id, s.cliente_id, s.cupo_diario, s.delay_max_s) == (10, 51, 50, 4)
    assert s.sends
    paused = domain.SendingSchedule.from_row({**s.__dict__, "programacion_estado": "pausada"})
    assert not paused.sends
