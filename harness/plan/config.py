"""bench.toml, presets and command-line overrides, resolved into frozen dataclasses.

Layers, later ones winning: the defaults below; the top-level sections of bench.toml; the
chosen preset's sections (``[presets.NAME.*]``); ``--set SECTION.KEY=VALUE``; the dedicated
flags (``--models``, ``--langs``, ...).

Sections: ``[run]`` (what to run and where results go), ``[train]`` (the fine-tuning recipe),
``[datasets.NAME]``, ``[models.NAME]`` and ``[protocols.NAME]`` (options handed to that plugin).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

from harness.api import MODEL_CONFIG_OPTIONS
from harness.errors import BenchError, did_you_mean
from harness.plan.sweep import SweepAxis, config_at, parse_axes

DEFAULT_CONFIG = "bench.toml"
#: the default configuration shipped with the package (the repository's bench.toml, commented)
PACKAGED_CONFIG = Path(__file__).with_name("bench.toml")
DEFAULT_PRESET = "tiny-study"
#: the shapes of the schedule's last stage (``train.decay``; :mod:`harness.engine.schedule` draws them)
DECAYS = ("exponential", "linear")


def default_cache_dir() -> Path:
    if "BENCH_CACHE_DIR" in os.environ:
        return Path(os.environ["BENCH_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return base / "bench"


@dataclass(frozen=True)
class TrainSettings:
    """The fine-tuning recipe: everything here decides a cell's result (and its key)."""

    #: optimiser updates
    steps: int = 400
    #: peak learning rate (Adam)
    lr: float = 2e-3
    #: tri-stage schedule: fractions of the updates spent warming up and holding; the rest decays
    warmup: float = 0.1
    hold: float = 0.4
    #: padded seconds of audio per micro-batch (batches are formed by duration, not count)
    batch_seconds: float = 16.0
    #: micro-batches per update
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    freeze_feature_encoder: bool = True
    #: SpecAugment-style time masking during fine-tuning
    mask_time_prob: float = 0.0
    #: vocabulary: characters making up at least this share of the training text (0.001 %)
    vocab_min_fraction: float = 1e-5
    #: training utterances longer than this many seconds are skipped (and counted)
    max_seconds: float = 30.0
    #: score dev (CER) every this many updates during training, stored as the cell's dev curve
    #: (``record.train.dev_curve``); 0: never (dev is decoded once, after training)
    eval_every: int = 0
    #: which parameters decode test: "last" (after the last update, the study's) or "best-dev"
    #: (those of the update with the lowest dev CER among the scored ones; needs eval_every)
    select: str = "last"
    #: learning rate of the CTC output layer when it should differ from ``lr`` (the rest of the
    #: model keeps ``lr``); 0: the same as ``lr``
    head_lr: float = 0.0
    #: shape of the schedule's last stage: "exponential" (fairseq's tri-stage: warm-up from 1 % of
    #: ``lr``, decay to 5 %) or "linear" (HuggingSound's, the study's tool: warm-up from 0, decay
    #: towards 0); see :mod:`harness.engine.schedule`
    decay: str = "exponential"
    #: the learning rate never goes below this (HuggingSound's ``min_learning_rate``); 0: no floor
    min_lr: float = 0.0
    #: transformers config fields set for every model of the run (each model takes those it
    #: declares in its options; its own ``[models.NAME]`` options win), e.g. preset paper's
    #: ``{ layerdrop = 0.0, attention_dropout = 0.1, ... }``; empty: each checkpoint's own config
    model_config: Mapping[str, float | int] = field(default_factory=dict)

    #: settings that enter a cell's key only when they differ from these values, so that adding
    #: them left every stored cell's key as it was
    KEYED_WHEN_SET: ClassVar[Mapping[str, Any]] = {"eval_every": 0, "select": "last", "head_lr": 0.0,
                                                   "decay": "exponential", "min_lr": 0.0}
    #: settings that never enter ``identity["train"]``: ``model_config`` enters the key through
    #: each model's options (``identity["model"]["options"]``), as if set in ``[models.NAME]``
    KEYED_ELSEWHERE: ClassVar[tuple[str, ...]] = ("model_config",)

    def keyed(self) -> dict[str, Any]:
        """The recipe as it enters a cell's key (:data:`KEYED_WHEN_SET` left out at their defaults)."""
        out = dataclasses.asdict(self)
        for name, neutral in self.KEYED_WHEN_SET.items():
            if out[name] == neutral:
                del out[name]
        for name in self.KEYED_ELSEWHERE:
            del out[name]
        return out

    def model_config_for(self, declared: Sequence[str]) -> dict[str, Any]:
        """The ``model_config`` entries a model declaring the options ``declared`` takes."""
        return {k: v for k, v in self.model_config.items() if k in declared}

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, "train.steps must be >= 1 (0 updates would store an untrained model's scores)"),
            (self.lr > 0, "train.lr must be > 0"),
            (0 <= self.warmup <= 1 and 0 <= self.hold <= 1 and self.warmup + self.hold <= 1,
             "train.warmup and train.hold are fractions of the updates and must add up to at most 1"),
            (self.batch_seconds > 0, "train.batch_seconds must be > 0"),
            (self.grad_accum >= 1, "train.grad_accum must be >= 1"),
            (self.max_grad_norm > 0, "train.max_grad_norm must be > 0"),
            (0 <= self.mask_time_prob < 1, "train.mask_time_prob must be in [0, 1)"),
            (0 <= self.vocab_min_fraction < 1, "train.vocab_min_fraction must be in [0, 1)"),
            (self.max_seconds > 0, "train.max_seconds must be > 0"),
            (self.eval_every >= 0, "train.eval_every must be >= 0 (0: no dev scoring during training)"),
            (self.select in ("last", "best-dev"), f"train.select must be \"last\" or \"best-dev\", got {self.select!r}"),
            (self.select == "last" or self.eval_every > 0,
             "train.select = \"best-dev\" needs dev scores during training: set train.eval_every (e.g. 25)"),
            (self.head_lr >= 0, "train.head_lr must be >= 0 (0: the same as train.lr)"),
            (self.decay in DECAYS, f"train.decay must be one of {', '.join(map(repr, DECAYS))}, got {self.decay!r}"),
            (0 <= self.min_lr <= self.lr, "train.min_lr (the schedule's floor) must be between 0 and train.lr"),
        ]
        for ok, message in checks:
            if not ok:
                raise BenchError(f"invalid setting: {message}", "fix it in bench.toml or the --set flag")
        self._check_model_config()

    def _check_model_config(self) -> None:
        if not isinstance(self.model_config, Mapping):
            raise BenchError(f"invalid setting: train.model_config must be a table, got {self.model_config!r}",
                             "e.g. train.model_config = { layerdrop = 0.0, attention_dropout = 0.1 }")
        normalised: dict[str, float | int] = {}
        for key, value in self.model_config.items():
            if key == "mask_time_prob":
                raise BenchError("invalid setting: train.model_config sets 'mask_time_prob', which is the recipe's "
                                 "own setting", "set train.mask_time_prob instead")
            if key not in MODEL_CONFIG_OPTIONS:
                raise BenchError(f"invalid setting: train.model_config has unknown key {key!r}."
                                 f"{did_you_mean(key, MODEL_CONFIG_OPTIONS)}",
                                 f"keys it takes: {', '.join(MODEL_CONFIG_OPTIONS)}")
            kind = MODEL_CONFIG_OPTIONS[key]
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and (kind is float or isinstance(value, int)))
            if not ok or value < 0 or (kind is float and key != "mask_feature_prob" and value >= 1):
                what = "an integer >= 0" if kind is int else "a number in [0, 1)"
                raise BenchError(f"invalid setting: train.model_config.{key} must be {what}, got {value!r}",
                                 "fix it in bench.toml or the --set flag")
            normalised[key] = kind(value)  # 0 and 0.0 give one key
        object.__setattr__(self, "model_config", dict(sorted(normalised.items())))


