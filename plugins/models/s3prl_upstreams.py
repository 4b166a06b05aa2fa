"""s3prl's upstream models (the SUPERB toolkit) as bench models: ``s3prl:UPSTREAM[:PATH]``.

Any name ``s3prl.nn.S3PRLUpstream`` knows (``s3prl.nn.S3PRLUpstream.available_names()``, about
two hundred: ``wav2vec2``, ``hubert_large_ll60k``, ``wavlm_base_plus``, ``tera``, ``apc``, ...);
the ``*_custom`` / ``*_local`` / ``*_url`` upstreams take a checkpoint after a second colon,
e.g. ``s3prl:hf_wav2vec2_custom:/path/to/hugging-face-checkpoint``. Registered upstreams
download their checkpoints into s3prl's cache on first use (where the internet is reachable).

How an upstream becomes a :class:`~harness.api.SpeechCTCModel`: s3prl gives every upstream the
same interface (waveforms in, every layer's hidden states out, at a fixed downsampling rate),
but no common way to reach a convolutional feature encoder. So ``encode`` only cuts the audio
into frames of the upstream's downsampling rate (zero-padding the last one: ``frame_lengths``
is the number of frames s3prl reports), ``head`` runs the upstream on those samples and a fresh
CTC head on its last hidden state, and ``hidden_states`` returns s3prl's hidden states (those of
the last layer's size) for ``superb``. Where the upstream has a convolutional feature encoder
named ``feature_extractor`` (the wav2vec 2.0, HuBERT and WavLM upstreams, ``hf_*`` included), its
parameters are the model's ``feature_encoder_parameters`` and freeze as in ``finetune``'s recipe.
Audio reaches the upstream as recorded (``normalize_audio = False``): each upstream normalises
as it was trained to.

s3prl is imported only when a model is checked or built; without it (``pip install -e
'.[s3prl]'``) the scheme is still listed and a run that names it stops before any cell.
"""

from __future__ import annotations

import logging
import random
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.api import DownloadItem, ModelFacts, ModelRequest, ModelScheme, ModelSpec, SpeechCTCModel
from harness.errors import BenchError, did_you_mean
from harness.hookspecs import hookimpl

from .kit import (checkpoint_fingerprint, hf_ctc_head, init_ctc_head, local_path, quiet_transformers_load,
                  toolkit_missing)

VERSION = "1"
EXTRA = "s3prl"
INSTALL = "pip install 'torch===2.13.0' -e '.[s3prl]'"
WORKS = "s3prl 0.4.18 with torchaudio 2.11.1 and torch 2.13.0 from PyPI, whose CUDA build also runs on the CPU"
OPTIONS = ("final_dropout",)
#: upstream name endings that need a checkpoint argument
NEEDS_PATH = ("_custom", "_local", "_url", "_gdriveid")


