"""Issue 12: gateway and operator text is made to fit the legacy latin1 columns.

The write never fails.
"""

from __future__ import annotations

import pytest
from envios.sender import outbox
from envios.sender.loop import run_once
from hypothesis import given, settings
from hypothesis import strategies as st

from envios.domain import Estado, Origin
from envios.store import schema
from envios.store.fit import Column, column_of, fit
from envios.store.transitions import transition
from tests.conftest import load_legacy
from tests.sender.conftest import add_campaign, add_rows, add_schedule, make_config, row

EMOJI_ERROR = "número inválido 😀 — no enviado ✅"


@pytest.mark.parametrize(
    "text,column,expected",
    [
        (
            EMOJI_ERROR,
            Column("latin1", 500),
            "número inválido ? — no enviado ?",
        ),  # — and ñ are cp1252
        ("😀" * 3, Column("utf8mb3", 10), "???"),
        ("😀 ok", Column("utf8mb4", 10), "😀 ok"),
        ("x" * 600, Column("latin1", 500), "x" * 497 + "..."),
        ("é" * 40, Column("utf8mb4", None, 21), "é" * 9 + "..."),  # TEXT: a byte budget
        ("lone \ud800 surrogate", Column(None, None), "lone ? surrogate"),
        ("ascii only", Column("koi9", 5), "as..."),  # an unknown charset keeps ASCII
        (None, Column("latin1", 5), None),
    ],
)
def test_fit(text, column, expected):
    assert fit(text, column) == expected


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=700),
    charset=st.sampled_from(["latin1", "utf8mb3", "utf8mb4", "ascii", None]),
    max_chars=st.integers(0, 600),
)
def test_fitted_text_always_fits(text, charset, max_chars):
    out = fit(text, Column(charset, max_chars))
    assert len(out) <= max_chars
    if charset == "latin1":
        out.encode("cp1252")
    if charset in ("latin1", "ascii", "utf8mb3"):
        assert all(ord(ch) <= 0xFFFF for ch in out)
    out.encode("utf-8")  # no lone surrogate: the driver can send it


def legacy_database(conn, clock):
    load_legacy(conn)
    schema.upgrade(conn, clock.now())


def test_the_upgraded_legacy_columns_are_what_fit_reads(db_url, conn, clock):
    legacy_database(conn, clock)
    last_error = column_of(conn, "ll_envios_whatsapp", "last_error")
    assert last_error.max_chars == 500
    assert last_error.charset == ("latin1" if conn.dialect == "mysql" else None)


def test_an_emoji_error_text_is_written_to_the_latin1_columns(db_url, conn, clock):
    legacy_database(conn, clock)
    add_campaign(conn, 900)
    (envio,) = add_rows(conn, 900, 1)
    with conn.transaction():
        transition(
            conn,
            envio,
            Estado.PENDIENTE,
            Estado.ERROR,
            origin=Origin.SENDER,
            at=clock.now(),
            detail=EMOJI_ERROR * 40,
            columns={"last_error": EMOJI_ERROR},
        )
    r = row(conn, envio)
    assert r["estado"] == "error"
    expected = EMOJI_ERROR if conn.dialect == "sqlite" else "número inválido ? — no enviado ?"
    assert r["last_error"] == expected


def test_a_stuck_row_note_with_an_emoji_is_written(db_url, conn, clock):
    legacy_database(conn, clock)
    add_campaign(conn, 900)
    (envio,) = add_rows(conn, 900, 1)
    conn.execute("UPDATE ll_envios_whatsapp SET estado = 'enviando' WHERE id = %s", (envio,))
    outbox.note_on_stuck_row(conn, envio, "unknown outcome: 🔥" * 100)
    assert row(conn, envio)["last_error"].startswith("unknown outcome: ")


def test_a_gateway_error_with_an_emoji_ends_the_row_in_error(db_url, conn, clock, gateway):
    legacy_database(conn, clock)
    add_campaign(conn, 900)
    add_schedule(conn, 900, 900, 9771)  # a session of its own: the legacy rows are on others
    (envio,) = add_rows(conn, 900, 1)
    gateway.plan(
        9771, (400, {"error": True, "code": "INVALID_NUMBER", "message": "número 😀 inválido"})
    )
    run_once(make_config(db_url, gateway.base_url), clock=clock, sender_id="fit:1")
    r = row(conn, envio)
    assert r["estado"] == "error"
    assert "INVALID_NUMBER" in r["last_error"]
