"""Scores by the speaker's gender, where a dataset records it (Common Voice, FLEURS).

Each cell stores its evaluated utterances' genders beside the store (``record.genders``, a
``.gender`` file of :mod:`harness.store.outputs`). :func:`cell_scores` scores a cell's test
hypotheses per gender (corpus-level CER over that gender's utterances, as jiwer counts it);
:func:`harness.report.stats.gender_tests` tests the difference over cells (docs/statistics.md,
"Speaker gender"); :func:`table_rows` is the report's table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.report.bootstrap import Rows, char_edits
from harness.store.results import StoredCell

#: the two genders compared (Common Voice's and FLEURS's "other" is counted but not compared)
COMPARED = ("female", "male")


@dataclass(frozen=True)
class GenderScore:
    """One gender's share of a cell's test split and its corpus-level CER."""

    gender: str
    utterances: int
    characters: int
    edits: int

    @property
    def cer(self) -> float:
        return self.edits / self.characters if self.characters else float("nan")

    def as_dict(self) -> dict:
        return {"utterances": self.utterances, "characters": self.characters, "edits": self.edits,
                "cer": None if not self.characters else self.cer}


def cell_scores(rows: Rows, genders: Mapping[str, str]) -> dict[str, GenderScore]:
    """Per gender recorded among ``rows`` (utterance, reference, hypothesis): its CER (the edits of
    its utterances over their reference characters). Utterances without a gender are left out."""
    kept = [(i, genders.get(utt, "")) for i, (utt, _, _) in enumerate(rows)]
    kept = [(i, g) for i, g in kept if g]
    if not kept:
        return {}
    edits, lengths = char_edits([rows[i] for i, _ in kept])
    out: dict[str, GenderScore] = {}
    for gender in sorted({g for _, g in kept}):
        mask = np.array([g == gender for _, g in kept])
        out[gender] = GenderScore(gender, int(mask.sum()), int(lengths[mask].sum()), int(edits[mask].sum()))
    return out


def scores_by_cell(cells: Sequence[StoredCell], hypotheses: Mapping[str, Rows],
                   genders: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, GenderScore]]:
    """key -> gender -> score, for the cells whose test genders and hypotheses are at hand."""
    out = {}
    for c in cells:
        if c.key in genders and hypotheses.get(c.key):
            scores = cell_scores(hypotheses[c.key], genders[c.key])
            if scores:
                out[c.key] = scores
    return out


def frame(cells: Sequence[StoredCell], by_cell: Mapping[str, Mapping[str, GenderScore]]) -> pd.DataFrame:
    """One row per cell with both compared genders: model, dataset, language, protocol, seed and
    each gender's CER and utterances."""
    rows = []
    for c in cells:
        scores = by_cell.get(c.key, {})
        if all(g in scores and scores[g].characters for g in COMPARED):
            rows.append({"model": c.model, "dataset": c.dataset, "language": c.language, "protocol": c.protocol,
                         "seed": c.seed, **{g: scores[g].cer for g in COMPARED},
                         **{f"{g}_utterances": scores[g].utterances for g in COMPARED}})
    columns = ["model", "dataset", "language", "protocol", "seed", *COMPARED, *(f"{g}_utterances" for g in COMPARED)]
    return pd.DataFrame(rows, columns=columns)


def speakers(cells: Sequence[StoredCell]) -> dict[str, dict[str, int]]:
    """language -> gender -> test speakers, from the cells' data facts (``test_gender_speakers``)."""
    out: dict[str, dict[str, int]] = {}
    for c in cells:
        found = c.record.data.get("test_gender_speakers")
        if isinstance(found, Mapping):
            out.setdefault(c.language, {k: int(v) for k, v in found.items()})
    return out


def table_rows(cells: Sequence[StoredCell], by_cell: Mapping[str, Mapping[str, GenderScore]],
               label=lambda c: c.model) -> tuple[list[str], list[list[str]]]:
    """The report's table: one row per model, one column per dataset:language, each entry the
    female and male test CER (mean over seeds) and the utterances behind them."""
    scored = [c for c in cells if c.key in by_cell]
    columns = sorted({f"{c.dataset}:{c.language}" for c in scored})
    models = sorted({label(c) for c in scored})
    rows = []
    for model in models:
        row = [model]
        for column in columns:
            here = [by_cell[c.key] for c in scored if label(c) == model and f"{c.dataset}:{c.language}" == column]
            parts = []
            for gender in (*COMPARED, "other"):
                values = [s[gender] for s in here if gender in s and s[gender].characters]
                if values:
                    mean = float(np.mean([v.cer for v in values]))
                    parts.append(f"{gender[0].upper()} {mean:.3f} ({values[0].utterances})")
            row.append(" · ".join(parts) or "—")
        rows.append(row)
    return ["model", *columns], rows
