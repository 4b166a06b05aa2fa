"""What a tiny self-supervised model is pre-trained on and how: :class:`PretrainRecipe`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import BenchError

#: bump when the pre-training loop changes what it produces for the same recipe
LOOP_VERSION = "2"
#: ``[models.NAME]`` options that change a recipe: ``pretrain_`` + a field name (pretrain_steps = 2000)
OPTION_PREFIX = "pretrain_"


@dataclass(frozen=True)
class PretrainRecipe:
    """A wav2vec 2.0 pre-training run of the tiny wav2vec2 architecture on unlabelled speech.

    The speech is the training split of ``dataset`` for each language, drawn with
    ``corpus_seed`` (other sentences and voices than the fine-tuning data, which use the
    dataset's default draw), ``minutes`` in total, split evenly over the languages, so
    monolingual and multilingual models see the same amount of speech.
    """

    languages: tuple[str, ...]
    minutes: float = 30.0
    dataset: str = "synthetic"
    corpus_seed: int = 1
    #: updates, peak learning rate and the tri-stage schedule's warm-up and hold fractions (a
    #: 100-update warm-up: with 40 the codebooks collapsed and the loss turned NaN). Measured
    #: here with a prototype of this loop: 1,000 updates transfer (test CER 0.536 -> 0.452 on Spanish, 0.530 -> 0.428 on
    #: Italian, 0.665 -> 0.561 on Russian, one seed); 400 did not (0.577 on Spanish).
    steps: int = 1000
    lr: float = 3e-4
    warmup: float = 0.1
    hold: float = 0.4
    #: padded audio per batch, as in fine-tuning
    batch_seconds: float = 16.0
    max_grad_norm: float = 5.0
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
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "languages", tuple(self.languages))
        object.__setattr__(self, "gumbel_temperature", tuple(self.gumbel_temperature))
        positive = {"minutes": self.minutes, "steps": self.steps, "lr": self.lr, "batch_seconds": self.batch_seconds,
                    "max_grad_norm": self.max_grad_norm, "mask_prob": self.mask_prob,
                    "mask_length": self.mask_length, "num_negatives": self.num_negatives}
        for key, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise BenchError(f"pre-training {key} must be a positive number, got {value!r}",
                                 f"fix {OPTION_PREFIX}{key} in bench.toml [models.NAME]")
        if not self.languages:
            raise BenchError("a pre-training recipe needs at least one language")

    def with_options(self, options: Mapping[str, Any]) -> tuple[PretrainRecipe, dict[str, Any]]:
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
                raise BenchError(f"unknown pre-training option {key!r}",
                                 f"pre-training options: {', '.join(OPTION_PREFIX + n for n in names)}")
            changes[name] = value
        return (dataclasses.replace(self, **changes) if changes else self), rest

    def describe(self) -> str:
        langs = "+".join(self.languages)
        return f"{self.minutes:g} min of {self.dataset} {langs}, {self.steps} updates"

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def digest(self) -> str:
        """Hash of everything that decides the weights (with the loop's and model's versions)."""
        payload = json.dumps({"loop": LOOP_VERSION, **self.as_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def minutes_per_language(self) -> float:
        return self.minutes / len(self.languages)
