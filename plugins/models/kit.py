"""The public helper API for model plugins: what ``hf``, the catalog, the pre-trained tiny models,
``s3prl`` and ``torchaudio`` share, and what a third-party model plugin may import.

- **CTC head**: :func:`fresh_ctc_head` / :func:`init_ctc_head` initialise the output layer from
  the cell's seed with a generator of their own, so the head does not depend on how much
  randomness building the rest of the model consumed. A model made from a Hugging Face
  checkpoint takes the head ``hf:`` gives it (:func:`hf_ctc_head`, :func:`load_hf_ctc_model`),
  so the same weights loaded through ``hf:``, ``torchaudio:`` or ``s3prl:`` get the same head.
- **Hidden states**: :func:`capture_layer_outputs` runs a layer stack and returns its input and
  every layer's output (the convention of ``SpeechCTCModel.hidden_states``).
- **Audio**: :func:`normalise_audio` is the loop's per-utterance normalisation (zero mean, unit
  variance), for plugins that prepare audio themselves; :func:`frames_of` counts the frames of a
  stack of 1-d convolutions.
- **Hugging Face checkpoints**: :func:`local_path`, :func:`checkpoint_fingerprint`,
  :func:`check_hf_checkpoint` (cheap, before any cell), :func:`load_hf_checkpoint` (an
  :class:`HFCTCModel` with a fresh head), :func:`load_hf_ctc_model` (the transformers model),
  :func:`hf_ctc_head`, :func:`hf_expects_normalised_audio`,
  :func:`hf_config_kwargs` and the option tuples.
- **Toolkits**: :func:`toolkit_missing` is the one error for a package that is absent or does
  not import, naming the extra and the environment that works.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.api import MODEL_CONFIG_OPTIONS, SAMPLING_RATE, DownloadItem, ModelFacts, ModelRequest, SpeechCTCModel
from harness.errors import BenchError, MissingInput

__all__ = [
    "CHECKPOINT_OPTIONS", "CONFIG_OPTIONS", "HF_FACTS", "HFCTCModel", "SAMPLING_RATE", "capture_layer_outputs",
    "DOWNLOAD_HINT", "check_hf_checkpoint", "checkpoint_error", "checkpoint_fingerprint", "fresh_ctc_head", "frames_of",
    "hf_download_items", "hf_downloads",
    "hf_config_kwargs", "hf_ctc_head", "hf_expects_normalised_audio", "init_ctc_head", "load_hf_checkpoint",
    "load_hf_ctc_model", "local_path", "normalise_audio", "renew_ctc_head", "toolkit_missing",
]

#: what every Hugging Face model (and those built on it) can do: hidden states for ``superb``
HF_FACTS = ModelFacts(hidden_states=True)

#: fine-tuning knobs that may be set per model in bench.toml [models.NAME]
#: (the names of :data:`harness.api.MODEL_CONFIG_OPTIONS`; ``train.model_config`` sets them for every model)
CONFIG_OPTIONS = tuple(MODEL_CONFIG_OPTIONS)
#: ``[models.NAME]`` options of a checkpoint loaded from the hub or a directory
CHECKPOINT_OPTIONS = (*CONFIG_OPTIONS, "revision")

#: the standard deviation of a fresh CTC head (transformers' ``initializer_range`` default)
HEAD_STD = 0.02


# --------------------------------------------------------------------------- CTC head
def init_ctc_head(linear: torch.nn.Linear, seed: int, std: float = HEAD_STD) -> torch.nn.Linear:
    """Initialise ``linear`` (in place) as a fresh CTC output layer: weights from N(0, std²)
    drawn from a generator of its own seeded with ``seed``, bias zero: the same head whatever
    building the rest of the model drew from torch's generator (for models that do not come
    from a Hugging Face checkpoint; those take :func:`hf_ctc_head`)."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.no_grad():
        weight = torch.empty(linear.weight.shape, dtype=torch.float32)
        weight.normal_(0.0, float(std), generator=generator)
        linear.weight.copy_(weight)
        if linear.bias is not None:
            linear.bias.zero_()
    return linear


def fresh_ctc_head(in_features: int, vocab_size: int, seed: int, std: float = HEAD_STD) -> torch.nn.Linear:
    """A new ``Linear(in_features, vocab_size)`` initialised by :func:`init_ctc_head`."""
    return init_ctc_head(torch.nn.Linear(in_features, vocab_size), seed, std)


