"""The CTC training loop that every protocol goes through, and the study's fine-tuning.

Given a model builder, a dataset's splits and the recipe, :func:`fine_tune_and_evaluate`
normalises the transcripts, builds the character vocabulary from the training text,
fine-tunes the model with a CTC loss (frozen feature encoder, Adam, tri-stage schedule,
gradient accumulation and clipping, duration-sized batches, autocast) and decodes dev and test
greedily, keeping every hypothesis. Its pieces (:func:`prepare_splits`, :func:`fit`,
:func:`evaluate`) also serve other protocols: anything with a ``head(features, frame_mask)``
and a feature provider with ``frames`` and ``batch(indices, grad)`` trains and decodes the
same way (the ``superb`` protocol trains a downstream model on cached hidden states with them).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.api import (SAMPLING_RATE, CellOutcome, DatasetSplits, MetricSpec, ModelRequest, SpeechCTCModel,
                         SplitOutput, Utterance, frame_mask)
from harness.engine.batching import duration_batches, endless_batches, pad_stack, padding_fraction
from harness.plan.config import RuntimeSettings, TrainSettings
from harness.engine.device import autocast, resolve_device, resolve_precision, seed_everything
from harness.errors import BenchError
from harness.run.progress import Progress
from harness.engine.schedule import tri_stage_scheduler
from harness.engine.text import Vocabulary, build_vocabulary, greedy_decode, normalize

#: frozen-encoder outputs are cached automatically when they fit in this many bytes
FEATURE_CACHE_BUDGET = 4 * 2**30


@dataclass
class _Split:
    ids: list[str]
    audio: list[torch.Tensor]
    refs: list[str]
    labels: list[list[int]]
    skipped: Counter
    oov_chars: int = 0

    @property
    def samples(self) -> list[int]:
        return [len(a) for a in self.audio]


def _usable_audio(utt: Utterance) -> bool:
    audio = utt.audio
    return audio is not None and audio.ndim == 1 and len(audio) > 0 and bool(np.isfinite(audio).all())


def prepare_audio(audio: np.ndarray, normalise: bool) -> torch.Tensor:
    """Float32 tensor of a clip, normalised to zero mean and unit variance when asked."""
    audio = audio.astype(np.float32, copy=False)
    if normalise:
        audio = (audio - audio.mean()) / math.sqrt(float(audio.var()) + 1e-7)
    return torch.from_numpy(np.ascontiguousarray(audio))


def _prepare(utterances: Sequence[Utterance], lang: str, max_seconds: float | None) -> _Split:
    """Keep the usable utterances (audio stays raw NumPy until :func:`_to_tensors`)."""
    split = _Split([], [], [], [], Counter())
    seen: set[str] = set()
    for utt in utterances:
        if utt.id in seen:  # listed twice: trained on or scored once (the store keys hypotheses by id)
            split.skipped["duplicate"] += 1
            continue
        seen.add(utt.id)
        if not _usable_audio(utt):
            split.skipped["bad_audio"] += 1
            continue
        if max_seconds is not None and utt.seconds > max_seconds:
            split.skipped["too_long"] += 1
            continue
        text = normalize(utt.text or "", lang)
        if not text.strip():
            split.skipped["empty_transcript"] += 1
            continue
        split.ids.append(utt.id)
        split.audio.append(utt.audio)
        split.refs.append(text)
    return split


def _to_tensors(split: _Split, normalise: bool) -> _Split:
    split.audio = [prepare_audio(a, normalise) for a in split.audio]
    return split


def _encode_labels(split: _Split, vocab: Vocabulary, drop_empty: bool) -> _Split:
    keep = []
    for i, ref in enumerate(split.refs):
        ids, missing = vocab.encode(ref)
        split.oov_chars += missing
        if drop_empty and not ids:
            split.skipped["no_known_characters"] += 1
            continue
        split.labels.append(ids)
        keep.append(i)
    if drop_empty:
        split.ids = [split.ids[i] for i in keep]
        split.audio = [split.audio[i] for i in keep]
        split.refs = [split.refs[i] for i in keep]
    return split


class _Features:
    """Encoder outputs for a split: cached once when the encoder is frozen, else computed."""

    def __init__(self, model: SpeechCTCModel, split: _Split, device: torch.device, amp, cached: bool) -> None:
        self.model, self.split, self.device, self.amp, self.cached = model, split, device, amp, cached
        self.frames = model.frame_lengths(torch.tensor(split.samples, dtype=torch.long)).tolist()
        self._cache: list[torch.Tensor] | None = None

    def build_cache(self, progress: Progress | None = None) -> None:
        cache = []
        with torch.no_grad(), self.amp:
            for i, audio in enumerate(self.split.audio):
                feats = self.model.encode(audio.to(self.device)[None])[0]
                cache.append(feats[: self.frames[i]].detach())
                if progress:
                    progress.advance()
        self._cache = cache

    def batch(self, indices: Sequence[int], grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # made on the host and copied without waiting: a tensor made on the device from a list is
        # a blocking copy, which stalls the host until the GPU has finished everything queued
        lengths = torch.tensor([self.frames[i] for i in indices], dtype=torch.long).to(self.device, non_blocking=True)
        if self.cached:
            if self._cache is None:
                with torch.no_grad(), self.amp:
                    feats = pad_stack(
                        [self.model.encode(self.split.audio[i].to(self.device)[None])[0][: self.frames[i]] for i in indices]
                    )
            else:
                feats = pad_stack([self._cache[i] for i in indices])
        else:
            audio = pad_stack([self.split.audio[i] for i in indices]).to(self.device, non_blocking=True)
            with torch.set_grad_enabled(grad), self.amp:
                feats = self.model.encode(audio)
        return feats, lengths


def _decide_cache(setting: str, frozen: bool, model: SpeechCTCModel, split: _Split, device, amp) -> bool:
    if not frozen or setting == "off":
        return False
    if setting == "on":
        return True
    if not split.audio:
        return False
    with torch.no_grad(), amp:
        probe = model.encode(split.audio[0].to(device)[None])
    bytes_per_sample = probe.element_size() * probe.shape[1] * probe.shape[2] / len(split.audio[0])
    return bytes_per_sample * sum(split.samples) <= FEATURE_CACHE_BUDGET


def prepare_splits(data: DatasetSplits, language: str, train: TrainSettings) -> tuple[dict[str, _Split], Vocabulary]:
    """The usable utterances of each split (normalised text, raw audio) and the vocabulary
    built from the training text; skipped utterances are counted per split and reason."""
    splits = {
        "train": _prepare(data.train, language, train.max_seconds),
        "dev": _prepare(data.dev, language, None),
        "test": _prepare(data.test, language, None),
    }
    train_split = splits["train"]
    if not train_split.ids:
        raise BenchError(
            f"no usable training utterances for {language!r} "
            f"(skipped: {dict(train_split.skipped) or 'none were given'})",
            "check the dataset for this language (audio present, transcripts not empty)",
        )
    return splits, build_vocabulary(train_split.refs, train.vocab_min_fraction)


def encode_splits(splits: dict[str, _Split], vocab: Vocabulary, normalise: bool) -> None:
    """Audio to (normalised) tensors and transcripts to label ids, in place."""
    for name, split in splits.items():
        _to_tensors(split, normalise)
        _encode_labels(split, vocab, drop_empty=name == "train")


def check_frame_lengths(model: SpeechCTCModel, split: _Split, device, amp) -> None:
    """The model's ``frame_lengths`` must count exactly the frames its ``encode`` returns: a
    mismatch would otherwise surface deep inside the CTC loss, or silently misalign labels."""
    if not split.audio:
        return
    audio = split.audio[0]
    with torch.no_grad(), amp:
        frames = model.encode(audio.to(device)[None]).shape[1]
    expected = int(model.frame_lengths(torch.tensor([len(audio)], dtype=torch.long))[0])
    if frames != expected:
        name = f"{type(model).__module__}.{type(model).__qualname__}"
        raise BenchError(
            f"model {name}: frame_lengths() gives {expected} frames for a {len(audio)}-sample clip, "
            f"but encode() returned {frames}",
            "a model plugin's frame_lengths(sample_lengths) must return exactly the number of frames "
            "encode() produces for each input length (see README, Plugins)",
        )


def drop_unalignable(split: _Split, frames: Sequence[int], language: str) -> int:
    """Leave out training utterances with fewer frames than CTC needs for their labels (one per
    label plus a blank between repeats); returns how many were dropped (counted as skipped).
    None left is a user error."""
    keep = [i for i, ids in enumerate(split.labels) if len(ids) + _repeats(ids) <= frames[i]]
    dropped = len(split.labels) - len(keep)
    if dropped:
        split.skipped["shorter_than_transcript"] += dropped
        for attr in ("ids", "audio", "refs", "labels"):
            setattr(split, attr, [getattr(split, attr)[i] for i in keep])
    if not split.ids:
        raise BenchError(f"every training utterance for {language!r} is too short for its transcript",
                         "check that audio and transcripts belong together")
    return dropped


def data_facts(device, precision: str, cached: bool, vocab: Vocabulary, splits: Mapping[str, _Split]) -> dict[str, Any]:
    """What a cell's record says about how it computed and what it trained on."""
    train_split = splits["train"]
    return {
        "device": str(device),
        "precision": precision,
        "feature_cache": cached,
        "vocab_size": len(vocab),
        "train_utterances": len(train_split.ids),
        "train_hours": sum(train_split.samples) / SAMPLING_RATE / 3600,
        # characters outside the vocabulary: dropped from training labels, left in eval references
        "oov_chars": {n: s.oov_chars for n, s in splits.items()},
    }


