"""What ``harness.train`` held before the engine became public (imported under that old name,
with a DeprecationWarning): the same functions with their old signatures, built on
:mod:`harness.engine`. New code uses :mod:`harness.engine` directly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.api import SAMPLING_RATE
from harness.engine.evaluate import evaluate
from harness.engine.features import FEATURE_CACHE_BUDGET
from harness.engine.finetune import fine_tune_and_evaluate
from harness.engine.fit import Checkpointer, use_fused_optimizer
from harness.engine.fit import fit as _fit
from harness.engine.setup import check_frame_lengths
from harness.engine.splits import Split, drop_unalignable, encode_splits, prepare_audio, prepare_splits
from harness.engine.text import Vocabulary

_Split = Split

__all__ = ["FEATURE_CACHE_BUDGET", "Checkpointer", "check_frame_lengths", "data_facts", "drop_unalignable",
           "encode_splits", "evaluate", "fine_tune_and_evaluate", "fit", "prepare_audio", "prepare_splits",
           "use_fused_optimizer"]


def fit(model, features, split, train, seed, device, precision, amp, progress, saver=None, fused=False) -> dict:
    """:func:`harness.engine.fit` with the old positional signature, returning the facts dict."""
    return _fit(model, features, split, train, seed=seed, device=device, precision=precision, amp=amp,
                progress=progress, saver=saver, fused=fused).facts()


def data_facts(device, precision: str, cached: bool, vocab: Vocabulary, splits: Mapping[str, Split]) -> dict[str, Any]:
    """What a cell's record says about how it computed (now ``CellSetup.record_data``)."""
    train_split = splits["train"]
    return {"device": str(device), "precision": precision, "feature_cache": cached, "vocab_size": len(vocab),
            "train_utterances": len(train_split.ids), "train_hours": sum(train_split.samples) / SAMPLING_RATE / 3600,
            "oov_chars": {n: s.oov_chars for n, s in splits.items()}}
