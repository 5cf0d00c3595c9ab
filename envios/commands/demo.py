"""`envios demo`: everything on SQLite with the simulator, live in the terminal."""

from __future__ import annotations

import argparse
from pathlib import Path

from envios.errors import ConfigError

HELP = "everything on SQLite with the simulator: a live demo in the terminal (loopback only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="stop after this long even if work remains (default 120)",
    )
    parser.add_argument(
        "--rows", type=int, default=300, metavar="N", help="recipients to create (default 300)"
    )
    parser.add_argument(
        "--speed",
        choices=["fast", "normal", "slow"],
        default="normal",
        help="pacing and fault timings (default normal; fast finishes 300 rows in seconds)",
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=Path("envios-demo.db"),
        metavar="PATH",
        help="SQLite file to create, replacing any earlier demo file (default ./envios-demo.db)",
    )


def run(args: argparse.Namespace, config) -> int:
    from envios.demo import run_demo  # imports the simulator and watcher only when asked

    if args.rows < 10:
        raise ConfigError("--rows: at least 10 recipients")
    if args.duration <= 0:
        raise ConfigError("--duration: must be positive")
    return run_demo(
        config, db_path=args.db, rows=args.rows, duration_s=args.duration, speed_name=args.speed
    )
