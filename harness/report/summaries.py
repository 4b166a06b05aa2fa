"""Summaries across languages (ML-SUPERB 2.0's view), beside the per-language matrix.

Per protocol x model x dataset x split x metric, over the languages the model has results
for: the macro-average (each language counts once, whatever its test size), the worst ``k``
languages and their mean, and the spread (worst minus best, and the standard deviation across
languages). "Worst" follows the metric's direction. A model compared on fewer languages than
another says so (``languages``): its macro-average is over other data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

#: how many worst languages are averaged (fewer when a model has fewer languages)
WORST_K = 3
#: the pseudo-languages under which ``bench compare`` keys the summaries
MACRO = "(macro-average)"


def worst_label(k: int) -> str:
    return f"(worst-{k} mean)"


@dataclass(frozen=True)
class AcrossLanguages:
    protocol: str
    model: str
    dataset: str
    split: str
    metric: str
    languages: int
    macro: float
    #: the worst k languages and their means, worst first
    worst: tuple[tuple[str, float], ...]
    worst_mean: float
    #: worst minus best mean (in the metric's direction: >= 0), and the sd across languages
    spread: float
    sd: float

    def as_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "model": self.model, "dataset": self.dataset, "split": self.split,
                "metric": self.metric, "languages": self.languages, "macro_average": self.macro,
                "worst_k": [{"language": lang, "mean": v} for lang, v in self.worst], "worst_k_mean": self.worst_mean,
                "spread": self.spread, "sd_across_languages": self.sd}


def across_languages(summary: pd.DataFrame, lower_is_better: Mapping[str, bool] | None = None,
                     k: int = WORST_K) -> list[AcrossLanguages]:
    """The summaries of a :func:`harness.report.tables.summary_frame` (means over seeds)."""
    direction = dict(lower_is_better or {})
    out = []
    if summary.empty:
        return out
    for (protocol, model, dataset, split, metric), rows in summary.groupby(
            ["protocol", "model", "dataset", "split", "metric"], sort=True):
        means = [(str(r.language), float(r.mean)) for r in rows.itertuples(index=False)
                 if not math.isnan(float(r.mean))]
        if not means:
            continue
        lower = direction.get(metric, True)
        ranked = sorted(means, key=lambda item: (-item[1] if lower else item[1], item[0]))  # worst first
        values = [v for _, v in means]
        macro = sum(values) / len(values)
        worst = tuple(ranked[:min(k, len(ranked))])
        sd = (sum((v - macro) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
        out.append(AcrossLanguages(str(protocol), str(model), str(dataset), str(split), str(metric), len(values),
                                   macro, worst, sum(v for _, v in worst) / len(worst),
                                   abs(ranked[0][1] - ranked[-1][1]), sd))
    return out


def summary_rows(items: Sequence[AcrossLanguages], metric: str, split: str = "test") -> tuple[list[str], list[list[str]]]:
    """A table of one metric and split: model, dataset, languages, macro-average, worst-k, spread."""
    chosen = [i for i in items if i.metric == metric and i.split == split]
    k = max((len(i.worst) for i in chosen), default=WORST_K)
    heads = ["model", "dataset", "languages", "macro-average", f"worst-{k} mean", f"worst {k}", "spread (worst−best)",
             "sd across languages"]
    rows = [[i.model if i.protocol == "finetune" else f"{i.model} [{i.protocol}]", i.dataset, str(i.languages),
             f"{i.macro:.3f}", f"{i.worst_mean:.3f}", ", ".join(f"{lang} {v:.3f}" for lang, v in i.worst),
             f"{i.spread:.3f}", f"{i.sd:.3f}"] for i in chosen]
    return heads, rows


def compare_entries(items: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str, str, str], float]:
    """``bench compare``'s keys for the summaries of a results file (``across_languages``): the
    macro-average and the worst-k mean, under pseudo-languages beside the per-language entries."""
    out = {}
    for row in items:
        protocol = row.get("protocol") or "finetune"
        model = row["model"] if protocol == "finetune" else f"{row['model']} [{protocol}]"
        out[(model, row["dataset"], MACRO, row["split"], row["metric"])] = float(row["macro_average"])
        out[(model, row["dataset"], worst_label(len(row["worst_k"])), row["split"], row["metric"])] = float(
            row["worst_k_mean"])
    return out
