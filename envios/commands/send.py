"""`envios send [--once]`: the sender loop (DESIGN.md sections 3 and 4)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from envios import config as config_module
from envios.errors import EnviosError
from envios.logfmt import kv
from envios.sender.gateways.base import Outcome
from envios.sender.killswitch import KillSwitch
from envios.sender.loop import Sender

HELP = "the sender loop: claim, send, record (runs until SIGTERM)"

log = logging.getLogger("envios.sender")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once",
        action="store_true",
        help=(
            "one pass over all eligible work (every eligible session worked until its queue is "
            "empty, its quota is used or it stops for a session-level problem), then exit"
        ),
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="ADDR",
        help=(
            "address for /metrics on sender.metrics_port"
            " (default 127.0.0.1; 0.0.0.0 in a container)"
        ),
    )
    parser.epilog = (
        "Kill switch: sender.enabled in the config file (re-read while running) or "
        "ENVIOS_SENDER_ENABLED=false. Debug logging: --log-level DEBUG or DIAG_SENDER=1. "
        "SIGTERM/SIGINT: stop claiming, finish the in-flight send, release the session leases; a "
        "second signal exits at once."
    )


def _debug_switch(args) -> None:
    """DIAG_SENDER=1 (the legacy switch) = --log-level DEBUG for the sender's own loggers."""
    if os.environ.get("DIAG_SENDER", "").strip().lower() in ("1", "true", "yes", "on"):
        logging.getLogger("envios").setLevel(logging.DEBUG)


def _install_signals(sender: Sender) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    hits = {"n": 0}

    def handler(signum, _frame):
        hits["n"] += 1
        name = signal.Signals(signum).name
        if hits["n"] == 1:
            log.warning(
                kv(
                    "stop_requested",
                    signal=name,
                    sender=sender.sender_id,
                    detail="no new claims; finishing the in-flight sends",
                )
            )
            sender.request_stop()
        else:
            log.error(
                kv(
                    "forced_exit",
                    signal=name,
                    sender=sender.sender_id,
                    detail=(
                        "in-flight rows stay enviando (envios reconcile);"
                        " leases expire by themselves"
                    ),
                )
            )
            os._exit(130)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run(args: argparse.Namespace, config) -> int:
    _debug_switch(args)
    switch = KillSwitch(args.config, initial=bool(config.sender.enabled))
    sender = Sender(config, kill_switch=switch)
    _install_signals(sender)
    try:
        sender.check()
        port = sender.metrics.serve(int(config.sender.metrics_port), addr=args.metrics_host)
        if port:
            log.info(kv("metrics", url=f"http://{args.metrics_host}:{port}/metrics"))
        if args.once:
            report = sender.run_once()
            if report.disabled:
                print(
                    f"envios send: sending is disabled ({switch.reason}); nothing sent",
                    file=sys.stderr,
                )
                return 0
            if report.gateway_stopped:
                raise EnviosError(
                    f"gateway {config.gateway.base_url}: {report.gateway_stopped}; "
                    "nothing is sent through it (is it the whatsapp-web.js build?)"
                )
            _account_blocked(report, config)
            unreachable = report.unreachable_sessions
            if unreachable and len(unreachable) == len(report.sessions_worked):
                raise EnviosError(
                    f"gateway {config.gateway.base_url} unreachable: "
                    f"{len(unreachable)} session(s) not worked"
                )
            print(f"envios send --once: {report.summary()}")
            failed = {
                cliente_id: r.stop_reason
                for cliente_id, r in report.sessions_worked.items()
                if r.failed
            }
            if failed:  # rows of these sessions may be left enviando: say so, exit non-zero
                raise EnviosError(
                    f"{len(failed)} session worker(s) failed: "
                    + "; ".join(
                        f"session {cliente_id}: {why}" for cliente_id, why in sorted(failed.items())
                    )
                )
            return 0
        _account_blocked(sender.run_forever(), config)
        return 0
    finally:
        sender.close()


def _account_blocked(report, config) -> None:
    """The gateway refused the account itself (Cloud API token expired, account restricted):
    exit non-zero."""
    if report.outcomes.get(Outcome.ACCOUNT_BLOCKED):
        raise EnviosError(
            f"gateway {config.gateway.kind} refused the account (expired token or restriction): "
            "every session stopped, rows went back to pendiente; fix the account and start again"
        )


__all__ = ["HELP", "add_arguments", "run", "config_module"]
