"""torchaudio's own wav2vec 2.0 / HuBERT / WavLM implementation as bench models: ``torchaudio:NAME``.

- ``torchaudio:BUNDLE``: a pretrained bundle of ``torchaudio.pipelines`` (``WAV2VEC2_XLSR53``,
  ``WAV2VEC2_XLSR_300M``, ``VOXPOPULI_...``, ``HUBERT_LARGE``, ``WAVLM_LARGE``, ...); its weights
  come from torch's download cache (``torch.hub.get_dir()/checkpoints``), downloaded there on
  first use where the internet is reachable. An ASR bundle's own output layer is dropped.
- ``torchaudio:tiny-wav2vec2``, ``torchaudio:tiny-hubert``, ``torchaudio:tiny-wavlm``: torchaudio's
  model builders at the size of the ``tiny-*`` models, random weights; offline.
- ``torchaudio:/path/to/checkpoint``: a Hugging Face wav2vec2 / HuBERT / WavLM checkpoint directory
  converted with torchaudio's ``import_huggingface_model`` (the same weights as ``hf:/path``).

Every model gets a fresh CTC head drawn from the cell's seed (:func:`.kit.init_ctc_head`; a
Hugging Face checkpoint gets the one ``hf:`` gives it) and the same SpecAugment-style time
masking as the ``hf`` models, so the same weights give the same cell through ``hf:`` and
``torchaudio:``. torchaudio is imported only when a model is
checked or built: without it (``pip install -e '.[torchaudio]'``) the scheme is still listed and a
run that names it stops before any cell with one message.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from harness.api import DownloadItem, ModelFacts, ModelRequest, ModelScheme, ModelSpec, SpeechCTCModel
from harness.errors import BenchError, did_you_mean
from harness.hookspecs import hookimpl

from .kit import (checkpoint_fingerprint, frames_of, hf_expects_normalised_audio, init_ctc_head,
                  load_hf_ctc_model, local_path, toolkit_missing)

VERSION = "1"
EXTRA = "torchaudio"
INSTALL = "pip install 'torch===2.13.0' -e '.[torchaudio]'"
WORKS = "torchaudio 2.11.1 with torch 2.13.0 from PyPI, whose CUDA build also runs on the CPU"
#: ``[models.NAME]`` options
OPTIONS = ("mask_time_length", "final_dropout")

#: torchaudio's builders at the size of hf's tiny-* models (plugins.models.hf: _TINY_CONV, _TINY_BODY)
TINY: dict[str, dict[str, Any]] = {
    name: {
        "extractor_mode": "layer_norm",
        "extractor_conv_layer_config": [(512, 40, 16), (512, 20, 20)],
        "extractor_conv_bias": True,
        "encoder_embed_dim": 192,
        "encoder_projection_dropout": 0.0,
        "encoder_pos_conv_kernel": 32,
        "encoder_pos_conv_groups": 8,
        "encoder_num_layers": 4,
        "encoder_num_heads": 4,
        "encoder_attention_dropout": 0.0,
        "encoder_ff_interm_features": 768,
        "encoder_ff_interm_dropout": 0.0,
        "encoder_dropout": 0.0,
        "encoder_layer_norm_first": True,
        "encoder_layer_drop": 0.0,
        **({"encoder_num_buckets": 64, "encoder_max_distance": 200} if name == "tiny-wavlm" else {}),
    }
    for name in ("tiny-wav2vec2", "tiny-hubert", "tiny-wavlm")
}
#: Hugging Face model types that import_huggingface_model converts (HuBERT through its wav2vec2 path)
HF_TYPES = ("wav2vec2", "hubert", "wavlm")


def _torchaudio():
    try:
        import torchaudio  # noqa: F401
        import torchaudio.models  # noqa: F401
        import torchaudio.pipelines
    except Exception as exc:  # absent, or a build that does not match torch
        raise toolkit_missing("torchaudio", EXTRA, INSTALL, exc, WORKS) from None
    return torchaudio


def bundle_names() -> list[str]:
    """The wav2vec 2.0 family bundles of the installed torchaudio."""
    pipelines = _torchaudio().pipelines
    kind = pipelines.Wav2Vec2Bundle
    return sorted(name for name in dir(pipelines) if isinstance(getattr(pipelines, name), kind))


def _bundle(name: str):
    names = bundle_names()
    if name not in names:
        raise BenchError(f"torchaudio has no wav2vec 2.0 bundle {name!r}.{did_you_mean(name, names)}",
                         f"bundles: {', '.join(names)}; or torchaudio:tiny-wav2vec2 / tiny-hubert / tiny-wavlm, "
                         "or torchaudio:/path/to/hugging-face-checkpoint")
    return getattr(_torchaudio().pipelines, name)


def bundle_file(bundle) -> tuple[str, Path]:
    """The URL of a bundle's weights and where torch's download cache keeps them."""
    path = bundle._path
    url = path if "://" in path else f"https://download.pytorch.org/torchaudio/models/{path}"
    return url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("BENCH_OFFLINE", "HF_HUB_OFFLINE", "TORCH_HUB_OFFLINE"))


def _reachable(url: str) -> bool:
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5).close()
        return True
    except Exception:
        return False


def check_bundle(name: str) -> None:
    """Before any cell: the bundle exists and its weights are in the cache or can be downloaded."""
    bundle = _bundle(name)
    url, cached = bundle_file(bundle)
    if cached.exists():
        return
    if _offline() or not _reachable(url):
        raise BenchError(
            f"torchaudio bundle {name} is not in torch's download cache ({cached} is missing) and it cannot be "
            "downloaded from here",
            f"where the internet is reachable run `python -c \"import torchaudio; torchaudio.pipelines.{name}"
            f".get_model()\"` (or download {url}) and copy the file to {cached} (torch.hub.get_dir() follows "
            "TORCH_HOME)",
        )


# --------------------------------------------------------------------------- the model
class TorchaudioCTCModel(SpeechCTCModel):
    """A ``torchaudio.models.Wav2Vec2Model`` (its own output layer removed) with a fresh CTC head.

    ``encode`` is its convolutional feature encoder; ``head`` the feature projection, time
    masking during training (as transformers' wav2vec2 does it), the transformer and the head."""

    def __init__(self, model: torch.nn.Module, vocab_size: int, seed: int, normalize_audio: bool,
                 mask_time_prob: float = 0.05, mask_time_length: int = 10, mask_time_min_masks: int = 2,
                 final_dropout: float = 0.0, masked_spec_embed: torch.Tensor | None = None,
                 lm_head: torch.nn.Linear | None = None) -> None:
        super().__init__()
        model.aux = None
        self.model = model
        self.normalize_audio = normalize_audio
        dim = model.encoder.feature_projection.projection.out_features
        if masked_spec_embed is None:  # as transformers initialises one that a checkpoint lacks
            masked_spec_embed = torch.empty(dim).uniform_(generator=torch.Generator().manual_seed(int(seed) + 1))
        self.masked_spec_embed = torch.nn.Parameter(masked_spec_embed.detach().clone().float())
        self.mask_time_prob, self.mask_time_length = float(mask_time_prob), int(mask_time_length)
        self.mask_time_min_masks = int(mask_time_min_masks)
        self.dropout = torch.nn.Dropout(float(final_dropout))
        self.lm_head = lm_head if lm_head is not None else init_ctc_head(torch.nn.Linear(dim, vocab_size), seed)
        self._convolutions = [(layer.conv.kernel_size[0], layer.conv.stride[0])
                              for layer in model.feature_extractor.conv_layers]
        self._wavlm = any(getattr(layer.attention, "rel_attn_embed", None) is not None
                          for layer in model.encoder.transformer.layers)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model.feature_extractor(audio, None)[0]

    def _transformer(self, x: torch.Tensor, frame_mask: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        """torchaudio's ``Transformer.forward`` with padded frames masked: an additive attention mask
        for wav2vec 2.0 / HuBERT layers, a key padding mask for WavLM's (whose attention takes no
        other). With ``keep``, the input of the first layer and each layer's output go there."""
        transformer = self.model.encoder.transformer
        padded = ~frame_mask
        x = x.masked_fill(padded[..., None], 0.0)
        batch, frames = padded.shape
        attention = key_padding = None
        if self._wavlm:
            key_padding = padded
        else:
            attention = (-10000.0 * padded[:, None, None, :].to(x.dtype)).expand(batch, 1, frames, frames)
        x = transformer._preprocess(x)
        if keep is not None:
            keep.append(x)
        position_bias = None
        for layer in transformer.layers:
            if not (self.training and torch.rand(1).item() <= transformer.layer_drop):
                x, position_bias = layer(x, attention, position_bias=position_bias, key_padding_mask=key_padding)
            if keep is not None:
                keep.append(x)
        if not transformer.layer_norm_first:
            x = transformer.layer_norm(x)
        return x

    def _mask_time(self, x: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """SpecAugment-style time masking while training, drawn exactly as transformers draws it
        (NumPy's generator, which the loop seeds), so hf: and torchaudio: mask the same frames."""
        if not (self.training and self.mask_time_prob > 0):
            return x
        from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

        spans = _compute_mask_indices(tuple(x.shape[:2]), self.mask_time_prob, self.mask_time_length,
                                      attention_mask=frame_mask, min_masks=self.mask_time_min_masks)
        spans = torch.as_tensor(spans, device=x.device, dtype=torch.bool)
        return torch.where(spans[..., None], self.masked_spec_embed.to(x.dtype), x)

    def head(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        x = self._mask_time(self.model.encoder.feature_projection(features), frame_mask)
        return self.lm_head(self.dropout(self._transformer(x, frame_mask)))

    def hidden_states(self, features: torch.Tensor, frame_mask: torch.Tensor) -> list[torch.Tensor]:
        """The transformer's input, then each layer's output (as ``hf`` models give them)."""
        states: list[torch.Tensor] = []
        self._transformer(self.model.encoder.feature_projection(features), frame_mask, keep=states)
        return states

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        return frames_of(sample_lengths, self._convolutions)

    def feature_encoder_parameters(self) -> Sequence[torch.nn.Parameter]:
        return list(self.model.feature_extractor.parameters())


def build_bundle(name: str, request: ModelRequest) -> TorchaudioCTCModel:
    bundle = _bundle(name)
    options = request.options  # checked against OPTIONS while planning
    model = bundle.get_model()
    model = getattr(model, "model", model)  # normalising bundles wrap the model; bench normalises itself
    return TorchaudioCTCModel(model, request.vocab_size, request.seed, bool(bundle._normalize_waveform),
                              request.mask_time_prob, options.get("mask_time_length", 10),
                              final_dropout=options.get("final_dropout", 0.0))


def build_tiny(name: str, request: ModelRequest) -> TorchaudioCTCModel:
    torchaudio = _torchaudio()
    options = request.options  # checked against OPTIONS while planning
    params = TINY[name]
    builder = torchaudio.models.wavlm_model if name == "tiny-wavlm" else torchaudio.models.wav2vec2_model
    model = builder(**params, aux_num_out=None)
    return TorchaudioCTCModel(model, request.vocab_size, request.seed, True, request.mask_time_prob,
                              options.get("mask_time_length", 10), final_dropout=options.get("final_dropout", 0.0))


def _hf_config(path: Path) -> dict[str, Any]:
    config = path / "config.json"
    if not config.is_file():
        raise BenchError(f"torchaudio:{path}: no Hugging Face checkpoint there ({config} is missing)",
                         "give a directory written by save_pretrained() (wav2vec2, HuBERT or WavLM)")
    settings = json.loads(config.read_text())
    if settings.get("model_type") not in HF_TYPES:
        raise BenchError(f"torchaudio:{path}: torchaudio imports {', '.join(HF_TYPES)} checkpoints, not "
                         f"{settings.get('model_type')!r}", f"use hf:{path} for this checkpoint")
    return settings


def build_imported(path: Path, request: ModelRequest) -> TorchaudioCTCModel:
    """A Hugging Face checkpoint converted by torchaudio's ``import_huggingface_model``, with the
    head ``hf:`` gives it in this cell (loaded as ``hf:`` loads it: the same draw)."""
    _torchaudio()
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    _hf_config(path)
    original = load_hf_ctc_model(str(path), request)
    config, base = original.config, original.base_model
    # given the base model (bench puts on its own head), torchaudio warns that no lm_head is imported
    log = logging.getLogger(import_huggingface_model.__module__)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        model = import_huggingface_model(base)
    finally:
        log.setLevel(level)
    embed = getattr(base, "masked_spec_embed", None)
    return TorchaudioCTCModel(
        model, request.vocab_size, request.seed, hf_expects_normalised_audio(str(path), config),
        request.mask_time_prob, config.mask_time_length, config.mask_time_min_masks,
        final_dropout=config.final_dropout, masked_spec_embed=None if embed is None else embed.detach(),
        lm_head=original.lm_head)


# --------------------------------------------------------------------------- the scheme
def torchaudio_spec(argument: str) -> ModelSpec:
    """The spec of ``torchaudio:ARGUMENT`` (a bundle, a tiny builder or a checkpoint directory)."""
    if not argument:
        raise BenchError("torchaudio: needs a model, e.g. torchaudio:WAV2VEC2_XLSR_300M, torchaudio:tiny-wav2vec2 "
                         "or torchaudio:/path/to/hugging-face-checkpoint")
    name = f"torchaudio:{argument}"
    metadata: dict[str, Any] = {"toolkit": "torchaudio"}
    if argument in TINY:
        architecture = argument.removeprefix("tiny-")
        metadata.update(architecture=architecture, pretraining="none", builder=argument,
                        parameters="about 7.3M (tiny, as hf's tiny-*)")
        return ModelSpec(name, lambda request: build_tiny(argument, request), VERSION,
                         f"torchaudio's {architecture} builder at the tiny size, random weights; offline", metadata,
                         check=_torchaudio, facts=ModelFacts(pretrained=False, hidden_states=True), options=OPTIONS)
    path = local_path(argument)
    if path is not None:
        metadata.update(checkpoint=argument)
        if path.is_dir():
            metadata["fingerprint"] = checkpoint_fingerprint(path)
            if (path / "config.json").is_file():
                metadata["architecture"] = json.loads((path / "config.json").read_text()).get("model_type", "?")

        def check() -> None:
            _torchaudio()
            _hf_config(path)

        return ModelSpec(name, lambda request: build_imported(path, request), VERSION,
                         "Hugging Face checkpoint through torchaudio's import_huggingface_model", metadata,
                         check=check, facts=ModelFacts(hidden_states=True), options=OPTIONS)
    metadata.update(bundle=argument, architecture="wavlm" if "WAVLM" in argument else
                    "hubert" if "HUBERT" in argument else "wav2vec2")
    return ModelSpec(name, lambda request: build_bundle(argument, request), VERSION,
                     f"torchaudio.pipelines.{argument} (torch's download cache)", metadata,
                     check=lambda: check_bundle(argument), facts=ModelFacts(pretrained=True, hidden_states=True),
                     options=OPTIONS, downloads=lambda options: bundle_downloads(argument))


def bundle_downloads(name: str) -> list[DownloadItem]:
    """``bench download`` for a bundle: its weights file into torch's download cache (where
    ``bundle.get_model()`` looks first), fetched with torch's own downloader."""

    def where() -> tuple[str, Path]:
        return bundle_file(_bundle(name))

    def fetch() -> None:
        url, cached = where()
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), progress=True)

    return [DownloadItem(kind="call", label=f"torchaudio bundle {name}", fetch=fetch,
                         present=lambda: where()[1].is_file(),
                         destination="torch's download cache (torch.hub.get_dir()/checkpoints)")]


@hookimpl
def bench_register_models(register) -> None:
    register.scheme(ModelScheme(
        "torchaudio", torchaudio_spec,
        "torchaudio's wav2vec2/HuBERT/WavLM: torchaudio:BUNDLE (e.g. WAV2VEC2_XLSR_300M, torch's download cache), "
        "torchaudio:tiny-wav2vec2|tiny-hubert|tiny-wavlm (random), torchaudio:/path (HF checkpoint imported); "
        "extra [torchaudio]"))
