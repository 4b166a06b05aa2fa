"""Tiny wav2vec 2.0 models pre-trained here, both kinds: the loops, the cache, the model plugin, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3

import pytest
import torch

from harness.api import DatasetRequest, ModelRequest
from harness.plan.planner import model_cache_dir
from harness.plan.config import load_config
from harness.errors import BenchError
from harness.plugins import load_registry
from harness.run.prepare_models import prepare_context
from plugins.models.pretrained import MANIFEST, checkpoint_dir, pretrained_spec
from plugins.models.pretrained.contrastive import chance_contrastive_loss, pretrain
from plugins.models.pretrained.recipe import ContrastiveRecipe, PhoneticRecipe

#: seconds-long pre-training: 24 s of Spanish, 4-second batches, 6 updates
MICRO = {"minutes": 0.4, "steps": 6, "batch_seconds": 4.0, "num_negatives": 10, "lr": 1e-4}


@pytest.fixture(scope="module")
def es_speech(tmp_path_factory) -> list:
    registry = load_registry()
    splits = registry.dataset("synthetic").spec.load(DatasetRequest(
        "es", 0, {"train_minutes": 0.4, "dev_minutes": 0.1, "test_minutes": 0.1, "corpus_seed": 1},
        tmp_path_factory.mktemp("speech")))
    return [u.audio for u in splits.train]


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_pretraining_is_deterministic_and_starts_at_chance(es_speech):
    recipe = ContrastiveRecipe(("es",), **MICRO)
    first, second = pretrain(recipe, es_speech), pretrain(recipe, es_speech)
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    a, b = _weights(first.model), _weights(second.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # an untrained model cannot tell the target from its 10 distractors: ln 11
    assert chance_contrastive_loss(recipe) == pytest.approx(math.log(11))
    assert first.history[0]["contrastive"] == pytest.approx(math.log(11), abs=0.15)
    assert first.history[-1]["update"] == 6 and first.skipped_updates == 0
    assert first.audio_seconds == pytest.approx(24, rel=0.2)
    # the whole model trains, the convolutional feature encoder included
    other = _weights(pretrain(dataclasses.replace(recipe, seed=1), es_speech).model)
    conv = "wav2vec2.feature_extractor.conv_layers.1.conv.weight"
    assert not torch.equal(a[conv], other[conv])


def test_recipe_options_and_validation():
    recipe = ContrastiveRecipe(("es",))
    changed, rest = recipe.with_options({"pretrain_steps": 50, "pretrain_lr": 1e-4, "layerdrop": 0.1})
    assert (changed.steps, changed.lr, rest) == (50, 1e-4, {"layerdrop": 0.1})
    assert changed.digest() != recipe.digest() and recipe.with_options({})[0].digest() == recipe.digest()
    with pytest.raises(BenchError, match="unknown option 'pretrain_stpes' for self-supervised pre-training") as err:
        recipe.with_options({"pretrain_stpes": 5})
    assert "pretrain_steps" in err.value.hint and "pretrain_num_negatives" in err.value.hint
    with pytest.raises(BenchError, match="for phonetic pre-training") as err:
        PhoneticRecipe(("es",)).with_options({"pretrain_num_negatives": 5})  # a self-supervised option
    assert "pretrain_stress" in err.value.hint
    with pytest.raises(BenchError, match="steps must be a positive number"):
        recipe.with_options({"pretrain_steps": 0})


def test_prepare_caches_a_checkpoint_that_build_loads(tmp_path, es_speech):
    config = load_config(None, None, {"run": {"cache_dir": str(tmp_path / "cache")}})
    recipe = ContrastiveRecipe(("es",), **MICRO)
    spec = pretrained_spec("micro-ssl", recipe)
    request = ModelRequest(vocab_size=12, blank_id=0, seed=0, cache_dir=model_cache_dir(config))
    with pytest.raises(BenchError, match="has not been pre-trained") as err:
        spec.build(request)
    assert "bench pretrain --models micro-ssl" in err.value.hint

    context = prepare_context(config, load_registry())
    facts = spec.prepare(context)
    directory = checkpoint_dir(model_cache_dir(config), recipe)
    assert facts["prepared_now"] and facts["path"] == str(directory)
    assert {"config.json", "model.safetensors", "preprocessor_config.json", MANIFEST} <= {p.name for p in directory.iterdir()}
    manifest = json.loads((directory / MANIFEST).read_text())
    assert manifest["recipe"]["languages"] == ["es"] and manifest["recipe_digest"] == recipe.digest()
    assert manifest["history"][-1]["update"] == 6 and "torch" in manifest["packages"]
    assert manifest["machine"]["device"] == "cpu" and manifest["machine"]["cpu_capability"]
    assert not list(directory.parent.glob("*.partial-*"))

    again = spec.prepare(context)
    assert not again["prepared_now"] and again["created"] == facts["created"]

    # the checkpoint is an ordinary Hugging Face one: pre-trained body, fresh CTC head
    from safetensors.torch import load_file

    saved = load_file(directory / "model.safetensors")
    model = spec.build(request).model
    key = "encoder.layers.0.attention.q_proj.weight"
    assert torch.equal(model.wav2vec2.state_dict()[key], saved[f"wav2vec2.{key}"])
    assert model.lm_head.out_features == 12 and any(k.startswith("quantizer.") for k in saved)

    forced = spec.prepare(dataclasses.replace(context, force=True))
    assert forced["prepared_now"] and forced["history"] == facts["history"]  # same recipe, same numbers


def test_schemes_and_groups():
    registry = load_registry()
    spec = registry.model("ssl:nl+sv-SE").spec
    assert spec.metadata["pretraining_languages"] == ["nl", "sv-SE"] and spec.prepare is not None
    phone = registry.model("phone:nl+sv-SE").spec
    assert phone.metadata["pretraining"].startswith("supervised phonetic")
    assert phone.metadata["recipe"] != spec.metadata["recipe"]
    for prefix in ("ssl", "phone"):
        with pytest.raises(BenchError, match="unknown language") as err:
            registry.model(f"{prefix}:nl+xx")
        assert f"{prefix}:nl+sv-SE" in err.value.hint
    assert registry.expand_models(["tiny-study"]) == ["tiny-phone-es", "tiny-phone-ru", "tiny-phone-multi",
                                                      "tiny-wav2vec2"]
    assert registry.expand_models(["tiny-ssl-study"]) == ["tiny-ssl-es", "tiny-ssl-ru", "tiny-ssl-multi", "tiny-wav2vec2"]
    for name in ("tiny-ssl-multi", "tiny-phone-multi"):
        multi = registry.models[name].spec.metadata
        assert multi["pretraining_language_count"] == 6
        assert not {"es", "it", "ru"} & set(multi["pretraining_languages"])  # none of the default's targets


def test_run_pretrains_once_before_its_cells(bench, small_config, tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text(small_config.read_text() + """
[models.micro-es]
from = "tiny-phone-es"
pretrain_minutes = 0.4
pretrain_steps = 4
pretrain_batch_seconds = 4.0
""")
    code, out, err = bench("run", "--config", str(config), "--models", "micro-es,tiny-wav2vec2", "--langs", "es",
                           "--no-progress")
    assert code == 0, err
    # the alias pre-trains tiny-phone-es's recipe with its own changes
    assert "pre-training tiny-phone-es: phonetic, 0.4 min of synthetic es, 4 updates" in err
    assert err.index("pre-training tiny-phone-es") < err.index("done  ")  # before any cell
    assert "phone error rate" in err
    assert "2 cells computed" in out and "micro-es" in out
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        record = json.loads(db.execute("SELECT record FROM cells WHERE model = 'micro-es'").fetchone()[0])
    model = record["identity"]["model"]
    assert model["options"]["pretrain_steps"] == 4 and model["metadata"]["pretraining_languages"] == ["es"]

    code, out, err = bench("run", "--config", str(config), "--models", "micro-es", "--langs", "es", "--no-progress")
    assert code == 0 and "pre-training" not in err and "0 to compute" in err

    code, out, _ = bench("pretrain", "--config", str(config), "--models", "micro-es", "--no-progress")
    assert code == 0 and "(cached)" in out and "micro-es" in out and "phonetic" in out

    code, out, _ = bench("pretrain", "--config", str(config), "--models", "tiny-wav2vec2")
    assert code == 0 and "is made here" in out and "tiny-phone-es" in out and "tiny-ssl-es" in out

    config.write_text(config.read_text().replace("pretrain_steps = 4", "pretrain_stesp = 4"))
    code, _, err = bench("run", "--config", str(config), "--models", "micro-es", "--langs", "es", "--no-progress")
    # declared options (ModelSpec.options): refused before any work, with a "did you mean"
    assert code == 2 and "unknown option 'pretrain_stesp'. Did you mean 'pretrain_steps'" in err


# --------------------------------------------------------------------------- phonetic pre-training
def test_ipa_targets_drop_stress_syllable_dots_and_language_switches():
    from plugins.models.pretrained.phonetic import ipa_targets, transcribe

    assert ipa_targets("komˈunkwe  (en)ˌʌp(it) qˈa.tal") == "komunkwe ʌp qatal"
    assert ipa_targets("komˈunkwe", stress=True) == "komˈunkwe"
    # eSpeak NG's own phonemes, in a fresh process, in the language's voice
    (es, ru), = [transcribe([("es", ["hace calor"]), ("ru", ["хорошо"])])]
    assert ipa_targets(es[0]) == "aθe kaloɾ" and "ʌ" in ru[0]


def test_phonetic_pretraining_is_deterministic_and_learns_phones(tmp_path):
    from plugins.models.pretrained.corpus import load_corpus
    from plugins.models.pretrained.phonetic import phonetic_splits
    from plugins.models.pretrained.phonetic import pretrain as phonetic_pretrain

    config = load_config(None, None, {"run": {"cache_dir": str(tmp_path / "cache")}})
    recipe = PhoneticRecipe(("es",), minutes=1.0, steps=60, batch_seconds=8.0, dev_minutes=0.2)
    data = phonetic_splits(load_corpus(prepare_context(config, load_registry()), recipe, recipe.dev_minutes), False)
    assert data.train[0].id.startswith("es/") and "ˈ" not in data.train[0].text
    first, outcome = phonetic_pretrain(recipe, data)
    second, again = phonetic_pretrain(recipe, data)
    assert outcome.train_info["loss_curve"] == again.train_info["loss_curve"]
    a, b = _weights(first), _weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    curve = outcome.train_info["loss_curve"]
    assert curve[-1] < 0.8 * curve[0]  # the CTC loss falls within 60 updates
    assert {"θ", "ɾ", "ð"} <= set(outcome.vocabulary) and "ˈ" not in outcome.vocabulary
    # a phone recogniser: its CTC head has one output per phone (and the blank)
    assert first.lm_head.out_features == len(outcome.vocabulary)


@pytest.mark.slow
def test_phonetic_pretraining_transfers_to_another_language(tmp_path):
    """The default matrix's claim on one cell: Spanish phonemes help Italian after 150 updates."""
    from harness.plan.config import RuntimeSettings, TrainSettings
    from harness.engine import fine_tune_and_evaluate

    config = load_config(None, None, {"run": {"cache_dir": str(tmp_path / "cache")}})
    registry = load_registry()
    spec = pretrained_spec("es-phones", PhoneticRecipe(("es",), minutes=10.0, steps=400))
    facts = spec.prepare(prepare_context(config, registry))
    assert facts["dev_phone_error_rate"] < 0.7 and set(facts["dev_phone_error_rate_by_language"]) == {"es"}
    italian = registry.dataset("synthetic").spec.load(DatasetRequest(
        "it", 0, {"train_minutes": 4.0, "dev_minutes": 0.5, "test_minutes": 1.0}, tmp_path / "it"))
    cer = registry.metric("cer").spec
    scores = {}
    for name in ("es-phones", "tiny-wav2vec2"):
        build = spec.build if name == "es-phones" else registry.model(name).spec.build
        outcome = fine_tune_and_evaluate(build, italian, "it", 0, TrainSettings(steps=150), RuntimeSettings(device="cpu"),
                                         [cer], model_cache_dir=model_cache_dir(config))
        scores[name] = outcome.splits["test"].metrics["cer"]
    assert scores["tiny-wav2vec2"] >= 0.95  # still on the blank plateau
    assert scores["es-phones"] <= 0.75, scores
