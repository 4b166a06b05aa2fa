"""The SUPERB / ML-SUPERB protocol, ``superb``: the upstream model frozen, a learnable
softmax-weighted sum of all its hidden layers, and a small downstream trained with CTC.

A composition of the engine's one-call helper
(:func:`harness.engine.train_head_on_frozen_features`): nothing upstream trains, so every
utterance's hidden states are computed once and reused by every update, and an update costs only
the downstream (:class:`plugins.protocols.downstreams.Downstream`: ML-SUPERB's transformer or
SUPERB's BiLSTM, sized by the options). Training uses the run's recipe (``[train]``: updates, tri-stage schedule, duration batching,
clipping; Adam at ``lr``, default the recipe's), the vocabulary rule and greedy decoding of
``finetune``. The learned layer weights are recorded with the cell (``train.layer_weights``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.api import CellOutcome, ModelFacts, ProtocolRequest, ProtocolSpec
from harness.engine import train_head_on_frozen_features
from harness.errors import BenchError
from harness.hookspecs import hookimpl

from .downstreams import Downstream

VERSION = "1"

DEFAULTS: dict[str, Any] = {
    "downstream": "transformer",
    "proj_dim": 80,
    "width": 256,
    "layers": 2,
    "heads": 4,
    "ff_dim": 1024,
    "dropout": 0.1,
    #: normalise each hidden state (no affine) before the weighted sum
    "layer_norm": False,
    #: Adam's peak learning rate; 0 takes train.lr (ML-SUPERB and SUPERB use 1e-4)
    "lr": 0.0,
}


def check(options: Mapping[str, Any]) -> None:
    def bad(key: str, text: str) -> BenchError:
        return BenchError(f"[protocols.superb] {key} {text}, got {options[key]!r}",
                          f"fix it in bench.toml or with --set protocols.superb.{key}=...")

    if options["downstream"] not in ("transformer", "lstm"):
        raise bad("downstream", 'must be "transformer" (ML-SUPERB) or "lstm" (SUPERB ASR)')
    for key in ("proj_dim", "width", "layers", "heads", "ff_dim"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(key, "must be a whole number >= 1")
    if options["width"] % options["heads"]:
        raise bad("width", f"must be a multiple of heads ({options['heads']})")
    for key, low, high in (("dropout", 0.0, 1.0), ("lr", 0.0, math.inf)):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
            raise bad(key, f"must be a number in [{low:g}, {high:g})")
    if not isinstance(options["layer_norm"], bool):
        raise bad("layer_norm", "must be true or false")


def accepts(facts: ModelFacts) -> str | None:
    if facts.hidden_states:
        return None
    return ("it does not provide hidden states (its ModelSpec does not declare ModelFacts(hidden_states=True) "
            "with SpeechCTCModel.hidden_states implemented)")


# --------------------------------------------------------------------------- the protocol
def run(request: ProtocolRequest) -> CellOutcome:
    options = request.options
    return train_head_on_frozen_features(
        request,
        lambda shape: Downstream(shape.layers, shape.dim, shape.vocab_size, options),
        kind="hidden_states",
        lr=options["lr"] or None,
        describe=lambda head: {"layer_weights": [round(float(w), 5) for w in head.layer_weights().detach().cpu()]},
    )


@hookimpl
def bench_register_protocols(register) -> None:
    register(ProtocolSpec(
        name="superb",
        run=run,
        version=VERSION,
        description="SUPERB / ML-SUPERB: frozen upstream, learnable weighted sum of its hidden layers, small "
                    "downstream (transformer or BiLSTM) trained with CTC",
        defaults=DEFAULTS,
        check=check,
        accepts=accepts,
    ))
