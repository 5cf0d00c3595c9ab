"""Unknown outcomes settled by the gateway's own record (WAHA, Evolution lookups); never a retry.

The fault run: a fake gateway that delivers and then loses the answer (reset, timeout),
or loses the connection before delivering. Its ledger is the truth: every row it
delivered ends `enviado` with the id it gave, no row it did not deliver is settled,
and nothing is delivered twice.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from envios.sender import delivery
from envios.sender.gateways import build_gateway
from envios.sender.loop import run_once

from envios.phones import normalise
from tests.sender.api_gateways import FakeApi
from tests.sender.conftest import (
    add_campaign,
    add_rows,
    add_schedule,
    estados,
    history,
    make_config,
    row,
)


def config_for(db_url, fake, **more):
    return make_config(db_url, fake.base_url, **{"gateway.kind": fake.kind, "gateway.api_key": "k3y",
                                                 "gateway.send_timeout_s": 0.3, **more})


def one_row_in_flight(upgraded, clock, *, claimed_at=None, attempts=0) -> int:
    """One row of campaign 47 claimed by envios (now, unless `claimed_at`), its outcome unknown."""
    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51)
    [envio_id] = add_rows(upgraded, 47, 1)
    claimed_at = clock.to_db(upgraded, clock.now()) if claimed_at is None else claimed_at
    upgraded.execute("UPDATE ll_envios_whatsapp SET estado = 'enviando', claimed_at = %s,"
                     " claim_programacion_id = 47, attempts = %s WHERE id = %s",
                     (claimed_at, attempts, envio_id))
    return envio_id


@pytest.fixture
def fake(request):
    made = []

    def make(kind):
        f = FakeApi(kind)
        f.hang_s = 1.0
        made.append(f)
        return f

    yield make
    for f in made:
        f.stop()


@pytest.mark.parametrize("kind", ["waha", "evolution"])
def test_fault_run_with_lost_answers_settles_exactly_what_the_gateway_delivered(db_url, upgraded, clock, fake, kind):
    gw = fake(kind)
    faults = ["ok"] * 15 + ["drop"] * 6 + ["timeout"] * 4 + ["drop_undelivered"] * 5
    random.Random(13).shuffle(faults)
    gw.plan(*faults)
    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51)
    ids = add_rows(upgraded, 47, 30)
    settled = []
    for _ in range(80):  # each unknown stops the session: one pass per unknown at most
        report = run_once(config_for(db_url, gw), clock=clock)
        settled.extend(report.settled_by_evidence)
        clock.advance(10)  # past the send's in-flight time: the pass before's unknowns may be looked up
        if not estados(upgraded).get("pendiente"):
            break
    settled.extend(run_once(config_for(db_url, gw), clock=clock).settled_by_evidence)
    ledger = {e["to"]: e for e in gw.ledger}
    assert len(ledger) == len(gw.ledger), "a number was delivered twice"
    outcomes = [s["behaviour"] for s in gw.sends]
    lost_after_delivery = outcomes.count("drop") + outcomes.count("timeout")
    never_delivered = outcomes.count("drop_undelivered")
    assert (lost_after_delivery, never_delivered) == (10, 5)  # every row was tried once, never twice
    assert sorted(settled) == sorted(set(settled)) and len(settled) == lost_after_delivery
    for envio_id in ids:
        r = row(upgraded, envio_id)
        to = normalise(r["telefono_wapp"])
        if to in ledger:
            assert (r["estado"], r["message_id"]) == ("enviado", ledger[to]["message_id"])
        else:
            assert r["estado"] == "enviando" and r["message_id"] is None  # left for a person, never guessed
    for envio_id in settled:
        assert history(upgraded, envio_id)[-1] == ("enviando", "enviado", "envios-evidence")
    assert estados(upgraded) == {"enviado": len(gw.ledger), "enviando": never_delivered}


def test_no_evidence_within_the_window_leaves_the_row_for_a_person(db_url, upgraded, clock, fake):
    gw = fake("waha")
    two_hours_ago = clock.to_db(upgraded, clock.now()) - dt.timedelta(hours=2)
    envio_id = one_row_in_flight(upgraded, clock, claimed_at=two_hours_ago, attempts=1)
    r = row(upgraded, envio_id)
    gw.deliver(normalise(r["telefono_wapp"]), "Hola Ana, ¿seguimos en contacto?", {})  # the gateway did send it
    adapter = build_gateway(config_for(db_url, gw))
    late = delivery.settle_by_evidence(upgraded, clock, adapter, within_s=3600)
    assert (late.settled, late.left_for_a_person) == ([], 1)
    assert row(upgraded, envio_id)["estado"] == "enviando"  # past the window: a person decides, as before
    assert not [req for req in gw.requests if "/chats/" in req[1]]  # nobody even asked
    in_time = delivery.settle_by_evidence(upgraded, clock, adapter, within_s=3 * 3600)
    assert in_time.settled == [envio_id]
    assert row(upgraded, envio_id)["message_id"] == gw.ledger[0]["message_id"]


def test_a_message_to_that_number_with_another_text_is_not_evidence(db_url, upgraded, clock, fake):
    gw = fake("evolution")
    envio_id = one_row_in_flight(upgraded, clock)
    gw.deliver(normalise(row(upgraded, envio_id)["telefono_wapp"]), "Another campaign's text", {})
    found = delivery.settle_by_evidence(upgraded, clock, build_gateway(config_for(db_url, gw)), within_s=3600)
    assert (found.settled, found.no_evidence) == ([], [envio_id])
    assert row(upgraded, envio_id)["estado"] == "enviando"


def test_an_unreachable_gateway_settles_nothing(db_url, upgraded, clock, fake):
    gw = fake("waha")
    envio_id = one_row_in_flight(upgraded, clock)
    adapter = build_gateway(config_for(db_url, gw))
    gw.stop()
    found = delivery.settle_by_evidence(upgraded, clock, adapter, within_s=3600)
    assert (found.settled, found.unavailable) == ([], [envio_id])


def test_a_send_still_in_flight_is_not_looked_up(db_url, upgraded, clock, fake):
    gw = fake("waha")
    envio_id = one_row_in_flight(upgraded, clock)
    gw.deliver(normalise(row(upgraded, envio_id)["telefono_wapp"]), "Hola Ana, ¿seguimos en contacto?", {})
    adapter = build_gateway(config_for(db_url, gw))
    early = delivery.settle_by_evidence(upgraded, clock, adapter, within_s=3600, in_flight_s=30)
    assert early.settled == [] and row(upgraded, envio_id)["estado"] == "enviando"  # its sender may still hear
    clock.advance(31)
    assert delivery.settle_by_evidence(upgraded, clock, adapter, within_s=3600, in_flight_s=30).settled == [envio_id]


def test_acks_that_came_before_the_row_knew_its_id_are_applied_when_it_is_settled(db_url, upgraded, clock, fake):
    """Evolution's acks carry no text: they wait aside until the lookup gives the row its id."""
    gw = fake("evolution")
    envio_id = one_row_in_flight(upgraded, clock)
    entry = gw.deliver(normalise(row(upgraded, envio_id)["telefono_wapp"]), "Hola Ana, ¿seguimos en contacto?", {})
    for status in ("delivered", "read"):
        ack = delivery.Ack("evolution", entry["message_id"], status, to=entry["to"])
        assert delivery.record_ack(upgraded, clock, ack) == "unknown_message"
    assert row(upgraded, envio_id)["delivery_status"] is None
    found = delivery.settle_by_evidence(upgraded, clock, build_gateway(config_for(db_url, gw)), within_s=3600)
    assert found.settled == [envio_id]
    r = row(upgraded, envio_id)
    assert (r["estado"], r["message_id"], r["delivery_status"]) == ("enviado", entry["message_id"], "read")
    assert r["delivered_at"] is not None and r["read_at"] is not None
    assert upgraded.scalar("SELECT COUNT(*) FROM envios_unmatched_acks") == 0
