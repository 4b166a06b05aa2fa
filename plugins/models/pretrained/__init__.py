"""Tiny wav2vec 2.0 models pre-trained here, self-supervised, on synthetic speech.

The embedded analogues of the study's checkpoints: monolingual models (as the VoxPopuli
monolingual ones) and a multilingual one over typologically diverse languages (as XLSR). Each
is a :class:`~.recipe.PretrainRecipe`; the first run that needs one pre-trains it (``prepare``,
in the driver, before any cell) and keeps an ordinary Hugging Face checkpoint under
``<run.cache_dir>/models/pretrained/``, keyed by a hash of the recipe, so later runs, other
runs on the same cache and ``hf:/that/directory`` load it. ``ssl:LANG+LANG`` names a model
pre-trained the same way on any languages of the synthetic dataset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.api import ModelGroup, ModelRequest, ModelScheme, ModelSpec, PrepareContext
from harness.errors import BenchError
from harness.hookspecs import hookimpl

from ..hf import HFCTCModel, _load_checkpoint
from .recipe import PretrainRecipe

VERSION = "1"
MANIFEST = "bench-pretrain.json"

#: the built-in models; the tiny-study preset uses tiny-ssl-es and tiny-ssl-multi
BUILT_IN: Mapping[str, PretrainRecipe] = {
    "tiny-ssl-es": PretrainRecipe(("es",)),
    "tiny-ssl-nl": PretrainRecipe(("nl",)),
    "tiny-ssl-sv": PretrainRecipe(("sv-SE",)),
    # six languages from four families and three scripts, none of them a target of the
    # tiny-study preset (whose Italian and Russian are related to French and Polish)
    "tiny-ssl-multi": PretrainRecipe(("en", "fr", "pl", "ar", "id", "zh-CN")),
}


def checkpoint_dir(cache_dir: Path, recipe: PretrainRecipe) -> Path:
    return Path(cache_dir) / "pretrained" / f"wav2vec2-tiny-{'+'.join(recipe.languages)}-{recipe.digest()}"


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One process at a time prepares a checkpoint (concurrent runs on one cache wait)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _speech(context: PrepareContext, recipe: PretrainRecipe) -> list:
    audio = []
    for language in recipe.languages:
        splits = context.load_dataset(recipe.dataset, language, 0, {
            "train_minutes": recipe.minutes_per_language(), "dev_minutes": 0.1, "test_minutes": 0.1,
            "corpus_seed": recipe.corpus_seed,
        })
        audio.extend(u.audio for u in splits.train)
    return audio


def prepare(context: PrepareContext, name: str, recipe: PretrainRecipe) -> dict[str, Any]:
    """Pre-train ``recipe`` unless its checkpoint is already in the cache; the checkpoint's facts."""
    recipe, _ = recipe.with_options(context.options)
    directory = checkpoint_dir(context.cache_dir, recipe)
    with _exclusive(directory.with_name(directory.name + ".lock")):
        manifest = _read_manifest(directory)
        if manifest is not None and not context.force:
            return {**manifest, "path": str(directory), "prepared_now": False}
        manifest = _pretrain(context, name, recipe, directory)
    return {**manifest, "path": str(directory), "prepared_now": True}


