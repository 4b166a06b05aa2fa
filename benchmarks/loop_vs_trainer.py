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

Needs ``accelerate`` for the Trainer (``pip install -e '.[benchmarks]'``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------- shared set-up
def _data(args):
    from harness.api import DatasetRequest
    from harness.config import default_cache_dir
    from harness.plugins import load_registry

    spec = load_registry().dataset("synthetic").spec
    options = {"train_minutes": args.train_minutes, "dev_minutes": args.dev_minutes, "test_minutes": 0.2}
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    return spec.load(DatasetRequest(args.lang, args.seed, options, cache / "datasets" / "synthetic"))


def _settings(args):
    from harness.config import RuntimeSettings, TrainSettings

    train = TrainSettings(steps=args.steps, lr=args.lr, batch_seconds=args.batch_seconds, mask_time_prob=0.0)
    runtime = RuntimeSettings(device=args.device, precision=args.precision)
    return train, runtime


def _builder(args):
    from harness.plugins import load_registry

    return load_registry().model(args.model).spec.build


def _peak_memory_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cer_metric():
    from harness.plugins import load_registry

    return load_registry().metric("cer").spec


# --------------------------------------------------------------------------- bench's loop
def run_bench(args) -> dict:
    from harness.device import resolve_device
    from harness.train import fine_tune_and_evaluate

    data = _data(args)
    train, runtime = _settings(args)
    device = resolve_device(args.device)
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)
    outcome = fine_tune_and_evaluate(_builder(args), data, args.lang, args.seed, train, runtime, [_cer_metric()])
    info = outcome.train_info
    train_wall = info.get("encode_seconds", 0.0) + info["train_seconds"]
    dev = outcome.splits["dev"]
    return {
        "train_audio_per_s": info["audio_seconds"] / train_wall,
        "train_seconds": train_wall,
        "padding": info["padding_fraction"],
        "batches": info["batches"],
        "loss_curve": info["loss_curve"],
        "peak_mib": _peak_memory_mib(device),
        "eval_audio_per_s": dev.seconds / info["eval_seconds"]["dev"],
        "dev_cer": dev.metrics["cer"],
        "precision": info["precision"],
        "device": info["device"],
    }


# --------------------------------------------------------------------------- Trainer baseline
class _PaddingCollator:
    """Pads a batch as the CTC example's collator does, and records how much was padding."""

    def __init__(self) -> None:
        self.real = 0
        self.padded = 0

    def __call__(self, features):
        import torch

        audio = [torch.as_tensor(f["input_values"], dtype=torch.float32) for f in features]
        lengths = torch.tensor([len(a) for a in audio])
        longest = int(lengths.max())
        self.real += int(lengths.sum())
        self.padded += longest * len(audio)
        input_values = torch.zeros(len(audio), longest)
        attention_mask = torch.zeros(len(audio), longest, dtype=torch.long)
        for i, a in enumerate(audio):
            input_values[i, : len(a)] = a
            attention_mask[i, : len(a)] = 1
        labels = [torch.as_tensor(f["labels"], dtype=torch.long) for f in features]
        padded_labels = torch.nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=-100)
        return {"input_values": input_values, "attention_mask": attention_mask, "labels": padded_labels}


def _examples(utterances, lang, vocab, normalise: bool, max_seconds: float):
    """Normalised audio, label ids and lengths, keeping what bench's loop keeps."""
    import numpy as np

    from harness.text import normalize

    rows = {"input_values": [], "labels": [], "input_length": []}
    for utt in utterances:
        text = normalize(utt.text, lang)
        ids, _ = vocab.encode(text)
        if not ids or utt.seconds > max_seconds:
            continue
        audio = utt.audio.astype(np.float32)
        if normalise:
            audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
        rows["input_values"].append(audio)
        rows["labels"].append(ids)
        rows["input_length"].append(len(audio))
    return rows


def _sampling(strategy: str) -> dict:
    """The Trainer's sampling strategy, spelled as the installed transformers spells it."""
    import inspect

    from transformers import TrainingArguments

    if "train_sampling_strategy" in inspect.signature(TrainingArguments.__init__).parameters:
        return {"train_sampling_strategy": strategy}  # transformers >= 5
    return {"group_by_length": strategy == "group_by_length"}


