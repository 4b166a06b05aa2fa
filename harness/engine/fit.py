"""The update loop: CTC training of anything with ``head(features, frame_mask)``.

:func:`fit` trains the trainable parameters of a module on a :class:`FeatureSource`: Adam,
the tri-stage schedule, duration-sized batches (``train.batch_seconds`` of padded audio),
gradient accumulation and clipping, the CTC loss summed and divided by the characters of the
update, autocast (bf16/fp16 with loss scaling on CUDA). It returns a :class:`FitResult`. With a
:class:`Checkpointer` the whole :class:`TrainingState` is saved every few minutes and a killed
cell resumes from it with the same numbers as one never interrupted.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.api import SAMPLING_RATE, frame_mask
from harness.engine.batching import endless_batches, padding_fraction
from harness.engine.features import FeatureSource
from harness.engine.schedule import tri_stage_scheduler
from harness.engine.splits import Split

#: the loss is read back from the device (a host sync) once per this many updates
LOSS_WINDOW = 25


@dataclass(frozen=True)
class UpdateLog:
    """What :func:`fit` reports every :data:`LOSS_WINDOW` updates (and at the last one) to its
    ``on_log`` callback: for progress lines and experiment trackers."""

    update: int
    """updates done so far"""
    total: int
    """of how many"""
    loss: float
    """mean training loss over the window that ended here"""
    lr: float
    """the learning rate of the last update"""
    seconds: float
    """seconds since the first update of this process (a resumed cell counts from its resume)"""


@dataclass(frozen=True)
class FitResult:
    """What a finished :func:`fit` says about training; :meth:`facts` is how the cell's record
    keeps it (``record.train``)."""

    updates: int
    train_seconds: float
    audio_seconds: float
    """seconds of (unpadded) audio the updates went through, and per second of training"""
    audio_seconds_per_second: float
    batches: int
    """micro-batches drawn, and the share of padded positions in them"""
    padding_fraction: float
    loss_curve: tuple[float, ...]
    """mean loss per window of :data:`LOSS_WINDOW` updates, rounded to 4 decimals"""
    resumed_from_update: int | None = None
    """the update a checkpoint resumed from, or None"""
    dev_curve: tuple[tuple[int, float], ...] = ()
    """``train.eval_every``: (update, dev score) each time dev was scored, the score rounded to 4 decimals
    (empty when dev was not scored during training)
    """
    selected_update: int | None = None
    """``train.select = "best-dev"``: the update whose parameters the model holds on return (the one with the
    lowest dev score); None: the last update's
    """

    def facts(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}  # only when used: a default cell's record stays as it was
        if self.dev_curve:
            extra["dev_curve"] = [list(point) for point in self.dev_curve]
        if self.selected_update is not None:
            extra["selected_update"] = self.selected_update
        return {**extra, 
            "resumed_from_update": self.resumed_from_update,
            "updates": self.updates,
            "train_seconds": self.train_seconds,
            "audio_seconds": self.audio_seconds,
            "audio_seconds_per_second": self.audio_seconds_per_second,
            "batches": self.batches,
            "padding_fraction": self.padding_fraction,
            "loss_curve": list(self.loss_curve),
        }


@dataclass
class TrainingState:
    """Everything an interrupted :func:`fit` needs to go on exactly where it stopped (what a
    :class:`Checkpointer` saves): the trainable parameters by name, optimizer, schedule and loss
    scaler states, the micro-batches drawn so far (the batch order is a pure function of the
    seed, so they are replayed), the losses, and every random generator's state."""

    recipe: list
    """(steps, batch_seconds, grad_accum): a checkpoint of other batching cannot resume"""
    update: int
    params: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None
    seen_batches: list[list[int]]
    losses: list[float]
    running: torch.Tensor
    audio_samples: int
    rng: dict[str, Any]
    elapsed: float
    #: ``train.eval_every``: the dev scores so far, and (``select = "best-dev"``) the best
    #: update, its score and its parameters
    dev_curve: list = dataclasses.field(default_factory=list)
    best: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TrainingState | None:
        fields = dataclasses.fields(cls)
        required = {f.name for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if not required <= set(state):
            return None
        return cls(**{f.name: state[f.name] for f in fields if f.name in state})


class Checkpointer:
    """Saves and restores a cell's :class:`TrainingState` (atomically, every ``minutes``)."""

    def __init__(self, path: Path, minutes: float) -> None:
        self.path, self.every_s = Path(path), minutes * 60
        self.last = time.perf_counter()
        self.resumed_at: int | None = None

    def due(self) -> bool:
        return self.every_s > 0 and time.perf_counter() - self.last >= self.every_s

    def save(self, state: TrainingState | dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state.to_dict() if isinstance(state, TrainingState) else state, tmp)
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


def rng_state() -> dict[str, Any]:
    """The state of every random generator the loop and models draw from."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def use_fused_optimizer(setting: str, device: torch.device) -> bool:
    """``run.fused_optimizer``: auto fuses Adam on CUDA only, so CPU results stay bit-identical
    to the per-tensor loop (the multi-tensor ``foreach`` implementation used otherwise gives
    the same bits)."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def head_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The CTC output layer's parameters (what ``train.head_lr`` applies to): the model's
    ``ctc_head_parameters()`` when it has one (:class:`harness.api.SpeechCTCModel` does), else
    those of its last ``torch.nn.Linear`` in module order."""
    if hasattr(model, "ctc_head_parameters"):
        return list(model.ctc_head_parameters())
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return list(linears[-1].parameters()) if linears else []


def _optimizer(model: torch.nn.Module, named, train, fused: bool) -> torch.optim.Adam:
    """Adam over the trainable parameters: one group at ``train.lr`` (the study's), or with
    ``train.head_lr`` set two: the CTC output layer at ``head_lr``, the rest at ``lr``."""
    params = [p for _, p in named]
    # foreach: one kernel per operation over all tensors instead of one per tensor (on a CPU torch's
    # default is the per-tensor loop); the same arithmetic, so the same numbers to the last bit
    options = {"fused": True} if fused else {"foreach": True}
    head_lr = getattr(train, "head_lr", 0.0) or 0.0
    if not head_lr:
        return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay, **options)
    head = {id(p) for p in head_parameters(model)}
    groups = [{"params": [p for p in params if id(p) not in head]},
              {"params": [p for p in params if id(p) in head], "lr": head_lr}]
    return torch.optim.Adam([g for g in groups if g["params"]], lr=train.lr, weight_decay=train.weight_decay,
                            **options)


def fit(model: torch.nn.Module, features: FeatureSource, split: Split, train, *, seed: int, device: torch.device,
        precision: str, amp: AbstractContextManager, progress=None, saver: Checkpointer | None = None,
        fused: bool = False, on_log: Callable[[UpdateLog], None] | None = None,
        on_eval: Callable[[], float] | None = None,
        on_dev: Callable[[int, float], None] | None = None) -> FitResult:
    """Train ``model``'s parameters that require gradients with CTC on ``split``.

    ``model`` needs ``head(features, frame_mask) -> logits (B, frames, vocab)``; ``features``
    serves ``split``'s rows; ``train`` is the recipe (:class:`harness.plan.config.TrainSettings`:
    steps, lr, weight_decay, warmup, hold, decay, min_lr, batch_seconds, grad_accum, max_grad_norm,
    freeze_feature_encoder — gradients flow into the features only when it is false).
    ``progress`` is a :class:`harness.run.progress.Progress` (a ``train`` stage bar), ``saver``
    checkpoints, ``fused`` picks Adam's fused kernel, ``on_log`` receives an :class:`UpdateLog`
    every :data:`LOSS_WINDOW` updates. Seed the generators before calling (the batch order
    comes from ``seed``; dropout and masking from the global generators).

    ``on_eval`` scores dev (lower is better, e.g. CER; the model is put back in training mode
    after it) every ``train.eval_every`` updates and after the last one: the scores are the
    result's ``dev_curve``; with ``train.select = "best-dev"`` the parameters of the best-scored
    update are kept in memory and restored before returning (``selected_update``). Without
    ``on_eval`` (or with ``eval_every`` 0) nothing is scored; ``on_dev`` receives ``(update, score)``
    after each scoring (experiment trackers). ``train.head_lr`` (when set) trains
    the CTC output layer (:func:`head_parameters`) at its own learning rate, under the same
    schedule; unset, the optimizer is the single-group one, with the same numbers as before."""
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    # fused: one kernel for the whole update instead of one per parameter tensor (or per group)
    optimizer = _optimizer(model, named, train, fused)
    eval_every = (getattr(train, "eval_every", 0) or 0) if on_eval is not None else 0
    keep_best = eval_every > 0 and getattr(train, "select", "last") == "best-dev"
    dev_curve: list[tuple[int, float]] = []
    best: dict[str, Any] | None = None
    scheduler = tri_stage_scheduler(optimizer, train.steps, train.warmup, train.hold,
                                    decay=getattr(train, "decay", "exponential"),
                                    min_lr=getattr(train, "min_lr", 0.0) or 0.0)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    budget = int(train.batch_seconds * SAMPLING_RATE)
    samples = split.samples
    batches = endless_batches(samples, budget, seed)
    labels = [torch.tensor(ids, dtype=torch.long) for ids in split.labels]
    bar = progress.stage("train", train.steps) if progress else None
    seen_batches: list[list[int]] = []
    losses: list[float] = []
    running = torch.zeros((), device=device)
    audio_samples = 0
    first_update = 0
    elapsed_before = 0.0
    recipe = [train.steps, train.batch_seconds, train.grad_accum]
    loaded = saver.load() if saver else None
    state = TrainingState.from_dict(loaded) if loaded is not None else None
    if state is not None and state.recipe == recipe and len(state.params) == len(named):
        with torch.no_grad():
            for name, p in named:
                p.copy_(state.params[name].to(p.device))
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        if scaler and state.scaler:
            scaler.load_state_dict(state.scaler)
        seen_batches, losses = state.seen_batches, state.losses
        for _ in seen_batches:  # the batch order is a pure function of the seed: replay it
            next(batches)
        running = state.running.to(device)
        audio_samples, first_update, elapsed_before = state.audio_samples, state.update, state.elapsed
        dev_curve = [tuple(point) for point in state.dev_curve]
        best = state.best
        set_rng_state(state.rng)
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
            audio_samples += sum(samples[i] for i in batch)
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
        if (update + 1) % LOSS_WINDOW == 0 or update + 1 == train.steps:  # one host sync per window
            window = (update % LOSS_WINDOW) + 1
            losses.append(running.item() / window)
            running.zero_()
            if bar:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if on_log is not None:
                on_log(UpdateLog(update + 1, train.steps, losses[-1], scheduler.get_last_lr()[0],
                                 time.perf_counter() - start))
        if eval_every and ((update + 1) % eval_every == 0 or update + 1 == train.steps):
            rng = rng_state()  # scoring dev draws nothing the training run would otherwise draw
            score = float(on_eval())
            set_rng_state(rng)
            model.train()
            dev_curve.append((update + 1, round(score, 4)))
            if on_dev is not None:
                on_dev(update + 1, score)
            if keep_best and (best is None or score < best["score"]):
                best = {"update": update + 1, "score": score,
                        "params": {n: p.detach().clone() for n, p in named}}
        if bar:
            bar.advance()
        if saver and update + 1 < train.steps and saver.due():
            saver.save(TrainingState(
                recipe=recipe, update=update + 1, params={n: p.detach().cpu() for n, p in named},
                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict() if scaler else None, seen_batches=seen_batches, losses=losses,
                running=running.detach().cpu(), audio_samples=audio_samples, rng=rng_state(),
                elapsed=elapsed_before + time.perf_counter() - start, dev_curve=[list(p) for p in dev_curve],
                best=None if best is None else {**best, "params": {n: t.cpu() for n, t in best["params"].items()}},
            ))
    elapsed = elapsed_before + time.perf_counter() - start
    if best is not None:  # train.select = "best-dev": test is decoded with the best dev parameters
        with torch.no_grad():
            for name, p in named:
                p.copy_(best["params"][name].to(p.device))
    return FitResult(  # the checkpoint stays until the cell is stored (the caller removes it)
        updates=train.steps,
        train_seconds=elapsed,
        audio_seconds=audio_samples / SAMPLING_RATE,
        audio_seconds_per_second=audio_samples / SAMPLING_RATE / max(elapsed, 1e-9),
        batches=len(seen_batches),
        padding_fraction=padding_fraction(samples, seen_batches),
        loss_curve=tuple(round(v, 4) for v in losses),
        resumed_from_update=saver.resumed_at if saver else None,
        dev_curve=tuple(dev_curve),
        selected_update=best["update"] if best is not None else None,
    )
