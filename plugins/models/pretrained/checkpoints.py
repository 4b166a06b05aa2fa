"""Where pre-trained tiny models are kept and how: one Hugging Face checkpoint per recipe.

``<run.cache_dir>/models/pretrained/wav2vec2-tiny[-phone]-<languages>-<recipe hash>/`` holds
an ordinary checkpoint (``save_pretrained``, with a feature extractor) and ``bench-pretrain.json``,
the manifest: the recipe, how the objective went, time, versions and git revision. A
checkpoint is written to a partial directory and renamed into place, under a file lock, so
an interrupted run leaves nothing half-written and concurrent runs pre-train once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.api import SAMPLING_RATE

from .recipe import Recipe

MANIFEST = "bench-pretrain.json"


@dataclass(frozen=True)
class Pretrained:
    """What a kind of pre-training hands back: the model and what to record about it."""

    #: a transformers ``PreTrainedModel`` (``Wav2Vec2ForPreTraining`` or ``Wav2Vec2ForCTC``)
    model: Any
    #: facts for the manifest (seconds, utterances, audio hours, loss history, ...)
    facts: Mapping[str, Any]
    #: one line on how the objective went, for logs and ``bench pretrain``
    summary: str


def checkpoint_dir(cache_dir: Path, recipe: Recipe) -> Path:
    name = f"wav2vec2-tiny{recipe.DIRECTORY_TAG}-{'+'.join(recipe.languages)}-{recipe.digest()}"
    return Path(cache_dir) / "pretrained" / name


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """One process at a time prepares a checkpoint (concurrent runs on one cache wait)."""
    lock_path = directory.with_name(directory.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def write_checkpoint(model: Any, manifest: Mapping[str, Any], directory: Path) -> None:
    """Save ``model`` and its manifest as ``directory``, replacing what was there, atomically."""
    partial = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        save_checkpoint(model, partial)
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
    except BaseException:  # Ctrl-C or a full disk: nothing half-written is left behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if directory.exists():  # --force: replace the old one
        shutil.rmtree(directory)
    os.replace(partial, directory)


def save_checkpoint(model: Any, directory: Path) -> None:
    """An ordinary Hugging Face checkpoint, as the hub's are, with its feature extractor."""
    from transformers import Wav2Vec2FeatureExtractor
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in the run's log
    try:
        model.config.mask_time_prob = 0.05  # the fine-tuning default; pre-training's is in the recipe
        model.config.mask_time_length = 10
        model.save_pretrained(directory)
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0, do_normalize=True,
                                 return_attention_mask=True).save_pretrained(directory)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
