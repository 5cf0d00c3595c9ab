"""`envios reconcile`: list stuck and doubtful rows, and record a person's decision through the
state machine."""

from __future__ import annotations

import datetime as dt

import pytest
from envios.sender import reconcile
from envios.sender.reconcile import ReconcileError, RetryRuleBroken

from envios.store import schema
from tests.conftest import load_legacy
from tests.sender.conftest import envios, history, row, seed_session, sender_env, sent_today


@pytest.fixture
def stuck(upgraded, clock):
    """Row 1 stuck in enviando (claimed 10 minutes ago), row 2 sent without id, row 3 error,
    row 4 pendiente."""
    ids = seed_session(upgraded, rows=4, cupo=10)
    claimed = clock.db_now(upgraded) - dt.timedelta(minutes=10)
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET estado = 'enviando', claimed_at = %s,"
        " claimed_by = 'vm:1:ab', claim_programacion_id = 47, attempts = 1,"
        " last_error = 'unknown outcome: ReadTimeout'"
        " WHERE id = %s",
        (claimed, ids[0]),
    )
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET estado = 'enviado', claimed_at = %s, claimed_by = 'vm:1:ab',"
        " fecha_envio = %s WHERE id = %s",
        (claimed, claimed, ids[1]),
    )
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET estado = 'error', attempts = 5, last_error = 'HTTP 500'"
        " WHERE id = %s",
        (ids[2],),
    )
    return ids


def test_list_finds_stuck_and_sent_without_id(upgraded, clock, stuck):
    found = reconcile.list_doubtful(upgraded, clock, stuck_after_s=300)
    assert [r["id"] for r in found.stuck] == [stuck[0]]
    assert [r["id"] for r in found.sent_without_id] == [stuck[1]]
    assert reconcile.list_doubtful(upgraded, clock, stuck_after_s=3600).stuck == []


def test_mark_sent_records_the_id_the_date_and_the_daily_count(upgraded, clock, stuck):
    reconcile.mark_sent(
        upgraded,
        clock,
        stuck[0],
        message_id="true_549@c.us_X",
        by="ana",
        note="recipient confirmed",
    )
    r = row(upgraded, stuck[0])
    assert (r["estado"], r["message_id"], r["fecha_envio"]) == (
        "enviado",
        "true_549@c.us_X",
        clock.db_now(upgraded),
    )
    assert history(upgraded, stuck[0]) == [("enviando", "enviado", "envios-reconcile")]
    detail = upgraded.scalar(
        "SELECT detalle FROM ll_envios_whatsapp_historial WHERE envio_id = %s", (stuck[0],)
    )
    assert detail == "confirmed sent by ana: recipient confirmed"
    assert sent_today(upgraded, 47, clock.today()) == 1


def test_requeue_a_stuck_row_and_an_error_row(upgraded, clock, stuck):
    reconcile.requeue(upgraded, clock, stuck[0], by="ana", note="not on the phone")
    reconcile.requeue(upgraded, clock, stuck[2], by="ana", note="number fixed by the client")
    assert row(upgraded, stuck[0])["estado"] == "pendiente"
    assert (row(upgraded, stuck[2])["estado"], row(upgraded, stuck[2])["attempts"]) == (
        "pendiente",
        0,
    )
    assert history(upgraded, stuck[0]) == [("enviando", "pendiente", "envios-reconcile")]
    assert history(upgraded, stuck[2]) == [("error", "pendiente", "envios-reconcile")]


def test_mark_error(upgraded, clock, stuck):
    reconcile.mark_error(
        upgraded, clock, stuck[0], reason="number belongs to someone else", by="ana"
    )
    reconcile.mark_error(upgraded, clock, stuck[3], reason="opted out", by="ana")
    assert row(upgraded, stuck[0])["last_error"] == "number belongs to someone else"
    assert history(upgraded, stuck[3]) == [("pendiente", "error", "envios-reconcile")]


@pytest.mark.parametrize(
    "action,index,message",
    [
        ("requeue", 1, "is enviado: requeue only applies to enviando or error rows"),
        ("requeue", 3, "is pendiente: requeue only applies"),
        ("mark_sent", 1, "is enviado: mark-sent only applies to enviando rows"),
        ("mark_sent", 2, "is error: mark-sent only applies"),
        ("mark_error", 1, "is enviado: mark-error only applies"),
    ],
)
def test_forbidden_changes_are_refused_with_one_clear_line(
    upgraded, clock, stuck, action, index, message
):
    kwargs = {"reason": "x"} if action == "mark_error" else {}
    if action == "requeue":
        kwargs = {"by": "ana", "note": "checked with the recipient"}
    with pytest.raises(ReconcileError, match=message):
        getattr(reconcile, action)(upgraded, clock, stuck[index], **kwargs)
    with pytest.raises(ReconcileError, match="row 999999 does not exist"):
        getattr(reconcile, action)(upgraded, clock, 999999, **kwargs)


