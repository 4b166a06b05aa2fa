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
#: the values of :attr:`Utterance.gender` (empty: not recorded)
GENDERS = ("female", "male", "other")


def normalise_gender(raw: object) -> str:
    """A dataset's gender label as one of :data:`GENDERS`, or "" when it records none: Common
    Voice's ``male``/``female``/``other`` and its newer ``male_masculine``, ``female_feminine``,
    ``intersex``, ``transgender``, ``non-binary`` ("other"; ``do_not_wish_to_say`` is ""),
    FLEURS's ``MALE``/``FEMALE``/``OTHER``."""
    text = str(raw or "").strip().lower().replace("-", "_").replace(" ", "_")
    if not text or text in ("nan", "none", "do_not_wish_to_say", "unknown", "undefined"):
        return ""
    if text in ("male", "male_masculine", "m", "man"):
        return "male"
    if text in ("female", "female_feminine", "f", "woman"):
        return "female"
    return "other"


@dataclass(frozen=True)
class Utterance:
    """One utterance: 16 kHz mono float32 audio and its raw (unnormalised) transcript."""

    id: str
    audio: np.ndarray
    text: str
    speaker: str = ""
    gender: str = ""
    """the speaker's gender where the dataset records it: "female", "male" or "other" (see
    :data:`GENDERS`); empty: not recorded"""

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLING_RATE


@dataclass(frozen=True)
class DatasetRequest:
    language: str
    seed: int
    """seed of the cell; datasets that subsample training data use it (deterministically)"""
    options: Mapping[str, Any]
    """the dataset's own settings from bench.toml ``[datasets.NAME]`` (after presets and --set)"""
    cache_dir: Path
    """a directory the dataset may use for its cache (shared between runs)"""


