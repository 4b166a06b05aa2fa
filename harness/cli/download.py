"""``bench download``: fetch what a selection needs, where the hub is reachable (the logic is in
:mod:`harness.run.download`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_parser(subparsers, selection_flags: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "download", help="fetch the checkpoints and data the selection needs (for machines without internet)",
        description="Fetch into the caches the runs read (Hugging Face cache: $HF_HOME/hub) everything the "
                    "selected models and datasets need, with resume and verification; print the manual steps "
                    "for sources a program cannot fetch. Then copy $HF_HOME to the machine without internet "
                    "and run there with HF_HUB_OFFLINE=1.")
    selection_flags(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="list the files, their sizes and where they go; fetch nothing")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from harness.cli.common import config_from_args
    from harness.plugins import process_registry
    from harness.run.download import download

    return download(config_from_args(args), process_registry(), dry_run=args.dry_run)
