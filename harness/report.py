"""The model x language matrix (mean +- sd over seeds) as a table, CSV, JSON and Markdown."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
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


def _mean(values: Sequence) -> float:
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(values) / len(values) if values else float("nan")


def data_frame(cells: Sequence[StoredCell]) -> pd.DataFrame:
    """Per dataset and language: the language's metadata and what the cells trained and tested on.

    Hours, utterances and speakers are means over the cells (seeds may draw different training
    subsets). Train hours are shown as requested (``train_hours_requested``) and as used — what
    the loop trained on, after its own skips — and ``train_exhausted`` says in how many seeds'
    draws the split held less than requested. Skipped rows are counted as in one cell: per seed
    (a range when seeds differ, as training draws may), so dev and test rows, the same for every
    seed and model, are counted once.
    """
    groups: dict[tuple[str, str], list[StoredCell]] = {}
    for c in cells:
        groups.setdefault((c.dataset, c.language), []).append(c)
    rows = []
    for (dataset, code), members in sorted(groups.items()):
        lang = language(code)
        row: dict = {"dataset": dataset, "language": code, "name": lang.name, "family": lang.family,
                     "subgroup": lang.subgroup, "script": lang.script}
        data = [m.record.get("data", {}) for m in members]
        trained = [m.record.get("train", {}) for m in members]
        row["train_hours_requested"] = _mean([d.get("train_hours_requested") for d in data])
        for key in ("train_hours", "train_utterances"):  # what the loop trained on, else what the dataset gave
            row[key] = _mean([t.get(key, d.get(key)) for t, d in zip(trained, data)])
        seeds = sorted({m.seed for m in members})
        exhausted = sorted({m.seed for m, d in zip(members, data) if d.get("train_exhausted")})
        row["train_exhausted"] = f"yes ({len(exhausted)} of {len(seeds)} seeds)" if exhausted else "no"
        for key in ("train_speakers", "test_hours", "test_utterances"):
            row[key] = _mean([d.get(key) for d in data])
        draws = {}  # one per seed: every model of a seed saw the same data
        for m in members:
            draws.setdefault(m.seed, m.record.get("skipped", {}))
        reasons = sorted({(split, reason) for draw in draws.values()
                          for split, found in draw.items() for reason in found})
        skipped = []
        for split, reason in reasons:
            counts = [int(draw.get(split, {}).get(reason, 0)) for draw in draws.values()]
            low, high = min(counts), max(counts)
            skipped.append(f"{split}:{reason} {low}" if low == high else f"{split}:{reason} {low}–{high}")
        row["skipped"] = ", ".join(skipped) or "none"
        rows.append(row)
    return pd.DataFrame(rows)


def _data_table(frame: pd.DataFrame, fmt: str) -> str:
    shown = frame.copy()
    for key in ("train_hours_requested", "train_hours", "test_hours"):
        shown[key] = shown[key].map(lambda v: "-" if v != v else f"{v:.2f}")
    for key in ("train_utterances", "train_speakers", "test_utterances"):
        shown[key] = shown[key].map(lambda v: "-" if v != v else f"{v:.0f}")
    return tabulate(shown.values.tolist(), headers=list(shown.columns), tablefmt=fmt, disable_numparse=True)


#: printed under the data table when a training split ran out
EXHAUSTED_NOTE = ("train_exhausted: the training split held less usable audio than train_hours_requested, so "
                  "those cells trained on all of it (train_hours)")


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

    def rows(self, mark: Callable[[str], str] = lambda text: f"*{text}*") -> list[list[str]]:
        """Table rows; the best model of each column goes through ``mark``."""
        out = []
        for model in self.models:
            row = [model]
            for column in self.columns:
                if (model, column) not in self.values:
                    row.append("-")
                    continue
                mean, sd, n = self.values[(model, column)]
                text = f"{mean:.3f} ± {sd:.3f}" if n > 1 else f"{mean:.3f}"
                if self.best(column) == model:
                    text = mark(text)
                row.append(text)
            out.append(row)
        return out

    def table(self, fmt: str = "simple") -> str:
        bold = "**" if fmt in {"github", "pipe"} else "*"
        return tabulate(self.rows(lambda t: f"{bold}{t}{bold}"), headers=["model", *self.columns], tablefmt=fmt,
                        disable_numparse=True)


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


def cell_values(cells: Sequence[StoredCell], metric: str = "cer", split: str = "test") -> pd.DataFrame:
    """One row per cell (model, dataset, language, seed, value) for the statistics."""
    rows = [(c.model, c.dataset, c.language, c.seed, c.metrics.get(split, {}).get(metric)) for c in cells]
    frame = pd.DataFrame(rows, columns=["model", "dataset", "language", "seed", "value"])
    return frame.dropna(subset=["value"])


def pretraining_languages(cells: Sequence[StoredCell]) -> dict[str, list[str]]:
    """model -> pre-training languages, from the model metadata stored with each result."""
    out: dict[str, list[str]] = {}
    for c in cells:
        langs = c.record.get("identity", {}).get("model", {}).get("metadata", {}).get("pretraining_languages")
        if langs:
            out[c.model] = list(langs)
    return out


def pretrained_models(cells: Sequence[StoredCell]) -> dict[str, bool]:
    """model -> whether it was pre-trained, for the models whose stored metadata says."""
    out: dict[str, bool] = {}
    for c in cells:
        meta = c.record.get("identity", {}).get("model", {}).get("metadata", {})
        if meta.get("pretraining") == "none" or meta.get("pretraining_hours") == 0:
            out[c.model] = False
        elif meta.get("pretraining_hours") or meta.get("pretraining_languages"):
            out[c.model] = True
    return out


def findings(cells: Sequence[StoredCell], metric: str = "cer") -> dict[str, list]:
    """Statistics per dataset (languages of different datasets are not pooled)."""
    from harness.stats import all_findings

    values = cell_values(cells, metric)
    pretraining = pretraining_languages(cells)
    pretrained = pretrained_models(cells)
    return {dataset: all_findings(part, pretraining, metric, pretrained) for dataset, part in values.groupby("dataset")}


def rankings(m: Matrix) -> dict[str, list[tuple[int, str, float]]]:
    """Per language: (rank, model, mean), best first."""
    out = {}
    for column in m.columns:
        scored = sorted((m.values[(model, column)][0], model) for model in m.models if (model, column) in m.values)
        out[column] = [(i + 1, model, mean) for i, (mean, model) in enumerate(scored)]
    return out


def _families_row(m: Matrix) -> list[str]:
    """A first row naming each column's language family (columns are grouped by family)."""
    return ["(family)", *[language(c.split(":")[-1]).family for c in m.columns]]


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("±", r"$\pm$")):
        text = text.replace(a, b)
    return text