def test_reconcile_command_line(db_url, upgraded, stuck, tmp_path):
    env = sender_env(db_url, "http://127.0.0.1:9")
    listed = envios("reconcile", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "stuck in enviando for more than 300s (outcome unknown): 1" in listed.stdout
    assert "sent without a message id: 1" in listed.stdout
    assert "*********0000" in listed.stdout and "5491100470000" not in listed.stdout
    assert "vm:1:ab" in listed.stdout and "unknown outcome: ReadTimeout" in listed.stdout

    done = envios(
        "reconcile",
        "mark-sent",
        str(stuck[0]),
        "--message-id",
        "m-1",
        "--by",
        "ana",
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and f"row {stuck[0]}: now enviado" in done.stdout
    bad = envios(
        "reconcile",
        "requeue",
        str(stuck[0]),
        "424242",
        "--by",
        "ana",
        "--note",
        "checked: not delivered",
        env=env,
        cwd=tmp_path,
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        (
            f"envios reconcile: row {stuck[0]} is enviado:"
            " requeue only applies to enviando or error rows"
        ),
        "envios reconcile: row 424242 does not exist",
    ]
    err = envios(
        "reconcile", "mark-error", str(stuck[3]), "--reason", "opted out", env=env, cwd=tmp_path
    )
    assert err.returncode == 0 and row(upgraded, stuck[3])["estado"] == "error"
    both = envios("reconcile", "mark-sent", "1", "2", "--message-id", "x", env=env, cwd=tmp_path)
    assert (
        both.returncode != 0 and "exactly one ID" in both.stderr and "Traceback" not in both.stderr
    )
    mid = envios(
        "reconcile",
        "set-message-id",
        str(stuck[1]),
        "true_1@c.us_AB",
        "--by",
        "ana",
        env=env,
        cwd=tmp_path,
    )
    assert mid.returncode == 0 and f"row {stuck[1]}: now enviado" in mid.stdout
    assert row(upgraded, stuck[1])["message_id"] == "true_1@c.us_AB"


def test_set_message_id_resolves_a_send_without_id_and_is_audited(upgraded, clock, stuck):
    reconcile.set_message_id(
        upgraded,
        clock,
        stuck[1],
        "true_5491100000001@c.us_3EB0F00D",
        by="ana",
        note="from the phone",
    )
    r = row(upgraded, stuck[1])
    assert (r["estado"], r["message_id"]) == ("enviado", "true_5491100000001@c.us_3EB0F00D")
    assert reconcile.list_doubtful(upgraded, clock, stuck_after_s=300).sent_without_id == []
    audit = upgraded.query("SELECT accion, campania_id, motivo, detalle FROM envios_audit")
    assert audit == [
        {
            "accion": "set_message_id",
            "campania_id": 47,
            "motivo": "missing_message_id",
            "detalle": f"message id recorded for row {stuck[1]} by ana: from the phone",
        }
    ]
    assert history(upgraded, stuck[1]) == []  # not a state change
    with pytest.raises(ReconcileError, match="not a send without a message id"):
        reconcile.set_message_id(upgraded, clock, stuck[1], "another-id")  # never overwritten
    with pytest.raises(ReconcileError, match="not a send without a message id"):
        # a stuck row is resolved with mark-sent
        reconcile.set_message_id(upgraded, clock, stuck[0], "x")


@pytest.mark.parametrize(
    "by,note", [("", "checked with the recipient"), ("ana", "too short"), ("ana", "   ")]
)
def test_requeue_follows_the_applications_manual_retry_rule(upgraded, clock, stuck, by, note):
    """error -> pendiente needs a named person and a justification of at least 10 characters."""
    with pytest.raises(RetryRuleBroken, match="manual-retry rule"):
        reconcile.requeue(upgraded, clock, stuck[2], by=by, note=note)
    assert row(upgraded, stuck[2])["estado"] == "error" and history(upgraded, stuck[2]) == []


def test_requeue_without_person_or_justification_is_one_line_exit_2(
    db_url, upgraded, stuck, tmp_path
):
    env = sender_env(db_url, "http://127.0.0.1:9")
    for extra in (
        [],
        ["--by", "ana"],
        ["--by", "ana", "--note", "short"],
        ["--note", "checked with the recipient"],
    ):
        done = envios("reconcile", "requeue", str(stuck[2]), *extra, env=env, cwd=tmp_path)
        assert done.returncode == 2, (extra, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and "manual-retry rule" in done.stderr
    assert row(upgraded, stuck[2])["estado"] == "error"
    ok = envios(
        "reconcile",
        "requeue",
        str(stuck[2]),
        "--by",
        "ana",
        "--note",
        "number fixed by the client",
        env=env,
        cwd=tmp_path,
    )
    assert ok.returncode == 0 and row(upgraded, stuck[2])["estado"] == "pendiente"


def test_a_named_user_of_the_application_goes_into_usuario_id(conn, clock):
    """The later schema's history has usuario_id (a foreign key to usuarios): only a real user
    goes there."""
    load_legacy(conn, "2026-02-27")
    schema.upgrade(conn, clock.now())
    with pytest.raises(ReconcileError, match="no such user in usuarios"):
        reconcile.requeue(
            conn, clock, 4503, by="ana", note="number fixed by the client", usuario_id=99
        )
    reconcile.requeue(conn, clock, 4503, by="ana", note="number fixed by the client", usuario_id=7)
    last = conn.query_one(
        "SELECT origen, detalle, usuario_id FROM ll_envios_whatsapp_historial"
        " WHERE envio_id = 4503 ORDER BY id DESC LIMIT 1"
    )
    assert last == {
        "origen": "envios-reconcile",
        "detalle": "requeued by ana: number fixed by the client",
        "usuario_id": 7,
    }


def test_usuario_id_is_refused_where_the_history_has_no_such_column(conn, clock):
    load_legacy(conn, "2026-02")
    schema.upgrade(conn, clock.now())
    with pytest.raises(ReconcileError, match="no usuario_id column"):
        reconcile.requeue(
            conn, clock, 4503, by="ana", note="number fixed by the client", usuario_id=7
        )
    assert conn.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = 4503") == "error"
