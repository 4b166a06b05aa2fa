"""The engine: the fine-tune/eval loop every protocol composes, public and typed.

A protocol (``ProtocolSpec.run(request) -> CellOutcome``) is a short sequence of these pieces:

- :class:`CellSetup` — ``CellSetup.start(request)`` resolves device and precision, prepares the
  splits (:class:`Split`) and the vocabulary; then ``build_model``, ``check_frame_lengths``,
  ``training_features``, ``record_data``, ``record_parameters``, ``fit``, ``evaluate`` and
  ``outcome`` carry the cell to its :class:`harness.api.CellOutcome`, collecting its facts;
- feature sources (:class:`FeatureSource`): :class:`EncoderFeatures` (the feature encoder's
  output) and :class:`HiddenStateFeatures` (every layer of a frozen upstream), cached under one
  budget (:data:`FEATURE_CACHE_BUDGET`, :func:`decide_cache`);
- :func:`fit` (returns a :class:`FitResult`; a :class:`Checkpointer` saves its
  :class:`TrainingState`; optional dev scoring every ``train.eval_every`` updates through
  ``on_eval``, best-dev parameters with ``train.select``, a CTC-layer learning rate
  ``train.head_lr`` over :func:`head_parameters`) and :func:`evaluate` (greedy CTC decoding into a
  ``SplitOutput``, keeping the float16 log-probabilities other decoders read later:
  :func:`compact_log_probs`; :func:`corpus_cer` scores one);
- one-call cells: :func:`fine_tune` (the study's; :func:`fine_tune_and_evaluate` takes its parts) and :func:`train_head_on_frozen_features`
  (a frozen upstream, a trainable head on its features: SUPERB, linear probes).

Only names listed in ``__all__`` are the engine's public API; everything else may change.
"""

from harness.engine.device import autocast, resolve_device, resolve_precision, seed_everything
from harness.engine.evaluate import evaluate
from harness.engine.features import (FEATURE_CACHE_BUDGET, CachedFeatures, EncoderFeatures, FeatureSource,
                                     HiddenStateFeatures, decide_cache)
from harness.engine.finetune import fine_tune, fine_tune_and_evaluate
from harness.engine.logprobs import compact_log_probs
from harness.engine.fit import (LOSS_WINDOW, Checkpointer, FitResult, TrainingState, UpdateLog, fit,
                                head_parameters, use_fused_optimizer)
from harness.engine.scoring import corpus_cer
from harness.engine.setup import CellSetup, FeatureShape, check_frame_lengths, train_head_on_frozen_features
from harness.engine.splits import Split, drop_unalignable, encode_splits, prepare_audio, prepare_splits
from harness.engine.text import Vocabulary, build_vocabulary, greedy_decode, normalize
from harness.plan.config import RuntimeSettings, TrainSettings

__all__ = [
    "FEATURE_CACHE_BUDGET", "LOSS_WINDOW", "CachedFeatures", "CellSetup", "Checkpointer", "EncoderFeatures",
    "FeatureShape", "FeatureSource", "FitResult", "HiddenStateFeatures", "RuntimeSettings", "Split",
    "TrainSettings", "TrainingState", "UpdateLog", "Vocabulary", "autocast", "build_vocabulary",
    "check_frame_lengths", "compact_log_probs", "corpus_cer", "decide_cache", "drop_unalignable", "encode_splits",
    "evaluate", "fine_tune", "fine_tune_and_evaluate", "fit", "greedy_decode", "head_parameters", "normalize",
    "prepare_audio", "prepare_splits", "resolve_device", "resolve_precision",
    "seed_everything", "train_head_on_frozen_features", "use_fused_optimizer",
]
