"""Runtime options for speed and memory at real scale: fused Adam and gradient checkpointing."""

from __future__ import annotations

import pytest

from harness.plan.config import RuntimeSettings, TrainSettings
from harness.errors import BenchError


def _cell(cache_dir, build=None, **runtime):
    from harness.api import DatasetRequest
    from harness.plugins import load_registry
    from harness.engine import fine_tune_and_evaluate

    registry = load_registry()
    data = registry.dataset("synthetic").spec.load(DatasetRequest(
        "de", 0, {"train_minutes": 0.3, "dev_minutes": 0.1, "test_minutes": 0.1}, cache_dir / "datasets" / "synthetic"))
    build = build or registry.model("tiny-wav2vec2").spec.build
    return fine_tune_and_evaluate(build, data, "de", 0, TrainSettings(steps=6, batch_seconds=8.0),
                                  RuntimeSettings(checkpoint_minutes=0, **runtime),
                                  [registry.metric("cer").spec])


def test_gradient_checkpointing_gives_the_same_numbers(cache_dir):
    plain = _cell(cache_dir)
    checkpointed = _cell(cache_dir, gradient_checkpointing=True)
    assert checkpointed.train_info["loss_curve"] == pytest.approx(plain.train_info["loss_curve"], rel=1e-5)
    assert checkpointed.splits["test"].hypotheses == plain.splits["test"].hypotheses


def test_gradient_checkpointing_is_refused_for_a_model_without_it(cache_dir):
    from harness.api import SpeechCTCModel
    from plugins.models.hf import build_tiny

    class Plain(SpeechCTCModel):  # delegates everything but checkpointing
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def encode(self, audio):
            return self.inner.encode(audio)

        def head(self, features, frame_mask):
            return self.inner.head(features, frame_mask)

        def frame_lengths(self, sample_lengths):
            return self.inner.frame_lengths(sample_lengths)

        def feature_encoder_parameters(self):
            return self.inner.feature_encoder_parameters()

    with pytest.raises(BenchError, match="does not support it"):
        _cell(cache_dir, build=lambda request: Plain(build_tiny("wav2vec2", request)), gradient_checkpointing=True)


def test_fused_adam_is_opt_in_on_the_cpu_and_close_to_the_default(cache_dir):
    from harness.engine import use_fused_optimizer

    import torch

    assert not use_fused_optimizer("auto", torch.device("cpu"))  # the default run's numbers stay as they were
    assert use_fused_optimizer("auto", torch.device("cuda")) and use_fused_optimizer("on", torch.device("cpu"))
    plain = _cell(cache_dir)
    fused = _cell(cache_dir, fused_optimizer="on")
    assert fused.train_info["loss_curve"] == pytest.approx(plain.train_info["loss_curve"], rel=1e-3)
    with pytest.raises(BenchError, match="run.fused_optimizer"):
        RuntimeSettings(fused_optimizer="yes")
