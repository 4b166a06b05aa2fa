"""Short cells of the built-in protocols whose numbers the engine must keep exactly.

``python tests/golden_cells.py`` records them in ``tests/data/engine_golden.json`` (with the CPU
and torch version they were computed on); ``tests/test_engine.py`` recomputes them and compares.
They were recorded with the loop before it became the public engine, so the test shows that
rewriting the protocols on the engine changed no loss value and no hypothesis.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "data" / "engine_golden.json"

CASES = {
    "finetune-cached": ("finetune", {"feature_cache": "on"}, {}),
    "finetune-unfrozen": ("finetune", {"feature_cache": "off"}, {"freeze_feature_encoder": False}),
    "superb-transformer": ("superb", {"feature_cache": "on"}, {}),
    "superb-lstm-uncached": ("superb", {"feature_cache": "off"}, {}),
}


def tiny_splits():
    from harness.api import DatasetSplits, Utterance

    rng = np.random.default_rng(0)
    words = ["ab", "ba", "abba", "baab", "aab"]

    def utterances(n, offset):
        out = []
        for i in range(n):
            text = " ".join(words[(i + j + offset) % len(words)] for j in range(2))
            out.append(Utterance(f"u{offset}-{i}", rng.normal(0, 0.3, 16000 + 800 * (i % 5)).astype(np.float32), text))
        return out

    return DatasetSplits(utterances(12, 0), utterances(4, 1), utterances(4, 2))


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} | torch {torch.__version__}"


def compute(case: str) -> dict:
    import dataclasses

    from harness.api import ProtocolRequest
    from harness.plan.config import RuntimeSettings, TrainSettings
    from harness.plugins import load_registry
    from plugins.models.hf import build_tiny

    protocol, runtime_changes, train_changes = CASES[case]
    registry = load_registry()
    spec = registry.protocol(protocol).spec
    options = dict(spec.defaults)
    if protocol == "superb":
        options.update(width=32, ff_dim=64, proj_dim=16, downstream="lstm" if "lstm" in case else "transformer")
    train = dataclasses.replace(TrainSettings(steps=50, batch_seconds=3.0, lr=3e-3), **train_changes)
    runtime = RuntimeSettings(device="cpu", threads=1, **runtime_changes)
    request = ProtocolRequest(build_model=lambda r: build_tiny("wav2vec2", r), data=tiny_splits(), language="de",
                              seed=3, train=train, runtime=runtime, options=options)
    outcome = spec.run(request)
    info = outcome.train_info
    info = info if isinstance(info, dict) else dataclasses.asdict(info)
    hyps = {name: list(map(list, out.hypotheses)) for name, out in outcome.splits.items()}
    return {
        "loss_curve": info["loss_curve"],
        "layer_weights": info.get("layer_weights"),
        "vocabulary": list(outcome.vocabulary),
        "hypotheses": hyps,
        "hypotheses_sha256": hashlib.sha256(json.dumps(hyps, sort_keys=True).encode()).hexdigest(),
    }


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    results = {case: compute(case) for case in CASES}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"machine": machine(), "cases": results}, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({c: r["loss_curve"] for c, r in results.items()}), file=sys.stderr)
