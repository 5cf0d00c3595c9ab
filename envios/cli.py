"""The `envios` console script: one parser, subcommands implemented in their own modules.

Each subcommand module exposes `HELP` (one line), `add_arguments(parser)` and
`run(args, config) -> int`. Errors an operator can act on (`EnviosError`) are
printed as one line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from envios import config as config_module
from envios.commands.common import common_options
from envios.errors import EnviosError

# subcommand -> module implementing it
COMMANDS: dict[str, str] = {
    "db": "envios.commands.db",
    "send": "envios.commands.send",
    "watch": "envios.commands.watch",
    "demo": "envios.commands.demo",
    "gateway-sim": "envios.simulator.command",
    "campaign": "envios.commands.campaign",
    "reconcile": "envios.commands.reconcile",
    "status": "envios.commands.status",
    "webhooks": "envios.commands.webhooks",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envios",
        description="WhatsApp campaign sender and Prometheus watcher sharing one database.",
        epilog=(
            "Configuration: --config PATH (default ./config.yaml; built-in defaults when that file "
            "is absent). Any key can be overridden by ENVIOS_<SECTION>_<KEY>, e.g. "
            "ENVIOS_DATABASE_URL, ENVIOS_SENDER_ENABLED=false."
        ),
    )
    common = common_options()
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(
            name, parents=[common], help=module.HELP, description=module.HELP
        )
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.config = getattr(args, "config", None)
    args.log_level = getattr(args, "log_level", "INFO")
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        config = config_module.load(args.config)
        return int(args._module.run(args, config) or 0)
    except EnviosError as exc:
        print(f"envios {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
