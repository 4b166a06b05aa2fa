"""The ``ray`` executor: one Ray task per cell, with per-cell CPU and GPU resources.

``address`` empty starts a Ray instance on this machine (``num_cpus`` of it, default all);
``address = "auto"`` or ``"ray://head:10001"`` joins an existing cluster, whose workers must
have bench and the same plugins installed. Results come back to the driver, which writes the
store; cells are claimed as they are submitted (at most ``max_in_flight`` at a time), so a
second ``bench run`` on the same store takes the cells this one has not reached.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Iterator, Mapping
from typing import Any

from harness.api import ExecutorSpec
from harness.run.cell import CellFailure, CellResult, CellTask, compute_cell
from harness.errors import BenchError
from harness.hookspecs import hookimpl

from . import OnResult, check_options, run_bounded

DEFAULTS: dict[str, Any] = {
    "address": "",
    "num_cpus": 0,          # size of a local instance (0: every core); ignored with an address
    "cpus_per_cell": 1.0,
    "gpus_per_cell": -1.0,  # -1: one GPU per cell when the cluster has GPUs, else none
    "max_in_flight": 0,     # 0: twice what fits at once
    "retries": 3,           # times a cell is restarted when its worker or node dies (from its checkpoint)
}


def _compute(task: CellTask):
    import socket

    import ray

    result = compute_cell(task)
    if isinstance(result, CellResult):  # which node of the cluster computed it
        context = ray.get_runtime_context()
        node = {"executor": "ray", "address": ray.util.get_node_ip_address(), "id": context.get_node_id(),
                "host": socket.gethostname()}
        result = dataclasses.replace(result, record=dataclasses.replace(result.record, node=node))
    return result


class RayExecutor:
    def __init__(self, options: Mapping[str, Any], config) -> None:
        self.options = check_options("ray", options, DEFAULTS)
        self.config = config

    def run(self, tasks: Iterator[CellTask], on_result: OnResult, progress) -> None:
        try:
            import ray
        except ImportError:
            raise BenchError("the ray executor needs Ray, which is not installed",
                             "pip install 'bench[ray]' (or pip install 'ray>=2.10')") from None
        opts = self.options
        started_here = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                                      "ignore_reinit_error": True}
            if opts["address"]:
                kwargs["address"] = opts["address"]
            elif opts["num_cpus"]:
                kwargs["num_cpus"] = int(opts["num_cpus"])
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BenchError(f"could not start or join Ray ({type(exc).__name__}: {exc})",
                                 "check [executors.ray] address (empty starts a local instance)") from None
            started_here = True
        try:
            self._run(ray, tasks, on_result, progress)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray, tasks, on_result, progress) -> None:
        opts = self.options
        resources = ray.cluster_resources()
        gpus = opts["gpus_per_cell"]
        if gpus < 0:
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        cpus = float(opts["cpus_per_cell"])
        if cpus > resources.get("CPU", 0) or gpus > resources.get("GPU", 0):
            raise BenchError(f"a cell asks Ray for {cpus:g} CPU and {gpus:g} GPU, more than the cluster has "
                             f"({resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU)",
                             "lower [executors.ray] cpus_per_cell / gpus_per_cell")
        fits = max(1, int(min(resources.get("CPU", 1) // cpus,
                              resources.get("GPU", 0) // gpus if gpus else float("inf"))))
        limit = opts["max_in_flight"] or 2 * fits
        # a cell never raises (compute_cell returns its failure), so Ray retries only when the worker
        # process or its node dies; the retry resumes from the cell's in-cell checkpoint
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=int(opts["retries"]))(_compute)
        threads = max(1, int(cpus))

        def submit(task: CellTask):
            if not task.config.runtime.threads:  # as many torch threads as the cell was given CPUs
                task = task.with_runtime(threads=threads)
            return remote.remote(task)

        def collect(ref, task: CellTask):
            try:
                return ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died (killed, out of host memory, ...)
                return CellFailure(task.key, task.cell, "error", f"Ray task failed: {type(exc).__name__}", str(exc))

        run_bounded(tasks, limit, submit, lambda refs: ray.wait(refs, num_returns=1)[0], collect, on_result,
                    cancel=lambda ref: ray.cancel(ref, force=True))

@hookimpl
def bench_register_executors(register) -> None:
    register(ExecutorSpec("ray", RayExecutor, "Ray tasks, one per cell (local instance or a cluster)",
                          tuple(DEFAULTS)))