@dataclass(frozen=True)
class RuntimeSettings:
    """How to compute, not what: never part of a cell's key (recorded with it, though)."""

    #: "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    #: "auto" (bf16 on CUDA when supported, else fp16; fp32 on CPU), "fp32", "bf16", "fp16"
    precision: str = "auto"
    #: reuse frozen feature-encoder outputs across epochs: "auto", "on", "off"
    feature_cache: str = "auto"
    #: frozen feature-encoder outputs shared between cells on disk (``<cache_dir>/features``), at
    #: most this many GiB (least recently used go first); 0 turns sharing off. Exact: an entry
    #: is keyed by the encoder's weights, the audio, precision and threads
    feature_store_gb: float = 2.0
    #: padded seconds of audio per evaluation batch
    eval_batch_seconds: float = 60.0
    #: CPU threads for torch (0: torch's default)
    threads: int = 0
    #: a cell saves its training state this often (minutes of training) and resumes from it
    #: after a crash or kill; 0 turns it off
    checkpoint_minutes: float = 10.0
    #: on running out of (GPU) memory a cell retries with half the micro-batch and twice the
    #: accumulation (the same effective batch) this many times before it is marked failed
    oom_retries: int = 2
    #: Adam as one fused kernel per step: "auto" (fused on CUDA; torch's default elsewhere, so CPU
    #: results stay what they were), "on", "off"
    fused_optimizer: str = "auto"
    #: recompute the transformer's activations in the backward pass instead of keeping them: less
    #: memory (long clips, large batches) for about a third more compute; the same numbers
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.precision not in {"auto", "fp32", "bf16", "fp16"}:
            raise BenchError(f"invalid setting: run.precision={self.precision!r}",
                             "use one of auto, fp32, bf16, fp16")
        if self.feature_store_gb < 0:
            raise BenchError(f"invalid setting: run.feature_store_gb={self.feature_store_gb!r}",
                             "use a size in GiB >= 0 (0 turns the shared feature store off)")
        if self.checkpoint_minutes < 0 or self.oom_retries < 0:
            raise BenchError("invalid setting: run.checkpoint_minutes and run.oom_retries must be >= 0",
                             "fix it in bench.toml or the --set flag")
        if self.feature_cache not in {"auto", "on", "off"}:
            raise BenchError(f"invalid setting: run.feature_cache={self.feature_cache!r}",
                             "use one of auto, on, off")
        if self.fused_optimizer not in {"auto", "on", "off"}:
            raise BenchError(f"invalid setting: run.fused_optimizer={self.fused_optimizer!r}",
                             "use one of auto, on, off")


