"""The types that plugins produce and the core consumes.

A model plugin registers :class:`ModelSpec` objects whose ``build`` returns a
:class:`SpeechCTCModel`; a dataset plugin registers :class:`DatasetSpec` objects whose ``load``
returns :class:`DatasetSplits`; a metric plugin registers :class:`MetricSpec` objects.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SAMPLING_RATE = 16_000


# --------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class Utterance:
    """One utterance: 16 kHz mono float32 audio and its raw (unnormalised) transcript."""

    id: str
    audio: np.ndarray
    text: str
    speaker: str = ""

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLING_RATE


@dataclass(frozen=True)
class DatasetRequest:
    language: str
    #: seed of the cell; datasets that subsample training data use it (deterministically)
    seed: int
    #: the dataset's own settings from bench.toml ``[datasets.NAME]`` (after presets and --set)
    options: Mapping[str, Any]
    #: a directory the dataset may use for its cache (shared between runs)
    cache_dir: Path


@dataclass(frozen=True)
class DatasetSplits:
    train: Sequence[Utterance]
    dev: Sequence[Utterance]
    test: Sequence[Utterance]
    #: facts recorded with the result: source, hours, utterances, speakers
    info: Mapping[str, Any] = field(default_factory=dict)
    #: rows the dataset left out, by split and reason (``{"train": {"missing_clip": 2}}``);
    #: merged with what the training loop skips into the cell's record
    skipped: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    languages: tuple[str, ...]
    load: Callable[[DatasetRequest], DatasetSplits]
    version: str = "0"
    description: str = ""
    #: option names the dataset understands (used to reject typos in bench.toml)
    options: tuple[str, ...] = ()
    #: cheap check that a language can be loaded (files present, source configured), run for
    #: every planned language before any cell is computed; raises BenchError
    check: Callable[[DatasetRequest], None] | None = None


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelRequest:
    vocab_size: int
    #: index of the CTC blank, which is also the padding index
    blank_id: int
    seed: int
    #: SpecAugment-style time masking probability during fine-tuning
    mask_time_prob: float = 0.05
    #: the model's own settings from bench.toml ``[models.NAME]``
    options: Mapping[str, Any] = field(default_factory=dict)
    #: where models that ``prepare`` themselves keep what they made (``<run.cache_dir>/models``)
    cache_dir: Path | None = None


@dataclass(frozen=True)
class PrepareContext:
    """What a model's ``prepare`` gets: where to keep what it makes, speech to make it from,
    and how to compute. ``prepare`` runs once per run, before any cell, in the driver."""

    #: the models' cache directory (the same path cells get as ``ModelRequest.cache_dir``)
    cache_dir: Path
    #: ``load_dataset(dataset, language, seed, options)``: a registered dataset's splits
    load_dataset: Callable[[str, str, int, Mapping[str, Any]], DatasetSplits]
    device: str = "auto"
    #: torch threads (0: torch's default)
    threads: int = 0
    #: :class:`harness.progress.Progress` for a stage bar and log lines, or None
    progress: Any = None
    #: make it again even when it is already there
    force: bool = False
    #: the model's own settings from bench.toml ``[models.NAME]`` (as its cells get them)
    options: Mapping[str, Any] = field(default_factory=dict)

    def log(self, line: str) -> None:
        if self.progress is not None:
            self.progress.log(line)
        else:
            print(line, flush=True)


class SpeechCTCModel(torch.nn.Module, abc.ABC):
    """What the training loop needs from a model: a feature encoder and the rest.

    The split lets the loop freeze the feature encoder and, when it is frozen, compute its
    output once per utterance and reuse it (exact, since the encoder is deterministic).
    """

    #: whether audio must be normalised to zero mean and unit variance per utterance
    normalize_audio: bool = True

    @abc.abstractmethod
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Feature encoder: ``(B, samples)`` -> ``(B, frames, channels)``."""

    @abc.abstractmethod
    def head(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Everything after the feature encoder: -> CTC logits ``(B, frames, vocab)``."""

    @abc.abstractmethod
    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """Number of encoder frames for each number of input samples."""

    @abc.abstractmethod
    def feature_encoder_parameters(self) -> Sequence[torch.nn.Parameter]:
        """Parameters of :meth:`encode` (frozen when the configuration says so)."""

    def forward(self, audio: torch.Tensor, sample_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.frame_lengths(sample_lengths)
        features = self.encode(audio)
        mask = frame_mask(lengths, features.shape[1])
        return self.head(features, mask), lengths


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B, frames)`` boolean mask, True on valid frames."""
    positions = torch.arange(frames, device=lengths.device)
    return positions[None, :] < lengths[:, None]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[ModelRequest], SpeechCTCModel]
    version: str = "0"
    description: str = ""
    #: facts shown by ``bench list`` and stored with every result (hub id, architecture, ...)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: cheap availability check run before any cell is computed; raises BenchError
    check: Callable[[], None] | None = None
    #: makes what ``build`` needs (pre-trains a model, say) when it is not in the cache yet;
    #: returns facts about it (path, whether it was made now, losses) for logs and ``bench pretrain``
    prepare: Callable[[PrepareContext], Mapping[str, Any]] | None = None
    #: option names the model understands in ``[models.NAME]``, checked before any cell (a
    #: typo fails with "did you mean"); empty: the plugin checks its options itself
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelScheme:
    """A family of models named ``PREFIX:ARGUMENT`` (for example ``hf:facebook/wav2vec2-base``)."""

    prefix: str
    resolve: Callable[[str], ModelSpec]
    description: str = ""


@dataclass(frozen=True)
class ModelGroup:
    """A named selection of models, usable wherever a model name is (``--models english``)."""

    name: str
    members: tuple[str, ...]
    description: str = ""


# --------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class MetricSpec:
    name: str
    #: corpus-level score of hypotheses against references (same order, same length)
    compute: Callable[[Sequence[str], Sequence[str]], float]
    version: str = "0"
    description: str = ""
    lower_is_better: bool = True


# --------------------------------------------------------------------------- executors
@dataclass(frozen=True)
class ExecutorSpec:
    """How cells get computed: in this process, on a Ray cluster, as Slurm jobs, ...

    ``create(options, config)`` returns an object with a method
    ``run(tasks, on_result, progress)``: it pulls :class:`harness.cellwork.CellTask` objects from
    the ``tasks`` iterator (pulling claims the cell, so pull only when there is room to start
    it), computes each with :func:`harness.cellwork.compute_cell` wherever it likes, and calls
    ``on_result`` in the calling process with each result or failure as it arrives.
    """

    name: str
    create: Callable[[Mapping[str, Any], Any], Any]
    description: str = ""
    #: option names understood in ``[executors.NAME]``
    options: tuple[str, ...] = ()
