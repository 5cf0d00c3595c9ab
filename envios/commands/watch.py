"""`envios watch [--once]`: the watcher sidecar."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from envios.errors import EnviosError
from envios.monitor import queries as q
from envios.monitor.refresher import QUERY_NAMES
from envios.monitor.watcher import Watcher

HELP = (
    "the watcher: export gauges on /metrics (+ /healthz) and auto-pause campaigns past thresholds"
)

log = logging.getLogger("envios.watch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once",
        action="store_true",
        help="refresh once (auto-pause included), print the exposition text /metrics "
        "would serve, exit (non-zero when the database is unreachable)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind /metrics and /healthz (default 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port to bind (default monitor.port; 0 picks a free port and logs it)",
    )


def run(args: argparse.Namespace, config) -> int:
    if args.once:
        return _once(config)
    watcher = Watcher(config, host=args.host, port=args.port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    watcher.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("watcher stopping")
        watcher.stop()
    return 0


def _once(config) -> int:
    watcher = Watcher(config)
    with watcher.refresher.database.connect() as conn:  # unreachable: one line, exit 1
        if not q.schema_ready(conn):
            raise EnviosError(
                f"the schema of {watcher.refresher.database.describe()} is not upgraded:"
                " run `envios db upgrade`"
            )
    watcher.refresh(raise_unavailable=True)
    watcher.refresher.stop()
    sys.stdout.buffer.write(watcher.exposition())
    sys.stdout.flush()
    snapshot = watcher.state.snapshot
    failed = [name for name in QUERY_NAMES if snapshot is None or name not in snapshot.fresh]
    if failed:
        print(f"envios watch: queries failed or timed out: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