@dataclass(frozen=True)
class RunConfig:
    models: tuple[str, ...] = ("tiny-wav2vec2", "tiny-hubert")
    datasets: tuple[str, ...] = ("synthetic",)
    langs: tuple[str, ...] = ("de", "es", "ru")
    seeds: tuple[int, ...] = (0,)
    metrics: tuple[str, ...] = ("cer", "wer")
    #: how each cell trains and evaluates its model (protocol plugins): a matrix dimension
    protocols: tuple[str, ...] = ("finetune",)
    store: Path = Path(".bench/results.sqlite")
    cache_dir: Path = field(default_factory=default_cache_dir)
    report_dir: Path = Path("reports")
    preset: str = DEFAULT_PRESET
    train: TrainSettings = field(default_factory=TrainSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    dataset_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    protocol_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: which executor plugin computes the cells, and the options of each (``[executors.NAME]``)
    executor: str = "local"
    executor_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: how the stored CTC outputs are decoded (decoder plugins): a report dimension, never part of
    #: a cell's key (``bench report --decoders greedy,beam-lm`` decodes stored outputs again)
    decoders: tuple[str, ...] = ("greedy",)
    #: each decoder's options (``[decoders.NAME]``, over its defaults)
    decoder_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: experiment trackers that receive the run's events (tracker plugins: tensorboard, mlflow,
    #: wandb, ...); never part of a cell's key
    trackers: tuple[str, ...] = ()
    #: each tracker's options (``[trackers.NAME]``, over its defaults)
    tracker_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: without a terminal (or with --no-progress), a line saying what is under way after this
    #: many seconds without output (pre-training, caching, a long cell); 0: never
    heartbeat_seconds: float = 60.0
    #: where the configuration came from (for messages and the record)
    source: str = "(defaults)"
    #: swept settings (``run.sweep``, ``--sweep``): each combination of their values is a point
    #: of the matrix (:mod:`harness.plan.sweep`); empty: one point, the configuration itself
    sweep: tuple[SweepAxis, ...] = ()


def runtime_fingerprint(config: RunConfig) -> str:
    """A short hash of how cells are computed (device, precision, ..., executor and its options).

    Stored with each failure: a cell that failed under one runtime is computed again under
    another (a failure caused by ``run.device = "cuda"`` does not stick once it is removed)."""
    import hashlib
    import json

    payload = {"runtime": dataclasses.asdict(config.runtime), "executor": config.executor,
               "executor_options": dict(config.executor_options.get(config.executor, {}))}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_sections(config: RunConfig, registry: Any, selected_models: Sequence[str] = ()) -> None:
    """``[datasets.NAME]``, ``[models.NAME]``, ``[executors.NAME]`` and ``[trackers.NAME]`` must name something that
    exists: a registered plugin item or one in the run's selection (sections for installed but
    unselected plugins are fine). A misspelled section would otherwise be ignored silently."""
    checks = (
        ("datasets", config.dataset_options, set(registry.datasets) | set(config.datasets)),
        ("models", config.model_options,
         set(registry.models) | set(registry.groups) | set(config.models) | set(selected_models)),
        ("executors", config.executor_options, set(registry.executors) | {config.executor}),
        ("trackers", config.tracker_options, set(getattr(registry, "trackers", {})) | set(config.trackers)),
    )
    for section, table, known in checks:
        for name, options in table.items():
            if name in known:
                continue
            if section == "models" and ("from" in options or name.partition(":")[0] in registry.schemes):
                continue
            kind = section[:-1]
            raise BenchError(
                f"{config.source}: [{section}.{name}] names no registered {kind}.{did_you_mean(name, known)}",
                f"known {section}: {', '.join(sorted(n for n in known if n != 'all'))}; fix the section name "
                f"(or install the plugin that provides {name!r})")


_RUN_KEYS = {"models", "datasets", "langs", "seeds", "metrics", "protocols", "store", "cache_dir", "report_dir",
             "executor", "decoders", "sweep", "trackers", "heartbeat_seconds"}
_RUNTIME_KEYS = {f.name for f in dataclasses.fields(RuntimeSettings)}
_TOP_SECTIONS = {"run", "train", "datasets", "models", "executors", "protocols", "decoders", "trackers", "presets"}


def train_setting_types() -> dict[str, Any]:
    """The recipe's settings and their types (``[train]`` keys)."""
    hints = get_type_hints(TrainSettings)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainSettings)}