@dataclass(frozen=True)
class DatasetSplits:
    train: Sequence[Utterance]
    dev: Sequence[Utterance]
    test: Sequence[Utterance]
    info: Mapping[str, Any] = field(default_factory=dict)
    """facts recorded with the result (``record["data"]``): source, hours, utterances, speakers; ideally also
    ``rows_sha256``, a digest per split of the rows used (ids and transcripts)
    """
    skipped: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """rows the dataset left out, by split and reason (``{"train": {"missing_clip": 2}}``); merged with what
    the training loop skips into the cell's record
    """


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    languages: tuple[str, ...]
    load: Callable[[DatasetRequest], DatasetSplits]
    version: str = "0"
    description: str = ""
    options: tuple[str, ...] = ()
    """option names the dataset understands (used to reject typos in bench.toml)"""
    check: Callable[[DatasetRequest], None] | None = None
    """cheap check that a language can be loaded (files present, source configured), run for every planned
    language before any cell is computed; raises BenchError
    """
    fingerprint: Callable[[DatasetRequest], Mapping[str, Any]] | None = None
    """the identity of the data a language reads, as plain JSON-able data: which release or version, and a
    digest of its content (not of file dates), e.g. ``{"release": "cv-corpus-17.0-2024-03-15",
    "tsv_sha256": {...}}``. It goes into every cell's key (as ``identity["data"]``), so changed data
    computes new cells while the old ones stay stored under their own key. Called while planning, once per
    (dataset, language, options), also by every worker replanning its cell: it must be cheap (no audio
    decoding) and deterministic. It gets the request of the run's first seed and must not depend on the
    seed. A BenchError it raises (data missing) is reported by the check before any cell runs.
    """
    location_options: tuple[str, ...] = ()
    """options that only say where the data lies or how to read it (a directory, a number of decoding
    workers), never what it is: left out of the cell's key, so that moving the data computes nothing again.
    Honoured only with a ``fingerprint``, which then names the data.
    """
    list_languages: Callable[[Mapping[str, Any]], tuple[str, ...]] | None = None
    """the languages the configured data holds, when they depend on the options (the language folders found
    under a root, the values of a language column): ``--langs all`` plans these and ``--langs`` is checked
    against them. Gets the dataset's options; may raise BenchError (no data configured). None:
    ``languages`` is the list.
    """
    downloads: Callable[[DatasetRequest], Sequence[DownloadItem]] | None = None
    """what ``bench download`` fetches (or tells a person to fetch) for one language (None: nothing, the data
    is made here or already local)
    """


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
    label: str
    """what it is, for lists and messages (a hub id, a bundle's name, a release)"""
    repo_id: str = ""
    repo_type: str = "model"
    revision: str | None = None
    allow_patterns: tuple[str, ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    fetch: Callable[[], None] | None = None
    """``"call"``: fetches it; ``present``: whether it is already there (None: unknown)"""
    present: Callable[[], bool] | None = None
    destination: str = ""
    """where it goes (shown by ``--dry-run``), when not the Hugging Face cache"""
    steps: tuple[str, ...] = ()
    """``"manual"``: the steps a person takes, one sentence each"""


# --------------------------------------------------------------------------- models
#: fields of a transformers model config that a run may set, for every model (``train.model_config``,
#: e.g. in preset ``paper``) or for one (``[models.NAME]``), with their types. Time masking's
#: probability is the recipe's own ``train.mask_time_prob`` (:attr:`ModelRequest.mask_time_prob`)
MODEL_CONFIG_OPTIONS: Mapping[str, type] = {
    "layerdrop": float, "hidden_dropout": float, "attention_dropout": float, "activation_dropout": float,
    "feat_proj_dropout": float, "final_dropout": float, "mask_time_length": int, "mask_feature_prob": float,
    "mask_feature_length": int,
}


@dataclass(frozen=True)
class ModelRequest:
    vocab_size: int
    blank_id: int
    """index of the CTC blank, which is also the padding index"""
    seed: int
    mask_time_prob: float = 0.05
    """SpecAugment-style time masking probability during fine-tuning"""
    options: Mapping[str, Any] = field(default_factory=dict)
    """the model's own settings from bench.toml ``[models.NAME]``"""
    cache_dir: Path | None = None
    """where models that ``prepare`` themselves keep what they made (``<run.cache_dir>/models``)"""


@dataclass(frozen=True)
class PrepareContext:
    """What a model's ``prepare`` gets: where to keep what it makes, speech to make it from,
    and how to compute. ``prepare`` runs once per run, before any cell, in the driver."""

    cache_dir: Path
    """the models' cache directory (the same path cells get as ``ModelRequest.cache_dir``)"""
    load_dataset: Callable[[str, str, int, Mapping[str, Any]], DatasetSplits]
    """``load_dataset(dataset, language, seed, options)``: a registered dataset's splits"""
    device: str = "auto"
    threads: int = 0
    """torch threads (0: torch's default)"""
    progress: Any = None
    """:class:`harness.run.progress.Progress` for a stage bar and log lines, or None"""
    force: bool = False
    """make it again even when it is already there"""
    options: Mapping[str, Any] = field(default_factory=dict)
    """the model's own settings from bench.toml ``[models.NAME]`` (as its cells get them)"""
    on_log: Callable[[Any], None] | None = None
    """hand every :class:`harness.engine.UpdateLog` of a training loop here (experiment trackers
    and heartbeat lines show pre-training's progress); None when nobody listens"""

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

    normalize_audio: bool = True
    """whether audio must be normalised to zero mean and unit variance per utterance"""

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

    pretrained: bool | None = None
    """whether the weights were pre-trained (False: random, the no-pretraining baseline; None: not known)"""
    pretraining_languages: tuple[str, ...] = ()
    """pre-training languages (Common Voice codes) when known; one entry marks a monolingual model"""
    hidden_states: bool = False
    """the built model implements :meth:`SpeechCTCModel.hidden_states`"""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[ModelRequest], SpeechCTCModel]
    version: str = "0"
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """facts shown by ``bench list`` and stored with every result (hub id, architecture, ...)"""
    check: Callable[[], None] | None = None
    """cheap availability check run before any cell is computed; raises BenchError"""
    prepare: Callable[[PrepareContext], Mapping[str, Any]] | None = None
    """makes what ``build`` needs (pre-trains a model, say) when it is not in the cache yet; returns facts
    about it (path, whether it was made now, losses) for logs and ``bench pretrain``
    """
    facts: ModelFacts = field(default_factory=ModelFacts)
    """what the core needs to know about the model (capabilities, pre-training)"""
    options: tuple[str, ...] = ()
    """option names the model understands in ``[models.NAME]``, checked before any cell (a typo fails with
    "did you mean"); empty: the plugin checks its options itself
    """
    downloads: Callable[[Mapping[str, Any]], Sequence[DownloadItem]] | None = None
    """what ``bench download`` fetches for it, given its ``[models.NAME]`` options (None: nothing, it needs no
    download)
    """


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

    hypotheses: list[tuple[str, str, str]]
    """(utterance id, normalised reference, hypothesis), one per evaluated utterance"""
    seconds: float
    """seconds of audio evaluated"""
    metrics: dict[str, float] = field(default_factory=dict)
    """scores the protocol computed itself (``ProtocolRequest.metrics``); the core scores the hypotheses with
    the run's metrics whatever is here
    """
    log_probs: dict[str, np.ndarray] | None = None
    """the model's CTC outputs: utterance id -> ``(frames, vocab)`` float16 log-probabilities whose per-frame
    arg-max gives the hypothesis (see :mod:`harness.engine.logprobs`); the harness stores them beside the
    results so that other decoders can run later without retraining. None: the protocol did not keep them
    (the cell is then decoded greedily only)
    """

    @property
    def utterances(self) -> int:
        return len(self.hypotheses)


