"""``bench init``: write bench's default configuration, commented, as ./bench.toml to edit."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import BenchError
from harness.plan.config import DEFAULT_CONFIG, PACKAGED_CONFIG


def add_parser(sub) -> None:
    init = sub.add_parser("init", help="write the default configuration (the documented default study, commented) "
                                       "as bench.toml here, to edit")
    init.add_argument("path", nargs="?", default=DEFAULT_CONFIG, help="where to write it (default: ./bench.toml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = Path(args.path)
    if target.is_dir():
        target = target / DEFAULT_CONFIG
    if target.exists() and not args.force:
        raise BenchError(f"{target} exists already", "edit it, or pass --force to overwrite it with the default")
    target.write_text(PACKAGED_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    print(f"wrote {target}: the default study (preset tiny-study) and the other presets, commented; "
          "`bench run --dry-run` shows what it plans")
    return 0
