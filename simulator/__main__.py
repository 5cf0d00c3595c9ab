"""python -m envios.simulator [--port N] [--seed S] ...: same flags as `envios gateway-sim`."""

import argparse
import sys

from .command import HELP, add_arguments, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m envios.simulator", description=HELP)
    add_arguments(parser)
    # `envios gateway-sim` gets --log-level from the shared CLI; the module form adds its own.
    parser.add_argument(
        "--log-level", default=None, help="DEBUG shows each request (numbers masked)"
    )
    return run(parser.parse_args(argv), None)


if __name__ == "__main__":
    sys.exit(main())
