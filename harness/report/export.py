"""``bench export``: a selection's results in standard forms, offline.

- ``utterances.jsonl``: one line per stored (cell, split, utterance): the cell's identity
  (key, model, dataset, language, seed, protocol, swept values), the utterance id, its
  normalised reference and the hypothesis, and its errors as jiwer counts them (character and
  word substitutions, deletions, insertions, reference lengths) — summing them over a cell's
  split gives its stored corpus-level CER and WER;
- ``cells.csv``: one row per cell, split and metric (the stored scores);
- ``matrix.csv`` and ``matrix.json``: mean, standard deviation and number of seeds per model ×
  dataset × language × protocol, split and metric (at the values a sweep chose on dev);
- ``model-index/MODEL.yaml``: each model's test scores as the ``model-index`` metadata of a
  Hugging Face model card (task ``automatic-speech-recognition``, one result per dataset and
  language, metrics as fractions, means over seeds), written with ``huggingface_hub``'s own
  ``ModelCardData``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["UTTERANCE_FIELDS", "export_utterances", "model_index", "utterance_errors", "write_export"]

#: the fields of each line of ``utterances.jsonl``, in order
UTTERANCE_FIELDS = ("key", "model", "dataset", "language", "seed", "protocol", "point", "split", "utterance_id",
                    "reference", "hypothesis", "char_substitutions", "char_deletions", "char_insertions",
                    "char_errors", "ref_chars", "word_substitutions", "word_deletions", "word_insertions",
                    "word_errors", "ref_words")


def utterance_errors(reference: str, hypothesis: str) -> dict[str, int]:
    """One utterance's character and word edits against its reference, counted as the ``cer``
    and ``wer`` metrics count them (jiwer's alignment, both sides stripped; words split on
    whitespace). An empty reference has no length and is left out of corpus scores."""
    import jiwer

    out: dict[str, int] = {}
    if not reference.strip():
        return {f"{unit}_{what}": 0 for unit in ("char", "word")
                for what in ("substitutions", "deletions", "insertions", "errors")} | {"ref_chars": 0, "ref_words": 0}
    for unit, process in (("char", jiwer.process_characters), ("word", jiwer.process_words)):
        result = process(reference, hypothesis)
        errors = result.substitutions + result.deletions + result.insertions
        out.update({f"{unit}_substitutions": result.substitutions, f"{unit}_deletions": result.deletions,
                    f"{unit}_insertions": result.insertions, f"{unit}_errors": errors,
                    f"ref_{unit}s": result.substitutions + result.deletions + result.hits})
    return out


def export_utterances(cells: Sequence[Any], store: Any, points: Mapping[str, Any] | None = None,
                      splits: Sequence[str] = ("dev", "test")) -> Iterator[dict[str, Any]]:
    """The lines of ``utterances.jsonl`` (see the module's description)."""
    points = points or {}
    for cell in cells:
        point = {key: value for key, value in points.get(cell.key, ())}
        for split in splits:
            for utterance_id, reference, hypothesis in store.hypotheses(cell.key, split):
                yield {"key": cell.key, "model": cell.model, "dataset": cell.dataset, "language": cell.language,
                       "seed": cell.seed, "protocol": cell.protocol, "point": point, "split": split,
                       "utterance_id": utterance_id, "reference": reference, "hypothesis": hypothesis,
                       **utterance_errors(reference, hypothesis)}


def model_index(model: str, summary: Any, metrics: Sequence[str]) -> str:
    """``model-index`` YAML (a Hugging Face model card's metadata) of one model's mean test scores."""
    from huggingface_hub import EvalResult, ModelCardData

    rows = summary[(summary["model"] == model) & (summary["split"] == "test") & summary["metric"].isin(metrics)]
    results = []
    for (protocol, dataset, language), group in rows.groupby(["protocol", "dataset", "language"], sort=True):
        task = "Automatic Speech Recognition" + ("" if protocol == "finetune" else f" ({protocol} protocol)")
        for metric in metrics:
            found = group[group["metric"] == metric]
            if found.empty or math.isnan(float(found["mean"].iloc[0])):
                continue
            seeds = int(found["n"].iloc[0])
            results.append(EvalResult(
                task_type="automatic-speech-recognition", task_name=task, dataset_type=dataset,
                dataset_name=f"{dataset} ({language})", dataset_config=language, dataset_split="test",
                metric_type=metric, metric_value=round(float(found["mean"].iloc[0]), 6),
                metric_name=f"Test {metric.upper()} (mean of {seeds} seed{'s' if seeds != 1 else ''})"))
    card = ModelCardData(model_name=model, eval_results=results or None, tags=["bench", "automatic-speech-recognition"])
    return card.to_yaml() + "\n"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name) or "_"


def write_export(cells: Sequence[Any], store: Any, out: Path, metrics: Sequence[str],
                 points: Mapping[str, Any] | None = None, chosen: Iterable[Any] | None = None) -> dict[str, Path]:
    """Write every export file into ``out``; returns their paths by kind. ``cells``: every stored
    cell of the selection (each sweep point's); ``chosen``: those the matrix and model cards
    summarise (the values a sweep chose on dev; default: all)."""
    from harness import __version__
    from harness.report.tables import cells_frame, summary_frame

    out.mkdir(parents=True, exist_ok=True)
    points = points or {}
    paths = {"utterances": out / "utterances.jsonl", "cells": out / "cells.csv", "matrix_csv": out / "matrix.csv",
             "matrix_json": out / "matrix.json"}
    lines = 0
    with open(paths["utterances"], "w", encoding="utf-8") as fh:
        for row in export_utterances(cells, store, points):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            lines += 1
    frame = cells_frame(cells)
    frame.insert(frame.columns.get_loc("seed") + 1, "point",
                 [json.dumps(dict(points.get(k, ())), sort_keys=True) for k in frame["key"]])
    frame.to_csv(paths["cells"], index=False)
    chosen = list(cells if chosen is None else chosen)
    summary = summary_frame(cells_frame(chosen))
    summary.to_csv(paths["matrix_csv"], index=False)
    paths["matrix_json"].write_text(json.dumps({
        "generated_by": f"bench {__version__}", "metrics": list(metrics), "cells": len(chosen),
        "utterance_lines": lines, "rows": json.loads(summary.to_json(orient="records")),
    }, indent=1), encoding="utf-8")
    cards = out / "model-index"
    cards.mkdir(exist_ok=True)
    for model in sorted(set(summary["model"])):
        path = cards / f"{_safe(model)}.yaml"
        path.write_text(model_index(model, summary, list(metrics)), encoding="utf-8")
        paths[f"model-index:{model}"] = path
    return paths
