"""What a matrix costs before it runs: FLOPs of each cell from its architecture, and GPU-hours.

Nothing is built or run here (``bench run --dry-run`` calls it and must stay fast): the FLOPs
of one fine-tuning update are counted from the architecture's dimensions — the matrix
multiplications and convolutions, which are where a wav2vec 2.0-style model spends its time —
at the recipe's padded batch, and turned into time on a named GPU at an assumed model-FLOPs
utilisation (MFU). Seconds per update measured on a GPU by ``benchmarks/real_scale.py
--device cuda`` (written to ``<cache_dir>/cost/measured.json``) replace the assumption when
present.

What is counted, per cell of the ``finetune`` protocol:

- training: ``steps`` updates of ``batch_seconds`` padded seconds each; an update is a forward
  and a backward pass (3 x the forward FLOPs) of everything after the frozen feature encoder
  (feature projection, positional convolution, the transformer layers with attention over
  utterances of ``utterance_seconds``, the CTC head);
- the frozen feature encoder once per training utterance (bench caches its outputs): a forward
  pass over the training hours;
- evaluation: one forward pass over ``eval_hours`` of dev and test audio.

Layer drop (which skips layers at random during training) and the padding bench leaves (about
5 %) are ignored: both move the figure by less than the uncertainty of the MFU.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLING_RATE = 16_000


@dataclass(frozen=True)
class Architecture:
    """The dimensions of a wav2vec 2.0-style model that decide its FLOPs."""

    name: str
    hidden: int
    layers: int
    ff: int
    conv_dim: tuple[int, ...]
    conv_kernel: tuple[int, ...]
    conv_stride: tuple[int, ...]
    pos_conv_kernel: int
    pos_conv_groups: int
    #: approximate parameter count (for messages)
    parameters: float

    @property
    def frames_per_second(self) -> float:
        return SAMPLING_RATE / math.prod(self.conv_stride)

    def encoder_flops_per_second(self) -> float:
        """Forward FLOPs of the convolutional feature encoder per second of audio."""
        rate, channels, total = float(SAMPLING_RATE), 1, 0.0
        for dim, kernel, stride in zip(self.conv_dim, self.conv_kernel, self.conv_stride):
            rate /= stride
            total += 2 * channels * dim * kernel * rate
            channels = dim
        return total

    def forward_flops_per_frame(self, utterance_frames: float, vocab: int = 64) -> float:
        """Forward FLOPs after the feature encoder, per (padded) frame, for utterances of
        ``utterance_frames`` frames (attention grows with the utterance's length)."""
        h = self.hidden
        projection = 2 * self.conv_dim[-1] * h
        positional = 2 * h * (h // self.pos_conv_groups) * self.pos_conv_kernel
        per_layer = 2 * 4 * h * h + 2 * 2 * h * self.ff + 2 * 2 * utterance_frames * h
        return projection + positional + self.layers * per_layer + 2 * h * vocab


#: the wav2vec 2.0 large architecture: every model of the study's catalog (wav2vec2, XLSR, XLS-R
#: 300m, VoxPopuli, HuBERT, WavLM and UniSpeech(-SAT) large share these dimensions)
LARGE = Architecture("large", 1024, 24, 4096, (512,) * 7, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2),
                     128, 16, 315e6)
#: the base architecture (wav2vec2-base, hubert-base, ...)
BASE = Architecture("base", 768, 12, 3072, (512,) * 7, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2),
                    128, 16, 94e6)
#: the embedded tiny models (plugins/models/hf.py: 2 conv layers, 4 transformer layers, width 192)
TINY = Architecture("tiny", 192, 4, 768, (512, 512), (40, 20), (16, 20), 32, 8, 7.3e6)
ARCHITECTURES: Mapping[str, Architecture] = {a.name: a for a in (LARGE, BASE, TINY)}


@dataclass(frozen=True)
class GPU:
    name: str
    #: dense bf16 tensor-core peak, FLOP/s (vendor data sheets, without sparsity)
    peak_bf16: float


