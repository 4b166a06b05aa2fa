"""What a tiny model is pre-trained on and how: :class:`ContrastiveRecipe` (self-supervised,
wav2vec 2.0) and :class:`PhoneticRecipe` (supervised, CTC on IPA phonemes)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.errors import BenchError

#: ``[models.NAME]`` options that change a recipe: ``pretrain_`` + a field name (pretrain_steps = 2000)
OPTION_PREFIX = "pretrain_"


@dataclass(frozen=True)
class Recipe:
    """What every kind of pre-training shares: the speech, the updates and the schedule.

    The speech is the training split of ``dataset`` for each language, drawn with
    ``corpus_seed`` (other sentences and voices than the fine-tuning data, which use the
    dataset's default draw), ``minutes`` in total, split evenly over the languages (or in the
    proportions ``shares`` gives, one weight per language), so monolingual and multilingual
    models see the same amount of speech.
    """

    #: how logs, manifests and ``bench pretrain`` name this kind
    KIND: ClassVar[str] = ""
    #: the model metadata's ``pretraining`` entry
    OBJECTIVE: ClassVar[str] = ""
    #: what the checkpoint's directory name adds after ``wav2vec2-tiny``
    DIRECTORY_TAG: ClassVar[str] = ""
    #: bump when the kind's loop changes what it produces for the same recipe
    LOOP_VERSION: ClassVar[str] = ""
    #: fields that must be positive numbers
    POSITIVE: ClassVar[tuple[str, ...]] = ("minutes", "steps", "lr", "batch_seconds", "max_grad_norm")

    languages: tuple[str, ...]
    minutes: float = 30.0
    dataset: str = "synthetic"
    corpus_seed: int = 1
    #: updates, peak learning rate and the tri-stage schedule's warm-up and hold fractions
    steps: int = 1000
    lr: float = 3e-4
    warmup: float = 0.1
    hold: float = 0.4
    #: padded audio per batch, as in fine-tuning
    batch_seconds: float = 16.0
    max_grad_norm: float = 5.0
    seed: int = 0
    #: relative amount of speech per language, in the order of ``languages`` (empty: even)
    shares: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "shares", tuple(self.shares))
        if self.shares and (len(self.shares) != len(self.languages) or any(
                isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0 for w in self.shares)):
            raise BenchError(f"pre-training shares must be one positive weight per language "
                             f"({len(self.languages)}: {', '.join(self.languages)}), got {list(self.shares)!r}",
                             f"fix {OPTION_PREFIX}shares in bench.toml [models.NAME]")
        for key in self.POSITIVE:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise BenchError(f"pre-training {key} must be a positive number, got {value!r}",
                                 f"fix {OPTION_PREFIX}{key} in bench.toml [models.NAME]")
        if not self.languages:
            raise BenchError("a pre-training recipe needs at least one language")

    def option_names(self) -> tuple[str, ...]:
        """The ``pretrain_*`` options of ``[models.NAME]`` that change this recipe."""
        return tuple(OPTION_PREFIX + f.name for f in dataclasses.fields(self) if f.name != "languages")

    def with_options(self, options: Mapping[str, Any]) -> tuple[Recipe, dict[str, Any]]:
        """This recipe changed by the ``pretrain_*`` options, and the options left for fine-tuning."""
        names = [f.name for f in dataclasses.fields(self) if f.name != "languages"]
        changes: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for key, value in options.items():
            if not key.startswith(OPTION_PREFIX):
                rest[key] = value
                continue
            name = key[len(OPTION_PREFIX):]
            if name not in names:
                raise BenchError(f"unknown option {key!r} for {self.KIND} pre-training",
                                 f"its options: {', '.join(OPTION_PREFIX + n for n in names)}")
            changes[name] = value
        return (dataclasses.replace(self, **changes) if changes else self), rest

    def describe(self) -> str:
        langs = "+".join(self.languages)
        if self.shares:
            langs = " ".join(f"{lang} {self.minutes_for(lang):.3g} min" for lang in self.languages)
            return f"{self.KIND}, {self.minutes:g} min of {self.dataset} ({langs}), {self.steps} updates"
        return f"{self.KIND}, {self.minutes:g} min of {self.dataset} {langs}, {self.steps} updates"

    def as_dict(self) -> dict[str, Any]:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        if not self.shares:  # even shares: the recipe (and its digest) as before shares existed
            del out["shares"]
        return out

    def digest(self) -> str:
        """Hash of everything that decides the weights (with the loop's version)."""
        payload = json.dumps({"loop": self.LOOP_VERSION, **self.as_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def minutes_per_language(self) -> float:
        """Minutes of each language when the shares are even."""
        return self.minutes / len(self.languages)

    def minutes_for(self, language: str) -> float:
        """Minutes of speech of ``language`` (one of ``languages``)."""
        if not self.shares:
            return self.minutes_per_language()
        return self.minutes * self.shares[self.languages.index(language)] / sum(self.shares)


@dataclass(frozen=True)
class ContrastiveRecipe(Recipe):
    """wav2vec 2.0 pre-training of the tiny wav2vec2 architecture on unlabelled speech.

    Measured here with a prototype of this loop: 1,000 updates transfer (test CER 0.536 ->
    0.452 on Spanish, 0.530 -> 0.428 on Italian, 0.665 -> 0.561 on Russian after 400
    fine-tuning updates, one seed); 400 did not (0.577 on Spanish). A 100-update warm-up: with
    40 the codebooks collapsed and the loss turned NaN.
    """

    KIND: ClassVar[str] = "self-supervised"
    OBJECTIVE: ClassVar[str] = "self-supervised (wav2vec 2.0), here"
    LOOP_VERSION: ClassVar[str] = "2"
    POSITIVE: ClassVar[tuple[str, ...]] = Recipe.POSITIVE + ("mask_prob", "mask_length", "num_negatives")

    #: span masking of the transformer input: share of frames starting a span, span length
    mask_prob: float = 0.5
    mask_length: int = 5
    num_negatives: int = 50
    codevector_groups: int = 2
    codevectors_per_group: int = 64
    codevector_dim: int = 128
    diversity_weight: float = 0.1
    #: Gumbel-softmax temperature, annealed exponentially from the first to the second value (not
    #: to 0.5 as in long runs: annealed that far within a few hundred updates, the codebooks collapsed)
    gumbel_temperature: tuple[float, float] = (2.0, 1.5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gumbel_temperature", tuple(self.gumbel_temperature))
        super().__post_init__()


@dataclass(frozen=True)
class PhoneticRecipe(Recipe):
    """Supervised phonetic pre-training: CTC on eSpeak NG's IPA transcriptions of the speech.

    Run through the same fine-tuning loop as every cell, with the feature encoder frozen at its
    random initialisation (so its outputs are computed once) and the transformer trained, on
    the union of the languages' phone sets. Measured here: 1,200 updates over 30 min of six
    languages took 140 s on 2 CPU cores, and after 200 fine-tuning updates (test CER, one seed)
    gave es 0.445, it 0.461, ru 0.559, where the same architecture without pre-training was
    still at 1.0.
    """

    KIND: ClassVar[str] = "phonetic"
    OBJECTIVE: ClassVar[str] = "supervised phonetic (CTC on eSpeak NG IPA), here"
    DIRECTORY_TAG: ClassVar[str] = "-phone"
    LOOP_VERSION: ClassVar[str] = "phonetic-1"

    steps: int = 1200
    lr: float = 2e-3
    max_grad_norm: float = 1.0
    #: keep eSpeak NG's stress marks (primary and secondary) as targets of their own
    stress: bool = False
    #: held-out speech per language for the phone error rate in the manifest
    dev_minutes: float = 0.25
