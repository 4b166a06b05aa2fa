"""The ``local`` executor: cells on this machine, in this process or in worker processes.

- **CPU**: cells run in worker processes, each with a share of the cores (``workers`` auto:
  as many as there are cores, at most 4, each with ``cores // workers`` torch threads, for
  runs of at least 1,000 training updates in all; smaller runs stay in this process). A
  tiny model's matrices are too small to keep several threads busy, and a cell also has
  single-threaded stretches (loading, decoding, scoring), so two one-thread cells side by
  side finish sooner than the same two cells one after the other on two threads: 1.5 times
  the cells per hour on 2 cores (docs/speed.md). Threads change the order of floating-point
  sums, so a cell's numbers depend on its thread count (recorded with every cell): the same
  machine and settings give the same numbers. ``workers = 1`` computes in this process, as
  a run of a single cell always does.
- **GPUs**: with one GPU cells run one after another in this process; with several, one
  worker per GPU (``cuda:0``, ``cuda:1``, ...).

Models that have to be made before their cells (pre-trained here) are made in the workers
too, side by side with each other and with the cells of models that are ready: a cell waits
only for its own model (:meth:`LocalExecutor.run_with_preparation`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.api import ExecutorSpec
from harness.hookspecs import hookimpl
from harness.run.cell import CellFailure, CellTask, compute_cell

from . import OnResult, check_options, run_bounded

DEFAULTS: dict[str, Any] = {"workers": 0}

#: worker processes on CPU when ``workers`` is 0 (auto): at most this many
MAX_CPU_WORKERS = 4
#: auto uses CPU workers only for runs of at least this many training updates in all (a worker
#: takes a few seconds to start; a run of a few quick cells is done sooner in this process)
MIN_UPDATES_FOR_WORKERS = 1000

_DEVICE: str | None = None
_THREADS = 0


@dataclass(frozen=True)
class PrepareTask:
    """A model to make before its cells (``ModelSpec.prepare``), picklable for a worker."""

    config: Any
    model: str
    options: Mapping[str, Any]


def _init_worker(devices, threads: int) -> None:
    global _DEVICE, _THREADS
    try:
        _DEVICE = devices.get(timeout=10)
    except Exception:  # a replacement worker after a crash: any device will do
        _DEVICE = None
    _THREADS = threads


def _compute_pinned(task: CellTask):
    runtime = task.config.runtime
    changes: dict[str, Any] = {}
    if _DEVICE is not None and runtime.device in ("auto", "cuda"):
        changes["device"] = _DEVICE
    if _THREADS and not runtime.threads:
        changes["threads"] = _THREADS
    return compute_cell(task.with_runtime(**changes) if changes else task)


def _prepare_pinned(task: PrepareTask) -> Mapping[str, Any]:
    import dataclasses

    from harness.plugins import process_registry
    from harness.run.prepare_models import prepare_context

    config = task.config
    changes: dict[str, Any] = {}
    if _DEVICE is not None and config.runtime.device in ("auto", "cuda"):
        changes["device"] = _DEVICE
    if _THREADS and not config.runtime.threads:
        changes["threads"] = _THREADS
    if changes:
        config = dataclasses.replace(config, runtime=dataclasses.replace(config.runtime, **changes))
    registry = process_registry()
    spec = registry.model(task.model).spec
    context = prepare_context(config, registry)
    return dict(spec.prepare(dataclasses.replace(context, options=dict(task.options))))


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, which Slurm and taskset set)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_workers(threads: int = 0, cores: int | None = None) -> int:
    """Worker processes for CPU cells when ``workers`` is auto: one per core (or per
    ``threads`` cores when ``run.threads`` is set), at most :data:`MAX_CPU_WORKERS`."""
    cores = cores or available_cores()
    return max(1, min(MAX_CPU_WORKERS, cores // max(1, threads)))


class LocalExecutor:
    def __init__(self, options: Mapping[str, Any], config) -> None:
        self.options = check_options("local", options, DEFAULTS)
        self.config = config
        #: training updates the run will compute (cells x steps), when the runner says
        self.expected_updates: int | None = None

    def expect(self, cells: int, updates_per_cell: int) -> None:
        """What the run will compute: lets ``workers`` auto keep a small run in this process."""
        self.expected_updates = cells * updates_per_cell

    def _devices(self) -> list[str]:
        import torch

        runtime = self.config.runtime
        gpus = torch.cuda.device_count() if runtime.device in ("auto", "cuda") else 0
        if gpus:
            workers = self.options["workers"] or (gpus if gpus > 1 else 1)
            return [f"cuda:{i % gpus}" for i in range(workers)]
        workers = self.options["workers"]
        if not workers:
            small = self.expected_updates is not None and self.expected_updates < MIN_UPDATES_FOR_WORKERS
            workers = 1 if small else cpu_workers(runtime.threads)
        return ["cpu" if runtime.device == "auto" else runtime.device] * workers

    def _pool(self, devices: Sequence[str]) -> concurrent.futures.ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        queue = context.Manager().Queue()
        for device in devices:
            queue.put(device)
        threads = 0 if devices[0].startswith("cuda") else max(1, available_cores() // len(devices))
        return concurrent.futures.ProcessPoolExecutor(len(devices), mp_context=context, initializer=_init_worker,
                                                      initargs=(queue, threads))

    def run(self, tasks: Iterator[CellTask], on_result: OnResult, progress) -> None:
        devices = self._devices()
        first = [t for t in (next(tasks, None), next(tasks, None)) if t is not None]
        if len(devices) == 1 or len(first) < 2:  # one worker, or one cell: no process to start
            for task in [*first, *tasks]:
                if progress:
                    progress.start_cell(task.cell.label())
                on_result(compute_cell(task, progress))
            return
        with self._pool(devices) as pool:
            run_bounded(
                iter([*first, *tasks]), len(devices),
                submit=lambda task: pool.submit(_compute_pinned, task),
                wait=lambda futures: concurrent.futures.wait(
                    futures, return_when=concurrent.futures.FIRST_COMPLETED).done,
                collect=lambda future, task: _collect(future, task),
                on_result=on_result,
                cancel=lambda future: _stop_workers(pool),
            )

    def parallel(self) -> bool:
        """Whether cells (and preparations) run in worker processes."""
        return len(self._devices()) > 1

    def run_with_preparation(self, preparations: Sequence[PrepareTask], tasks: Iterator[CellTask],
                             on_result: OnResult, progress, on_prepared: Callable[[str, Any], None],
                             release: Callable[[CellTask], None]) -> None:
        """Make ``preparations`` and compute ``tasks`` in the workers, side by side: a cell
        starts once its model is made (at once for models without a preparation).

        ``on_prepared(model, facts_or_exception)`` hears of each preparation as it ends. The
        cells of a model whose preparation failed are not computed: ``release`` gives them
        back (unclaimed, not failed: the next run computes them once the problem is fixed)."""
        devices = self._devices()
        waiting_for = {p.model for p in preparations}
        ready_failed: dict[str, BaseException] = {}
        queue = collections.deque(preparations)
        preparing: dict[concurrent.futures.Future, str] = {}
        cells: dict[concurrent.futures.Future, CellTask] = {}
        blocked: collections.deque[CellTask] = collections.deque()
        exhausted = False
        limit = len(devices)

        def next_cell() -> CellTask | None:
            nonlocal exhausted
            for task in list(blocked):
                if task.cell.model not in waiting_for:
                    blocked.remove(task)
                    return task
            while not exhausted:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                elif task.cell.model in waiting_for:
                    blocked.append(task)
                else:
                    return task
            return None

        with self._pool(devices) as pool:
            try:
                while True:
                    while queue and len(preparing) + len(cells) < limit:
                        job = queue.popleft()
                        preparing[pool.submit(_prepare_pinned, job)] = job.model
                    while len(preparing) + len(cells) < limit:
                        task = next_cell()
                        if task is None:
                            break
                        if task.cell.model in ready_failed:
                            release(task)
                            continue
                        cells[pool.submit(_compute_pinned, task)] = task
                    if not preparing and not cells:
                        for task in blocked:  # only cells of models that could not be made are left
                            release(task)
                        return
                    done = concurrent.futures.wait([*preparing, *cells],
                                                   return_when=concurrent.futures.FIRST_COMPLETED).done
                    for future in done:
                        if future in preparing:
                            model = preparing.pop(future)
                            waiting_for.discard(model)
                            try:
                                outcome: Any = future.result()
                            except BaseException as exc:  # noqa: BLE001 - reported by on_prepared
                                outcome = exc
                                ready_failed[model] = exc
                                for task in [t for t in blocked if t.cell.model == model]:
                                    blocked.remove(task)
                                    release(task)
                            on_prepared(model, outcome)
                        else:
                            task = cells.pop(future)
                            on_result(_collect(future, task))
            except BaseException:
                _stop_workers(pool)
                raise


def _collect(future: concurrent.futures.Future, task: CellTask):
    try:
        return future.result()
    except concurrent.futures.process.BrokenProcessPool as exc:
        return CellFailure(task.key, task.cell, "error",
                           f"the worker process computing this cell died ({exc}); out of memory?",
                           "run it again with fewer workers ([executors.local] workers) or less memory per cell")


def _stop_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Interrupted: end the worker processes now (a SIGTERM reaches only this process, and
    shutting the pool down would wait for their cells); their in-cell checkpoints stay."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


@hookimpl
def bench_register_executors(register) -> None:
    register(ExecutorSpec("local", LocalExecutor,
                          "this machine: worker processes sharing the CPU cores, or one per GPU when there are several",
                          tuple(DEFAULTS)))