# --------------------------------------------------------------------------- hidden states
def capture_layer_outputs(layers: Sequence[torch.nn.Module], run: Callable[[], Any]) -> list[torch.Tensor]:
    """Calls ``run()`` (which must run ``layers`` in order) and returns the first layer's input,
    then each layer's output (the first element when a layer returns a tuple): the
    ``hidden_states`` convention. Layers skipped by layer drop are not recorded, so call it in
    eval mode."""
    states: list[torch.Tensor] = []

    def before(module, args, kwargs=None):
        states.append(args[0] if args else next(iter(kwargs.values())))

    def after(module, args, output):
        states.append(output[0] if isinstance(output, tuple) else output)

    hooks = [layers[0].register_forward_pre_hook(before, with_kwargs=True)]
    hooks += [layer.register_forward_hook(after) for layer in layers]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return states


# --------------------------------------------------------------------------- audio
def normalise_audio(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    """One utterance normalised to zero mean and unit variance, as the loop does for models whose
    ``normalize_audio`` is True (float32 tensor)."""
    from harness.engine import prepare_audio

    data = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    return prepare_audio(data, True)


def frames_of(sample_lengths: torch.Tensor, convolutions: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Output lengths of a stack of unpadded 1-d convolutions ``(kernel, stride)``."""
    lengths = sample_lengths.long()
    for kernel, stride in convolutions:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths.clamp(min=0)


# --------------------------------------------------------------------------- toolkits
def toolkit_missing(package: str, extra: str, install: str, cause: BaseException | str | None = None,
                    works: str = "") -> BenchError:
    """The one error for a model toolkit that is not installed or does not import."""
    if cause is None or isinstance(cause, ModuleNotFoundError) and getattr(cause, "name", "") == package:
        problem = f"the {package} models need the {package} package, which is not installed here"
    else:
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        problem = f"{package} is installed but does not import here ({type(cause).__name__}: {first})"
    hint = f"install the [{extra}] extra in a fresh environment: {install}"
    if works:
        hint += f" ({works})"
    hint += "; see docs/toolkit-models.md"
    return BenchError(problem, hint)


# --------------------------------------------------------------------------- Hugging Face
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
        return capture_layer_outputs(base.encoder.layers, lambda: base.encoder(hidden, attention_mask=frame_mask))

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


def hf_config_kwargs(request: ModelRequest) -> dict[str, Any]:
    """The transformers config overrides of a cell: the vocabulary, the blank, the recipe's
    masking and the model's ``[models.NAME]`` options (unknown ones refused)."""
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


def local_path(ref: str) -> Path | None:
    """``ref`` as a local path when it names one (starts with / . ~ or exists), else None (a hub id)."""
    path = Path(ref).expanduser()
    if ref.startswith(("/", ".", "~")) or path.exists():
        return path
    return None


def checkpoint_fingerprint(path: Path) -> str:
    """Content hash of a local checkpoint's config plus its weight files' names and sizes."""
    digest = hashlib.sha256()
    config = path / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


#: the fix for hub checkpoints missing here, said once however many models lack theirs
DOWNLOAD_HINT = ("run `bench download` with the same --models where the hub is reachable (a login node), then copy "
                 "$HF_HOME to this machine's shared disk or point HF_HOME there (docs/cluster-offline.md); or save "
                 "a checkpoint to a directory and use hf:/that/directory")


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _unreachable(cause: BaseException) -> bool:
    """Whether a loading error says the hub could not be asked (offline mode, no connection), as
    opposed to the hub answering that there is no such repository or file."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    seen: BaseException | None = cause
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(cause).lower()
    return _hub_offline() or "couldn't connect" in text or "offline mode" in text or "connection" in text


def checkpoint_error(ref: str, cause: Exception) -> BenchError:
    """The error for a Hugging Face checkpoint that cannot be loaded (local) or reached (hub)."""
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    if local_path(ref) is not None:
        return BenchError(
            f"model checkpoint {ref!r} could not be loaded: {first_line}",
            "the directory must hold a Hugging Face checkpoint (config.json and weights), "
            "as written by model.save_pretrained(DIR)",
        )
    if _unreachable(cause):  # the usual case on a cluster's compute node: one cause, one fix for all
        why = "HF_HUB_OFFLINE is set" if _hub_offline() else "the hub cannot be reached from here"
        where = f"not in the Hugging Face cache ({_cache_dir()}) and {why}"
        return MissingInput(ref, f"hub checkpoint {where}", DOWNLOAD_HINT,
                            message=f"model checkpoint {ref!r} is not available here: it is {where}")
    return BenchError(
        f"model checkpoint {ref!r} is not available here: {first_line}",
        "if it is a hub id, check the spelling (https://huggingface.co/models); for a private or gated "
        "checkpoint, log in with `hf auth login`",
    )


def hf_download_items(ref: str, revision: str | None = None) -> list[DownloadItem]:
    """What ``bench download`` fetches for ``hf:REF`` or a catalog entry: the config, the
    feature extractor's settings and one format of weights (safetensors when the repository
    has them, else ``pytorch_model.bin``), nothing for a local directory."""
    if local_path(ref) is not None:
        return []
    return [DownloadItem(
        kind="hub", label=ref, repo_id=ref, revision=revision,
        allow_patterns=("config.json", "preprocessor_config.json"),
        one_of=(("model.safetensors", "model.safetensors.index.json", "model-*.safetensors"),
                ("pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin")),
    )]


def hf_downloads(ref: str):
    """A ``ModelSpec.downloads`` callable for a hub checkpoint (the ``revision`` option honoured)."""
    return lambda options: hf_download_items(ref, options.get("revision"))


def check_hf_checkpoint(ref: str, revision: str | None = None) -> None:
    """Cheap check (its config only) that a hub id or directory holds a loadable checkpoint."""
    from transformers import AutoConfig

    local = local_path(ref)
    if local is not None and not (local / "config.json").exists():
        raise BenchError(f"model checkpoint directory {str(local)!r} does not exist or has no config.json",
                         "give the directory written by save_pretrained(), e.g. --models hf:/path/to/checkpoint")
    try:
        AutoConfig.from_pretrained(str(local or ref), revision=revision)
    except (OSError, ValueError) as exc:
        raise checkpoint_error(ref, exc) from None


def hf_expects_normalised_audio(source: str, config: Any, revision: str | None = None) -> bool:
    """Whether a checkpoint was pre-trained on normalised audio: its preprocessor_config.json
    says so (``do_normalize``); without one, layer-normalised conv encoders (the "large" recipe)
    were, group-normalised ("base") ones were not. A checkpoint for another sampling rate is refused."""
    from transformers import AutoFeatureExtractor

    normalise = getattr(config, "feat_extract_norm", "layer") == "layer"
    try:
        extractor = AutoFeatureExtractor.from_pretrained(source, revision=revision)
    except OSError:
        return normalise  # no preprocessor_config.json: the rule above applies
    rate = getattr(extractor, "sampling_rate", SAMPLING_RATE)
    if rate != SAMPLING_RATE:
        raise BenchError(f"model {source!r} expects {rate} Hz audio; bench feeds {SAMPLING_RATE} Hz",
                         "use a 16 kHz checkpoint")
    return bool(getattr(extractor, "do_normalize", True))


def quiet_transformers_load(load: Callable[[], Any]) -> Any:
    """``load()`` with transformers' expected-warning logging and per-load progress bars off."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the "newly initialised lm_head" warning is expected here
    hf_logging.disable_progress_bar()  # one "Loading weights" bar per cell would drown the run's log
    try:
        return load()
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def renew_ctc_head(model: torch.nn.Module, loading: Mapping[str, Any]) -> None:
    """hf's rule for a loaded checkpoint's head: transformers initialises a head it did not find
    (or found at another size); one it found was trained for another alphabet (or phone set), so it
    is drawn afresh the same way (torch's generator, N(0, initializer_range²), bias zero)."""
    fresh = set(loading.get("missing_keys", ())) | {key for key, *_ in loading.get("mismatched_keys", ())}
    if "lm_head.weight" in fresh:
        return
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, model.config.initializer_range)
        if model.lm_head.bias is not None:
            model.lm_head.bias.zero_()


