"""Tiny wav2vec 2.0 models pre-trained here on synthetic speech, two kinds.

The embedded analogues of the study's checkpoints: monolingual models (as the VoxPopuli
monolingual ones) and multilingual ones over typologically diverse languages (as XLSR).

- **phonetic** (``tiny-phone-*``, ``phone:LANG+LANG``): supervised, CTC on eSpeak NG's IPA
  transcriptions of the speech (:mod:`.phonetic`); about 2.5 minutes on 2 CPU cores. The
  default ``bench run`` uses these.
- **self-supervised** (``tiny-ssl-*``, ``ssl:LANG+LANG``): the wav2vec 2.0 objective of
  ``Wav2Vec2ForPreTraining`` (:mod:`.contrastive`); about 10 minutes each, and at this scale
  it transfers only with long fine-tuning.

Each is a :mod:`.recipe`; the first run that needs one pre-trains it (``prepare``, in the
driver, before any cell) and keeps an ordinary Hugging Face checkpoint under
``<run.cache_dir>/models/pretrained/`` keyed by a hash of the recipe (:mod:`.checkpoints`), so
later runs, other runs on the same cache and ``hf:/that/directory`` load it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.api import ModelGroup, ModelRequest, ModelScheme, ModelSpec, PrepareContext
from harness.errors import BenchError
from harness.hookspecs import hookimpl

from ..kit import CONFIG_OPTIONS, HF_FACTS, HFCTCModel, load_hf_checkpoint
from .checkpoints import MANIFEST, Pretrained, checkpoint_dir, exclusive, read_manifest, write_checkpoint
from .recipe import ContrastiveRecipe, PhoneticRecipe, Recipe

__all__ = ["BUILT_IN", "MANIFEST", "checkpoint_dir", "pretrained_spec", "prepare"]

VERSION = "1"

#: six languages from four families and three scripts (as XLSR's many); of the default
#: matrix's targets, Italian is related to French and Russian to Polish
MULTILINGUAL = ("en", "fr", "pl", "ar", "id", "zh-CN")

#: the open-question presets' pre-training languages (docs/questions.md). Diversity versus quantity:
#: nested sets of 1, 2, 4 and 8 languages, none of them Romance or Slavic (the targets' subgroups),
#: each 30 minutes in all, and the one language with twice the speech
DIVERSITY = ("en", "ar", "id", "zh-CN", "de", "fa", "ja", "nl")
#: Indo-European share: the same five languages (three Indo-European, two not) in three proportions;
#: the non-Indo-European ones are Japanese and Mandarin, leaving Arabic and Indonesian as targets
#: (Japanese is no target: after 150 fine-tuning updates the tiny models still output blanks on it)
IE_SHARE_LANGUAGES = ("en", "fr", "pl", "ja", "zh-CN")


def _ie_shares(share: float) -> tuple[float, ...]:
    """Weights giving the Indo-European languages of IE_SHARE_LANGUAGES ``share`` of the speech."""
    from harness.languages import language

    ie = [language(code).indo_european for code in IE_SHARE_LANGUAGES]
    return tuple(round(share / sum(ie), 6) if is_ie else round((1 - share) / (len(ie) - sum(ie)), 6) for is_ie in ie)


#: the new models of the open-question presets (the groups tiny-pretrained and tiny keep the first ten)
QUESTIONS: Mapping[str, Recipe] = {
    "tiny-phone-1lang": PhoneticRecipe(DIVERSITY[:1]),
    "tiny-phone-1lang-2x": PhoneticRecipe(DIVERSITY[:1], minutes=60.0),
    "tiny-phone-2lang": PhoneticRecipe(DIVERSITY[:2]),
    "tiny-phone-4lang": PhoneticRecipe(DIVERSITY[:4]),
    "tiny-phone-8lang": PhoneticRecipe(DIVERSITY[:8]),
    "tiny-phone-ie20": PhoneticRecipe(IE_SHARE_LANGUAGES, shares=_ie_shares(0.2)),
    "tiny-phone-ie50": PhoneticRecipe(IE_SHARE_LANGUAGES, shares=_ie_shares(0.5)),
    "tiny-phone-ie80": PhoneticRecipe(IE_SHARE_LANGUAGES, shares=_ie_shares(0.8)),
    "tiny-phone-ar": PhoneticRecipe(("ar",)),
    "tiny-phone-id": PhoneticRecipe(("id",)),
    "tiny-phone-zh": PhoneticRecipe(("zh-CN",)),
}

#: the built-in models; the default matrix (group tiny-study) uses tiny-phone-es, -ru and -multi
BUILT_IN: Mapping[str, Recipe] = {
    "tiny-phone-es": PhoneticRecipe(("es",)),
    "tiny-phone-ru": PhoneticRecipe(("ru",)),
    "tiny-phone-nl": PhoneticRecipe(("nl",)),
    "tiny-phone-sv": PhoneticRecipe(("sv-SE",)),
    "tiny-phone-multi": PhoneticRecipe(MULTILINGUAL),
    "tiny-ssl-es": ContrastiveRecipe(("es",)),
    "tiny-ssl-ru": ContrastiveRecipe(("ru",)),
    "tiny-ssl-nl": ContrastiveRecipe(("nl",)),
    "tiny-ssl-sv": ContrastiveRecipe(("sv-SE",)),
    "tiny-ssl-multi": ContrastiveRecipe(MULTILINGUAL),
}


def prepare(context: PrepareContext, name: str, recipe: Recipe) -> dict[str, Any]:
    """Pre-train ``recipe`` unless its checkpoint is already in the cache; the checkpoint's facts."""
    recipe, _ = recipe.with_options(context.options)
    directory = checkpoint_dir(context.cache_dir, recipe)
    with exclusive(directory):
        manifest = read_manifest(directory)
        if manifest is not None and not context.force:
            return {**manifest, "path": str(directory), "prepared_now": False}
        manifest = _pretrain(context, name, recipe, directory)
    return {**manifest, "path": str(directory), "prepared_now": True}


