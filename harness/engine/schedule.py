"""The tri-stage learning-rate schedule of the wav2vec 2.0 fine-tuning recipe.

Linear warm-up from ``init_scale * lr`` to ``lr``, a constant stage, then exponential decay
to ``final_scale * lr``; stage lengths are fractions of the total number of updates.
"""

from __future__ import annotations

import math

import torch


def tri_stage_factor(
    step: int,
    total: int,
    warmup: float = 0.1,
    hold: float = 0.4,
    init_scale: float = 0.01,
    final_scale: float = 0.05,
) -> float:
    """Multiplier of the peak learning rate at update ``step`` (0-based) of ``total``."""
    if total <= 0:
        return 1.0
    warmup_steps = int(round(warmup * total))
    hold_steps = int(round(hold * total))
    decay_steps = max(total - warmup_steps - hold_steps, 0)
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


def tri_stage_scheduler(
    optimizer: torch.optim.Optimizer, total: int, warmup: float, hold: float
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: tri_stage_factor(step, total, warmup, hold)
    )
