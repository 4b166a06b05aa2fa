"""``bench export``: per-utterance outputs with their errors, the matrix and model-card results, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import chosen_cells, config_from_args, existing_store, other_decoders, selection_flags, stored_cells


def add_parser(sub) -> None:
    export = sub.add_parser("export", help="write per-utterance JSONL, the matrix as CSV/JSON and model-index "
                                           "results per model (docs/tracking.md)")
    selection_flags(export)
    export.add_argument("--out", help="directory for the files (default: <run.report_dir>/export)")
    export.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.report.export import write_export

    config = config_from_args(args)
    swept: dict = {}
    cells, planned = stored_cells(config, swept)
    cells = [c for c in cells if c.decoder == "greedy"]
    chosen = chosen_cells(config, cells, swept) if swept["sweep"] else None
    out = config.report_dir / "export" if args.out is None else Path(args.out)
    with existing_store(config) as store:
        paths = write_export(cells, store, out, config.metrics, swept["points"], chosen)
    if other_decoders(config):
        print("note: the export holds the stored (greedy) hypotheses; other decoders' are decoded by bench report",
              file=sys.stderr)
    cards = sum(1 for kind in paths if kind.startswith("model-index:"))
    print(f"exported {len(cells)} of {planned} planned cells to {out}: utterances.jsonl, cells.csv, matrix.csv, "
          f"matrix.json and {cards} model-index file(s) in {out / 'model-index'}")
    return 0
