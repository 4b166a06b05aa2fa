"""Hugging Face CTC models: any checkpoint ``AutoModelForCTC`` loads, and tiny random ones.

``hf:HUB_ID`` or ``hf:/path/to/checkpoint`` names any wav2vec2, HuBERT, WavLM, UniSpeech or
UniSpeech-SAT checkpoint; a fresh CTC head sized to the language's vocabulary is put on top.
``tiny-*`` are small configurations of those architectures with random weights, which need
nothing from a hub (the offline default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from harness.api import SAMPLING_RATE, ModelFacts, ModelRequest, ModelScheme, ModelSpec, SpeechCTCModel
from harness.errors import BenchError
from harness.hookspecs import hookimpl

VERSION = "1"

# WavLM's attention passes masks of two dtypes to torch; harmless, and noisy once per step
warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask and attn_mask")

#: what every model of this plugin (and those built on it) can do: hidden states for ``superb``
HF_FACTS = ModelFacts(hidden_states=True)

#: fine-tuning knobs that may be set per model in bench.toml [models.NAME]
CONFIG_OPTIONS = ("layerdrop", "hidden_dropout", "attention_dropout", "activation_dropout",
                  "feat_proj_dropout", "final_dropout", "mask_time_length", "mask_feature_prob",
                  "mask_feature_length")
#: ``[models.NAME]`` options of a checkpoint loaded from the hub or a directory
CHECKPOINT_OPTIONS = (*CONFIG_OPTIONS, "revision")


class HFCTCModel(SpeechCTCModel):
    """Adapter from a ``*ForCTC`` transformers model to the loop's interface."""

    def __init__(self, model: torch.nn.Module, normalize_audio: bool = True) -> None:
        super().__init__()
        self.model = model
        self.normalize_audio = normalize_audio

    @property
    def _base(self) -> torch.nn.Module:
        return self.model.base_model

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        return self._base.feature_extractor(audio).transpose(1, 2)

    def head(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        base = self._base
        projected = base.feature_projection(features)
        hidden = projected[0] if isinstance(projected, tuple) else projected
        hidden = base._mask_hidden_states(hidden, attention_mask=frame_mask)
        hidden = base.encoder(hidden, attention_mask=frame_mask)[0]
        if getattr(base, "adapter", None) is not None:
            hidden = base.adapter(hidden)
        return self.model.lm_head(self.model.dropout(hidden))

    def hidden_states(self, features: torch.Tensor, frame_mask: torch.Tensor) -> list[torch.Tensor]:
        """The transformer's input, then each layer's output: what the whole model returns with
        ``output_hidden_states=True``, captured with hooks on the layers (transformers 5 records
        them only at the top-level model)."""
        base = self._base
        projected = base.feature_projection(features)
        hidden = projected[0] if isinstance(projected, tuple) else projected
        layers = base.encoder.layers
        states: list[torch.Tensor] = []
        hooks = [layers[0].register_forward_pre_hook(lambda module, args: states.append(args[0]))]
        for layer in layers:
            hooks.append(layer.register_forward_hook(
                lambda module, args, output: states.append(output[0] if isinstance(output, tuple) else output)))
        try:
            base.encoder(hidden, attention_mask=frame_mask)
        finally:
            for hook in hooks:
                hook.remove()
        return states

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        return self.model._get_feat_extract_output_lengths(sample_lengths).long()

    def enable_gradient_checkpointing(self) -> None:
        # each transformer layer is recomputed in the backward pass (non-reentrant: works with the
        # frozen encoder's outputs, which need no gradient)
        kwargs = {"use_reentrant": False}
        if hasattr(self.model, "activation_checkpointing_enable"):  # transformers >= 5.x's name for it
            self.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def feature_encoder_parameters(self) -> Sequence[torch.nn.Parameter]:
        return list(self._base.feature_extractor.parameters())


def _config_kwargs(request: ModelRequest) -> dict[str, Any]:
    unknown = sorted(set(request.options) - set(CONFIG_OPTIONS) - {"revision"})
    if unknown:
        raise BenchError(f"unknown model option(s) {', '.join(unknown)}",
                         f"options for Hugging Face models: {', '.join(CONFIG_OPTIONS)}, revision")
    kwargs = {k: v for k, v in request.options.items() if k in CONFIG_OPTIONS}
    return {
        "vocab_size": request.vocab_size,
        "pad_token_id": request.blank_id,
        "ctc_loss_reduction": "sum",
        "mask_time_prob": request.mask_time_prob,
        **kwargs,
    }


# --------------------------------------------------------------------------- checkpoints
def _not_found(ref: str, cause: Exception) -> BenchError:
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    if _local_path(ref) is not None:
        return BenchError(
            f"model checkpoint {ref!r} could not be loaded: {first_line}",
            "the directory must hold a Hugging Face checkpoint (config.json and weights), "
            "as written by model.save_pretrained(DIR)",
        )
    return BenchError(
        f"model checkpoint {ref!r} is not available here: {first_line}",
        "if it is a hub id, check the spelling; this machine may not reach the hub: download it where the hub "
        f"is reachable (`hf download {ref}`) and copy that cache here (HF_HOME), or save it to a directory and "
        "use hf:/that/directory",
    )


def _local_path(ref: str) -> Path | None:
    path = Path(ref).expanduser()
    if ref.startswith(("/", ".", "~")) or path.exists():
        return path
    return None


def _fingerprint(path: Path) -> str:
    """Content hash of a local checkpoint's config plus its weight files' names and sizes."""
    digest = hashlib.sha256()
    config = path / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def _check_checkpoint(ref: str, revision: str | None = None) -> None:
    from transformers import AutoConfig

    local = _local_path(ref)
    if local is not None and not (local / "config.json").exists():
        raise BenchError(f"model checkpoint directory {str(local)!r} does not exist or has no config.json",
                         "give the directory written by save_pretrained(), e.g. --models hf:/path/to/checkpoint")
    try:
        AutoConfig.from_pretrained(str(local or ref), revision=revision)
    except (OSError, ValueError) as exc:
        raise _not_found(ref, exc) from None


def _load_checkpoint(ref: str, request: ModelRequest) -> HFCTCModel:
    from transformers import AutoFeatureExtractor, AutoModelForCTC
    from transformers.utils import logging as hf_logging

    local = _local_path(ref)
    source = str(local or ref)
    revision = request.options.get("revision")
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the "newly initialised lm_head" warning is expected here
    hf_logging.disable_progress_bar()  # one "Loading weights" bar per cell would drown the run's log
    try:
        model, loading = AutoModelForCTC.from_pretrained(source, revision=revision, ignore_mismatched_sizes=True,
                                                         output_loading_info=True, **_config_kwargs(request))
    except (OSError, ValueError) as exc:
        raise _not_found(ref, exc) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    _fresh_head(model, loading)
    # without a preprocessor_config.json: checkpoints with a layer-normalised conv encoder (the
    # "large" recipe) were pre-trained on normalised audio, group-normalised ("base") ones were not
    normalise = getattr(model.config, "feat_extract_norm", "layer") == "layer"
    try:
        extractor = AutoFeatureExtractor.from_pretrained(source, revision=revision)
        normalise = bool(getattr(extractor, "do_normalize", True))
        rate = getattr(extractor, "sampling_rate", SAMPLING_RATE)
        if rate != SAMPLING_RATE:
            raise BenchError(f"model {ref!r} expects {rate} Hz audio; bench feeds {SAMPLING_RATE} Hz",
                             "use a 16 kHz checkpoint")
    except OSError:
        pass  # no preprocessor_config.json: the rule above applies
    return HFCTCModel(model, normalise)


def _fresh_head(model: torch.nn.Module, loading: Mapping[str, Any]) -> None:
    """A checkpoint's own CTC head was trained for another alphabet (or phone set): when its size
    happens to match this language's vocabulary, transformers keeps it; start it afresh instead,
    as it does for a head of another size."""
    fresh = set(loading.get("missing_keys", ())) | {key for key, *_ in loading.get("mismatched_keys", ())}
    if "lm_head.weight" in fresh:
        return
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, model.config.initializer_range)
        if model.lm_head.bias is not None:
            model.lm_head.bias.zero_()


