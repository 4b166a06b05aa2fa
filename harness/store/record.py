"""The typed record of a finished cell: what the store keeps besides scores and hypotheses,
and what reports read.

A :class:`CellRecord` is written as JSON (:meth:`CellRecord.to_json`) with its schema
:data:`RECORD_VERSION`; :meth:`CellRecord.from_json` reads every version written so far
(version 1 is the untyped dict of bench 0.1, which had no ``version`` key) and migrates it.
Facts the core defines are typed fields; what plugins define (the cell's identity, a dataset's
facts, a protocol's own training facts) stays plain JSON-able mappings.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.engine.scoring import BLANK_SHARE

#: 2: typed record (``version`` key; training facts typed, a protocol's others under ``train.extra``)
RECORD_VERSION = 2


@dataclass(frozen=True)
class TrainFacts:
    """How a cell trained (``CellSetup``'s facts and :class:`harness.engine.FitResult`)."""

    device: str | None = None
    """facts a protocol did not give are None (and left out of the JSON)"""
    precision: str | None = None
    feature_cache: bool | None = None
    vocab_size: int | None = None
    train_utterances: int | None = None
    train_hours: float | None = None
    """hours of audio the loop trained on, after its own skips"""
    oov_chars: Mapping[str, int] | None = None
    """characters outside the vocabulary per split"""
    trainable_parameters: int | None = None
    parameters: int | None = None
    updates: int | None = None
    train_seconds: float | None = None
    audio_seconds: float | None = None
    audio_seconds_per_second: float | None = None
    batches: int | None = None
    padding_fraction: float | None = None
    loss_curve: tuple[float, ...] = ()
    """mean loss per window of 25 updates"""
    resumed_from_update: int | None = None
    dev_curve: tuple[tuple[int, float], ...] = ()
    """``train.eval_every``: (update, dev CER) each time dev was scored during training"""
    selected_update: int | None = None
    """``train.select = "best-dev"``: the update whose parameters decoded dev and test"""
    encode_seconds: float | None = None
    """seconds of the one-off feature cache pass, and of decoding per split"""
    eval_seconds: Mapping[str, float] | None = None
    layer_weights: tuple[float, ...] | None = None
    """``superb``: learned weight of each upstream layer, and the upstream's shape"""
    upstream_layers: int | None = None
    upstream_dim: int | None = None
    gpu_memory_mib: float | None = None
    """CUDA only: the GPU's memory and the peaks of training and decoding (MiB)"""
    peak_memory_mib: float | None = None
    peak_memory_mib_eval: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    """facts a protocol adds that are not listed above"""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainFacts:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        for key in ("loss_curve", "layer_weights"):
            if known.get(key) is not None:
                known[key] = tuple(known[key])
        if known.get("dev_curve") is not None:
            known["dev_curve"] = tuple((int(u), float(v)) for u, v in known["dev_curve"])
        extra = {**data.get("extra", {}), **{k: v for k, v in data.items() if k not in names and k != "extra"}}
        return cls(**known, extra=extra)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        for key in ("loss_curve", "layer_weights"):
            if out[key] is not None:
                out[key] = list(out[key])
        out["dev_curve"] = [list(point) for point in out["dev_curve"]] or None  # left out when not scored
        out = {k: v for k, v in out.items() if v is not None and not (k == "loss_curve" and not v)}
        return {**out, **dict(self.extra)}


@dataclass(frozen=True)
class SplitFacts:
    """One evaluated split: its size, and what its hypotheses look like."""

    utterances: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class StoredFile:
    """A file of a cell's outputs beside the store (:mod:`harness.store.outputs`), named by its
    content's SHA-256."""

    sha256: str
    bytes: int
    #: ``.ctc``: log-probabilities; ``.txt``: the normalised training transcripts; ``.gender``: the
    #: speakers' genders of a split
    suffix: str = ".ctc"
    utterances: int = 0
    #: ``.ctc``: output frames in all (20 ms each for wav2vec 2.0 models)
    frames: int = 0


@dataclass(frozen=True)
class DecodingFacts:
    """How a view of a cell was decoded from its stored outputs (:mod:`harness.decoding.stage`)."""

    decoder: str
    version: str = "0"
    #: the decoder's options (tuned ones as the grids tried)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: the tuned weights chosen on dev (e.g. ``alpha``, ``beta``), and their dev score
    weights: Mapping[str, float] = field(default_factory=dict)
    tune_metric: str | None = None
    dev_score: float | None = None
    #: combinations tried on dev
    grid_points: int = 0
    #: seconds spent decoding per split (dev: every grid point) and building (language model)
    seconds: Mapping[str, float] = field(default_factory=dict)
    #: seconds of audio decoded per split (once)
    audio_seconds: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CellRecord:
    """Everything a finished cell records besides its scores and hypotheses."""

    identity: Mapping[str, Any]
    """what decides the cell's key: model, dataset (and its data's fingerprint), language, seed, protocol,
    recipe (plain JSON, as hashed)
    """
    seed: int
    model_origin: str = ""
    """the distribution and version each of the cell's plugins came from"""
    dataset_origin: str = ""
    protocol_origin: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    """the dataset's facts (``DatasetSplits.info``: source, hours, utterances, speakers, digests)"""
    skipped: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """utterances left out, by split and reason (the dataset's and the loop's)"""
    vocabulary: tuple[str, ...] = ()
    """output symbols, index 0 the CTC blank"""
    train: TrainFacts = field(default_factory=TrainFacts)
    eval: Mapping[str, SplitFacts] = field(default_factory=dict)
    runtime: Mapping[str, Any] = field(default_factory=dict)
    """the runtime settings it was computed with (not part of the key)"""
    preset: str | None = None
    packages: Mapping[str, str] = field(default_factory=dict)
    """package versions, git revision and machine it was computed on"""
    git_revision: str | None = None
    machine: Mapping[str, Any] = field(default_factory=dict)
    node: Mapping[str, Any] | None = None
    """where an executor computed it: ``executor`` and ``host``, plus Ray's node ``address`` and ``id`` or
    Slurm's ``job_id`` and ``restarts`` (None: in the ``bench run`` process)
    """
    metric_versions: Mapping[str, str] = field(default_factory=dict)
    """version of each metric its scores were computed with, and a summary of its outputs per split
    (``empty_hypotheses``: share of empty hypotheses, ...)
    """
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    oom_retries: int = 0
    """micro-batch halvings after running out of memory, and the batching it finished with"""
    effective_batching: Mapping[str, float] | None = None
    log_probs: Mapping[str, StoredFile] = field(default_factory=dict)
    """the cell's CTC log-probabilities per split ("dev", "test"), stored beside the store; empty for cells
    computed before bench kept them (those are decoded greedily only)
    """
    train_text: StoredFile | None = None
    """the normalised training transcripts, for decoders' language models (None: not kept)"""
    genders: Mapping[str, StoredFile] = field(default_factory=dict)
    """per evaluated split ("dev", "test"), the speakers' genders of its utterances, where the dataset records
    them (Common Voice, FLEURS): the report's per-gender scores; empty: none recorded
    """
    decoding: DecodingFacts | None = None
    """a decoded view's facts (never in the store: views are made by ``bench report --decoders``)"""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """facts of newer versions or of other tools, kept as they were"""
    version: int = RECORD_VERSION

    @property
    def has_log_probs(self) -> bool:
        """Whether other decoders than greedy can run on this cell's stored outputs."""
        return "test" in self.log_probs

    # ------------------------------------------------------------------ derived
    @property
    def protocol(self) -> str:
        """The cell's protocol (cells stored before protocols existed were fine-tuned)."""
        return self.identity.get("protocol", {}).get("name", "finetune")

    @property
    def model_facts(self) -> Mapping[str, Any]:
        """The model's :class:`harness.api.ModelFacts` as stored (``pretrained``, ``pretraining_languages``, ...)."""
        return self.identity.get("model", {}).get("facts", {})

    @property
    def device(self) -> str:
        return self.machine.get("device", self.train.device or "?")

    def is_blank(self, split: str = "test") -> bool:
        """Whether the model output (almost) only blanks on ``split`` (the CTC plateau)."""
        share = self.outputs.get(split, {}).get("empty_hypotheses")
        return isinstance(share, (int, float)) and not math.isnan(share) and share >= BLANK_SHARE

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        for f in dataclasses.fields(self):
            if f.name in ("version", "extra"):
                continue
            value = getattr(self, f.name)
            if f.name == "train":
                value = value.to_json()
            elif f.name == "eval":
                value = {n: dataclasses.asdict(s) for n, s in value.items()}
            elif f.name == "vocabulary":
                value = list(value)
            elif f.name == "oom_retries" and not value:
                continue
            elif f.name in ("log_probs", "genders"):
                if not value:
                    continue
                value = {n: dataclasses.asdict(v) for n, v in value.items()}
            elif f.name == "decoding":
                if value is None:
                    continue
                value = value.to_json()
            elif f.name == "train_text":
                if value is None:
                    continue
                value = dataclasses.asdict(value)
            elif f.name in ("effective_batching", "node") and value is None:
                continue
            out[f.name] = value
        return {**out, **dict(self.extra)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CellRecord:
        """Read a stored record of any version (migrating older ones)."""
        data = dict(data)
        version = int(data.pop("version", 1))
        if version > RECORD_VERSION:
            warnings.warn(f"a cell record of version {version} was written by a newer bench; reading what this "
                          f"version knows ({RECORD_VERSION})", stacklevel=2)
        names = {f.name for f in dataclasses.fields(cls)} - {"version", "extra"}
        known = {k: data.pop(k) for k in list(data) if k in names}
        known.setdefault("identity", {})
        known.setdefault("seed", known["identity"].get("seed", 0))
        known["train"] = TrainFacts.from_json(known.get("train") or {})
        known["eval"] = {n: SplitFacts(**{k: v for k, v in s.items() if k in ("utterances", "seconds")})
                         for n, s in (known.get("eval") or {}).items()}
        known["vocabulary"] = tuple(known.get("vocabulary") or ())
        known["oom_retries"] = int(known.get("oom_retries") or 0)
        known["log_probs"] = {n: StoredFile(**v) for n, v in (known.get("log_probs") or {}).items()}
        known["genders"] = {n: StoredFile(**v) for n, v in (known.get("genders") or {}).items()}
        if known.get("decoding") is not None:
            known["decoding"] = DecodingFacts(**known["decoding"])
        if known.get("train_text") is not None:
            known["train_text"] = StoredFile(**known["train_text"])
        return cls(**known, extra={**data.pop("extra", {}), **data})

    # ------------------------------------------------------------------ the dict of bench 0.1
    def __getitem__(self, key: str) -> Any:
        warnings.warn("reading a cell record by key is deprecated: use its attributes (harness.store.CellRecord)",
                      DeprecationWarning, stacklevel=2)
        return self.to_json()[key]

    def get(self, key: str, default: Any = None) -> Any:
        warnings.warn("reading a cell record by key is deprecated: use its attributes (harness.store.CellRecord)",
                      DeprecationWarning, stacklevel=2)
        return self.to_json().get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.to_json()

    def with_scores(self, metric_versions: Mapping[str, str], outputs: Mapping[str, Mapping[str, Any]]) -> CellRecord:
        """The record after its hypotheses were scored again."""
        return dataclasses.replace(self, metric_versions={**self.metric_versions, **metric_versions}, outputs=outputs)
