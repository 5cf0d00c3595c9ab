"""`envios webhooks`: receive the gateways' delivery acknowledgements (DESIGN.md section 11)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from envios.errors import DatabaseError, EnviosError
from envios.logfmt import kv
from envios.sender.webhooks import WebhookApp, serve
from envios.store import schema
from envios.store.connector import Database

HELP = (
    "receive delivery acknowledgements (session manager, WAHA, Evolution, Cloud API)"
    " on webhooks.host:port"
)

log = logging.getLogger("envios.webhooks")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default=None, metavar="ADDR", help="listen address (default webhooks.host)"
    )
    parser.add_argument(
        "--port", type=int, default=None, metavar="N", help="listen port (default webhooks.port)"
    )
    parser.epilog = (
        "POST /webhooks/{session_manager|waha|evolution|cloud_api}; GET /webhooks/cloud_api is "
        "Meta's verification handshake; GET /metrics. Secrets: webhooks.secret (X-Webhook-Secret "
        "or ?secret=), webhooks.app_secret (X-Hub-Signature-256), webhooks.verify_token."
    )


def run(args: argparse.Namespace, config) -> int:
    w = config.webhooks
    if not (w.secret or w.app_secret):
        raise EnviosError(
            "config keys webhooks.secret and webhooks.app_secret are both empty: "
            "every acknowledgement would be refused; set at least one"
        )
    database = Database(config.database.url)
    with database.connect() as conn:
        if not schema.ready_for(schema.Process.WEBHOOKS, conn):
            raise DatabaseError(
                f"{database.describe()}: schema not upgraded: run `envios db upgrade`"
            )
    app = WebhookApp.from_config(config, database=database)
    host, port = args.host or w.host, w.port if args.port is None else args.port
    try:
        server = serve(app, host, port)
    except OSError as exc:
        app.close()
        raise EnviosError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    log.info(kv("webhooks_listening", url=f"{server.url}/webhooks/"))
    done = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
    try:
        while not done.wait(0.5):  # short waits: the signal handler runs promptly
            pass
    finally:
        server.stop()
        app.close()
        log.info(kv("webhooks_stopped", detail="acknowledgements no longer received"))
    return 0
