"""The ``bench`` command line: one module per command (``harness/cli/<command>.py``, each with
``add_parser(subparsers)`` and ``run(args)``); this module builds the parser and runs a command,
printing a user error as one ``error:`` line and one ``hint:`` line (exit 2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness import __version__
from harness.cli import compare, download, export, failures, init, listing, merge, pretrain, report, run
from harness.cli.common import selection_flags
from harness.errors import BenchError

#: the commands in the order ``bench --help`` lists them
COMMANDS = (run, listing, init, pretrain, download, failures, report, export, compare, merge)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="bench: how well pre-trained speech models "
                                     "transfer to other languages (docs/commands.md)")
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        if command is download:
            command.add_parser(sub, selection_flags)
        else:
            command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
