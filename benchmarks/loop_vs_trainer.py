"""bench's fine-tune loop against the standard recipe: transformers' Trainer with CTC padding.

Both arms do the same work: the same tiny model (same initial weights), the same synthetic
speech and vocabulary, the same number of updates, the same optimiser and tri-stage schedule,
the same gradient clipping, about the same effective batch (the Trainer gets as many
utterances per batch as bench's duration batches hold on average) and the same seed. The
baseline follows the official speech-recognition CTC example: a collator that pads audio and
labels per batch (labels padded with -100), the feature encoder frozen with
``freeze_feature_encoder()``, the feature extractor as processing class, ``Trainer.predict``
for evaluation. Its sampler is the Trainer's default (shuffled); ``--trainer-sampling
group_by_length`` gives the example's length-grouped sampler instead, which on a small
training set puts the whole set in one mega-batch and so visits it longest-to-shortest every
epoch (measured here: dev CER 0.82 against 0.67 shuffled at 400 updates, seed 0). Each arm
runs in its own fresh process, one after the other, so peak memory is its own.

Printed for each arm: training throughput (seconds of audio per second of wall time, from
the start of training to its end, including bench's one-off feature-cache pass), padding
fraction, peak memory (RSS on CPU, allocated on CUDA), evaluation throughput on dev, final
training loss and dev CER; then the throughput ratio.

    python benchmarks/loop_vs_trainer.py                       # 1000 updates, German, CPU
    python benchmarks/loop_vs_trainer.py --steps 400 --lang es --device cuda

Needs ``accelerate`` for the Trainer (``pip install -e '.[benchmarks]'``). The two arms live in
``benchmarks/arms.py`` (shared with ``real_scale.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


from arms import data as _data  # noqa: E402  (the arms are shared with real_scale.py)
from arms import in_fresh_process as _in_fresh_process  # noqa: E402
from arms import run_bench, run_trainer  # noqa: E402,F401


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-wav2vec2")
    parser.add_argument("--lang", default="de")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-seconds", type=float, default=16.0)
    parser.add_argument("--eval-batch-seconds", type=float, default=60.0)
    parser.add_argument("--train-minutes", type=float, default=8.0)
    parser.add_argument("--dev-minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--cache-dir", default=None, help="bench cache (default: $BENCH_CACHE_DIR or ~/.cache/bench)")
    parser.add_argument("--scratch", default=None, help="directory for the Trainer's output (default: a temp dir)")
    parser.add_argument("--trainer-sampling", default="random", choices=["random", "group_by_length"],
                        help="the baseline's sampler: shuffled (the Trainer's default) or length-grouped "
                             "(group_by_length of the CTC example)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        args.scratch = args.scratch or scratch
        _data(args)  # synthesise (or load) once, outside both measurements
        results = {arm: _in_fresh_process(arm, args) for arm in ("bench", "trainer")}

    from tabulate import tabulate

    b, t = results["bench"], results["trainer"]
    rows = [
        ["training throughput (s of audio / s)", f"{b['train_audio_per_s']:.1f}", f"{t['train_audio_per_s']:.1f}"],
        ["training wall time (s)", f"{b['train_seconds']:.1f}", f"{t['train_seconds']:.1f}"],
        ["padding fraction", f"{b['padding']:.3f}", f"{t['padding']:.3f}"],
        ["peak memory (MiB, " + ("GPU" if b["device"].startswith("cuda") else "RSS") + ")",
         f"{b['peak_mib']:.0f}", f"{t['peak_mib']:.0f}"],
        ["evaluation throughput (s of audio / s)", f"{b['eval_audio_per_s']:.1f}", f"{t['eval_audio_per_s']:.1f}"],
        ["final training loss (per character)", f"{b['loss_curve'][-1]:.3f}", f"{t['loss_curve'][-1]:.3f}"],
        ["final dev CER", f"{b['dev_cer']:.3f}", f"{t['dev_cer']:.3f}"],
    ]
    print(f"{args.model} on synthetic {args.lang}: {args.steps} updates, {args.batch_seconds:g} s batches "
          f"(Trainer: {t['batch_size']} utterances, {args.trainer_sampling} sampling), seed {args.seed}, "
          f"{b['device']}, {b['precision']}")
    print(tabulate(rows, headers=["", "bench loop", "Trainer baseline"], disable_numparse=True))
    ratio = b["train_audio_per_s"] / t["train_audio_per_s"]
    print(f"\ntraining throughput ratio (bench / Trainer): {ratio:.2f}x; "
          f"dev CER difference: {b['dev_cer'] - t['dev_cer']:+.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "ratio": ratio, "args": vars(args)}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    raise SystemExit(main())
