"""`envios demo`: the whole system on SQLite with the simulator, live in the terminal.

A fresh SQLite file gets two campaigns on two WhatsApp sessions and a few hundred
recipients (a handful with numbers that cannot be sent). The simulator, the
sender and the watcher run in this process, each the same code as in
production. Part-way through, session 51 drops to DISCONNECTED for a while: the
sender stops that session without inventing a send, the other session carries
on, and the work resumes when it comes back. A small share of sends answer too
late (the gateway delivered, the answer was lost): those rows stay `enviando`
with an unknown outcome, as they must, and the watcher counts them as stuck.
The simulator posts each delivery's acknowledgements (sent, delivered, often
read) to `envios webhooks`, also running here: the rows record them, and an
unknown outcome the gateway acknowledged is settled as sent, with its id, once
its send has timed out (never retried).

At the end the database is checked against the simulator's ledger: every
recipient is sent exactly once, or explained (error with its reason, or stuck).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import random
import shutil
import socket
import sys
import time
from collections import Counter
from pathlib import Path

from envios.clock import Clock
from envios.domain import FINISHED, CampaniaEstado, Estado, Origin, ProgramacionEstado, stuck_cutoff
from envios.monitor import queries as watcher_queries
from envios.monitor.watcher import Watcher
from envios.phones import normalise
from envios.sender.loop import Sender
from envios.sender.webhooks import WebhookApp, serve
from envios.simulator.dialects import Notifier
from envios.simulator.server import SimulatorServer
from envios.store import schema, seeding
from envios.store.connector import Database
from envios.store.sql import by_value

SESSIONS = (51, 52)
CAMPAIGNS = {1: ("Demo – Reactivación", 51), 2: ("Demo – Promo otoño", 52)}
TEMPLATE = "Hola {nombre}, ¿seguimos en contacto?"
NAMES = ("Ana", "Bruno", "Carla", "Diego", "Elena", "Fede", "Gabi", "Hugo", "Inés", "Juan", None)


@dataclasses.dataclass(frozen=True)
class Speed:
    delay_s: tuple[float, float]  # pacing between two sends of one session
    send_timeout_s: float
    slow_s: float  # a "slow" send answers after this, past the timeout
    drop_s: float  # how long session 51 stays down
    stuck_after_s: float


SPEEDS = {
    "fast": Speed((0.005, 0.02), 0.5, 0.8, 3.0, 2.0),
    "normal": Speed((0.1, 0.3), 1.0, 1.5, 8.0, 5.0),
    "slow": Speed((0.5, 1.5), 2.0, 3.0, 15.0, 10.0),
}
FAULTS = {"error_5xx_rate": 0.02, "slow_rate": 0.01, "latency_ms": (2.0, 10.0)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_database(database: Database, clock: Clock, rows: int, rng: random.Random) -> int:
    """Schema, two campaigns with an always-open schedule each, `rows` recipients."""
    with database.connect() as conn:
        schema.upgrade(conn, clock.now())
        today = clock.today()
        with conn.transaction():
            for campania_id, (name, cliente_id) in CAMPAIGNS.items():
                conn.execute(
                    seeding.CAMPAIGN,
                    {
                        "campania_id": campania_id,
                        "nombre": name,
                        "mensaje": TEMPLATE,
                        "estado": CampaniaEstado.EN_PROGRESO,
                        "cliente_id": cliente_id,
                    },
                )
                conn.execute(
                    seeding.SCHEDULE,
                    {
                        "campania_id": campania_id,
                        "cliente_id": cliente_id,
                        "hora_inicio": dt.time(0, 0),
                        "hora_fin": dt.time(23, 59, 59),
                        "cupo_diario": rows,
                        "fecha_inicio": today,
                        "estado": ProgramacionEstado.APROBADA,
                    },
                )
            for i in range(rows):
                campania_id = 1 + i % len(CAMPAIGNS)
                phone = f"54911{40000000 + i:08d}"
                if i % 37 == 5:
                    # no number, too short, not a number, an impossible one (unique per row)
                    phone = [None, f"{i:03d}", f"sin número {i}", f"+54 9 {i}"][(i // 37) % 4]
                elif i % 11 == 3:  # as production has them: spaces, dashes, +54 9
                    phone = f"+54 9 11 {4000 + i // 10000:04d}-{i % 10000:04d}"
                conn.execute(
                    seeding.RECIPIENT,
                    {
                        "campania_id": campania_id,
                        "telefono_wapp": phone,
                        "nombre_destino": rng.choice(NAMES),
                        "mensaje_final": TEMPLATE,
                    },
                )
    return rows


@dataclasses.dataclass
class Progress:
    by_state: Counter
    stuck: int
    acks: watcher_queries.Delivery | None = None
    settled: int = 0  # unknown outcomes settled by the gateway's acknowledgement
    settling: int = 0  # unknown outcomes acknowledged, settled once their send has timed out

    @property
    def open_work(self) -> int:
        s = self.by_state
        return s[Estado.PENDIENTE.value] + s[Estado.ENVIANDO.value] - self.stuck + self.settling


def read_progress(conn, clock: Clock, stuck_after_s: float) -> dict[int, Progress]:
    ids = list(CAMPAIGNS)
    counts = watcher_queries.messages(conn, ids)
    stuck = watcher_queries.stuck(conn, stuck_cutoff(clock.now(), stuck_after_s))
    acks = watcher_queries.delivery(conn, ids)
    settled = watcher_queries.settled_unknowns(conn, ids)
    settling = {
        int(r["campania_id"]): int(r["n"])
        for r in conn.query(seeding.SETTLING, by_value(Estado.ENVIANDO))
    }
    return {
        cid: Progress(
            Counter(counts[cid]),
            stuck[cid].count if cid in stuck else 0,
            acks[cid],
            settled[cid]["evidence"],
            settling.get(cid, 0),
        )
        for cid in ids
    }


def progress_line(elapsed: float, progress: dict[int, Progress], sim: SimulatorServer) -> str:
    parts = [f"{elapsed:5.1f}s"]
    for cid, p in progress.items():
        s = p.by_state
        acked = f" delivered {p.acks.delivered:>3} read {p.acks.read:>3}" if p.acks else ""
        sent, pending, errors = (s[e] for e in (Estado.ENVIADO, Estado.PENDIENTE, Estado.ERROR))
        parts.append(
            f"campaign {cid}: sent {sent:>3} pending {pending:>3} "
            f"errors {errors:>2} stuck {p.stuck:>2}{acked} settled {p.settled:>2}"
        )
    sessions = " ".join(f"{c}={sim.state.session_state(c)}" for c in SESSIONS)
    parts.append(f"sessions {sessions}")
    return " | ".join(parts)


@dataclasses.dataclass
class Verdict:
    recipients: int
    sent: int
    delivered: int
    read: int
    settled: int
    errors: Counter
    stuck: int
    stuck_delivered: int
    pending: int
    duplicates: int
    sent_not_in_ledger: int
    ledger_unexplained: int

    @property
    def consistent(self) -> bool:
        return not (self.duplicates or self.sent_not_in_ledger or self.ledger_unexplained)


def verify(conn, ledger: list[dict]) -> Verdict:
    """The database against what the gateway actually delivered."""
    rows = conn.query(seeding.OUTCOMES)
    by_id = Counter(e["message_id"] for e in ledger)
    by_to = Counter(e["to"] for e in ledger)
    sent = [r for r in rows if r["estado"] == Estado.ENVIADO]
    stuck = [r for r in rows if r["estado"] == Estado.ENVIANDO]
    explained_tos = {normalise(r["telefono_wapp"]) for r in sent + stuck}
    return Verdict(
        recipients=len(rows),
        sent=len(sent),
        delivered=sum(1 for r in sent if r["delivery_status"] in ("delivered", "read")),
        read=sum(1 for r in sent if r["delivery_status"] == "read"),
        settled=int(conn.scalar(seeding.SETTLED_BY, {"origin": Origin.EVIDENCE.value}) or 0),
        errors=Counter(_reason(r["last_error"]) for r in rows if r["estado"] == Estado.ERROR),
        stuck=len(stuck),
        stuck_delivered=sum(1 for r in stuck if by_to[normalise(r["telefono_wapp"])]),
        pending=sum(1 for r in rows if r["estado"] == Estado.PENDIENTE),
        duplicates=sum(n - 1 for n in by_to.values() if n > 1),
        sent_not_in_ledger=sum(1 for r in sent if by_id[r["message_id"]] != 1),
        ledger_unexplained=sum(1 for e in ledger if e["to"] not in explained_tos),
    )


def _reason(last_error: str | None) -> str:
    """'impossible phone number (**9116)' -> 'impossible phone number': group by kind."""
    return (last_error or "error").split(" (")[0].split(":")[0]


def summary(v: Verdict, seconds: float, drop_s: float, drop: dict, metrics_url: str) -> str:
    errors = ", ".join(f"{n} {why}" for why, n in v.errors.most_common()) or "none"
    text = (
        f"{v.recipients} recipients in {seconds:.1f}s: {v.sent} sent, each exactly once in the "
        f"gateway's ledger with its message id; acknowledged by the gateway: {v.delivered} "
        f"delivered, {v.read} read; {v.settled} unknown outcomes settled by the gateway's "
        f"acknowledgement (sent, with its id, never retried); {sum(v.errors.values())} "
        f"rejected before sending ({errors}); "
        f"{v.stuck} stuck in 'enviando' with an unknown outcome (the gateway answered too late; "
        f"{v.stuck_delivered} of them did deliver) — never retried, listed by "
        f"`envios reconcile list`; "
        f"{v.pending} still pending. While session 51 was DISCONNECTED for {drop_s:g}s the sender "
        f"stopped its work: {drop['delivered_during']} deliveries for it, {drop['refused_during']} "
        f"attempts refused with 409, and no row marked sent without a delivery. "
        f"Duplicates: {v.duplicates}. The watcher served {metrics_url}/metrics."
    )
    if not v.consistent:
        text += (
            f" INCONSISTENT: {v.sent_not_in_ledger} sent rows not in the ledger exactly once, "
            f"{v.ledger_unexplained} deliveries no row explains."
        )
    return text


def run_demo(
    config, *, db_path: Path, rows: int, duration_s: float, speed_name: str, out=sys.stdout
) -> int:
    speed = SPEEDS[speed_name]
    if logging.getLogger().level > logging.DEBUG:
        # The progress lines are the show; warnings (unknown outcomes) still print.
        logging.getLogger().setLevel(logging.WARNING)
    rng = random.Random(7)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    # The sender's journal beside the database, as a deployment keeps it; an earlier
    # demo's journal speaks of a database just replaced, so it goes with it.
    journal_dir = Path(f"{db_path}.journal")
    shutil.rmtree(journal_dir, ignore_errors=True)
    sim = SimulatorServer(host="127.0.0.1", port=0, seed=7).start()
    sim.state.set_faults(**FAULTS, slow_s=speed.slow_s)
    hook_secret = "demo-webhook-secret"
    cfg = config.with_overrides(
        {
            "database.url": f"sqlite:///{db_path}",
            "gateway.kind": "simulator",
            "gateway.base_url": sim.base_url,
            "gateway.api_key": "",
            "gateway.send_timeout_s": speed.send_timeout_s,
            "gateway.status_timeout_s": 1.0,
            "sender.enabled": True,
            "sender.tick_s": 0.5,
            "sender.delay_min_s": speed.delay_s[0],
            "sender.delay_max_s": speed.delay_s[1],
            "sender.lease_ttl_s": 10.0,
            "sender.retry_after_s": 1.0,
            "sender.journal_dir": str(journal_dir),
            "sender.metrics_port": free_port(),
            "monitor.port": free_port(),
            "monitor.refresh_s": 1.0,
            "monitor.stuck_after_s": speed.stuck_after_s,
            "webhooks.secret": hook_secret,
        }
    )
    clock = Clock(cfg.tz)
    database = Database(cfg.database.url)
    seed_database(database, clock, rows, rng)
    watcher = Watcher(cfg, port=cfg.monitor.port).start()
    hooks = WebhookApp.from_config(cfg, database=database, clock=clock)
    hook_server = serve(hooks, "127.0.0.1", 0)
    hook_url = f"{hook_server.url}/webhooks/session_manager"
    notifier = Notifier(
        sim.state,
        sim.dialects,
        hook_url,
        "session_manager",
        secret=hook_secret,
        read_share=0.6,
        seed=7,
    ).start()
    sender = Sender(cfg, database=database)
    sender_metrics_port = sender.metrics.serve(int(cfg.sender.metrics_port))
    print(
        f"envios demo: {rows} recipients in {db_path}, gateway simulator at {sim.base_url}",
        file=out,
    )
    print(
        f"watcher metrics: {watcher.url}/metrics (health {watcher.url}/healthz); "
        f"sender metrics: http://127.0.0.1:{sender_metrics_port}/metrics; "
        f"acknowledgements: {hook_url}",
        file=out,
    )
    sender.start()

    started = time.monotonic()
    drop = {"at": None, "delivered_during": 0, "refused_during": 0}
    quiet_since = None
    try:
        with database.connect() as conn:
            while time.monotonic() - started < duration_s:
                time.sleep(0.5)
                progress = read_progress(conn, clock, speed.stuck_after_s)
                finished = sum(p.by_state[e] for p in progress.values() for e in FINISHED)
                if drop["at"] is None and finished >= rows // 3:
                    drop["at"] = time.monotonic()
                    drop["wall"] = time.time()
                    drop["refused_before"] = sim.state.stats()["outcomes"].get("not_ready", 0)
                    sim.state.set_session(51, "DISCONNECTED", for_s=speed.drop_s)
                    print(f"-- session 51 drops to DISCONNECTED for {speed.drop_s:g}s --", file=out)
                elif (
                    drop["at"] is not None
                    and "after" not in drop
                    and time.monotonic() - drop["at"] >= speed.drop_s
                ):
                    drop["after"] = True
                    # A send already in flight when the session dropped may still land:
                    # count deliveries from one second after the drop on.
                    drop["delivered_during"] = sum(
                        1
                        for e in sim.state.ledger_for(cliente_id=51)
                        if drop["wall"] + 1 <= e["time"] <= drop["wall"] + speed.drop_s
                    )
                    drop["refused_during"] = (
                        sim.state.stats()["outcomes"].get("not_ready", 0) - drop["refused_before"]
                    )
                    print("-- session 51 is READY again: its work resumes --", file=out)
                settled_now = sum(p.settled for p in progress.values())
                if settled_now > drop.get("settled_seen", 0):
                    print(
                        f"-- {settled_now - drop.get('settled_seen', 0)} unknown outcome(s) settled"
                        " as sent by the gateway's acknowledgement (with its message id;"
                        " never retried) --",
                        file=out,
                    )
                    drop["settled_seen"] = settled_now
                print(
                    progress_line(time.monotonic() - started, progress, sim), file=out, flush=True
                )
                if "after" in drop and sum(p.open_work for p in progress.values()) == 0:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= 1.0:
                        break
                else:
                    quiet_since = None
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the sender cleanly", file=out)
    finally:
        sender.stop(timeout=speed.send_timeout_s + 5)
        sender.close()
        watcher.stop()
        notifier.flush()
        notifier.stop()
        hook_server.stop()
        hooks.close()
        ledger = sim.state.ledger
        sim.stop()
    Path(f"{db_path}.ledger.json").write_text(json.dumps(ledger, default=str, indent=0))
    with database.connect() as conn:
        verdict = verify(conn, ledger)
    print("", file=out)
    print(
        summary(verdict, time.monotonic() - started, speed.drop_s, drop, watcher_url(cfg)), file=out
    )
    print(
        f"database: {db_path}"
        f" (inspect with: ENVIOS_DATABASE_URL=sqlite:///{db_path} envios status); "
        f"gateway ledger: {db_path}.ledger.json; sender journal: {journal_dir}/",
        file=out,
    )
    return 0 if verdict.consistent else 1


def watcher_url(cfg) -> str:
    return f"http://127.0.0.1:{cfg.monitor.port}"