def load_hf_ctc_model(ref: str, request: ModelRequest) -> torch.nn.Module:
    """The transformers ``*ForCTC`` model of a hub id or directory, configured for the cell
    (:func:`hf_config_kwargs`) with a fresh head of ``request.vocab_size`` classes
    (:func:`renew_ctc_head`). Called right after the loop seeds torch, as every model build is,
    it gives the same head every time: plugins that load a Hugging Face checkpoint another way
    take their head from here (or :func:`hf_ctc_head`) to match ``hf:``."""
    from transformers import AutoModelForCTC

    local = local_path(ref)
    source = str(local or ref)
    revision = request.options.get("revision")
    try:
        model, loading = quiet_transformers_load(lambda: AutoModelForCTC.from_pretrained(
            source, revision=revision, ignore_mismatched_sizes=True, output_loading_info=True,
            **hf_config_kwargs(request)))
    except (OSError, ValueError) as exc:
        raise checkpoint_error(ref, exc) from None
    renew_ctc_head(model, loading)
    return model


def hf_ctc_head(ref: str, request: ModelRequest) -> torch.nn.Linear:
    """The fresh CTC head ``hf:REF`` gets in this cell (the checkpoint is loaded to draw it)."""
    return load_hf_ctc_model(ref, request).lm_head


def load_hf_checkpoint(ref: str, request: ModelRequest) -> HFCTCModel:
    """A hub id or directory as an :class:`HFCTCModel` with a fresh CTC head (never the
    checkpoint's own, even when its size matches) and the checkpoint's audio normalisation."""
    model = load_hf_ctc_model(ref, request)
    source = str(local_path(ref) or ref)
    return HFCTCModel(model, hf_expects_normalised_audio(source, model.config, request.options.get("revision")))
