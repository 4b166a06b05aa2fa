"""``bench compare``: A results file against a stored baseline; exit 1 on a regression (for CI)."""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

from harness.cli.common import (chosen_cells, config_from_args, decoded, existing_store, metric_directions,
                                other_decoders, selection_flags, stored_cells)
from harness.errors import BenchError
from harness.plugins import process_registry


def add_parser(sub) -> None:
    cmp = sub.add_parser("compare", help="compare results with a baseline; exit 1 on a regression (for CI)")
    cmp.add_argument("baseline", help="JSON written by `bench report --json FILE`")
    cmp.add_argument("current", nargs="?", help="JSON to compare (default: the configured cells in the store)")
    selection_flags(cmp)
    cmp.add_argument("--abs", action="append", default=[], metavar="METRIC=X",
                     help="absolute tolerance per metric (default 0.01), e.g. --abs cer=0.02")
    cmp.add_argument("--rel", action="append", default=[], metavar="METRIC=X",
                     help="relative tolerance per metric (share of the baseline), e.g. --rel wer=0.05")
    cmp.add_argument("--allow-missing", action="store_true", help="cells missing from the current results do not fail")
    cmp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.report.compare import compare, load_results, parse_tolerances, results_from_summary
    from harness.report.tables import cells_frame, summary_frame

    baseline = load_results(args.baseline)
    if not baseline:
        raise BenchError(f"baseline {args.baseline!r} holds no results, so nothing can be compared",
                         "write the baseline with `bench report --json FILE` after a `bench run` of the same selection")
    if args.current:
        current = load_results(args.current)
    else:  # the summary of the stored cells, without writing a report
        from harness.report.summaries import across_languages, compare_entries

        config = config_from_args(args)
        swept: dict = {}
        cells, _ = stored_cells(config, swept)
        if swept["sweep"]:
            cells = chosen_cells(config, cells, swept)
        if other_decoders(config):
            with existing_store(config) as store:
                cells, _ = decoded(config, store, cells)
        summary = summary_frame(cells_frame(cells))
        current = results_from_summary(summary.to_dict(orient="records"))
        current |= compare_entries([a.as_dict() for a in across_languages(summary, metric_directions(process_registry()))])
    if args.metrics is not None:  # --metrics: compare only these
        wanted = {m.strip() for m in args.metrics.split(",") if m.strip()}
        baseline = {k: v for k, v in baseline.items() if k[4] in wanted}
        current = {k: v for k, v in current.items() if k[4] in wanted}
        if not baseline:
            raise BenchError(f"the baseline has no results for metric(s) {', '.join(sorted(wanted))}",
                             "choose --metrics among the baseline's metrics, or leave --metrics out")
    higher = frozenset(n for n, reg in process_registry().metrics.items() if not reg.spec.lower_is_better)
    result = compare(baseline, current, parse_tolerances(args.abs), parse_tolerances(args.rel), higher)

    def label(key: tuple[str, ...]) -> str:
        return f"{key[0]} {key[1]}:{key[2]} {key[3]} {key[4]}"

    for title, items in (("regressions", result.regressions), ("improvements", result.improvements)):
        if items:
            print(f"{title}:")
            print(tabulate([[label(d.key), f"{d.baseline:.4f}", f"{d.current:.4f}", f"{d.change:+.4f}",
                             f"{d.tolerance:.4f}"] for d in items],
                           headers=["cell", "baseline", "current", "change", "tolerance"], disable_numparse=True))
            print()
    for title, keys in (("missing from the current results", result.missing),
                        ("not in the baseline (new)", result.extra)):
        if keys:
            print(f"{title}: " + ", ".join(label(k) for k in keys))
    print(f"{len(result.deltas)} compared: {len(result.regressions)} regressions, "
          f"{len(result.improvements)} improvements, {len(result.missing)} missing, {len(result.extra)} new")
    if result.failed(args.allow_missing):
        print("FAIL: " + ("regression beyond tolerance" if result.regressions else "cells missing"), file=sys.stderr)
        return 1
    if not result.deltas:  # nothing in common: never "OK"
        print("FAIL: no cell was compared (the current results share no model, dataset, language, split and "
              "metric with the baseline)", file=sys.stderr)
        return 1
    print("OK")
    return 0