@dataclass(frozen=True)
class CellOutcome:
    """What a protocol returns for one cell: hypotheses per split and facts for the record."""

    splits: dict[str, SplitOutput]
    """"dev" and "test" (at least "test")"""
    vocabulary: tuple[str, ...]
    """the output symbols, index 0 being the CTC blank"""
    train_info: dict[str, Any]
    """facts recorded with the result (device, updates, loss curve, timings, ...)"""
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    """utterances left out, by split and reason (never silently)"""


@dataclass(frozen=True)
class ProtocolRequest:
    """Everything a protocol gets to compute one cell."""

    build_model: Callable[[ModelRequest], SpeechCTCModel]
    """the model plugin's builder (call it with a :class:`ModelRequest`)"""
    data: DatasetSplits
    language: str
    seed: int
    train: Any
    """:class:`harness.plan.config.TrainSettings`: the run's recipe (steps, lr, schedule, batching)"""
    runtime: Any
    """:class:`harness.plan.config.RuntimeSettings`: device, precision, threads, caches"""
    options: Mapping[str, Any]
    """the protocol's options (``[protocols.NAME]`` merged over its defaults)"""
    model_options: Mapping[str, Any] = field(default_factory=dict)
    """the model's own options (``[models.NAME]``), for :class:`ModelRequest`"""
    progress: Any = None
    """:class:`harness.run.progress.Progress` or None"""
    checkpoint: Path | None = None
    """file for in-cell checkpoints (resume after a kill), or None"""
    model_cache_dir: Path | None = None
    """``ModelRequest.cache_dir`` for models that prepare themselves"""
    feature_store: Path | None = None
    """directory where cells share frozen feature-encoder outputs (:mod:`harness.engine.feature_store`),
    or None"""
    on_log: Callable[[Any], None] | None = None
    """receives the training loop's :class:`harness.engine.UpdateLog` every 25 updates (experiment
    trackers); :class:`harness.engine.CellSetup` passes it to the loop, a protocol calling
    :func:`harness.engine.fit` itself passes it as ``on_log``"""
    on_dev: Callable[[int, float], None] | None = None
    """receives ``(update, dev CER)`` each time dev is scored during training (``train.eval_every``)"""


@dataclass(frozen=True)
class ProtocolSpec:
    """How a built model is trained and evaluated in a cell: the study's fine-tuning, SUPERB's
    frozen upstream with a small downstream, ... Its name, version and (resolved) options are
    part of every cell's key."""

    name: str
    run: Callable[[ProtocolRequest], CellOutcome]
    """computes one cell; raises BenchError for user errors"""
    version: str = "0"
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """the options it understands and their defaults (``[protocols.NAME]``; typos are refused)"""
    check: Callable[[Mapping[str, Any]], None] | None = None
    """validates options merged over ``defaults`` (raise BenchError); run before any cell"""
    accepts: Callable[[ModelFacts], str | None] | None = None
    """refuses models it cannot use, before any cell: returns a reason, or None when fine"""


# --------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class MetricSpec:
    name: str
    compute: Callable[[Sequence[str], Sequence[str]], float]
    """corpus-level score of hypotheses against references (same order, same length)"""
    version: str = "0"
    description: str = ""
    lower_is_better: bool = True


