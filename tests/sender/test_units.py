"""Pure pieces of the sender: phone numbers, message text, schedule windows, log lines."""

from __future__ import annotations

import datetime as dt

import pytest
from envios.sender.eligibility import closed_reason, quota_remaining
from envios.sender.messages import personalise

from envios.domain import Estado, SendingSchedule, weekdays
from envios.logfmt import kv
from envios.phones import InvalidPhone, mask, normalise, scrub


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("+54 9 11 2345-6821", "5491123456821"),  # production form
        ("5491123456821", "5491123456821"),  # already normalised
        ("+5491123456821", "5491123456821"),
        ("011 15 2345-6821", "5491123456821"),  # local mobile form with 15
        ("11 15 2345 6821", "5491123456821"),
        ("1123456821", "541123456821"),  # local number: country code added
        ("5491123456821@c.us", "5491123456821"),  # legacy JID suffix
        ("+1 202 555 0143", "12025550143"),  # other countries keep theirs
        (" (351) 15-555-1234 ", "5493515551234"),
    ],
)
def test_phone_numbers_are_normalised_to_digits_with_country_code(raw, expected):
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    "raw,reason",
    [
        (None, "no phone number"),
        ("", "no phone number"),
        ("   ", "no phone number"),
        ("sin telefono", "not a phone number"),
        ("123", "impossible phone number"),
        ("549351155551234999", "phone number"),
    ],
)
def test_impossible_numbers_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidPhone, match=reason):
        normalise(raw)


def test_masking_keeps_only_the_last_four_digits():
    assert mask("+54 9 11 2345-6821") == "*********6821"
    assert mask("12") == "**"
    assert mask(None) == "-"
    assert scrub("number 5491123456821 is invalid") == "number *********6821 is invalid"
    with pytest.raises(InvalidPhone) as info:
        normalise("12345678901234567890")
    assert "1234567890123456" not in str(info.value)


@pytest.mark.parametrize(
    "template,name,expected",
    [
        ("Hola {nombre}, ¿seguimos en contacto?", "Ana", "Hola Ana, ¿seguimos en contacto?"),
        ("Hola {nombre}, ¿seguimos en contacto?", None, "Hola, ¿seguimos en contacto?"),
        ("Hola {NOMBRE_DESTINO}!", "  Bruno   Díaz ", "Hola Bruno Díaz!"),
        ("{nombre}\nLínea 2", "", "Línea 2"),
        ("Sin nombre", "Ana", "Sin nombre"),
        ("  Hola  {nombre}  ", None, "Hola"),
        ("Dos { nombre } y {nombre_destino}.", "Eva", "Dos Eva y Eva."),
        (None, "Ana", ""),
    ],
)
def test_personalisation(template, name, expected):
    assert personalise(template, name) == expected


def sched(**kw):
    base = {
        "programacion_id": 1,
        "campania_id": 1,
        "cliente_id": 1,
        "programacion_estado": "aprobada",
        "campania_estado": "en_progreso",
        "dias_semana": "mon,tue,wed,thu,fri",
        "hora_inicio": dt.time(8),
        "hora_fin": dt.time(20),
        "fecha_inicio": dt.date(2026, 2, 1),
        "fecha_fin": None,
    }
    base.update(kw)
    return SendingSchedule.from_row(base)


MONDAY_10 = dt.datetime(2026, 2, 9, 10, 0)


@pytest.mark.parametrize(
    "changes,now,closed",
    [
        ({}, MONDAY_10, None),
        ({}, dt.datetime(2026, 2, 9, 20, 0, 0), None),  # the end is inclusive
        ({}, dt.datetime(2026, 2, 9, 20, 0, 1), "outside the window"),
        ({}, dt.datetime(2026, 2, 9, 7, 59, 59), "outside the window"),
        ({}, dt.datetime(2026, 2, 7, 10, 0), "not a sending day"),  # Saturday
        # Spanish names
        ({"dias_semana": "lun,mar,mié,jue,vie,sáb"}, dt.datetime(2026, 2, 7, 10, 0), None),
        ({"programacion_estado": "pausada"}, MONDAY_10, "schedule is pausada"),
        ({"campania_estado": "finalizado"}, MONDAY_10, "campaign is finalizado"),
        ({"fecha_inicio": dt.date(2026, 2, 10)}, MONDAY_10, "starts on"),
        ({"fecha_fin": dt.date(2026, 2, 8)}, MONDAY_10, "ended on"),
        # Mon night
        ({"hora_inicio": "22:00:00", "hora_fin": "02:00:00"}, dt.datetime(2026, 2, 10, 1, 0), None),
        (
            {"hora_inicio": "22:00:00", "hora_fin": "02:00:00"},
            dt.datetime(2026, 2, 9, 1, 0),
            "not a sending day",
        ),
        (
            {"hora_inicio": dt.timedelta(hours=8), "hora_fin": dt.timedelta(hours=20)},
            MONDAY_10,
            None,
        ),
    ],
)
def test_schedule_window(changes, now, closed):
    reason = closed_reason(sched(**changes), now)
    if closed is None:
        assert reason is None
    else:
        assert closed in reason


def test_weekdays_and_quota():
    assert weekdays("mon,tue,wed,thu,fri,sat") == frozenset(range(6))
    assert weekdays(" Mon ; SUN ") == frozenset({0, 6})
    assert weekdays("someday") == frozenset()
    assert quota_remaining(300, 40, 2) == 258
    assert quota_remaining(10, 9, 3) == 0


def test_log_lines_are_key_value():
    line = kv("state_change", envio_id=4, to=Estado.ENVIADO, detail="a b", message_id=None)
    assert line == 'event=state_change envio_id=4 to=enviado detail="a b" message_id=-'
