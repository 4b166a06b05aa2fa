"""bench's preset-``paper`` recipe against HuggingSound 0.1.6, the tool the study's checkpoints were made with.

Both arms fine-tune the same tiny pre-trained checkpoint (``tiny-phone-es``, from bench's model
cache) on the same synthetic speech and transcripts, for the same number of updates, at the same
learning rate under the tri-stage schedule with linear decay (10 % warm-up, 40 % constant, 50 %
decay), with HuggingSound's model settings (dropouts 0.1, layer drop 0, time masks of 10 frames at
probability 0.05), the feature encoder frozen, Adam(W) with weight decay 0, gradients clipped at
1.0 and the same seed. Then both transcribe the same test split, scored by bench's CER.

What differs, by design of each tool (see docs/paper-preset.md): HuggingSound batches 8
utterances per update grouped by length (transformers' ``group_by_length``), bench batches by
duration (``--batch-seconds``, by default 8 x the mean training utterance); HuggingSound sums the
CTC loss over the batch (``ctc_loss_reduction="sum"``), bench divides the sum by the characters of
the update; HuggingSound appends a word delimiter to every transcript; bench caches the frozen
encoder's outputs. Printed: the learning rate of every update from both (HuggingSound's as its
trainer used it, recorded by a callback; bench's from its scheduler), the largest difference, the
losses (per character for both), test CER and training speed.

HuggingSound's declared requirements cannot be installed on Python 3.11 (``torch<1.13``: no
torch release below 1.13 has a Python 3.11 wheel), so it runs in a separate environment with its
own code unchanged beside the transformers it was written for (measured to work here)::

    python3 -m venv /tmp/hsvenv && /tmp/hsvenv/bin/pip install torch==2.13.0 transformers==4.28.1 \\
        tokenizers==0.13.3 "numpy<1.25" "pyarrow<17" datasets==2.14.7 "jiwer<3" librosa==0.9.2 \\
        "setuptools<70" safetensors && /tmp/hsvenv/bin/pip install --no-deps huggingsound==0.1.6

    python benchmarks/huggingsound_vs_bench.py --hs-python /tmp/hsvenv/bin/python      # 300 updates
    /tmp/hsvenv/bin/python benchmarks/huggingsound_vs_bench.py --role lr-reference \\
        --out tests/data/huggingsound_lr.json      # the reference tests/test_paper_preset.py compares with

The ``huggingsound`` and ``lr-reference`` roles import only HuggingSound's environment (no bench).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: the schedules the reference file holds: (name, updates, peak lr, warm-up, hold, min_lr)
LR_CASES = (
    ("paper", 4000, 6e-5, 0.1, 0.4, 0.0),
    ("floor", 200, 1e-3, 0.15, 0.25, 1e-4),
    ("uneven", 150, 2e-3, 0.1, 0.4, 0.0),
)


def hs_steps(steps: int, warmup: float, hold: float) -> tuple[int, int]:
    """bench's fractions as HuggingSound's ``lr_warmup_steps`` and ``lr_decay_steps`` (the same
    rounding as :func:`harness.engine.schedule.stage_lengths`)."""
    w, h = int(round(warmup * steps)), int(round(hold * steps))
    return w, max(steps - w - h, 0)


# --------------------------------------------------------------------------- HuggingSound's side
def _hs_trainer(steps: int, lr: float, warmup_steps: int, decay_steps: int, min_lr: float, output_dir: str):
    """HuggingSound's CTCTrainer over a minimal model: its own create_optimizer/create_scheduler."""
    from huggingsound.trainer import CTCTrainer
    from transformers import TrainingArguments as HFTrainingArguments
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    config = Wav2Vec2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
                            conv_dim=(8,), conv_stride=(5,), conv_kernel=(10,), num_conv_pos_embeddings=2,
                            num_conv_pos_embedding_groups=1, vocab_size=4)
    args = HFTrainingArguments(output_dir=output_dir, learning_rate=lr, max_steps=steps, no_cuda=True, report_to=[])
    trainer = CTCTrainer(model=Wav2Vec2ForCTC(config), args=args, min_learning_rate=min_lr,
                         lr_warmup_steps=warmup_steps, lr_decay_steps=decay_steps)
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    return trainer


