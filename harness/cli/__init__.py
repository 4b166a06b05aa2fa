"""The ``bench`` command line: one module per command (:mod:`harness.cli.main` parses and dispatches)."""

from harness.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
