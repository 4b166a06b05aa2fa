"""The study's cell: the whole model after the feature encoder fine-tuned with a fresh CTC head.

:func:`fine_tune` is the ``finetune`` protocol's computation, composed of the engine's public
pieces only; it is also what benchmarks call to time the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.api import CellOutcome, DatasetSplits, MetricSpec, ModelRequest, ProtocolRequest, SpeechCTCModel
from harness.engine.setup import CellSetup


def fine_tune(request: ProtocolRequest, metrics: Sequence[MetricSpec] = (), setup: CellSetup | None = None) -> CellOutcome:
    """Fine-tune a fresh model on the request's data and decode dev and test.

    The feature encoder is frozen when ``train.freeze_feature_encoder`` is (then its outputs
    are computed once per training utterance and reused when they fit the cache budget);
    ``metrics`` are scored into each split's ``SplitOutput.metrics``."""
    setup = setup or CellSetup.start(request)
    model = setup.build_model()
    if setup.runtime.gradient_checkpointing:
        setup.enable_gradient_checkpointing(model)
    frozen = setup.train.freeze_feature_encoder
    for p in model.feature_encoder_parameters():
        p.requires_grad_(not frozen)
    setup.check_frame_lengths(model)
    features = setup.training_features(model, "encoder", cache=frozen)
    setup.record_data(cached=features.cached)
    setup.record_parameters(model)
    def features_of(split):
        return setup.features(model, split, "encoder", cached=features.cached)

    if setup.train.steps > 0:
        setup.fit(model, features, features_of=features_of)
    results = setup.evaluate(model, features_of, metrics=metrics)
    return setup.outcome(results)


def fine_tune_and_evaluate(build_model: Callable[[ModelRequest], SpeechCTCModel], data: DatasetSplits, language: str,
                           seed: int, train, runtime, metrics: Sequence[MetricSpec] = (),
                           model_options: Mapping[str, Any] | None = None, progress=None,
                           checkpoint: Path | None = None, model_cache_dir: Path | None = None,
                           on_log: Callable[[Any], None] | None = None) -> CellOutcome:
    """:func:`fine_tune` for scripts: the request made from its parts (a model builder, the
    splits, language, seed, recipe and runtime settings); ``on_log`` receives the loop's
    :class:`harness.engine.UpdateLog` every 25 updates."""
    request = ProtocolRequest(build_model=build_model, data=data, language=language, seed=seed, train=train,
                              runtime=runtime, options={}, model_options=dict(model_options or {}), progress=progress,
                              checkpoint=checkpoint, model_cache_dir=model_cache_dir, on_log=on_log)
    return fine_tune(request, metrics)