def _pretrain(context: PrepareContext, name: str, recipe: PretrainRecipe, directory: Path) -> dict[str, Any]:
    import torch

    from harness.device import resolve_device
    from harness.provenance import git_revision, package_versions

    from .loop import chance_contrastive_loss, pretrain, save_checkpoint

    if context.threads > 0:
        torch.set_num_threads(context.threads)
    device = resolve_device(context.device)
    context.log(f"pre-training {name}: {recipe.describe()} on {device} (once; kept in {directory})")
    audio = _speech(context, recipe)
    stage = context.progress.stage(f"pretrain {name}", recipe.steps) if context.progress is not None else None
    quarter = max(recipe.steps // 4, 1)

    def on_update(update: int, stats: dict[str, float]) -> None:
        if stage is not None:
            stage.advance()
            stage.set_postfix(loss=f"{stats['contrastive']:.3f}")
        if update % quarter == 0 and update < recipe.steps:
            context.log(f"  {name}: update {update}/{recipe.steps}, contrastive loss {stats['contrastive']:.3f}")

    outcome = pretrain(recipe, audio, device, on_update)
    if stage is not None:
        stage.close()
    first = outcome.history[0] if outcome.history else {}
    final = outcome.history[-1] if outcome.history else {}
    manifest = {
        "name": name,
        "recipe": recipe.as_dict(),
        "recipe_digest": recipe.digest(),
        "seconds": round(outcome.seconds, 1),
        "utterances": outcome.utterances,
        "audio_hours": round(outcome.audio_seconds / 3600, 4),
        "skipped_updates": outcome.skipped_updates,
        "chance_contrastive_loss": round(chance_contrastive_loss(recipe), 4),
        "final": final,
        "history": outcome.history,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "packages": package_versions(),
        "git_revision": git_revision(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    partial = directory.with_name(f"{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    save_checkpoint(outcome.model, partial)
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if directory.exists():  # --force: replace the old one
        shutil.rmtree(directory)
    os.replace(partial, directory)
    context.log(f"pre-trained {name} in {outcome.seconds:.0f} s: contrastive loss "
                f"{first.get('contrastive', float('nan')):.3f} -> {final.get('contrastive', float('nan')):.3f} "
                f"(chance {chance_contrastive_loss(recipe):.3f})")
    return manifest


def _build(name: str, recipe: PretrainRecipe, request: ModelRequest) -> HFCTCModel:
    recipe, fine_tuning_options = recipe.with_options(request.options)
    request = dataclasses.replace(request, options=fine_tuning_options)
    directory = checkpoint_dir(request.cache_dir or Path("."), recipe)
    if request.cache_dir is None or _read_manifest(directory) is None:
        raise BenchError(
            f"model {name!r} has not been pre-trained in this cache ({directory} is missing)",
            f"run `bench pretrain --models {name}` (`bench run` does it by itself before its cells); "
            "workers on other machines need the same run.cache_dir",
        )
    return _load_checkpoint(str(directory), request)


def pretrained_spec(name: str, recipe: PretrainRecipe) -> ModelSpec:
    hours = recipe.minutes / 60
    metadata: dict[str, Any] = {
        "architecture": "wav2vec2",
        "pretraining": "self-supervised (wav2vec 2.0), here",
        "pretraining_hours": round(hours, 3),
        "pretraining_languages": list(recipe.languages),
        "pretraining_language_count": len(recipe.languages),
        "pretraining_data": f"{recipe.dataset} speech (corpus_seed {recipe.corpus_seed})",
        "pretraining_updates": recipe.steps,
        "recipe": recipe.digest(),
        "domain": "synthetic",
        "parameters": "7.3M (tiny wav2vec2)",
    }
    kind = "monolingual" if len(recipe.languages) == 1 else "multilingual"
    return ModelSpec(
        name=name,
        build=lambda request: _build(name, recipe, request),
        version=VERSION,
        description=f"tiny wav2vec2 pre-trained here, {kind}: {recipe.describe()}",
        metadata=metadata,
        prepare=lambda context: prepare(context, name, recipe),
    )


def scheme_spec(argument: str) -> ModelSpec:
    """``ssl:es`` or ``ssl:en+fr+pl``: a tiny model pre-trained on those synthetic languages."""
    from harness.languages import STUDY_LANGUAGES

    languages = tuple(code for code in argument.split("+") if code)
    unknown = [code for code in languages if code not in STUDY_LANGUAGES]
    if not languages or unknown:
        raise BenchError(f"ssl:{argument}: {'unknown language(s) ' + ', '.join(unknown) if unknown else 'no language'}",
                         f"join language codes with '+', e.g. ssl:nl+sv-SE (codes: {', '.join(STUDY_LANGUAGES)})")
    return pretrained_spec(f"ssl:{argument}", PretrainRecipe(languages))


@hookimpl
def bench_register_models(register) -> None:
    for name, recipe in BUILT_IN.items():
        register(pretrained_spec(name, recipe))
    register.scheme(ModelScheme("ssl", scheme_spec,
                                "tiny wav2vec2 pre-trained here on synthetic speech: ssl:LANG or ssl:LANG+LANG+..."))
    register.group(ModelGroup("tiny-study", ("tiny-ssl-es", "tiny-ssl-multi", "tiny-wav2vec2"),
                              "the tiny-study preset: tiny models pre-trained here (Spanish, multilingual) and the "
                              "same architecture with no pre-training"))
    register.group(ModelGroup("tiny-pretrained", tuple(BUILT_IN), "every built-in tiny model pre-trained here"))
