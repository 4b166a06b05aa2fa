"""The study's protocol, ``finetune``: the whole model after the feature encoder is fine-tuned
with a fresh CTC head, then dev and test are decoded (:func:`harness.engine.fine_tune`)."""

from __future__ import annotations

from harness.api import CellOutcome, ProtocolRequest, ProtocolSpec
from harness.engine import fine_tune
from harness.hookspecs import hookimpl

VERSION = "1"


def run(request: ProtocolRequest) -> CellOutcome:
    return fine_tune(request)


@hookimpl
def bench_register_protocols(register) -> None:
    register(ProtocolSpec(
        name="finetune",
        run=run,
        version=VERSION,
        description="the study's: fine-tune the model (feature encoder frozen per train.freeze_feature_encoder) "
                    "with a fresh linear CTC head",
    ))
