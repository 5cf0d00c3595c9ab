"""`envios gateway-sim` and `python -m envios.simulator`: the simulated gateway as a process.

Prints exactly one line on stdout, ``gateway-sim listening on http://HOST:PORT``,
then serves until SIGTERM or SIGINT and exits 0. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .dialects import Notifier
from .faults import SESSION_STATES, Faults, parse_latency
from .server import SimulatorServer
from .sessions import check_state

HELP = "run the simulated WhatsApp gateway (session-manager contract, ledger, fault injection)"

# flag -> Faults field, for the per-send rates
_RATE_FLAGS = {
    "error_5xx_rate": "500 WHATSAPP_ERROR (not delivered)",
    "rate_limit_rate": "429 (not delivered)",
    "slow_rate": "delivered, answered only after --slow-s",
    "garbage_rate": "delivered, answered 200 with a non-JSON body",
    "no_message_id_rate": "delivered, answered 200 without message_id",
    "drop_connection_rate": "delivered, connection closed without an answer",
    "stall_rate": "NOT delivered, connection closed without an answer after --slow-s (a timeout)",
    "session_drop_rate": "session falls to DISCONNECTED for --session-drop-s (that send is a 409)",
}


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 1, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("seconds must not be negative")
    return value


def _latency(text: str) -> tuple[float, float]:
    try:
        return parse_latency(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_sessions(text: str) -> dict[int, str]:
    """'51=READY,52=DISCONNECTED' -> {51: 'READY', 52: 'DISCONNECTED'}"""
    out: dict[int, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        cid, sep, state = item.partition("=")
        if not sep or not cid.strip().isdigit() or int(cid) <= 0:
            raise argparse.ArgumentTypeError(f"expected CLIENTE_ID=STATE, got {item!r}")
        try:
            out[int(cid)] = check_state(state.strip())
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=3002, help="port to listen on, 0 = any free one (default 3002)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="makes every fault sequence reproducible"
    )
    parser.add_argument(
        "--sessions",
        type=parse_sessions,
        default={},
        metavar="ID=STATE,...",
        help=f"initial session states, e.g. 51=READY,52=DISCONNECTED ({'|'.join(SESSION_STATES)})",
    )
    parser.add_argument(
        "--default-state",
        type=lambda s: check_state(s),
        default="READY",
        help="state of a session on first use (default READY)",
    )
    parser.add_argument(
        "--latency-ms",
        type=_latency,
        default=(0.0, 0.0),
        metavar="LOW,HIGH",
        help="extra delay per request, uniform (default 0)",
    )
    for name, meaning in _RATE_FLAGS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=_rate,
            default=0.0,
            metavar="P",
            help=f"share of sends: {meaning}",
        )
    parser.add_argument(
        "--slow-s",
        type=_seconds,
        default=Faults.slow_s,
        help="how late a slow send answers, and how long a stalled one hangs (default 3)",
    )
    parser.add_argument(
        "--session-drop-s",
        type=_seconds,
        default=Faults.session_drop_s,
        help="how long a dropped session stays down (default 5)",
    )
    parser.add_argument(
        "--refuse-for",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="close the listening socket for S seconds ...",
    )
    parser.add_argument(
        "--refuse-after",
        type=_seconds,
        default=0.0,
        metavar="T",
        help="... starting T seconds after start (default 0)",
    )
    parser.add_argument(
        "--legacy-status",
        action="store_true",
        help='answer /status with "status" instead of "state" (older builds)',
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="if set, require it in X-Api-Key, apikey or Authorization: Bearer",
    )
    parser.add_argument(
        "--webhook-url",
        default=None,
        metavar="URL",
        help="post each delivery's acknowledgements here (e.g. http://127.0.0.1:9110/webhooks/waha)",
    )
    parser.add_argument(
        "--webhook-kind",
        default="session_manager",
        choices=["session_manager", "waha", "evolution", "cloud_api"],
        help=(
            "the shape of the acknowledgements (default session_manager); WAHA, Evolution and "
            "Cloud API sends are answered in their own shapes whatever this says"
        ),
    )
    parser.add_argument("--webhook-secret", default="", help="sent as X-Webhook-Secret")
    parser.add_argument(
        "--webhook-app-secret", default="", help="Cloud API: key of X-Hub-Signature-256"
    )
    parser.add_argument(
        "--read-share",
        type=_rate,
        default=0.5,
        metavar="P",
        help="share of deliveries also acknowledged as read (default 0.5)",
    )


def faults_from_args(args: argparse.Namespace) -> Faults:
    changes = {name: getattr(args, name) for name in _RATE_FLAGS}
    changes.update(
        latency_ms=args.latency_ms,
        slow_s=args.slow_s,
        session_drop_s=args.session_drop_s,
        status_key="status" if args.legacy_status else "state",
    )
    return Faults().updated(**changes)


def run(args: argparse.Namespace, config=None) -> int:
    """Serve until SIGTERM/SIGINT. ``config`` (the envios config) is not needed."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=(getattr(args, "log_level", None) or "INFO").upper(),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        faults = faults_from_args(args)
    except ValueError as exc:
        print(f"gateway-sim: {exc}", file=sys.stderr)
        return 2
    sim = SimulatorServer(
        host=args.host,
        port=args.port,
        seed=args.seed,
        faults=faults,
        sessions=args.sessions,
        default_state=args.default_state,
        api_key=args.api_key,
    )
    try:
        sim.start()
    except OSError as exc:
        print(
            f"gateway-sim: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    print(f"gateway-sim listening on {sim.base_url}", flush=True)
    notifier = None
    if args.webhook_url:
        notifier = Notifier(
            sim.state,
            sim.dialects,
            args.webhook_url,
            args.webhook_kind,
            secret=args.webhook_secret,
            app_secret=args.webhook_app_secret,
            read_share=args.read_share,
            seed=args.seed or 1,
        ).start()

    done = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: done.set())
    refuse_timer = None
    if args.refuse_for > 0:
        refuse_timer = threading.Timer(args.refuse_after, sim.refuse_for, args=(args.refuse_for,))
        refuse_timer.daemon = True
        refuse_timer.start()
    try:
        # Short waits so the signal handler (run between bytecodes) is seen promptly.
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if refuse_timer is not None:
            refuse_timer.cancel()
        if notifier is not None:
            notifier.stop()
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
