"""Batches sized by audio duration rather than by count, and padding/collation.

A batch holds as many utterances of similar length as fit in a budget of padded samples
(``len(batch) * longest <= budget``), so short utterances travel in large batches, long ones in
small ones, memory stays bounded (a count-sized batch of long clips is what runs out of
memory), and little of each batch is padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def duration_batches(
    lengths: Sequence[int],
    budget: int,
    rng: np.random.Generator | None = None,
) -> list[list[int]]:
    """Group indices into batches whose padded size ``count * max_length`` fits ``budget``.

    With ``rng`` the grouping is randomised (ties broken at random, batch order shuffled) while
    staying length-sorted inside each batch; without it the order is deterministic and sorted
    by length (for evaluation). An item longer than the budget forms a batch of its own.
    """
    n = len(lengths)
    if n == 0:
        return []
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    if rng is None:
        order = np.argsort(lengths_arr, kind="stable")
    else:
        # shuffle first, then stable-sort by a jittered length: similar lengths stay together
        # but equal-ish lengths mix differently every epoch
        shuffled = rng.permutation(n)
        jitter = rng.uniform(0.95, 1.05, size=n)
        order = shuffled[np.argsort(lengths_arr[shuffled] * jitter, kind="stable")]
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order.tolist():
        length = int(lengths_arr[index])
        new_longest = max(longest, length)
        if current and new_longest * (len(current) + 1) > budget:
            batches.append(current)
            current, new_longest = [], length
        current.append(index)
        longest = new_longest
    if current:
        batches.append(current)
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def endless_batches(lengths: Sequence[int], budget: int, seed: int) -> Iterator[list[int]]:
    """Training batches epoch after epoch, re-grouped each epoch, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    while True:
        yield from duration_batches(lengths, budget, rng)


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded positions across ``batches``."""
    real = padded = 0
    for batch in batches:
        sizes = [lengths[i] for i in batch]
        real += sum(sizes)
        padded += max(sizes) * len(sizes)
    return 0.0 if padded == 0 else 1.0 - real / padded


def pad_stack(arrays: Sequence[torch.Tensor], value: float = 0.0) -> torch.Tensor:
    """Stack tensors of shape ``(length, *rest)`` into ``(batch, longest, *rest)``."""
    return torch.nn.utils.rnn.pad_sequence(list(arrays), batch_first=True, padding_value=value)