def _coerce(where: str, value: Any, annotation: Any) -> Any:
    """Check a TOML value against a dataclass field type; ints are accepted for floats."""
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif getattr(annotation, "__origin__", None) is Mapping:  # a table (train.model_config)
        if isinstance(value, Mapping):
            return dict(value)
        raise BenchError(f"{where} must be a table such as {{ layerdrop = 0.0 }}, got {value!r}",
                         "fix it in bench.toml or the --set flag")
    else:  # pragma: no cover - only the types above are used
        return value
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[annotation]
    raise BenchError(f"{where} must be {kind}, got {value!r}", "fix it in bench.toml or the --set flag")


def _names(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise BenchError(f"{where} must be a list of names or a comma-separated string, got {value!r}")
    items = [v for v in items if v]
    if not items:
        raise BenchError(f"{where} is empty", "name at least one, or 'all'")
    return tuple(dict.fromkeys(items))


def _tracker_names(value: Any) -> tuple[str, ...]:
    """``run.trackers``: a list of names (or a comma-separated string); empty: no tracker."""
    if isinstance(value, (list, tuple)) and not value:
        return ()
    if isinstance(value, str) and not value.strip():
        return ()
    return _names("run.trackers", value)


def _heartbeat(value: Any) -> float:
    seconds = _coerce("run.heartbeat_seconds", value, float)
    if seconds < 0:
        raise BenchError(f"run.heartbeat_seconds must be >= 0, got {value!r}",
                         "seconds between heartbeat lines without a terminal (0: none), e.g. 60")
    return seconds


def _seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if value >= 1:
            return tuple(range(value))
    elif isinstance(value, str) and value.strip().isdigit():
        return _seeds(int(value))
    elif isinstance(value, Sequence) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        negative = [v for v in value if v < 0]
        if negative:
            raise BenchError(f"run.seeds lists negative seed(s) {', '.join(map(str, negative))}",
                             "seeds are integers >= 0, e.g. run.seeds = [0, 1, 2] (or a count: run.seeds = 3)")
        return tuple(dict.fromkeys(value))
    raise BenchError(f"run.seeds must be a positive count (seeds 0..N-1) or a list of seeds, got {value!r}",
                     "e.g. --seeds 3, or run.seeds = [0, 1, 2] in bench.toml")


#: settings whose value is a table: a later layer's empty table clears them (``--set
#: train.model_config={}`` goes back to each checkpoint's own config), a non-empty one is merged in
_TABLE_SETTINGS = {("train", "model_config"), ("run", "sweep")}


def _merge(base: dict, extra: Mapping, path: tuple[str, ...] = ()) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        where = (*path, key)
        if isinstance(value, Mapping) and not value and where in _TABLE_SETTINGS:
            out[key] = {}
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, where)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_keys(where: str, table: Mapping, allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise BenchError(
                f"{where}: unknown setting {key!r}.{did_you_mean(key, allowed)}",
                f"valid settings there: {', '.join(sorted(allowed))}",
            )


def parse_set(assignments: Sequence[str]) -> dict:
    """``["train.steps=50", "datasets.synthetic.train_minutes=2"]`` -> nested dict (TOML values)."""
    out: dict = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--set {item!r} is not of the form SECTION.KEY=VALUE", "e.g. --set train.steps=50")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # bare words are strings
        parts = key.strip().split(".")
        if not all(parts):
            raise BenchError(f"--set {item!r}: {key.strip()!r} is not a setting name", "e.g. --set train.steps=50")
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise BenchError(f"--set {item!r}: {'.'.join(parts[:i + 1])} was given a value, not a section",
                                 "set keys of a section, e.g. --set train.steps=50")
        if len(parts) == 1 and parts[0] in _TOP_SECTIONS:
            raise BenchError(f"--set {item!r}: [{parts[0]}] is a section, not a setting",
                             f"set one of its keys, e.g. --set {'train.steps=50' if parts[0] == 'train' else parts[0] + '.KEY=VALUE'}")
        if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
            raise BenchError(f"--set {item!r}: {key.strip()} is a section, not a setting",
                             "set keys of a section, e.g. --set train.steps=50")
        node[parts[-1]] = value
    return out


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise BenchError(f"config file {str(path)!r} does not exist",
                         "pass an existing file with --config, or run from the directory holding bench.toml") from None
    except IsADirectoryError:
        raise BenchError(f"config file {str(path)!r} is a directory",
                         f"pass the file itself, e.g. --config {Path(path) / DEFAULT_CONFIG}") from None
    except OSError as exc:
        raise BenchError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}",
                         "pass a readable file with --config") from None
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path} is not a text (TOML) file: {exc}", "pass a bench.toml with --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path} is not valid TOML: {exc}", "fix the syntax at the position given") from None


