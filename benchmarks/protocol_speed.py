"""Seconds per update of the two protocols on the same cell: ``finetune`` and ``superb``.

Both run one cell of the default configuration (a tiny model, synthetic speech of one language,
the repository's bench.toml recipe and superb options) in this process, one after the other,
and print what their records say: time per update, the one-off pass that caches encoder
outputs (finetune) or hidden states (superb), evaluation, trainable parameters and test CER.

    python benchmarks/protocol_speed.py                      # tiny-wav2vec2, es, 150 updates
    python benchmarks/protocol_speed.py --model tiny-phone-es --steps 300 --json out.json

A pre-trained model (tiny-phone-*) must be in the cache already (``bench pretrain``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-wav2vec2")
    parser.add_argument("--lang", default="es")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "bench.toml"))
    parser.add_argument("--train-minutes", type=float, help="synthetic training speech (default: bench.toml's)")
    parser.add_argument("--cache-dir", help="run.cache_dir (default: bench.toml's, $BENCH_CACHE_DIR)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    import dataclasses

    from harness.api import ProtocolRequest
    from harness.plan.config import load_config
    from harness.plan.planner import dataset_request, model_cache_dir, resolve_models, resolve_protocols
    from harness.plugins import load_registry
    from harness.engine.scoring import score

    overrides: dict = {"run": {"models": [args.model], "protocols": ["finetune", "superb"]},
                       "train": {"steps": args.steps}}
    if args.cache_dir:
        overrides["run"]["cache_dir"] = args.cache_dir
    if args.train_minutes:
        overrides["datasets"] = {"synthetic": {"train_minutes": args.train_minutes,
                                               "dev_minutes": args.train_minutes / 4,
                                               "test_minutes": args.train_minutes / 4}}
    config = load_config(args.config, overrides=overrides)
    registry = load_registry()
    (model, model_options), = resolve_models(config, registry).values()
    data_options = dict(config.dataset_options.get("synthetic", {}))
    data = registry.dataset("synthetic").spec.load(dataset_request(config, "synthetic", args.lang, args.seed,
                                                                   data_options))
    cer = registry.metric("cer").spec
    rows = []
    for name, (protocol, options) in resolve_protocols(config, registry).items():
        request = ProtocolRequest(model.spec.build, data, args.lang, args.seed, config.train,
                                  dataclasses.replace(config.runtime, checkpoint_minutes=0), options, model_options,
                                  model_cache_dir=model_cache_dir(config))
        start = time.perf_counter()
        outcome = protocol.spec.run(request)
        wall = time.perf_counter() - start
        info = outcome.train_info
        rows.append({
            "protocol": name, "updates": info["updates"],
            "seconds_per_update": info["train_seconds"] / info["updates"],
            "cache_pass_seconds": info.get("encode_seconds", 0.0),
            "eval_seconds": sum(info["eval_seconds"].values()),
            "trainable_parameters": info["trainable_parameters"],
            "cell_seconds": wall,
            "test_cer": score([cer], outcome.splits["test"].hypotheses)["cer"],
        })
    print(f"{args.model}, synthetic {args.lang}, seed {args.seed}, {args.steps} updates, "
          f"{config.train.batch_seconds:g} s batches")
    print(f"{'protocol':10} {'s/update':>9} {'cache pass s':>13} {'eval s':>7} {'trainable':>10} {'cell s':>7} "
          f"{'test CER':>9}")
    for r in rows:
        print(f"{r['protocol']:10} {r['seconds_per_update']:9.3f} {r['cache_pass_seconds']:13.1f} "
              f"{r['eval_seconds']:7.1f} {r['trainable_parameters']:10,d} {r['cell_seconds']:7.1f} {r['test_cer']:9.3f}")
    if len(rows) == 2:
        print(f"superb updates are {rows[0]['seconds_per_update'] / rows[1]['seconds_per_update']:.2f}x as fast "
              "as finetune's")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
