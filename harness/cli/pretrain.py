"""``bench pretrain``: Pre-train the selected models that are made here, unless cached."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from tabulate import tabulate

from harness.cli.common import config_from_args, selection_flags
from harness.plugins import process_registry


def add_parser(sub) -> None:
    pretrain = sub.add_parser("pretrain", help="pre-train the selected models that are made here "
                                                "(tiny-phone-*, tiny-ssl-*), unless already in the cache")
    selection_flags(pretrain)
    pretrain.add_argument("--force", action="store_true", help="pre-train again even when cached")
    pretrain.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")
    pretrain.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.run.prepare_models import prepare_context
    from harness.run.progress import Progress
    from harness.run.runner import resolve_models

    config = config_from_args(args)
    registry = process_registry()
    specs = [(reg.spec, options) for reg, options in resolve_models(config, registry).values()
             if reg.spec.prepare is not None]
    if not specs:
        made_here = sorted(name for name, reg in registry.models.items() if reg.spec.prepare is not None)
        print(f"none of the selected models ({', '.join(config.models)}) is made here; models pre-trained here: "
              f"{', '.join(made_here) or 'none'} (and phone:LANG+LANG..., ssl:LANG+LANG...)")
        return 0
    from harness.run.runner import check_runtime

    check_runtime(config, registry, here=True)  # the device and precision it would pre-train with
    progress = Progress(len(specs), enabled=None if not args.no_progress else False, desc="pretrain", unit="model",
                        heartbeat_seconds=config.heartbeat_seconds)
    context = prepare_context(config, registry, progress, force=args.force)
    rows = []
    try:
        for spec, options in specs:
            progress.start_cell(spec.name)
            with progress.activity(f"preparing model {spec.name}"):
                facts = spec.prepare(dataclasses.replace(context, options=dict(options)))
            recipe = facts.get("recipe", {})
            rows.append([spec.name, facts.get("kind", ""), "+".join(recipe.get("languages", [])), recipe.get("steps"),
                         facts.get("summary", ""),
                         f"{facts.get('seconds', 0):.0f} s" + ("" if facts.get("prepared_now") else " (cached)"),
                         facts.get("path")])
            progress.finish_cell(f"ready {spec.name}: {facts.get('path')}")
    except KeyboardInterrupt:
        progress.close()
        print("\ninterrupted: models finished before are in the cache, nothing half-written is left; run the "
              "same command again to continue.", file=sys.stderr)
        return 130
    finally:
        progress.close()
    print(tabulate(rows, headers=["model", "kind", "languages", "updates", "result", "took", "checkpoint"]))
    return 0



