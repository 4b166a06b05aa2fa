"""bench's loop against the Trainer at the study's real model sizes: speed, padding, memory, cost.

For each architecture (random weights, no hub needed) and batch size, three arms do the same
work, each in a fresh process: bench's loop, and the Trainer baseline of loop_vs_trainer.py
(``benchmarks/arms.py``) with its two samplers — shuffled (the Trainer's default) and
``group_by_length`` (as the transformers CTC example uses it). Both get the same precision
(``--precision``; auto = bf16 autocast on CUDA, fp32 on the CPU) and the same Adam (fused, as
any user would set it: ``--fused on``; ``--fused auto`` gives bench's default, fused on CUDA only).

Printed per arm: seconds per update in the steady state (the median of the updates after
``--warmup``, robust to other jobs on a shared machine; the JSON also has the mean, and the
table the spread of single updates), seconds of audio per second in the steady
state and over the whole run (bench's one-off feature-cache pass included), padding, peak
memory (RSS on CPU, allocated on CUDA) and dev CER; per configuration the ratio of bench's
steady-state throughput to the better Trainer arm's. Then the study's cost: FLOPs per update
counted from the architecture (``harness.plan.cost``), the FLOP rate achieved here, and the
``paper`` matrix (864 fine-tunes) in GPU-hours — from the FLOP count at an assumed MFU, and on
CUDA from the seconds per update measured here, which are also written to
``<cache_dir>/cost/measured.json`` where ``bench run --dry-run`` finds them.

    python benchmarks/real_scale.py                      # CPU: a few updates at small batches (minutes)
    python benchmarks/real_scale.py --device cuda        # the paper's 200 s batch and smaller ones
    python benchmarks/real_scale.py --archs large --batch-seconds 200 --steps 60 --json out.json

From a few updates of random weights every arm's CER is 1.000: equal CER is shown at real
size only in that trivial sense (loop_vs_trainer.py checks it on the tiny model after 1000
updates). Layer drop is off (``--layerdrop``) so that every update runs every layer.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from arms import RANDOM_BASE, data, in_fresh_process, steady_state  # noqa: E402

#: architecture -> the model that has it (random weights)
ARCH_MODELS = {"large": "no-pretraining", "base": RANDOM_BASE, "tiny": "tiny-wav2vec2"}
#: arm -> (which runner, the Trainer's sampler)
ARMS = {"bench": ("bench", "random"), "trainer": ("trainer", "random"),
        "trainer-grouped": ("trainer", "group_by_length")}
#: the paper preset's matrix
PAPER_CELLS, PAPER_STEPS, PAPER_BATCH, PAPER_TRAIN_HOURS = 16 * 18 * 3, 4000, 200.0, 5.0
#: dense bf16 peaks of GPUs this may run on (for the MFU of a measured run)
PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


def _defaults(args, cuda: bool) -> None:
    if args.archs is None:
        args.archs = "large,base"
    if args.batch_seconds is None:
        args.batch_seconds = "200,50" if cuda else "8"
    if args.steps is None:
        args.steps = 40 if cuda else 5
    if args.warmup is None:
        args.warmup = 10 if cuda else 2


def _configurations(args) -> list[tuple[str, float]]:
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for arch in archs:
        if arch not in ARCH_MODELS:
            raise SystemExit(f"unknown architecture {arch!r}: choose from {', '.join(ARCH_MODELS)}")
    batches = [float(b) for b in args.batch_seconds.split(",") if b.strip()]
    return [(arch, batch) for arch in archs for batch in batches]


def _arm_args(args, arch: str, batch: float, arm: str):
    one = copy.copy(args)
    one.model = ARCH_MODELS[arch]
    one.batch_seconds = batch
    one.trainer_sampling = ARMS[arm][1]
    # enough speech for every update to see new utterances (as in a real run's first epoch)
    one.train_minutes = args.train_minutes or max(1.0, math.ceil(args.steps * batch * 1.1 / 60))
    one.model_options = {"layerdrop": args.layerdrop}
    return one


def _row(arch: str, batch: float, arm: str, figures: dict, warmup: int) -> dict:
    from harness.plan.cost import ARCHITECTURES, DEFAULT_UTTERANCE_SECONDS

    steady = steady_state(figures["update_times"], warmup)
    updates = len(figures["update_times"])
    audio_per_update = figures["audio_seconds"] / max(updates, 1)
    padded_per_update = audio_per_update / max(1e-9, 1 - figures["padding"])
    a = ARCHITECTURES[arch]
    update_flops = 3 * padded_per_update * a.frames_per_second * a.forward_flops_per_frame(
        DEFAULT_UTTERANCE_SECONDS * a.frames_per_second)
    return {
        "architecture": arch, "batch_seconds": batch, "arm": arm, "updates": updates,
        **steady,
        # the median update: robust to other jobs on a shared machine (on a GPU the two agree)
        "steady_audio_per_s": audio_per_update / steady["median_seconds_per_update"],
        "whole_audio_per_s": figures["train_audio_per_s"],
        "audio_seconds_per_update": audio_per_update,
        "update_flops": update_flops,
        "achieved_flops_per_s": update_flops / steady["median_seconds_per_update"],
        **{k: figures[k] for k in ("padding", "peak_mib", "dev_cer", "eval_audio_per_s", "encode_seconds",
                                   "train_seconds", "precision", "device", "device_name", "parameters",
                                   "trainable_parameters", "fused_optimizer", "loss_curve", "update_times")},
        **({"trainer_batch_size": figures["batch_size"]} if "batch_size" in figures else {}),
    }


def data_path(args, arch: str, batch: float, updates: int = 8) -> dict:
    """Host seconds per update spent making a batch, without any model: the Trainer's (Arrow rows
    through its shuffled sampler into the padding collator, as its dataloader does with no
    workers) and bench's (encoder outputs, cached once, padded into a batch; random values of the
    right shapes here). On a GPU the Trainer's share cannot overlap the device's work: its loop
    synchronises on every update (it checks the loss for NaN/inf on the host)."""
    import time

    import datasets
    import numpy as np
    import torch

    from arms import _examples
    from harness.api import SAMPLING_RATE
    from harness.engine.batching import duration_batches, endless_batches, pad_stack
    from harness.plan.cost import ARCHITECTURES
    from harness.engine.text import build_vocabulary, normalize

    one = _arm_args(args, arch, batch, "trainer")
    corpus = data(one)
    vocab = build_vocabulary([t for t in (normalize(u.text, args.lang) for u in corpus.train) if t.strip()], 1e-5)
    rows = _examples(corpus.train, args.lang, vocab, True, 30.0)
    lengths = rows["input_length"]
    budget = int(batch * SAMPLING_RATE)
    batch_size = max(1, round(len(lengths) / len(duration_batches(lengths, budget, np.random.default_rng(0)))))
    from arms import _PaddingCollator

    loader = torch.utils.data.DataLoader(datasets.Dataset.from_dict(rows), batch_size=batch_size, shuffle=True,
                                         collate_fn=_PaddingCollator(), num_workers=0)
    start, done = time.perf_counter(), 0
    while done < updates:
        for _ in loader:
            done += 1
            if done == updates:
                break
    trainer_seconds = (time.perf_counter() - start) / updates

    a = ARCHITECTURES[arch]
    frames = [int(n / SAMPLING_RATE * a.frames_per_second) for n in lengths]
    cache = [torch.randn(f, a.conv_dim[-1]).to(torch.bfloat16) for f in frames]  # as autocast leaves them
    labels = [torch.tensor(ids) for ids in rows["labels"]]
    batches = endless_batches(lengths, budget, 0)
    start = time.perf_counter()
    for _ in range(updates):
        b = next(batches)
        pad_stack([cache[i] for i in b])
        torch.cat([labels[i] for i in b])
        torch.tensor([frames[i] for i in b]), torch.tensor([len(labels[i]) for i in b])
    bench_seconds = (time.perf_counter() - start) / updates
    return {"architecture": arch, "batch_seconds": batch, "trainer_batch_size": batch_size,
            "trainer_host_seconds_per_update": trainer_seconds, "bench_host_seconds_per_update": bench_seconds}


def _comparisons(rows: list[dict]) -> list[dict]:
    out = []
    for arch, batch in dict.fromkeys((r["architecture"], r["batch_seconds"]) for r in rows):
        group = {r["arm"]: r for r in rows if (r["architecture"], r["batch_seconds"]) == (arch, batch)}
        trainers = [r for name, r in group.items() if name != "bench"]
        if "bench" not in group or not trainers:
            continue
        b = group["bench"]
        best = max(trainers, key=lambda r: r["steady_audio_per_s"])
        best_whole = max(trainers, key=lambda r: r["whole_audio_per_s"])
        out.append({"architecture": arch, "batch_seconds": batch, "better_trainer_arm": best["arm"],
                    "steady_ratio": b["steady_audio_per_s"] / best["steady_audio_per_s"],
                    "whole_run_ratio": b["whole_audio_per_s"] / best_whole["whole_audio_per_s"],
                    "dev_cer": {name: r["dev_cer"] for name, r in group.items()}})
    return out


def _cost(rows: list[dict], cache_dir: Path | None, save: bool) -> dict:
    from harness.plan.cost import DEFAULT_EVAL_HOURS, DEFAULT_MFU, GPUS, LARGE, cell_cost, save_measured

    paper = cell_cost(LARGE, PAPER_STEPS, PAPER_BATCH, PAPER_TRAIN_HOURS)
    out = {
        "paper_cells": PAPER_CELLS,
        "flops_per_update": paper.update_flops,
        "flops_per_cell": paper.flops,
        "assumed_mfu": DEFAULT_MFU,
        "eval_hours_per_cell": DEFAULT_EVAL_HOURS,
        "estimate": {g.name: {"gpu_hours_per_cell": paper.gpu_seconds(g) / 3600,
                              "gpu_hours_paper": PAPER_CELLS * paper.gpu_seconds(g) / 3600} for g in GPUS},
    }
    bench_rows = [r for r in rows if r["arm"] == "bench" and r["architecture"] == "large"]
    if bench_rows:
        biggest = max(bench_rows, key=lambda r: r["batch_seconds"])
        rate = biggest["achieved_flops_per_s"]
        seconds = paper.flops / rate
        out["this_device"] = {
            "device": biggest["device_name"], "from_batch_seconds": biggest["batch_seconds"],
            "achieved_flops_per_s": rate,
            "measured_at_paper_batch": biggest["batch_seconds"] == PAPER_BATCH,
            "hours_per_cell": seconds / 3600, "hours_paper": PAPER_CELLS * seconds / 3600,
        }
        if biggest["batch_seconds"] == PAPER_BATCH:  # measured, not extrapolated from the FLOP rate
            per_cell = (PAPER_STEPS * biggest["seconds_per_update"] + paper.encode_flops / rate
                        + DEFAULT_EVAL_HOURS * 3600 / biggest["eval_audio_per_s"])
            out["this_device"].update(hours_per_cell=per_cell / 3600, hours_paper=PAPER_CELLS * per_cell / 3600)
        peak = next((v for k, v in PEAKS.items() if k in biggest["device_name"]), None)
        if peak:
            out["this_device"]["mfu"] = rate / peak
    if save and cache_dir is not None:
        measured = [{"architecture": r["architecture"], "batch_seconds": r["batch_seconds"],
                     "seconds_per_update": r["seconds_per_update"], "eval_audio_per_second": r["eval_audio_per_s"],
                     "device": r["device_name"], "precision": r["precision"],
                     "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
                    for r in rows if r["arm"] == "bench"]
        if measured:
            out["saved_to"] = str(save_measured(cache_dir, measured))
    return out


def _print(rows: list[dict], comparisons: list[dict], cost: dict, args) -> None:
    from tabulate import tabulate

    device = rows[0]["device_name"] if rows else "?"
    print(f"real scale on {device} ({rows[0]['precision'] if rows else '?'}), synthetic {args.lang}, seed {args.seed}: "
          f"{args.steps} updates per arm, steady state after {args.warmup}; layer drop {args.layerdrop:g}")
    memory = "GPU MiB" if rows and rows[0]["device"].startswith("cuda") else "RSS MiB"
    table = [[r["architecture"], f"{r['parameters'] / 1e6:.0f}M", f"{r['batch_seconds']:g}", r["arm"]
              + (f" ({r['trainer_batch_size']}/batch)" if "trainer_batch_size" in r else ""),
              f"{r['median_seconds_per_update']:.3f} ±{r['spread']:.0%}", f"{r['steady_audio_per_s']:.2f}",
              f"{r['whole_audio_per_s']:.2f}", f"{r['padding']:.3f}", f"{r['peak_mib']:.0f}",
              f"{r['achieved_flops_per_s'] / 1e12:.2f}", f"{r['dev_cer']:.3f}"] for r in rows]
    print(tabulate(table, headers=["arch", "params", "batch s", "arm", "s/update (steady)", "audio s/s steady",
                                   "audio s/s whole run", "padding", memory, "TFLOP/s", "dev CER"],
                   disable_numparse=True))
    print()
    for c in comparisons:
        print(f"{c['architecture']} at {c['batch_seconds']:g} s: bench / better Trainer arm ({c['better_trainer_arm']}) "
              f"= {c['steady_ratio']:.2f}x steady state, {c['whole_run_ratio']:.2f}x whole run; dev CER "
              + ", ".join(f"{k} {v:.3f}" for k, v in c["dev_cer"].items()))
    print(f"\nthe study's cost (preset paper: {cost['paper_cells']} fine-tunes of the large architecture, "
          f"{PAPER_STEPS} updates of {PAPER_BATCH:g} s, {PAPER_TRAIN_HOURS:g} h of training audio, "
          f"{cost['eval_hours_per_cell']:g} h of dev+test decoded per cell):")
    print(f"  FLOPs counted from the architecture: {cost['flops_per_update']:.3g} per update, "
          f"{cost['flops_per_cell']:.3g} per cell")
    for gpu, e in cost["estimate"].items():
        print(f"  {gpu} at an assumed {cost['assumed_mfu']:.0%} MFU: {e['gpu_hours_per_cell']:.3f} GPU-hours per cell, "
              f"{e['gpu_hours_paper']:.0f} GPU-hours for the matrix")
    here = cost.get("this_device")
    if here:
        how = ("measured at the paper's batch" if here["measured_at_paper_batch"] else
               f"extrapolated from the FLOP rate of bench's loop at {here['from_batch_seconds']:g} s batches")
        mfu = f", MFU {here['mfu']:.0%}" if "mfu" in here else ""
        print(f"  on this device ({here['device']}, {here['achieved_flops_per_s'] / 1e12:.2f} TFLOP/s{mfu}; {how}): "
              f"{here['hours_per_cell']:.2f} hours per cell, {here['hours_paper']:.0f} device-hours for the matrix")
    if cost.get("saved_to"):
        print(f"  measured figures saved to {cost['saved_to']} (bench run --dry-run uses them)")


def _print_paths(paths: list[dict], archs: list[str]) -> None:
    """The host side of an update, and what it means on a GPU (a projection, labelled so)."""
    from harness.plan.cost import ARCHITECTURES, DEFAULT_MFU, DEFAULT_UTTERANCE_SECONDS, GPUS

    if not paths:
        return
    print("\nhost time per update making the batch, on this CPU (no model; the Trainer's dataloader without "
          "workers, as its default; bench padding its cached encoder outputs, which on a GPU is a device copy):")
    for p in paths:
        print(f"  {p['architecture']} at {p['batch_seconds']:g} s: Trainer {p['trainer_host_seconds_per_update']:.3f} s "
              f"({p['trainer_batch_size']} utterances), bench {p['bench_host_seconds_per_update']:.4f} s")
        for arch in archs:
            a = ARCHITECTURES[arch]
            fps = a.frames_per_second
            update = 3 * p["batch_seconds"] * fps * a.forward_flops_per_frame(DEFAULT_UTTERANCE_SECONDS * fps)
            encoder = a.encoder_flops_per_second() * p["batch_seconds"]  # the Trainer encodes on every update
            for gpu in GPUS:
                rate = gpu.peak_bf16 * DEFAULT_MFU
                bench_s = update / rate
                trainer_s = (update + encoder) / rate + p["trainer_host_seconds_per_update"]
                p.setdefault("projection", {}).setdefault(arch, {})[gpu.name] = {"bench": bench_s,
                                                                                  "trainer": trainer_s}
                print(f"    {arch} on {gpu.name} at {DEFAULT_MFU:.0%} MFU, a projection (not a measurement): bench "
                      f"{bench_s:.3f} s, Trainer >= {trainer_s:.3f} s per update (its encoder pass plus this host "
                      f"time, which its per-update synchronisation keeps from overlapping): {trainer_s / bench_s:.1f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", help="comma-separated: large (no-pretraining), base, tiny (default large,base)")
    parser.add_argument("--batch-seconds", help="comma-separated padded seconds per batch "
                                                "(default: 8 on CPU; 200,50 on CUDA)")
    parser.add_argument("--steps", type=int, help="updates per arm (default: 5 on CPU, 40 on CUDA)")
    parser.add_argument("--warmup", type=int, help="updates left out of the steady state (default: 2 on CPU, 10 on CUDA)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--fused", default="on", choices=["auto", "on", "off"],
                        help="fused Adam for every arm (default on: a switch any user would set; auto: bench's "
                             "default, fused on CUDA only)")
    parser.add_argument("--trainer-workers", type=int, default=0,
                        help="dataloader worker processes of the Trainer arms (default 0, the Trainer's default)")
    parser.add_argument("--layerdrop", type=float, default=0.0)
    parser.add_argument("--lang", default="de")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=6e-5, help="the paper's")
    parser.add_argument("--eval-batch-seconds", type=float, default=60.0)
    parser.add_argument("--train-minutes", type=float, default=None,
                        help="synthetic training speech (default: what the updates consume, at least 1)")
    parser.add_argument("--dev-minutes", type=float, default=0.25)
    parser.add_argument("--cache-dir", default=None, help="bench cache (default: $BENCH_CACHE_DIR or ~/.cache/bench)")
    parser.add_argument("--save-measured", default="auto", choices=["auto", "yes", "no"],
                        help="write the loop's figures to <cache_dir>/cost/measured.json (auto: on CUDA)")
    parser.add_argument("--data-path-batch", default="200",
                        help="batch seconds at which to time the host side of an update without a model "
                             "(comma-separated; empty: skip)")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from harness.plan.config import default_cache_dir
    from harness.engine.device import resolve_device

    device = resolve_device(args.device)
    _defaults(args, device.type == "cuda")
    configurations = _configurations(args)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    for arm in arms:
        if arm not in ARMS:
            raise SystemExit(f"unknown arm {arm!r}: choose from {', '.join(ARMS)}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        args.scratch = scratch
        for arch, batch in configurations:
            one = _arm_args(args, arch, batch, "bench")
            data(one)  # synthesise (or load) once, outside every measurement
            for arm in arms:
                figures = in_fresh_process(ARMS[arm][0], _arm_args(args, arch, batch, arm))
                rows.append(_row(arch, batch, arm, figures, args.warmup))
                print(f"  {arch} {batch:g} s {arm}: {rows[-1]['seconds_per_update']:.3f} s/update", file=sys.stderr,
                      flush=True)
        # the Trainer's host side does not depend on the model, bench's only on the encoder's width
        paths = [data_path(args, configurations[0][0], batch)
                 for batch in [float(b) for b in args.data_path_batch.split(",") if b.strip()]]
    comparisons = _comparisons(rows)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    save = args.save_measured == "yes" or (args.save_measured == "auto" and device.type == "cuda")
    cost = _cost(rows, cache_dir, save)
    _print(rows, comparisons, cost, args)
    _print_paths(paths, list(dict.fromkeys(a for a, _ in configurations)))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "comparisons": comparisons, "cost": cost,
                                               "data_path": paths, "args": vars(args),
                                               "torch": torch.__version__}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    raise SystemExit(main())
