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
    #: facts recorded with the result (``record["data"]``): source, hours, utterances, speakers;
    #: ideally also ``rows_sha256``, a digest per split of the rows used (ids and transcripts)
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
    #: the identity of the data a language reads, as plain JSON-able data: which release or
    #: version, and a digest of its content (not of file dates), e.g. ``{"release":
    #: "cv-corpus-17.0-2024-03-15", "tsv_sha256": {...}}``. It goes into every cell's key (as
    #: ``identity["data"]``), so changed data computes new cells while the old ones stay stored
    #: under their own key. Called while planning, once per (dataset, language, options), also
    #: by every worker replanning its cell: it must be cheap (no audio decoding) and
    #: deterministic. It gets the request of the run's first seed and must not depend on the
    #: seed. A BenchError it raises (data missing) is reported by the check before any cell runs.
    fingerprint: Callable[[DatasetRequest], Mapping[str, Any]] | None = None
    #: options that only say where the data lies or how to read it (a directory, a number of
    #: decoding workers), never what it is: left out of the cell's key, so that moving the data
    #: computes nothing again. Honoured only with a ``fingerprint``, which then names the data.
    location_options: tuple[str, ...] = ()
    #: the languages the configured data holds, when they depend on the options (the language
    #: folders found under a root, the values of a language column): ``--langs all`` plans these
    #: and ``--langs`` is checked against them. Gets the dataset's options; may raise BenchError
    #: (no data configured). None: ``languages`` is the list.
    list_languages: Callable[[Mapping[str, Any]], tuple[str, ...]] | None = None
    #: what ``bench download`` fetches (or tells a person to fetch) for one language (None:
    #: nothing, the data is made here or already local)
    downloads: Callable[[DatasetRequest], Sequence[DownloadItem]] | None = None


# --------------------------------------------------------------------------- downloads
@dataclass(frozen=True)
class DownloadItem:
    """One thing a model or dataset needs fetched before it can run on a machine without internet.

    ``bench download`` asks the selected models and datasets for these and handles each by its
    ``kind``:

    - ``"hub"``: a Hugging Face hub repository (``repo_id`` at ``revision``, ``repo_type`` "model"
      or "dataset") fetched into the Hugging Face cache (``$HF_HOME/hub``), where
      ``from_pretrained`` finds it with ``HF_HUB_OFFLINE=1`` (a dataset loader that keeps its
      own cache, as ``datasets.load_dataset`` does, is better served by a ``"call"``). Only the files
      matching ``allow_patterns`` are fetched, plus, from ``one_of``, the first pattern group that
      matches any file of the repository (e.g. safetensors weights, else ``pytorch_model.bin``).
      Sizes and hashes come from the hub, so bench lists them first, resumes an interrupted
      file and verifies every file;
    - ``"call"``: the plugin fetches it itself (``fetch()``; a toolkit's own download cache), after
      ``present()`` said it is missing;
    - ``"manual"``: it cannot be fetched by a program (terms to accept): ``steps`` are printed.
    """

    kind: str
    #: what it is, for lists and messages (a hub id, a bundle's name, a release)
    label: str
    repo_id: str = ""
    repo_type: str = "model"
    revision: str | None = None
    allow_patterns: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    #: ``"call"``: fetches it; ``present``: whether it is already there (None: unknown)
    fetch: Callable[[], None] | None = None
    present: Callable[[], bool] | None = None
    #: where it goes (shown by ``--dry-run``), when not the Hugging Face cache
    destination: str = ""
    #: ``"manual"``: the steps a person takes, one sentence each
    steps: tuple[str, ...] = ()


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
    #: :class:`harness.run.progress.Progress` for a stage bar and log lines, or None
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

    def ctc_head_parameters(self) -> Sequence[torch.nn.Parameter]:
        """Optional: the parameters of the CTC output layer (what ``train.head_lr`` trains at its
        own learning rate). The default: those of the last ``torch.nn.Linear`` in module order
        (Hugging Face's ``lm_head``); override it when the output layer is something else."""
        linears = [m for m in self.modules() if isinstance(m, torch.nn.Linear)]
        return list(linears[-1].parameters()) if linears else []

    def hidden_states(self, features: torch.Tensor, frame_mask: torch.Tensor) -> Sequence[torch.Tensor]:
        """Optional: the layer outputs after the feature encoder, for protocols that train only a
        downstream model on a frozen upstream (``superb``).

        ``features`` is :meth:`encode`'s output for a batch, ``frame_mask`` its ``(B, frames)``
        validity mask; returns one ``(B, frames, dim)`` tensor per layer, first the input of the
        first transformer layer (the projected encoder output), then each layer's output, all of
        the same ``dim``. A model that implements it says so with ``ModelFacts(hidden_states=True)``
        in its :class:`ModelSpec`, so that a protocol needing it is refused before any cell runs.
        """
        raise NotImplementedError(f"{type(self).__name__} does not provide hidden states")

    def enable_gradient_checkpointing(self) -> None:
        """Optional: recompute activations after the feature encoder during the backward pass
        instead of keeping them (``run.gradient_checkpointing``): less memory for long clips and
        large batches, more compute, the same numbers."""
        raise NotImplementedError(f"{type(self).__name__} does not support gradient checkpointing")

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
class ModelFacts:
    """Typed facts about a model that the core uses (the free-form ``metadata`` is only shown and
    stored). Stored with every result, so reports read them from the store."""

    #: whether the weights were pre-trained (False: random, the no-pretraining baseline;
    #: None: not known)
    pretrained: bool | None = None
    #: pre-training languages (Common Voice codes) when known; one entry marks a monolingual model
    pretraining_languages: tuple[str, ...] = ()
    #: the built model implements :meth:`SpeechCTCModel.hidden_states`
    hidden_states: bool = False


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
    #: what the core needs to know about the model (capabilities, pre-training)
    facts: ModelFacts = field(default_factory=ModelFacts)
    #: option names the model understands in ``[models.NAME]``, checked before any cell (a
    #: typo fails with "did you mean"); empty: the plugin checks its options itself
    options: tuple[str, ...] = ()
    #: what ``bench download`` fetches for it, given its ``[models.NAME]`` options (None:
    #: nothing, it needs no download)
    downloads: Callable[[Mapping[str, Any]], Sequence[DownloadItem]] | None = None


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


