"""The schedule window at the edges of a schedule's dates, on both backends (issue 10).

A window belongs to the day it opened on: an overnight window 22:00-02:00 that
opened on a schedule's last day (`fecha_fin`) runs until 02:00 the next morning,
and one that opened the evening before a schedule's first day (`fecha_inicio`) is
not the schedule's. Both ends of a window are inclusive (02:00:00 is open, 02:00:01 is
not). The planner (`eligible_work`) and a whole pass (`run_once`) must agree with it.
"""

from __future__ import annotations

import datetime as dt

import pytest
from envios.sender.loop import run_once
from envios.sender.session_worker import eligible_work

from envios.clock import FixedClock
from tests.conftest import TZ
from tests.sender.conftest import estados, make_config, seed_session

D = dt.date(2026, 2, 9)  # a Monday
NIGHT = {"hora_inicio": "22:00:00", "hora_fin": "02:00:00"}
DAY = {"hora_inicio": "08:00:00", "hora_fin": "20:00:00"}


def at(day: dt.date, clock_time: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(clock_time))


CASES = [
    # (what, schedule, now, open)
    ("last night, after midnight", {**NIGHT, "fecha_fin": str(D)},
     at(D + dt.timedelta(days=1), "01:00"), True),
    ("last night, its end (inclusive)", {**NIGHT, "fecha_fin": str(D)},
     at(D + dt.timedelta(days=1), "02:00:00"), True),
    ("last night, just after its end", {**NIGHT, "fecha_fin": str(D)},
     at(D + dt.timedelta(days=1), "02:00:01"), False),
    ("last night, before midnight", {**NIGHT, "fecha_fin": str(D)}, at(D, "23:00"), True),
    ("the night after the last one", {**NIGHT, "fecha_fin": str(D)},
     at(D + dt.timedelta(days=1), "22:30"), False),
    ("first day, the small hours: the window opened the day before the schedule",
     {**NIGHT, "fecha_inicio": str(D)}, at(D, "01:00"), False),
    ("first day, its night", {**NIGHT, "fecha_inicio": str(D)}, at(D, "22:00"), True),
    ("first day, the next morning", {**NIGHT, "fecha_inicio": str(D)},
     at(D + dt.timedelta(days=1), "01:00"), True),
    ("day window, last day", {**DAY, "fecha_fin": str(D)}, at(D, "10:00"), True),
    ("day window, the day after the last", {**DAY, "fecha_fin": str(D)},
     at(D + dt.timedelta(days=1), "10:00"), False),
    ("day window, first day", {**DAY, "fecha_inicio": str(D)}, at(D, "08:00"), True),
    ("day window, the day before the first", {**DAY, "fecha_inicio": str(D)},
     at(D - dt.timedelta(days=1), "19:00"), False),
]


@pytest.mark.parametrize("what,schedule,now,is_open", CASES, ids=[c[0] for c in CASES])
def test_the_planner_sees_the_window_of_the_day_it_opened(what, schedule, now, is_open, upgraded):
    seed_session(upgraded, rows=1, **schedule)
    plan = eligible_work(upgraded, now)
    assert (47 in plan.quota) is is_open, f"{what}: closed because {plan.closed.get(47)!r}"


@pytest.mark.parametrize("what,schedule,now,is_open", CASES, ids=[c[0] for c in CASES])
def test_a_pass_sends_exactly_when_the_window_is_open(what, schedule, now, is_open, db_url,
                                                      upgraded, gateway):
    seed_session(upgraded, rows=2, **schedule)
    report = run_once(make_config(db_url, gateway.base_url), clock=FixedClock(TZ, now))
    assert report.sent == (2 if is_open else 0), what
    assert estados(upgraded) == ({"enviado": 2} if is_open else {"pendiente": 2}), what
