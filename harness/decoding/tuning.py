"""Choosing a decoder's tuned weights on dev only.

Every combination of the tuned options' grids decodes the dev split; the best by the tuning
metric (ties: the first in grid order, which lists smaller values first) is chosen, and only
then is test decoded, once, with it. Test never takes part in the choice.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import BenchError


@dataclass(frozen=True)
class TuningResult:
    weights: dict[str, float]
    score: float
    #: every point tried: (weights, dev score), in grid order
    tried: tuple[tuple[dict[str, float], float], ...]


def grid(options: Mapping[str, Any], tuned: Sequence[str]) -> list[dict[str, float]]:
    """The combinations of the tuned options' values (a number is a grid of one)."""
    axes = []
    for name in tuned:
        value = options.get(name)
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise BenchError(f"decoder option {name}={value!r} is not a number or a list of numbers",
                             f"set it as a grid, e.g. --set decoders.NAME.{name}=[0,0.5,1]")
        axes.append([float(v) for v in values])
    return [dict(zip(tuned, point)) for point in itertools.product(*axes)]


def tune_on_dev(decode: Callable[[Sequence[np.ndarray], Mapping[str, float]], list[str]],
                dev_log_probs: Sequence[np.ndarray], dev_refs: Sequence[str],
                score: Callable[[Sequence[str], Sequence[str]], float], points: Sequence[Mapping[str, float]],
                lower_is_better: bool = True) -> TuningResult:
    """Decode dev at every point of the grid and keep the best score."""
    tried = []
    best: tuple[dict[str, float], float] | None = None
    for point in points:
        value = float(score(list(dev_refs), decode(dev_log_probs, point)))
        tried.append((dict(point), value))
        if best is None or (value < best[1] if lower_is_better else value > best[1]):
            best = (dict(point), value)
    if best is None:
        return TuningResult({}, float("nan"), ())
    return TuningResult(best[0], best[1], tuple(tried))