# --------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class SplitOutput:
    """What a protocol decoded on one evaluation split."""

    #: (utterance id, normalised reference, hypothesis), one per evaluated utterance
    hypotheses: list[tuple[str, str, str]]
    #: seconds of audio evaluated
    seconds: float
    #: scores the protocol computed itself (``ProtocolRequest.metrics``); the core scores the
    #: hypotheses with the run's metrics whatever is here
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def utterances(self) -> int:
        return len(self.hypotheses)


@dataclass(frozen=True)
class CellOutcome:
    """What a protocol returns for one cell: hypotheses per split and facts for the record."""

    #: "dev" and "test" (at least "test")
    splits: dict[str, SplitOutput]
    #: the output symbols, index 0 being the CTC blank
    vocabulary: tuple[str, ...]
    #: facts recorded with the result (device, updates, loss curve, timings, ...)
    train_info: dict[str, Any]
    #: utterances left out, by split and reason (never silently)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolRequest:
    """Everything a protocol gets to compute one cell."""

    #: the model plugin's builder (call it with a :class:`ModelRequest`)
    build_model: Callable[[ModelRequest], SpeechCTCModel]
    data: DatasetSplits
    language: str
    seed: int
    #: :class:`harness.plan.config.TrainSettings`: the run's recipe (steps, lr, schedule, batching)
    train: Any
    #: :class:`harness.plan.config.RuntimeSettings`: device, precision, threads, caches
    runtime: Any
    #: the protocol's options (``[protocols.NAME]`` merged over its defaults)
    options: Mapping[str, Any]
    #: the model's own options (``[models.NAME]``), for :class:`ModelRequest`
    model_options: Mapping[str, Any] = field(default_factory=dict)
    #: :class:`harness.run.progress.Progress` or None
    progress: Any = None
    #: file for in-cell checkpoints (resume after a kill), or None
    checkpoint: Path | None = None
    #: ``ModelRequest.cache_dir`` for models that prepare themselves
    model_cache_dir: Path | None = None


@dataclass(frozen=True)
class ProtocolSpec:
    """How a built model is trained and evaluated in a cell: the study's fine-tuning, SUPERB's
    frozen upstream with a small downstream, ... Its name, version and (resolved) options are
    part of every cell's key."""

    name: str
    #: computes one cell; raises BenchError for user errors
    run: Callable[[ProtocolRequest], CellOutcome]
    version: str = "0"
    description: str = ""
    #: the options it understands and their defaults (``[protocols.NAME]``; typos are refused)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: validates options merged over ``defaults`` (raise BenchError); run before any cell
    check: Callable[[Mapping[str, Any]], None] | None = None
    #: refuses models it cannot use, before any cell: returns a reason, or None when fine
    accepts: Callable[[ModelFacts], str | None] | None = None


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
    ``run(tasks, on_result, progress)``: it pulls :class:`harness.run.cell.CellTask` objects from
    the ``tasks`` iterator (pulling claims the cell, so pull only when there is room to start
    it), computes each with :func:`harness.run.cell.compute_cell` wherever it likes, and calls
    ``on_result`` in the calling process with each result or failure as it arrives.
    """

    name: str
    create: Callable[[Mapping[str, Any], Any], Any]
    description: str = ""
    #: option names understood in ``[executors.NAME]``
    options: tuple[str, ...] = ()
