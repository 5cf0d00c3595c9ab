"""Options every subcommand (and every nested action) accepts."""

from __future__ import annotations

import argparse


def common_options() -> argparse.ArgumentParser:
    """A parent parser for --config and --log-level.

    Defaults are SUPPRESS so that a nested parser (`envios db upgrade`) does not
    overwrite a value given at an outer level (`envios db --config x upgrade`).
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=(
            "config file (default: ./config.yaml if present, else built-in defaults;"
            " a named file must exist)"
        ),
    )
    parent.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (DEBUG is the legacy DIAG_SENDER; default INFO)",
    )
    return parent
