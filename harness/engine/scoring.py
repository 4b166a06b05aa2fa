"""Scores from hypotheses: metrics are computed from what a cell decoded, never inside training.

A cell stores every (utterance, reference, hypothesis) of dev and test. Its scores are computed
from those, and each score records the version of the metric that computed it
(``record["metric_versions"]``), so a metric added after a run, or a metric whose plugin
changed version, is filled in from the stored hypotheses without training anything again.
The share of empty hypotheses per split is kept beside the scores: a model still on the CTC
blank plateau outputs (almost) nothing, and reports must say so rather than rank it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from harness.api import MetricSpec

Rows = Sequence[tuple[str, str, str]]

#: a cell whose test hypotheses are at least this share empty is flagged as blank output
BLANK_SHARE = 0.95


def score(metrics: Iterable[MetricSpec], rows: Rows) -> dict[str, float]:
    """Corpus-level scores of (id, reference, hypothesis) rows; NaN when there is no row."""
    refs = [r for _, r, _ in rows]
    hyps = [h for _, _, h in rows]
    return {m.name: float(m.compute(refs, hyps)) if refs else float("nan") for m in metrics}


def corpus_cer(rows: Rows) -> float:
    """Corpus-level character error rate of (id, reference, hypothesis) rows, as the ``cer``
    metric counts it (jiwer, both sides stripped; rows with an empty reference are left out);
    what :func:`harness.engine.fit` scores dev with during training. NaN without references."""
    import jiwer

    pairs = [(r.strip(), h.strip()) for _, r, h in rows if r.strip()]
    if not pairs:
        return float("nan")
    return float(jiwer.cer([r for r, _ in pairs], [h for _, h in pairs]))


def outputs(rows: Rows) -> dict[str, Any]:
    """What a split's hypotheses look like: how many, and the share that is empty."""
    empty = sum(1 for _, _, h in rows if not h.strip())
    return {"utterances": len(rows), "empty_hypotheses": empty / len(rows) if rows else float("nan")}


def score_splits(metrics: Sequence[MetricSpec], hypotheses: Mapping[str, Rows]) -> tuple[dict, dict, dict]:
    """(scores per split, metric versions, outputs per split) of a cell's hypotheses."""
    scores = {split: score(metrics, rows) for split, rows in hypotheses.items()}
    return scores, {m.name: m.version for m in metrics}, {split: outputs(rows) for split, rows in hypotheses.items()}


def is_blank(record, split: str = "test") -> bool:
    """Whether a record's model output (almost) only blanks on ``split`` (a CellRecord or its JSON)."""
    outputs = record.outputs if hasattr(record, "outputs") else record.get("outputs", {})
    share = outputs.get(split, {}).get("empty_hypotheses")
    return isinstance(share, (int, float)) and not math.isnan(share) and share >= BLANK_SHARE


def stale_metrics(cell, metrics: Sequence[MetricSpec]) -> list[MetricSpec]:
    """The metrics a stored cell lacks, or holds from another version of the metric."""
    versions = cell.record.metric_versions
    return [m for m in metrics
            if versions.get(m.name) != m.version
            or any(m.name not in scores for scores in cell.metrics.values())]


def fill_scores(store, cells: Sequence, metrics: Sequence[MetricSpec]) -> tuple[list, int]:
    """Cells with every metric of ``metrics`` scored (from their stored hypotheses) and outputs
    summarised; what was missing is written back to the store when it is writable.

    Returns the cells and how many of them were scored now.
    """
    out, filled = [], 0
    for cell in cells:
        todo = stale_metrics(cell, metrics)
        if not todo and cell.record.outputs:
            out.append(cell)
            continue
        hypotheses = {split: store.hypotheses(cell.key, split) for split in cell.metrics}
        scores, versions, summary = score_splits(todo, hypotheses)
        merged = {split: {**cell.metrics.get(split, {}), **scores.get(split, {})} for split in cell.metrics}
        record = cell.record.with_scores(versions, summary)
        if not getattr(store, "readonly", False):  # a store opened read-only: report from memory
            store.update_scores(cell.key, merged, record)
        out.append(replace(cell, metrics=merged, record=record))
        filled += bool(todo)
    return out, filled