def _torchaudio_compat() -> None:
    """s3prl 0.4.18 calls ``torchaudio.set_audio_backend`` and imports ``torchaudio.sox_effects``,
    both removed in torchaudio 2.9 (s3prl issue #575), on paths that read audio files or apply
    sox effects, which bench never takes (it hands upstreams tensors). Where they are missing,
    stand-ins that raise when actually used let s3prl import."""
    try:
        import torchaudio
    except Exception:
        return  # s3prl's own import then names the problem
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda backend=None: None
    if "torchaudio.sox_effects" not in sys.modules:
        try:
            import torchaudio.sox_effects  # noqa: F401
        except Exception:
            stub = types.ModuleType("torchaudio.sox_effects")

            def _removed(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("torchaudio.sox_effects was removed in torchaudio 2.9; this s3prl upstream "
                                   "needs torchaudio <= 2.8 (see bench's docs/toolkit-models.md)")

            stub.apply_effects_tensor = stub.apply_effects_file = _removed
            sys.modules["torchaudio.sox_effects"] = stub
            torchaudio.sox_effects = stub


def _s3prl():
    """The s3prl module, or the one clear error (absent, or installed but not importable)."""
    # s3prl warns at import about an optional upstream (espnet_hubert) whose package is absent
    logging.getLogger("s3prl.upstream.espnet_hubert.expert").setLevel(logging.ERROR)
    try:
        _torchaudio_compat()
        import s3prl
        from s3prl.nn import S3PRLUpstream  # noqa: F401  (imports every upstream's hubconf)
    except Exception as exc:
        raise toolkit_missing("s3prl", EXTRA, INSTALL, exc, WORKS) from None
    return s3prl


def upstream_names() -> list[str]:
    _s3prl()
    from s3prl.nn import S3PRLUpstream

    return sorted(S3PRLUpstream.available_names())


def parse(argument: str) -> tuple[str, str | None]:
    """``UPSTREAM`` or ``UPSTREAM:PATH`` -> (upstream, path or None)."""
    name, sep, path = argument.partition(":")
    return name, (path if sep else None)


def check_upstream(name: str, path: str | None) -> None:
    """Before any cell: s3prl imports, knows the upstream, and its checkpoint argument is there."""
    names = upstream_names()
    if name not in names:
        raise BenchError(f"s3prl has no upstream {name!r}.{did_you_mean(name, names)}",
                         "list them with python -c \"from s3prl.nn import S3PRLUpstream; "
                         "print(S3PRLUpstream.available_names())\"")
    if name.endswith(NEEDS_PATH) and not path:
        raise BenchError(f"s3prl upstream {name} needs a checkpoint: s3prl:{name}:/path/to/checkpoint",
                         "the part after the second colon is passed as S3PRLUpstream(path_or_url=...)")
    if path and not name.endswith(NEEDS_PATH):
        raise BenchError(f"s3prl upstream {name} has a registered checkpoint and takes no path (got {path!r})",
                         f"use s3prl:{name}, or an upstream ending in {', '.join(NEEDS_PATH)} for your own checkpoint")
    if path and "://" not in path:
        local = local_path(path)
        if (name.endswith("_local") or local is not None) and not (local or Path(path)).exists():
            raise BenchError(f"s3prl:{name}: checkpoint {path!r} does not exist",
                             "give the file or directory the upstream loads (for hf_*_custom: a directory written "
                             "by save_pretrained())")


def _feature_encoder(upstream: torch.nn.Module) -> torch.nn.Module | None:
    """The upstream's convolutional feature encoder, when it has one named feature_extractor."""
    found = [(name.count("."), name, module) for name, module in upstream.named_modules()
             if name.split(".")[-1] == "feature_extractor" and any(True for _ in module.parameters())]
    return min(found, key=lambda item: item[:2])[2] if found else None


class S3PRLCTCModel(SpeechCTCModel):
    """An ``s3prl.nn.S3PRLUpstream`` with a fresh CTC head on its last hidden state."""

    normalize_audio = False  # each upstream normalises its input as it was trained to

    def __init__(self, upstream: torch.nn.Module, vocab_size: int, seed: int, final_dropout: float = 0.0,
                 lm_head: torch.nn.Linear | None = None) -> None:
        super().__init__()
        self.upstream = upstream
        self.stride = int(upstream.downsample_rates[-1])
        self.dim = int(upstream.hidden_sizes[-1])
        #: the layers that make up hidden_states: those at the last layer's size and rate
        self.layers = [i for i, (size, rate) in enumerate(zip(upstream.hidden_sizes, upstream.downsample_rates))
                       if size == self.dim and rate == self.stride]
        self.dropout = torch.nn.Dropout(float(final_dropout))
        self.lm_head = lm_head if lm_head is not None else init_ctc_head(torch.nn.Linear(self.dim, vocab_size), seed)
        self._encoder = _feature_encoder(upstream.upstream)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` -> ``(B, frames, stride)``: the audio cut into frames of the upstream's
        downsampling rate, the last one zero-padded."""
        batch, samples = audio.shape
        frames = -(-samples // self.stride)
        return F.pad(audio, (0, frames * self.stride - samples)).reshape(batch, frames, self.stride)

    def _states(self, features: torch.Tensor, frame_mask: torch.Tensor) -> list[torch.Tensor]:
        batch, frames, _ = features.shape
        lengths = frame_mask.sum(dim=1).long() * self.stride
        states, _ = self.upstream(features.reshape(batch, frames * self.stride), lengths)
        out = []
        for i in self.layers:
            state = states[i][:, :frames]
            if state.shape[1] < frames:
                state = F.pad(state, (0, 0, 0, frames - state.shape[1]))
            out.append(state)
        return out

    def head(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.dropout(self._states(features, frame_mask)[-1]))

    def hidden_states(self, features: torch.Tensor, frame_mask: torch.Tensor) -> list[torch.Tensor]:
        return self._states(features, frame_mask)

    def frame_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(sample_lengths.long() + self.stride - 1, self.stride, rounding_mode="floor")

    def feature_encoder_parameters(self) -> Sequence[torch.nn.Parameter]:
        return list(self._encoder.parameters()) if self._encoder is not None else []


def build_upstream(name: str, path: str | None, request: ModelRequest) -> S3PRLCTCModel:
    _s3prl()
    from s3prl.nn import S3PRLUpstream

    # a Hugging Face checkpoint gets the head hf: gives it (the same weights, the same cell)
    local = local_path(path) if path and "://" not in path else None
    head = hf_ctc_head(str(local), request) if local is not None and (local / "config.json").is_file() else None
    state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):  # S3PRLUpstream seeds torch and random with 0 while probing
            upstream = quiet_transformers_load(lambda: S3PRLUpstream(name, path_or_url=path))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"s3prl could not build upstream {name}{f' from {path}' if path else ''}: {first}",
                         "registered upstreams download their checkpoint on first use: run once where the "
                         "internet is reachable (s3prl's cache), or use a *_custom / *_local upstream with a local "
                         "checkpoint") from None
    finally:
        random.setstate(state)
    # s3prl needs the same number of hidden states from every call; transformers 5 records a layer's
    # output only when the layer runs, so layer drop while fine-tuning would break that
    # and the recipe's time masking (train.mask_time_prob) replaces the checkpoint's own, as for hf:
    # (a Hugging Face model masks by its config's mask_time_prob, 0.05 by default, while training)
    for module in upstream.modules():
        config = getattr(module, "config", None)
        if getattr(config, "layerdrop", 0.0):
            config.layerdrop = 0.0
        if config is not None and hasattr(config, "mask_time_prob"):
            config.mask_time_prob = request.mask_time_prob
    if head is not None and head.in_features != upstream.hidden_sizes[-1]:
        head = None
    return S3PRLCTCModel(upstream, request.vocab_size, request.seed, request.options.get("final_dropout", 0.0), head)


def s3prl_spec(argument: str) -> ModelSpec:
    """The spec of ``s3prl:UPSTREAM`` or ``s3prl:UPSTREAM:PATH``."""
    name, path = parse(argument)
    if not name:
        raise BenchError("s3prl: needs an upstream, e.g. s3prl:wavlm_base_plus or "
                         "s3prl:hf_wav2vec2_custom:/path/to/checkpoint")
    metadata: dict[str, Any] = {"toolkit": "s3prl", "upstream": name}
    if path:
        metadata["checkpoint"] = path
        local = local_path(path)
        if local is not None and local.is_dir():
            metadata["fingerprint"] = checkpoint_fingerprint(local)
        elif local is not None and local.is_file():
            metadata["fingerprint"] = f"{local.name}:{local.stat().st_size}"
    return ModelSpec(
        name=f"s3prl:{argument}",
        build=lambda request: build_upstream(name, path, request),
        version=VERSION,
        description=f"s3prl upstream {name}" + (f" from {path}" if path else ""),
        metadata=metadata,
        check=lambda: check_upstream(name, path),
        facts=ModelFacts(hidden_states=True),
        options=OPTIONS,
        downloads=None if path else lambda options: upstream_downloads(name),
    )


def upstream_downloads(name: str) -> list[DownloadItem]:
    """``bench download`` for a registered upstream: s3prl has no download-only call, so the
    upstream is built once, which fills s3prl's cache (where later builds find it)."""

    def fetch() -> None:
        _s3prl()
        from s3prl.nn import S3PRLUpstream

        quiet_transformers_load(lambda: S3PRLUpstream(name))

    return [DownloadItem(kind="call", label=f"s3prl upstream {name}", fetch=fetch,
                         destination="s3prl's cache (torch.hub.get_dir() and the Hugging Face cache)")]


@hookimpl
def bench_register_models(register) -> None:
    register.scheme(ModelScheme(
        "s3prl", s3prl_spec,
        "s3prl's SUPERB upstreams: s3prl:UPSTREAM (e.g. wavlm_base_plus; s3prl's cache) or "
        "s3prl:UPSTREAM:PATH for *_custom/*_local (e.g. hf_wav2vec2_custom:/path); extra [s3prl]"))