# --------------------------------------------------------------------------- decoders
@dataclass(frozen=True)
class DecoderRequest:
    """What a decoder's ``build`` gets for one cell."""

    #: the cell's output symbols, index 0 the CTC blank, ``" "`` the word separator
    vocabulary: tuple[str, ...]
    language: str
    #: the cell's normalised training transcripts (never dev or test): what a language model
    #: may be built from
    train_text: Sequence[str]
    #: the decoder's options (``[decoders.NAME]`` merged over its ``defaults``), tuned ones
    #: included as grids
    options: Mapping[str, Any]
    #: a folder for what it builds and reuses (language models), shared between runs
    cache_dir: Path


#: ``decode(log_probs, weights)``: one hypothesis per utterance from its ``(frames, vocab)``
#: float16 log-probabilities, with the tuned ``weights`` (one value of each tuned option)
DecodeFunction = Callable[[Sequence[np.ndarray], Mapping[str, float]], list[str]]


@dataclass(frozen=True)
class DecoderSpec:
    """How a cell's stored CTC outputs become text: greedy, beam search, beam search with a
    language model. A decoder runs on stored outputs, so it is a report dimension, never part of
    a cell's key (``bench report --decoders greedy,beam-lm``)."""

    name: str
    #: prepares decoding for one cell (builds its language model, say); returns the function
    #: that decodes a list of utterances
    build: Callable[[DecoderRequest], DecodeFunction]
    version: str = "0"
    description: str = ""
    #: the options it understands and their defaults (``[decoders.NAME]``; typos are refused)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: options tuned on dev: each is a number or a list of numbers (the grid); bench decodes dev
    #: with every combination, keeps the best by ``tune_metric`` and decodes test once with it
    tuned: tuple[str, ...] = ()
    tune_metric: str = "wer"
    #: cheap availability check (an optional package installed?); raises BenchError
    check: Callable[[], None] | None = None
    #: validates its options (merged over ``defaults``) before anything is decoded; raises BenchError
    check_options: Callable[[Mapping[str, Any]], None] | None = None


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
    options: tuple[str, ...] = ()
    """option names understood in ``[executors.NAME]``"""


# --------------------------------------------------------------------------- experiment trackers
@dataclass(frozen=True)
class TrackerRequest:
    """What a tracker's ``create`` gets: its options and where it is."""

    name: str
    options: Mapping[str, Any]
    """``[trackers.NAME]`` merged over the spec's ``defaults`` (checked)"""
    directory: Path
    """a default home for its files: ``<store's folder>/tracking/NAME`` (``.bench/tracking/NAME``)"""
    run_id: str
    """the ``bench run`` this instance serves (shared by the run's driver and its cells)"""
    scope: str
    """``"run"``: the process running ``bench run``/``bench report`` (run, pre-training and
    report events); ``"cell"``: wherever one cell is computed (that cell's events)"""
    cell: Any = None
    """the cell (:class:`harness.plan.cells.Cell`) for scope ``"cell"``, else None"""
    key: str = ""
    """the cell's key for scope ``"cell"``"""


class Tracker(abc.ABC):
    """What ``TrackerSpec.create`` returns: an object receiving events (:mod:`harness.tracking`)."""

    @abc.abstractmethod
    def handle(self, event: Any) -> None:
        """Record one event; ignore event types you do not know (new ones may be added)."""

    def close(self) -> None:
        """Called once after the last event of this instance (end of the cell or run): flush, finish runs."""


@dataclass(frozen=True)
class TrackerSpec:
    """An experiment tracker (TensorBoard, MLflow, W&B, ...): receives typed events from the run
    and its cells (``run.trackers``; docs/tracking.md). Never part of a cell's key."""

    name: str
    create: Callable[[TrackerRequest], Tracker]
    """makes one instance: for the run (in the driver) or for one cell (where it runs)"""
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """the options it understands and their defaults (``[trackers.NAME]``; typos and wrongly typed values are refused)"""
    check: Callable[[], None] | None = None
    """cheap availability check before any work (its package installed?); raises BenchError with the install hint"""
    check_options: Callable[[Mapping[str, Any]], None] | None = None
    """validates its options (merged over ``defaults``) before any work; raises BenchError"""
    extra: str = ""
    """the pip extra that installs what it needs (``bench[mlflow]``), for ``bench list``"""
