"""The ``local`` executor: cells in this process, or one worker process per GPU.

With one device (the usual case) cells run one after another in the ``bench run`` process,
with progress bars. With ``workers`` > 1 (default: the number of GPUs when there are several)
each worker is a fresh process pinned to one device (``cuda:0``, ``cuda:1``, ... or the CPU,
then sharing its cores), and cells go to whichever worker is free.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Iterator, Mapping
from typing import Any

from harness.api import ExecutorSpec
from harness.run.cell import CellTask, compute_cell
from harness.hookspecs import hookimpl

from . import OnResult, check_options, run_bounded

DEFAULTS: dict[str, Any] = {"workers": 0}

_DEVICE: str | None = None
_THREADS = 0


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


class LocalExecutor:
    def __init__(self, options: Mapping[str, Any], config) -> None:
        self.options = check_options("local", options, DEFAULTS)
        self.config = config

    def _devices(self) -> list[str]:
        import torch

        runtime_device = self.config.runtime.device
        gpus = torch.cuda.device_count() if runtime_device in ("auto", "cuda") else 0
        workers = self.options["workers"] or (gpus if gpus > 1 else 1)
        if gpus:
            return [f"cuda:{i % gpus}" for i in range(workers)]
        return ["cpu" if runtime_device == "auto" else runtime_device] * workers

    def run(self, tasks: Iterator[CellTask], on_result: OnResult, progress) -> None:
        devices = self._devices()
        if len(devices) == 1:
            for task in tasks:
                if progress:
                    progress.start_cell(task.cell.label())
                on_result(compute_cell(task, progress))
            return
        context = multiprocessing.get_context("spawn")
        queue = context.Manager().Queue()
        for device in devices:
            queue.put(device)
        threads = 0 if devices[0].startswith("cuda") else max(1, (os.cpu_count() or 1) // len(devices))
        with concurrent.futures.ProcessPoolExecutor(len(devices), mp_context=context, initializer=_init_worker,
                                                    initargs=(queue, threads)) as pool:
            run_bounded(
                tasks, len(devices),
                submit=lambda task: pool.submit(_compute_pinned, task),
                wait=lambda futures: concurrent.futures.wait(
                    futures, return_when=concurrent.futures.FIRST_COMPLETED).done,
                collect=lambda future, task: future.result(),
                on_result=on_result,
                cancel=lambda future: _stop_workers(pool),
            )


def _stop_workers(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Interrupted: end the worker processes now (a SIGTERM reaches only this process, and
    shutting the pool down would wait for their cells); their in-cell checkpoints stay."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)

@hookimpl
def bench_register_executors(register) -> None:
    register(ExecutorSpec("local", LocalExecutor, "this process (one worker process per GPU when there are several)",
                          tuple(DEFAULTS)))