def load_config(
    path: str | Path | None = None,
    preset: str | None = None,
    overrides: Mapping | None = None,
) -> RunConfig:
    """Resolve the configuration. ``path=None`` uses ./bench.toml when present (or $BENCH_CONFIG)."""
    data: dict = {}
    base_dir = Path.cwd()
    source = "(defaults)"
    if path is None:
        path = os.environ.get("BENCH_CONFIG") or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else None)
    if path is not None:
        path = Path(path)
        data = read_toml(path)
        base_dir = path.absolute().parent  # not resolve(): a linked bench.toml keeps its own folder
        source = str(path)
    else:  # outside a checkout: the default study the docs describe, shipped with bench (paths from here)
        data = read_toml(PACKAGED_CONFIG)
        source = "bench's default configuration (bench init writes it here as bench.toml)"
    _check_keys(source, data, _TOP_SECTIONS)
    presets = data.pop("presets", {})
    requested = preset or data.get("run", {}).get("preset")
    preset_name = requested or DEFAULT_PRESET
    if requested and requested not in presets:
        known = sorted(presets)
        raise BenchError(
            f"unknown preset {requested!r}.{did_you_mean(requested, known)} "
            f"Presets in {source}: {', '.join(known) or '(none)'}.",
            "define it as [presets.NAME] in bench.toml (or pass --config with the file that has it)",
        )
    if not isinstance(presets, Mapping) or not all(isinstance(v, Mapping) for v in presets.values()):
        raise BenchError(f"{source}: [presets] must hold tables such as [presets.NAME.run]",
                         "see docs/configuration.md (Presets)")
    chosen = presets.get(preset_name, {})
    _check_tables(f"{source} [presets.{preset_name}]", chosen)
    _check_keys(f"{source} [presets.{preset_name}]", chosen, _TOP_SECTIONS - {"presets"})
    merged = _merge(data, chosen)
    merged = _merge(merged, overrides or {})
    _check_keys("--set", merged, _TOP_SECTIONS - {"presets"})
    return _build(merged, preset_name, base_dir, source)


