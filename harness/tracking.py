"""What experiment trackers receive: typed, frozen events of a run.

A tracker plugin (``bench_register_trackers``, :class:`harness.api.TrackerSpec`) gets these
through ``Tracker.handle(event)``. Events come from two places, and a tracker instance gets
only one place's events (its :class:`harness.api.TrackerRequest` says which, ``scope``):

- ``"run"``, in the process that runs ``bench run`` (or ``bench report``): :class:`RunStarted`,
  :class:`PretrainingUpdate`, :class:`ModelPrepared`, :class:`RunFinished`, :class:`ReportWritten`;
- ``"cell"``, wherever one cell is computed (this process, a local worker process, a Ray task, a
  Slurm job): :class:`CellStarted`, :class:`TrainingUpdate` (every 25 updates), :class:`DevEvaluated`,
  then :class:`CellFinished` or :class:`CellFailed`. A tracker instance is created there for that
  one cell and closed after its last event.

Events are handed over on a thread of their own, so a slow tracker never holds up training;
a tracker that raises is warned about once and skipped for the rest of its cell (or run), and
never fails a cell. New event types may be added: a tracker ignores those it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:  # pragma: no cover - types only
    from harness.plan.cells import Cell
    from harness.store.record import CellRecord

__all__ = ["CellFailed", "CellFinished", "CellStarted", "DevEvaluated", "Event", "ModelPrepared",
           "PretrainingUpdate", "ReportWritten", "RunFinished", "RunStarted", "TrainingUpdate", "cell_path",
           "flat_identity"]


# --------------------------------------------------------------------------- the run (driver)
@dataclass(frozen=True)
class RunStarted:
    """``bench run`` has planned and checked its matrix and is about to prepare models and compute cells."""

    run_id: str
    """this run's id (also in every cell event of the run): ``YYYYmmdd-HHMMSS-xxxx``"""
    planned: int
    """cells in the matrix"""
    to_compute: int
    """of which this run computes (the others are stored or failed before)"""
    models: tuple[str, ...]
    languages: tuple[str, ...]
    seeds: tuple[int, ...]
    preset: str
    store: str
    """the results store's path"""


@dataclass(frozen=True)
class PretrainingUpdate:
    """A model being made before any cell (``ModelSpec.prepare``: the tiny models pre-trained
    here) reports its loss, every 25 updates."""

    run_id: str
    model: str
    update: int
    total: int
    loss: float
    lr: float
    seconds: float
    """seconds since its first update"""


@dataclass(frozen=True)
class ModelPrepared:
    """A model's ``prepare`` returned (made now, or found in the cache)."""

    run_id: str
    model: str
    seconds: float
    facts: Mapping[str, Any] = field(default_factory=dict)
    """what ``prepare`` said about it (path, loss curve, ...)"""


@dataclass(frozen=True)
class RunFinished:
    """The run is over: every cell computed, or interrupted."""

    run_id: str
    computed: int
    failed: tuple[str, ...]
    """labels of the cells that failed in this run"""
    seconds: float
    interrupted: bool = False


@dataclass(frozen=True)
class ReportWritten:
    """``bench report`` wrote its files (the matrix, statistics, the page)."""

    run_id: str
    paths: Mapping[str, Path]
    """by kind (``csv``, ``json``, ``md``, ``html``, ...)"""
    cells: int


# --------------------------------------------------------------------------- one cell (where it runs)
@dataclass(frozen=True)
class CellStarted:
    run_id: str
    cell: Cell
    key: str
    identity: Mapping[str, Any]
    """everything that decides the cell's result (its key's material, as stored in its record)"""


@dataclass(frozen=True)
class TrainingUpdate:
    """The training loop's loss and learning rate (:class:`harness.engine.UpdateLog`), every 25 updates."""

    run_id: str
    cell: Cell
    key: str
    update: int
    total: int
    loss: float
    """mean training loss over the updates since the last event"""
    lr: float
    seconds: float
    """seconds since the first update (a resumed cell counts from its resume)"""


@dataclass(frozen=True)
class DevEvaluated:
    """Dev scored during training (``train.eval_every``): its CER after ``update`` updates."""

    run_id: str
    cell: Cell
    key: str
    update: int
    cer: float


@dataclass(frozen=True)
class CellFinished:
    run_id: str
    cell: Cell
    key: str
    metrics: Mapping[str, Mapping[str, float]]
    """by split (``dev``, ``test``) and metric (``cer``, ``wer``, ...)"""
    record: CellRecord
    """the typed record stored with the result"""
    seconds: float


@dataclass(frozen=True)
class CellFailed:
    run_id: str
    cell: Cell
    key: str
    kind: str
    """``user`` (settings, data), ``oom`` or ``error``"""
    message: str
    seconds: float


Event = Union[RunStarted, PretrainingUpdate, ModelPrepared, RunFinished, ReportWritten, CellStarted, TrainingUpdate,
              DevEvaluated, CellFinished, CellFailed]


# --------------------------------------------------------------------------- helpers for trackers
def _safe(part: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in part) or "_"


def cell_path(cell: Cell, key: str) -> str:
    """A relative path naming one cell, for trackers that keep a folder or run per cell:
    ``MODEL/DATASET-LANGUAGE/seedN[-PROTOCOL]-KEY8`` (the key's first 8 characters tell swept
    cells apart; characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``)."""
    last = f"seed{cell.seed}" + ("" if cell.protocol == "finetune" else f"-{cell.protocol}") + f"-{key[:8]}"
    return "/".join((_safe(cell.model), _safe(f"{cell.dataset}-{cell.language}"), _safe(last)))


def flat_identity(identity: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A cell's identity as flat ``a.b.c -> text`` pairs (for trackers whose parameters are flat strings)."""
    import json

    out: dict[str, str] = {}
    for name, value in identity.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            out.update(flat_identity(value, key + "."))
        elif isinstance(value, str):
            out[key] = value
        else:
            out[key] = json.dumps(value, sort_keys=True, default=str)
    return out