def fine_tune_and_evaluate(
    build_model: Callable[[ModelRequest], SpeechCTCModel],
    data: DatasetSplits,
    language: str,
    seed: int,
    train: TrainSettings,
    runtime: RuntimeSettings,
    metrics: Sequence[MetricSpec] = (),
    model_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    checkpoint: Path | None = None,
    model_cache_dir: Path | None = None,
) -> CellOutcome:
    """Fine-tune a fresh model on ``data`` and decode dev and test (the ``finetune`` protocol).

    With ``checkpoint`` (a file path) and ``runtime.checkpoint_minutes`` > 0 the training state
    is saved there periodically, and training resumes from it when it exists: the resumed cell
    ends with the same numbers as one that was never interrupted. ``metrics`` are scored into
    each split's ``SplitOutput.metrics`` (the harness scores stored hypotheses itself).
    """
    device = resolve_device(runtime.device)
    precision = resolve_precision(runtime.precision, device)
    amp = autocast(device, precision)
    if runtime.threads > 0:
        torch.set_num_threads(runtime.threads)

    # ---------------------------------------------------------------- data and vocabulary
    splits, vocab = prepare_splits(data, language, train)
    train_split = splits["train"]
    seed_everything(seed)
    model = build_model(
        ModelRequest(
            vocab_size=len(vocab),
            blank_id=vocab.blank_id,
            seed=seed,
            mask_time_prob=train.mask_time_prob,
            options=dict(model_options or {}),
            cache_dir=model_cache_dir,
        )
    )
    encode_splits(splits, vocab, model.normalize_audio)
    eval_splits = {"dev": splits["dev"], "test": splits["test"]}
    model.to(device)
    if runtime.gradient_checkpointing:
        try:
            model.enable_gradient_checkpointing()
        except NotImplementedError:
            name = f"{type(model).__module__}.{type(model).__qualname__}"
            raise BenchError(f"run.gradient_checkpointing is set but model {name} does not support it",
                             "set run.gradient_checkpointing = false, or implement "
                             "SpeechCTCModel.enable_gradient_checkpointing in the model plugin") from None

    frozen = train.freeze_feature_encoder
    for p in model.feature_encoder_parameters():
        p.requires_grad_(not frozen)
    check_frame_lengths(model, train_split, device, amp)
    use_cache = _decide_cache(runtime.feature_cache, frozen, model, train_split, device, amp)
    features = _Features(model, train_split, device, amp, use_cache)
    if drop_unalignable(train_split, features.frames, language):
        features = _Features(model, train_split, device, amp, use_cache)

    info = data_facts(device, precision, use_cache, vocab, splits)
    info["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    if device.type == "cuda":  # what a cell needs, against what the GPU has (record only)
        torch.cuda.reset_peak_memory_stats(device)
        info["gpu_memory_mib"] = torch.cuda.get_device_properties(device).total_memory / 2**20
    # ---------------------------------------------------------------- fine-tuning
    if train.steps > 0:
        if use_cache:
            bar = progress.stage("encode", len(train_split.ids)) if progress else None
            model.eval()
            encode_start = time.perf_counter()
            features.build_cache(bar)
            info["encode_seconds"] = time.perf_counter() - encode_start
        seed_everything(seed)
        saver = Checkpointer(checkpoint, runtime.checkpoint_minutes) if checkpoint is not None else None
        info.update(fit(model, features, train_split, train, seed, device, precision, amp, progress, saver,
                        fused=use_fused_optimizer(runtime.fused_optimizer, device)))
        if device.type == "cuda":
            info["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20

    # ---------------------------------------------------------------- evaluation
    results = {}
    info["eval_seconds"] = {}
    for name, split in eval_splits.items():
        eval_start = time.perf_counter()
        model.eval()
        results[name] = evaluate(model, _Features(model, split, device, amp, use_cache), split, vocab, runtime, amp,
                                 metrics)
        info["eval_seconds"][name] = time.perf_counter() - eval_start
    if device.type == "cuda":
        info["peak_memory_mib_eval"] = torch.cuda.max_memory_allocated(device) / 2**20
    skipped = {"train": dict(train_split.skipped), **{n: dict(s.skipped) for n, s in eval_splits.items()}}
    return CellOutcome(results, vocab.symbols, info, skipped)


def use_fused_optimizer(setting: str, device: torch.device) -> bool:
    """``run.fused_optimizer``: auto fuses Adam on CUDA only, so CPU results stay bit-identical
    to the for-loop implementation torch picks there."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def _repeats(ids: Sequence[int]) -> int:
    return sum(1 for a, b in zip(ids, ids[1:]) if a == b)


class Checkpointer:
    """Saves and restores the whole training state of a cell (atomically, every few minutes)."""

    def __init__(self, path: Path, minutes: float) -> None:
        self.path, self.every_s = path, minutes * 60
        self.last = time.perf_counter()
        self.resumed_at: int | None = None

    def due(self) -> bool:
        return self.every_s > 0 and time.perf_counter() - self.last >= self.every_s

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)  # a kill mid-save leaves the previous checkpoint intact
        self.last = time.perf_counter()

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:  # damaged: start the cell over rather than fail it
            print(f"warning: checkpoint {self.path} is unreadable ({exc}); training from the start", file=sys.stderr)
            return None


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(model, features, split: _Split, train: TrainSettings, seed, device, precision, amp, progress,
         saver: Checkpointer | None = None, fused: bool = False):
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    # fused: one kernel for the whole update instead of one per parameter tensor (or per group)
    optimizer = torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay,
                                 **({"fused": True} if fused else {}))
    scheduler = tri_stage_scheduler(optimizer, train.steps, train.warmup, train.hold)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    budget = int(train.batch_seconds * SAMPLING_RATE)
    batches = endless_batches(split.samples, budget, seed)
    labels = [torch.tensor(ids, dtype=torch.long) for ids in split.labels]
    bar = progress.stage("train", train.steps) if progress else None
    seen_batches: list[list[int]] = []
    losses: list[float] = []
    running = torch.zeros((), device=device)
    audio_samples = 0
    first_update = 0
    elapsed_before = 0.0
    state = saver.load() if saver else None
    recipe = [train.steps, train.batch_seconds, train.grad_accum]  # a checkpoint of other batching cannot resume
    if state is not None and state.get("recipe") == recipe and len(state["params"]) == len(named):
        with torch.no_grad():
            for name, p in named:
                p.copy_(state["params"][name].to(p.device))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        seen_batches, losses = state["seen_batches"], state["losses"]
        for _ in seen_batches:  # the batch order is a pure function of the seed: replay it
            next(batches)
        running = state["running"].to(device)
        audio_samples, first_update, elapsed_before = state["audio_samples"], state["update"], state["elapsed"]
        _set_rng_state(state["rng"])
        saver.resumed_at = first_update
        if bar:
            bar.advance(first_update)
    start = time.perf_counter()
    for update in range(first_update, train.steps):
        micro = [next(batches) for _ in range(train.grad_accum)]
        seen_batches.extend(micro)
        chars = sum(len(split.labels[i]) for batch in micro for i in batch)
        for batch in micro:
            feats, lengths = features.batch(batch, grad=not train.freeze_feature_encoder)
            with amp:
                logits = model.head(feats, frame_mask(lengths, feats.shape[1]))
            log_probs = logits.float().log_softmax(-1).transpose(0, 1)
            targets = torch.cat([labels[i] for i in batch]).to(device, non_blocking=True)
            # lengths stay on the host: CTC reads them there (given device tensors it would copy them
            # back, waiting for the GPU to finish the forward pass first)
            target_lengths = torch.tensor([len(labels[i]) for i in batch], dtype=torch.long)
            frame_lengths = torch.tensor([features.frames[i] for i in batch], dtype=torch.long)
            loss = F.ctc_loss(log_probs, targets, frame_lengths, target_lengths, blank=0,
                              reduction="sum", zero_infinity=True) / chars
            (scaler.scale(loss) if scaler else loss).backward()
            running += loss.detach()
            audio_samples += sum(split.samples[i] for i in batch)
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, train.max_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if (update + 1) % 25 == 0 or update + 1 == train.steps:  # one host sync every 25 updates
            window = (update % 25) + 1
            losses.append(running.item() / window)
            running.zero_()
            if bar:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if bar:
            bar.advance()
        if saver and update + 1 < train.steps and saver.due():
            saver.save({
                "recipe": recipe, "update": update + 1, "params": {n: p.detach().cpu() for n, p in named},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler else None, "seen_batches": seen_batches, "losses": losses,
                "running": running.detach().cpu(), "audio_samples": audio_samples, "rng": _rng_state(),
                "elapsed": elapsed_before + time.perf_counter() - start,
            })
    elapsed = elapsed_before + time.perf_counter() - start
    return {  # the checkpoint stays until the cell is stored (the caller removes it)
        "resumed_from_update": saver.resumed_at if saver else None,
        "updates": train.steps,
        "train_seconds": elapsed,
        "audio_seconds": audio_samples / SAMPLING_RATE,
        "audio_seconds_per_second": audio_samples / SAMPLING_RATE / max(elapsed, 1e-9),
        "batches": len(seen_batches),
        "padding_fraction": padding_fraction(split.samples, seen_batches),
        "loss_curve": [round(v, 4) for v in losses],
    }


def evaluate(model, features, split: _Split, vocab: Vocabulary, runtime: RuntimeSettings, amp,
             metrics: Sequence[MetricSpec] = ()) -> SplitOutput:
    """Greedy CTC decoding of ``split`` in length-sorted batches (the model in eval mode)."""
    hyps: list[str] = [""] * len(split.ids)
    budget = int(runtime.eval_batch_seconds * SAMPLING_RATE)
    with torch.no_grad():
        for batch in duration_batches(split.samples, budget):
            feats, lengths = features.batch(batch, grad=False)
            with amp:
                logits = model.head(feats, frame_mask(lengths, feats.shape[1]))
            best = logits.argmax(-1).cpu()
            for row, i in enumerate(batch):
                hyps[i] = greedy_decode(best[row, : features.frames[i]].tolist(), vocab)
    scores = {m.name: float(m.compute(split.refs, hyps)) if split.refs else float("nan") for m in metrics}
    return SplitOutput(
        hypotheses=list(zip(split.ids, split.refs, hyps)),
        seconds=sum(split.samples) / SAMPLING_RATE,
        metrics=scores,
    )
