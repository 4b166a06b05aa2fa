"""torchaudio: and s3prl: models, and the same weights through hf:, torchaudio: and s3prl:
(tiny local checkpoints made here; no hub). They need the extras (docs/toolkit-models.md):
without them they are skipped with the reason, and CI runs them in a second environment."""

from __future__ import annotations

import pytest
import torch

from harness.api import ModelRequest, frame_mask
from harness.engine.device import seed_everything
from harness.errors import BenchError
from harness.store.results import ResultStore

pytestmark = pytest.mark.toolkits
pytest.importorskip("torchaudio", reason="needs the torchaudio extra: pip install 'torch===2.13.0' -e '.[torchaudio]'")

#: the tiny size with a post-layer-norm transformer (s3prl's hf expert returns transformers' own
#: hidden states, whose last one is the final layer norm's output for pre-layer-norm models)
POST_LN = {"do_stable_layer_norm": False}


def save_checkpoint(path, model_type="wav2vec2", **overrides):
    from transformers import AutoModelForCTC, Wav2Vec2FeatureExtractor

    from plugins.models.hf import tiny_config

    seed_everything(0)
    AutoModelForCTC.from_config(tiny_config(model_type, vocab_size=7, **overrides)).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=16_000, do_normalize=True, return_attention_mask=True).save_pretrained(path)
    return path


def build(name, vocab_size=12, seed=1, mask_time_prob=0.05):
    from harness.plugins import process_registry

    seed_everything(seed)
    spec = process_registry().model(name).spec
    if spec.check:
        spec.check()
    model = spec.build(ModelRequest(vocab_size=vocab_size, blank_id=0, seed=seed, mask_time_prob=mask_time_prob))
    return model.eval()


def states(model, audio, lengths):
    """hidden_states of a batch as the loop feeds it (normalised as the model asks, zero-padded)."""
    from harness.engine.batching import pad_stack
    from harness.engine import prepare_audio

    clips = [prepare_audio(a[:n].numpy(), model.normalize_audio) for a, n in zip(audio, lengths)]
    frames = model.frame_lengths(torch.tensor(lengths))
    with torch.no_grad():
        features = model.encode(pad_stack(clips))
        mask = frame_mask(frames, features.shape[1])
        return model.hidden_states(features, mask), model.head(features, mask), frames


