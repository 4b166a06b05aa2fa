"""The tri-stage learning-rate schedule of the wav2vec 2.0 fine-tuning recipe.

Stage lengths are fractions of the total number of updates: a warm-up, a constant stage, then a
decay over the rest. Two shapes (``train.decay``):

- ``"exponential"`` (the default; fairseq's ``tri_stage`` scheduler): linear warm-up from
  ``init_scale * lr`` to ``lr``, then exponential decay to ``final_scale * lr``.
- ``"linear"`` (HuggingSound 0.1.6's ``CTCTrainer.create_scheduler``, trainer.py lines 393-407,
  the tool the study's checkpoints were fine-tuned with): linear warm-up from 0, then linear decay
  that would reach 0 one update after the last, i.e. ``(total - step) / decay_steps``.

``floor`` (``train.min_lr / train.lr``, HuggingSound's ``min_learning_rate / learning_rate``)
bounds the factor from below in every stage, as HuggingSound's ``max(min_lr_ratio, ...)`` does;
at its default 0 the exponential shape is exactly what it was before the floor existed.
"""

from __future__ import annotations

import math

import torch

#: the shapes of the decay stage (``train.decay``)
DECAYS = ("exponential", "linear")


def stage_lengths(total: int, warmup: float, hold: float) -> tuple[int, int, int]:
    """(warm-up, hold, decay) updates of a ``total``-update schedule."""
    warmup_steps = int(round(warmup * total))
    hold_steps = int(round(hold * total))
    return warmup_steps, hold_steps, max(total - warmup_steps - hold_steps, 0)


def tri_stage_factor(
    step: int,
    total: int,
    warmup: float = 0.1,
    hold: float = 0.4,
    init_scale: float = 0.01,
    final_scale: float = 0.05,
    decay: str = "exponential",
    floor: float = 0.0,
) -> float:
    """Multiplier of the peak learning rate at update ``step`` (0-based) of ``total``."""
    if decay == "linear":
        return _linear_factor(step, total, warmup, hold, floor)
    if decay != "exponential":
        raise ValueError(f"decay must be one of {', '.join(DECAYS)}, got {decay!r}")
    factor = _exponential_factor(step, total, warmup, hold, init_scale, final_scale)
    return max(floor, factor) if floor > 0 else factor


def _exponential_factor(step: int, total: int, warmup: float, hold: float, init_scale: float,
                        final_scale: float) -> float:
    if total <= 0:
        return 1.0
    warmup_steps, hold_steps, decay_steps = stage_lengths(total, warmup, hold)
    if step < warmup_steps:
        return init_scale + (1.0 - init_scale) * step / warmup_steps
    step -= warmup_steps
    if step < hold_steps:
        return 1.0
    step -= hold_steps
    if decay_steps == 0:
        return 1.0
    progress = min(step / decay_steps, 1.0)
    return math.exp(math.log(final_scale) * progress)


def _linear_factor(step: int, total: int, warmup: float, hold: float, floor: float) -> float:
    """HuggingSound 0.1.6's ``_lr_lambda`` (trainer.py 395-407) with ``lr_warmup_steps`` and
    ``lr_decay_steps`` from the fractions, the same operations in the same order (so the same
    floating-point values)."""
    if total <= 0:
        return 1.0
    warmup_steps, _, decay_steps = stage_lengths(total, warmup, hold)
    if step < warmup_steps:
        return max(floor, float(step) / float(max(1, warmup_steps)))
    if step >= total - decay_steps:
        return max(floor, float(total - step) / float(max(1, decay_steps)))
    return 1


def tri_stage_scheduler(
    optimizer: torch.optim.Optimizer, total: int, warmup: float, hold: float, decay: str = "exponential",
    min_lr: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule as a ``LambdaLR`` over ``optimizer`` (each group's own peak learning rate is
    its ``lr``). ``min_lr`` is a floor in absolute terms, taken relative to the first group's
    peak rate (HuggingSound's ``min_learning_rate / learning_rate``)."""
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {', '.join(DECAYS)}, got {decay!r}")
    peak = optimizer.param_groups[0]["lr"]
    floor = min_lr / peak if min_lr > 0 else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: tri_stage_factor(step, total, warmup, hold, decay=decay, floor=floor)
    )
