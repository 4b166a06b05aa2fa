"""A cell's set-up, as one object every protocol starts from.

:class:`CellSetup` turns a :class:`harness.api.ProtocolRequest` into what the loop needs and
keeps the cell's facts as they accumulate: the device, precision and autocast context, the
prepared splits and vocabulary, the model built with its checks, the training features with
unalignable utterances left out, the feature cache, :func:`harness.engine.fit` with seeding and
checkpointing, timed evaluation of dev and test, and finally the :class:`harness.api.CellOutcome`.
A protocol is a short sequence of these calls (see :mod:`plugins.protocols.finetune`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.api import SAMPLING_RATE, CellOutcome, MetricSpec, ModelRequest, ProtocolRequest, SpeechCTCModel, SplitOutput
from harness.engine.device import autocast, resolve_device, resolve_precision, seed_everything
from harness.engine.evaluate import evaluate
from harness.engine.feature_store import FeatureStore, tensor_digest
from harness.engine.features import CachedFeatures, EncoderFeatures, FeatureSource, HiddenStateFeatures, decide_cache
from harness.engine.scoring import corpus_cer
from harness.engine.fit import Checkpointer, FitResult, UpdateLog, fit, use_fused_optimizer
from harness.engine.splits import Split, drop_unalignable, encode_splits, prepare_splits
from harness.engine.text import Vocabulary
from harness.errors import BenchError

#: the kinds of features :meth:`CellSetup.features` makes
FEATURE_KINDS = {"encoder": EncoderFeatures, "hidden_states": HiddenStateFeatures}


def model_name(model: torch.nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def check_frame_lengths(model: SpeechCTCModel, split: Split, device: torch.device, amp: AbstractContextManager) -> None:
    """The model's ``frame_lengths`` must count exactly the frames its ``encode`` returns: a
    mismatch would otherwise surface deep inside the CTC loss, or silently misalign labels."""
    if not split.audio:
        return
    audio = split.audio[0]
    with torch.no_grad(), amp:
        frames = model.encode(audio.to(device)[None]).shape[1]
    expected = int(model.frame_lengths(torch.tensor([len(audio)], dtype=torch.long))[0])
    if frames != expected:
        raise BenchError(
            f"model {model_name(model)}: frame_lengths() gives {expected} frames for a {len(audio)}-sample clip, "
            f"but encode() returned {frames}",
            "a model plugin's frame_lengths(sample_lengths) must return exactly the number of frames "
            "encode() produces for each input length (see docs/plugins.md)",
        )


def data_facts(device: torch.device, precision: str, cached: bool, vocab: Vocabulary,
               splits: Mapping[str, Split]) -> dict[str, Any]:
    """What a cell's record says about how it computed and what it trained on: device,
    precision, feature cache, vocabulary size, training utterances and hours, and the characters
    outside the vocabulary per split (dropped from training labels, left in eval references)."""
    train_split = splits["train"]
    return {
        "device": str(device),
        "precision": precision,
        "feature_cache": cached,
        "vocab_size": len(vocab),
        "train_utterances": len(train_split.ids),
        "train_hours": sum(train_split.samples) / SAMPLING_RATE / 3600,
        "oov_chars": {n: s.oov_chars for n, s in splits.items()},
    }


@dataclass(frozen=True)
class FeatureShape:
    """What a head trained on frozen features gets to size itself."""

    dim: int
    """width of one frame's features (of one layer, for hidden states)"""
    layers: int | None
    """number of layers (hidden states), or None for encoder outputs"""
    vocab_size: int
    """output classes of the CTC layer, blank (index 0) included"""


