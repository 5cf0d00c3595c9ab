"""Options every subcommand (and every nested action) accepts."""

from __future__ import annotations

import argparse
from collections.abc import Callable


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


def action_parsers(
    parser: argparse.ArgumentParser, dest: str
) -> Callable[..., argparse.ArgumentParser]:
    """A command's required ACTION (`envios db upgrade`), stored in `dest`: returns
    `add(name, **kwargs)`, which adds one action that accepts the common options too."""
    actions = parser.add_subparsers(dest=dest, metavar="ACTION")
    actions.required = True

    def add(name: str, **kwargs) -> argparse.ArgumentParser:
        return actions.add_parser(name, parents=[common_options()], **kwargs)

    return add
