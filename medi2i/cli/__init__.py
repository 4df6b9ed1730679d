"""The ``medi2i`` command line.

Each subcommand lives in its own module under ``medi2i.cli`` and exposes two functions:
``add_parser(subparsers)`` (registers its ``argparse`` parser, with help text) and
``run(args) -> int`` (does the work, returns the exit code). Bad user input surfaces as a
:class:`~medi2i.errors.Medi2iInputError`; :func:`main` prints it as one line on stderr and
exits with code 2, no traceback. Nothing is written before the inputs are validated.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from medi2i import __version__
from medi2i.errors import Medi2iInputError

# subcommand name -> module under medi2i.cli (imported only when that subcommand runs or --help is built)
SUBCOMMANDS: dict[str, str] = {
    "demo-data": "medi2i.cli.demo_data",
    "check": "medi2i.cli.check",
    "manifest": "medi2i.cli.manifest",
    "evaluate": "medi2i.cli.evaluate",
    "qa": "medi2i.cli.qa",
    "register": "medi2i.cli.register",
    "synthesize": "medi2i.cli.synthesize",
    "translate": "medi2i.cli.translate",
    "stylize": "medi2i.cli.stylize",
}

EXIT_INPUT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="medi2i",
        description="Medical image-to-image translation and deformable registration (MONAI-based).",
    )
    parser.add_argument("--version", action="version", version=f"medi2i {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medi2i`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except Medi2iInputError as err:
        print(f"medi2i {args.command}: error: {err}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print(f"medi2i {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``medi2i ... | head``): stop quietly, as Unix tools do; point stdout at
        # devnull so the interpreter's final flush does not raise a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