def latex_table(m: Matrix) -> str:
    rows = m.rows(lambda text: "\x00" + text)  # marked, escaped, then bolded
    rows = [[r"\textbf{" + _latex_escape(c[1:]) + "}" if c.startswith("\x00") else _latex_escape(c) for c in row]
            for row in rows]
    header = ["model", *[_latex_escape(c) for c in m.columns]]
    body = tabulate(rows, headers=header, tablefmt="latex_raw", disable_numparse=True)
    caption = f"{m.metric.upper()} ({m.split}), mean $\\pm$ sd over seeds; best per language in bold."
    return "\\begin{table}[ht]\n\\centering\n" + body + f"\n\\caption{{{caption}}}\n\\end{{table}}\n"


def heatmap(m: Matrix, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.array([[m.values.get((model, c), (np.nan,))[0] for c in m.columns] for model in m.models])
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(m.columns), 1.0 + 0.45 * len(m.models)), dpi=110)
    image = ax.imshow(data, cmap="viridis_r", aspect="auto", vmin=0.0, vmax=max(1.0, float(np.nanmax(data))))
    ax.set_xticks(range(len(m.columns)), m.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(m.models)), m.models)
    for i in range(len(m.models)):
        for j in range(len(m.columns)):
            if not np.isnan(data[i, j]):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if data[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, label=m.metric.upper())
    ax.set_title(f"{m.metric.upper()} on {m.split} (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _html_rows(m: Matrix) -> list[list[str]]:
    import html

    rows = m.rows(lambda text: "\x00" + text)
    return [[f"<b>{html.escape(c[1:])}</b>" if c.startswith("\x00") else html.escape(c) for c in row] for row in rows]


def _html(sections: list[tuple[str, str]], images: dict[str, Path], found: dict[str, list]) -> str:
    import base64
    import html

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>bench report</title><style>",
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
             "td:first-child,th:first-child{text-align:left}.sig{color:#064}.ns{color:#555}</style></head><body>",
             f"<h1>bench report</h1><p>generated {html.escape(time.strftime('%Y-%m-%d %H:%M'))}</p>"]
    for title, table in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>{table}")
    for title, path in images.items():
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
    for dataset, items in found.items():
        parts.append(f"<h2>Statistics ({html.escape(dataset)})</h2><ul>")
        for f in items:
            css = "sig" if f.significant else "ns"
            parts.append(f"<li class='{css}'>{html.escape(f.sentence)}</li>")
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_reports(cells: Sequence[StoredCell], out_dir: Path, metrics: Sequence[str],
                  json_copy: Path | None = None) -> dict[str, Path]:
    """Write the matrix as CSV, JSON, Markdown, LaTeX, heatmaps (PNG) and one HTML page."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = cells_frame(cells)
    summary = summary_frame(frame)
    found = findings(cells, metrics[0]) if metrics else {}
    data = data_frame(cells)
    paths = {"csv": out_dir / "matrix.csv", "json": out_dir / "matrix.json", "md": out_dir / "matrix.md",
             "tex": out_dir / "matrix.tex", "html": out_dir / "report.html"}
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
        "data": data.to_dict(orient="records"),
        "findings": {d: [{"topic": f.topic, "sentence": f.sentence, "p_value": f.p_value, "tested": f.tested}
                         for f in items] for d, items in found.items()},
    }
    text = json.dumps(payload, indent=2, default=float) + "\n"
    paths["json"].write_text(text)
    if json_copy is not None:
        json_copy.parent.mkdir(parents=True, exist_ok=True)
        json_copy.write_text(text)
        paths["baseline"] = json_copy
    md = ["# bench results\n"]
    tex = []
    html_sections = []
    images = {}
    for metric in metrics:
        for split in ("test", "dev"):
            m = matrix(summary, metric, split)
            if not m.models:
                continue
            title = f"{metric.upper()} ({split}), mean ± sd over seeds; best per language in bold"
            md += [f"## {title}\n", tabulate([_families_row(m), *m.rows(lambda t: f"**{t}**")],
                                             headers=["model", *m.columns], tablefmt="github",
                                             disable_numparse=True) + "\n"]
            tex.append(latex_table(m))
            html_sections.append((title, tabulate([_families_row(m), *_html_rows(m)],
                                                  headers=["model", *m.columns], tablefmt="unsafehtml",
                                                  disable_numparse=True)))
            if split == "test":
                png = heatmap(m, out_dir / f"heatmap_{metric}.png")
                paths[f"heatmap_{metric}"] = png
                images[f"{metric.upper()} heatmap"] = png
                ranks = rankings(m)
                md.append(f"### Ranking of models per language ({metric.upper()}, test)\n")
                md.append(tabulate([[c, ", ".join(f"{r}. {model} ({mean:.3f})" for r, model, mean in ranked)]
                                    for c, ranked in ranks.items()], headers=["language", "ranking"],
                                   tablefmt="github") + "\n")
    if not data.empty:
        title = "Data: languages and what the cells trained and tested on (mean over cells)"
        exhausted = (data["train_exhausted"] != "no").any()
        md += [f"## {title}\n", _data_table(data, "github") + "\n"]
        if exhausted:
            md.append(f"Note: {EXHAUSTED_NOTE}.\n")
        html_sections.append((title, _data_table(data, "html")
                              + (f"<p><b>Note:</b> {EXHAUSTED_NOTE}.</p>" if exhausted else "")))
    for dataset, items in found.items():
        md.append(f"## Statistics ({dataset}, {metrics[0].upper()} on test)\n")
        md += [f"- {f.sentence}" for f in items]
        md.append("")
    paths["md"].write_text("\n".join(md))
    paths["tex"].write_text("\n".join(tex))
    paths["html"].write_text(_html(html_sections, images, found))
    return paths
