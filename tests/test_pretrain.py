"""Tiny wav2vec 2.0 models pre-trained here: the loop, the cache, the model plugin, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3

import pytest
import torch

from harness.api import DatasetRequest, ModelRequest
from harness.cellwork import model_cache_dir
from harness.config import load_config
from harness.errors import BenchError
from harness.plugins import load_registry
from harness.prepare import prepare_context
from plugins.models.pretrained import MANIFEST, checkpoint_dir, pretrained_spec
from plugins.models.pretrained.loop import chance_contrastive_loss, pretrain
from plugins.models.pretrained.recipe import PretrainRecipe

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
    recipe = PretrainRecipe(("es",), **MICRO)
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
    recipe = PretrainRecipe(("es",))
    changed, rest = recipe.with_options({"pretrain_steps": 50, "pretrain_lr": 1e-4, "layerdrop": 0.1})
    assert (changed.steps, changed.lr, rest) == (50, 1e-4, {"layerdrop": 0.1})
    assert changed.digest() != recipe.digest() and recipe.with_options({})[0].digest() == recipe.digest()
    with pytest.raises(BenchError, match="unknown pre-training option 'pretrain_stpes'") as err:
        recipe.with_options({"pretrain_stpes": 5})
    assert "pretrain_steps" in err.value.hint
    with pytest.raises(BenchError, match="steps must be a positive number"):
        recipe.with_options({"pretrain_steps": 0})


def test_prepare_caches_a_checkpoint_that_build_loads(tmp_path, es_speech):
    config = load_config(None, None, {"run": {"cache_dir": str(tmp_path / "cache")}})
    recipe = PretrainRecipe(("es",), **MICRO)
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


def test_ssl_scheme_and_groups():
    registry = load_registry()
    spec = registry.model("ssl:nl+sv-SE").spec
    assert spec.metadata["pretraining_languages"] == ["nl", "sv-SE"] and spec.prepare is not None
    with pytest.raises(BenchError, match="unknown language"):
        registry.model("ssl:nl+xx")
    assert registry.expand_models(["tiny-study"]) == ["tiny-ssl-es", "tiny-ssl-multi", "tiny-wav2vec2"]
    multi = registry.models["tiny-ssl-multi"].spec.metadata
    assert multi["pretraining_language_count"] == 6 and "it" not in multi["pretraining_languages"]


def test_run_pretrains_once_before_its_cells(bench, small_config, tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text(small_config.read_text() + """
[models.micro-es]
from = "tiny-ssl-es"
pretrain_minutes = 0.4
pretrain_steps = 4
pretrain_batch_seconds = 4.0
""")
    code, out, err = bench("run", "--config", str(config), "--models", "micro-es,tiny-wav2vec2", "--langs", "es",
                           "--no-progress")
    assert code == 0, err
    # the alias pre-trains tiny-ssl-es's recipe with its own changes
    assert "pre-training tiny-ssl-es: 0.4 min of synthetic es, 4 updates" in err
    assert err.index("pre-training tiny-ssl-es") < err.index("done  ")  # before any cell
    assert "2 cells computed" in out and "micro-es" in out
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        record = json.loads(db.execute("SELECT record FROM cells WHERE model = 'micro-es'").fetchone()[0])
    model = record["identity"]["model"]
    assert model["options"]["pretrain_steps"] == 4 and model["metadata"]["pretraining_languages"] == ["es"]

    code, out, err = bench("run", "--config", str(config), "--models", "micro-es", "--langs", "es", "--no-progress")
    assert code == 0 and "pre-training" not in err and "0 to compute" in err

    code, out, _ = bench("pretrain", "--config", str(config), "--models", "micro-es", "--no-progress")
    assert code == 0 and "(cached)" in out and "micro-es" in out

    code, out, _ = bench("pretrain", "--config", str(config), "--models", "tiny-wav2vec2")
    assert code == 0 and "is made here" in out and "tiny-ssl-es" in out

    config.write_text(config.read_text().replace("pretrain_steps = 4", "pretrain_stesp = 4"))
    code, _, err = bench("run", "--config", str(config), "--models", "micro-es", "--langs", "es", "--no-progress")
    assert code == 2 and "unknown pre-training option 'pretrain_stesp'" in err
