"""What ``harness.train`` held before the engine became public (imported under that old name,
with a DeprecationWarning): the same functions with their old signatures, built on
:mod:`harness.engine`. New code uses :mod:`harness.engine` directly."""

from __future__ import annotations


from harness.engine.evaluate import evaluate
from harness.engine.features import FEATURE_CACHE_BUDGET
from harness.engine.finetune import fine_tune_and_evaluate
from harness.engine.fit import Checkpointer, use_fused_optimizer
from harness.engine.fit import fit as _fit
from harness.engine.setup import check_frame_lengths, data_facts
from harness.engine.splits import Split, drop_unalignable, encode_splits, prepare_audio, prepare_splits

_Split = Split

__all__ = ["FEATURE_CACHE_BUDGET", "Checkpointer", "check_frame_lengths", "data_facts", "drop_unalignable",
           "encode_splits", "evaluate", "fine_tune_and_evaluate", "fit", "prepare_audio", "prepare_splits",
           "use_fused_optimizer"]


def fit(model, features, split, train, seed, device, precision, amp, progress, saver=None, fused=False) -> dict:
    """:func:`harness.engine.fit` with the old positional signature, returning the facts dict."""
    return _fit(model, features, split, train, seed=seed, device=device, precision=precision, amp=amp,
                progress=progress, saver=saver, fused=fused).facts()