GPUS: tuple[GPU, ...] = (GPU("H100", 989e12), GPU("A100", 312e12))

#: assumed model-FLOPs utilisation of a fine-tuning update on a GPU (bf16 autocast): an
#: assumption, not a measurement; measured seconds per update replace it (see module doc)
DEFAULT_MFU = 0.35
#: dev + test audio decoded per cell (Common Voice's dev and test sets range from about 1 h to
#: over 25 h per language; 10 h is a middle value)
DEFAULT_EVAL_HOURS = 10.0
#: typical clip length (Common Voice clips are about 4-6 s): the attention span
DEFAULT_UTTERANCE_SECONDS = 5.0


def architecture_of(metadata: Mapping[str, Any]) -> Architecture | None:
    """The size class of a model from its metadata's ``parameters`` ("~317M", "7.3M (...)"):
    large above 200 M, base from 50 M, tiny below 20 M; None when it says nothing usable."""
    match = re.search(r"([\d.]+)\s*([MB])", str(metadata.get("parameters", "")))
    if not match:
        return None
    millions = float(match.group(1)) * (1000 if match.group(2) == "B" else 1)
    if millions >= 200:
        return LARGE
    if millions >= 50:
        return BASE
    if millions < 20:
        return TINY
    return None


@dataclass(frozen=True)
class CellCost:
    architecture: str
    update_flops: float
    train_flops: float
    encode_flops: float
    eval_flops: float
    #: seconds on one GPU from measured figures, when there are any for this architecture and batch
    measured_seconds: float | None = None
    measured_device: str = ""

    @property
    def flops(self) -> float:
        return self.train_flops + self.encode_flops + self.eval_flops

    def gpu_seconds(self, gpu: GPU, mfu: float = DEFAULT_MFU) -> float:
        return self.flops / (gpu.peak_bf16 * mfu)


def cell_cost(arch: Architecture, steps: int, batch_seconds: float, train_hours: float,
              eval_hours: float = DEFAULT_EVAL_HOURS, utterance_seconds: float = DEFAULT_UTTERANCE_SECONDS,
              protocol: str = "finetune") -> CellCost:
    """FLOPs of one cell. ``superb`` trains only a small downstream on hidden states computed
    once per utterance: counted as one forward pass over training and evaluation audio."""
    fps = arch.frames_per_second
    forward_per_second = arch.encoder_flops_per_second() + fps * arch.forward_flops_per_frame(utterance_seconds * fps)
    update = 3 * batch_seconds * fps * arch.forward_flops_per_frame(utterance_seconds * fps)
    if protocol == "superb":
        return CellCost(arch.name, 0.0, 0.0, train_hours * 3600 * forward_per_second,
                        eval_hours * 3600 * forward_per_second)
    return CellCost(arch.name, update, steps * update, train_hours * 3600 * arch.encoder_flops_per_second(),
                    eval_hours * 3600 * forward_per_second)


def train_hours_of(dataset: str, options: Mapping[str, Any]) -> float:
    """Training hours a cell reads, from its dataset's options (5 h when they do not say)."""
    if "train_hours" in options:
        return float(options["train_hours"])
    if "train_minutes" in options:
        return float(options["train_minutes"]) / 60
    return 5.0 if dataset == "common_voice" else 0.0


def eval_hours_of(options: Mapping[str, Any], default: float = DEFAULT_EVAL_HOURS) -> float:
    """Dev + test hours a cell decodes, from its dataset's options when they say (Common Voice's
    ``dev_hours``/``test_hours`` caps, 0 meaning none; synthetic's minutes), else ``default``."""
    if "dev_minutes" in options or "test_minutes" in options:
        return (float(options.get("dev_minutes", 0)) + float(options.get("test_minutes", 0))) / 60
    caps = [float(options.get(k, 0)) for k in ("dev_hours", "test_hours")]
    if all(c > 0 for c in caps):
        return sum(caps)
    return default


# --------------------------------------------------------------------------- measured figures
def measured_path(cache_dir: Path) -> Path:
    return Path(cache_dir) / "cost" / "measured.json"


