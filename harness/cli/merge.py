"""``bench merge A.sqlite B.sqlite ... --into C.sqlite``: unite stores computed where no disk is shared."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    merge = subparsers.add_parser(
        "merge", help="unite results stores computed on different machines into one (cells by key; "
                      "conflicting results are reported, never overwritten)")
    merge.add_argument("stores", nargs="+", metavar="STORE", help="results stores to merge (SQLite files)")
    merge.add_argument("--into", required=True, metavar="STORE",
                       help="the store to write (created when missing; an existing one keeps all its cells)")
    merge.add_argument("--keep-first", action="store_true",
                       help="for a conflicting cell, write the version of the first store listed that has it "
                            "(conflicts are still listed, and the exit status is still 1)")
    merge.set_defaults(func=run)


def _scores(metrics: dict) -> str:
    test = metrics.get("test", {})
    return " ".join(f"{name}={value:.4f}" for name, value in sorted(test.items())) or "no test scores"


def run(args: argparse.Namespace) -> int:
    from harness.store.merge import merge_stores

    summary = merge_stores(args.stores, args.into, keep_first=args.keep_first)
    print(f"merged {len(summary.sources)} store(s) into {summary.into}: {summary.added} cell(s) added, "
          f"{summary.duplicates} identical duplicate(s) skipped, {len(summary.conflicts)} conflict(s); "
          f"{summary.failures_kept} failure(s) kept, {summary.failures_superseded} superseded by a result; "
          f"{summary.cells_in_target} cells in {summary.into}")
    if not summary.conflicts:
        return 0
    kept = ("the first listed store's version was written where the target had none" if args.keep_first
            else "none of them was written")
    print(f"\n{len(summary.conflicts)} cell(s) have different results in different stores; {kept} "
          f"(what {summary.into} held before is unchanged):", file=sys.stderr)
    for conflict in summary.conflicts:
        print(f"  {conflict.label()} [key {conflict.key}]", file=sys.stderr)
        for version in conflict.versions:
            differs = f", {version.differing_hypotheses} hypotheses differ" if version.differing_hypotheses else ""
            print(f"    {version.store}: {_scores(version.metrics)}{differs}", file=sys.stderr)
    print("hint: the same cell computed twice gave different results (other hardware, packages or code: compare "
          "the records' machine and packages); merge again listing the store you trust first with --keep-first, "
          "or leave the other store out", file=sys.stderr)
    return 1
