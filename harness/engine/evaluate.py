"""Decoding a split: greedy CTC decoding in length-sorted, duration-sized batches."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import numpy as np
import torch

from harness.api import SAMPLING_RATE, MetricSpec, SplitOutput, frame_mask
from harness.engine.batching import duration_batches
from harness.engine.features import FeatureSource
from harness.engine.logprobs import compact_log_probs
from harness.engine.splits import Split
from harness.engine.text import Vocabulary, greedy_decode


def evaluate(model: torch.nn.Module, features: FeatureSource, split: Split, vocab: Vocabulary, runtime,
             amp: AbstractContextManager, metrics: Sequence[MetricSpec] = (), keep_log_probs: bool = False) -> SplitOutput:
    """Greedy CTC decoding of every utterance of ``split`` (put ``model`` in eval mode first).

    ``runtime`` (:class:`harness.plan.config.RuntimeSettings`) sizes the batches
    (``eval_batch_seconds`` of padded audio); ``metrics`` are scored into
    ``SplitOutput.metrics`` (the harness scores the hypotheses with the run's metrics anyway).

    ``keep_log_probs``: also return each utterance's CTC log-probabilities as float16
    (``SplitOutput.log_probs``, made by :func:`harness.engine.logprobs.compact_log_probs`: their
    greedy decoding is exactly the hypothesis); the hypotheses are the same either way."""
    hyps: list[str] = [""] * len(split.ids)
    kept: dict[str, np.ndarray] | None = {} if keep_log_probs else None
    budget = int(runtime.eval_batch_seconds * SAMPLING_RATE)
    with torch.no_grad():
        for batch in duration_batches(split.samples, budget):
            feats, lengths = features.batch(batch, grad=False)
            with amp:
                logits = model.head(feats, frame_mask(lengths, feats.shape[1]))
            best = logits.argmax(-1).cpu()
            on_cpu = logits.float().cpu() if kept is not None else None  # one transfer per batch
            for row, i in enumerate(batch):
                hyps[i] = greedy_decode(best[row, : features.frames[i]].tolist(), vocab)
                if kept is not None:
                    frames = features.frames[i]
                    kept[split.ids[i]] = compact_log_probs(on_cpu[row, :frames], best[row, :frames])
    scores = {m.name: float(m.compute(split.refs, hyps)) if split.refs else float("nan") for m in metrics}
    return SplitOutput(
        hypotheses=list(zip(split.ids, split.refs, hyps)),
        seconds=sum(split.samples) / SAMPLING_RATE,
        metrics=scores,
        log_probs=kept,
    )