def audio_batch(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(len(lengths), max(lengths), generator=generator) * 0.1, list(lengths)


# --------------------------------------------------------------------------- torchaudio
@pytest.mark.parametrize("builder", ["tiny-wav2vec2", "tiny-hubert", "tiny-wavlm"])
def test_tiny_builders(builder):
    model = build(f"torchaudio:{builder}")
    audio, lengths = audio_batch([16000, 9000])
    hidden, logits, frames = states(model, audio, lengths)
    assert len(hidden) == 5 and all(h.shape == (2, int(frames[0]), 192) for h in hidden)
    assert logits.shape == (2, int(frames[0]), 12)
    assert model.encode(audio[:1, :9000]).shape[1] == int(frames[1])
    assert sum(p.numel() for p in model.parameters()) > 7e6


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm"])
def test_hf_and_torchaudio_give_the_same_hidden_states(tmp_path, model_type):
    path = save_checkpoint(tmp_path / model_type, model_type)
    hf, ta = build(f"hf:{path}"), build(f"torchaudio:{path}")
    assert torch.equal(hf.model.lm_head.weight, ta.lm_head.weight)  # the same fresh head
    assert hf.normalize_audio == ta.normalize_audio
    audio, lengths = audio_batch([16000, 11000, 7000])
    hf_states, hf_logits, frames = states(hf, audio, lengths)
    ta_states, ta_logits, ta_frames = states(ta, audio, lengths)
    assert torch.equal(frames, ta_frames) and len(hf_states) == len(ta_states) == 5
    mask = frame_mask(frames, hf_logits.shape[1])
    worst = max((a - b)[mask].abs().max().item() for a, b in zip(hf_states, ta_states))
    print(f"{model_type}: max |hf - torchaudio| over hidden states {worst:.2e}, logits "
          f"{(hf_logits - ta_logits)[mask].abs().max().item():.2e}")
    assert worst < 1e-4
    assert torch.allclose(hf_logits[mask], ta_logits[mask], atol=1e-4)


def test_a_bundle_not_in_the_cache_fails_offline_before_any_cell(bench, small_config, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = bench("run", "--config", str(small_config), "--models", "torchaudio:WAV2VEC2_XLSR_300M",
                           "--langs", "de")
    assert code == 2 and "Traceback" not in err
    assert "torchaudio bundle WAV2VEC2_XLSR_300M is not in torch's download cache" in err
    assert "torchaudio.pipelines.WAV2VEC2_XLSR_300M.get_model()" in err and "xlsr_300m" in err
    assert not (small_config.parent / "results.sqlite").exists() or not ResultStore(small_config.parent / "results.sqlite").cells()


def test_a_cached_bundle_loads_from_the_cache(tmp_path, monkeypatch):
    """A bundle's weights placed where torch's download cache keeps them are used offline (a
    tiny stand-in saved under the bundle's file name, with the bundle's parameters made tiny)."""
    import dataclasses

    import torchaudio

    from plugins.models import torchaudio_models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    real = torchaudio.pipelines.WAV2VEC2_BASE
    params = {**real._params, **{k: v for k, v in torchaudio_models.TINY["tiny-wav2vec2"].items()
                                 if k in real._params}, "extractor_mode": "group_norm"}
    bundle = dataclasses.replace(real, _params=params)
    monkeypatch.setattr(torchaudio.pipelines, "WAV2VEC2_BASE", bundle)
    _, cached = torchaudio_models.bundle_file(bundle)
    cached.parent.mkdir(parents=True)
    seed_everything(0)
    torch.save(torchaudio.models.wav2vec2_model(**params).state_dict(), cached)
    torchaudio_models.check_bundle("WAV2VEC2_BASE")
    model = torchaudio_models.build_bundle("WAV2VEC2_BASE", ModelRequest(vocab_size=9, blank_id=0, seed=0))
    assert model.normalize_audio is False and model.lm_head.out_features == 9


def test_unknown_bundle_and_bad_paths():
    from plugins.models.torchaudio_models import torchaudio_spec

    with pytest.raises(BenchError, match="no wav2vec 2.0 bundle 'WAV2VEC2_XLSR_30M'.*Did you mean 'WAV2VEC2_XLSR_300M'"):
        torchaudio_spec("WAV2VEC2_XLSR_30M").check()
    with pytest.raises(BenchError, match="no Hugging Face checkpoint there"):
        torchaudio_spec("/nonexistent/checkpoint").check()


# --------------------------------------------------------------------------- s3prl
def s3prl_or_skip():
    pytest.importorskip("s3prl", reason="needs the s3prl extra: pip install 'torch===2.13.0' -e '.[s3prl]'")


def test_s3prl_hidden_states_match_hf(tmp_path):
    s3prl_or_skip()
    path = save_checkpoint(tmp_path / "post-ln", **POST_LN)
    hf, s3 = build(f"hf:{path}"), build(f"s3prl:hf_wav2vec2_custom:{path}")
    assert torch.equal(hf.model.lm_head.weight, s3.lm_head.weight)
    assert len(s3.feature_encoder_parameters()) == len(hf.feature_encoder_parameters())
    for n in (16000, 12800):  # whole frames of 320 samples: s3prl sees exactly hf's audio
        audio, lengths = audio_batch([n])
        hf_states, hf_logits, frames = states(hf, audio, lengths)
        s3_states, s3_logits, s3_frames = states(s3, audio, lengths)
        assert len(hf_states) == len(s3_states) == 5
        common = int(frames[0])  # s3prl reports ceil(n / 320) frames, the last a copy: compare hf's
        assert int(s3_frames[0]) == n // 320 >= common
        worst = max((a[:, :common] - b[:, :common]).abs().max().item() for a, b in zip(hf_states, s3_states))
        print(f"{n} samples: max |hf - s3prl| over hidden states {worst:.2e}")
        assert worst < 1e-4
        assert torch.allclose(hf_logits[:, :common], s3_logits[:, :common], atol=1e-4)


def test_s3prl_upstreams_train_without_layer_drop(tmp_path):
    """transformers 5 records hidden states only of the layers that ran, and s3prl asserts on
    their number: bench turns an upstream's layer drop off, so fine-tuning works."""
    s3prl_or_skip()
    path = save_checkpoint(tmp_path / "layerdrop", layerdrop=0.9, **POST_LN)
    model = build(f"s3prl:hf_wav2vec2_custom:{path}").train()
    audio, lengths = audio_batch([6400, 3200])
    features = model.encode(audio)
    for _ in range(3):
        logits = model.head(features, frame_mask(model.frame_lengths(torch.tensor(lengths)), features.shape[1]))
        assert logits.shape == (2, 20, 12)


def test_s3prl_upstreams_mask_time_as_the_recipe_says(tmp_path):
    """A Hugging Face upstream masks time steps by its own config while training (0.05 by default):
    the recipe's train.mask_time_prob replaces it, as it does for hf: (with the checkpoint's 0.05
    an s3prl fine-tune of the default recipe, which masks nothing, gave test CER 0.415 against
    hf's 0.391; with the recipe's, 0.387)."""
    s3prl_or_skip()
    path = save_checkpoint(tmp_path / "masking", mask_time_prob=0.05, **POST_LN)
    for wanted in (0.0, 0.3):
        model = build(f"s3prl:hf_wav2vec2_custom:{path}", mask_time_prob=wanted)
        probs = {m.config.mask_time_prob for m in model.upstream.modules() if hasattr(getattr(m, "config", None),
                                                                                      "mask_time_prob")}
        assert probs == {wanted}
    model = build(f"s3prl:hf_wav2vec2_custom:{path}", mask_time_prob=0.0).train()
    audio, lengths = audio_batch([6400, 3200])
    features = model.encode(audio)
    mask = frame_mask(model.frame_lengths(torch.tensor(lengths)), features.shape[1])
    with torch.no_grad():  # nothing masked: training mode gives what evaluation gives
        trained = model.head(features, mask)
        assert torch.allclose(trained, model.eval().head(features, mask), atol=1e-6)


def test_s3prl_errors():
    s3prl_or_skip()
    from plugins.models.s3prl_upstreams import s3prl_spec

    with pytest.raises(BenchError, match="no upstream 'wavlm_base_pluss'.*Did you mean 'wavlm_base_plus'"):
        s3prl_spec("wavlm_base_pluss").check()
    with pytest.raises(BenchError, match="needs a checkpoint: s3prl:hf_wav2vec2_custom:/path"):
        s3prl_spec("hf_wav2vec2_custom").check()
    with pytest.raises(BenchError, match="does not exist"):
        s3prl_spec("hf_wav2vec2_custom:/nonexistent/dir").check()


# --------------------------------------------------------------------------- through bench's loop
def stored_results(store_path, protocol):
    """{toolkit: (test CER, training loss curve)} of the stored cells of ``protocol``."""
    with ResultStore(store_path) as store:
        return {cell.model.split(":")[0]: (cell.metrics["test"]["cer"], cell.record["train"]["loss_curve"])
                for cell in store.cells() if cell.protocol == protocol}


@pytest.mark.parametrize("protocol", ["finetune", "superb"])
def test_same_cer_through_hf_torchaudio_and_s3prl(bench, small_config, tmp_path, protocol):
    path = save_checkpoint(tmp_path / "ckpt", **POST_LN)
    models = [f"hf:{path}", f"torchaudio:{path}"]
    try:
        import s3prl  # noqa: F401

        models.append(f"s3prl:hf_wav2vec2_custom:{path}")
    except ImportError:
        pass
    code, out, err = bench("run", "--config", str(small_config), "--models", ",".join(models), "--langs", "de",
                           "--protocols", protocol, "--set", "train.steps=50", "--set", "train.lr=1e-3",
                           "--no-progress")
    assert code == 0, err
    results = stored_results(small_config.parent / "results.sqlite", protocol)
    print(f"{protocol}: " + "; ".join(f"{k}: CER {cer:.4f}, loss every 25 updates {curve}"
                                      for k, (cer, curve) in sorted(results.items())))
    assert len(results) == len(models)
    (hf_cer, hf_curve), (ta_cer, ta_curve) = results["hf"], results["torchaudio"]
    assert ta_cer == pytest.approx(hf_cer, abs=0.005)
    assert ta_curve == pytest.approx(hf_curve, rel=1e-3)  # the same training, update for update
    if "s3prl" in results:  # s3prl counts one more frame per utterance (a copy of the last): close, not equal
        s3_cer, s3_curve = results["s3prl"]
        assert s3_cer == pytest.approx(hf_cer, abs=0.05)
        assert s3_curve == pytest.approx(hf_curve, rel=0.1)


def test_documented_smoke_run_offline(bench, small_config, tmp_path):
    """docs/toolkit-models.md: `bench run --models s3prl:<a local tiny upstream>,torchaudio:<tiny>,tiny-wav2vec2
    --langs es --seeds 1`, offline, under both protocols."""
    s3prl_or_skip()
    path = save_checkpoint(tmp_path / "tiny-upstream", **POST_LN)
    models = f"s3prl:hf_wav2vec2_custom:{path},torchaudio:tiny-wav2vec2,tiny-wav2vec2"
    code, out, err = bench("run", "--config", str(small_config), "--models", models, "--langs", "es", "--seeds", "1",
                           "--protocols", "finetune,superb", "--no-progress")
    assert code == 0, err
    with ResultStore(small_config.parent / "results.sqlite") as store:
        cells = store.cells()
    assert sorted((c.model.split(":")[0], c.protocol) for c in cells) == sorted(
        (m, p) for m in ("s3prl", "torchaudio", "tiny-wav2vec2") for p in ("finetune", "superb"))
    code, out, err = bench("list", "--models")
    assert "s3prl:…" in out and "torchaudio:…" in out
