"""Hugging Face CTC models: any checkpoint ``AutoModelForCTC`` loads, and tiny random ones.

``hf:HUB_ID`` or ``hf:/path/to/checkpoint`` names any wav2vec2, HuBERT, WavLM, UniSpeech or
UniSpeech-SAT checkpoint; a fresh CTC head sized to the language's vocabulary is put on top.
``tiny-*`` are small configurations of those architectures with random weights, which need
nothing from a hub (the offline default).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping
from typing import Any

from harness.api import ModelGroup, ModelRequest, ModelScheme, ModelSpec
from harness.errors import BenchError
from harness.hookspecs import hookimpl

from .kit import (CHECKPOINT_OPTIONS, CONFIG_OPTIONS, HF_FACTS, HFCTCModel, check_hf_checkpoint,
                  checkpoint_fingerprint, hf_config_kwargs, hf_downloads, load_hf_checkpoint, local_path)

__all__ = ["CHECKPOINT_OPTIONS", "CONFIG_OPTIONS", "HF_FACTS", "HFCTCModel", "TINY_ARCHITECTURES", "VERSION",
           "build_tiny", "checkpoint_spec", "tiny_config"]

VERSION = "1"

# WavLM's attention passes masks of two dtypes to torch; harmless, and noisy once per step
warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask and attn_mask")


def checkpoint_spec(ref: str) -> ModelSpec:
    """The spec of ``hf:REF``: a hub id or a local directory."""
    if not ref:
        raise BenchError("hf: needs a checkpoint, e.g. hf:facebook/wav2vec2-xls-r-300m or hf:/path/to/dir")
    local = local_path(ref)
    metadata: dict[str, Any] = {"checkpoint": ref}
    if local is not None and local.is_dir():
        metadata["fingerprint"] = checkpoint_fingerprint(local)
        config = local / "config.json"
        if config.exists():
            metadata["architecture"] = json.loads(config.read_text()).get("model_type", "?")
    else:
        metadata["hub_id"] = ref
    return ModelSpec(
        name=f"hf:{ref}",
        build=lambda request: load_hf_checkpoint(ref, request),
        version=VERSION,
        description="Hugging Face CTC checkpoint",
        metadata=metadata,
        check=lambda: check_hf_checkpoint(ref),
        facts=HF_FACTS,
        options=CHECKPOINT_OPTIONS,
        downloads=hf_downloads(ref),
    )


# --------------------------------------------------------------------------- tiny models
#: A two-layer convolutional feature encoder with the real one's 20 ms frame rate (16 x 20 =
#: 320 samples) and a 21 ms receptive field. Measured here: with random weights frozen, a
#: wide shallow encoder gives far more usable features than a narrow copy of the real 7-layer
#: stack ((64,) * 7 stayed at CER 1.0 after 600 updates; this one reaches ~0.6 after 500), and
#: costs a tenth of a 512-wide 7-layer stack to run.
_TINY_CONV = {"conv_dim": (512, 512), "conv_kernel": (40, 20), "conv_stride": (16, 20)}
#: no dropout: tiny models on minutes of audio for a few hundred updates do not overfit, and
#: sampling dropout masks took 14 % of a CPU training step
_TINY_BODY = {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 768,
              "num_conv_pos_embeddings": 32, "num_conv_pos_embedding_groups": 8, "feat_extract_norm": "layer",
              "do_stable_layer_norm": True, "layerdrop": 0.0, "hidden_dropout": 0.0, "attention_dropout": 0.0,
              "activation_dropout": 0.0, "feat_proj_dropout": 0.0, "final_dropout": 0.0}

TINY_ARCHITECTURES: Mapping[str, str] = {
    "tiny-wav2vec2": "wav2vec2",
    "tiny-hubert": "hubert",
    "tiny-wavlm": "wavlm",
    "tiny-unispeech": "unispeech",
    "tiny-unispeech-sat": "unispeech-sat",
}


def tiny_config(model_type: str, **overrides: Any):
    """A transformers config of ``model_type`` at the tiny size."""
    from transformers import AutoConfig

    settings: dict[str, Any] = {**_TINY_CONV, **_TINY_BODY}
    if model_type in {"wavlm"}:
        settings["num_buckets"] = 64
        settings["max_bucket_distance"] = 200
    if model_type in {"unispeech", "unispeech-sat"}:
        settings["num_codevectors_per_group"] = 32
    settings.update(overrides)
    return AutoConfig.for_model(model_type, **settings)


def build_tiny(model_type: str, request: ModelRequest) -> HFCTCModel:
    """A tiny model of ``model_type`` with random weights (drawn from torch's seeded generator)."""
    from transformers import AutoModelForCTC

    config = tiny_config(model_type, **hf_config_kwargs(request))
    return HFCTCModel(AutoModelForCTC.from_config(config), normalize_audio=True)



def _tiny_spec(name: str, model_type: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        build=lambda request: build_tiny(model_type, request),
        version=VERSION,
        description=f"tiny {model_type} (2 conv + 4 transformer layers, hidden 192), random weights; offline",
        metadata={"architecture": model_type, "pretraining": "none", "parameters": "7.3M (2.1M trainable with the encoder frozen)"},
        facts=dataclasses.replace(HF_FACTS, pretrained=False),
        options=CONFIG_OPTIONS,
    )


@hookimpl
def bench_register_models(register) -> None:
    for name, model_type in TINY_ARCHITECTURES.items():
        register(_tiny_spec(name, model_type))
    register.group(ModelGroup("tiny", tuple(TINY_ARCHITECTURES),
                              "every tiny model (offline; seconds per cell on a CPU): the architectures with random "
                              "weights and those pre-trained here"))
    register.scheme(ModelScheme("hf", checkpoint_spec, "any AutoModelForCTC checkpoint: hf:HUB_ID or hf:/path"))