def load_measured(cache_dir: Path) -> list[dict[str, Any]]:
    """Figures measured on GPUs by benchmarks/real_scale.py (empty when there are none or the
    file is unreadable: an estimate must never stop a dry run)."""
    path = measured_path(cache_dir)
    try:
        rows = json.loads(path.read_text())["figures"]
        return [r for r in rows if isinstance(r, dict)]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def save_measured(cache_dir: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Merge ``rows`` (architecture, batch_seconds, seconds_per_update, device, ...) into the
    measured figures; a row replaces an older one of the same architecture, batch and device."""
    path = measured_path(cache_dir)
    existing = {(r.get("architecture"), r.get("batch_seconds"), r.get("device")): r for r in load_measured(cache_dir)}
    for row in rows:
        existing[(row.get("architecture"), row.get("batch_seconds"), row.get("device"))] = dict(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"figures": list(existing.values())}, indent=2) + "\n")
    tmp.replace(path)
    return path


def _measured_for(rows: list[dict[str, Any]], arch: str, batch_seconds: float) -> dict[str, Any] | None:
    found = [r for r in rows if r.get("architecture") == arch and float(r.get("batch_seconds", -1)) == batch_seconds
             and float(r.get("seconds_per_update", 0)) > 0]
    return min(found, key=lambda r: float(r["seconds_per_update"])) if found else None


def with_measured(cost: CellCost, steps: int, batch_seconds: float, train_hours: float, eval_hours: float,
                  rows: list[dict[str, Any]]) -> CellCost:
    """The cell's time on one GPU from measured figures: updates at the measured steady-state
    seconds per update, the cache pass and evaluation at the measured evaluation throughput
    (or, without one, at the update's measured FLOP rate)."""
    row = _measured_for(rows, cost.architecture, batch_seconds)
    if row is None:
        return cost
    per_update = float(row["seconds_per_update"])
    flop_rate = cost.update_flops / per_update if cost.update_flops else 0.0
    eval_rate = float(row.get("eval_audio_per_second") or 0)
    evaluation = eval_hours * 3600 / eval_rate if eval_rate else (cost.eval_flops / flop_rate if flop_rate else 0.0)
    encode = cost.encode_flops / flop_rate if flop_rate else 0.0
    seconds = steps * per_update + encode + evaluation
    import dataclasses

    return dataclasses.replace(cost, measured_seconds=seconds, measured_device=str(row.get("device", "GPU")))


# --------------------------------------------------------------------------- readable figures
def two_significant(x: float) -> str:
    """``x`` rounded to two significant digits, written without an exponent (1234 -> "1,200",
    0.0123 -> "0.012", 45.6 -> "46")."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    magnitude = math.floor(math.log10(abs(x)))
    rounded = round(x, 1 - magnitude)
    decimals = max(0, 1 - magnitude)
    return f"{rounded:,.{decimals}f}"


def gpu_time(seconds: float) -> str:
    """GPU time a person reads at a glance: GPU-seconds below a minute, GPU-minutes below an
    hour, else GPU-hours, two significant digits (never "0.000 GPU-h")."""
    if seconds < 60:
        return f"{two_significant(seconds)} GPU-s"
    if seconds < 3600:
        return f"{two_significant(seconds / 60)} GPU-min"
    return f"{two_significant(seconds / 3600)} GPU-h"


# --------------------------------------------------------------------------- a plan's estimate
@dataclass(frozen=True)
class PlanCost:
    cells: int
    #: architecture name -> (cells, cost of one cell)
    per_architecture: dict[str, tuple[int, CellCost]]
    #: what was left out, with the reason (a model without a size, a protocol of unknown cost)
    unknown: tuple[str, ...]
    mfu: float

    def total_flops(self) -> float:
        return sum(n * c.flops for n, c in self.per_architecture.values())

    def gpu_hours(self, gpu: GPU) -> float:
        return sum(n * c.gpu_seconds(gpu, self.mfu) for n, c in self.per_architecture.values()) / 3600

    def measured_hours(self) -> float | None:
        """GPU-hours from measured figures when every estimated architecture has one."""
        costs = list(self.per_architecture.values())
        if not costs or any(c.measured_seconds is None for _, c in costs):
            return None
        return sum(n * c.measured_seconds for n, c in costs) / 3600

    def lines(self, steps: int, batch_seconds: float) -> list[str]:
        """What ``bench run --dry-run`` prints."""
        if not self.per_architecture:
            return [f"cost: not estimated: {'; '.join(self.unknown)}"]
        out = [f"estimated cost of the {self.cells} cells to compute ({steps} updates of {batch_seconds:g} s "
               f"batches; FLOPs counted from the architectures; dev+test as the datasets' options cap them, "
               f"else {DEFAULT_EVAL_HOURS:g} h per cell):"]
        for arch, (n, cost) in sorted(self.per_architecture.items()):
            gpus = ", ".join(f"{gpu_time(cost.gpu_seconds(g, self.mfu))} on {g.name}" for g in GPUS)
            what = (f"{cost.update_flops:.3g} per update" if cost.update_flops else
                    "forward passes only; the downstream's training is not counted")
            line = f"  {arch} ({n} cells): {cost.flops:.3g} FLOPs per cell ({what}) = {gpus}"
            if cost.measured_seconds is not None:
                line += f"; measured on {cost.measured_device}: {gpu_time(cost.measured_seconds)}"
            out.append(line)
        totals = ", ".join(f"{gpu_time(self.gpu_hours(g) * 3600)} on {g.name} ({g.peak_bf16 / 1e12:.0f} TFLOP/s bf16)"
                           for g in GPUS)
        out.append(f"  all: {self.total_flops():.3g} FLOPs = {totals}, at an assumed {self.mfu:.0%} MFU")
        measured = self.measured_hours()
        if measured is not None:
            devices = sorted({c.measured_device for _, c in self.per_architecture.values()})
            out.append(f"  from measured seconds per update ({', '.join(devices)}): {gpu_time(measured * 3600)}")
        if self.unknown:
            out.append(f"  not estimated: {'; '.join(self.unknown)}")
        return out


def plan_cost(planned: Iterable[Any], steps: int, batch_seconds: float, cache_dir: Path | None = None,
              mfu: float = DEFAULT_MFU, eval_hours: float = DEFAULT_EVAL_HOURS) -> PlanCost:
    """The estimate for planned cells (:class:`harness.plan.planner.PlannedCell`)."""
    measured = load_measured(cache_dir) if cache_dir is not None else []
    groups: dict[str, list] = {}
    unknown: set[str] = set()
    cells = 0
    for p in planned:
        cells += 1
        arch = architecture_of(p.model.spec.metadata)
        if arch is None:
            unknown.add(f"{p.cell.model} (no parameter count in its metadata)")
            continue
        if p.cell.protocol not in ("finetune", "superb"):
            unknown.add(f"protocol {p.cell.protocol} (its cost is not known here)")
            continue
        hours = train_hours_of(p.cell.dataset, p.dataset_options)
        evaluated = eval_hours_of(p.dataset_options, eval_hours)
        key = f"{arch.name}" if p.cell.protocol == "finetune" else f"{arch.name}, {p.cell.protocol}"
        groups.setdefault(key, []).append((arch, hours, evaluated, p.cell.protocol))
    per_arch: dict[str, tuple[int, CellCost]] = {}
    for key, items in groups.items():
        arch, protocol = items[0][0], items[0][3]
        hours = sum(item[1] for item in items) / len(items)
        evaluated = sum(item[2] for item in items) / len(items)
        cost = cell_cost(arch, steps, batch_seconds, hours, evaluated, protocol=protocol)
        if protocol == "finetune":
            cost = with_measured(cost, steps, batch_seconds, hours, evaluated, measured)
        per_arch[key] = (len(items), cost)
    return PlanCost(cells, per_arch, tuple(sorted(unknown)), mfu)
