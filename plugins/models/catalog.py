"""The study's model catalog: 15 pre-trained checkpoints and the no-pretraining baseline.

Each entry is a named model plugin with the facts the reports and statistics use
(architecture, pre-training hours, languages and domain, size), stored with every result.
The checkpoints load from the Hugging Face hub through ``AutoModelForCTC`` with a fresh CTC
head (see :mod:`plugins.models.hf`); offline, a checkpoint that is not already in the local
Hugging Face cache fails before any cell runs, with a message saying how to provide it.
``no-pretraining`` is the wav2vec 2.0 large architecture with random weights: it needs no hub.

Groups select subsets: ``english``, ``multilingual``, ``voxpopuli``, ``voxpopuli-mono``,
``monolingual``, ``baseline`` and ``study`` (all sixteen).
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass
from typing import Any

from harness.api import ModelFacts, ModelGroup, ModelRequest, ModelSpec
from harness.hookspecs import hookimpl

from .hf import VERSION
from .kit import (CHECKPOINT_OPTIONS, CONFIG_OPTIONS, HF_FACTS, HFCTCModel, check_hf_checkpoint, hf_config_kwargs,
                  hf_downloads, load_hf_checkpoint)

#: the 23 VoxPopuli languages (ISO 639-1, as Common Voice codes where they coincide)
VOXPOPULI_23 = ("en", "de", "fr", "es", "pl", "it", "ro", "hu", "cs", "nl", "fi", "hr", "sk", "sl", "et", "lt",
                "pt", "bg", "el", "lv", "mt", "sv-SE", "da")

LIBRI_LIGHT = "read audiobooks (Libri-Light)"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    hub_id: str
    architecture: str
    pretraining_hours: float
    #: Common Voice codes of the pre-training languages, when the set is known and small
    pretraining_languages: tuple[str, ...]
    #: how many languages the pre-training data holds (also when they are not listed)
    pretraining_language_count: int
    pretraining_data: str
    domain: str
    parameters: str
    groups: tuple[str, ...]

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "hub_id": self.hub_id or None,
            "architecture": self.architecture,
            "pretraining_hours": self.pretraining_hours,
            "pretraining_language_count": self.pretraining_language_count,
            "pretraining_data": self.pretraining_data,
            "domain": self.domain,
            "parameters": self.parameters,
            "groups": list(self.groups),
        }
        if self.pretraining_languages:
            meta["pretraining_languages"] = list(self.pretraining_languages)
        return meta

    def facts(self) -> ModelFacts:
        return dataclasses.replace(HF_FACTS, pretrained=self.pretraining_hours > 0,
                                   pretraining_languages=tuple(self.pretraining_languages))


def _mono(name, hub_id, architecture, hours, data, domain, lang="en", params="~317M", groups=("english",)):
    return CatalogEntry(name, hub_id, architecture, hours, (lang,), 1, data, domain, params, (*groups, "monolingual"))


CATALOG: tuple[CatalogEntry, ...] = (
    _mono("wav2vec2", "facebook/wav2vec2-large-lv60", "wav2vec2", 60_000, "Libri-Light 60k h", LIBRI_LIGHT),
    _mono("r-wav2vec2", "facebook/wav2vec2-large-robust", "wav2vec2", 63_000,
          "Libri-Light, Common Voice, Switchboard, Fisher", "read audiobooks, read crowd-sourced, telephone"),
    _mono("hubert", "facebook/hubert-large-ll60k", "hubert", 60_000, "Libri-Light 60k h", LIBRI_LIGHT),
    _mono("wavlm", "microsoft/wavlm-large", "wavlm", 94_000, "Libri-Light, GigaSpeech, VoxPopuli (94k h)",
          "audiobooks, podcasts and video, parliament"),
    _mono("unispeech", "microsoft/unispeech-large-1500h-cv", "unispeech", 1_500, "Common Voice English 1.5k h",
          "read crowd-sourced (Common Voice)"),
    _mono("unispeech-sat", "microsoft/unispeech-sat-large", "unispeech-sat", 94_000,
          "Libri-Light, GigaSpeech, VoxPopuli (94k h)", "audiobooks, podcasts and video, parliament"),
    CatalogEntry("unispeech-ml", "microsoft/unispeech-large-multi-lingual-1500h-cv", "unispeech", 1_500,
                 ("it", "en", "fr", "es"), 4, "Common Voice it, en, fr, es with phonetic labels",
                 "read crowd-sourced (Common Voice)", "~317M", ("multilingual",)),
    CatalogEntry("xlsr-53", "facebook/wav2vec2-large-xlsr-53", "wav2vec2", 56_000, (), 53,
                 "MLS, Common Voice, BABEL (53 languages)", "read audiobooks, read crowd-sourced, telephone",
                 "~317M", ("multilingual",)),
    CatalogEntry("xls-r", "facebook/wav2vec2-xls-r-300m", "wav2vec2", 436_000, (), 128,
                 "VoxPopuli, MLS, Common Voice, VoxLingua107, BABEL (128 languages)",
                 "parliament, audiobooks, read crowd-sourced, video, telephone", "~300M", ("multilingual",)),
    CatalogEntry("vp-100k", "facebook/wav2vec2-large-100k-voxpopuli", "wav2vec2", 100_000, VOXPOPULI_23, 23,
                 "VoxPopuli 100k h (23 languages)", "parliament (VoxPopuli)", "~317M", ("multilingual", "voxpopuli")),
    *(
        _mono(f"vp-{code}", f"facebook/wav2vec2-large-{code}-voxpopuli", "wav2vec2", hours,
              f"VoxPopuli {lang_name} {hours / 1000:.1f}k h", "parliament (VoxPopuli)", lang=cv_code,
              groups=("voxpopuli", "voxpopuli-mono"))
        for code, cv_code, lang_name, hours in (
            ("fr", "fr", "French", 4_500), ("es", "es", "Spanish", 4_400), ("it", "it", "Italian", 4_600),
            ("nl", "nl", "Dutch", 4_500), ("sv", "sv-SE", "Swedish", 4_500),
        )
    ),
    CatalogEntry("no-pretraining", "", "wav2vec2", 0, (), 0, "none (random weights)", "none", "~317M",
                 ("baseline",)),
)

GROUP_DESCRIPTIONS: Mapping[str, str] = {
    "english": "the study's models pre-trained on English only",
    "multilingual": "models pre-trained on several languages (XLSR-53, XLS-R, VoxPopuli 100k, UniSpeech multilingual)",
    "voxpopuli": "VoxPopuli checkpoints: the 100k-hour multilingual one and the monolingual ones",
    "voxpopuli-mono": "VoxPopuli monolingual checkpoints (fr, es, it, nl, sv)",
    "monolingual": "every model pre-trained on one language",
    "baseline": "the wav2vec 2.0 large architecture without pre-training",
    "study": "the study's 15 pre-trained models and the no-pretraining baseline",
}

#: the wav2vec 2.0 large architecture as in wav2vec2-large-lv60 (layer-normalised conv encoder)
LARGE_CONFIG: Mapping[str, Any] = {
    "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
    "feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True,
    "conv_dim": (512,) * 7, "conv_kernel": (10, 3, 3, 3, 3, 2, 2), "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16, "feat_proj_dropout": 0.1,
    "hidden_dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0, "layerdrop": 0.1,
}


def _build_random_large(request: ModelRequest) -> HFCTCModel:
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    config = Wav2Vec2Config(**{**LARGE_CONFIG, **hf_config_kwargs(request)})
    return HFCTCModel(Wav2Vec2ForCTC(config), normalize_audio=True)


def spec(entry: CatalogEntry) -> ModelSpec:
    if not entry.hub_id:
        return ModelSpec(entry.name, _build_random_large, VERSION,
                         "wav2vec 2.0 large architecture, random weights (no pre-training); no hub needed",
                         entry.metadata(), options=CONFIG_OPTIONS, facts=entry.facts())
    return ModelSpec(
        name=entry.name,
        build=lambda request: load_hf_checkpoint(entry.hub_id, request),
        version=VERSION,
        description=f"{entry.hub_id}: {entry.pretraining_data}",
        metadata=entry.metadata(),
        check=lambda: check_hf_checkpoint(entry.hub_id),
        facts=entry.facts(),
        options=CHECKPOINT_OPTIONS,
        downloads=hf_downloads(entry.hub_id),
    )


@hookimpl
def bench_register_models(register) -> None:
    for entry in CATALOG:
        register(spec(entry))
    for group, description in GROUP_DESCRIPTIONS.items():
        members = tuple(e.name for e in CATALOG if group in e.groups or group == "study")
        register.group(ModelGroup(group, members, description))
