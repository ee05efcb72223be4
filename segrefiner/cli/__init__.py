"""Command line: ``segrefiner <command> ...`` (also ``python -m segrefiner``).

Each sub-command lives in its own module exposing ``register(subparsers)``; it sets
``func`` on its parser, a callable taking the parsed namespace and returning an exit code.
Errors the library raises on purpose (:class:`SegRefinerError`) print one line and exit 2;
any other exception prints one line naming its type and exits 1 (``SEGREFINER_TRACEBACK=1``
shows the traceback instead).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import entry_points

from segrefiner import __version__
from segrefiner.errors import SegRefinerError

TRACEBACK_ENV = "SEGREFINER_TRACEBACK"

# Sub-command modules, in the order `--help` lists them.
COMMAND_MODULES = [
    "segrefiner.cli.refine",
    "segrefiner.cli.data",
    "segrefiner.cli.train",
    "segrefiner.cli.eval",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segrefiner",
        description="Segmentation refinement with a discrete diffusion model (SegRefiner).",
    )
    parser.add_argument("--version", action="version", version=f"segrefiner {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    # Commands of the pipeline/orchestration layers register as entry points, so the library
    # never imports those layers; without them installed the library commands still work.
    for entry in sorted(entry_points(group="segrefiner.commands"), key=lambda e: e.name):
        try:
            register = entry.load()
        except ImportError:
            continue
        register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SegRefinerError as exc:
        print(f"segrefiner {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"segrefiner {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # unforeseen: one line, the traceback when asked for
        if os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0"):
            raise
        print(
            f"segrefiner {args.command}: error: {type(exc).__name__}: {exc} (unexpected; "
            f"{TRACEBACK_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
