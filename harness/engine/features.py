"""Feature sources: what :func:`harness.engine.fit` and :func:`harness.engine.evaluate` read.

A feature source serves the inputs of a trainable ``head(features, frame_mask)`` for any set of
utterances of one split: ``frames[i]`` (valid frames of utterance ``i``) and
``batch(indices, grad) -> (features, lengths)`` with features padded to the longest. Two ship:

- :class:`EncoderFeatures`: the model's feature-encoder output (``SpeechCTCModel.encode``), for
  fine-tuning. With the encoder trainable the batch is encoded together, with gradients; with
  the encoder frozen each utterance is encoded on its own, and the result can be cached.
- :class:`HiddenStateFeatures`: every layer's output of a frozen upstream
  (``SpeechCTCModel.hidden_states``), ``(frames, layers, dim)`` per utterance, for protocols
  that train only a downstream (``superb``, a linear probe).

Both cache the same way: :meth:`CachedFeatures.build_cache` computes every utterance once and
keeps it; :func:`decide_cache` says whether a cache fits :data:`FEATURE_CACHE_BUDGET` (one
budget for every kind, ``run.feature_cache`` = ``auto``). A cached and an uncached source give
the same numbers: both compute one utterance at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import torch

from harness.api import SpeechCTCModel, frame_mask
from harness.engine.batching import pad_stack
from harness.engine.splits import Split
from harness.errors import BenchError

#: cached features (encoder outputs or hidden states) are kept when they fit in this many bytes
FEATURE_CACHE_BUDGET = 4 * 2**30


@runtime_checkable
class FeatureSource(Protocol):
    """What the loop reads: frames per utterance and padded batches of features."""

    #: valid frames of each utterance of the split, in row order
    frames: list[int]

    def batch(self, indices: Sequence[int], grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(B, longest, ...)`` of the utterances at ``indices`` and their frame counts
        ``(B,)`` on the device; ``grad`` asks for gradients through what computes them."""
        ...


class CachedFeatures:
    """Base of the sources that compute one utterance at a time and can keep the results.

    Subclasses implement :meth:`one` (``(frames, ...)`` of utterance ``i``, no gradients)."""

    def __init__(self, model: SpeechCTCModel, split: Split, device: torch.device, amp: AbstractContextManager,
                 cached: bool) -> None:
        self.model, self.split, self.device, self.amp, self.cached = model, split, device, amp, cached
        self.frames: list[int] = model.frame_lengths(torch.tensor(split.samples, dtype=torch.long)).tolist()
        self._cache: list[torch.Tensor] | None = None

    def one(self, i: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def built(self) -> bool:
        """Whether the cache holds every utterance."""
        return self._cache is not None

    def build_cache(self, progress=None) -> None:
        """Compute every utterance once and keep it (``progress``: a stage bar to advance)."""
        cache = []
        for i in range(len(self.split.audio)):
            cache.append(self.one(i))
            if progress:
                progress.advance()
        self._cache = cache

    def use_cache(self, rows: Sequence[torch.Tensor]) -> None:
        """Keep ``rows`` (one per utterance, computed elsewhere: the feature store) as the cache."""
        if len(rows) != len(self.frames):
            raise ValueError(f"{len(rows)} rows for {len(self.frames)} utterances")
        self._cache = [r.to(self.device) for r in rows]

    def cache_bytes(self, probe: torch.Tensor) -> float:
        """What a cache of this split would take, from one utterance's features."""
        per_frame = probe.element_size() * probe[0].numel()
        return per_frame * sum(self.frames)

    def rows(self, indices: Sequence[int]) -> list[torch.Tensor]:
        if self._cache is not None:
            return [self._cache[i] for i in indices]
        return [self.one(i) for i in indices]

    def lengths(self, indices: Sequence[int]) -> torch.Tensor:
        # made on the host and copied without waiting: a tensor made on the device from a list is
        # a blocking copy, which stalls the host until the GPU has finished everything queued
        return torch.tensor([self.frames[i] for i in indices], dtype=torch.long).to(self.device, non_blocking=True)


class EncoderFeatures(CachedFeatures):
    """Feature-encoder outputs ``(frames, channels)`` of a split's utterances.

    ``cached=True`` (for a frozen encoder): every utterance is encoded on its own under
    ``no_grad``, and kept after :meth:`build_cache`. ``cached=False``: the batch's padded audio
    is encoded together, with gradients when asked (a trainable encoder)."""

    def one(self, i: int) -> torch.Tensor:
        with torch.no_grad(), self.amp:
            return self.model.encode(self.split.audio[i].to(self.device)[None])[0][: self.frames[i]].detach()

    def batch(self, indices: Sequence[int], grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.lengths(indices)
        if self.cached:
            return pad_stack(self.rows(indices)), lengths
        audio = pad_stack([self.split.audio[i] for i in indices]).to(self.device, non_blocking=True)
        with torch.set_grad_enabled(grad), self.amp:
            return self.model.encode(audio), lengths


class HiddenStateFeatures(CachedFeatures):
    """Every layer's output ``(frames, layers, dim)`` of a frozen upstream, per utterance: the
    input of the first transformer layer, then each layer's output (``SpeechCTCModel.hidden_states``)."""

    def one(self, i: int) -> torch.Tensor:
        with torch.no_grad(), self.amp:
            features = self.model.encode(self.split.audio[i].to(self.device)[None])
            lengths = torch.tensor([self.frames[i]], device=self.device)
            states = self.model.hidden_states(features, frame_mask(lengths, features.shape[1]))
        if not states or len({tuple(s.shape) for s in states}) != 1:
            raise BenchError(f"{type(self.model).__qualname__}.hidden_states returned layers of different shapes "
                             f"({[tuple(s.shape) for s in states]})",
                             "hidden_states must return one (batch, frames, dim) tensor per layer, all alike")
        return torch.stack([s[0, : self.frames[i]] for s in states], dim=1).detach()

    def batch(self, indices: Sequence[int], grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([self.frames[i] for i in indices], dtype=torch.long, device=self.device)
        return pad_stack(self.rows(indices)), lengths


def decide_cache(setting: str, source: CachedFeatures, probe: torch.Tensor | None = None) -> bool:
    """``run.feature_cache``: ``on`` / ``off``, or ``auto`` = when the split's features fit
    :data:`FEATURE_CACHE_BUDGET` (estimated from ``probe``, one utterance's features, computed
    from the first utterance when not given)."""
    if setting in ("on", "off"):
        return setting == "on"
    if not source.split.audio:
        return False
    probe = source.one(0) if probe is None else probe
    return source.cache_bytes(probe) <= FEATURE_CACHE_BUDGET
