"""The model plugins' shared helper API (plugins.models.kit), and the toolkit schemes as the core
environment sees them: listed, and one clear error when their package is absent."""

from __future__ import annotations

import ast
import sys

import pytest
import torch

from conftest import REPO
from harness.api import ModelRequest
from harness.engine.device import seed_everything
from plugins.models import kit


def test_no_plugin_imports_private_names_of_another():
    """Plugins share the public helpers of plugins.models.kit, not each other's _private functions."""
    offenders = []
    for path in sorted((REPO / "plugins").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("plugins")):
                offenders += [f"{path.relative_to(REPO)}: {alias.name}" for alias in node.names
                              if alias.name.startswith("_")]
    assert not offenders


def test_heads(tmp_path):
    """hf_ctc_head is the head hf: gives a checkpoint in a cell; init_ctc_head does not depend on
    what was drawn before it."""
    from transformers import AutoModelForCTC

    from plugins.models.hf import checkpoint_spec, tiny_config

    path = tmp_path / "ckpt"
    AutoModelForCTC.from_config(tiny_config("wav2vec2", vocab_size=7)).save_pretrained(path)
    request = ModelRequest(vocab_size=12, blank_id=0, seed=3)
    seed_everything(3)
    built = checkpoint_spec(str(path)).build(request)
    seed_everything(3)
    assert torch.equal(built.model.lm_head.weight, kit.hf_ctc_head(str(path), request).weight)
    first = kit.fresh_ctc_head(192, 12, seed=3).weight
    torch.rand(1000)
    again = kit.fresh_ctc_head(192, 12, seed=3)
    assert torch.equal(again.weight, first) and not again.bias.any()
    assert again.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_capture_layer_outputs_and_frames_of():
    layers = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(3)])

    def run(x):
        for layer in layers:
            x = layer(x)
        return x

    x = torch.randn(2, 5, 4)
    states = kit.capture_layer_outputs(layers, lambda: run(x))
    assert len(states) == 4 and torch.equal(states[0], x) and torch.allclose(states[-1], run(x))
    lengths = torch.tensor([16000, 400, 60])
    conv = torch.nn.Sequential(torch.nn.Conv1d(1, 1, 40, 16), torch.nn.Conv1d(1, 1, 20, 20))
    assert kit.frames_of(lengths, [(40, 16), (20, 20)]).tolist() == [conv(torch.zeros(1, 1, 16000)).shape[-1], 1, 0]


def test_normalise_audio_is_the_loops():
    from harness.engine import prepare_audio

    audio = torch.randn(1234).numpy() * 3 + 1
    assert torch.equal(kit.normalise_audio(audio), prepare_audio(audio, True))


def test_toolkit_schemes_are_listed_in_every_environment(bench):
    code, out, err = bench("list", "--models")
    assert code == 0, err
    assert "s3prl:…" in out and "torchaudio:…" in out


@pytest.mark.parametrize("package, model", [
    ("torchaudio", "torchaudio:tiny-wav2vec2"),
    ("s3prl", "s3prl:hf_wav2vec2_custom:/nonexistent"),
])
def test_a_missing_toolkit_stops_before_any_cell_with_one_message(bench, small_config, monkeypatch, package, model):
    monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed
    code, out, err = bench("run", "--config", str(small_config), "--models", model, "--langs", "de")
    assert code == 2
    assert "Traceback" not in err
    assert f"the {package} models need the {package} package, which is not installed here" in err
    assert f"pip install 'torch===2.13.0' -e '.[{package}]'" in err
    store = small_config.parent / "results.sqlite"
    if store.exists():  # planned, never computed
        from harness.store.results import ResultStore

        with ResultStore(store) as results:
            assert not results.cells()


def test_a_toolkit_that_does_not_import_says_so(monkeypatch):
    from harness.errors import BenchError
    from plugins.models import s3prl_upstreams

    def broken():
        raise AttributeError("module 'torchaudio' has no attribute 'set_audio_backend'")

    monkeypatch.setattr(s3prl_upstreams, "_torchaudio_compat", broken)
    with pytest.raises(BenchError) as caught:
        s3prl_upstreams._s3prl()
    text = str(caught.value)
    assert "s3prl is installed but does not import here (AttributeError: module 'torchaudio'" in text
    assert "s3prl 0.4.18 with torchaudio 2.11.1 and torch 2.13.0 from PyPI" in text


def test_scheme_arguments_are_checked_without_the_toolkits():
    from harness.errors import BenchError
    from plugins.models.s3prl_upstreams import parse, s3prl_spec
    from plugins.models.torchaudio_models import torchaudio_spec

    assert parse("hf_wav2vec2_custom:/a/b") == ("hf_wav2vec2_custom", "/a/b")
    assert parse("wav2vec2_url:https://x/y.pt") == ("wav2vec2_url", "https://x/y.pt")
    assert parse("wavlm_base_plus") == ("wavlm_base_plus", None)
    spec = s3prl_spec("hf_wav2vec2_custom:/a/b")
    assert spec.name == "s3prl:hf_wav2vec2_custom:/a/b" and spec.facts.hidden_states
    assert spec.metadata == {"toolkit": "s3prl", "upstream": "hf_wav2vec2_custom", "checkpoint": "/a/b"}
    assert torchaudio_spec("tiny-wavlm").facts.pretrained is False
    assert torchaudio_spec("WAV2VEC2_XLSR_300M").metadata["bundle"] == "WAV2VEC2_XLSR_300M"
    for bad in (lambda: s3prl_spec(""), lambda: torchaudio_spec("")):
        with pytest.raises(BenchError):
            bad()
