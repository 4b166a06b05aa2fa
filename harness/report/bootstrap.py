"""Bootstrap confidence intervals of a cell's corpus-level CER over its test utterances.

The spread over seeds (mean ± sd) says how much training noise moves a score; it says nothing of
how much the score depends on which utterances happen to be in the test set. This resamples the
test utterances with replacement and recomputes the corpus-level CER (total character edits over
total reference characters, as the ``cer`` metric computes it) of each resample; the interval is
the percentile interval of those.

Per-utterance edit counts are computed once (jiwer's alignment, the one the ``cer`` metric uses),
so a resample costs two sums. The random generator is seeded from the test set's utterance ids:
the same store gives the same interval, and every model and seed evaluated on the same test set is
resampled with the same draws (paired), which also gives an interval for the mean over seeds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: default number of resamples and confidence level
RESAMPLES = 1000
LEVEL = 0.95

Rows = Sequence[tuple[str, str, str]]


def char_edits(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """(edits, reference characters) per (id, reference, hypothesis) row, as jiwer's CER counts
    them (both sides stripped; substitutions + deletions + insertions of the minimal alignment)."""
    import jiwer

    refs = [r.strip() for _, r, _ in rows]
    hyps = [h.strip() for _, _, h in rows]
    edits = np.zeros(len(rows), dtype=np.int64)
    lengths = np.array([len(r) for r in refs], dtype=np.int64)
    scored = [i for i, r in enumerate(refs) if r]
    for i, r in enumerate(refs):
        if not r:  # jiwer refuses an empty reference: every hypothesis character is an insertion
            edits[i] = len(hyps[i])
    if scored:
        out = jiwer.process_characters([refs[i] for i in scored], [hyps[i] for i in scored])
        for i, chunks in zip(scored, out.alignments):
            n = 0
            for c in chunks:
                if c.type == "substitute" or c.type == "delete":
                    n += c.ref_end_idx - c.ref_start_idx
                elif c.type == "insert":
                    n += c.hyp_end_idx - c.hyp_start_idx
            edits[i] = n
    return edits, lengths


def rng_seed(ids: Sequence[str]) -> int:
    """A seed derived from the utterance ids of a test set (order-independent)."""
    digest = hashlib.sha256("\n".join(sorted(ids)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def resample_indices(n: int, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """``resamples`` x ``n`` indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def resampled_rates(edits: np.ndarray, lengths: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Corpus-level error rate of each resample (a row of ``indices``)."""
    total = lengths[indices].sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, edits[indices].sum(axis=1) / total, np.nan)


def percentile_interval(rates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    low, high = np.nanpercentile(rates, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    utterances: int
    resamples: int = RESAMPLES
    level: float = LEVEL

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "utterances": self.utterances,
                "resamples": self.resamples, "level": self.level, "method": "percentile"}

    def text(self, digits: int = 3) -> str:
        return f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"


class EditCounts:
    """The edit counts of one cell's test rows, with the resample draws of its test set."""

    def __init__(self, rows: Rows, resamples: int = RESAMPLES) -> None:
        ids = [u for u, _, _ in rows]
        order = np.argsort(ids, kind="stable")  # draws address utterances in id order
        self.ids = [ids[i] for i in order]
        edits, lengths = char_edits(rows)
        self.edits, self.lengths = edits[order], lengths[order]
        self.seed = rng_seed(ids)
        self.resamples = resamples

    def estimate(self) -> float:
        total = int(self.lengths.sum())
        return float(self.edits.sum() / total) if total else float("nan")

    def rates(self, indices: np.ndarray) -> np.ndarray:
        return resampled_rates(self.edits, self.lengths, indices)


def interval_of(test: EditCounts, level: float = LEVEL) -> Interval:
    """The bootstrap interval of one cell's corpus-level CER."""
    rates = test.rates(resample_indices(len(test.ids), test.seed, test.resamples))
    return Interval(test.estimate(), *percentile_interval(rates, level), len(test.ids), test.resamples, level)


def mean_interval_of(tests: Sequence[EditCounts], level: float = LEVEL) -> Interval | None:
    """The bootstrap interval of the mean CER over seeds: each resample draws the test utterances
    once (seeds tested on the same utterances are resampled with the same draws; others with their
    own) and averages the seeds' corpus-level CERs."""
    if not tests:
        return None
    draws: dict[tuple[int, int, int], np.ndarray] = {}
    per_seed = []
    for t in tests:
        key = (t.seed, len(t.ids), t.resamples)
        if key not in draws:
            draws[key] = resample_indices(len(t.ids), t.seed, t.resamples)
        per_seed.append(t.rates(draws[key]))
    rates = np.mean(per_seed, axis=0)
    estimate = float(np.mean([t.estimate() for t in tests]))
    return Interval(estimate, *percentile_interval(rates, level), round(np.mean([len(t.ids) for t in tests])),
                    tests[0].resamples, level)


def cer_interval(rows: Rows, resamples: int = RESAMPLES, level: float = LEVEL) -> Interval | None:
    """The bootstrap interval of the corpus-level CER of one cell's rows; None without rows."""
    return interval_of(EditCounts(rows, resamples), level) if rows else None


def mean_interval(row_sets: Sequence[Rows], resamples: int = RESAMPLES, level: float = LEVEL) -> Interval | None:
    """The bootstrap interval of the mean CER over seeds of several cells' rows (see
    :func:`mean_interval_of`)."""
    return mean_interval_of([EditCounts(rows, resamples) for rows in row_sets if rows], level)
