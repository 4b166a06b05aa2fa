"""``bench report``: The model x language matrix, statistics and pictures of the stored cells."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from harness.cli.common import (chosen_cells, config_from_args, decoded, decoders_of, existing_store,
                                metric_directions, other_decoders, print_choices, print_decoding, print_matrix,
                                selection_flags, stored_cells)
from harness.plugins import process_registry


def add_parser(sub) -> None:
    report = sub.add_parser("report", help="print the model x language matrix and write CSV, JSON, Markdown")
    selection_flags(report)
    report.add_argument("--out", help="directory for the report files (default: run.report_dir)")
    report.add_argument("--json", metavar="FILE", help="also write the results JSON here (a baseline for compare)")
    report.set_defaults(func=run)


def stored_genders(store_path: Path, cells) -> dict[str, dict[str, str]]:
    """key -> the test utterances' speaker genders, for the cells that recorded them and whose
    file is beside the store (a missing or damaged file leaves the cell out: the report says so)."""
    from harness.errors import BenchError
    from harness.store.outputs import OutputStore

    outputs = OutputStore.beside(store_path)
    out: dict[str, dict[str, str]] = {}
    read: dict[str, dict[str, str]] = {}  # every cell of a language shares one file
    for c in cells:
        stored = c.record.genders.get("test")
        if stored is None:
            continue
        if stored.sha256 not in read:
            try:
                read[stored.sha256] = outputs.genders(stored.sha256)
            except (BenchError, ValueError):
                read[stored.sha256] = {}
        if read[stored.sha256]:
            out[c.key] = read[stored.sha256]
    return out


def run(args: argparse.Namespace) -> int:
    from harness.report.tables import write_reports

    config = config_from_args(args)
    if other_decoders(config):
        decoders_of(config)  # unknown decoders, options and missing packages: before reading any cell
    if config.trackers:
        from harness.run.tracking import resolve_trackers

        resolve_trackers(config, process_registry())  # the report goes to them too: checked first
    swept: dict = {}
    cells, planned = stored_cells(config, swept)
    out = config.report_dir if args.out is None else Path(args.out)
    with existing_store(config) as store:  # test hypotheses: sample transcripts, bootstrap intervals
        if other_decoders(config):
            cells, hypotheses = decoded(config, store, cells)
        else:
            hypotheses = {c.key: store.hypotheses(c.key, "test") for c in cells}
    paths = write_reports(cells, out, config.metrics, Path(args.json) if args.json else None,
                          metric_directions(process_registry()), hypotheses, swept["sweep"], swept["points"],
                          genders=stored_genders(config.store, cells))
    if config.trackers:
        _to_trackers(config, paths, len(cells))
    payload = json.loads(paths["json"].read_text())
    stored = len({c.key for c in cells if c.decoder == "greedy"})  # every stored cell, before a sweep's choice
    if swept["sweep"]:
        print_choices(payload)
        cells = chosen_cells(config, cells, swept)
    print_matrix(config, cells)
    for group, items in payload["findings"].items():
        print(f"\nStatistics ({group}, {config.metrics[0].upper()} on test):\n"
              + "\n".join(f"- {f.get('text', f['sentence'])}" for f in items))
    statistics = payload.get("statistics", {})
    if statistics.get("correction"):
        print(statistics["correction"])
    for why in statistics.get("uninformative_metrics", {}).values():
        print(f"Note: {why}")
    missing = planned - stored
    if other_decoders(config):
        print(f"\ndecoders: {', '.join(config.decoders)} (decoded from stored outputs; no cell was trained again)")
        print_decoding(cells)
    print(f"\n{stored} of {planned} cells have results" + (f" ({missing} not run yet)" if missing else ""))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _to_trackers(config, paths, cells: int) -> None:
    """The report's files to the run's experiment trackers (an MLflow run's artifacts, a W&B artifact, ...)."""
    from harness.run.tracking import TrackerSet, WarnOnce, new_run_id
    from harness.tracking import ReportWritten

    run_id = new_run_id()
    tracking = TrackerSet.open(config, process_registry(), "run", run_id, warn=WarnOnce())
    tracking.emit(ReportWritten(run_id, dict(paths), cells))
    tracking.close()
