"""Decoding a split: greedy CTC decoding in length-sorted, duration-sized batches."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch

from harness.api import SAMPLING_RATE, MetricSpec, SplitOutput, frame_mask
from harness.engine.batching import duration_batches
from harness.engine.features import FeatureSource
from harness.engine.splits import Split
from harness.engine.text import Vocabulary, greedy_decode


def evaluate(model: torch.nn.Module, features: FeatureSource, split: Split, vocab: Vocabulary, runtime,
             amp: AbstractContextManager, metrics: Sequence[MetricSpec] = ()) -> SplitOutput:
    """Greedy CTC decoding of every utterance of ``split`` (put ``model`` in eval mode first).

    ``runtime`` (:class:`harness.plan.config.RuntimeSettings`) sizes the batches
    (``eval_batch_seconds`` of padded audio); ``metrics`` are scored into
    ``SplitOutput.metrics`` (the harness scores the hypotheses with the run's metrics anyway)."""
    hyps: list[str] = [""] * len(split.ids)
    budget = int(runtime.eval_batch_seconds * SAMPLING_RATE)
    with torch.no_grad():
        for batch in duration_batches(split.samples, budget):
            feats, lengths = features.batch(batch, grad=False)
            with amp:
                logits = model.head(feats, frame_mask(lengths, feats.shape[1]))
            best = logits.argmax(-1).cpu()
            for row, i in enumerate(batch):
                hyps[i] = greedy_decode(best[row, : features.frames[i]].tolist(), vocab)
    scores = {m.name: float(m.compute(split.refs, hyps)) if split.refs else float("nan") for m in metrics}
    return SplitOutput(
        hypotheses=list(zip(split.ids, split.refs, hyps)),
        seconds=sum(split.samples) / SAMPLING_RATE,
        metrics=scores,
    )
