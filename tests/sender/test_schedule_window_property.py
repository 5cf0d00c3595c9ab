"""The store's schedule filter never disagrees with the domain's window rule (issue 10).

For random schedules (day and overnight windows, date ranges, weekdays) and random
instants near their edges: every schedule `envios.domain.schedule_window` declares open
is among `outbox.active_schedules` (the SQL filter bounded by `opening_days`), and the
filter drops only schedules whose dates hold none of those days.
"""

from __future__ import annotations

import datetime as dt

from envios.sender import outbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envios.domain import opening_days, schedule_window
from tests.sender.conftest import add_campaign, add_schedule

D = dt.date(2026, 2, 9)
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EDGES = [
    dt.time(0, 0),
    dt.time(0, 0, 1),
    dt.time(1, 59, 59),
    dt.time(2, 0),
    dt.time(2, 0, 1),
    dt.time(12, 0),
    dt.time(21, 59, 59),
    dt.time(22, 0),
    dt.time(23, 59, 59),
]

times = st.one_of(st.sampled_from(EDGES), st.times().map(lambda t: t.replace(microsecond=0)))
schedules = st.fixed_dictionaries(
    {
        "hora_inicio": times,
        "hora_fin": times,
        "dias": st.sets(st.sampled_from(DAY_NAMES), min_size=1).map(",".join),
        "fecha_inicio": st.integers(-3, 3).map(lambda n: D + dt.timedelta(days=n)),
        "length_days": st.one_of(st.none(), st.integers(0, 4)),
    }
)
instants = st.builds(
    lambda days, t: dt.datetime.combine(D + dt.timedelta(days=days), t), st.integers(-2, 4), times
)


def last_day(drawn: dict) -> dt.date | None:
    if drawn["length_days"] is None:
        return None
    return drawn["fecha_inicio"] + dt.timedelta(days=drawn["length_days"])


# `upgraded` is one database per test run: every example starts by emptying its schedules.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=st.lists(schedules, min_size=1, max_size=12), now=instants)
def test_the_sql_filter_keeps_every_schedule_the_domain_opens(drawn, now, upgraded):
    upgraded.execute("DELETE FROM ll_programaciones")
    upgraded.execute("DELETE FROM ll_campanias_whatsapp")
    add_campaign(upgraded, 47)
    for pid, s in enumerate(drawn, start=1):
        last = last_day(s)
        add_schedule(
            upgraded,
            pid,
            47,
            51,
            dias=s["dias"],
            hora_inicio=s["hora_inicio"].isoformat(),
            hora_fin=s["hora_fin"].isoformat(),
            fecha_inicio=str(s["fecha_inicio"]),
            fecha_fin=None if last is None else str(last),
        )
    kept = {s.programacion_id for s in outbox.active_schedules(upgraded, now)}
    for pid, s in enumerate(drawn, start=1):
        last = last_day(s)
        window = schedule_window(
            now,
            dias_semana=s["dias"],
            hora_inicio=s["hora_inicio"],
            hora_fin=s["hora_fin"],
            fecha_inicio=s["fecha_inicio"],
            fecha_fin=last,
        )
        if window.is_open:
            assert pid in kept, f"schedule {pid} {s} is open at {now}: the SQL filter drops it"
        elif pid not in kept:  # dropped only when no possible opening day is in its dates
            earliest, latest = opening_days(now)
            assert s["fecha_inicio"] > latest or (last is not None and last < earliest), (pid, s)
