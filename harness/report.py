"""The model x language matrix (mean +- sd over seeds) as a table, CSV, JSON and Markdown."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from harness import __version__
from harness.languages import language
from harness.store import StoredCell


def cells_frame(cells: Sequence[StoredCell]) -> pd.DataFrame:
    """One row per (cell, split, metric)."""
    rows = [
        {"key": c.key, "model": c.model, "dataset": c.dataset, "language": c.language, "seed": c.seed,
         "split": split, "metric": metric, "value": value}
        for c in cells
        for split, scores in c.metrics.items()
        for metric, value in scores.items()
    ]
    return pd.DataFrame(rows, columns=["key", "model", "dataset", "language", "seed", "split", "metric", "value"])


def summary_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample standard deviation and count over seeds."""
    if frame.empty:
        return pd.DataFrame(columns=["model", "dataset", "language", "split", "metric", "mean", "sd", "n"])
    grouped = frame.groupby(["model", "dataset", "language", "split", "metric"], sort=True)["value"]
    out = grouped.agg(mean="mean", sd="std", n="count").reset_index()
    out["sd"] = out["sd"].fillna(0.0)
    return out


def _column(dataset: str, lang: str, datasets: set[str]) -> str:
    return lang if len(datasets) == 1 else f"{dataset}:{lang}"


@dataclass(frozen=True)
class Matrix:
    metric: str
    split: str
    models: list[str]
    columns: list[str]
    #: (model, column) -> (mean, sd, n)
    values: dict[tuple[str, str], tuple[float, float, int]]

    def best(self, column: str) -> str | None:
        scored = [(self.values[(m, column)][0], m) for m in self.models
                  if (m, column) in self.values and not math.isnan(self.values[(m, column)][0])]
        return min(scored)[1] if scored else None

    def rows(self, mark_best: bool = True, bold: str = "*") -> list[list[str]]:
        out = []
        for model in self.models:
            row = [model]
            for column in self.columns:
                if (model, column) not in self.values:
                    row.append("-")
                    continue
                mean, sd, n = self.values[(model, column)]
                text = f"{mean:.3f} ± {sd:.3f}" if n > 1 else f"{mean:.3f}"
                if mark_best and self.best(column) == model:
                    text = f"{bold}{text}{bold}"
                row.append(text)
            out.append(row)
        return out

    def table(self, fmt: str = "simple") -> str:
        bold = "**" if fmt in {"github", "pipe"} else "*"
        return tabulate(self.rows(bold=bold), headers=["model", *self.columns], tablefmt=fmt, disable_numparse=True)


def matrix(summary: pd.DataFrame, metric: str = "cer", split: str = "test") -> Matrix:
    part = summary[(summary["metric"] == metric) & (summary["split"] == split)]
    datasets = set(part["dataset"])
    values = {}
    for row in part.itertuples(index=False):
        values[(row.model, _column(row.dataset, row.language, datasets))] = (row.mean, row.sd, int(row.n))
    models = sorted(set(part["model"]))
    keyed = {(_column(d, lang, datasets)): (d, lang) for d, lang in zip(part["dataset"], part["language"])}
    # languages grouped by family, then by code
    columns = sorted(keyed, key=lambda c: (language(keyed[c][1]).family, keyed[c][0], keyed[c][1]))
    return Matrix(metric, split, models, columns, values)


def write_reports(cells: Sequence[StoredCell], out_dir: Path, metrics: Sequence[str]) -> dict[str, Path]:
    """Write matrix.csv (long form), matrix.json (cells and summary) and matrix.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = cells_frame(cells)
    summary = summary_frame(frame)
    paths = {"csv": out_dir / "matrix.csv", "json": out_dir / "matrix.json", "md": out_dir / "matrix.md"}
    summary.to_csv(paths["csv"], index=False)
    payload = {
        "bench_version": __version__,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cells": [
            {"key": c.key, "model": c.model, "dataset": c.dataset, "language": c.language, "seed": c.seed,
             "metrics": c.metrics, "git_revision": c.record.get("git_revision")}
            for c in cells
        ],
        "summary": summary.to_dict(orient="records"),
    }
    paths["json"].write_text(json.dumps(payload, indent=2, default=float) + "\n")
    parts = ["# bench results\n"]
    for metric in metrics:
        for split in ("test", "dev"):
            m = matrix(summary, metric, split)
            if m.models:
                parts.append(f"## {metric.upper()} ({split}), mean ± sd over seeds; best per language in bold\n")
                parts.append(m.table("github") + "\n")
    paths["md"].write_text("\n".join(parts))
    return paths