def checkpoint_spec(ref: str) -> ModelSpec:
    """The spec of ``hf:REF``: a hub id or a local directory."""
    if not ref:
        raise BenchError("hf: needs a checkpoint, e.g. hf:facebook/wav2vec2-xls-r-300m or hf:/path/to/dir")
    local = _local_path(ref)
    metadata: dict[str, Any] = {"checkpoint": ref}
    if local is not None and local.is_dir():
        metadata["fingerprint"] = _fingerprint(local)
        config = local / "config.json"
        if config.exists():
            metadata["architecture"] = json.loads(config.read_text()).get("model_type", "?")
    else:
        metadata["hub_id"] = ref
    return ModelSpec(
        name=f"hf:{ref}",
        build=lambda request: _load_checkpoint(ref, request),
        version=VERSION,
        description="Hugging Face CTC checkpoint",
        metadata=metadata,
        check=lambda: _check_checkpoint(ref),
        facts=HF_FACTS,
        options=CHECKPOINT_OPTIONS,
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


def _build_tiny(model_type: str, request: ModelRequest) -> HFCTCModel:
    from transformers import AutoModelForCTC

    config = tiny_config(model_type, **_config_kwargs(request))
    return HFCTCModel(AutoModelForCTC.from_config(config), normalize_audio=True)


def _tiny_spec(name: str, model_type: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        build=lambda request: _build_tiny(model_type, request),
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
    register.scheme(ModelScheme("hf", checkpoint_spec, "any AutoModelForCTC checkpoint: hf:HUB_ID or hf:/path"))
