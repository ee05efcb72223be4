"""What the command modules share: argument types that refuse out-of-range numbers at parse
time (one line, exit 2) and the making of a command's parser."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["add_command", "add_command_group", "non_negative_int", "positive_int"]


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def add_command(
    subparsers: argparse._SubParsersAction, name: str, doc: str | None, help: str
) -> argparse.ArgumentParser:
    """The parser of ``segrefiner <name>``: ``help`` in the command list, the command module's
    docstring ``doc`` as its description, kept as written."""
    return subparsers.add_parser(
        name, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_command_group(
    subparsers: argparse._SubParsersAction,
    name: str,
    doc: str | None,
    help: str,
    *,
    dest: str,
    metavar: str,
) -> argparse._SubParsersAction:
    """A command of sub-commands (:func:`add_command`); given none it prints its help and
    exits 2. Returns the action the sub-commands are added to."""
    parser = add_command(subparsers, name, doc, help)
    parser.set_defaults(func=lambda args: _usage(parser))
    return parser.add_subparsers(dest=dest, metavar=metavar)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
