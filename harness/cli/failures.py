"""``bench failures``: The failed cells of a selection with their errors."""

from __future__ import annotations

import argparse


from harness.cli.common import config_from_args, existing_store, selection_flags
from harness.plugins import process_registry


def add_parser(sub) -> None:
    failures = sub.add_parser("failures", help="show the failed cells of the configured selection with their errors")
    selection_flags(failures)
    failures.add_argument("--all", action="store_true", help="every failure in the store, whatever the selection")
    failures.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    keys = None
    if not args.all:  # only the failures of the configured matrix's cells
        from harness.run.runner import plan_run

        keys = [c.key for c in plan_run(config, process_registry()).cells]
    with existing_store(config) as store:
        failed = store.failures(keys)
        others = 0 if keys is None else len(store.failures()) - len(failed)
    if not failed:
        print(f"no failed cells {'in' if keys is None else 'of the configured selection in'} {config.store}"
              + (f" ({others} other failure(s) outside it: `bench failures --all` shows them)" if others else ""))
        return 0
    for f in failed:
        print(f"== {f.model} {f.dataset}:{f.language} seed {f.seed} [{f.kind}, attempt {f.attempts}, key {f.key}]")
        print(f.message)
        if f.detail:
            print(f.detail.rstrip())
        print()
    if others:
        print(f"({others} other failure(s) outside the configured selection: `bench failures --all` shows them)")
    return 0



