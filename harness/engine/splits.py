"""A cell's data as the loop uses it: the usable utterances of each split, their normalised
transcripts, audio tensors and label ids, and what was left out and why.

:func:`prepare_splits` keeps the usable utterances (normalised text, raw audio) and builds the
vocabulary from the training text; :func:`encode_splits` turns audio into (normalised) tensors
and transcripts into label ids once the model says whether it wants normalised audio;
:func:`drop_unalignable` leaves out training utterances too short for their labels.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.api import SAMPLING_RATE, DatasetSplits, Utterance
from harness.engine.text import Vocabulary, build_vocabulary, normalize
from harness.errors import BenchError

#: the splits of a cell, in the order the loop uses them
SPLIT_NAMES = ("train", "dev", "test")


@dataclass
class Split:
    """The usable utterances of one split, row-aligned.

    ``audio`` holds NumPy arrays after :func:`prepare_splits` and float32 tensors after
    :func:`encode_splits`; ``labels`` is filled by :func:`encode_splits` (empty before).
    ``skipped`` counts the utterances left out, by reason (``duplicate``, ``bad_audio``,
    ``too_long``, ``empty_transcript``, ``no_known_characters``, ``shorter_than_transcript``).
    """

    name: str
    ids: list[str] = field(default_factory=list)
    audio: list = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    oov_chars: int = 0
    """characters outside the vocabulary: dropped from training labels, kept in eval references"""

    @property
    def samples(self) -> list[int]:
        """Length of each utterance in samples (16 kHz)."""
        return [len(a) for a in self.audio]

    @property
    def seconds(self) -> float:
        return sum(self.samples) / SAMPLING_RATE

    def __len__(self) -> int:
        return len(self.ids)

    def keep(self, indices: Sequence[int]) -> None:
        """Keep only the rows at ``indices`` (in that order), in every row-aligned field."""
        self.ids = [self.ids[i] for i in indices]
        self.audio = [self.audio[i] for i in indices]
        self.refs = [self.refs[i] for i in indices]
        if self.labels:
            self.labels = [self.labels[i] for i in indices]


def _usable_audio(utt: Utterance) -> bool:
    audio = utt.audio
    return audio is not None and audio.ndim == 1 and len(audio) > 0 and bool(np.isfinite(audio).all())


def prepare_audio(audio: np.ndarray, normalise: bool) -> torch.Tensor:
    """Float32 tensor of a clip, normalised to zero mean and unit variance when asked."""
    audio = audio.astype(np.float32, copy=False)
    if normalise:
        audio = (audio - audio.mean()) / math.sqrt(float(audio.var()) + 1e-7)
    return torch.from_numpy(np.ascontiguousarray(audio))


def usable_split(name: str, utterances: Iterable[Utterance], language: str, max_seconds: float | None) -> Split:
    """The usable utterances of one split (audio stays raw NumPy until :func:`encode_splits`)."""
    split = Split(name)
    seen: set[str] = set()
    for utt in utterances:
        if utt.id in seen:  # listed twice: trained on or scored once (the store keys hypotheses by id)
            split.skipped["duplicate"] += 1
            continue
        seen.add(utt.id)
        if not _usable_audio(utt):
            split.skipped["bad_audio"] += 1
            continue
        if max_seconds is not None and utt.seconds > max_seconds:
            split.skipped["too_long"] += 1
            continue
        text = normalize(utt.text or "", language)
        if not text.strip():
            split.skipped["empty_transcript"] += 1
            continue
        split.ids.append(utt.id)
        split.audio.append(utt.audio)
        split.refs.append(text)
    return split


def prepare_splits(data: DatasetSplits, language: str, train) -> tuple[dict[str, Split], Vocabulary]:
    """The usable utterances of each split and the vocabulary built from the training text.

    ``train`` is the recipe (:class:`harness.plan.config.TrainSettings`): its ``max_seconds``
    caps training clips and ``vocab_min_fraction`` is the vocabulary rule. No usable training
    utterance is a user error."""
    splits = {
        "train": usable_split("train", data.train, language, train.max_seconds),
        "dev": usable_split("dev", data.dev, language, None),
        "test": usable_split("test", data.test, language, None),
    }
    train_split = splits["train"]
    if not train_split.ids:
        raise BenchError(
            f"no usable training utterances for {language!r} "
            f"(skipped: {dict(train_split.skipped) or 'none were given'})",
            "check the dataset for this language (audio present, transcripts not empty)",
        )
    return splits, build_vocabulary(train_split.refs, train.vocab_min_fraction)


def encode_splits(splits: Mapping[str, Split], vocab: Vocabulary, normalise: bool) -> None:
    """Audio to (normalised) float32 tensors and transcripts to label ids, in place. Training
    utterances with no character of the vocabulary are left out (``no_known_characters``)."""
    for name, split in splits.items():
        split.audio = [prepare_audio(a, normalise) for a in split.audio]
        keep = []
        for i, ref in enumerate(split.refs):
            ids, missing = vocab.encode(ref)
            split.oov_chars += missing
            if name == "train" and not ids:
                split.skipped["no_known_characters"] += 1
                continue
            split.labels.append(ids)
            keep.append(i)
        if name == "train" and len(keep) < len(split.refs):
            labels = split.labels
            split.labels = []
            split.keep(keep)
            split.labels = labels


def ctc_frames_needed(ids: Sequence[int]) -> int:
    """Frames CTC needs for a label sequence: one per label plus a blank between repeats."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


def drop_unalignable(split: Split, frames: Sequence[int], language: str) -> int:
    """Leave out utterances with fewer frames (``frames[i]``) than CTC needs for their labels;
    returns how many (counted as ``shorter_than_transcript``). None left is a user error."""
    keep = [i for i, ids in enumerate(split.labels) if ctc_frames_needed(ids) <= frames[i]]
    dropped = len(split.labels) - len(keep)
    if dropped:
        split.skipped["shorter_than_transcript"] += dropped
        split.keep(keep)
    if not split.ids:
        raise BenchError(f"every training utterance for {language!r} is too short for its transcript",
                         "check that audio and transcripts belong together")
    return dropped
