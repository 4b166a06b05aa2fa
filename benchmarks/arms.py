"""The two arms of bench's speed comparisons, shared by loop_vs_trainer.py and real_scale.py.

``run_bench`` trains and decodes with bench's loop (``harness.engine.fine_tune_and_evaluate``);
``run_trainer`` does the same work through ``transformers.Trainer`` written like the official
CTC fine-tuning example (padding collator with labels padded to -100, frozen feature encoder,
feature extractor as processing class, ``Trainer.predict`` for evaluation). Both get the same
model and initial weights, synthetic speech, vocabulary, updates, optimiser, tri-stage schedule,
clipping, effective batch and seed; ``in_fresh_process`` runs one arm in a fresh process so its
peak memory is its own.

Both arms also time every update (``update_times``: seconds since the start of training at the
end of each update; on CUDA after a synchronisation), from which :func:`steady_state` gives the
time per update after warm-up, apart from one-off costs such as bench's feature-cache pass.

The ``args`` namespace: model, lang, seed, steps, lr, batch_seconds, eval_batch_seconds,
train_minutes, dev_minutes, device, precision, cache_dir, scratch, trainer_sampling; optional:
fused ("auto", "on", "off": fused Adam, for both arms alike), model_options (dict),
data_options (dict, extra options of the synthetic dataset), trainer_workers (the Trainer's
dataloader workers, default 0 as the Trainer's own default).
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: a pseudo model name: the wav2vec 2.0 base architecture with random weights (95 M parameters)
RANDOM_BASE = "random-base"
BASE_CONFIG = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "feat_extract_norm": "group", "do_stable_layer_norm": False, "conv_bias": False,
    "conv_dim": (512,) * 7, "conv_kernel": (10, 3, 3, 3, 3, 2, 2), "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16, "feat_proj_dropout": 0.1,
    "hidden_dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0, "layerdrop": 0.1,
}


# --------------------------------------------------------------------------- shared set-up
def data(args):
    from harness.api import DatasetRequest
    from harness.plan.config import default_cache_dir
    from harness.plugins import load_registry

    spec = load_registry().dataset("synthetic").spec
    options = {"train_minutes": args.train_minutes, "dev_minutes": args.dev_minutes, "test_minutes": 0.2,
               **(getattr(args, "data_options", None) or {})}
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    return spec.load(DatasetRequest(args.lang, args.seed, options, cache / "datasets" / "synthetic"))


def settings(args):
    from harness.plan.config import RuntimeSettings, TrainSettings

    train = TrainSettings(steps=args.steps, lr=args.lr, batch_seconds=args.batch_seconds, mask_time_prob=0.0)
    runtime = RuntimeSettings(device=args.device, precision=args.precision, checkpoint_minutes=0,
                              fused_optimizer=getattr(args, "fused", "auto"))
    return train, runtime


def _build_random_base(request):
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    from plugins.models.kit import HFCTCModel, hf_config_kwargs

    config = Wav2Vec2Config(**{**BASE_CONFIG, **hf_config_kwargs(request)})
    return HFCTCModel(Wav2Vec2ForCTC(config), normalize_audio=True)


def builder(args):
    if args.model == RANDOM_BASE:
        return _build_random_base
    from harness.plugins import load_registry

    return load_registry().model(args.model).spec.build


def peak_memory_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cer_metric():
    from harness.plugins import load_registry

    return load_registry().metric("cer").spec


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steady_state(update_times: list[float], warmup: int) -> dict:
    """Seconds per update after ``warmup`` updates: mean (what throughput follows), median, and
    the spread of single updates (relative standard deviation)."""
    ends = list(update_times)
    durations = [b - a for a, b in zip([0.0] + ends[:-1], ends)]
    steady = durations[warmup:] if len(durations) > warmup else durations[-1:]
    mean = sum(steady) / len(steady)
    return {"seconds_per_update": mean, "median_seconds_per_update": statistics.median(steady),
            "spread": statistics.pstdev(steady) / mean if len(steady) > 1 and mean else 0.0,
            "measured_updates": len(steady), "first_update_seconds": durations[0] if durations else 0.0}


class _UpdateClock:
    """Stands in for :class:`harness.run.progress.Progress`: notes the time at the end of every
    training update (``fit`` advances its "train" stage once per update)."""

    def __init__(self, device) -> None:
        self.device = device
        self.start: float | None = None
        self.times: list[float] = []

    def stage(self, name: str, total: int):
        clock = self

        class _Stage:
            def advance(self, n: int = 1) -> None:
                if name == "train":
                    _sync(clock.device)
                    clock.times.extend([time.perf_counter() - clock.start] * n)

            def set_postfix(self, **values) -> None:
                pass

        if name == "train":
            _sync(self.device)
            self.start = time.perf_counter()
        return _Stage()

    def log(self, line: str) -> None:
        pass


# --------------------------------------------------------------------------- bench's loop
def run_bench(args) -> dict:
    import torch

    from harness.engine.device import resolve_device
    from harness.engine import fine_tune_and_evaluate

    corpus = data(args)
    train, runtime = settings(args)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    clock = _UpdateClock(device)
    outcome = fine_tune_and_evaluate(builder(args), corpus, args.lang, args.seed, train, runtime, [cer_metric()],
                                     model_options=getattr(args, "model_options", None), progress=clock)
    info = outcome.train_info
    train_wall = info.get("encode_seconds", 0.0) + info["train_seconds"]
    dev = outcome.splits["dev"]
    return {
        "train_audio_per_s": info["audio_seconds"] / train_wall,
        "train_seconds": train_wall,
        "encode_seconds": info.get("encode_seconds", 0.0),
        "audio_seconds": info["audio_seconds"],
        "update_times": clock.times,
        "padding": info["padding_fraction"],
        "batches": info["batches"],
        "loss_curve": info["loss_curve"],
        "peak_mib": peak_memory_mib(device),
        "eval_audio_per_s": dev.seconds / info["eval_seconds"]["dev"],
        "dev_cer": dev.metrics["cer"],
        "precision": info["precision"],
        "device": info["device"],
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "parameters": info["parameters"],
        "trainable_parameters": info["trainable_parameters"],
        "fused_optimizer": runtime.fused_optimizer == "on" or (runtime.fused_optimizer == "auto"
                                                               and device.type == "cuda"),
    }


# --------------------------------------------------------------------------- Trainer baseline
class _PaddingCollator:
    """Pads a batch as the CTC example's collator does, and records each batch's real and padded
    samples (the dataloader may collate a batch ahead of the one being trained on)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int]] = []

    def __call__(self, features):
        import torch

        audio = [torch.as_tensor(f["input_values"], dtype=torch.float32) for f in features]
        lengths = torch.tensor([len(a) for a in audio])
        longest = int(lengths.max())
        self.batches.append((int(lengths.sum()), longest * len(audio)))
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

    from harness.engine.text import normalize

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
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments, Wav2Vec2FeatureExtractor
    from transformers.utils import logging as hf_logging

    from harness.api import SAMPLING_RATE, ModelRequest
    from harness.engine.batching import duration_batches
    from harness.engine.device import resolve_device, seed_everything
    from harness.engine.schedule import tri_stage_scheduler
    from harness.engine.text import build_vocabulary, greedy_decode, normalize
    from harness.engine import use_fused_optimizer

    hf_logging.set_verbosity_error()
    corpus = data(args)
    train, runtime = settings(args)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    vocab = build_vocabulary([t for t in (normalize(u.text, args.lang) for u in corpus.train) if t.strip()],
                             train.vocab_min_fraction)
    seed_everything(args.seed)
    wrapped = builder(args)(ModelRequest(vocab_size=len(vocab), blank_id=vocab.blank_id, seed=args.seed,
                                         mask_time_prob=0.0, options=dict(getattr(args, "model_options", None) or {})))
    model = wrapped.model
    model.config.ctc_loss_reduction = "mean"  # per-character loss, as bench's sum / characters
    model.config.ctc_zero_infinity = True
    model.freeze_feature_encoder()

    train_rows = _examples(corpus.train, args.lang, vocab, wrapped.normalize_audio, train.max_seconds)
    dev_rows = _examples(corpus.dev, args.lang, vocab, wrapped.normalize_audio, float("inf"))
    # the same effective batch: as many utterances as bench's duration batches hold on average
    budget = int(train.batch_seconds * SAMPLING_RATE)
    batches = duration_batches(train_rows["input_length"], budget, np.random.default_rng(args.seed))
    batch_size = max(1, round(len(train_rows["input_length"]) / len(batches)))
    eval_batch = max(1, round(args.eval_batch_seconds * SAMPLING_RATE / np.mean(dev_rows["input_length"])))
    train_set = datasets.Dataset.from_dict(train_rows)
    dev_set = datasets.Dataset.from_dict(dev_rows)

    params = [p for p in model.parameters() if p.requires_grad]
    fused = use_fused_optimizer(runtime.fused_optimizer, device)
    optimizer = torch.optim.Adam(params, lr=train.lr, **({"fused": True} if fused else {}))
    scheduler = tri_stage_scheduler(optimizer, train.steps, train.warmup, train.hold)
    collator = _PaddingCollator()
    precision = args.precision if args.precision != "auto" else (
        ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "fp32")
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
        dataloader_num_workers=getattr(args, "trainer_workers", 0),  # the Trainer's default: none
    )

    class _Clock(TrainerCallback):
        def __init__(self) -> None:
            self.start = 0.0
            self.times: list[float] = []

        def on_train_begin(self, *a, **k):
            _sync(device)
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            _sync(device)
            self.times.append(time.perf_counter() - self.start)

    clock = _Clock()
    # as in the example, the feature extractor is the processing class (it names the model's input)
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0,
                                         do_normalize=wrapped.normalize_audio, return_attention_mask=True)
    trainer = Trainer(model=model, args=targs, train_dataset=train_set, data_collator=collator,
                      optimizers=(optimizer, scheduler), processing_class=extractor, callbacks=[clock])
    trainer.remove_callback(PrinterCallback)  # no per-log-step dict printing
    start = time.perf_counter()
    trainer.train()
    train_wall = time.perf_counter() - start
    trained = collator.batches[: train.steps]  # not the batch collated ahead
    real = sum(r for r, _ in trained)
    audio_seconds = real / SAMPLING_RATE
    padding = 1 - real / sum(p for _, p in trained)

    start = time.perf_counter()
    prediction = trainer.predict(dev_set)
    eval_wall = time.perf_counter() - start
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    frames = model._get_feat_extract_output_lengths(torch.tensor(dev_rows["input_length"])).tolist()
    hyps = [greedy_decode(np.argmax(logits[i, : frames[i]], axis=-1).tolist(), vocab) for i in range(len(frames))]
    refs = [normalize(u.text, args.lang) for u in corpus.dev if vocab.encode(normalize(u.text, args.lang))[0]]
    return {
        "train_audio_per_s": audio_seconds / train_wall,
        "train_seconds": train_wall,
        "encode_seconds": 0.0,
        "audio_seconds": audio_seconds,
        "update_times": clock.times,
        "padding": padding,
        "batch_size": batch_size,
        "loss_curve": [round(e["loss"], 4) for e in trainer.state.log_history if "loss" in e],
        "peak_mib": peak_memory_mib(device),
        "eval_audio_per_s": sum(dev_rows["input_length"]) / SAMPLING_RATE / eval_wall,
        "dev_cer": float(cer_metric().compute(refs, hyps)),
        "precision": precision,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in params),
        "fused_optimizer": fused,
    }


# --------------------------------------------------------------------------- processes
def _child(arm: str, args, queue) -> None:
    try:
        queue.put(("ok", (run_bench if arm == "bench" else run_trainer)(args)))
    except BaseException as exc:  # reported by the parent
        import traceback

        queue.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def in_fresh_process(arm: str, args) -> dict:
    """Run ``arm`` ("bench" or "trainer") in a fresh process and return its figures."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(arm, args, queue))
    process.start()
    while True:
        try:
            status, payload = queue.get(timeout=2)
            break
        except queue_module.Empty:
            if not process.is_alive():  # killed (out of memory?) before it could report
                raise SystemExit(f"the {arm} arm died without a result (exit code {process.exitcode}; "
                                 "killed for memory?)") from None
    process.join()
    if status != "ok":
        raise SystemExit(f"the {arm} arm failed:\n{payload}")
    return payload
