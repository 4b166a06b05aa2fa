"""The study's model catalog: names, metadata, groups, and behaviour without a hub."""

from harness.plan.config import load_config
from harness.plugins import load_registry
from harness.run.runner import plan_run
from plugins.models.catalog import CATALOG, LARGE_CONFIG

STUDY = ["wav2vec2", "r-wav2vec2", "hubert", "wavlm", "unispeech", "unispeech-sat", "unispeech-ml", "xlsr-53",
         "xls-r", "vp-100k", "vp-fr", "vp-es", "vp-it", "vp-nl", "vp-sv", "no-pretraining"]


def test_catalog_has_the_fifteen_checkpoints_and_the_baseline():
    assert [e.name for e in CATALOG] == STUDY
    hub_ids = {e.name: e.hub_id for e in CATALOG}
    assert hub_ids["xls-r"] == "facebook/wav2vec2-xls-r-300m"
    assert hub_ids["unispeech-ml"] == "microsoft/unispeech-large-multi-lingual-1500h-cv"
    assert hub_ids["vp-sv"] == "facebook/wav2vec2-large-sv-voxpopuli" and hub_ids["no-pretraining"] == ""
    registry = load_registry()
    for name in STUDY:
        meta = registry.model(name).spec.metadata
        assert {"architecture", "pretraining_hours", "pretraining_data", "domain", "parameters"} <= set(meta)
    assert registry.model("vp-sv").spec.metadata["pretraining_languages"] == ["sv-SE"]
    assert registry.model("xlsr-53").spec.metadata["pretraining_language_count"] == 53
    assert registry.model("wavlm").spec.metadata["architecture"] == "wavlm"


def test_groups_select_subsets(small_config):
    registry = load_registry()
    for group, expected in [
        ("english", ["wav2vec2", "r-wav2vec2", "hubert", "wavlm", "unispeech", "unispeech-sat"]),
        ("voxpopuli-mono", ["vp-fr", "vp-es", "vp-it", "vp-nl", "vp-sv"]),
        ("multilingual", ["unispeech-ml", "xlsr-53", "xls-r", "vp-100k"]),
        ("study", STUDY),
    ]:
        config = load_config(small_config, overrides={"run": {"models": [group, "tiny-hubert"], "langs": ["de"]}})
        assert [c.cell.model for c in plan_run(config, registry).cells] == [*expected, "tiny-hubert"]
    config = load_config(small_config, overrides={"run": {"models": "all", "langs": ["de"]}})
    names = {c.cell.model for c in plan_run(config, registry).cells}
    assert set(STUDY) <= names and "tiny-wav2vec2" in names  # the catalog plus whatever else is registered


def test_catalog_metadata_goes_into_the_cell_identity(small_config):
    config = load_config(small_config, overrides={"run": {"models": ["vp-es"], "langs": ["de"]}})
    (planned,) = plan_run(config, load_registry()).cells
    meta = planned.identity["model"]["metadata"]
    assert meta["hub_id"] == "facebook/wav2vec2-large-es-voxpopuli" and meta["pretraining_hours"] == 4400


def test_bench_list_shows_catalog_and_groups(bench):
    code, out, _ = bench("list", "--models")
    assert code == 0
    for name in STUDY:
        assert f"\n{name} " in out
    assert "voxpopuli-mono" in out and "pre-training=436k h" in out


def test_a_hub_checkpoint_offline_fails_before_any_cell(bench, small_config, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = bench("run", "--config", str(small_config), "--models", "tiny-hubert,vp-es", "--langs", "de")
    assert code == 2
    assert "'facebook/wav2vec2-large-es-voxpopuli' is not available here" in err
    assert "run `bench download` with the same --models where the hub is reachable" in err
    assert "cells computed" not in out


def test_unknown_group_or_model_suggests_names(bench, small_config):
    code, _, err = bench("run", "--config", str(small_config), "--models", "voxpopuli-mon")
    assert code == 2 and "did you mean 'voxpopuli-mono'" in err.lower()


def test_no_pretraining_is_the_large_architecture_with_random_weights():
    from harness.api import ModelRequest

    spec = load_registry().model("no-pretraining").spec
    assert spec.check is None  # needs no hub
    model = spec.build(ModelRequest(vocab_size=30, blank_id=0, seed=0, mask_time_prob=0.05))
    config = model.model.config
    assert (config.hidden_size, config.num_hidden_layers, config.conv_dim) == (1024, 24, LARGE_CONFIG["conv_dim"])
    assert 310e6 < sum(p.numel() for p in model.parameters()) < 320e6
    assert model.model.lm_head.out_features == 30 and model.normalize_audio