@dataclass
class CellSetup:
    """One cell's context and facts; make it with :meth:`start`."""

    request: ProtocolRequest
    device: torch.device
    precision: str
    amp: AbstractContextManager
    splits: dict[str, Split]
    vocab: Vocabulary
    facts: dict[str, Any] = field(default_factory=dict)
    #: feature-encoder digests per model object (the feature store's keys)
    _digests: dict[int, str | None] = field(default_factory=dict, repr=False)
    """what the cell's record says about how it computed (``record.train``), filled as it goes"""
    on_log: Callable[[UpdateLog], None] | None = None
    """receives the loss every 25 updates (progress lines, trackers); :meth:`start` takes the request's ``on_log``"""

    # ------------------------------------------------------------------ start
    @classmethod
    def start(cls, request: ProtocolRequest) -> CellSetup:
        """Resolve the device and precision (``run.device``, ``run.precision``), set torch's
        threads (``run.threads``), and prepare the splits and the vocabulary (a user error when
        no training utterance is usable)."""
        runtime = request.runtime
        device = resolve_device(runtime.device)
        precision = resolve_precision(runtime.precision, device)
        if runtime.threads > 0:
            torch.set_num_threads(runtime.threads)
        splits, vocab = prepare_splits(request.data, request.language, request.train)
        return cls(request, device, precision, autocast(device, precision), splits, vocab,
                   on_log=getattr(request, "on_log", None))

    @property
    def train(self):
        """The recipe (:class:`harness.plan.config.TrainSettings`)."""
        return self.request.train

    @property
    def runtime(self):
        """How to compute (:class:`harness.plan.config.RuntimeSettings`)."""
        return self.request.runtime

    @property
    def seed(self) -> int:
        return self.request.seed

    @property
    def language(self) -> str:
        return self.request.language

    def seed_everything(self) -> None:
        """Seed Python's, NumPy's and torch's generators with the cell's seed."""
        seed_everything(self.seed)

    # ------------------------------------------------------------------ the model
    def build_model(self, *, mask_time_prob: float | None = None, frozen: bool = False) -> SpeechCTCModel:
        """Build the cell's model (generators seeded first) with a CTC layer over the vocabulary,
        encode the splits' audio and labels as it wants them, move it to the device and check
        that ``frame_lengths`` agrees with ``encode``.

        ``mask_time_prob`` defaults to the recipe's; ``frozen`` puts the whole model in eval
        mode with no gradients (an upstream that only provides features)."""
        self.seed_everything()
        train = self.train
        model = self.request.build_model(ModelRequest(
            vocab_size=len(self.vocab), blank_id=self.vocab.blank_id, seed=self.seed,
            mask_time_prob=train.mask_time_prob if mask_time_prob is None else mask_time_prob,
            options=dict(self.request.model_options), cache_dir=self.request.model_cache_dir,
        ))
        encode_splits(self.splits, self.vocab, model.normalize_audio)
        model.to(self.device)
        if frozen:
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
        return model

    def enable_gradient_checkpointing(self, model: SpeechCTCModel) -> None:
        """``run.gradient_checkpointing``: a user error naming the model when it has no support."""
        try:
            model.enable_gradient_checkpointing()
        except NotImplementedError:
            raise BenchError(f"run.gradient_checkpointing is set but model {model_name(model)} does not support it",
                             "set run.gradient_checkpointing = false, or implement "
                             "SpeechCTCModel.enable_gradient_checkpointing in the model plugin") from None

    def check_frame_lengths(self, model: SpeechCTCModel) -> None:
        """See :func:`check_frame_lengths` (on the first training utterance)."""
        check_frame_lengths(model, self.splits["train"], self.device, self.amp)

    # ------------------------------------------------------------------ features
    def features(self, model: SpeechCTCModel, split: str | Split, kind: str = "encoder",
                 cached: bool = False) -> CachedFeatures:
        """A feature source over one split: ``kind`` ``"encoder"`` (:class:`EncoderFeatures`) or
        ``"hidden_states"`` (:class:`HiddenStateFeatures`)."""
        if kind not in FEATURE_KINDS:
            raise ValueError(f"kind must be one of {sorted(FEATURE_KINDS)}, got {kind!r}")
        split = self.splits[split] if isinstance(split, str) else split
        source = FEATURE_KINDS[kind](model, split, self.device, self.amp, cached)
        if cached and split.name != "train" and self._store_key(source) is not None:
            self.build_cache(source, stage=None)  # dev and test: shared with the cells that read them too
        return source

    def training_features(self, model: SpeechCTCModel, kind: str = "encoder", cache: bool = True) -> CachedFeatures:
        """The training split's features, after leaving out the utterances too short for their
        labels (``shorter_than_transcript``), with the cache decided by ``run.feature_cache``
        (``cache=False``: never, e.g. for a trainable encoder). The cache is built by :meth:`fit`."""
        source = self.features(model, "train", kind)
        if drop_unalignable(self.splits["train"], source.frames, self.language):
            source = self.features(model, "train", kind)
        source.cached = cache and decide_cache(self.runtime.feature_cache, source)
        return source

    def build_cache(self, source: CachedFeatures, stage: str | None = "encode") -> None:
        """Compute and keep every utterance's features of ``source`` (``stage``: the progress
        stage and the timing fact, ``encode_seconds`` for the training split).

        Encoder outputs go through the run's feature store when it has one
        (``ProtocolRequest.feature_store``, :mod:`harness.engine.feature_store`): a split another
        cell already encoded with the same encoder is loaded instead (the same numbers)."""
        progress = self.request.progress
        start = time.perf_counter()
        key = self._store_key(source)
        if key is None:
            source.build_cache(progress.stage(stage, len(source.split.ids)) if progress and stage else None)
        else:
            store = self._feature_store()
            with store.locked(key):
                rows = store.load(key, source.frames)
                if rows is None:
                    source.build_cache(progress.stage(stage, len(source.split.ids)) if progress and stage else None)
                    store.save(key, source.rows(range(len(source.frames))))
                else:
                    source.use_cache(rows)
                self.facts.setdefault("features_shared", {})[source.split.name] = rows is not None
        if stage:
            self.facts[f"{stage}_seconds"] = time.perf_counter() - start

    def _feature_store(self) -> FeatureStore | None:
        directory = getattr(self.request, "feature_store", None)
        gigabytes = getattr(self.runtime, "feature_store_gb", 0.0)
        return FeatureStore(directory, gigabytes * 2**30) if directory is not None and gigabytes > 0 else None

    def _store_key(self, source: CachedFeatures) -> str | None:
        """The feature store's key of ``source``, or None when it is not stored (no store,
        features other than a frozen encoder's)."""
        if type(source) is not EncoderFeatures or self._feature_store() is None:
            return None
        model = source.model
        digests = self._digests
        if id(model) not in digests:
            params = [p for p in model.feature_encoder_parameters()]
            if not params or any(p.requires_grad for p in params):
                digests[id(model)] = None  # a trainable encoder changes as it trains: never shared
            else:
                digests[id(model)] = tensor_digest(params, type(model).__module__, type(model).__qualname__,
                                                   str(getattr(model, "normalize_audio", "")))
        if digests[id(model)] is None:
            return None
        audio = tensor_digest(source.split.audio)
        return FeatureStore.key(digests[id(model)], audio, self.precision, self.device)

    # ------------------------------------------------------------------ facts
    def record_data(self, cached: bool) -> None:
        """Facts about how the cell computes and what it trains on (:func:`data_facts`)."""
        self.facts.update(data_facts(self.device, self.precision, cached, self.vocab, self.splits))

    def record_parameters(self, trained: torch.nn.Module, *frozen: torch.nn.Module) -> None:
        """Trainable and total parameters (``frozen``: modules that count in the total only)."""
        self.facts["trainable_parameters"] = sum(p.numel() for p in trained.parameters() if p.requires_grad)
        self.facts["parameters"] = (sum(p.numel() for p in trained.parameters())
                                    + sum(p.numel() for m in frozen for p in m.parameters()))
        if self.device.type == "cuda":  # what a cell needs, against what the GPU has (record only)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.facts["gpu_memory_mib"] = torch.cuda.get_device_properties(self.device).total_memory / 2**20

    # ------------------------------------------------------------------ training and evaluation
    def fit(self, model: torch.nn.Module, features: FeatureSource, *, lr: float | None = None,
            features_of: Callable[[Split], FeatureSource] | None = None) -> FitResult:
        """Train with the recipe (``lr`` replaces its learning rate): builds the feature cache
        first when the source is to be cached, seeds the generators, checkpoints to
        ``request.checkpoint`` every ``run.checkpoint_minutes`` (and resumes from it), and adds
        the :class:`FitResult` to the facts.

        ``features_of`` (the callable :meth:`evaluate` takes) lets :func:`fit` score dev during
        training: CER every ``train.eval_every`` updates (the dev curve), and with
        ``train.select = "best-dev"`` the best-scored parameters are the ones returned. A
        recipe that asks for it without ``features_of`` is a user error naming the protocol's gap."""
        if isinstance(features, CachedFeatures) and features.cached and not features.built:
            model.eval()
            self.build_cache(features)
        self.seed_everything()
        train = self.train if lr is None else dataclasses.replace(self.train, lr=float(lr))
        request = self.request
        saver = Checkpointer(request.checkpoint, self.runtime.checkpoint_minutes) if request.checkpoint else None
        on_eval = None
        if getattr(train, "eval_every", 0):
            if features_of is None:
                raise BenchError("train.eval_every is set, but this protocol does not let the engine score dev during "
                                 "training (CellSetup.fit got no features_of)",
                                 "leave train.eval_every and train.select unset for this protocol, or pass "
                                 "features_of to CellSetup.fit in its run()")
            on_eval = self.dev_scorer(model, features_of)
        result = fit(model, features, self.splits["train"], train, seed=self.seed, device=self.device,
                     precision=self.precision, amp=self.amp, progress=request.progress, saver=saver,
                     fused=use_fused_optimizer(self.runtime.fused_optimizer, self.device), on_log=self.on_log,
                     on_eval=on_eval, on_dev=getattr(request, "on_dev", None))
        self.facts.update(result.facts())
        if self.device.type == "cuda":
            self.facts["peak_memory_mib"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return result

    def dev_scorer(self, model: torch.nn.Module, features_of: Callable[[Split], FeatureSource]) -> Callable[[], float]:
        """A function decoding dev greedily and returning its corpus CER (for :func:`fit`'s
        ``on_eval``); the dev features are made once."""
        split = self.splits["dev"]
        source = features_of(split)

        def score() -> float:
            model.eval()
            if isinstance(source, CachedFeatures) and source.cached and not source.built:
                source.build_cache()  # a frozen upstream's dev features: computed once, scored many times
            output = evaluate(model, source, split, self.vocab, self.runtime, self.amp)
            return corpus_cer(output.hypotheses)

        return score

    def evaluate(self, model: torch.nn.Module, features_of: Callable[[Split], FeatureSource],
                 splits: Sequence[str] = ("dev", "test"), metrics: Sequence[MetricSpec] = (),
                 keep_log_probs: bool = True) -> dict[str, SplitOutput]:
        """Decode each of ``splits`` greedily (model in eval mode; ``features_of(split)`` gives its
        feature source), timing each (``eval_seconds``). ``keep_log_probs`` (default True) keeps
        the CTC outputs in ``SplitOutput.log_probs``, which the harness stores so that other
        decoders (beam search, a language model) can run later without retraining."""
        results: dict[str, SplitOutput] = {}
        seconds = self.facts.setdefault("eval_seconds", {})
        for name in splits:
            start = time.perf_counter()
            model.eval()
            split = self.splits[name]
            results[name] = evaluate(model, features_of(split), split, self.vocab, self.runtime, self.amp, metrics,
                                     keep_log_probs=keep_log_probs)
            seconds[name] = time.perf_counter() - start
        if self.device.type == "cuda":
            self.facts["peak_memory_mib_eval"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return results

    def outcome(self, results: Mapping[str, SplitOutput]) -> CellOutcome:
        """The cell's :class:`CellOutcome`: hypotheses, vocabulary, facts, and the utterances
        left out per split and reason."""
        skipped = {name: dict(split.skipped) for name, split in self.splits.items()}
        return CellOutcome(dict(results), self.vocab.symbols, self.facts, skipped)


def train_head_on_frozen_features(
    request: ProtocolRequest,
    make_head: Callable[[FeatureShape], torch.nn.Module],
    *,
    kind: str = "hidden_states",
    lr: float | None = None,
    describe: Callable[[torch.nn.Module], Mapping[str, Any]] | None = None,
    setup: CellSetup | None = None,
) -> CellOutcome:
    """A whole cell in one call: the upstream model frozen, a head trained on its features.

    The upstream is built and frozen; its features (``kind``: ``"hidden_states"``, every
    layer, ``(frames, layers, dim)``; or ``"encoder"``, ``(frames, dim)``) are computed once
    per training utterance when they fit the cache budget; ``make_head(shape)`` builds the
    trainable head (any module with ``head(features, frame_mask) -> logits``) after the
    generators are seeded; it is trained with the recipe (``lr`` replaces its learning rate) and
    dev and test are decoded. ``describe(head)`` adds facts to the record after training (e.g.
    learned layer weights)."""
    setup = setup or CellSetup.start(request)
    upstream = setup.build_model(mask_time_prob=0.0, frozen=True)
    setup.check_frame_lengths(upstream)
    source = setup.training_features(upstream, kind)
    probe = source.one(0)
    shape = FeatureShape(dim=int(probe.shape[-1]), layers=int(probe.shape[1]) if probe.dim() == 3 else None,
                         vocab_size=len(setup.vocab))
    setup.seed_everything()
    head = make_head(shape).to(setup.device)
    setup.record_data(cached=source.cached)
    if shape.layers is not None:
        setup.facts.update(upstream_layers=shape.layers, upstream_dim=shape.dim)
    setup.record_parameters(head, upstream)
    def features_of(split):
        return setup.features(upstream, split, kind)

    if setup.train.steps > 0:
        setup.fit(head, source, lr=lr, features_of=features_of)
    if describe is not None:
        setup.facts.update(describe(head))
    results = setup.evaluate(head, features_of)
    return setup.outcome(results)
