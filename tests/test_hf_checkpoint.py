"""The `hf` plugin on local checkpoints written by save_pretrained (as users keep them offline)."""

import pytest

from harness.store.results import ResultStore
from plugins.models.hf import TINY_ARCHITECTURES, checkpoint_spec, tiny_config


def _save(tmp_path, model_type, with_extractor=True):
    from transformers import AutoModelForCTC, Wav2Vec2FeatureExtractor

    path = tmp_path / f"ckpt-{model_type}"
    AutoModelForCTC.from_config(tiny_config(model_type, vocab_size=7)).save_pretrained(path)
    if with_extractor:
        Wav2Vec2FeatureExtractor(sampling_rate=16_000, do_normalize=False).save_pretrained(path)
    return path


@pytest.mark.parametrize("model_type", sorted(set(TINY_ARCHITECTURES.values())))
def test_every_architecture_loads_and_fine_tunes_from_a_local_checkpoint(bench, small_config, tmp_path, model_type):
    path = _save(tmp_path, model_type)
    code, out, err = bench("run", "--config", str(small_config), "--models", f"hf:{path}", "--langs", "de")
    assert code == 0, err
    with ResultStore(small_config.parent / "results.sqlite") as store:
        (cell,) = store.cells()
    metadata = cell.record["identity"]["model"]["metadata"]
    assert metadata["architecture"] == model_type.replace("-", "_") or metadata["architecture"] == model_type
    assert len(metadata["fingerprint"]) == 16
    # the head was resized from the checkpoint's 7 symbols to this language's vocabulary
    assert cell.record["train"]["vocab_size"] > 7


def test_checkpoint_settings_are_honoured(tmp_path):
    from harness.api import ModelRequest

    path = _save(tmp_path, "wav2vec2")
    spec = checkpoint_spec(str(path))
    model = spec.build(ModelRequest(vocab_size=12, blank_id=0, seed=0, mask_time_prob=0.2))
    assert model.normalize_audio is False  # from preprocessor_config.json
    assert model.model.config.vocab_size == 12 and model.model.config.mask_time_prob == 0.2
    assert model.model.lm_head.out_features == 12


def test_a_checkpoints_own_ctc_head_is_never_reused(tmp_path):
    """A fine-tuned checkpoint (or a phone recogniser) has a head for another alphabet: even when
    its size matches the language's vocabulary, the cell gets a fresh one; the body is loaded."""
    import torch
    from transformers import AutoModelForCTC

    from harness.api import ModelRequest

    path = tmp_path / "fine-tuned"
    saved = AutoModelForCTC.from_config(tiny_config("wav2vec2", vocab_size=12))
    with torch.no_grad():
        saved.lm_head.weight.fill_(0.5)
        saved.lm_head.bias.fill_(0.5)
    saved.save_pretrained(path)
    for vocab_size in (12, 20):
        model = checkpoint_spec(str(path)).build(ModelRequest(vocab_size=vocab_size, blank_id=0, seed=0)).model
        head = model.lm_head
        assert head.out_features == vocab_size and not torch.any(head.weight == 0.5) and torch.all(head.bias == 0)
        assert head.weight.std().item() == pytest.approx(saved.config.initializer_range, rel=0.2)
        key = "encoder.layers.0.feed_forward.output_dense.weight"
        assert torch.equal(model.wav2vec2.state_dict()[key], saved.wav2vec2.state_dict()[key])


def test_alias_in_bench_toml(bench, small_config, tmp_path):
    path = _save(tmp_path, "hubert", with_extractor=False)
    small_config.write_text(small_config.read_text() + f'\n[models.my-hubert]\nfrom = "hf:{path}"\n')
    code, out, err = bench("run", "--config", str(small_config), "--models", "my-hubert", "--langs", "de")
    assert code == 0, err
    assert "my-hubert" in out
    assert "Loading weights" not in err  # transformers' per-load progress bar stays quiet