def lr_reference(out: Path) -> None:
    """Per update, the learning rate HuggingSound's trainer sets before that update's optimiser
    step (as ``Trainer`` does: ``optimizer.step()`` then ``lr_scheduler.step()``)."""
    import huggingsound
    import transformers

    cases = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, steps, lr, warmup, hold, min_lr in LR_CASES:
            w, d = hs_steps(steps, warmup, hold)
            trainer = _hs_trainer(steps, lr, w, d, min_lr, scratch)
            lrs = []
            for _ in range(steps):
                lrs.append(trainer.optimizer.param_groups[0]["lr"])
                trainer.optimizer.step()
                trainer.lr_scheduler.step()
            cases[name] = {"steps": steps, "lr": lr, "warmup": warmup, "hold": hold, "min_lr": min_lr,
                           "lr_warmup_steps": w, "lr_decay_steps": d, "lrs": lrs}
    payload = {"made_with": {"huggingsound": getattr(huggingsound, "__version__", "0.1.6"),
                             "transformers": transformers.__version__,
                             "how": "huggingsound.trainer.CTCTrainer.create_optimizer_and_scheduler, stepped"},
               "cases": cases}
    out.write_text(json.dumps(payload) + "\n")
    print(f"wrote {out}: " + ", ".join(f"{n} ({c['steps']} updates)" for n, c in cases.items()))


def run_huggingsound(work: Path) -> None:
    """Fine-tune with HuggingSound's own ``SpeechRecognitionModel.finetune`` as a user would."""
    import torch
    from huggingsound import ModelArguments, SpeechRecognitionModel, TokenSet, TrainingArguments

    job = json.loads((work / "job.json").read_text())
    torch.set_num_threads(job["threads"])
    lrs, losses, label_chars = [], [], []

    def on_batch(features):  # called as each batch is collated, just before its update (no workers)
        label_chars.append(sum(len(f["labels"]) for f in features))

    def on_step(trainer, loss):  # inside training_step, before the optimiser step: this update's lr
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        losses.append(loss)

    w, d = hs_steps(job["steps"], job["warmup"], job["hold"])
    training = TrainingArguments(learning_rate=job["lr"], min_learning_rate=job["min_lr"], max_steps=job["steps"],
                                 lr_warmup_steps=w, lr_decay_steps=d, per_device_train_batch_size=job["batch_size"],
                                 seed=job["seed"], gradient_checkpointing=False, show_dataset_stats=False,
                                 overwrite_output_dir=True, logging_steps=25, training_step_callbacks=[on_step],
                                 batch_creation_callbacks=[on_batch])
    model = SpeechRecognitionModel(job["model"], device="cpu")
    tokens = TokenSet(job["tokens"], letter_case=None)
    out_dir = work / "hs-model"
    start = time.perf_counter()
    # no data_cache_dir: with it and no eval_data, finetune() fails (model.py line 355 loads eval data anyway)
    model.finetune(str(out_dir), train_data=job["train"], token_set=tokens, training_args=training,
                   model_args=ModelArguments())
    train_seconds = time.perf_counter() - start
    tuned = SpeechRecognitionModel(str(out_dir), device="cpu")
    start = time.perf_counter()
    hyps = [t["transcription"] for t in tuned.transcribe([r["path"] for r in job["test"]], batch_size=8)]
    result = {"lrs": lrs, "losses": losses, "label_chars": label_chars[-len(losses):] if losses else [],
              "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - start, "hypotheses": hyps,
              "model_config": {k: getattr(tuned.model.config, k) for k in
                               ("attention_dropout", "activation_dropout", "hidden_dropout", "feat_proj_dropout",
                                "final_dropout", "layerdrop", "mask_time_prob", "mask_time_length")}}
    (work / "huggingsound.json").write_text(json.dumps(result))


# --------------------------------------------------------------------------- bench's side
def _prepare(args, work: Path) -> dict:
    """Synthetic speech as wav files and normalised transcripts, the checkpoint with its processor."""
    sys.path.insert(0, str(REPO))
    import numpy as np
    import soundfile as sf

    from harness.api import DatasetRequest
    from harness.engine.text import build_vocabulary, normalize
    from harness.plan.config import default_cache_dir
    from plugins.datasets import synthetic

    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    options = {"train_minutes": args.train_minutes, "dev_minutes": 0.5, "test_minutes": args.test_minutes}
    data = synthetic.load(DatasetRequest(args.lang, args.seed, options, cache / "datasets" / "synthetic"))
    found = sorted((cache / "models" / "pretrained").glob(f"wav2vec2-tiny-phone-{args.model_lang}-*/config.json"))
    if not found:
        raise SystemExit(f"no tiny-phone-{args.model_lang} checkpoint in {cache}/models/pretrained: run "
                         f"`bench pretrain --models tiny-phone-{args.model_lang}` first")
    model_dir = work / "model"
    if not model_dir.exists():
        shutil.copytree(found[-1].parent, model_dir)
    hs_dir = _for_transformers_4(model_dir, work / "model-transformers4")
    rows = {}
    for split in ("train", "test"):
        folder = work / split
        folder.mkdir(parents=True, exist_ok=True)
        rows[split] = []
        for u in getattr(data, split):
            path = folder / f"{u.id}.wav"
            if not path.exists():
                sf.write(path, np.asarray(u.audio), 16_000, subtype="PCM_16")
            rows[split].append({"path": str(path), "transcription": normalize(u.text, args.lang)})
    vocab = build_vocabulary([r["transcription"] for r in rows["train"]], 1e-5)
    chars = [c for c in vocab.symbols[1:] if c != " "]
    mean_seconds = float(np.mean([len(u.audio) / 16_000 for u in data.train]))
    return {"data": data, "rows": rows, "model": str(model_dir), "hs_model": str(hs_dir),
            "tokens": ["<pad>", "|", *chars], "mean_seconds": mean_seconds}