def _check_tables(where: str, data: Mapping) -> None:
    """Every top-level section must be a table (``train = 5`` or ``--set train=5`` is not)."""
    for name in _TOP_SECTIONS - {"presets"}:
        if name in data and not isinstance(data[name], Mapping):
            raise BenchError(f"{where}: [{name}] must be a table of settings, got {data[name]!r}",
                             f"set its keys, e.g. [{name}] in bench.toml or --set "
                             f"{'train.steps=50' if name == 'train' else name + '.KEY=VALUE'}")


def _build(data: dict, preset: str, base_dir: Path, source: str) -> RunConfig:
    _check_tables(source, data)
    run = dict(data.get("run", {}))
    run.pop("preset", None)
    _check_keys("[run]", run, _RUN_KEYS | _RUNTIME_KEYS)
    train = data.get("train", {})
    train_hints = train_setting_types()
    _check_keys("[train]", train, set(train_hints))
    train_settings = TrainSettings(**{k: _coerce(f"train.{k}", v, train_hints[k]) for k, v in train.items()})
    runtime_hints = get_type_hints(RuntimeSettings)
    runtime = RuntimeSettings(
        **{k: _coerce(f"run.{k}", run.pop(k), runtime_hints[k]) for k in list(run) if k in _RUNTIME_KEYS}
    )

    def path_of(key: str, default: Path) -> Path:
        if key not in run:
            return default if default.is_absolute() else base_dir / default
        value = Path(_coerce(f"run.{key}", run[key], str)).expanduser()
        return value if value.is_absolute() else base_dir / value

    defaults = RunConfig()
    sections = {}
    for name in ("datasets", "models", "executors", "protocols", "decoders", "trackers"):
        table = data.get(name, {})
        if not isinstance(table, Mapping) or not all(isinstance(v, Mapping) for v in table.values()):
            raise BenchError(f"[{name}] must hold tables such as [{name}.NAME]", f"see docs/configuration.md (Sections: [{name}.NAME])")
        sections[name] = {k: dict(v) for k, v in table.items()}
    config = RunConfig(
        models=_names("run.models", run["models"]) if "models" in run else defaults.models,
        datasets=_names("run.datasets", run["datasets"]) if "datasets" in run else defaults.datasets,
        langs=_names("run.langs", run["langs"]) if "langs" in run else defaults.langs,
        seeds=_seeds(run["seeds"]) if "seeds" in run else defaults.seeds,
        metrics=_names("run.metrics", run["metrics"]) if "metrics" in run else defaults.metrics,
        protocols=_names("run.protocols", run["protocols"]) if "protocols" in run else defaults.protocols,
        store=path_of("store", defaults.store),
        cache_dir=path_of("cache_dir", defaults.cache_dir),
        report_dir=path_of("report_dir", defaults.report_dir),
        preset=preset,
        train=train_settings,
        runtime=runtime,
        dataset_options=sections["datasets"],
        model_options=sections["models"],
        protocol_options=sections["protocols"],
        executor=_coerce("run.executor", run["executor"], str) if "executor" in run else defaults.executor,
        executor_options=sections["executors"],
        decoders=_names("run.decoders", run["decoders"]) if "decoders" in run else defaults.decoders,
        decoder_options=sections["decoders"],
        trackers=_tracker_names(run["trackers"]) if "trackers" in run else defaults.trackers,
        tracker_options=sections["trackers"],
        heartbeat_seconds=_heartbeat(run["heartbeat_seconds"]) if "heartbeat_seconds" in run else defaults.heartbeat_seconds,
        source=source,
        sweep=parse_axes(run.get("sweep")),
    )
    for axis in config.sweep:  # every value checked like the option itself, before any planning
        for value in axis.values:
            config_at(config, ((axis.key, value),))
    return config