def run_trainer(args) -> dict:
    import datasets
    import numpy as np
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments, Wav2Vec2FeatureExtractor
    from transformers.utils import logging as hf_logging

    from harness.api import SAMPLING_RATE, ModelRequest
    from harness.batching import duration_batches
    from harness.device import resolve_device, seed_everything
    from harness.schedule import tri_stage_scheduler
    from harness.text import build_vocabulary, greedy_decode, normalize

    hf_logging.set_verbosity_error()
    data = _data(args)
    train, _ = _settings(args)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    vocab = build_vocabulary([t for t in (normalize(u.text, args.lang) for u in data.train) if t.strip()],
                             train.vocab_min_fraction)
    seed_everything(args.seed)
    wrapped = _builder(args)(ModelRequest(vocab_size=len(vocab), blank_id=vocab.blank_id, seed=args.seed,
                                          mask_time_prob=0.0))
    model = wrapped.model
    model.config.ctc_loss_reduction = "mean"  # per-character loss, as bench's sum / characters
    model.config.ctc_zero_infinity = True
    model.freeze_feature_encoder()

    train_rows = _examples(data.train, args.lang, vocab, wrapped.normalize_audio, train.max_seconds)
    dev_rows = _examples(data.dev, args.lang, vocab, wrapped.normalize_audio, float("inf"))
    # the same effective batch: as many utterances as bench's duration batches hold on average
    budget = int(train.batch_seconds * SAMPLING_RATE)
    batches = duration_batches(train_rows["input_length"], budget, np.random.default_rng(args.seed))
    batch_size = max(1, round(len(train_rows["input_length"]) / len(batches)))
    eval_batch = max(1, round(args.eval_batch_seconds * SAMPLING_RATE / np.mean(dev_rows["input_length"])))
    train_set = datasets.Dataset.from_dict(train_rows)
    dev_set = datasets.Dataset.from_dict(dev_rows)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=train.lr)
    scheduler = tri_stage_scheduler(optimizer, train.steps, train.warmup, train.hold)
    collator = _PaddingCollator()
    precision = args.precision if args.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    targs = TrainingArguments(
        output_dir=str(Path(args.scratch) / "trainer"),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch,
        max_steps=train.steps,
        max_grad_norm=train.max_grad_norm,
        length_column_name="input_length",
        **_sampling(args.trainer_sampling),
        logging_steps=max(1, min(25, train.steps)),
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=args.seed,
        use_cpu=device.type == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_num_workers=0,
    )
    # as in the example, the feature extractor is the processing class (it names the model's input)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0,
                                         do_normalize=wrapped.normalize_audio, return_attention_mask=True)
    trainer = Trainer(model=model, args=targs, train_dataset=train_set, data_collator=collator,
                      optimizers=(optimizer, scheduler), processing_class=extractor)
    trainer.remove_callback(PrinterCallback)  # no per-log-step dict printing
    start = time.perf_counter()
    trainer.train()
    train_wall = time.perf_counter() - start
    audio_seconds = collator.real / SAMPLING_RATE
    padding = 1 - collator.real / collator.padded

    start = time.perf_counter()
    prediction = trainer.predict(dev_set)
    eval_wall = time.perf_counter() - start
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    frames = model._get_feat_extract_output_lengths(torch.tensor(dev_rows["input_length"])).tolist()
    hyps = [greedy_decode(np.argmax(logits[i, : frames[i]], axis=-1).tolist(), vocab) for i in range(len(frames))]
    refs = [normalize(u.text, args.lang) for u in data.dev if vocab.encode(normalize(u.text, args.lang))[0]]
    return {
        "train_audio_per_s": audio_seconds / train_wall,
        "train_seconds": train_wall,
        "padding": padding,
        "batch_size": batch_size,
        "loss_curve": [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e],
        "peak_mib": _peak_memory_mib(device),
        "eval_audio_per_s": sum(dev_rows["input_length"]) / SAMPLING_RATE / eval_wall,
        "dev_cer": float(_cer_metric().compute(refs, hyps)),
        "precision": precision,
        "device": str(device),
    }


# --------------------------------------------------------------------------- driver
def _child(arm: str, args, queue) -> None:
    try:
        queue.put(("ok", (run_bench if arm == "bench" else run_trainer)(args)))
    except BaseException as exc:  # reported by the parent
        import traceback

        queue.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def _in_fresh_process(arm: str, args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(arm, args, queue))
    process.start()
    status, payload = queue.get()
    process.join()
    if status != "ok":
        raise SystemExit(f"the {arm} arm failed:\n{payload}")
    return payload


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
