"""`envios reconcile list|mark-sent|requeue|mark-error|set-message-id`: resolve stuck or
doubtful rows."""

from __future__ import annotations

import argparse
import sys

from envios.clock import Clock
from envios.commands.common import action_parsers
from envios.errors import EnviosError
from envios.monitor.campaigns import login_name
from envios.phones import mask
from envios.sender import reconcile
from envios.store.connector import Database

HELP = "list and resolve stuck (enviando) or doubtful rows"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Rows in 'enviando' whose outcome is unknown (the gateway may or may not have delivered "
        "them) are never retried automatically. Check with the recipient or the WhatsApp session, "
        "then record the decision here. Every change goes through the state machine with a history "
        "row."
    )
    action = action_parsers(parser, "reconcile_action")
    ls = action(
        "list",
        help="stuck rows (enviando longer than monitor.stuck_after_s) and rows "
        "sent without a message id",
    )
    ls.add_argument(
        "--older-than-s",
        type=float,
        default=None,
        metavar="S",
        help="claim age that counts as stuck (default: monitor.stuck_after_s)",
    )

    def by_option(p):
        p.add_argument(
            "--by", default=None, metavar="NAME", help="who decided (default: the login name)"
        )
        p.add_argument("--note", default="", help="why (goes into the history row)")
        person_option(p)

    def person_option(p):
        p.add_argument(
            "--usuario-id",
            type=int,
            default=None,
            metavar="N",
            help="the application's user (usuarios.id) who decided, for the history's usuario_id",
        )

    sent = action("mark-sent", help="enviando -> enviado: it WAS delivered")
    sent.add_argument("ids", nargs="+", type=int, metavar="ID")
    sent.add_argument(
        "--message-id", default=None, help="the gateway's message id, if known (one ID only)"
    )
    by_option(sent)
    again = action(
        "requeue",
        help="enviando -> pendiente after checking it was NOT delivered; "
        "error -> pendiente to retry a failed row",
    )
    again.add_argument("ids", nargs="+", type=int, metavar="ID")
    again.add_argument(
        "--by",
        required=False,
        default=None,
        metavar="NAME",
        help="who decides it (required: the application's manual-retry rule)",
    )
    again.add_argument(
        "--note",
        default="",
        metavar="WHY",
        help="the justification, at least 10 characters (required)",
    )
    person_option(again)
    mid = action(
        "set-message-id",
        help="enviado without a message id: record the id found afterwards",
    )
    mid.add_argument("ids", nargs=1, type=int, metavar="ID")
    mid.add_argument(
        "message_id",
        metavar="MESSAGE_ID",
        help="the WhatsApp message id (e.g. true_549...@c.us_3EB0...)",
    )
    by_option(mid)
    err = action("mark-error", help="enviando/pendiente -> error: give up on it")
    err.add_argument("ids", nargs="+", type=int, metavar="ID")
    err.add_argument("--reason", required=True, help="why (stored in last_error and the history)")
    err.add_argument(
        "--by", default=None, metavar="NAME", help="who decided (default: the login name)"
    )
    person_option(err)


def _who(args) -> str:
    return args.by or login_name()


def _fmt(value) -> str:
    if value is None:
        return "-"
    return str(value)


def _print_rows(title: str, rows: list[dict]) -> None:
    print(f"{title}: {len(rows)}")
    if not rows:
        return
    print(
        f"  {'id':>8}  {'campaign':>8}  {'phone':<15}  {'claimed_at':<19}  "
        f"{'claimed_by':<28}  {'att':>3}  last_error"
    )
    for r in rows:
        print(
            f"  {r['id']:>8}  {r['campania_id']:>8}  {mask(r['telefono_wapp']):<15}  "
            f"{_fmt(r['claimed_at']):<19}  {_fmt(r['claimed_by'])[:28]:<28}  "
            f"{_fmt(r['attempts']):>3}  "
            f"{_fmt(r['last_error'])[:80]}"
        )


def run(args: argparse.Namespace, config) -> int:
    clock = Clock(config.tz)
    action = args.reconcile_action
    with Database(config.database.url).connect() as conn:
        if action == "list":
            older = (
                args.older_than_s
                if args.older_than_s is not None
                else float(config.monitor.stuck_after_s)
            )
            found = reconcile.list_doubtful(conn, clock, older)
            _print_rows(
                f"stuck in enviando for more than {older:g}s (outcome unknown)", found.stuck
            )
            _print_rows("sent without a message id", found.sent_without_id)
            return 0
        if action == "mark-sent" and args.message_id and len(args.ids) > 1:
            raise EnviosError("--message-id names one message: give exactly one ID with it")
        if action == "requeue":
            reconcile.check_retry_rule(args.by or "", args.note)  # one line, exit 2, before any row
        who = _who(args)
        failures = 0
        for envio_id in args.ids:
            try:
                if action == "mark-sent":
                    row = reconcile.mark_sent(
                        conn,
                        clock,
                        envio_id,
                        message_id=args.message_id,
                        by=who,
                        note=args.note,
                        usuario_id=args.usuario_id,
                    )
                elif action == "set-message-id":
                    row = reconcile.set_message_id(
                        conn, clock, envio_id, args.message_id, by=who, note=args.note
                    )
                elif action == "requeue":
                    row = reconcile.requeue(
                        conn, clock, envio_id, by=who, note=args.note, usuario_id=args.usuario_id
                    )
                else:
                    row = reconcile.mark_error(
                        conn,
                        clock,
                        envio_id,
                        reason=args.reason,
                        by=who,
                        usuario_id=args.usuario_id,
                    )
            except EnviosError as exc:
                failures += 1
                print(f"envios reconcile: {exc}", file=sys.stderr)
                continue
            print(f"row {envio_id}: now {row['estado']}")
        return 1 if failures else 0
