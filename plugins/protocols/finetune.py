"""The study's protocol, ``finetune``: the whole model after the feature encoder is fine-tuned
with a fresh CTC head (the loop of :mod:`harness.engine.loop`), then dev and test are decoded."""

from __future__ import annotations

from harness.engine import loop
from harness.api import CellOutcome, ProtocolRequest, ProtocolSpec
from harness.hookspecs import hookimpl

VERSION = "1"


def run(request: ProtocolRequest) -> CellOutcome:
    return loop.fine_tune_and_evaluate(
        request.build_model, request.data, request.language, request.seed, request.train, request.runtime, (),
        request.model_options, request.progress, checkpoint=request.checkpoint,
        model_cache_dir=request.model_cache_dir,
    )


@hookimpl
def bench_register_protocols(register) -> None:
    register(ProtocolSpec(
        name="finetune",
        run=run,
        version=VERSION,
        description="the study's: fine-tune the model (feature encoder frozen per train.freeze_feature_encoder) "
                    "with a fresh linear CTC head",
    ))