def _pretrain(context: PrepareContext, name: str, recipe: Recipe, directory: Path) -> dict[str, Any]:
    import torch

    from harness.engine.device import resolve_device
    from harness.run.provenance import git_revision, machine, package_versions

    from . import contrastive, phonetic

    if context.threads > 0:
        torch.set_num_threads(context.threads)
    device = resolve_device(context.device)
    context.log(f"pre-training {name}: {recipe.describe()} on {device} (once; kept in {directory})")
    kind = phonetic if isinstance(recipe, PhoneticRecipe) else contrastive
    made: Pretrained = kind.run(context, name, recipe, device)
    manifest = {
        "name": name,
        "kind": recipe.KIND,
        "recipe": recipe.as_dict(),
        "recipe_digest": recipe.digest(),
        **made.facts,
        "summary": made.summary,
        "machine": machine(str(device)),
        "packages": package_versions(),
        "git_revision": git_revision(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_checkpoint(made.model, manifest, directory)
    context.log(f"pre-trained {name} in {made.facts.get('seconds', 0):.0f} s: {made.summary}")
    return manifest


def _build(name: str, recipe: Recipe, request: ModelRequest) -> HFCTCModel:
    recipe, fine_tuning_options = recipe.with_options(request.options)
    request = dataclasses.replace(request, options=fine_tuning_options)
    directory = checkpoint_dir(request.cache_dir or Path("."), recipe)
    if request.cache_dir is None or read_manifest(directory) is None:
        raise BenchError(
            f"model {name!r} has not been pre-trained in this cache ({directory} is missing)",
            f"run `bench pretrain --models {name}` (`bench run` does it by itself before its cells); "
            "workers on other machines need the same run.cache_dir",
        )
    return load_hf_checkpoint(str(directory), request)


def pretrained_spec(name: str, recipe: Recipe) -> ModelSpec:
    metadata: dict[str, Any] = {
        "architecture": "wav2vec2",
        "pretraining": recipe.OBJECTIVE,
        "pretraining_hours": round(recipe.minutes / 60, 3),
        "pretraining_languages": list(recipe.languages),
        "pretraining_language_count": len(recipe.languages),
        **({"pretraining_minutes_by_language": {lang: round(recipe.minutes_for(lang), 4) for lang in recipe.languages}}
           if recipe.shares else {}),
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
        facts=dataclasses.replace(HF_FACTS, pretrained=True, pretraining_languages=tuple(recipe.languages)),
        options=(*CONFIG_OPTIONS, *recipe.option_names()),
    )


def _languages(prefix: str, argument: str) -> tuple[str, ...]:
    from harness.languages import STUDY_LANGUAGES

    languages = tuple(code for code in argument.split("+") if code)
    unknown = [code for code in languages if code not in STUDY_LANGUAGES]
    if not languages or unknown:
        raise BenchError(
            f"{prefix}:{argument}: {'unknown language(s) ' + ', '.join(unknown) if unknown else 'no language'}",
            f"join language codes with '+', e.g. {prefix}:nl+sv-SE (codes: {', '.join(STUDY_LANGUAGES)})")
    return languages


def ssl_spec(argument: str) -> ModelSpec:
    """``ssl:es`` or ``ssl:en+fr+pl``: a tiny model pre-trained self-supervised on those languages."""
    return pretrained_spec(f"ssl:{argument}", ContrastiveRecipe(_languages("ssl", argument)))


def phone_spec(argument: str) -> ModelSpec:
    """``phone:es`` or ``phone:en+fr+pl``: a tiny model pre-trained on those languages' phonemes."""
    return pretrained_spec(f"phone:{argument}", PhoneticRecipe(_languages("phone", argument)))


@hookimpl
def bench_register_models(register) -> None:
    for name, recipe in {**BUILT_IN, **QUESTIONS}.items():
        register(pretrained_spec(name, recipe))
    register.scheme(ModelScheme("phone", phone_spec, "tiny wav2vec2 pre-trained here with CTC on eSpeak NG phonemes "
                                                     "of synthetic speech: phone:LANG or phone:LANG+LANG+..."))
    register.scheme(ModelScheme("ssl", ssl_spec, "tiny wav2vec2 pre-trained here, self-supervised, on synthetic "
                                                 "speech: ssl:LANG or ssl:LANG+LANG+..."))
    register.group(ModelGroup("tiny-study", ("tiny-phone-es", "tiny-phone-ru", "tiny-phone-multi", "tiny-wav2vec2"),
                              "the default matrix: tiny models pre-trained here on phonemes (Spanish; Russian; six "
                              "other languages) and the same architecture with no pre-training"))
    register.group(ModelGroup("tiny-ssl-study", ("tiny-ssl-es", "tiny-ssl-ru", "tiny-ssl-multi", "tiny-wav2vec2"),
                              "tiny models pre-trained here self-supervised (Spanish; Russian; six other languages) "
                              "and the same architecture with no pre-training"))
    register.group(ModelGroup("tiny-diversity", ("tiny-phone-1lang", "tiny-phone-2lang", "tiny-phone-4lang",
                                                 "tiny-phone-8lang", "tiny-phone-1lang-2x"),
                              "diversity versus quantity: 30 min from 1, 2, 4 or 8 languages, and 60 min of one"))
    register.group(ModelGroup("tiny-ie-share", ("tiny-phone-ie20", "tiny-phone-ie50", "tiny-phone-ie80"),
                              "the same five languages with 20, 50 or 80 % of the speech Indo-European"))
    register.group(ModelGroup("tiny-phonology", ("tiny-phone-es", "tiny-phone-ru", "tiny-phone-nl", "tiny-phone-ar",
                                                 "tiny-phone-id", "tiny-phone-zh"),
                              "six monolingual models of four families, for phonological distance"))
    register.group(ModelGroup("tiny-ranking", ("tiny-phone-es", "tiny-phone-ru", "tiny-phone-nl", "tiny-phone-multi"),
                              "four pre-trained tiny models whose ranking the preset tiny-ranking sweeps"))
    register.group(ModelGroup("tiny-pretrained", tuple(BUILT_IN), "every built-in tiny model pre-trained here"))
    register.group(ModelGroup("tiny", tuple(BUILT_IN), "every tiny model (offline; seconds per cell on a CPU)"))
