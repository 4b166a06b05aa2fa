"""One cell as a unit of work any executor can run, in this process or on another machine.

A :class:`CellTask` holds the run's configuration and the cell's key: small, picklable, and
enough to redo the planning where it runs (the worker checks that it arrives at the same key,
which catches a worker running different code or plugins). :func:`compute_cell` loads the
data, fine-tunes and evaluates, retrying with smaller micro-batches when memory runs out, and
returns a :class:`CellResult` or, for any error, a :class:`CellFailure` — it never raises for
a failing cell, so one bad cell does not stop a matrix.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.api import DatasetRequest, DatasetSplits
from harness.config import RunConfig
from harness.errors import BenchError
from harness.matrix import Cell
from harness.progress import Progress


@dataclass(frozen=True)
class CellTask:
    config: RunConfig
    cell: Cell
    key: str

    def with_runtime(self, **changes: Any) -> CellTask:
        """The same cell computed differently (device, threads): runtime settings are not in the key."""
        runtime = dataclasses.replace(self.config.runtime, **changes)
        return dataclasses.replace(self, config=dataclasses.replace(self.config, runtime=runtime))


@dataclass(frozen=True)
class CellResult:
    key: str
    cell: Cell
    metrics: dict[str, dict[str, float]]
    record: dict[str, Any]
    hypotheses: dict[str, list[tuple[str, str, str]]]
    duration_s: float


@dataclass(frozen=True)
class CellFailure:
    key: str
    cell: Cell
    #: "user" (a BenchError: data or settings), "oom" (out of memory after every retry), "error"
    kind: str
    message: str
    #: the hint of a user error, or the traceback of anything else
    detail: str


def checkpoint_path(config: RunConfig, key: str) -> Path:
    return config.cache_dir / "checkpoints" / f"{key}.pt"


def model_cache_dir(config: RunConfig) -> Path:
    """Where models keep what their ``prepare`` made (pre-trained checkpoints)."""
    return config.cache_dir / "models"


def dataset_request(config: RunConfig, dataset: str, language: str, seed: int, options) -> DatasetRequest:
    """What a dataset plugin is asked for: its cache lives in ``<run.cache_dir>/datasets/<name>``."""
    return DatasetRequest(language, seed, options, config.cache_dir / "datasets" / dataset)


def data_request(config: RunConfig, cell: Cell, options) -> DatasetRequest:
    return dataset_request(config, cell.dataset, cell.language, cell.seed, options)


# per-process memo: a worker computing many cells loads plugins once, and data once per language
_REGISTRY: tuple[tuple, Any] | None = None
_DATA: tuple[tuple, DatasetSplits] | None = None


def _discovery_state() -> tuple:
    """What decides which plugins are found: the import path and the plugin switches."""
    import os
    import sys

    return tuple(sys.path), os.environ.get("BENCH_PLUGINS"), os.environ.get("BENCH_DISABLE_PLUGINS")


def _registry():
    """The plugin registry, loaded again only when what decides plugin discovery changed."""
    global _REGISTRY
    from harness.plugins import load_registry

    state = _discovery_state()
    if _REGISTRY is None or _REGISTRY[0] != state:
        _REGISTRY = (state, load_registry())
    return _REGISTRY[1]


def use_registry(registry) -> None:
    """Cells computed in this process use ``registry`` (the one their run was planned with)."""
    global _REGISTRY

    _REGISTRY = (_discovery_state(), registry)


def _plan_one(task: CellTask):
    from harness.runner import plan_run

    c = task.cell
    config = dataclasses.replace(task.config, models=(c.model,), datasets=(c.dataset,), langs=(c.language,),
                                 seeds=(c.seed,))
    plan = plan_run(config, _registry())
    found = [p for p in plan.cells if p.key == task.key]
    if not found:
        raise BenchError(f"cell {c.label()} plans to a different key here than where it was submitted",
                         "the worker runs other code or plugins than the submitting machine: install the same "
                         "bench version and plugins on every worker")
    return found[0], plan.metrics


def _load_data(planned, config: RunConfig) -> DatasetSplits:
    global _DATA
    c = planned.cell
    memo_key = (c.dataset, c.language, c.seed, repr(sorted(planned.dataset_options.items())), str(config.cache_dir))
    if _DATA is None or _DATA[0] != memo_key:
        _DATA = None  # free the previous language first
        _DATA = (memo_key, planned.dataset.spec.load(data_request(config, c, planned.dataset_options)))
    return _DATA[1]


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def compute_cell(task: CellTask, progress: Progress | None = None) -> CellResult | CellFailure:
    """Compute one cell; every error comes back as a :class:`CellFailure`."""
    start = time.perf_counter()
    try:
        return _compute(task, progress, start)
    except BenchError as exc:
        return CellFailure(task.key, task.cell, "user", exc.message, exc.hint or "")
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a bug in bench or a plugin: keep the traceback for the report
        kind = "oom" if is_out_of_memory(exc) else "error"
        return CellFailure(task.key, task.cell, kind, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _compute(task: CellTask, progress: Progress | None, start: float) -> CellResult:
    from harness.runner import build_record
    from harness.train import fine_tune_and_evaluate

    config = task.config
    planned, metrics = _plan_one(task)
    data = _load_data(planned, config)
    train, runtime = config.train, config.runtime
    checkpoint = checkpoint_path(config, task.key)
    retries = 0
    while True:
        try:
            outcome = fine_tune_and_evaluate(
                planned.model.spec.build, data, task.cell.language, task.cell.seed, train, runtime, metrics,
                planned.model_options, progress, checkpoint=checkpoint, model_cache_dir=model_cache_dir(config),
            )
            break
        except Exception as exc:
            if not is_out_of_memory(exc) or retries >= runtime.oom_retries:
                raise
            # the same effective batch in smaller pieces; a checkpoint of the old batching no longer fits
            retries += 1
            train = dataclasses.replace(train, batch_seconds=train.batch_seconds / 2, grad_accum=train.grad_accum * 2)
            runtime = dataclasses.replace(runtime, eval_batch_seconds=runtime.eval_batch_seconds / 2)
            checkpoint.unlink(missing_ok=True)
            _free_memory()
            if progress:
                progress.log(f"out of memory in {task.cell.label()}: retrying with {train.batch_seconds:g} s "
                             f"micro-batches x {train.grad_accum} (retry {retries} of {runtime.oom_retries})")
    record = build_record(planned, outcome, data, config)
    if retries:
        record["oom_retries"] = retries
        record["effective_batching"] = {"batch_seconds": train.batch_seconds, "grad_accum": train.grad_accum,
                                        "eval_batch_seconds": runtime.eval_batch_seconds}
    return CellResult(
        task.key, task.cell,
        metrics={name: r.metrics for name, r in outcome.splits.items()},
        record=record,
        hypotheses={name: r.hypotheses for name, r in outcome.splits.items()},
        duration_s=time.perf_counter() - start,
    )


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
