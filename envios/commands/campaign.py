"""`envios campaign list | pause ID [--reason TEXT] | resume ID [--reason TEXT]`: operator
control."""

from __future__ import annotations

import argparse
import datetime as dt

from envios.clock import Clock
from envios.commands._table import format_table, shorten
from envios.commands.common import action_parsers
from envios.domain import OPERATOR, ProgramacionEstado, pause_reason_label, stuck_cutoff
from envios.monitor import campaigns
from envios.store.connector import Database

HELP = "operator control: list campaigns and their schedules, pause or resume one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    action = action_parsers(parser, "campaign_action")
    action(
        "list",
        help="campaigns with their schedules, states and pause reasons",
    )
    pause = action(
        "pause",
        help="pause the campaign's approved schedules (reason: operator)",
        description=(
            "Move every aprobada schedule of the campaign to pausada (paused_reason operator, "
            "paused_by operator) and write an audit row. The sender stops sending them at "
            "its next check. Pausing a campaign with nothing approved changes nothing."
        ),
    )
    pause.add_argument("campaign_id", type=int, metavar="ID")
    pause.add_argument("--reason", default="", metavar="TEXT", help="why, for the audit record")
    resume = action(
        "resume",
        help="approve the campaign's paused schedules again",
        description="Move every pausada schedule of the campaign back to aprobada, clear the pause "
        "and stamp the campaign's resumed_at: from then on the watcher's error-ratio "
        "and missing-id verdicts count only sends finished after the resume. Only envios's "
        "own pauses are undone: a schedule the application paused stays paused unless "
        "--include-manual-pauses is given. Rows still "
        "stuck in enviando keep counting: resolve them with `envios reconcile`.",
    )
    resume.add_argument("campaign_id", type=int, metavar="ID")
    resume.add_argument("--reason", default="", metavar="TEXT", help="why, for the audit record")
    resume.add_argument(
        "--include-manual-pauses",
        action="store_true",
        help="also resume schedules the application itself paused (by default only "
        "envios's own pauses, by the watcher or `envios campaign pause`, are undone)",
    )


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def run(args: argparse.Namespace, config) -> int:
    clock = Clock(config.tz)
    with Database(config.database.url).connect() as conn:
        if args.campaign_action == "list":
            print(_list(conn))
            return 0
        if args.campaign_action == "pause":
            changed = campaigns.pause(
                conn,
                args.campaign_id,
                reason=OPERATOR,
                now=clock.db_now(conn),
                paused_by=OPERATOR,
                detail=args.reason,
            )
            if changed:
                print(
                    f"campaign {args.campaign_id}: paused schedule(s) {_ids(changed)}"
                    " (reason operator)"
                )
            else:
                print(
                    f"campaign {args.campaign_id}: no approved schedule to pause; nothing changed"
                )
            return 0
        now = clock.db_now(conn)
        manual: list[int] = []
        changed = campaigns.resume(
            conn,
            args.campaign_id,
            now=now,
            detail=args.reason,
            left_paused=manual,
            include_application_pauses=args.include_manual_pauses,
        )
        if manual:
            print(
                f"campaign {args.campaign_id}: schedule(s) {_ids(manual)}"
                " were paused by the application, not by envios: left paused"
                " (--include-manual-pauses resumes them too)"
            )
        if not changed:
            print(f"campaign {args.campaign_id}: no paused schedule to resume; nothing changed")
            return 0
        print(
            f"campaign {args.campaign_id}: resumed schedule(s) {_ids(changed)}; sends finished"
            f" before {_when(now)} no longer count toward the error-ratio and missing-id pauses"
        )
        monitor = config.monitor
        cutoff = stuck_cutoff(now, monitor.stuck_after_s)
        stuck = campaigns.stuck_count(conn, args.campaign_id, cutoff)
        if stuck:
            again = (
                "; the watcher will pause it again until they are resolved"
                if monitor.autopause.enabled and stuck > monitor.autopause.max_stuck
                else ""
            )
            print(
                f"warning: {stuck} row(s) of campaign {args.campaign_id} are stuck in enviando"
                f" (outcome unknown){again}: see `envios reconcile`"
            )
        return 0


def _ids(ids: list[int]) -> str:
    return ", ".join(str(i) for i in ids)


def _list(conn) -> str:
    rows = []
    for c in campaigns.overview(conn):
        first = [c.id, shorten(c.nombre, 32), c.estado]
        if not c.schedules:
            rows.append([*first, "-", "", "", "", "", "", ""])
        for i, s in enumerate(c.schedules):
            head = first if i == 0 else ["", "", ""]
            paused = s.estado == ProgramacionEstado.PAUSADA
            rows.append(
                [
                    *head,
                    s.id,
                    s.cliente_id,
                    s.estado,
                    pause_reason_label(s.paused_reason) if paused else "",
                    s.paused_by or "" if paused else "",
                    _when(s.paused_at) if paused else "",
                    shorten(c.pause_details.get(s.id, ""), 60),
                ]
            )
    if not rows:
        return "no campaigns"
    return format_table(
        [
            "CAMPAIGN",
            "NAME",
            "ESTADO",
            "SCHEDULE",
            "CLIENTE",
            "SCHEDULE ESTADO",
            "PAUSE REASON",
            "PAUSED BY",
            "PAUSED AT",
            "WHY",
        ],
        rows,
        right=(0, 3, 4),
    )
