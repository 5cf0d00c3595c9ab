"""`envios webhooks` on a real waitress server (loopback), on SQLite and MariaDB, per gateway's
payloads."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import requests
from envios.sender.loop import run_once
from envios.sender.webhooks import WebhookApp, serve

from envios.store.connector import Database
from tests.sender.api_gateways import FakeApi
from tests.sender.conftest import estados, history, make_config, row, seed_session, sent_today

SECRET, APP_SECRET, VERIFY = "s3cret-hook", "app-s3cret", "verify-me"


@pytest.fixture
def hooks(db_url, upgraded, clock):
    app = WebhookApp(
        Database(db_url), clock, secret=SECRET, app_secret=APP_SECRET, verify_token=VERIFY
    )
    server = serve(app, "127.0.0.1", 0)
    app.url = server.url
    yield app
    server.stop()
    app.close()


@pytest.fixture
def sent_rows(db_url, upgraded, clock, request):
    """Three rows sent through a fake of the given kind: {envio_id: message_id}; plus the fake."""
    fakes = []

    def make(kind: str, plan=()):
        fake = FakeApi(kind)
        # these rows are settled by acknowledgements only (lookups: test_settle_by_evidence)
        fake.lookups = False
        fakes.append(fake)
        fake.plan(*plan)
        ids = seed_session(upgraded, rows=3)
        run_once(
            make_config(
                db_url,
                fake.base_url,
                **{
                    "gateway.kind": kind,
                    "gateway.api_key": "k3y",
                    "gateway.phone_number_id": "1234567890",
                    "gateway.send_timeout_s": 0.5,
                },
            ),
            clock=clock,
        )
        return fake, ids

    yield make
    for fake in fakes:
        fake.stop()


def post(app, kind, body, *, secret=SECRET, signature=None, query=""):
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if kind == "cloud_api":
        key = APP_SECRET if signature is None else signature
        headers["X-Hub-Signature-256"] = (
            "sha256=" + hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
        )
    elif secret is not None:
        headers["X-Webhook-Secret"] = secret
    return requests.post(f"{app.url}/webhooks/{kind}{query}", data=raw, headers=headers, timeout=10)


def waha_ack(message_id, ack, *, to="5491100470000", body=None):
    payload = {
        "id": message_id,
        "timestamp": 1770000000,
        "from": "5491199999999@c.us",
        "fromMe": True,
        "to": f"{to}@c.us",
        "ack": ack,
        "ackName": {-1: "ERROR", 1: "SERVER", 2: "DEVICE", 3: "READ"}[ack],
    }
    if body is not None:
        payload["body"] = body
    return {
        "id": "evt_01",
        "timestamp": 1770000000000,
        "event": "message.ack",
        "session": "default",
        "me": {"id": "5491199999999@c.us"},
        "payload": payload,
        "engine": "WEBJS",
    }


def evolution_update(key_id, status, to="5491100470000"):
    return {
        "event": "messages.update",
        "instance": "default",
        "data": {
            "messageId": "cm1abc",
            "keyId": key_id,
            "remoteJid": f"{to}@s.whatsapp.net",
            "fromMe": True,
            "participant": None,
            "status": status,
            "instanceId": "0a1b",
        },
        "destination": "http://127.0.0.1/webhooks/evolution",
        "date_time": "2026-02-09T13:00:00.000Z",
        "sender": "5491199999999@s.whatsapp.net",
        "server_url": "http://127.0.0.1:8080",
    }


def cloud_status(message_id, status, *, reference=None, to="5491100470000", errors=None):
    st = {"id": message_id, "status": status, "timestamp": "1770000000", "recipient_id": to}
    if reference is not None:
        st["biz_opaque_callback_data"] = str(reference)
    if errors:
        st["errors"] = errors
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "1234567890",
                            },
                            "statuses": [st],
                        },
                    }
                ],
            }
        ],
    }


def session_manager_ack(message_id, ack, **more):
    return {"message_id": message_id, "ack": ack, **more}


PAYLOADS = {
    "session_manager": lambda mid, s: session_manager_ack(
        mid, {"sent": 1, "delivered": 2, "read": 3, "failed": -1}[s]
    ),
    "waha": lambda mid, s: waha_ack(mid, {"sent": 1, "delivered": 2, "read": 3, "failed": -1}[s]),
    "evolution": lambda mid, s: evolution_update(
        mid,
        {"sent": "SERVER_ACK", "delivered": "DELIVERY_ACK", "read": "READ", "failed": "ERROR"}[s],
    ),
    "cloud_api": lambda mid, s: cloud_status(mid, s),
}
SENDS_THROUGH = {
    "session_manager": "waha",
    "waha": "waha",
    "evolution": "evolution",
    "cloud_api": "cloud_api",
}


def snapshot(conn):
    return (
        conn.query("SELECT * FROM ll_envios_whatsapp ORDER BY id"),
        conn.query("SELECT * FROM ll_envios_whatsapp_historial ORDER BY id"),
    )


def metric(app, kind, result):
    return app.events.labels(kind, result)._value.get()


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_delivered_then_read_are_recorded_per_row(hooks, sent_rows, upgraded, kind):
    _fake, ids = sent_rows(SENDS_THROUGH[kind])
    mid = row(upgraded, ids[0])["message_id"]
    for status in ("sent", "delivered", "read"):
        answer = post(hooks, kind, PAYLOADS[kind](mid, status))
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"] == {"recorded": 1}
    r = row(upgraded, ids[0])
    assert (
        r["delivery_status"] == "read"
        and r["delivered_at"] is not None
        and r["read_at"] is not None
    )
    assert row(upgraded, ids[1])["delivery_status"] is None  # only that row


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_unauthenticated_calls_get_401_and_write_nothing(hooks, sent_rows, upgraded, kind):
    _fake, ids = sent_rows(SENDS_THROUGH[kind])
    mid = row(upgraded, ids[0])["message_id"]
    before = snapshot(upgraded)
    body = PAYLOADS[kind](mid, "read")
    if kind == "cloud_api":
        attempts = [
            post(hooks, kind, body, signature="wrong-secret"),
            requests.post(f"{hooks.url}/webhooks/cloud_api", json=body, timeout=10),
        ]
    else:
        attempts = [
            post(hooks, kind, body, secret="wrong"),
            post(hooks, kind, body, secret=None),
            post(hooks, kind, body, secret=None, query="?secret=wrong"),
        ]
    assert [a.status_code for a in attempts] == [401] * len(attempts)
    assert snapshot(upgraded) == before
    assert hooks.refused.labels(kind, "unauthenticated")._value.get() == len(attempts)


def test_the_secret_may_come_in_the_query_string(hooks, sent_rows, upgraded):
    _fake, ids = sent_rows("waha")
    mid = row(upgraded, ids[0])["message_id"]
    assert (
        post(hooks, "waha", waha_ack(mid, 2), secret=None, query=f"?secret={SECRET}").status_code
        == 200
    )
    assert row(upgraded, ids[0])["delivery_status"] == "delivered"


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_duplicates_and_read_before_delivered_end_the_same(hooks, sent_rows, upgraded, kind):
    _fake, ids = sent_rows(SENDS_THROUGH[kind])
    mid = row(upgraded, ids[0])["message_id"]
    results = [
        post(hooks, kind, PAYLOADS[kind](mid, s)).json()["results"]
        for s in ("read", "delivered", "read", "sent")
    ]
    assert results == [{"recorded": 1}, {"duplicate": 1}, {"duplicate": 1}, {"duplicate": 1}]
    r = row(upgraded, ids[0])
    assert (
        r["delivery_status"] == "read"
        and r["delivered_at"] is not None
        and r["read_at"] is not None
    )


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_unknown_message_ids_are_counted_and_ignored(hooks, sent_rows, upgraded, kind):
    sent_rows(SENDS_THROUGH[kind])
    before = snapshot(upgraded)
    answer = post(hooks, kind, PAYLOADS[kind]("not-one-of-ours-3EB0FFFF", "delivered"))
    assert answer.status_code == 200 and answer.json()["results"] == {"unknown_message": 1}
    assert snapshot(upgraded) == before
    # kept aside, in case a row gets that id
    assert upgraded.scalar("SELECT COUNT(*) FROM envios_unmatched_acks") == 1
    assert metric(hooks, kind, "unknown_message") == 1
    scrape = requests.get(f"{hooks.url}/metrics", timeout=5).text
    assert f'envios_webhook_events_total{{kind="{kind}",result="unknown_message"}} 1.0' in scrape


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_a_failed_delivery_after_enviado_is_recorded_counted_and_visible(
    hooks, sent_rows, upgraded, kind
):
    _fake, ids = sent_rows(SENDS_THROUGH[kind])
    mid = row(upgraded, ids[0])["message_id"]
    body = PAYLOADS[kind](mid, "failed")
    if kind == "cloud_api":
        body = cloud_status(
            mid,
            "failed",
            errors=[
                {
                    "code": 131026,
                    "title": "Message undeliverable",
                    "message": "Message undeliverable",
                    "error_data": {"details": "Message Undeliverable."},
                }
            ],
        )
    assert post(hooks, kind, body).json()["results"] == {"failed_after_sent": 1}
    r = row(upgraded, ids[0])
    assert r["estado"] == "enviado" and r["delivery_status"] == "failed" and r["delivery_error"]
    if kind == "cloud_api":
        assert "131026" in r["delivery_error"]
    assert metric(hooks, kind, "failed_after_sent") == 1


def test_waha_ack_settles_a_stuck_row_with_its_id(hooks, sent_rows, upgraded, clock):
    fake, ids = sent_rows("waha", plan=("ok", "drop"))
    stuck = ids[1]
    assert row(upgraded, stuck)["estado"] == "enviando"
    delivered = fake.ledger[1]
    body = waha_ack(delivered["message_id"], 2, to=delivered["to"], body=delivered["text"])
    assert post(hooks, "waha", body).json()["results"] == {"settled": 1}
    r = row(upgraded, stuck)
    assert (r["estado"], r["message_id"], r["delivery_status"]) == (
        "enviado",
        delivered["message_id"],
        "delivered",
    )
    assert history(upgraded, stuck)[-1] == ("enviando", "enviado", "envios-evidence")
    detail = upgraded.scalar(
        "SELECT detalle FROM ll_envios_whatsapp_historial WHERE envio_id = %s ORDER BY id DESC",
        (stuck,),
    )
    assert "waha acknowledgement 'delivered'" in detail
    # the settled send counts in the day's quota
    assert sent_today(upgraded, 47, clock.today()) == 2
    # the same ack again: nothing more
    assert post(hooks, "waha", body).json()["results"] == {"duplicate": 1}


def test_session_manager_ack_with_recipient_and_text_settles_a_stuck_row(
    hooks, sent_rows, upgraded
):
    fake, ids = sent_rows("waha", plan=("drop",))
    delivered = fake.ledger[0]
    body = session_manager_ack("true_x@c.us_3EB0AA", 3, to=delivered["to"], body=delivered["text"])
    assert post(hooks, "session_manager", body).json()["results"] == {"settled": 1}
    assert (
        row(upgraded, ids[0])["estado"] == "enviado"
        and row(upgraded, ids[0])["delivery_status"] == "read"
    )


def test_an_ack_without_the_text_does_not_settle_a_stuck_row(hooks, sent_rows, upgraded):
    """Evolution's messages.update carries no text: a message to that number is not proof of
    this one."""
    fake, ids = sent_rows("evolution", plan=("drop",))
    before = snapshot(upgraded)
    body = evolution_update(fake.ledger[0]["message_id"], "DELIVERY_ACK", to=fake.ledger[0]["to"])
    assert post(hooks, "evolution", body).json()["results"] == {"unknown_message": 1}
    assert snapshot(upgraded) == before


def test_cloud_api_status_settles_a_row_whose_send_timed_out(hooks, sent_rows, upgraded):
    fake, ids = sent_rows("cloud_api", plan=("ok", "timeout"))
    stuck = ids[1]
    assert (
        row(upgraded, stuck)["estado"] == "enviando" and row(upgraded, stuck)["message_id"] is None
    )
    wamid = fake.ledger[1]["message_id"]
    assert fake.ledger[1]["reference"] == str(stuck)
    answer = post(hooks, "cloud_api", cloud_status(wamid, "delivered", reference=stuck))
    assert answer.json()["results"] == {"settled": 1}
    r = row(upgraded, stuck)
    assert (r["estado"], r["message_id"], r["delivery_status"]) == ("enviado", wamid, "delivered")
    assert history(upgraded, stuck)[-1] == ("enviando", "enviado", "envios-evidence")
    assert estados(upgraded) == {"enviado": 2, "pendiente": 1}


def test_cloud_api_failed_status_of_a_stuck_row_is_recorded_and_left_for_a_person(
    hooks, sent_rows, upgraded
):
    fake, ids = sent_rows("cloud_api", plan=("timeout",))
    body = cloud_status(
        fake.ledger[0]["message_id"],
        "failed",
        reference=ids[0],
        errors=[{"code": 131047, "title": "Re-engagement message"}],
    )
    assert post(hooks, "cloud_api", body).json()["results"] == {"recorded": 1}
    r = row(upgraded, ids[0])
    assert (r["estado"], r["delivery_status"]) == ("enviando", "failed") and "131047" in r[
        "delivery_error"
    ]


def test_cloud_api_verification_handshake(hooks):
    ok = requests.get(
        f"{hooks.url}/webhooks/cloud_api",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"},
        timeout=5,
    )
    assert (ok.status_code, ok.text) == (200, "1158201444")
    bad = requests.get(
        f"{hooks.url}/webhooks/cloud_api",
        params={"hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "1158201444"},
        timeout=5,
    )
    assert bad.status_code == 401 and "1158201444" not in bad.text


def test_bad_json_and_unknown_routes(hooks):
    assert (
        requests.post(
            f"{hooks.url}/webhooks/waha",
            data=b"{nope",
            headers={"X-Webhook-Secret": SECRET},
            timeout=5,
        ).status_code
        == 400
    )
    assert requests.post(f"{hooks.url}/webhooks/telegram", json={}, timeout=5).status_code == 404


def test_an_ack_for_a_send_still_in_flight_is_kept_and_settles_it_only_after_the_timeout(
    db_url, upgraded, clock
):
    """The ack may beat the send's own answer: recorded with its id, never a race with the
    sender's record."""
    from envios.sender import delivery

    [envio_id] = seed_session(upgraded, rows=1)
    claimed = clock.to_db(upgraded, clock.now())
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET estado = 'enviando', claimed_at = %s,"
        " claim_programacion_id = 47, attempts = 1 WHERE id = %s",
        (claimed, envio_id),
    )
    ack = delivery.Ack(
        "waha",
        "true_5491100470000@c.us_3EB0AB",
        "delivered",
        to="5491100470000",
        text="Hola Ana, ¿seguimos en contacto?",
    )
    assert delivery.record_ack(upgraded, clock, ack, in_flight_s=60) == "recorded"
    r = row(upgraded, envio_id)
    assert (r["estado"], r["message_id"], r["delivery_status"]) == (
        "enviando",
        ack.message_id,
        "delivered",
    )
    # the sender may still hear the answer
    assert delivery.settle_acknowledged(upgraded, clock, 60) == []
    clock.advance(120)  # the send timed out: its answer is lost for good
    assert delivery.settle_acknowledged(upgraded, clock, 60) == [envio_id]
    r = row(upgraded, envio_id)
    assert (r["estado"], r["message_id"]) == ("enviado", ack.message_id)
    assert history(upgraded, envio_id)[-1] == ("enviando", "enviado", "envios-evidence")
    assert sent_today(upgraded, 47, clock.today()) == 1
