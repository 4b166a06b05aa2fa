"""``bench run``: Plan the matrix, check every input, and compute the cells not yet stored."""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

from harness.cli.common import (chosen_cells, config_from_args, decoded, decoders_of, other_decoders, print_matrix,
                                scored, selection_flags)
from harness.errors import BenchError
from harness.plan.config import runtime_fingerprint
from harness.plugins import process_registry


def add_parser(sub) -> None:
    parser = sub.add_parser("run", help="fine-tune and evaluate every cell of the matrix not yet stored")
    selection_flags(parser)
    parser.add_argument("--dry-run", action="store_true", help="list the cells and whether they are stored")
    parser.add_argument("--no-progress", action="store_true",
                        help="no live matrix or bars: one line per cell, and a heartbeat line every "
                             "run.heartbeat_seconds without one")
    parser.add_argument("--executor", help="where cells are computed: local (default), ray, slurm, or a plugin's")
    parser.add_argument("--retry-failed", action="store_true", help="compute again the cells that failed before")
    parser.add_argument("--keep-going", action="store_true",
                     help="when some models or languages cannot be used (missing files), compute the others and "
                          "record their cells as failed instead of stopping before any cell")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.run.progress import Progress
    from harness.run.runner import execute, plan_run
    from harness.run.signals import exit_code, signal_name, terminate_as_interrupt
    from harness.store.results import ResultStore

    config = config_from_args(args)
    registry = process_registry()
    plan = plan_run(config, registry)
    if other_decoders(config):
        decoders_of(config)  # an unknown decoder or a missing package stops the run before any cell
    if args.dry_run:  # creates nothing: no store, no cache
        done: set[str] = set()
        failed: set[str] = set()
        if config.store.exists():
            with ResultStore(config.store, readonly=True) as store:
                done = store.done_keys(c.key for c in plan.cells)
                runtime = runtime_fingerprint(config)  # failures under another runtime are computed again
                failed = {f.key for f in store.failures(c.key for c in plan.cells) if f.runtime in ("", runtime)}
        from harness.plan.sweep import config_at, format_value

        axes = [axis.key for axis in plan.sweep]
        rows = [[c.cell.model, c.cell.dataset, c.cell.language, c.cell.seed, c.cell.protocol,
                 *(format_value(v) for _, v in c.point),
                 "stored" if c.key in done else ("failed" if c.key in failed else "to compute"), c.key]
                for c in plan.cells]
        print(tabulate(rows, headers=["model", "dataset", "language", "seed", "protocol", *axes, "state", "key"],
                       disable_numparse=True))
        print(f"\n{len(plan.cells)} cells, {len(done)} stored, {len(plan.cells) - len(done)} to compute "
              f"(preset {config.preset}, {config.train.steps} updates each; store {config.store})")
        if plan.sweep:
            npoints = len({c.point for c in plan.cells})
            print("swept: " + "; ".join(f"{a.key} over {a.grid()} ({len(a.values)} values)" for a in plan.sweep)
                  + f": {npoints} point(s), each a full matrix; reports keep the value best on dev "
                  + ("(data amounts are kept apart as regimes)" if any(a.is_data_amount for a in plan.sweep) else ""))
        from harness.plan.cost import plan_cost

        by_recipe: dict[tuple, list] = {}  # a swept recipe (steps, batch) costs per its own values
        for c in plan.cells:
            if c.key not in done:
                train = config_at(config, c.point).train if c.point else config.train
                by_recipe.setdefault((train.steps, train.batch_seconds * train.grad_accum), []).append(c)
        for (steps, update_seconds), pending in by_recipe.items():
            estimate = plan_cost(pending, steps, update_seconds, config.cache_dir)
            if estimate.cells:
                if len(by_recipe) > 1:
                    print(f"\n{len(pending)} cell(s) of {steps} updates, {update_seconds:g} s per update:")
                print("\n" + "\n".join(estimate.lines(steps, update_seconds)))
        # every check a real run makes before its first cell, so that "to compute" means the run starts
        from harness.run.runner import check_runtime
        from harness.run.runner import check_inputs, inputs_error
        from harness.store.results import check_store_path

        check_store_path(config.store)
        check_runtime(config, registry)
        problems = check_inputs([c for c in plan.cells if c.key not in done], config)  # as a run checks them
        if problems:
            missing = inputs_error(problems)
            if not args.keep_going:
                print("", file=sys.stderr)
                raise missing
            print(f"\nwarning: with --keep-going these cells would be recorded as failed: {missing.message}"
                  f"\n  hint: {missing.hint}", file=sys.stderr)
        return 0
    from harness.run.runner import check_runtime

    check_runtime(config, registry)  # before the store is made (execute checks again, pre-training included)
    with ResultStore(config.store) as store:
        done = store.done_keys(c.key for c in plan.cells)
        progress = Progress(len(plan.cells) - len(done), enabled=None if not args.no_progress else False,
                            heartbeat_seconds=config.heartbeat_seconds)
        try:
            with terminate_as_interrupt():  # SIGTERM (Slurm preemption, docker stop, kill) like Ctrl-C
                summary = execute(plan, config, store, progress, registry, retry_failed=args.retry_failed,
                                  keep_going=args.keep_going)
        except KeyboardInterrupt as exc:
            progress.close()
            stored = len(store.done_keys(c.key for c in plan.cells))
            checkpoints = config.cache_dir / "checkpoints"
            print(f"\ninterrupted ({signal_name(exc)}): {stored - len(done)} cell(s) finished in this run; "
                  f"{stored} of the {len(plan.cells)} planned cells are stored in {config.store}. A cell under way "
                  f"keeps its in-cell checkpoint in {checkpoints}, from which the next run resumes it. "
                  "Run the same command again to continue.", file=sys.stderr)
            return exit_code(exc)
        except BenchError:
            progress.close()
            finished = len(store.done_keys(c.key for c in plan.cells)) - len(done)
            if finished:
                print(f"the {finished} cell(s) finished before this error are stored; fix it and run again "
                      "to continue.", file=sys.stderr)
            raise
        progress.close()
        print(f"{summary.computed} cells computed, {summary.already_done} already stored "
              f"({summary.seconds:.1f} s). Results: {config.store}")
        if summary.left_to_others:
            print(f"{summary.left_to_others} cells were being computed by another run on this store; "
                  "run again after it finishes to see them here.")
        cells = scored(config, store, [c.key for c in plan.cells])
        if plan.sweep:  # the matrix of the values chosen on dev (bench report shows the choices)
            cells = chosen_cells(config, cells, {"sweep": plan.sweep, "points": {c.key: c.point for c in plan.cells}})
            print("\nswept " + ", ".join(a.describe() for a in plan.sweep) + ": the matrix below is at the values "
                  "chosen on dev; `bench report` (with the same --sweep) states each choice")
        if other_decoders(config):
            cells, _ = decoded(config, store, cells)
        print_matrix(config, cells)
        done = store.done_keys(c.key for c in plan.cells)
        failed = store.failures(c.key for c in plan.cells if c.key not in done)
        if failed:
            print(f"\n{len(failed)} cell(s) failed (recorded in the store; every other cell went on):",
                  file=sys.stderr)
            for f in failed:
                print(f"  {f.model} {f.dataset}:{f.language} seed {f.seed} [{f.kind}, attempt {f.attempts}]: "
                      f"{f.message}" + (f"\n    hint: {f.detail}" if f.kind == "user" and f.detail else ""),
                      file=sys.stderr)
            print("fix the cause and run `bench run --retry-failed` to compute them again "
                  "(`bench failures` shows the tracebacks).", file=sys.stderr)
            return 3
    return 0



