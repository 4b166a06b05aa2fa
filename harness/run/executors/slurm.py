"""The ``slurm`` executor: one Slurm job per cell, submitted with submitit.

Jobs run ``compute_cell`` on the cluster's nodes (which must see the same Python environment
and the cache directory, as on any shared-filesystem cluster) and their results come back
through submitit's job folder to the ``bench run`` process, which writes the store. A cell
is claimed when its job is submitted; at most ``max_in_flight`` jobs are queued at a time.
``cluster = "local"`` runs the jobs as local processes (for trying a set-up without Slurm).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.api import ExecutorSpec
from harness.run.cell import CellFailure, CellTask, compute_cell
from harness.errors import BenchError
from harness.hookspecs import hookimpl

from . import OnResult, check_options, run_bounded

DEFAULTS: dict[str, Any] = {
    "folder": "",           # submitit's job folder (default: <cache_dir>/slurm)
    "cluster": "",          # "" = Slurm when available; "local" or "debug" for trying it out
    "partition": "",
    "timeout_min": 240,
    "gpus_per_node": 1,
    "cpus_per_task": 8,
    "mem_gb": 32,
    "max_in_flight": 64,
    "poll_seconds": 5.0,
    "additional_parameters": {},  # passed to sbatch as-is, e.g. {account = "proj"}
}


class SlurmExecutor:
    def __init__(self, options: Mapping[str, Any], config) -> None:
        self.options = check_options("slurm", options, DEFAULTS)
        self.config = config

    def run(self, tasks: Iterator[CellTask], on_result: OnResult, progress) -> None:
        try:
            import submitit
        except ImportError:
            raise BenchError("the slurm executor needs submitit, which is not installed",
                             "pip install 'bench[slurm]' (or pip install submitit)") from None
        opts = self.options
        folder = Path(opts["folder"]).expanduser() if opts["folder"] else self.config.cache_dir / "slurm"
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=opts["cluster"] or None)
        params: dict[str, Any] = {"timeout_min": opts["timeout_min"], "cpus_per_task": opts["cpus_per_task"],
                                  "mem_gb": opts["mem_gb"]}
        if executor.cluster == "slurm":
            params.update(gpus_per_node=opts["gpus_per_node"], slurm_additional_parameters=opts["additional_parameters"])
            if opts["partition"]:
                params["slurm_partition"] = opts["partition"]
        executor.update_parameters(**params)

        def submit(task: CellTask):
            executor.update_parameters(name=f"bench-{task.cell.model}-{task.cell.language}-{task.cell.seed}")
            job = executor.submit(compute_cell, task)
            if progress:
                progress.log(f"submitted {task.cell.label()}")
            return job

        def wait(jobs):
            while True:
                finished = [job for job in jobs if job.done()]
                if finished:
                    return finished
                time.sleep(opts["poll_seconds"])

        def collect(job, task: CellTask):
            try:
                return job.result()
            except Exception as exc:  # the job died: timeout, node failure, cancelled
                return CellFailure(task.key, task.cell, "error", f"job {job.job_id} failed: {type(exc).__name__}",
                                   str(exc)[-4000:])

        run_bounded(tasks, opts["max_in_flight"], submit, wait, collect, on_result)

@hookimpl
def bench_register_executors(register) -> None:
    register(ExecutorSpec("slurm", SlurmExecutor, "Slurm jobs through submitit, one per cell", tuple(DEFAULTS)))