def _for_transformers_4(model_dir: Path, out: Path) -> Path:
    """The same checkpoint for transformers 4.x: transformers 5 saves the positional convolution's
    weight norm as ``parametrizations.weight.original0/1`` (torch's parametrization), 4.x loads
    ``weight_g``/``weight_v`` and would otherwise start that layer from random weights."""
    import torch
    from safetensors.torch import load_file

    if (out / "pytorch_model.bin").exists():
        return out
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("*.safetensors"), dirs_exist_ok=True)
    tensors = load_file(str(model_dir / "model.safetensors"))
    renamed = {k.replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v"): v for k, v in tensors.items()}
    # pytorch_model.bin: HuggingSound hands the model folder to Trainer.train(resume_from_checkpoint=...),
    # which in transformers 4.28 reads only that file
    torch.save(renamed, out / "pytorch_model.bin")
    return out


def run_bench(args, prepared: dict) -> dict:
    import torch

    from harness.engine import fine_tune_and_evaluate
    from harness.engine.schedule import tri_stage_factor
    from harness.engine.scoring import corpus_cer
    from harness.plan.config import RuntimeSettings, TrainSettings
    from harness.plugins import process_registry

    torch.set_num_threads(args.threads)
    paper_model_config = {"attention_dropout": 0.1, "activation_dropout": 0.1, "hidden_dropout": 0.1,
                          "feat_proj_dropout": 0.1, "final_dropout": 0.1, "layerdrop": 0.0, "mask_time_length": 10}
    batch_seconds = args.batch_seconds or round(8 * prepared["mean_seconds"], 2)
    train = TrainSettings(steps=args.steps, lr=args.lr, warmup=0.1, hold=0.4, decay="linear", min_lr=args.min_lr,
                          batch_seconds=batch_seconds, mask_time_prob=0.05, model_config=paper_model_config)
    spec = process_registry().model(f"hf:{prepared['model']}").spec
    start = time.perf_counter()
    outcome = fine_tune_and_evaluate(spec.build, prepared["data"], args.lang, args.seed, train,
                                     RuntimeSettings(device="cpu", threads=args.threads, checkpoint_minutes=0),
                                     model_options=train.model_config_for(spec.options))
    wall = time.perf_counter() - start
    test = outcome.splits["test"]
    floor = args.min_lr / args.lr if args.min_lr > 0 else 0.0
    lrs = [args.lr * tri_stage_factor(k, args.steps, 0.1, 0.4, decay="linear", floor=floor)
           for k in range(args.steps)]
    info = outcome.train_info
    return {"lrs": lrs, "loss_curve": list(info.get("loss_curve", [])), "test_cer": corpus_cer(test.hypotheses),
            "train_seconds": info.get("train_seconds"), "encode_seconds": info.get("encode_seconds", 0.0),
            "wall_seconds": wall, "batch_seconds": batch_seconds,
            "audio_seconds_per_second": info.get("audio_seconds_per_second"),
            "hypotheses": {u: h for u, _, h in test.hypotheses}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="compare", choices=["compare", "huggingsound", "lr-reference"])
    parser.add_argument("--hs-python", help="python of the environment with HuggingSound (see the docstring)")
    parser.add_argument("--work", help="working directory (role huggingsound; default for compare: a temp dir)")
    parser.add_argument("--out", default=str(REPO / "tests" / "data" / "huggingsound_lr.json"))
    parser.add_argument("--lang", default="es")
    parser.add_argument("--model-lang", default="es", help="the tiny-phone-LANG checkpoint to fine-tune")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--min-lr", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=8, help="HuggingSound's utterances per update")
    parser.add_argument("--batch-seconds", type=float, default=0.0, help="bench's (0: 8 x the mean utterance)")
    parser.add_argument("--train-minutes", type=float, default=8.0)
    parser.add_argument("--test-minutes", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--reuse-bench", action="store_true", help="reuse bench's arm saved in --work")
    args = parser.parse_args(argv)
    if args.role == "lr-reference":
        lr_reference(Path(args.out))
        return 0
    if args.role == "huggingsound":
        run_huggingsound(Path(args.work))
        return 0
    if not args.hs_python:
        parser.error("--hs-python is required: the python of an environment with HuggingSound (see --help)")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        prepared = _prepare(args, work)
        saved = work / "bench.json"
        if args.reuse_bench and saved.exists():
            bench = json.loads(saved.read_text())
        else:
            bench = run_bench(args, prepared)
            saved.write_text(json.dumps(bench))
        job = {"model": prepared["hs_model"], "tokens": prepared["tokens"], "train": prepared["rows"]["train"],
               "test": prepared["rows"]["test"], "steps": args.steps, "lr": args.lr, "min_lr": args.min_lr,
               "warmup": 0.1, "hold": 0.4, "batch_size": args.batch_size, "seed": args.seed, "threads": args.threads}
        (work / "job.json").write_text(json.dumps(job))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        done = subprocess.run([args.hs_python, __file__, "--role", "huggingsound", "--work", str(work)], env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-6000:], file=sys.stderr)
            return 1
        hs = json.loads((work / "huggingsound.json").read_text())
    sys.path.insert(0, str(REPO))
    from harness.engine.scoring import corpus_cer

    refs = [r["transcription"] for r in prepared["rows"]["test"]]
    ids = [Path(r["path"]).stem for r in prepared["rows"]["test"]]
    bench_hyps = [bench["hypotheses"].get(i, "") for i in ids]
    hs_hyps = [" ".join(h.split()) for h in hs["hypotheses"]]
    hs_cer = corpus_cer(list(zip(ids, refs, hs_hyps)))
    n = min(len(hs["lrs"]), len(bench["lrs"]))
    lr_diff = max(abs(a - b) for a, b in zip(hs["lrs"][:n], bench["lrs"][:n]))
    per_char = [loss / max(c, 1) for loss, c in zip(hs["losses"], hs["label_chars"])]
    windows = [sum(per_char[i:i + 25]) / len(per_char[i:i + 25]) for i in range(0, len(per_char), 25)]
    hs_audio = sum(len(__import__("soundfile").read(r["path"])[0]) for r in prepared["rows"]["train"]) / 16_000
    figures = {
        "updates": args.steps, "lr": args.lr,
        "lr_per_update": {"max_abs_difference": lr_diff, "updates_compared": n,
                          "identical": hs["lrs"][:n] == bench["lrs"][:n],
                          "first": {"huggingsound": hs["lrs"][:3], "bench": bench["lrs"][:3]},
                          "last": {"huggingsound": hs["lrs"][-2:], "bench": bench["lrs"][-2:]}},
        "bench": {k: v for k, v in bench.items() if k not in ("lrs", "hypotheses")},
        "huggingsound": {"test_cer": hs_cer, "train_seconds": hs["train_seconds"], "loss_curve_per_char": windows,
                         "model_config": hs["model_config"], "batch_size": args.batch_size},
        "train_audio_seconds": hs_audio,
    }
    figures["bench"]["test_cer"] = corpus_cer(list(zip(ids, refs, bench_hyps)))
    print(f"learning rate per update ({n} updates): max |HuggingSound - bench| = {lr_diff:.3g}"
          f"{' (identical)' if figures['lr_per_update']['identical'] else ''}")
    print(f"{'':34s}{'HuggingSound 0.1.6':>20s}{'bench':>12s}")
    print(f"{'test CER':34s}{hs_cer:>20.3f}{figures['bench']['test_cer']:>12.3f}")
    print(f"{'training seconds':34s}{hs['train_seconds']:>20.1f}{bench['train_seconds']:>12.1f}")
    print(f"{'loss per character, first window':34s}{windows[0]:>20.3f}{bench['loss_curve'][0]:>12.3f}")
    print(f"{'loss per character, last window':34s}{windows[-1]:>20.3f}{bench['loss_curve'][-1]:>12.3f}")
    print(f"{'batch':34s}{str(args.batch_size) + ' utterances':>20s}{bench['batch_seconds']:>10.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
